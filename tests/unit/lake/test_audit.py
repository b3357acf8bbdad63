"""The lake audit finds every way the lake and the catalog can disagree, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from landing_harness import HOUSEHOLD, Harness, household_row

from lake.audit import audit, audit_lake

C1 = {"updated_at": "2026-11-20 08:00:00", "person_id": "a"}
ROWS = [household_row(i) for i in range(1, 7)] + [household_row(7, township_code="120114999000")]


def _landed(harness: Harness) -> str:
    landed = harness.land(ROWS, before=None, after=C1)
    assert landed.accepted == 6 and landed.quarantined == 1
    return landed.batch_id


def _accepted_files(harness: Harness) -> list[Path]:
    return sorted((harness.lake_dir / "accepted").rglob("*.parquet"))


def test_a_lake_that_holds_what_was_landed_is_consistent(harness: Harness) -> None:
    _landed(harness)
    report = audit_lake(harness.catalog, harness.lake)
    assert report.ok, report.findings
    assert (report.batches, report.accepted_rows, report.quarantined_rows) == (1, 6, 1)
    assert report.files == len(_accepted_files(harness)) + 1


def test_a_deleted_lake_file_is_reported_with_its_batch_and_counts(harness: Harness) -> None:
    batch = _landed(harness)
    victim = _accepted_files(harness)[0]
    lost = pq.read_metadata(victim).num_rows
    victim.unlink()
    (finding,) = audit_lake(harness.catalog, harness.lake).findings
    assert finding.batch_id == batch and finding.dataset == HOUSEHOLD.contract.id
    assert f"the catalog says 6 accepted rows, the lake holds {6 - lost}" in str(finding)


def test_rows_added_to_a_file_a_foreign_file_and_a_broken_file_are_reported(harness: Harness) -> None:
    batch = _landed(harness)
    first = _accepted_files(harness)[0]
    table = pq.read_table(first)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), first)  # one row doubled
    stranger = first.parent / "ffffffffffffffffffffffffffffffff-0.parquet"
    pq.write_table(table, stranger)
    quarantine = next((harness.lake_dir / "quarantine").rglob("*.parquet"))
    quarantine.write_bytes(quarantine.read_bytes()[:20])  # truncated
    findings = {(f.area, f.batch_id): str(f) for f in audit_lake(harness.catalog, harness.lake).findings}
    assert "rows added" in findings[("accepted", batch)]
    assert "never landed" in findings[("file", "ffffffffffffffffffffffffffffffff")]
    assert "not readable Parquet" in findings[("quarantine", batch)]


def test_a_batch_left_in_staging_is_reported(harness: Harness) -> None:
    _landed(harness)
    harness.lake.stage("gongan-household", "household", "deadbeef", pa.table({"x": [1]}), None, pa.table({}))
    (finding,) = audit_lake(harness.catalog, harness.lake).findings
    assert finding.area == "staging" and "gongan-household" in str(finding)


def test_the_full_audit_agrees_then_names_the_missing_files_against_the_log(
    harness: Harness, tmp_path: Path
) -> None:
    """`onceonly audit`'s check (the command itself runs on a demo home in tests/e2e)."""
    batch = _landed(harness)
    verifiers = [harness.key.verifier]
    ok = audit(harness.catalog, harness.lake, extracts_dir=tmp_path / "extracts", verifiers=verifiers)
    assert ok.ok and not ok.uncovered, ok.findings
    assert (ok.leaves, ok.certificates, ok.batches, ok.quarantine_rows) == (7, 6, 1, 1)
    lost = _accepted_files(harness)
    for path in lost:
        path.unlink()
    bad = audit(harness.catalog, harness.lake, extracts_dir=tmp_path / "extracts", verifiers=verifiers)
    missing = {str(f) for f in bad.findings if f.area == "lake"}
    assert missing == {
        f"lake: batch {batch[:12]} (household): {p.relative_to(harness.lake_dir).as_posix()} is missing"
        for p in lost
    }
    found = {str(f) for f in bad.findings}
    assert (
        f"accepted: batch {batch[:12]} (household): the catalog says 6 accepted rows, the lake holds 0 "
        "(its files are missing)"
    ) in found
