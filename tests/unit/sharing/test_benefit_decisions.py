"""免申即享 over certificates landed through the real contracts into a signed log: who qualifies,
granted once, nothing new on a re-run, a reversal when a used certificate is revoked, and a
decision bundle that verifies offline and fails on any changed byte."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import and_
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "lake"))
from landing_harness import ORIGIN, TODAY, Harness, citizen_id, household_row, validate

from catalog import Catalog, certificate_openings, certificates, use_subjects
from catalog._schema import benefit_decisions
from contracts.compiler import compile_contract
from contracts.model import contract_by_id
from evidence.keys import SigningKey
from evidence.lifecycle import Lifecycle
from evidence.log import KIND_DECISION, leaf_at
from onceonly.errors import VerificationFailed
from onceonly.settings import Settings
from sharing.benefit_bundle import export_decision, verify_decision
from sharing.benefit_decisions import (
    GRANT,
    REVERSAL,
    DecisionsConflict,
    evaluate,
    explain,
    explain_text,
    list_decisions,
    record,
    record_evaluating_again,
)
from sharing.benefit_rules import Rule, load_rules

SETTINGS = Settings()
BIRTH = compile_contract(contract_by_id(SETTINGS.contracts_dir, "birth"))
OLD = citizen_id(1, birth="19400105")  # 86 on TODAY
YOUNG = citizen_id(2, birth="19900307")
MOTHER = citizen_id(3, birth="19950101")
FATHER = citizen_id(4, birth="19930101")
CHILD = citizen_id(5, birth="20261001")
ALMOST = citizen_id(6, birth="19461122")  # 80 tomorrow


@pytest.fixture
def rules() -> dict[str, Rule]:
    return {r.id: r for r in load_rules(SETTINGS.benefit_rules_dir, SETTINGS.contracts_dir)}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Harness]:
    catalog = Catalog.connect(f"sqlite:///{tmp_path / 'catalog.db'}")
    harness = Harness(catalog, tmp_path / "lake", SigningKey.generate(ORIGIN))
    people = [
        household_row(1, person_id=OLD, birth_date="1940-01-05"),
        household_row(2, person_id=YOUNG),
        household_row(3, person_id=MOTHER, birth_date="1995-01-01"),
        household_row(4, person_id=FATHER, birth_date="1993-01-01"),
        household_row(6, person_id=ALMOST, birth_date="1946-11-22"),
    ]
    harness.land(people, before=None, after={"page": 1})
    birth = {
        "id": 1,
        "cert_no": "Q120114001",
        "child_name": "王小宝",
        "child_gender": "男",
        "child_id": CHILD,
        "birth_date": "2026-10-01",
        "birth_place": "天津市武清区人民医院",
        "mother_name": "李丽",
        "mother_id": MOTHER,
        "father_name": "王强",
        "father_id": FATHER,
        "issued_on": "2026-10-03",
        "township_code": "120114001000",
        "updated_at": "2026-10-03 09:00:00",
    }
    validation = validate(BIRTH, [birth])
    assert validation.accepted.num_rows == 1, validation
    harness.land([birth], before=None, after={"page": 1}, compiled=BIRTH, connector="weijian-births")
    try:
        yield harness
    finally:
        catalog.dispose()


def _run(world: Harness, rule: Rule, today: dt.date = TODAY, district: str = "120114") -> Any:
    with world.catalog.read() as conn:
        evaluation = evaluate(conn, rule, district=district, today=today)
    return evaluation, record(world.catalog, world.log, [evaluation])


def _subject_of(world: Harness, leaf: int) -> str:
    return str(world.all(sa.select(use_subjects.c.subject_id).where(use_subjects.c.leaf_index == leaf))[0][0])


def test_the_elderly_resident_is_granted_and_the_others_are_not(
    world: Harness, rules: dict[str, Rule]
) -> None:
    evaluation, recorded = _run(world, rules["gaoling-jintie"])
    assert evaluation.eligible == 1 and len(recorded) == 1
    decision = recorded[0]
    assert decision.result == GRANT and decision.subject_masked == OLD[:6] + "********" + OLD[-4:]
    assert _subject_of(world, decision.leaf_index) == OLD
    # The log entry names the rule, the facts by certificate id, never the subject.
    with world.catalog.read() as conn:
        entry = leaf_at(conn, decision.leaf_index).entry or b""
    logged = json.loads(entry)
    assert logged["kind"] == KIND_DECISION and logged["rule"]["id"] == "gaoling-jintie"
    assert logged["rule"]["version"] == "1.0.0" and logged["result"] == GRANT
    assert logged["facts"][0]["fact"] == "居民户口簿" and logged["facts"][0]["status"] == "有效"
    assert logged["decided_on"] == TODAY.isoformat() and len(logged["subject_commitment"]) == 64
    assert OLD.encode() not in entry and OLD[6:14].encode() not in entry


def test_one_day_before_the_80th_birthday_is_not_yet_and_on_it_is(
    world: Harness, rules: dict[str, Rule]
) -> None:
    with world.catalog.read() as conn:
        before = evaluate(conn, rules["gaoling-jintie"], district="120114", today=dt.date(2026, 11, 21))
        on = evaluate(conn, rules["gaoling-jintie"], district="120114", today=dt.date(2026, 11, 22))
    assert before.eligible == 1 and on.eligible == 2


def test_another_district_qualifies_nobody(world: Harness, rules: dict[str, Rule]) -> None:
    evaluation, recorded = _run(world, rules["gaoling-jintie"], district="120115")
    assert evaluation.eligible == 0 and recorded == []


def test_a_rerun_with_nothing_changed_records_nothing(world: Harness, rules: dict[str, Rule]) -> None:
    _run(world, rules["gaoling-jintie"])
    size = world.count(benefit_decisions)
    evaluation, recorded = _run(world, rules["gaoling-jintie"])
    assert evaluation.in_force == 1 and recorded == [] and world.count(benefit_decisions) == size


def test_the_newborns_mother_is_granted_from_the_birth_certificates_fields(
    world: Harness, rules: dict[str, Rule]
) -> None:
    _, recorded = _run(world, rules["shengyu-butie"])
    assert [_subject_of(world, r.leaf_index) for r in recorded] == [MOTHER]  # not the father, not the child
    # A year and more after the birth: nobody new, and the one-off grant is not reversed.
    later, again = _run(world, rules["shengyu-butie"], today=dt.date(2027, 11, 1))
    assert later.eligible == 0 and again == []


def test_revoking_the_used_certificate_reverses_the_grant(world: Harness, rules: dict[str, Rule]) -> None:
    _, granted = _run(world, rules["gaoling-jintie"])
    with world.catalog.read() as conn:
        used = json.loads(leaf_at(conn, granted[0].leaf_index).entry or b"")["facts"][0]["certificate"]
    with world.catalog.begin() as conn:
        Lifecycle(world.log).change(conn, used, "revoke", reason="户籍登记错误")
    evaluation, recorded = _run(world, rules["gaoling-jintie"])
    assert evaluation.eligible == 0 and [r.result for r in recorded] == [REVERSAL]
    reversal = recorded[0]
    assert "已撤销" in reversal.reason and used in reversal.reason
    assert _subject_of(world, reversal.leaf_index) == OLD
    with world.catalog.read() as conn:
        rows = {r.decision_id: r for r in list_decisions(conn, "gaoling-jintie")}
        text = explain_text(explain(conn, reversal.decision_id))
    assert rows[granted[0].decision_id].reversed_by == reversal.decision_id
    assert rows[reversal.decision_id].reverses == granted[0].decision_id
    assert "不再符合条件，停止享受" in text and used in text and "现为" not in text.split("依据的证照")[0]
    assert OLD not in text and granted[0].subject_masked in text
    # Nothing changes after that: no second reversal.
    assert _run(world, rules["gaoling-jintie"])[1] == []


def test_explain_says_why_in_chinese(world: Harness, rules: dict[str, Rule]) -> None:
    _, granted = _run(world, rules["gaoling-jintie"])
    with world.catalog.read() as conn:
        text = explain_text(explain(conn, granted[0].decision_id))
    assert "高龄津贴（gaoling-jintie 第 1.0.0 版）" in text and "天津市武清区民政局" in text
    assert "持证人年龄（周岁） 不小于 80" in text and "决定时状态：有效" in text
    assert granted[0].subject_masked in text and OLD not in text


def test_no_clear_id_in_the_decisions_table(world: Harness, rules: dict[str, Rule]) -> None:
    for rule in rules.values():
        _run(world, rule)
    dumped = json.dumps(
        [list(map(str, r)) for r in world.all(sa.select(benefit_decisions))], ensure_ascii=False
    )
    assert world.count(benefit_decisions) == 2
    for person in (OLD, MOTHER, FATHER, CHILD, YOUNG):
        assert person not in dumped


def test_the_bundle_verifies_offline_and_a_changed_byte_fails(world: Harness, rules: dict[str, Rule]) -> None:
    _, granted = _run(world, rules["gaoling-jintie"])
    verifiers = [world.key.verifier]
    with world.catalog.read() as conn:
        bundle = export_decision(conn, world.log, granted[0].decision_id)
        opened = export_decision(conn, world.log, granted[0].decision_id, with_subject=True)
    report = verify_decision(bundle, verifiers)
    assert report.decision == granted[0].decision_id and not report.opened
    assert "高龄津贴" in report.summary and OLD not in bundle
    assert verify_decision(opened, verifiers).opened
    tampered = {
        "the decision entry at leaf": bundle.replace('\\"result\\":\\"grant\\"', '\\"result\\":\\"grunt\\"'),
        "own signature": bundle.replace(granted[0].subject_masked, granted[0].subject_masked[:-1] + "X"),
        "checkpoint is not signed": bundle.replace(f'"checkpoint":"{ORIGIN}', f'"checkpoint":"{ORIGIN}x', 1),
        "does not open": _flip_salt(opened),
    }
    for named, changed in tampered.items():
        assert changed != bundle
        with pytest.raises(VerificationFailed, match=named):
            verify_decision(changed, verifiers)


def _flip_salt(bundle: str) -> str:
    at = bundle.index('"salt":"') + len('"salt":"')
    return bundle[:at] + ("1" if bundle[at] == "0" else "0") + bundle[at + 1 :]


def test_the_cli_lists_explains_exports_and_verifies(
    world: Harness, rules: dict[str, Rule], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.decisions import app

    _, granted = _run(world, rules["gaoling-jintie"])
    decision = granted[0].decision_id
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", str(world.catalog.engine.url))
    runner = CliRunner()
    listed = runner.invoke(app, ["list", "--rule", "gaoling-jintie"])
    assert listed.exit_code == 0 and decision in listed.output and OLD not in listed.output
    explained = runner.invoke(app, ["explain", decision])
    assert explained.exit_code == 0 and "依据的证照" in explained.output and OLD not in explained.output
    with world.catalog.read() as conn:
        bundle = export_decision(conn, world.log, decision)
    path = tmp_path / "decision.note"
    path.write_text(bundle, encoding="utf-8")
    vkey = world.key.vkey
    good = runner.invoke(app, ["verify", str(path), "--trusted-key", vkey])
    assert good.exit_code == 0 and good.output.startswith("VALID") and "高龄津贴" in good.output
    path.write_text(bundle.replace('\\"grant\\"', '\\"grunt\\"', 1), encoding="utf-8")
    bad = runner.invoke(app, ["verify", str(path), "--trusted-key", vkey])
    assert bad.exit_code == 1 and "INVALID" in bad.output


def _newest_of(world: Harness, holder: str, type_code: str = "11100000000019342N001") -> str:
    return str(
        world.all(
            sa.select(certificates.c.cert_id)
            .where(and_(certificates.c.holder_id == holder, certificates.c.type_code == type_code))
            .order_by(certificates.c.leaf_index.desc())
        )[0][0]
    )


def test_a_renewed_fact_is_no_change_but_a_renewal_out_of_the_district_is(
    world: Harness, rules: dict[str, Rule]
) -> None:
    rule = rules["shengyu-butie"]
    _run(world, rule)
    # The mother's 户口簿 is re-issued (a new address, still in the district): the grant stands,
    # also a year later when the birth has left the window.
    renewed = household_row(
        3, person_id=MOTHER, birth_date="1995-01-01", address="天津市武清区杨村街道新华路9号"
    )
    world.land([{**renewed, "updated_at": "2026-11-21 09:00:00"}], before={"page": 1}, after={"page": 2})
    assert _run(world, rule)[1] == []
    assert _run(world, rule, today=dt.date(2027, 11, 1))[1] == []
    # The renewed version found in another district's township (this contract quarantines such
    # a row, so the catalog row is changed in place): the grant is reversed, naming that version.
    newest = _newest_of(world, MOTHER)
    with world.catalog.begin() as conn:
        conn.execute(
            sa.update(certificates).where(certificates.c.cert_id == newest).values(township="120115001000")
        )
    _, recorded = _run(world, rule, today=dt.date(2027, 11, 1))
    assert [r.result for r in recorded] == [REVERSAL]
    assert f"居民户口簿 {newest} 不再满足：所在乡镇（街道） 在本区" in recorded[0].reason
    with world.catalog.read() as conn:
        facts = json.loads(leaf_at(conn, recorded[0].leaf_index).entry or b"")["facts"]
    assert newest in [f["certificate"] for f in facts]


def test_a_reversal_names_the_version_actually_revoked(world: Harness, rules: dict[str, Rule]) -> None:
    rule = rules["gaoling-jintie"]
    _run(world, rule)
    world.land(
        [
            {
                **household_row(
                    1, person_id=OLD, birth_date="1940-01-05", address="天津市武清区杨村街道新华路9号"
                ),
                "updated_at": "2026-11-21 09:00:00",
            }
        ],
        before={"page": 1},
        after={"page": 2},
    )
    newest = _newest_of(world, OLD)
    with world.catalog.begin() as conn:
        Lifecycle(world.log).change(conn, newest, "revoke", reason="户籍登记错误")
    _, recorded = _run(world, rule)
    assert [r.result for r in recorded] == [REVERSAL]
    assert f"居民户口簿 {newest} 已撤销" in recorded[0].reason and "取代" not in recorded[0].reason


def _birth(n: int, child: str, born: str, mother: str = MOTHER) -> dict[str, Any]:
    return {
        "id": n,
        "cert_no": f"Q12011400{n}",
        "child_name": "王大宝",
        "child_gender": "女",
        "child_id": child,
        "birth_date": born,
        "birth_place": "天津市武清区人民医院",
        "mother_name": "李丽",
        "mother_id": mother,
        "father_name": "王强",
        "father_id": FATHER,
        "issued_on": born,
        "township_code": "120114001000",
        "updated_at": f"{born} 09:00:00",
    }


def test_a_second_child_brings_a_second_birth_subsidy_once(world: Harness, rules: dict[str, Rule]) -> None:
    rule = rules["shengyu-butie"]
    first = _birth(3, citizen_id(8, birth="20250110"), "2025-01-10")
    assert validate(BIRTH, [first]).accepted.num_rows == 1
    world.land([first], before={"page": 1}, after={"page": 2}, compiled=BIRTH, connector="weijian-births")
    _, granted = _run(world, rule, today=dt.date(2025, 2, 1))
    assert [r.result for r in granted] == [GRANT]
    # The second child (born 2026-10-01, the fixture's): a second grant, on its certificate.
    evaluation, second = _run(world, rule)
    assert evaluation.in_force == 1 and [r.result for r in second] == [GRANT]
    assert _subject_of(world, second[0].leaf_index) == MOTHER
    assert _run(world, rule)[1] == []  # and once only
    # The first child's certificate re-issued (a corrected place of birth): no third grant.
    world.land(
        [{**first, "birth_place": "天津市武清区中医医院", "updated_at": "2026-11-21 09:00:00"}],
        before={"page": 2},
        after={"page": 3},
        compiled=BIRTH,
        connector="weijian-births",
    )
    with world.catalog.read() as conn:
        assert evaluate(conn, rule, district="120114", today=dt.date(2025, 2, 2)).grants == ()
    assert _run(world, rule)[1] == []


def test_a_rule_over_certificate_fields_reads_only_the_openings_it_needs(
    world: Harness, rules: dict[str, Rule]
) -> None:
    # Births before and after a landing of household registers: the filter on the births'
    # fields must not open the registers (here: made unreadable, as a stand-in for a million).
    world.land(
        [household_row(7, person_id=citizen_id(7, birth="19800101"), birth_date="1980-01-01")],
        before={"page": 1},
        after={"page": 2},
    )
    between = world.all(sa.select(sa.func.max(certificate_openings.c.first_leaf)))[0][0]
    world.land(
        [_birth(3, citizen_id(8, birth="20261101"), "2026-11-01", mother=YOUNG)],
        before={"page": 1},
        after={"page": 2},
        compiled=BIRTH,
        connector="weijian-births",
    )
    with world.catalog.begin() as conn:
        conn.execute(
            sa.update(certificate_openings)
            .where(certificate_openings.c.first_leaf == between)
            .values(openings=b"not arrow")
        )
    with world.catalog.read() as conn:
        evaluation = evaluate(conn, rules["shengyu-butie"], district="120114", today=TODAY)
    assert evaluation.eligible == 2  # MOTHER and YOUNG, each from their birth certificate


def test_two_runs_at_once_grant_once(
    catalog: Catalog, rules: dict[str, Rule], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run B reads the grants in force, run A records, B reads on: B's evaluation is refused,
    evaluated again it grants nothing (on PostgreSQL, READ COMMITTED, each statement sees A)."""
    import sharing.benefit_decisions as decisions

    world = Harness(catalog, tmp_path / "lake", SigningKey.generate(ORIGIN))
    world.land([household_row(1, person_id=OLD, birth_date="1940-01-05")], before=None, after={"page": 1})
    rule = rules["gaoling-jintie"]
    with catalog.read() as conn:
        a = evaluate(conn, rule, district="120114", today=TODAY)
    original = decisions._grants_in_force

    def then_a_records(conn: Any, rule: Rule) -> Any:
        found = original(conn, rule)
        record(catalog, world.log, [a])
        return found

    monkeypatch.setattr(decisions, "_grants_in_force", then_a_records)
    with catalog.read() as conn:
        b = evaluate(conn, rule, district="120114", today=TODAY)
    monkeypatch.setattr(decisions, "_grants_in_force", original)
    assert len(b.grants) == 1  # B did not see A's grant
    with pytest.raises(DecisionsConflict):
        record(catalog, world.log, [b])
    again, recorded = record_evaluating_again(catalog, world.log, [b], district="120114")
    assert recorded == [] and again[0].in_force == 1
    assert world.count(benefit_decisions) == 1
