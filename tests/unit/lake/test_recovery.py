"""What a dead run left in the lake's staging is finished by the next run, before any landing."""

from __future__ import annotations

import pyarrow as pa
import pytest
from landing_harness import HOUSEHOLD, Harness, household_row, validate

from catalog import batches
from lake.landing import Lander, settle_staged
from lake.parquet import ParquetLake

C1 = {"updated_at": "2026-11-20 08:00:00", "person_id": "a"}
GOOD = [household_row(i) for i in range(1, 4)]


class DyingLake(ParquetLake):
    """A lake whose process dies after the catalog commit, before the files are published."""

    def publish(self, connector: str, batch_id: str) -> None:
        raise KeyboardInterrupt


def test_a_committed_batch_left_in_staging_is_published_and_an_uncommitted_one_discarded(
    harness: Harness,
) -> None:
    dying = Lander(harness.catalog, DyingLake(harness.lake_dir), harness.log, run_id="run-1")
    with pytest.raises(KeyboardInterrupt):
        dying.land(
            connector="gongan-household",
            compiled=HOUSEHOLD,
            validation=validate(HOUSEHOLD, GOOD[:3]),
            cursor_before=None,
            cursor_after=C1,
            content_sha256="first",
        )
    # A batch staged by a run that died before its commit (the catalog never heard of it).
    harness.lake.stage(
        "gongan-household", "household", "never-committed", pa.table({"x": [1]}), None, pa.table({})
    )
    assert harness.count(batches) == 1 and harness.lake.read_accepted("household").num_rows == 0
    assert harness.lake.staged_connectors() == ["gongan-household"]

    settled = settle_staged(harness.catalog, harness.lake, "gongan-household")

    (committed,) = settled.published
    assert settled.discarded == ("never-committed",)
    assert harness.lake.staged("gongan-household") == []
    accepted = harness.lake.read_accepted("household")
    assert accepted.num_rows == 3 and harness.count(batches) == 1
    assert settle_staged(harness.catalog, harness.lake, "gongan-household").published == ()  # once
    assert any(p.name.startswith(committed) for p in (harness.lake_dir / "accepted").rglob("*.parquet"))
