"""Reading the quarantine back: entries, one entry, and the per-department report."""

from __future__ import annotations

import pyarrow as pa
import pytest
from landing_harness import HOUSEHOLD, Harness, household_row, validate

from connectors.registration import Registration
from lake.landing import content_digest
from lake.quarantine import QuarantineNotFound, department_report, get_entry, list_entries

BAD_TOWNSHIP = "120114999000"
REGISTRATIONS = {
    "gongan-household": Registration.model_validate(
        {
            "name": "gongan-household",
            "department": "天津市公安局武清分局",
            "dataset": "household",
            "type": "sql",
        }
    ),
}


def test_entries_name_their_connector_contract_and_status(harness: Harness) -> None:
    bad = household_row(1, township_code=BAD_TOWNSHIP)
    first = harness.land([bad, household_row(2, name=None), household_row(3)], before=None, after={"w": 1})
    with harness.catalog.read() as conn:
        entries = list_entries(conn, dataset="household")
        assert {(e.rule, e.connector, e.status) for e in entries} == {
            ("township_code.region_code", "gongan-household", "open"),
            ("name.required", "gongan-household", "open"),
        }
        assert all(
            e.contract_id == "household" and e.contract_version == HOUSEHOLD.contract.version for e in entries
        )
        assert all(e.batch_id == first.batch_id and not e.batch_refused for e in entries)
        one = get_entry(conn, next(e.id for e in entries if e.rule == "name.required"))
        assert one.record_key == household_row(2)["person_id"] and one.value_masked is None
        with pytest.raises(QuarantineNotFound, match="no quarantine entry 999999"):
            get_entry(conn, 999999)
        assert list_entries(conn, dataset="marriage") == []

    # Corrected at the source: the next batch accepts it and resolves its entry.
    harness.land([household_row(1)], before={"w": 1}, after={"w": 2})
    with harness.catalog.read() as conn:
        assert [e.rule for e in list_entries(conn, status="resolved")] == ["township_code.region_code"]
        assert [e.rule for e in list_entries(conn, status="open")] == ["name.required"]


def test_the_report_groups_open_entries_by_department_and_rule_counting_records_once(
    harness: Harness,
) -> None:
    rows = [household_row(i, township_code=BAD_TOWNSHIP) for i in range(1, 4)]
    harness.land(rows, before=None, after={"w": 1})
    # Sent again, changed but still wrong: still three records to fix, not six.
    again = [household_row(i, township_code=BAD_TOWNSHIP, address=f"新地址{i}") for i in range(1, 4)]
    harness.land(again, before={"w": 1}, after={"w": 2})
    # A batch refused for its error rate is in the report too, under the connector that pulled it.
    refused = [household_row(i, name=None) for i in range(10, 12)]
    harness.lander().refuse(
        connector="gongan-household",
        compiled=HOUSEHOLD,
        validation=validate(HOUSEHOLD, refused),
        cursor_before={"w": 2},
        content_sha256=content_digest(pa.Table.from_pylist(refused)),
    )
    with harness.catalog.read() as conn:
        (report,) = department_report(conn, REGISTRATIONS, department="公安")
        assert department_report(conn, REGISTRATIONS, department="民政") == []
        assert {e.batch_refused for e in list_entries(conn) if e.rule == "name.required"} == {True}
    assert report.department == "天津市公安局武清分局" and report.rows == 5
    by_rule = {r.rule: r for r in report.rules}
    township = by_rule["township_code.region_code"]
    assert township.rows == 3 and township.examples == (BAD_TOWNSHIP,) * 3
    assert township.source_keys == tuple(sorted(r["person_id"] for r in rows))
    assert by_rule["name.required"].rows == 2
