"""One run per connector (the lease), and township extracts marked stale in the landing transaction."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from landing_harness import Harness, household_row

from catalog import township_extracts
from connectors.state import acquire_lease, release_lease
from onceonly.errors import ConnectorBusy
from sharing.extracts import extract_path, refresh_extracts


def test_a_second_run_cannot_take_a_connector_another_run_holds(harness: Harness) -> None:
    with harness.catalog.begin() as conn:
        acquire_lease(conn, "gongan-household", "household", "run-A", seconds=600)
    with pytest.raises(ConnectorBusy, match="run-A"), harness.catalog.begin() as conn:
        acquire_lease(conn, "gongan-household", "household", "run-B", seconds=600)
    with harness.catalog.begin() as conn:  # the holder may renew its own lease
        acquire_lease(conn, "gongan-household", "household", "run-A", seconds=600)
        release_lease(conn, "gongan-household", "run-A")
    with harness.catalog.begin() as conn:  # once released, another run takes it
        acquire_lease(conn, "gongan-household", "household", "run-B", seconds=600)


def test_an_expired_lease_can_be_taken_over(harness: Harness) -> None:
    with harness.catalog.begin() as conn:
        acquire_lease(conn, "gongan-household", "household", "run-dead", seconds=0.001)
    time.sleep(0.01)  # a fast SQLite commits both transactions within the lease's millisecond
    with harness.catalog.begin() as conn:
        acquire_lease(conn, "gongan-household", "household", "run-B", seconds=600)


def test_a_batch_of_another_run_is_not_landed_while_the_connector_is_leased(harness: Harness) -> None:
    with harness.catalog.begin() as conn:
        acquire_lease(conn, "gongan-household", "household", "run-A", seconds=600)
    # The harness lands as run-1: the batch must not land behind run-A's back.
    with pytest.raises(ConnectorBusy):
        harness.land([household_row(1)], before=None, after={"w": 1})
    assert harness.count(sa.table("batches")) == 0


def test_landing_marks_townships_and_refresh_writes_exactly_those(harness: Harness, tmp_path: Path) -> None:
    harness.land(
        [household_row(1, township_code="120114001000"), household_row(2, township_code="120114002000")],
        before=None,
        after={"w": 1},
    )
    extracts = tmp_path / "extracts"
    written = refresh_extracts(harness.catalog, extracts)
    assert sorted(p.parent.name for p in written) == ["township=120114001000", "township=120114002000"]
    assert refresh_extracts(harness.catalog, extracts) == []  # nothing stale any more

    # The person moves township: the new version's township AND the old one are stale.
    harness.land([household_row(1, township_code="120114003000")], before={"w": 1}, after={"w": 2})
    written = refresh_extracts(harness.catalog, extracts)
    assert sorted(p.parent.name for p in written) == ["township=120114001000", "township=120114003000"]
    old = pq.read_table(extract_path(extracts, "120114001000")).to_pylist()
    assert [r["status"] for r in old] == ["失效"]  # the superseded version, no longer in force


def test_a_township_marked_again_while_being_written_stays_stale(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sharing.extracts as extracts_module

    harness.land([household_row(1, township_code="120114001000")], before=None, after={"w": 1})
    real_write = extracts_module.write_extracts

    def write_while_another_batch_lands(*args: object, **kwargs: object) -> list[Path]:
        written = real_write(*args, **kwargs)  # type: ignore[arg-type]
        with harness.catalog.begin() as conn:  # a landing marks the township again meanwhile
            conn.execute(sa.update(township_extracts).values(generation=township_extracts.c.generation + 1))
        return written

    monkeypatch.setattr(extracts_module, "write_extracts", write_while_another_batch_lands)
    assert refresh_extracts(harness.catalog, tmp_path / "extracts")
    monkeypatch.setattr(extracts_module, "write_extracts", real_write)
    assert refresh_extracts(harness.catalog, tmp_path / "extracts")  # still stale, so written again
    assert refresh_extracts(harness.catalog, tmp_path / "extracts") == []
