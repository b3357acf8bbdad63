"""A run taken for dead that comes back lands nothing: the landing checks it still holds the lease."""

from __future__ import annotations

import pytest
from landing_harness import HOUSEHOLD, Harness, household_row, validate

from catalog import batches, certificates
from connectors.state import acquire_lease
from lake.landing import Lander
from lake.runs import reap_dead_runs, start_run
from onceonly.errors import ConnectorBusy

C1 = {"updated_at": "2026-11-20 08:00:00", "person_id": "a"}
C2 = {"updated_at": "2026-11-20 09:00:00", "person_id": "b"}


def _land(
    lander: Lander, rows: list[dict[str, str]], before: dict[str, str] | None, after: dict[str, str]
) -> None:
    lander.land(
        connector="gongan-household",
        compiled=HOUSEHOLD,
        validation=validate(HOUSEHOLD, rows),
        cursor_before=before,
        cursor_after=after,
        content_sha256=repr(after),
    )


def test_a_run_whose_lease_was_taken_over_cannot_land(harness: Harness) -> None:
    with harness.catalog.begin() as conn:
        start_run(conn, "run-a", heartbeat_seconds=30)
        acquire_lease(conn, "gongan-household", "household", "run-a", 1800)
    first = Lander(harness.catalog, harness.lake, harness.log, run_id="run-a", lease_seconds=1800)
    _land(first, [household_row(1)], None, C1)
    with harness.catalog.begin() as conn:  # run-a is taken for dead; run-b takes the connector
        conn.exec_driver_sql("UPDATE runs SET status = 'crashed' WHERE run_id = 'run-a'")
        acquire_lease(conn, "gongan-household", "household", "run-b", 1800)
    with pytest.raises(ConnectorBusy, match="run run-a no longer holds it \\(run run-b took it over"):
        _land(first, [household_row(2)], C1, C2)
    with harness.catalog.begin() as conn:  # released by run-b: still not run-a's
        conn.exec_driver_sql("UPDATE connector_state SET lease_run_id = NULL, lease_until = NULL")
        assert reap_dead_runs(conn, heartbeat_seconds=30) == []
    with pytest.raises(ConnectorBusy, match="its lease was released"):
        _land(first, [household_row(2)], C1, C2)
    assert harness.count(batches) == 1 and harness.count(certificates) == 1
