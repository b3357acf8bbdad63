"""The production path: a real `prefect server`, `prefect deploy`, a process worker, a deployment run.

As an operator runs it: the work pool and the deployment of deployments/prefect.yaml are created
with Prefect's own CLI from the repository root, a `prefect worker` starts the run in its own
process, and the outcome is read back from the server and the catalog. A run with a failing
connector (an unreachable system) and a breaching one (40 % bad rows) must end Failed with a
readable message and its summary artifact — not crash the engine — and show no traceback for
these expected outcomes; the catalog's run id is the Prefect flow-run id.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from departments import generate_all

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "worker-e2e-passphrase-0123456789-abcdef"


@dataclass
class Operator:
    api_url: str
    env: dict[str, str]
    home: Path
    registrations: Path
    worker_log: Path

    def prefect(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def run_deployment(self) -> Any:
        """`prefect deployment run daily_sharing/daily`, waited for through the API."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with (
            temporary_settings(updates={PREFECT_API_URL: self.api_url}),
            get_client(sync_client=True) as client,
        ):
            deployment = client.read_deployment_by_name("daily_sharing/daily")
            flow_run = client.create_flow_run_from_deployment(deployment.id)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                flow_run = client.read_flow_run(flow_run.id)
                if flow_run.state and flow_run.state.is_final():
                    return flow_run
                time.sleep(1)
        pytest.fail(f"the deployment run did not finish; worker log:\n{self.worker_log.read_text()[-3000:]}")

    def logs_and_artifacts(self, flow_run_id: Any) -> tuple[list[str], list[Any]]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            ArtifactFilter,
            ArtifactFilterFlowRunId,
            FlowRunFilter,
            FlowRunFilterParentFlowRunId,
            LogFilter,
            LogFilterFlowRunId,
        )
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with (
            temporary_settings(updates={PREFECT_API_URL: self.api_url}),
            get_client(sync_client=True) as client,
        ):
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
                )
            )
            ids = [flow_run_id, *(c.id for c in children)]
            time.sleep(2)  # the worker's process sends its last logs in batches
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )
        return [log.message for log in logs], artifacts

    def catalog_run(self, run_id: str) -> Any:
        engine = sa.create_engine(f"sqlite:///{self.home / 'catalog.db'}")
        try:
            with engine.connect() as conn:
                return conn.execute(
                    sa.text("SELECT status, summary FROM runs WHERE run_id = :r"), {"r": run_id}
                ).first()
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def operator(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    root = tmp_path_factory.mktemp("worker")
    home = root / "var"
    generate_all(home / "departments", rows=300, seed=11)
    registrations = root / "registrations"
    registrations.mkdir()
    shutil.copy(REPO / "connectors" / "registrations" / "gongan-household.yaml", registrations)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ONCEONLY_"))}
    env |= {
        "PREFECT_API_URL": prefect_server,
        "PREFECT_HOME": str(root / "prefect-client"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "ONCEONLY_HOME": str(home),
        "ONCEONLY_KEY_PASSPHRASE": PASSPHRASE,
        "ONCEONLY_REGISTRATIONS_DIR": str(registrations),
        "ONCEONLY_RETRY_WAIT_SECONDS": "0",
        "ONCEONLY_CONNECTOR_ATTEMPTS": "1",
        "ONCEONLY_REPO": str(REPO),
    }
    op = Operator(prefect_server, env, home, registrations, root / "worker.log")
    op.prefect("work-pool", "create", "onceonly", "--type", "process", "--overwrite")
    # The command deployments/prefect.yaml's header gives, from the repository root.
    op.prefect("--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
    with op.worker_log.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "onceonly", "--limit", "1"],
            env=env,
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield op
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()


def test_a_worker_runs_the_daily_deployment_and_the_catalog_names_its_flow_run(operator: Operator) -> None:
    flow_run = operator.run_deployment()
    assert flow_run.state.is_completed(), flow_run.state.message
    row = operator.catalog_run(str(flow_run.id))
    assert row is not None and row.status == "ok"  # one id: the catalog row is the UI's flow run
    messages, artifacts = operator.logs_and_artifacts(flow_run.id)
    assert {"daily-sharing-summary", "daily-sharing-report"} <= {a.key for a in artifacts}
    (report,) = [a for a in artifacts if a.key == "daily-sharing-report"]
    assert "**Every connector landed.**" in str(report.data)
    assert any("gongan-household: batch 1" in m and "rows/s" in m for m in messages)


def _breaching_copy(home: Path, target: Path) -> None:
    shutil.copy(home / "departments" / "gongan" / "household.db", target)
    with sqlite3.connect(target) as db:  # 40 % of the rows in a township the district does not have
        db.execute("UPDATE household_member SET township_code = '120114999000' WHERE id % 5 < 2")


def test_failing_and_breaching_connectors_fail_the_run_readably_without_a_crash(operator: Operator) -> None:
    gongan = yaml.safe_load((operator.registrations / "gongan-household.yaml").read_text(encoding="utf-8"))
    broken = {**gongan, "name": "xx-broken-household"}
    broken["options"] = {**gongan["options"], "url": "sqlite:///{home}/departments/nowhere/household.db"}
    _breaching_copy(operator.home, operator.home / "departments" / "breaching.db")
    breaching = {**gongan, "name": "zz-breaching-household"}
    breaching["options"] = {**gongan["options"], "url": "sqlite:///{home}/departments/breaching.db"}
    for reg in (broken, breaching):
        path = operator.registrations / f"{reg['name']}.yaml"
        path.write_text(yaml.safe_dump(reg, allow_unicode=True), encoding="utf-8")

    flow_run = operator.run_deployment()

    state = flow_run.state
    assert state.is_failed() and not state.is_crashed(), (state.type, state.message)
    assert "xx-broken-household" in state.message and "zz-breaching-household" in state.message
    assert "rules broken: township_code.region_code" in state.message
    worker_output = operator.worker_log.read_text(errors="replace")
    assert "Unexpected result for failed state" not in worker_output
    assert "Traceback" not in worker_output
    messages, artifacts = operator.logs_and_artifacts(flow_run.id)
    assert {"daily-sharing-summary", "daily-sharing-report"} <= {a.key for a in artifacts}
    (report,) = [a for a in artifacts if a.key == "daily-sharing-report"]
    assert "### zz-breaching-household (household): breached" in str(report.data)
    assert "the next run resumes from the last landed batch" in str(report.data)  # xx: transient
    assert not [m for m in messages if "Traceback" in m], "an expected failure logged a traceback"
    row = operator.catalog_run(str(flow_run.id))
    assert row is not None and row.status == "failed"
    summary = row.summary if isinstance(row.summary, dict) else json.loads(row.summary)
    by_name = {c["connector"]: c for c in summary["connectors"]}
    assert by_name["gongan-household"]["status"] == "ok"
    assert by_name["xx-broken-household"]["status"] == "failed"
    assert by_name["xx-broken-household"]["cause"] == "transient"
    assert by_name["zz-breaching-household"]["status"] == "breached"
    assert by_name["zz-breaching-household"]["pulled"] == 300
