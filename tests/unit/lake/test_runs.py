"""Runs in the catalog: a dead run is told from a live one, marked crashed, and its leases freed."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from catalog import Catalog, connector_state, runs
from connectors.state import acquire_lease, release_lease
from lake.runs import (
    CRASHED,
    OK,
    RUNNING,
    Heartbeat,
    Process,
    finish_run,
    host_id,
    live_runs,
    process_start,
    reap_dead_runs,
    run_summary,
    start_run,
)
from onceonly.errors import ConnectorBusy


def _dead_process() -> Process:
    """A process of this host that has exited (its pid is not reused within the test)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start(child.pid)
    child.wait()
    return Process(host_id(), child.pid, start)


def _status(catalog: Catalog, run_id: str) -> str:
    with catalog.read() as conn:
        return str(conn.execute(sa.select(runs.c.status).where(runs.c.run_id == run_id)).scalar_one())


def test_this_process_is_alive_and_an_exited_one_is_gone() -> None:
    me = Process.current()
    assert me.start is not None and not me.is_gone()
    assert _dead_process().is_gone()
    # The same pid with another start time is another process (the pid was reused).
    assert Process(me.host, me.pid, (me.start or 0) + 1).is_gone()


def test_a_run_whose_process_died_is_crashed_and_its_lease_taken_over(catalog: Catalog) -> None:
    with catalog.begin() as conn:
        start_run(conn, "dead", heartbeat_seconds=30, process=_dead_process())
        acquire_lease(conn, "gongan-household", "household", "dead", 1800)
        start_run(conn, "alive", heartbeat_seconds=30)
    with pytest.raises(ConnectorBusy, match="run dead is pulling it"), catalog.begin() as conn:
        acquire_lease(conn, "gongan-household", "household", "alive", 1800)  # not yet known dead
    with catalog.begin() as conn:
        assert reap_dead_runs(conn, heartbeat_seconds=30) == ["dead"]
        assert live_runs(conn) == {"alive"}
    assert _status(catalog, "dead") == CRASHED and _status(catalog, "alive") == RUNNING
    with catalog.begin() as conn:  # released with the crash: taken over at once, not after 30 min
        acquire_lease(conn, "gongan-household", "household", "alive", 1800)
    with catalog.read() as conn:
        holder = conn.execute(sa.select(connector_state.c.lease_run_id)).scalar_one()
    assert holder == "alive"
    with catalog.begin() as conn:
        assert reap_dead_runs(conn, heartbeat_seconds=30) == []  # reaped once


def test_a_live_run_keeps_its_lease(catalog: Catalog) -> None:
    with catalog.begin() as conn:
        start_run(conn, "first", heartbeat_seconds=30)
        acquire_lease(conn, "c", "household", "first", 1800)
        assert reap_dead_runs(conn, heartbeat_seconds=30) == []
    with pytest.raises(ConnectorBusy, match="run first is pulling it"), catalog.begin() as conn:
        acquire_lease(conn, "c", "household", "second", 1800)


def test_a_finished_run_never_blocks_and_its_summary_is_kept(catalog: Catalog) -> None:
    with catalog.begin() as conn:
        start_run(conn, "r1", heartbeat_seconds=30)
        acquire_lease(conn, "c", "household", "r1", 1800)
        finish_run(conn, "r1", OK, {"connectors": [], "run_id": "r1"})  # without releasing (a bug)
    with catalog.begin() as conn:
        acquire_lease(conn, "c", "household", "r2", 1800)  # the holder's run ended: taken over
        release_lease(conn, "c", "r2")
    with catalog.read() as conn:
        assert run_summary(conn, "r1") == (OK, {"connectors": [], "run_id": "r1"})
        assert run_summary(conn, "nope") is None


def test_a_run_on_another_host_is_dead_when_its_heartbeat_is_stale(catalog: Catalog) -> None:
    elsewhere = Process("worker-2.example/abcdef12/4026531836", 4242, 1)
    with catalog.begin() as conn:
        start_run(conn, "remote", heartbeat_seconds=30, process=elsewhere)
        start_run(conn, "remote-stale", heartbeat_seconds=30, process=elsewhere)
        old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        conn.execute(sa.update(runs).where(runs.c.run_id == "remote-stale").values(heartbeat_at=old))
        # Another host's pid says nothing here: only the heartbeat counts.
        assert reap_dead_runs(conn, heartbeat_seconds=30) == ["remote-stale"]


def test_the_heartbeat_keeps_a_run_alive(catalog: Catalog) -> None:
    with catalog.begin() as conn:
        start_run(conn, "beating", heartbeat_seconds=30, process=Process("other-host/1/2", 1, 1))
        old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        conn.execute(sa.update(runs).values(heartbeat_at=old))
    with Heartbeat(catalog, "beating", every=0.05):
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
        while dt.datetime.now(dt.UTC) < deadline:
            with catalog.read() as conn:
                beat_at = conn.execute(sa.select(runs.c.heartbeat_at)).scalar_one()
            if (beat_at if beat_at.tzinfo else beat_at.replace(tzinfo=dt.UTC)) > old:
                break
    with catalog.begin() as conn:
        assert reap_dead_runs(conn, heartbeat_seconds=30) == []


def test_the_host_id_names_this_host() -> None:
    import socket

    assert host_id().startswith(socket.gethostname()) and len(host_id()) <= 255
    assert process_start(os.getpid()) == Process.current().start


def test_a_retried_flow_run_starts_its_row_again(catalog: Catalog) -> None:
    with catalog.begin() as conn:
        start_run(conn, "flow-run-1", heartbeat_seconds=30, process=_dead_process())
    with catalog.begin() as conn:  # Prefect retries the flow run: same id, a new process
        assert reap_dead_runs(conn, heartbeat_seconds=30) == ["flow-run-1"]
        start_run(conn, "flow-run-1", heartbeat_seconds=30)
    assert _status(catalog, "flow-run-1") == RUNNING
    with catalog.begin() as conn:
        assert reap_dead_runs(conn, heartbeat_seconds=30) == []


def test_a_run_taken_for_dead_learns_it_and_stays_crashed(catalog: Catalog) -> None:
    from lake.runs import beat

    elsewhere = Process("other-host/1/2", 7, 1)
    with catalog.begin() as conn:
        start_run(conn, "slow", heartbeat_seconds=30, process=elsewhere)
        assert beat(conn, "slow")
        old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        conn.execute(sa.update(runs).values(heartbeat_at=old))
        assert reap_dead_runs(conn, heartbeat_seconds=30) == ["slow"]
        assert not beat(conn, "slow")  # its heartbeat thread finds out
        finish_run(conn, "slow", OK, {"connectors": []})
    assert _status(catalog, "slow") == CRASHED  # not overwritten by the run that was taken over


def test_each_run_is_judged_by_its_own_heartbeat_interval(catalog: Catalog) -> None:
    elsewhere = Process("other-host/1/2", 7, 1)
    with catalog.begin() as conn:
        start_run(conn, "slow-beats", heartbeat_seconds=300, process=elsewhere)
        four_minutes_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=4)
        conn.execute(sa.update(runs).values(heartbeat_at=four_minutes_ago))
        # Four of ITS beats are 20 minutes: a reaper whose own interval is 30 s must wait.
        assert reap_dead_runs(conn, heartbeat_seconds=30) == []
