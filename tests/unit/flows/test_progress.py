"""The progress line: running total, rows/s, and the time left when the rows to come are known."""

from __future__ import annotations

import logging

import pytest

from flows.progress import ProgressLine, listen
from lake.landing import LandedBatch


def _landed(rows: int) -> LandedBatch:
    return LandedBatch("a1b2c3d4e5f6" * 2, "c", "household", rows, rows - 1, 1, 0, rows - 1, 10)


def test_each_batch_logs_the_total_and_rate_and_time_left(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.progress")
    seen: list[tuple[str, int]] = []
    stop = listen(lambda connector, rows, rate: seen.append((connector, rows)))
    try:
        with caplog.at_level(logging.INFO, logger="test.progress"):
            known = ProgressLine("gongan-household", logger, expected=30_000)
            known.landed(_landed(10_000))
            unknown = ProgressLine("scjg-licences", logger)
            unknown.landed(_landed(500))
    finally:
        stop()
    first, second = (r.getMessage() for r in caplog.records)
    assert first.startswith("gongan-household: batch 1 (a1b2c3d4e5f6) landed — 10,000 of ~30,000 rows, ")
    assert "rows/s, ~" in first and " left: 9999 accepted, 1 quarantined, 9999 certificates" in first
    assert "500 rows so far" in second and "left" not in second
    assert seen == [("gongan-household", 10_000), ("scjg-licences", 500)]


def test_inside_a_run_a_progress_artifact_follows_the_pull(prefect_harness: None) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    @flow
    def pull() -> None:
        line = ProgressLine("test-progress-connector", logging.getLogger("test.progress"), expected=20_000)
        line.landed(_landed(5_000))
        line.landed(_landed(5_000))

    pull()
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["progress-test-progress-connector"])),
            limit=1,
        )
    assert artifact.type == "progress" and float(artifact.data) == 50.0  # type: ignore[arg-type]
    assert (artifact.description or "").startswith("test-progress-connector: 10,000 of ~20,000 rows")
