"""What the catalog remembers of each connector: its cursor, the run holding it, its last failure.

Example::

    with catalog.begin() as conn:
        acquire_lease(conn, "gongan-household", "household", run_id, seconds=1800)
    with catalog.read() as conn:
        cursor = cursor_of(conn, "gongan-household")
    ...                                            # pull, validate, land (lake.landing)
    with catalog.begin() as conn:
        release_lease(conn, "gongan-household", run_id)

A connector's cursor advances only in the transaction that lands its batch (``save_cursor`` is
called by ``lake.landing``), so a run that dies leaves it where the last landed batch left it.
One run at a time pulls a connector: the lease in ``connector_state``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from catalog import aware, connector_state, insert_missing, runs, utcnow
from connectors.base import Cursor
from onceonly.errors import ConnectorBusy


def cursor_of(conn: Connection, connector: str) -> dict[str, Any] | None:
    """The cursor the connector's last landed batch stored (None: never landed)."""
    row = conn.execute(
        select(connector_state.c.cursor).where(connector_state.c.connector == connector)
    ).first()
    return None if row is None else row.cursor


def save_cursor(
    conn: Connection, connector: str, dataset: str, cursor: Cursor | None, run_id: str, *, rows: int
) -> None:
    insert_missing(conn, connector_state, {"connector": connector, "dataset": dataset, "rows_pulled": 0})
    conn.execute(
        update(connector_state)
        .where(connector_state.c.connector == connector)
        .values(
            cursor=cursor,
            last_run_id=run_id,
            last_status="ok",
            last_error=None,
            last_pull_at=utcnow(),
            rows_pulled=connector_state.c.rows_pulled + rows,
        )
    )


def record_failure(conn: Connection, connector: str, dataset: str, run_id: str, error: str) -> None:
    insert_missing(conn, connector_state, {"connector": connector, "dataset": dataset, "rows_pulled": 0})
    conn.execute(
        update(connector_state)
        .where(connector_state.c.connector == connector)
        .values(last_run_id=run_id, last_status="failed", last_error=error, last_pull_at=utcnow())
    )


def acquire_lease(conn: Connection, connector: str, dataset: str, run_id: str, seconds: float) -> None:
    """Take the connector for ``run_id`` for ``seconds`` (renewed by each landed batch).

    Two runs pulling one connector would each stage and land the same rows; the second run
    finds the lease held and stops with ``ConnectorBusy`` before pulling anything. A lease held
    by a run that is no longer ``running`` (finished, or marked ``crashed`` by
    ``lake.runs.reap_dead_runs``) is taken over at once.
    """
    insert_missing(conn, connector_state, {"connector": connector, "dataset": dataset, "rows_pulled": 0})
    now = utcnow()
    row = conn.execute(
        select(connector_state.c.lease_run_id, connector_state.c.lease_until)
        .where(connector_state.c.connector == connector)
        .with_for_update()
    ).one()
    holder = row.lease_run_id
    if holder not in (None, run_id):
        status = conn.execute(select(runs.c.status).where(runs.c.run_id == holder)).scalar()
        if status is not None and status != "running":
            holder = None  # its run ended (or crashed) without releasing it
    if holder not in (None, run_id) and row.lease_until and aware(row.lease_until) > now:
        until = aware(row.lease_until).isoformat(timespec="seconds")
        raise ConnectorBusy(
            connector,
            f"run {row.lease_run_id} is pulling it (until {until} at the latest); this run leaves it alone",
        )
    conn.execute(
        update(connector_state)
        .where(connector_state.c.connector == connector)
        .values(lease_run_id=run_id, lease_until=now + dt.timedelta(seconds=seconds))
    )


def renew_lease(conn: Connection, connector: str, run_id: str, seconds: float) -> None:
    """Extend ``run_id``'s hold on the connector by ``seconds`` from now (each landed batch does)."""
    conn.execute(
        update(connector_state)
        .where(and_(connector_state.c.connector == connector, connector_state.c.lease_run_id == run_id))
        .values(lease_until=utcnow() + dt.timedelta(seconds=seconds))
    )


def release_lease(conn: Connection, connector: str, run_id: str) -> None:
    conn.execute(
        update(connector_state)
        .where(and_(connector_state.c.connector == connector, connector_state.c.lease_run_id == run_id))
        .values(lease_run_id=None, lease_until=None)
    )


def check_lease(
    conn: Connection, connector: str, run_id: str, now: dt.datetime, *, held: bool = False
) -> None:
    """Raise ``ConnectorBusy`` unless ``run_id`` may land for the connector now (in the landing
    transaction: the row is locked, so a run that took the connector over cannot race it).

    ``held``: the run acquired the lease (the flow does), so it must still hold it — a run
    that was taken for dead and comes back finds the lease gone or another's, and lands
    nothing. Without it (a caller that takes no leases), only another run's live lease refuses.
    """
    lease = select(connector_state.c.lease_run_id, connector_state.c.lease_until).where(
        connector_state.c.connector == connector
    )
    if conn.execute(lease).first() is None:
        if held:
            raise ConnectorBusy(connector, f"run {run_id} holds no lease on it; this batch is not landed")
        return  # never leased: no one to race (locking a missing row would take an InnoDB gap lock)
    row = conn.execute(lease.with_for_update()).one()
    if row.lease_run_id == run_id:
        return
    if held:
        holder = f"run {row.lease_run_id} took it over" if row.lease_run_id else "its lease was released"
        raise ConnectorBusy(
            connector,
            f"run {run_id} no longer holds it ({holder}: this run was taken for dead); "
            "this batch is not landed",
        )
    if row.lease_run_id is None or not row.lease_until:
        return
    if aware(row.lease_until) > now:
        raise ConnectorBusy(connector, f"run {row.lease_run_id} holds it; this batch is not landed")


__all__ = [
    "acquire_lease",
    "check_lease",
    "cursor_of",
    "record_failure",
    "release_lease",
    "renew_lease",
    "save_cursor",
]
