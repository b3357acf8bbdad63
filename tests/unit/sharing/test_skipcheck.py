"""Skip-check at the counter: which materials may this person or business skip, and why not."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from catalog_records import HOUSEHOLD_TYPE, LICENCE_TYPE, MARRIAGE_TYPE, Records

from catalog import Catalog, certificate_events
from contracts.identifiers import citizen_id_check_char, uscc_check_char
from contracts.model import certificate_datasets
from evidence.certificate import STATUS_SUPERSEDED
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings
from sharing.matters import Material, Matter, load_matters
from sharing.skipcheck import MaterialAnswer, SkipCheckAnswer, skip_check

TODAY = dt.date(2026, 11, 21)
CATALOGUE = load_matters(Settings().matters_file)
ISSUED_BY = certificate_datasets(Settings().contracts_dir)
HUKOU_MOVE = CATALOGUE.get("hukou-move-after-marriage")  # 结婚证, 居民户口簿, 配偶居民户口簿, 居民身份证
BUSINESS = CATALOGUE.get("business-opening-social-insurance")  # 营业执照, 法定代表人身份证件
BIRTH_TYPE = "11100000MB01Q0230J001"  # 出生医学证明 (卫健)
PERSON = "12011419900307001" + citizen_id_check_char("12011419900307001")
SPOUSE = "12011419920101002" + citizen_id_check_char("12011419920101002")
COMPANY = "91120114MA0000001" + uscc_check_char("91120114MA0000001")


def brief(m: MaterialAnswer) -> tuple[object, ...]:
    return (m.material, m.skippable, m.certificate_id, m.reason, m.verdict)


def ask(catalog: Catalog, subject: str = PERSON, matter: object = HUKOU_MOVE) -> dict[str, MaterialAnswer]:
    with catalog.read() as conn:
        answer = skip_check(conn, matter, subject, ISSUED_BY, today=TODAY)  # type: ignore[arg-type]
    return {m.material: m for m in answer.materials}


def test_the_catalogue_knows_which_dataset_issues_each_type() -> None:
    assert {t[0]: t[2] for t in (HOUSEHOLD_TYPE, MARRIAGE_TYPE, LICENCE_TYPE)} | {
        BIRTH_TYPE: "birth",
        "11100000MB0H30096N001": "property_right",  # 不动产权证书 (不动产登记)
        "111000000000143573001": "social_insurance",  # 社会保险参保证明 (人社)
        "11120114MB1Q52740K001": "submitted_material",  # 历史申请材料 (政务服务 电子材料库)
    } == ISSUED_BY


def test_certificates_in_force_are_skippable_with_their_identifier(
    catalog: Catalog, records: Records
) -> None:
    household = records.certificate(PERSON, HOUSEHOLD_TYPE)
    marriage = records.certificate(PERSON, MARRIAGE_TYPE, valid_from=dt.date(2025, 5, 20))
    records.certificate(SPOUSE, MARRIAGE_TYPE, valid_from=dt.date(2025, 5, 20))

    with catalog.read() as conn:
        answer = skip_check(conn, HUKOU_MOVE, PERSON, ISSUED_BY, today=TODAY)

    assert isinstance(answer, SkipCheckAnswer)
    assert answer.subject == PERSON[:6] + "********" + PERSON[-4:]
    assert answer.skippable == ["结婚证", "居民户口簿"]
    by_name = {m.material: m for m in answer.materials}
    assert brief(by_name["结婚证"]) == ("结婚证", True, marriage, "证照有效", "可免交")
    assert brief(by_name["居民户口簿"]) == ("居民户口簿", True, household, "证照有效", "可免交")
    # nobody shares ID cards: never skippable, and the catalogue's note says what to do instead
    assert brief(by_name["居民身份证"]) == (
        "居民身份证",
        False,
        None,
        "尚无部门共享该材料的电子证照；现场核验身份证原件",
        "需提交材料",
    )
    # no spouse types given: the spouse cannot be looked for
    spouse = by_name["配偶居民户口簿"]
    assert (spouse.skippable, spouse.verdict, spouse.holder) == (False, "未找到证照", "spouse")
    payload = answer.to_json()
    assert payload["matter"] == "hukou-move-after-marriage" and payload["subject"] == answer.subject
    assert [m["material"] for m in payload["materials"]] == [
        "结婚证",
        "居民户口簿",
        "配偶居民户口簿",
        "居民身份证",
    ]


def test_a_certificate_valid_until_today_is_still_in_force(catalog: Catalog, records: Records) -> None:
    cid = records.certificate(PERSON, HOUSEHOLD_TYPE, valid_to=TODAY)
    assert brief(ask(catalog)["居民户口簿"]) == ("居民户口簿", True, cid, "证照有效", "可免交")


def test_an_expired_certificate_says_when_it_expired(catalog: Catalog, records: Records) -> None:
    cid = records.certificate(PERSON, MARRIAGE_TYPE, valid_to=dt.date(2020, 1, 1))
    assert brief(ask(catalog)["结婚证"]) == ("结婚证", False, cid, "证照已于 2020-01-01 到期", "证照已过期")


def test_a_certificate_not_yet_valid_says_from_when(catalog: Catalog, records: Records) -> None:
    cid = records.certificate(PERSON, HOUSEHOLD_TYPE, valid_from=dt.date(2027, 1, 1))
    assert brief(ask(catalog)["居民户口簿"]) == (
        "居民户口簿",
        False,
        cid,
        "证照自 2027-01-01 起生效",
        "证照未生效",
    )


@pytest.mark.parametrize(
    ("status", "verdict"),
    [("撤销", "证照已吊销"), ("吊销", "证照已吊销"), ("暂扣", "证照已暂扣"), ("注销", "证照已吊销")],
)
def test_a_certificate_not_in_force_gives_its_status(
    catalog: Catalog, records: Records, status: str, verdict: str
) -> None:
    cid = records.certificate(COMPANY, LICENCE_TYPE, status=status, valid_to=dt.date(2045, 5, 31))
    answer = ask(catalog, COMPANY, BUSINESS)["营业执照"]
    assert brief(answer) == ("营业执照", False, cid, f"证照状态为{status}", verdict)


def test_a_suspended_certificate_gives_the_recorded_reason(catalog: Catalog, records: Records) -> None:
    cid = records.certificate(COMPANY, LICENCE_TYPE, status="暂扣", valid_to=dt.date(2045, 5, 31))
    with catalog.begin() as conn:
        conn.execute(
            sa.insert(certificate_events).values(
                cert_id=cid,
                action="suspend",
                status_before="有效",
                status_after="暂扣",
                reason="licence under investigation",
                leaf_index=99,
                occurred_at=dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC),
            )
        )
    answer = ask(catalog, COMPANY, BUSINESS)["营业执照"]
    assert not answer.skippable and answer.certificate_id == cid
    assert answer.reason == "证照自 2026-11-20 起为暂扣：licence under investigation"


def test_the_version_in_force_is_found_behind_a_superseded_one(catalog: Catalog, records: Records) -> None:
    old = records.certificate(PERSON, HOUSEHOLD_TYPE, serial=7, status=STATUS_SUPERSEDED)
    new = records.certificate(PERSON, HOUSEHOLD_TYPE, serial=7, version=2, previous=old)
    assert ask(catalog)["居民户口簿"].certificate_id == new
    assert ask(catalog)["居民户口簿"].skippable


def test_a_quarantined_record_is_named_only_for_the_material_its_dataset_issues(
    catalog: Catalog, records: Records
) -> None:
    records.quarantined(PERSON, "household", "township_code.region_code", "120114999000")
    records.quarantined(f"{SPOUSE} {PERSON}", "marriage", "cert_no.pattern", "J12-bad")
    records.quarantined(PERSON, "household", "name.required", None)
    # neither a resolved error nor a warning keeps anyone from skipping
    records.quarantined(PERSON, "household", "address.required", None, resolved=True)
    records.quarantined(PERSON, "household", "registered_on.not_in_future", "2099-01-01", severity="warning")

    answers = ask(catalog)

    household = answers["居民户口簿"]
    assert not household.skippable and household.certificate_id is None
    assert household.verdict == "数据待部门更正"
    assert household.reason == (
        "未找到：申请人的 household 记录未通过数据契约校验［name.required, "
        "township_code.region_code (120114999000)］，已暂存待部门更正"
    )
    marriage = answers["结婚证"]
    assert marriage.verdict == "数据待部门更正"
    assert marriage.reason == (
        "未找到：申请人的 marriage 记录未通过数据契约校验［cert_no.pattern (J12-bad)］，已暂存待部门更正"
    )
    assert "marriage" not in household.reason and "household" not in marriage.reason


def test_a_subject_with_nothing_on_record_is_simply_not_found(catalog: Catalog, records: Records) -> None:
    records.quarantined(SPOUSE, "household", "township_code.region_code", "120114999000")
    answer = ask(catalog)["居民户口簿"]
    assert brief(answer) == (
        "居民户口簿",
        False,
        None,
        "未找到：申请人名下没有该材料可用类型的证照",
        "未找到证照",
    )


def test_a_business_is_asked_for_by_its_credit_code(catalog: Catalog, records: Records) -> None:
    cid = records.certificate(
        COMPANY, LICENCE_TYPE, valid_from=dt.date(2015, 6, 1), valid_to=dt.date(2045, 5, 31)
    )
    with catalog.read() as conn:
        answer = skip_check(conn, BUSINESS, COMPANY, ISSUED_BY, today=TODAY)
    assert answer.subject == COMPANY[:6] + "********" + COMPANY[-4:]  # masked whatever the matter
    assert answer.skippable == ["营业执照"] and answer.materials[0].certificate_id == cid


def test_an_invalid_citizen_id_is_refused_and_not_repeated(catalog: Catalog) -> None:
    bad = PERSON[:17] + ("0" if PERSON[17] != "0" else "1")
    with pytest.raises(ConfigurationError) as caught, catalog.read() as conn:
        skip_check(conn, HUKOU_MOVE, bad, ISSUED_BY, today=TODAY)
    message = str(caught.value)
    assert bad not in message and bad[:6] + "********" + bad[-4:] in message and "GB 11643" in message


def test_an_invalid_credit_code_is_refused(catalog: Catalog) -> None:
    with pytest.raises(ConfigurationError, match="GB 32100"), catalog.read() as conn:
        skip_check(conn, BUSINESS, COMPANY[:17] + "I", ISSUED_BY, today=TODAY)
    with pytest.raises(ConfigurationError, match="GB 32100") as caught, catalog.read() as conn:
        skip_check(conn, BUSINESS, PERSON, ISSUED_BY, today=TODAY)  # a person ID for a business matter
    assert PERSON not in str(caught.value)


def test_an_id_typed_with_a_small_x_and_spaces_is_the_same_person(catalog: Catalog, records: Records) -> None:
    body = "12011419850101007"
    person = body + citizen_id_check_char(body)
    assert person.endswith("X"), "the fixture needs an ID ending in X"
    cid = records.certificate(person, HOUSEHOLD_TYPE)
    assert ask(catalog, f" {person.lower()} ")["居民户口簿"].certificate_id == cid


def test_an_id_inside_a_longer_bad_value_is_not_that_subject(catalog: Catalog, records: Records) -> None:
    records.quarantined(PERSON + "7", "household", "person_id.gb11643_citizen_id", None)
    records.quarantined("9" + PERSON, "household", "person_id.length", None)
    answer = ask(catalog)["居民户口簿"]
    assert answer.reason == "未找到：申请人名下没有该材料可用类型的证照"


def test_a_material_of_two_datasets_names_each_failed_record(catalog: Catalog, records: Records) -> None:
    matter = Matter(
        code="proof-of-family",
        name="家庭关系证明",
        department="天津市武清区民政局",
        subject="person",
        materials=(Material(name="家庭关系证明", certificate_types=(HOUSEHOLD_TYPE[0], MARRIAGE_TYPE[0])),),
    )
    records.quarantined(PERSON, "household", "township_code.region_code", "120114999000")
    records.quarantined(f"{PERSON} {SPOUSE}", "marriage", "cert_no.pattern", "J12-bad")
    (answer,) = ask(catalog, PERSON, matter).values()
    assert answer.reason == (
        "未找到：申请人的 household 记录未通过数据契约校验［township_code.region_code (120114999000)］；"
        "申请人的 marriage 记录未通过数据契约校验［cert_no.pattern (J12-bad)］，已暂存待部门更正"
    )


def test_a_typed_materials_note_says_what_to_bring_when_no_certificate_does(
    catalog: Catalog, records: Records
) -> None:
    """子女入学's 居住证明: the 不动产权证书 when the family owns its home, else what the note says."""
    matter = Matter(
        code="school",
        name="子女入学",
        department="天津市武清区教育局",
        subject="person",
        materials=(
            Material(
                name="居住证明", certificate_types=(HOUSEHOLD_TYPE[0],), note="无自有住房的，提交租赁合同"
            ),
        ),
    )
    (missing,) = ask(catalog, PERSON, matter).values()
    assert (
        not missing.skippable
        and missing.reason == "未找到：申请人名下没有该材料可用类型的证照；无自有住房的，提交租赁合同"
    )
    records.certificate(PERSON, HOUSEHOLD_TYPE)
    (held,) = ask(catalog, PERSON, matter).values()
    assert held.skippable and "租赁合同" not in held.reason


def test_a_skippable_answer_with_a_log_records_each_use(catalog: Catalog, records: Records) -> None:
    from catalog import log_leaves
    from evidence.keys import SigningKey
    from evidence.log import TransparencyLog, verify_log
    from evidence.note import parse_vkey

    household = records.certificate(PERSON, HOUSEHOLD_TYPE)
    marriage = records.certificate(PERSON, MARRIAGE_TYPE, valid_from=dt.date(2025, 5, 20))
    key = SigningKey.generate("onceonly.example/test/uses")
    log = TransparencyLog(key, key.name)
    with catalog.begin() as conn:
        answer = skip_check(
            conn, HUKOU_MOVE, PERSON, ISSUED_BY, today=TODAY, log=log, township="120114001000"
        )
    assert answer.skippable == ["结婚证", "居民户口簿"]
    with catalog.read() as conn:
        uses = conn.execute(
            sa.select(log_leaves.c.ref, log_leaves.c.entry).where(log_leaves.c.kind == "use")
        ).all()
        assert verify_log(conn, parse_vkey(key.vkey)).kinds["use"] == 2
    assert [u.ref for u in uses] == [marriage, household]
    for u in uses:
        entry = bytes(u.entry).decode()
        assert '"matter":"hukou-move-after-marriage"' in entry and '"township":"120114001000"' in entry
        assert PERSON not in entry  # the certificate links to the person; the log never names them


SPOUSE_TYPES = (MARRIAGE_TYPE[0],)


def test_the_spouses_certificate_is_found_through_the_marriage_and_shown_masked(
    catalog: Catalog, records: Records
) -> None:
    records.certificate(PERSON, MARRIAGE_TYPE, record_key="J120114-2025-001")
    records.certificate(SPOUSE, MARRIAGE_TYPE, record_key="J120114-2025-001")
    records.certificate(PERSON, HOUSEHOLD_TYPE)
    theirs = records.certificate(SPOUSE, HOUSEHOLD_TYPE)
    with catalog.read() as conn:
        answer = skip_check(conn, HUKOU_MOVE, PERSON, ISSUED_BY, today=TODAY, spouse_types=SPOUSE_TYPES)
    spouse = {m.material: m for m in answer.materials}["配偶居民户口簿"]
    assert (spouse.skippable, spouse.certificate_id, spouse.verdict) == (True, theirs, "可免交")
    assert spouse.holder == "spouse" and spouse.holder_shown == SPOUSE[:6] + "********" + SPOUSE[-4:]
    assert SPOUSE not in json.dumps(answer.to_json(), ensure_ascii=False)  # only the fact, masked


@pytest.mark.parametrize(
    ("status", "valid_to", "verdict", "reason"),
    [
        ("有效", dt.date(2020, 1, 1), "证照已过期", "亲属的证照已过期"),
        ("暂扣", None, "证照已暂扣", "亲属的证照已暂扣"),
        ("撤销", None, "证照已吊销", "亲属的证照已吊销或注销"),
    ],
)
def test_a_relatives_certificate_not_in_force_says_why_in_words_that_name_nothing_of_theirs(
    catalog: Catalog, records: Records, status: str, valid_to: dt.date | None, verdict: str, reason: str
) -> None:
    records.certificate(PERSON, MARRIAGE_TYPE, record_key="J120114-2025-002")
    records.certificate(SPOUSE, MARRIAGE_TYPE, record_key="J120114-2025-002")
    theirs = records.certificate(SPOUSE, HOUSEHOLD_TYPE, status=status, valid_to=valid_to)
    if status == "暂扣":
        with catalog.begin() as conn:  # the reason and day of the suspension: the spouse's affair
            conn.execute(
                sa.insert(certificate_events).values(
                    cert_id=theirs, action="suspend", status_before="有效", status_after="暂扣",
                    reason="涉嫌虚假登记", leaf_index=99,
                    occurred_at=dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC),
                )
            )  # fmt: skip
    with catalog.read() as conn:
        answer = skip_check(conn, HUKOU_MOVE, PERSON, ISSUED_BY, today=TODAY, spouse_types=SPOUSE_TYPES)
    spouse = {m.material: m for m in answer.materials}["配偶居民户口簿"]
    assert (spouse.skippable, spouse.verdict, spouse.reason) == (False, verdict, reason)
    shown = json.dumps(answer.to_json(), ensure_ascii=False)
    assert "2020-01-01" not in shown and "涉嫌虚假登记" not in shown and "2026-11-20" not in shown


def test_no_spouse_without_a_marriage_in_force(catalog: Catalog, records: Records) -> None:
    records.certificate(PERSON, MARRIAGE_TYPE, record_key="J1", status="撤销")
    records.certificate(SPOUSE, MARRIAGE_TYPE, record_key="J1", status="撤销")
    records.certificate(SPOUSE, HOUSEHOLD_TYPE)
    with catalog.read() as conn:
        answer = skip_check(conn, HUKOU_MOVE, PERSON, ISSUED_BY, today=TODAY, spouse_types=SPOUSE_TYPES)
    spouse = {m.material: m for m in answer.materials}["配偶居民户口簿"]
    assert (spouse.skippable, spouse.certificate_id, spouse.verdict) == (False, None, "未找到证照")
    assert "结婚证" in spouse.reason


def test_a_bundle_answers_each_material_once(catalog: Catalog, records: Records) -> None:
    records.certificate(PERSON, MARRIAGE_TYPE, record_key="J2")
    records.certificate(SPOUSE, MARRIAGE_TYPE, record_key="J2")
    records.certificate(PERSON, HOUSEHOLD_TYPE)
    bundle = CATALOGUE.asked("marriage-household")
    with catalog.read() as conn:
        answer = skip_check(conn, bundle, PERSON, ISSUED_BY, today=TODAY, relatives=CATALOGUE.relatives)
    names = [m.material for m in answer.materials]
    assert answer.bundle and len(names) == len(set(names)) and names.count("结婚证") == 1
    by_name = {m.material: m for m in answer.materials}
    assert by_name["结婚证"].needed_by == ("hukou-move-after-marriage", "newborn-registration")
    assert answer.skippable == ["结婚证", "居民户口簿"]
    # the spouse holds no 户口簿; no 出生医学证明 names the applicant as a parent: no child to look
    # for (and a child is found only from what the log commits to): both said in the clerk's words
    assert by_name["配偶居民户口簿"].verdict == "未找到证照"
    child = by_name["新生儿居民户口簿"]
    assert child.verdict == "未找到证照" and "无法确定子女" in child.reason
    assert answer.to_json()["bundle"] is True
    # a relative who was not found is named nowhere (and never the applicant)
    assert by_name["出生医学证明"].holder_shown is None and by_name["出生医学证明"].verdict == "未找到证照"


def test_a_use_of_the_spouses_certificate_commits_to_the_spouse(catalog: Catalog, records: Records) -> None:
    records.certificate(PERSON, MARRIAGE_TYPE, record_key="J3")
    records.certificate(SPOUSE, MARRIAGE_TYPE, record_key="J3")
    theirs = records.certificate(SPOUSE, HOUSEHOLD_TYPE)
    from catalog import log_leaves, use_subjects
    from evidence.keys import SigningKey
    from evidence.log import TransparencyLog

    log = TransparencyLog(SigningKey.generate("test.example/log"), "test.example/log")
    with catalog.begin() as conn:
        skip_check(
            conn,
            HUKOU_MOVE,
            PERSON,
            ISSUED_BY,
            today=TODAY,
            log=log,
            township="120114001000",
            spouse_types=SPOUSE_TYPES,
        )
    with catalog.read() as conn:
        kept = {r.leaf_index: r.subject_id for r in conn.execute(sa.select(use_subjects))}
        uses = conn.execute(
            sa.select(log_leaves.c.leaf_index, log_leaves.c.ref).where(log_leaves.c.kind == "use")
        ).all()
    by_certificate = {u.ref: kept[u.leaf_index] for u in uses}
    assert by_certificate[theirs] == SPOUSE  # the spouse can see this use of their data
    assert PERSON in by_certificate.values()


def test_a_spouse_the_station_may_not_see_is_answered_consent_needed_with_nothing_of_them(
    catalog: Catalog, records: Records
) -> None:
    records.certificate(PERSON, MARRIAGE_TYPE, record_key="J4")
    records.certificate(SPOUSE, MARRIAGE_TYPE, record_key="J4")
    records.certificate(SPOUSE, HOUSEHOLD_TYPE)
    with catalog.read() as conn:
        answer = skip_check(
            conn,
            HUKOU_MOVE,
            PERSON,
            ISSUED_BY,
            today=TODAY,
            spouse_types=SPOUSE_TYPES,
            may_see=lambda subject: subject == PERSON,
        )
    spouse = {m.material: m for m in answer.materials}["配偶居民户口簿"]
    assert (spouse.skippable, spouse.verdict, spouse.certificate_id, spouse.holder_shown) == (
        False,
        "需本人授权",
        None,
        None,
    )
    shown = json.dumps(answer.to_json(), ensure_ascii=False)
    assert SPOUSE not in shown and SPOUSE[-4:] not in shown
