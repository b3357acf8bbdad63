"""The daily flow on Dask (``ONCEONLY_TASK_RUNNER=dask``) against the thread runner, same input.

Two homes get the same generated department systems and the same signing key; the daily run
goes once with threads and once on a LocalCluster of two worker processes. With the clock and
the certificates' salts and status-list positions fixed (all that differs between two honest runs),
the two catalogs must hold the same certificates and the two logs the same leaves and root:
Dask pulls and validates on its workers, but what lands, and in which order, is the same.

One thing differs between any two runs whatever the runner: a snapshot connector's generation
names (time and a random suffix, ``connectors.snapshot``) enter its cursor and so its batch ids.
Its connector lands last here: the logs are compared leaf for leaf up to its first batch, and
its certificates apart from their batch id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from random import Random
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from departments import LicenceApi, demo_token, generate_all, local_registrations
from onceonly.settings import Settings

pytestmark = pytest.mark.e2e

ROWS = 300
SEED = 11
PASSPHRASE = "dask-e2e-passphrase-0123456789-abcdef"
SNAPSHOT_CONNECTOR = "renshe-insurance"
FIXED_NOW = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)


class _Salts:
    """Deterministic 16-byte salts, the same sequence for each run (reset between runs)."""

    def __init__(self) -> None:
        self.issued = 0

    def __call__(self, count: int) -> list[bytes]:
        start, self.issued = self.issued, self.issued + count
        return [hashlib.sha256(b"salt-%d" % i).digest()[:16] for i in range(start, start + count)]


@dataclass
class Outcome:
    state: Any
    summary: Any
    catalog_url: str


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LicenceApi]]:
    root = tmp_path_factory.mktemp("dask-sources")
    generate_all(root / "departments", rows=ROWS, seed=SEED)
    api = LicenceApi(root / "departments" / "scjg" / "licences.db", token=demo_token(SEED))
    api.start()
    try:
        yield root, api
    finally:
        api.stop()
        shutil.rmtree(root, ignore_errors=True)


def _run(root: Path, sources: tuple[Path, LicenceApi], runner: str, keys: Path | None) -> Outcome:
    from flows.daily_sharing import daily_sharing, summary_of
    from flows.runners import task_runner_for

    source_root, api = sources
    home = root / "var"
    shutil.copytree(source_root / "departments", home / "departments")
    if keys is not None:  # the same signing key: the checkpoints logged in the log are the same
        shutil.copytree(keys, home / "keys")
    regs = local_registrations(root / "registrations", api.base_url)
    mp = pytest.MonkeyPatch()
    salts = _Salts()
    for module in ("evidence.issuance", "evidence.log"):
        mp.setattr(f"{module}.new_salts", salts)
    for module in ("lake.landing", "evidence.log", "evidence.lifecycle", "evidence.status_list"):
        mp.setattr(f"{module}.utcnow", lambda: FIXED_NOW)
    # The status lists' random permutation (W3C herd privacy) places each certificate's status
    # entry, which its log leaf carries: the same permutation for both runs.
    mp.setattr("evidence.status_list.os", SimpleNamespace(urandom=lambda n: Random(SEED).randbytes(n)))
    mp.delenv("ONCEONLY_DATABASE_URL", raising=False)
    mp.setenv("ONCEONLY_SECRET_SCJG_LICENCES_TOKEN", demo_token(SEED))
    settings = Settings(
        home=home,
        key_passphrase=PASSPHRASE,
        registrations_dir=regs,
        retry_wait_seconds=0,
        connector_attempts=1,
        batch_size=128,  # several batches per connector: their order matters
        task_runner=runner,
        dask_workers=2,
    )
    try:
        names = sorted(p.stem for p in regs.glob("*.yaml") if p.stem != SNAPSHOT_CONNECTOR)
        flow = daily_sharing.with_options(task_runner=task_runner_for(settings))
        state = flow(connectors=[*names, SNAPSHOT_CONNECTOR], settings=settings, return_state=True)
        return Outcome(state, summary_of(state, settings), settings.catalog_url)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def both(
    tmp_path_factory: pytest.TempPathFactory, prefect_harness: None, sources: tuple[Path, LicenceApi]
) -> Iterator[tuple[Outcome, Outcome]]:
    thread_root = tmp_path_factory.mktemp("thread")
    dask_root = tmp_path_factory.mktemp("dask")
    try:
        threads = _run(thread_root, sources, "thread", None)
        dask = _run(dask_root, sources, "dask", thread_root / "var" / "keys")
        yield threads, dask
    finally:
        shutil.rmtree(thread_root, ignore_errors=True)
        shutil.rmtree(dask_root, ignore_errors=True)


def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(query)]
    finally:
        engine.dispose()


def test_both_runs_land_every_connector(both: tuple[Outcome, Outcome]) -> None:
    threads, dask = both
    assert threads.state.is_completed(), threads.state.message
    assert dask.state.is_completed(), dask.state.message
    by_thread = {
        c.connector: (c.pulled, c.accepted, c.quarantined, c.certificates) for c in threads.summary.connectors
    }
    by_dask = {
        c.connector: (c.pulled, c.accepted, c.quarantined, c.certificates) for c in dask.summary.connectors
    }
    assert by_dask == by_thread
    assert sum(c.pulled for c in dask.summary.connectors) > 5 * ROWS // 2


def test_same_certificates(both: tuple[Outcome, Outcome]) -> None:
    threads, dask = both
    query = (
        "SELECT cert_id, dataset, record_key, holder_id, holder_name, type_code, serial, version, status,"
        " issue_date, valid_from, valid_to, township, content_sha256, leaf_index, list_no, status_index,"
        " CASE WHEN dataset = 'social_insurance' THEN '' ELSE batch_id END FROM certificates ORDER BY cert_id"
    )
    expected = _rows(threads.catalog_url, query)
    assert len(expected) > ROWS
    assert _rows(dask.catalog_url, query) == expected


def _snapshot_start(url: str) -> int:
    """The index of the checkpoint leaf that opens the snapshot connector's first append."""
    (first,) = _rows(url, "SELECT MIN(leaf_index) FROM certificates WHERE dataset = 'social_insurance'")[0]
    return int(first) - 1


def test_same_log_leaves_and_root_before_the_snapshot_connector(both: tuple[Outcome, Outcome]) -> None:
    threads, dask = both
    start = _snapshot_start(threads.catalog_url)
    assert start > ROWS and _snapshot_start(dask.catalog_url) == start
    # Leaves are stored one row each (receipts, checkpoints) or packed per append (certificates).
    for query in (
        f"SELECT leaf_index, leaf_hash, kind, ref FROM log_leaves WHERE leaf_index <= {start} ORDER BY 1",
        f"SELECT first_leaf, leaf_count, leaf_hashes FROM log_bundles WHERE first_leaf < {start} ORDER BY 1",
    ):
        expected = _rows(threads.catalog_url, query)
        assert len(expected) > 5
        assert _rows(dask.catalog_url, query) == expected
    root = f"SELECT tree_size, root_hash, note FROM checkpoints WHERE tree_size = {start}"
    assert len(_rows(threads.catalog_url, root)) == 1
    assert _rows(dask.catalog_url, root) == _rows(threads.catalog_url, root)
    # After it: the same leaves of the same kinds, in the same places.
    kinds = "SELECT leaf_index, kind FROM log_leaves ORDER BY 1"
    assert _rows(dask.catalog_url, kinds) == _rows(threads.catalog_url, kinds)
    bundles = "SELECT first_leaf, leaf_count FROM log_bundles ORDER BY 1"
    assert _rows(dask.catalog_url, bundles) == _rows(threads.catalog_url, bundles)
    assert threads.summary.tree_size == dask.summary.tree_size > start


def test_connectors_were_pulled_on_the_dask_workers(both: tuple[Outcome, Outcome]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    _, dask = both
    run_id = dask.state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id]))
        )
    pulled = sorted(
        t.name.removeprefix("pull-and-validate-") for t in tasks if t.name.startswith("pull-and-validate")
    )
    assert pulled == sorted(c.connector for c in dask.summary.connectors)
    assert all(t.state and t.state.is_completed() for t in tasks if t.name.startswith("pull-and-validate"))
    assert len(subflows) == len(pulled)  # each connector still lands in its own subflow
