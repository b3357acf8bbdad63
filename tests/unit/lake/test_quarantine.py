"""Reading the quarantine back: entries, one entry, the per-department report, and masking."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from landing_harness import (
    HOUSEHOLD,
    MARRIAGE,
    TOWNSHIPS,
    Harness,
    citizen_id,
    household_row,
    marriage_row,
    validate,
)

from catalog import Catalog, quarantine
from connectors.registration import parse_registration
from connectors.registry import register, remove
from contracts.compiler import compile_contract
from contracts.model import load_contract
from lake.landing import content_digest
from lake.quarantine import (
    QuarantineNotFound,
    department_report,
    departments,
    get_entry,
    list_entries,
    mask_key_part,
    masked_source_key,
)
from onceonly.privacy import scrub_text

BAD_TOWNSHIP = "120114999000"
DISABILITY = compile_contract(load_contract(Path(__file__).with_name("disability_contract.yaml")))


def register_connector(catalog: Catalog, name: str, department: str, dataset: str = "household") -> None:
    """What `onceonly connectors register FILE` stores: the catalog registration, no file in the folder."""
    text = (
        f"name: {name}\ndepartment: {department}\ndataset: {dataset}\ntype: sql\n"
        f"options:\n  url: sqlite:///{{home}}/{name}.db\n  table: t\n"
        "  cursor: {column: updated_at, tiebreak: id}\n"
    )
    register(catalog, parse_registration(text, f"{name}.yaml"), text)


def disability_card(seq: int, category: str = "4", grade: str = "2") -> str:
    """A 残疾人证 number: the holder's citizen ID, the category (1-7) and grade (1-4)."""
    return citizen_id(seq) + category + grade


def disability_row(seq: int, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "card_no": disability_card(seq),
        "holder_name": f"孙{seq}",
        "township_code": TOWNSHIPS[seq % len(TOWNSHIPS)],
    }
    row.update(over)
    return row


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
    register_connector(harness.catalog, "gongan-household", "天津市公安局武清分局")
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
        (report,) = department_report(conn, department="公安")
        assert department_report(conn, department="民政") == []
        assert {e.batch_refused for e in list_entries(conn) if e.rule == "name.required"} == {True}
    assert report.department == "天津市公安局武清分局" and report.rows == 5
    by_rule = {r.rule: r for r in report.rules}
    township = by_rule["township_code.region_code"]
    assert township.rows == 3 and township.examples == (BAD_TOWNSHIP,) * 3
    assert township.source_keys == tuple(sorted(r["person_id"] for r in rows))
    assert by_rule["name.required"].rows == 2


def test_the_report_takes_departments_from_the_catalog_removed_connectors_included(
    harness: Harness,
) -> None:
    """Registered with `connectors register` only (nothing in the registrations folder), then
    removed: what the connector left in quarantine is still its department's to fix."""
    register_connector(harness.catalog, "canlian-disability", "天津市武清区残疾人联合会", "disability")
    bad = disability_row(1, township_code=BAD_TOWNSHIP)
    harness.land(
        [bad, disability_row(2)],
        before=None,
        after={"w": 1},
        compiled=DISABILITY,
        connector="canlian-disability",
    )
    with harness.catalog.read() as conn:
        (report,) = department_report(conn, department="残疾人联合会")
        assert department_report(conn, department="canlian-disability") == [report]
    assert report.department == "天津市武清区残疾人联合会" and report.rows == 1
    (rule,) = report.rules
    assert (rule.rule, rule.connector, rule.source_keys, rule.connector_removed) == (
        "township_code.region_code",
        "canlian-disability",
        (bad["card_no"],),
        False,
    )

    remove(harness.catalog, "canlian-disability")
    with harness.catalog.read() as conn:
        assert departments(conn)["canlian-disability"].removed
        (report,) = department_report(conn, department="残疾人联合会")
        (unknown,) = department_report(conn.execution_options(), department="nobody-registered") or [None]
    assert report.rules[0].connector_removed and report.rows == 1
    assert unknown is None


def test_a_connector_never_registered_is_reported_as_such(harness: Harness) -> None:
    harness.land([household_row(1, township_code=BAD_TOWNSHIP)], before=None, after={"w": 1}, connector="old")
    with harness.catalog.read() as conn:
        (report,) = department_report(conn)
    assert report.department == "(unregistered connector old)"


def test_a_restricted_key_that_embeds_a_citizen_id_is_masked_by_its_classification(
    harness: Harness,
) -> None:
    card = disability_card(7)
    assert len(card) == 20 and card[17].isdigit()
    assert scrub_text(card) == card, "the ID regex does not see an ID followed by more digits"
    bad_pattern = disability_row(7, card_no=card[:18] + "9" + card[19])  # category 9 does not exist
    bad_township = disability_row(8, township_code=BAD_TOWNSHIP)
    harness.land(
        [bad_pattern, bad_township, disability_row(9)],
        before=None,
        after={"w": 1},
        compiled=DISABILITY,
        connector="canlian-disability",
    )
    with harness.catalog.read() as conn:
        entries = {e.rule: e for e in list_entries(conn, dataset="disability")}
    pattern, township = entries["card_no.pattern"], entries["township_code.region_code"]

    # the key, in the catalog in clear (the department's CSV needs it), masked for screens
    for entry, row in ((pattern, bad_pattern), (township, bad_township)):
        number = str(row["card_no"])
        assert entry.record_key == number
        shown = masked_source_key(entry.record_key, DISABILITY)
        assert shown == number[:6] + "*" * 10 + number[-4:]
        assert number[:18] not in str(shown) and number[6:14] not in str(shown)
    # without the contract (dataset gone), every part is masked all the same
    assert masked_source_key(str(bad_township["card_no"]), None) == mask_key_part(
        str(bad_township["card_no"])
    )
    # a public key column stays as sent; an ID in it is still masked
    assert masked_source_key("J120114-2025-000001", MARRIAGE) == "J120114-2025-000001"
    assert masked_source_key(citizen_id(3), MARRIAGE) == scrub_text(citizen_id(3))

    # the value the validator stored follows the classification too
    assert pattern.value_masked is not None and str(bad_pattern["card_no"])[:18] not in pattern.value_masked
    assert pattern.value_masked.startswith(str(bad_pattern["card_no"])[0]) and set(
        pattern.value_masked[1:]
    ) == {"*"}
    assert township.value_masked == BAD_TOWNSHIP  # public: as sent


def test_short_restricted_keys_keep_at_most_a_quarter() -> None:
    assert mask_key_part("1234567") == "*******"
    assert mask_key_part("12345678") == "******78"
    assert mask_key_part(citizen_id(1)) == citizen_id(1)[:6] + "*" * 8 + citizen_id(1)[-4:]


def test_a_schema_rule_reports_its_restricted_column_masked(harness: Harness) -> None:
    """``same_couple_same_day`` (duplicateValues over husband_id, wife_id, registered_on) reports
    the husband's ID number: restricted, so masked, though the rule itself is schema-level."""
    twice = [marriage_row(1), marriage_row(1, cert_no="J120114-2025-000099")]
    harness.land(twice, before=None, after={"m": 1}, compiled=MARRIAGE, connector="minzheng-marriage")
    values = {
        r.value_masked
        for r in harness.all(
            sa.select(quarantine).where(quarantine.c.rule == "marriage_registration.same_couple_same_day")
        )
    }
    husband = str(twice[0]["husband_id"])
    assert values == {husband[:6] + "********" + husband[-4:]}
