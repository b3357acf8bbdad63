"""Runs of the daily flow in the catalog: started, alive, finished — or crashed.

Example (what the daily flow does)::

    with catalog.begin() as conn:
        crashed = reap_dead_runs(conn, heartbeat_seconds=30)  # runs whose process is gone
        start_run(conn, run_id, heartbeat_seconds=30)         # this process, this host
    with Heartbeat(catalog, run_id, every=30):                # proves this run alive
        ...                                                   # pull, validate, land
    with catalog.begin() as conn:
        finish_run(conn, run_id, "ok", summary)

A run killed with SIGKILL (or a machine that lost power) never writes ``finished_at``; its row
says ``running`` and its connectors' leases (``connector_state.lease_run_id``) name it. The
next run tells a dead run from a live one: on the same host by its process (``pid`` and the
process's start time, so a reused pid is not mistaken for it), on another host by its
heartbeat (``heartbeat_at`` four of its beats old). A dead run is marked ``crashed`` and
its leases are released in the same transaction, so the next run takes its connectors over at
once instead of waiting for ``ONCEONLY_LEASE_SECONDS``. Heartbeats and the reaper's "now" are
both the database's clock, so hosts whose clocks differ do not take each other for dead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import and_, case, insert, select, update
from sqlalchemy.engine import Connection

from catalog import Catalog, aware, connector_state, database_now, runs
from onceonly.errors import CatalogError

_log = logging.getLogger(__name__)
RUNNING, OK, FAILED, CRASHED = "running", "ok", "failed", "crashed"


@dataclass(frozen=True)
class Process:
    """Where a run runs: enough to tell later whether it still does."""

    host: str
    pid: int
    start: int | None

    @classmethod
    def current(cls) -> Process:
        pid = os.getpid()
        return cls(host_id(), pid, process_start(pid))

    def is_gone(self) -> bool:
        """True when this process (on this host) no longer exists."""
        if self.host != host_id():
            raise ValueError("only a process of this host can be looked up")
        started = process_start(self.pid)
        if started is None:
            return not _pid_exists(self.pid)
        return self.start is not None and started != self.start


def host_id() -> str:
    """This host, as precisely as the system tells: host name, boot and pid namespace.

    Two containers may share a host name but not a boot id and pid namespace; a pid means a
    process only within one namespace of one boot.
    """
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8])
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]"))
    return "/".join(parts)[:255]


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux ``/proc/<pid>/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_run(
    conn: Connection, run_id: str, *, heartbeat_seconds: float, process: Process | None = None
) -> None:
    """Record ``run_id`` as running in this process (or ``process``), beating every
    ``heartbeat_seconds``. A flow run Prefect retries keeps its id: its row starts again."""
    process = process or Process.current()
    now = database_now(conn)
    values = {
        "started_at": now,
        "finished_at": None,
        "status": RUNNING,
        "host": process.host,
        "pid": process.pid,
        "process_start": process.start,
        "heartbeat_at": now,
        "heartbeat_seconds": heartbeat_seconds,
    }
    if conn.execute(select(runs.c.status).where(runs.c.run_id == run_id).with_for_update()).first() is None:
        conn.execute(insert(runs).values(run_id=run_id, **values))
    else:
        conn.execute(update(runs).where(runs.c.run_id == run_id).values(**values))


def finish_run(conn: Connection, run_id: str, status: str, summary: dict[str, Any]) -> None:
    """Record how the run ended (``ok`` or ``failed``) and its summary; a run another run
    already marked ``crashed`` (it was taken for dead) stays ``crashed``."""
    conn.execute(
        update(runs)
        .where(runs.c.run_id == run_id)
        .values(
            finished_at=database_now(conn),
            status=case((runs.c.status == CRASHED, CRASHED), else_=status),
            summary=summary,
        )
    )


def run_summary(conn: Connection, run_id: str) -> tuple[str, dict[str, Any] | None] | None:
    """``(status, summary)`` of a run, or None when the catalog has no such run."""
    row = conn.execute(select(runs.c.status, runs.c.summary).where(runs.c.run_id == run_id)).first()
    return None if row is None else (row.status, row.summary)


def beat(conn: Connection, run_id: str) -> bool:
    """Refresh the run's heartbeat; False when the run is no longer ``running`` (another run
    took it for dead: its leases are gone, and its next landing is refused)."""
    result = conn.execute(
        update(runs)
        .where(and_(runs.c.run_id == run_id, runs.c.status == RUNNING))
        .values(heartbeat_at=database_now(conn))
    )
    return bool(result.rowcount)


def is_dead(row: Any, now: dt.datetime, heartbeat_seconds: float) -> bool:
    """Whether a ``running`` runs row belongs to a run that can no longer do anything.

    On this host: its process is gone. Elsewhere: four of its own beats (its row's
    ``heartbeat_seconds``, else ``heartbeat_seconds``) have passed since its last heartbeat,
    both read on the database's clock.
    """
    if row.host == host_id() and row.pid:
        return Process(row.host, int(row.pid), row.process_start).is_gone()
    if row.heartbeat_at is None:
        return False
    every = float(row.heartbeat_seconds or heartbeat_seconds)
    return (now - aware(row.heartbeat_at)).total_seconds() > 4 * every


def reap_dead_runs(conn: Connection, *, heartbeat_seconds: float) -> list[str]:
    """Mark every dead ``running`` run ``crashed`` and release the leases it held."""
    now = database_now(conn)
    rows = conn.execute(
        select(
            runs.c.run_id,
            runs.c.host,
            runs.c.pid,
            runs.c.process_start,
            runs.c.heartbeat_at,
            runs.c.heartbeat_seconds,
        ).where(runs.c.status == RUNNING)
    ).all()
    dead = [r.run_id for r in rows if is_dead(r, now, heartbeat_seconds)]
    if not dead:
        return []
    held = conn.execute(
        select(connector_state.c.connector, connector_state.c.lease_run_id).where(
            connector_state.c.lease_run_id.is_not(None)
        )
    ).all()
    for run_id in dead:
        conn.execute(
            update(runs)
            .where(and_(runs.c.run_id == run_id, runs.c.status == RUNNING))
            .values(status=CRASHED, finished_at=now)
        )
    for connector in sorted(r.connector for r in held if r.lease_run_id in dead):
        # By primary key: an unindexed UPDATE would lock every row InnoDB scans.
        conn.execute(
            update(connector_state)
            .where(connector_state.c.connector == connector)
            .values(lease_run_id=None, lease_until=None)
        )
    return dead


def live_runs(conn: Connection) -> set[str]:
    """Runs still ``running`` (call :func:`reap_dead_runs` first to drop the dead ones)."""
    return set(conn.execute(select(runs.c.run_id).where(runs.c.status == RUNNING)).scalars())


class Heartbeat:
    """A daemon thread that refreshes the run's ``heartbeat_at`` every ``every`` seconds."""

    def __init__(self, catalog: Catalog, run_id: str, *, every: float) -> None:
        self.catalog = catalog
        self.run_id = run_id
        self.every = every
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{run_id[:8]}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            # A missed beat is retried at the next one.
            with contextlib.suppress(CatalogError), self.catalog.begin() as conn:
                if not beat(conn, self.run_id) and not self.lost:
                    self.lost = True
                    _log.error(
                        "run %s was taken for dead by another run (no heartbeat for too long): its "
                        "connectors were taken over; what it still lands is refused",
                        self.run_id,
                    )


__all__ = [
    "CRASHED",
    "FAILED",
    "OK",
    "RUNNING",
    "Heartbeat",
    "Process",
    "beat",
    "finish_run",
    "host_id",
    "is_dead",
    "live_runs",
    "process_start",
    "reap_dead_runs",
    "run_summary",
    "start_run",
]
