"""Pulling ahead (flows.ahead), without a cluster: the task's function, the spool, the replay.

The whole flow on a real LocalCluster, against the thread runner, is tests/e2e/test_dask_runner.py.
"""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from connectors import load_registrations
from departments import generate_all
from flows.ahead import Ahead, Prepared, PullCrashed, clear_dead_spools, pull_and_validate
from onceonly.errors import SourceSchemaChanged, SourceUnavailable
from onceonly.settings import Settings

CONNECTOR = "gongan-household"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "var"
    generate_all(home / "departments", rows=250, seed=3)
    return Settings(home=home, batch_size=100)


def _prepare(settings: Settings, spool: Path, cursor: Any = None) -> Prepared:
    registration = load_registrations(settings.registrations_dir)[CONNECTOR]
    prepared: Prepared = pull_and_validate.fn(CONNECTOR, registration, cursor, settings, spool)
    return prepared


class _Done:
    """A finished future (what PrefectFuture.result gives once the task ran)."""

    def __init__(self, value: Prepared) -> None:
        self.value = value

    def result(self) -> Prepared:
        return self.value

    def wait(self) -> None:
        return None


def _ahead(settings: Settings, prepared: Prepared) -> Ahead:
    ahead = Ahead.__new__(Ahead)
    ahead.futures = {prepared.connector: _Done(prepared)}  # type: ignore[dict-item]
    return ahead


def test_the_task_spools_each_validated_batch_privately(settings: Settings, tmp_path: Path) -> None:
    spool = settings.home / "spool" / "run-1" / CONNECTOR
    prepared = _prepare(settings, spool)
    assert prepared.error is None
    assert (prepared.batches, prepared.rows) == (3, 250)
    files = sorted(spool.iterdir())
    assert [f.name for f in files] == ["000000.pickle", "000001.pickle", "000002.pickle"]
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700


def test_replay_gives_the_batches_in_pull_order_and_clears_the_spool(settings: Settings) -> None:
    spool = settings.home / "spool" / "run-1" / CONNECTOR
    prepared = _prepare(settings, spool)
    ahead = _ahead(settings, prepared)
    taken = ahead.take(CONNECTOR, None)
    assert taken is prepared
    batches = list(ahead.replay(prepared))
    assert [pulled.batch.num_rows for pulled, _ in batches] == [100, 100, 50]
    assert sum(v.pulled for _, v in batches) == 250
    # each batch's cursor continues the one before (what landing checks)
    assert all(batches[i][0].cursor != batches[i + 1][0].cursor for i in range(2))
    assert not spool.exists()
    assert ahead.take(CONNECTOR, None) is None  # taken once


def test_a_spool_from_another_cursor_is_dropped_and_pulled_again_here(settings: Settings) -> None:
    spool = settings.home / "spool" / "run-1" / CONNECTOR
    prepared = _prepare(settings, spool)
    ahead = _ahead(settings, prepared)
    assert ahead.take(CONNECTOR, {"updated_at": "2030-01-01", "id": 1}) is None
    assert not spool.exists()


def test_a_pull_that_stops_lands_what_it_read_then_raises(settings: Settings, tmp_path: Path) -> None:
    prepared = _prepare(settings, tmp_path / "spool")
    prepared.error = SourceUnavailable(CONNECTOR, "connection reset after batch 3")
    ahead = _ahead(settings, prepared)
    replay = ahead.replay(prepared)
    landed = [next(replay) for _ in range(3)]
    assert len(landed) == 3
    with pytest.raises(SourceUnavailable, match="connection reset"):
        next(replay)


def test_a_source_error_is_kept_as_it_was_raised(settings: Settings, tmp_path: Path) -> None:
    registration = load_registrations(settings.registrations_dir)[CONNECTOR]
    broken = registration.model_copy(update={"options": {**registration.options, "table": "no_such_table"}})
    prepared: Prepared = pull_and_validate.fn(CONNECTOR, broken, None, settings, tmp_path / "spool")
    assert prepared.batches == 0
    assert isinstance(prepared.error, SourceSchemaChanged)
    assert (
        str(prepared.error) == f"connector {CONNECTOR!r}: table 'no_such_table' does not exist at the source"
    )


def test_a_bug_in_the_pull_is_kept_as_one_line_naming_the_connector(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("flows.ahead.make_connector", broken)
    prepared = _prepare(settings, tmp_path / "spool")
    assert isinstance(prepared.error, PullCrashed)
    assert str(prepared.error) == f"connector {CONNECTOR!r}: the pull stopped: 'a bug'"


def test_spools_of_runs_that_are_not_running_are_removed(settings: Settings) -> None:
    from catalog import Catalog
    from lake.runs import start_run

    catalog = Catalog.connect(settings.catalog_url)
    try:
        with catalog.begin() as conn:
            start_run(conn, "alive", heartbeat_seconds=30)
        for run in ("alive", "killed"):
            (settings.home / "spool" / run / CONNECTOR).mkdir(parents=True)
        pipeline = SimpleNamespace(settings=settings, catalog=catalog)
        assert clear_dead_spools(pipeline) == 1  # type: ignore[arg-type]
        assert sorted(p.name for p in (settings.home / "spool").iterdir()) == ["alive"]
    finally:
        catalog.dispose()


def test_a_waiting_connector_keeps_its_lease_until_the_run_is_done(tmp_path: Path) -> None:
    import datetime as dt
    import time

    from catalog import Catalog, aware
    from connectors.state import acquire_lease
    from lake.runs import start_run

    settings = Settings(home=tmp_path / "var", lease_seconds=0.6, heartbeat_seconds=0.1)
    catalog = Catalog.connect(settings.catalog_url)
    try:
        with catalog.begin() as conn:
            start_run(conn, "run-1", heartbeat_seconds=30)
            acquire_lease(conn, CONNECTOR, "household", "run-1", settings.lease_seconds)
        ahead = Ahead(SimpleNamespace(settings=settings, catalog=catalog), "run-1")  # type: ignore[arg-type]
        ahead.leased = [(CONNECTOR, "household")]
        ahead.futures = {CONNECTOR: _Done(Prepared(CONNECTOR, None, tmp_path / "spool"))}  # type: ignore[dict-item]
        ahead._renewer.start()
        time.sleep(1.5)  # well past the lease it took

        def lease() -> tuple[Any, Any]:
            with catalog.read() as conn:
                row = conn.exec_driver_sql(
                    "SELECT lease_run_id, lease_until FROM connector_state WHERE connector = ?", (CONNECTOR,)
                ).one()
            return row[0], row[1]

        holder, until = lease()
        assert holder == "run-1"
        assert aware(dt.datetime.fromisoformat(str(until))) > dt.datetime.now(dt.UTC)
        ahead.close()
        assert lease()[0] is None
    finally:
        catalog.dispose()


class _Lost:
    """A future whose task crashed (what Dask raises when its worker died: KilledWorker)."""

    def result(self) -> Prepared:
        raise RuntimeError("KilledWorker: worker tcp://127.0.0.1:4711 died")

    def wait(self) -> None:
        return None


def test_a_lost_pull_is_pulled_again_in_the_flow(settings: Settings, tmp_path: Path) -> None:
    ahead = Ahead.__new__(Ahead)
    ahead.root = tmp_path / "spool" / "run-1"
    (ahead.root / CONNECTOR).mkdir(parents=True)
    ahead.futures = {CONNECTOR: _Lost()}  # type: ignore[dict-item]
    assert ahead.take(CONNECTOR, None) is None
    assert not (ahead.root / CONNECTOR).exists() and not ahead.futures


def test_workers_get_neither_the_passphrase_nor_the_catalog_password(tmp_path: Path) -> None:
    from flows.ahead import worker_settings

    settings = Settings(
        home=tmp_path,
        key_passphrase="very-secret-passphrase-123456",
        database_url="postgresql+psycopg://onceonly:db-password-9@db.internal/onceonly",
    )
    shipped = worker_settings(settings)
    assert shipped.key_passphrase is None
    assert shipped.database_url == "postgresql+psycopg://onceonly@db.internal/onceonly"
    assert "very-secret" not in repr(shipped.__dict__) and "db-password" not in repr(shipped.__dict__)
    # A worker still keeps registrations off the catalog's own database (connectors.paths).
    from connectors.paths import SourcePaths

    assert SourcePaths.of(shipped).databases == SourcePaths.of(settings).databases


def test_tasks_are_shipped_without_the_flows_parameters(prefect_harness: None) -> None:
    from prefect import flow
    from prefect.context import serialize_context

    from flows.ahead import _without_flow_parameters

    @flow
    def daily(settings: dict[str, str]) -> tuple[str, str]:
        with _without_flow_parameters():
            inside = repr(serialize_context())
        return repr(serialize_context()), inside

    outside, inside = daily({"key_passphrase": "very-secret-passphrase-123456"})
    assert "very-secret-passphrase" in outside  # what Dask would ship with each task
    assert "very-secret-passphrase" not in inside
