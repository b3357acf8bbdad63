"""SIGKILL at each stage boundary, then a rerun: the result equals one clean run, byte for byte.

Each scenario copies the same starting home (generated department systems, a signing key),
runs ``onceonly run`` in a process that kills itself with SIGKILL at a named point
(tests/e2e/fault_runner.py), runs it again normally, and compares everything the product keeps
with a home that ran once without a fault: the lake's rows and files, the catalog's batches,
certificates, quarantine and cursors, the transparency log's size and root, the status lists,
the township extracts — and ``onceonly log verify`` must pass. The dead run must be marked
crashed and its connectors taken over at once (no 30-minute lease wait).

Both runs go through a real ``prefect server`` (the session's), as operators run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from departments import LicenceApi, demo_token, generate_all, local_registrations

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "fault_runner.py"
ROWS, SEED, BATCH = 300, 5, 100
PASSPHRASE = "fault-tests-passphrase-0123456789-abcdef"

# (point, on which occurrence): connectors run in name order, batches of 100 — budongchan 2,
# gongan 3, minzheng 3, renshe 3 (the snapshot connector), scjg 3, weijian 1. Occurrence 4 is
# the middle of the second connector, 2 the last batch of the first (its connector then has
# nothing new, so only the next run's start-up recovery can publish that batch), 10 the middle
# of the snapshot connector (its staged changes must resume, not be re-read); extracts and
# status lists come after every connector.
KILLS = [
    ("after-pull", 4),
    ("after-validation", 4),
    ("mid-issuance", 4),
    ("after-commit", 4),
    ("after-commit", 2),
    ("after-commit", 10),
    ("mid-extract", 3),
    ("after-status-commit", 1),
]


@dataclass
class Setup:
    template: Path
    registrations: Path
    env: dict[str, str]
    root: Path

    def home(self, name: str) -> Path:
        home = self.root / name
        shutil.copytree(self.template, home)
        return home

    def run(self, home: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(RUNNER)]
        if kill_at:
            command += ["--kill-at", kill_at]
        return subprocess.run(
            [*command, "--", *args],
            env={**self.env, "ONCEONLY_HOME": str(home)},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )


@pytest.fixture(scope="module")
def setup(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("faults")
    template = root / "template"
    generate_all(template / "departments", rows=ROWS, seed=SEED)
    token = demo_token(SEED)
    api = LicenceApi(template / "departments" / "scjg" / "licences.db", token=token)
    api.start()
    registrations = local_registrations(root / "registrations", api.base_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ONCEONLY_"))}
    env |= {
        "PREFECT_API_URL": prefect_server,
        "PREFECT_HOME": str(root / "prefect-client"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "ONCEONLY_KEY_PASSPHRASE": PASSPHRASE,
        "ONCEONLY_REGISTRATIONS_DIR": str(registrations),
        "ONCEONLY_BATCH_SIZE": str(BATCH),
        "ONCEONLY_CONNECTOR_ATTEMPTS": "1",
        "ONCEONLY_RETRY_WAIT_SECONDS": "0",
        "ONCEONLY_SECRET_SCJG_LICENCES_TOKEN": token,
    }
    made = Setup(template, registrations, env, root)
    keys = made.run(template, "keys", "init")  # one signing key for every home
    assert keys.returncode == 0, keys.stdout + keys.stderr
    try:
        yield made
    finally:
        api.stop()


def state_of(home: Path) -> dict[str, Any]:
    """Everything the product keeps, in a form two homes can be compared by."""
    from evidence.log import read_head, root_at

    engine = sa.create_engine(f"sqlite:///{home / 'catalog.db'}")
    try:
        with engine.connect() as conn:

            def rows(sql: str) -> list[tuple[Any, ...]]:
                return [tuple(r) for r in conn.execute(sa.text(sql))]

            head = read_head(conn)
            state: dict[str, Any] = {
                "tree_size": head.tree_size,
                "root": root_at(conn, head.tree_size).hex() if head.tree_size else None,
                "checkpoints": rows("SELECT tree_size, root_hash FROM checkpoints ORDER BY tree_size"),
                "batches": rows(
                    "SELECT batch_id, connector, pulled, accepted, quarantined, certificates, tree_size "
                    "FROM batches ORDER BY batch_id"
                ),
                "certificates": rows(
                    "SELECT leaf_index, cert_id, record_key, holder_id, status, version, township, list_no, "
                    "status_index FROM certificates ORDER BY leaf_index"
                ),
                "quarantine": sorted(
                    rows(
                        "SELECT batch_id, record_key, rule, severity, value_masked, resolved_by_batch "
                        "FROM quarantine"
                    ),
                    key=repr,
                ),
                "cursors": rows(
                    "SELECT connector, cursor, rows_pulled FROM connector_state ORDER BY connector"
                ),
                "status_lists": rows("SELECT issuer_code, list_no, document FROM status_lists ORDER BY 1, 2"),
            }
    finally:
        engine.dispose()
    lake = home / "lake"
    state["lake_files"] = sorted(
        str(p.relative_to(lake)) for p in lake.rglob("*.parquet") if "staging" not in p.parts
    )
    state["staging"] = sorted(str(p.relative_to(lake)) for p in (lake / "staging").rglob("*.parquet"))
    state["lake_rows"] = {
        str(p.relative_to(lake)): pq.read_table(p).to_pylist()
        for p in lake.rglob("*.parquet")
        if "staging" not in p.parts
    }
    extracts = home / "extracts"
    state["extracts"] = {
        str(p.relative_to(extracts)): pq.read_table(p).to_pylist() for p in extracts.rglob("*.parquet")
    }
    state["status_files"] = {p.name: p.read_text(encoding="utf-8") for p in (home / "status").glob("*.json")}
    return state


@pytest.fixture(scope="module")
def clean(setup: Setup) -> dict[str, Any]:
    home = setup.home("clean")
    done = setup.run(home, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    state = state_of(home)
    assert state["certificates"] and state["extracts"] and len(state["batches"]) == 17
    return state


def _runs(home: Path) -> list[str]:
    engine = sa.create_engine(f"sqlite:///{home / 'catalog.db'}")
    try:
        with engine.connect() as conn:
            return [r.status for r in conn.execute(sa.text("SELECT status FROM runs ORDER BY started_at"))]
    finally:
        engine.dispose()


@pytest.mark.parametrize(("point", "occurrence"), KILLS, ids=[f"{p}:{n}" for p, n in KILLS])
def test_a_run_killed_at_a_stage_boundary_is_finished_by_the_next(
    setup: Setup, clean: dict[str, Any], point: str, occurrence: int
) -> None:
    home = setup.home(f"killed-{point}-{occurrence}")
    killed = setup.run(home, "run", kill_at=f"{point}:{occurrence}")
    assert killed.returncode == -9, (
        f"{point} was never reached:\n{killed.stdout[-3000:]}{killed.stderr[-3000:]}"
    )

    rerun = setup.run(home, "run")

    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "is pulling it" not in rerun.stdout  # the dead run's leases were taken over at once
    assert _runs(home) == ["crashed", "ok"]
    after = state_of(home)
    assert after["staging"] == []
    for key in clean:
        assert after[key] == clean[key], f"{point}: {key} differs from a clean run"
    verified = setup.run(home, "log", "verify")
    assert verified.returncode == 0 and "CONSISTENT" in verified.stdout, verified.stdout + verified.stderr
