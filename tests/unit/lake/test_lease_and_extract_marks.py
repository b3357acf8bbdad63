"""One run per connector (the lease), and township extracts marked stale in the landing transaction."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from landing_harness import Harness, household_row

from catalog import township_extracts
from connectors.state import acquire_lease, release_lease
from lake.audit import audit
from onceonly.errors import ConnectorBusy
from onceonly.settings import Settings
from sharing.extracts import Extract, extract_folder, extract_policy, refresh_extracts


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


def _refresh(harness: Harness, extracts: Path) -> list[Extract]:
    settings = Settings()
    policy = extract_policy(settings.contracts_dir, settings.matters_file)
    return refresh_extracts(harness.catalog, extracts, harness.log, policy)


def test_landing_marks_townships_and_refresh_writes_exactly_those(harness: Harness, tmp_path: Path) -> None:
    harness.land(
        [household_row(1, township_code="120114001000"), household_row(2, township_code="120114002000")],
        before=None,
        after={"w": 1},
    )
    extracts = tmp_path / "extracts"
    written = _refresh(harness, extracts)
    assert [e.relative for e in written] == [
        "township=120114001000/extract=000001",
        "township=120114002000/extract=000001",
    ]
    assert _refresh(harness, extracts) == []  # nothing stale any more

    # The person moves township: the new version's township AND the old one are stale.
    harness.land([household_row(1, township_code="120114003000")], before={"w": 1}, after={"w": 2})
    written = _refresh(harness, extracts)
    assert [e.relative for e in written] == [
        "township=120114001000/extract=000002",
        "township=120114003000/extract=000001",
    ]
    old = pq.read_table(extract_folder(extracts, "120114001000", 2) / "certificates.parquet").to_pylist()
    # superseded by a version of another township: sent once as 移出, the certificate id only
    assert [(r["change"], r["status"]) for r in old] == [("移出", None)]


def test_a_township_marked_again_while_being_written_stays_stale(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sharing.extracts as extracts_module

    harness.land([household_row(1, township_code="120114001000")], before=None, after={"w": 1})
    real_write = extracts_module._write_files

    def write_while_another_batch_lands(*args: Any, **kwargs: Any) -> None:
        real_write(*args, **kwargs)
        with harness.catalog.begin() as conn:  # a landing marks the township again meanwhile
            conn.execute(sa.update(township_extracts).values(generation=township_extracts.c.generation + 1))

    monkeypatch.setattr(extracts_module, "_write_files", write_while_another_batch_lands)
    assert _refresh(harness, tmp_path / "extracts")
    monkeypatch.setattr(extracts_module, "_write_files", real_write)
    # still stale, so looked at again: nothing changed in it, so no new extract, and the mark cleared
    assert _refresh(harness, tmp_path / "extracts") == []
    with harness.catalog.read() as conn:
        (mark,) = conn.execute(sa.select(township_extracts)).all()
    assert mark.generation == mark.written_generation == 2


def test_the_audit_checks_each_extract_against_its_logged_manifest(harness: Harness, tmp_path: Path) -> None:
    harness.land(
        [household_row(1, township_code="120114001000"), household_row(2, township_code="120114002000")],
        before=None,
        after={"w": 1},
    )
    extracts = tmp_path / "extracts"
    first, second = _refresh(harness, extracts)
    verifiers = [harness.key.verifier]

    def findings() -> list[str]:
        report = audit(harness.catalog, harness.lake, extracts_dir=extracts, verifiers=verifiers)
        assert report.extracts == 2 or not report.ok
        return [str(f) for f in report.findings]

    assert findings() == []
    parquet = first.folder / "certificates.parquet"
    parquet.write_bytes(parquet.read_bytes()[:-1] + b"!")
    (changed,) = findings()
    assert (
        "the extract 1 of township 120114001000 was changed since it was logged: certificates.parquet"
        in changed
    )
    shutil.rmtree(second.folder)
    assert any("the extract 1 of township 120114002000 the log records is missing" in f for f in findings())
    stray = extracts / "township=120114003000" / "extract=000001"
    stray.mkdir(parents=True)
    report = audit(harness.catalog, harness.lake, extracts_dir=extracts, verifiers=verifiers)
    assert any("township=120114003000/extract=000001: in no log entry" in u for u in report.uncovered)
