"""`make server` (deployments/server.py) as an operator runs it: a real Prefect server, every
deployment of deployments/prefect.yaml, a process worker, all in one foreground process.

What must hold: the server's scheduler plans each connector's own deployment (`pull-<name>`) on
its registration's cron in Asia/Shanghai time; a pull deployment started with `prefect deployment
run` completes through the worker and its flow-run id is the catalog's run id; two runs of one
deployment started together never run at the same time (the deployment's concurrency limit
queues the second); a failing connector ends its run Failed with a readable message, not
Crashed; SIGTERM stops the worker and the server with nothing left behind. Once more with the
server's database on the local PostgreSQL (ONCEONLY_PREFECT_DB=postgres), which must be there:
that test fails, it does not skip, when PostgreSQL does not answer; there a worker killed
makes `make server` stop the server and exit 1 naming the worker.

Prefect 3.8's scheduler creates no run under SQLAlchemy 2.1 unless `make server` mends it
(deployments.server.ignore_state_in_bulk_inserts): the first test is what catches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml

from connectors.registration import load_registrations
from departments import generate_all

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "connectors" / "registrations"
PASSPHRASE = "make-server-e2e-passphrase-0123456789-abcdef"
SHANGHAI = ZoneInfo("Asia/Shanghai")
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
READY = "make server: ready:"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running `python -m deployments.server` and what it was started with."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    home: Path
    log: Path
    api_url: str
    started_at: datetime

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self) -> Any:
        from prefect.client.orchestration import get_client

        return get_client(sync_client=True)

    def api(self) -> Any:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: self.api_url})

    def deployment_run(self, name: str) -> subprocess.Popen[str]:
        """`prefect deployment run daily_sharing/<name>`, as an operator types it (not waited for)."""
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "deployment", "run", f"daily_sharing/{name}"],
            env={**self.env, "PREFECT_API_URL": self.api_url},  # as the ready message says
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def started_run(self, command: subprocess.Popen[str]) -> uuid.UUID:
        out, _ = command.communicate(timeout=120)
        assert command.returncode == 0, out
        found = re.search(r"UUID: ([0-9a-f-]{36})", out)
        assert found, out
        return uuid.UUID(found.group(1))

    def create_run(self, name: str) -> uuid.UUID:
        """A run of the deployment ``daily_sharing/<name>`` created through the API, at once."""
        with self.api(), self.client() as client:
            deployment = client.read_deployment_by_name(f"daily_sharing/{name}")
            run_id: uuid.UUID = client.create_flow_run_from_deployment(deployment.id).id
            return run_id

    def wait_final(self, run_ids: list[uuid.UUID], timeout: float = 300) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self.api(), self.client() as client:
            while time.monotonic() < deadline:
                runs = [client.read_flow_run(run_id) for run_id in run_ids]
                if all(r.state and r.state.is_final() for r in runs):
                    return runs
                assert self.process.poll() is None, self.output()[-3000:]
                time.sleep(1)
        pytest.fail(f"runs {run_ids} did not finish; make server said:\n{self.output()[-4000:]}")

    def catalog_runs(self) -> dict[str, str]:
        engine = sa.create_engine(f"sqlite:///{self.home / 'catalog.db'}")
        try:
            with engine.connect() as conn:
                return {r.run_id: r.status for r in conn.execute(sa.text("SELECT run_id, status FROM runs"))}
        finally:
            engine.dispose()

    def pause_every_deployment(self) -> None:
        """No scheduled run may start during the test (an hourly pull, the watch): pausing deletes
        the runs the scheduler planned and plans no more; runs started by hand still run."""
        with self.api(), self.client() as client:
            for deployment in client.read_deployments():
                client.pause_deployment(deployment.id)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def environment(root: Path, *registrations: dict[str, Any]) -> tuple[dict[str, str], Path]:
    """A clean environment (none of this process's PREFECT_* / ONCEONLY_*) for a fresh home whose
    registration folder holds ``registrations``, and that home."""
    home = root / "var"
    generate_all(home / "departments", rows=300, seed=11)
    folder = root / "registrations"
    folder.mkdir()
    for reg in registrations:
        (folder / f"{reg['name']}.yaml").write_text(yaml.safe_dump(reg, allow_unicode=True), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ONCEONLY_"))}
    env |= {
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        # Three planned runs per deployment are enough to see the cron (default: up to 100 each).
        "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "3",
        # A run kept waiting by its deployment's concurrency limit tries again after 2 s, not 30.
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "ONCEONLY_PREFECT_PORT": str(free_port()),
        "ONCEONLY_HOME": str(home),
        "ONCEONLY_KEY_PASSPHRASE": PASSPHRASE,
        "ONCEONLY_REGISTRATIONS_DIR": str(folder),
        "ONCEONLY_SOURCE_ROOTS": str(home / "departments"),
        "ONCEONLY_RETRY_WAIT_SECONDS": "0",
        "ONCEONLY_CONNECTOR_ATTEMPTS": "1",
    }
    return env, home


def shipped(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((SHIPPED / f"{name}.yaml").read_text(encoding="utf-8"))
    return data


def start(env: dict[str, str], home: Path, log: Path) -> Server:
    """`python -m deployments.server` (what `make server` runs), waited for until it is ready."""
    started_at = datetime.now(SHANGHAI)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "deployments.server"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Server(
        process, env, home, log, f"http://127.0.0.1:{env['ONCEONLY_PREFECT_PORT']}/api", started_at
    )
    deadline = time.monotonic() + 240
    while READY not in server.output():
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"make server did not get ready:\n{server.output()[-5000:]}")
        time.sleep(1)
    return server


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` and every member of their process groups."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # pid (comm) state ppid pgrp ...: split after the command, which may hold spaces
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[2]))
    children = {p for p, (ppid, _) in stats.items() if ppid == pid}
    return children | {p for p, (_, group) in stats.items() if group in children}


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0")).strip()
    return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone but unreaped
    return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("make-server")
    broken = shipped("weijian-births")  # its system's database file is not there
    broken["options"] = {**broken["options"], "url": "sqlite:///{home}/departments/nowhere/births.db"}
    env, home = environment(root, shipped("gongan-household"), broken)
    running = start(env, home, root / "make-server.log")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def quiet(server: Server) -> Server:
    server.pause_every_deployment()
    return server


def test_the_scheduler_plans_each_pull_deployment_on_its_registrations_cron(server: Server) -> None:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy
    from prefect.server.schemas.schedules import CronSchedule

    registrations = load_registrations(SHIPPED)
    names = [f"pull-{name}" for name in registrations]
    with server.api(), server.client() as client:
        deployments = client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[*names, "daily", "watch"]))
        )
        assert sorted(d.name for d in deployments) == sorted([*names, "daily", "watch"])
        planned: dict[str, list[datetime]] = {}
        deadline = time.monotonic() + 90
        for deployment in (d for d in deployments if d.name in names):
            # The deployment's own limit: one run at a time, the next one queued (ENQUEUE).
            assert deployment.global_concurrency_limit and deployment.global_concurrency_limit.limit == 1
            assert deployment.concurrency_options
            assert deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
            while True:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]),
                        state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Scheduled"])),
                    )
                )
                if len(runs) >= 3 or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert all("auto-scheduled" in r.tags for r in runs)
            planned[deployment.name] = sorted(r.expected_start_time for r in runs)
    for name, reg in registrations.items():
        times = planned[f"pull-{name}"]
        assert len(times) == 3, f"the scheduler planned {times} for pull-{name}:\n{server.output()[-3000:]}"
        cron = CronSchedule(cron=reg.schedule, timezone="Asia/Shanghai")
        assert times == asyncio.run(cron.get_dates(n=3, start=times[0])), (name, reg.schedule, times)
        # The first is the next one due after the server started (or the one after, at a boundary).
        assert times[0] in asyncio.run(cron.get_dates(n=2, start=server.started_at))
    births = [t.astimezone(SHANGHAI) for t in planned["pull-weijian-births"]]
    assert {(t.hour, t.minute) for t in births} == {(1, 10)}  # "10 1 * * *" in Shanghai, not UTC
    assert [t.date() for t in births] == [births[0].date() + timedelta(days=i) for i in range(3)]


def test_a_pull_deployment_runs_through_the_worker_one_run_at_a_time(quiet: Server) -> None:
    from prefect.client.schemas.objects import StateType

    # Two runs at once (the second a moment after the first, not after the first is done): the
    # deployment's concurrency limit must keep the second off the connector until the first is
    # done; without it, the second would fail on the connector's lease (ConnectorBusy).
    run_ids = [quiet.started_run(quiet.deployment_run("pull-gongan-household"))]
    run_ids.append(quiet.create_run("pull-gongan-household"))

    runs = quiet.wait_final(run_ids)

    assert all(r.state.is_completed() for r in runs), [(r.state.type, r.state.message) for r in runs]
    assert all(r.parameters == {"connectors": ["gongan-household"]} for r in runs)
    catalog = quiet.catalog_runs()
    assert [catalog.get(str(run_id)) for run_id in run_ids] == ["ok", "ok"]  # one id: the UI's flow run
    with quiet.api(), quiet.client() as client:
        histories = [client.read_flow_run_states(run_id) for run_id in run_ids]
    spans = []
    for states in histories:
        running = [s.timestamp for s in states if s.type == StateType.RUNNING]
        final = [s.timestamp for s in states if s.is_final()]
        spans.append((min(running), max(final)))
    first, second = sorted(spans)
    assert first[1] <= second[0], f"the two runs overlapped: {spans}"
    waited = [s.name for states in histories for s in states]
    assert "AwaitingConcurrencySlot" in waited, [[(s.name, s.timestamp) for s in h] for h in histories]


def test_a_failing_connector_fails_its_run_readably_without_a_crash(quiet: Server) -> None:
    (run_id,) = [quiet.started_run(quiet.deployment_run("pull-weijian-births"))]

    (run,) = quiet.wait_final([run_id])

    state = run.state
    assert state.is_failed() and not state.is_crashed(), (state.type, state.message)
    assert "weijian-births" in state.message and "Traceback" not in state.message, state.message
    assert quiet.catalog_runs().get(str(run_id)) == "failed"


def test_sigterm_stops_the_worker_and_the_server_with_nothing_left(server: Server) -> None:
    children = children_of(server.process.pid)
    commands = {command_line(pid) for pid in children}
    assert any("prefect server start" in c for c in commands) and any(
        "prefect worker start" in c for c in commands
    )

    server.process.send_signal(signal.SIGTERM)

    assert server.process.wait(timeout=90) == 0, server.output()[-3000:]
    assert server.output().rstrip().endswith("make server: stopped")
    deadline = time.monotonic() + 10
    while [pid for pid in children if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if alive(pid)], "children of make server outlived it"


def test_on_postgresql_a_pull_deployment_runs_and_a_dead_worker_stops_the_server(tmp_path: Path) -> None:
    admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:  # required: this test fails, it does not skip
        pytest.fail(f"PostgreSQL is not reachable at 127.0.0.1:5432 (user postgres): {exc}")
    database = f"onceonly_prefect_{uuid.uuid4().hex[:12]}"
    env, home = environment(tmp_path, shipped("gongan-household"))
    env |= {"ONCEONLY_PREFECT_DB": "postgres", "ONCEONLY_PREFECT_PG_DB": database}
    server = None
    try:
        server = start(env, home, tmp_path / "make-server.log")
        assert f"created the PostgreSQL database '{database}'" in server.output()
        server.pause_every_deployment()
        (run_id,) = [server.started_run(server.deployment_run("pull-gongan-household"))]
        (run,) = server.wait_final([run_id])
        assert run.state.is_completed(), (run.state.type, run.state.message)
        assert server.catalog_runs().get(str(run_id)) == "ok"
        prefect_db = sa.create_engine(POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{database}")
        try:
            with prefect_db.connect() as conn:  # the server kept its state there, not in SQLite
                names = set(conn.execute(sa.text("SELECT name FROM deployment")).scalars())
                ran = conn.execute(
                    sa.text("SELECT state_type FROM flow_run WHERE id = :i"), {"i": run_id}
                ).scalar()
        finally:
            prefect_db.dispose()
        assert {"daily", "watch", "pull-gongan-household"} <= names
        assert ran == "COMPLETED"
        assert not (tmp_path / "prefect" / "prefect.db").exists()

        # A child that dies stops the others, and make server exits 1 naming it.
        children = children_of(server.process.pid)
        (worker,) = [pid for pid in children if "prefect worker start" in command_line(pid)]
        os.killpg(worker, signal.SIGKILL)
        assert server.process.wait(timeout=90) == 1, server.output()[-3000:]
        assert "make server: prefect worker exited with code -9; stopping the others" in server.output()
        deadline = time.monotonic() + 10
        while [pid for pid in children if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in children if alive(pid)], "the server outlived the worker's death"
    finally:
        if server is not None:
            server.stop()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()
