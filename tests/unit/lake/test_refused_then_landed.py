"""A batch refused for its error rate, then landed once its contract is fixed: one id each.

The incident: a source sent rows its contract v1 refused (maxErrorRate breached); the contract
was fixed (a rule loosened, the version bumped) and the same rows, pulled again from the same
cursor, landed. The refused and the landed batch had the same content-derived id, so
``quarantine list`` showed every entry twice and the refused batch's entries stayed open,
though its rows were accepted.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from landing_harness import CONTEXT, HOUSEHOLD, Harness, household_row, validate

from catalog import batches, breaches, quarantine
from contracts.compiler import CompiledContract, compile_contract
from contracts.model import parse_contract
from contracts.validate import Validation, Validator
from lake.landing import Breach, batch_id_for, content_digest, refused_batch_id
from lake.quarantine import department_report, list_entries
from onceonly.settings import Settings

CONNECTOR = "gongan-household"
CURSOR = {"updated_at": "2026-11-20T00:00:00"}
UNKNOWN_TOWNSHIP = "120114999000"
UNSTATED = "未说明的性别"  # GB/T 2261.1 code 9: a value contract v1 forgot


def _household(version: str, genders: str) -> CompiledContract:
    text = (Settings().contracts_dir / "household.yaml").read_text(encoding="utf-8")
    assert "version: 1.0.0\n" in text and "validValues: [男, 女]\n" in text
    text = text.replace("version: 1.0.0\n", f"version: {version}\n", 1)
    text = text.replace("validValues: [男, 女]\n", f"validValues: [{genders}]\n", 1)
    return compile_contract(parse_contract(text, source=f"household {version}"))


# v1.1.0 still refuses the rows (it forgot the code again, in another spelling); v1.2.0 fixes it.
STILL_WRONG = _household("1.1.0", "男, 女, 未说明")
FIXED = _household("1.2.0", f"男, 女, {UNSTATED}")

ROWS = [
    *(household_row(i) for i in range(1, 5)),
    *(household_row(i, gender=UNSTATED) for i in range(5, 9)),  # refused by v1, accepted by v1.2
    *(household_row(i, township_code=UNKNOWN_TOWNSHIP) for i in range(9, 11)),  # wrong under both
]
DIGEST = content_digest(pa.Table.from_pylist(ROWS))
_VALIDATIONS: dict[str, Validation] = {}


def _validated(compiled: CompiledContract) -> Validation:
    if compiled is HOUSEHOLD:
        return validate(HOUSEHOLD, ROWS)
    if compiled.ref not in _VALIDATIONS:
        _VALIDATIONS[compiled.ref] = Validator(compiled, CONTEXT).validate(
            pa.Table.from_pylist(ROWS), connector=CONNECTOR
        )
    return _VALIDATIONS[compiled.ref]


def _refuse(harness: Harness, compiled: CompiledContract) -> Breach:
    v = _validated(compiled)
    assert v.error_rate > compiled.max_error_rate  # what the flow checks before refusing
    return harness.lander().refuse(
        connector=CONNECTOR, compiled=compiled, validation=v, cursor_before=CURSOR, content_sha256=DIGEST
    )


def _land(harness: Harness, compiled: CompiledContract) -> Any:
    v = _validated(compiled)
    assert v.error_rate <= compiled.max_error_rate
    return harness.land(
        ROWS, before=CURSOR, after={"updated_at": "2026-11-21T00:00:00"}, validation=v, compiled=compiled
    )


def _snapshot(harness: Harness) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in harness.all(sa.select(quarantine).order_by(quarantine.c.id))]


def test_a_batch_refused_then_landed_after_a_contract_fix_is_listed_once_and_resolved(
    harness: Harness,
) -> None:
    refused = _refuse(harness, HOUSEHOLD)
    assert refused.quarantined == 6 and refused.pulled == 10
    refused_entries = harness.count(quarantine)
    assert refused_entries == 6  # 4 gender.invalidValues + 2 township_code.region_code

    landed = _land(harness, FIXED)

    assert (landed.accepted, landed.quarantined, landed.certificates) == (8, 2, 8)
    assert landed.batch_id != refused.batch_id
    assert landed.batch_id == batch_id_for(CONNECTOR, CURSOR, DIGEST)  # the lake's and deletions' name
    assert refused.batch_id == refused_batch_id(CONNECTOR, CURSOR, DIGEST, HOUSEHOLD.ref)
    with harness.catalog.read() as conn:
        everything = list_entries(conn, status="all", limit=None)
        open_now = list_entries(conn, status="open", limit=None)
        resolved = list_entries(conn, status="resolved", limit=None)

    # each entry once: as many as the table holds (it was 2 × that before)
    ids = [e.id for e in everything]
    assert len(ids) == len(set(ids)) == harness.count(quarantine) == refused_entries + landed.quarantined
    # the refused batch's entries: all resolved by the landed batch, and still marked refused
    of_refusal = [e for e in everything if e.batch_id == refused.batch_id]
    assert len(of_refusal) == refused_entries
    assert all(e.batch_refused and e.connector == CONNECTOR for e in of_refusal)
    assert all(e.status == "resolved" and e.resolved_by_batch == landed.batch_id for e in of_refusal)
    assert {e.id for e in resolved} == {e.id for e in of_refusal}
    # what still fails under the fixed contract stays open: the landed batch's own entries
    assert len(open_now) == landed.quarantined == 2
    assert {(e.batch_id, e.rule, e.contract_version, e.batch_refused) for e in open_now} == {
        (landed.batch_id, "township_code.region_code", "1.2.0", False)
    }
    assert {e.record_key for e in open_now} == {r["person_id"] for r in ROWS[8:]}
    with harness.catalog.read() as conn:
        (report,) = department_report(conn)
    assert report.rows == 2 and [(r.rule, r.contract) for r in report.rules] == [
        ("township_code.region_code", FIXED.ref)
    ]

    # Re-running changes nothing: the landing is found landed, the refusal recorded.
    before = _snapshot(harness)
    assert _land(harness, FIXED).already_landed
    _refuse(harness, HOUSEHOLD)
    assert _snapshot(harness) == before
    assert harness.count(batches) == 1 and harness.count(breaches) == 1


def test_a_refusal_under_another_contract_supersedes_the_earlier_refusal(harness: Harness) -> None:
    first = _refuse(harness, HOUSEHOLD)
    second = _refuse(harness, STILL_WRONG)

    assert first.batch_id != second.batch_id
    assert {first.batch_id[:32], second.batch_id[:32]} == {batch_id_for(CONNECTOR, CURSOR, DIGEST)}
    assert harness.count(breaches) == 2
    with harness.catalog.read() as conn:
        open_now = list_entries(conn, status="open", limit=None)
        everything = list_entries(conn, status="all", limit=None)
    assert len({e.id for e in everything}) == len(everything) == harness.count(quarantine) == 12
    # only the newest judgment is open: the rows were judged again, every one of them
    assert {e.batch_id for e in open_now} == {second.batch_id} and len(open_now) == 6
    assert all(e.resolved_by_batch == second.batch_id for e in everything if e.batch_id == first.batch_id)

    landed = _land(harness, FIXED)
    with harness.catalog.read() as conn:
        open_now = list_entries(conn, status="open", limit=None)
    assert {e.batch_id for e in open_now} == {landed.batch_id} and len(open_now) == 2


def test_entries_of_a_catalog_where_a_refusal_and_a_landing_share_an_id_are_listed_once(
    harness: Harness,
) -> None:
    """Catalogs written before refusals had ids of their own hold such pairs: list them once,
    each entry under the batch whose contract it was judged by."""
    landed = _land(harness, FIXED)
    refused = _refuse(harness, HOUSEHOLD)
    with harness.catalog.begin() as conn:  # what the earlier version wrote: the refusal under the landed id
        conn.execute(sa.update(breaches).values(batch_id=landed.batch_id))
        conn.execute(
            sa.update(quarantine)
            .where(quarantine.c.batch_id == refused.batch_id)
            .values(batch_id=landed.batch_id)
        )
    with harness.catalog.read() as conn:
        everything = list_entries(conn, status="all", limit=None)
    assert len(everything) == len({e.id for e in everything}) == harness.count(quarantine) == 8
    assert sorted((e.contract_version, e.batch_refused) for e in everything) == [
        *[("1.0.0", True)] * 6,
        *[("1.2.0", False)] * 2,
    ]
