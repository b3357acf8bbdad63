"""Certificate drafts from accepted rows, and the certificate ``issue`` makes of one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import rfc8785

from contracts.compiler import CompiledContract, compile_contract
from contracts.identifiers import citizen_id_check_char
from contracts.model import contract_by_id
from evidence.bundle import certificate_leaf_bytes
from evidence.canonical import canonical_json
from evidence.certificate import (
    CERTIFICATE_SCHEMA,
    HOLDER_ID_TYPES,
    STATUS_VALID,
    Draft,
    drafts_from,
    issue,
)
from evidence.identifier import CertificateId
from onceonly.errors import ContractError
from onceonly.settings import Settings

COMPILED = {
    name: compile_contract(contract_by_id(Settings().contracts_dir, name))
    for name in ("household", "marriage", "business_licence")
}
HOUSEHOLD, MARRIAGE, LICENCE = COMPILED["household"], COMPILED["marriage"], COMPILED["business_licence"]
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def citizen_id(seq: int) -> str:
    body = f"12011419900307{seq:03d}"
    return body + citizen_id_check_char(body)


def table(compiled: CompiledContract, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows already in the contract's types, as validation hands them to issuing."""
    return pa.Table.from_pylist(rows, schema=compiled.arrow_schema)


def household(seq: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "person_id": citizen_id(seq),
        "name": f"王{seq}",
        "gender": "女",
        "ethnicity": "回族",
        "birth_date": dt.date(1990, 3, 7),
        "household_no": f"H{seq:06d}",
        "relation": "户主",
        "address": "天津市武清区杨村街道泉州路32号",
        "township_code": "120114001000",
        "registered_on": dt.date(2000, 1, 1),
        "updated_at": dt.datetime(2026, 11, 20, 8, tzinfo=SHANGHAI),
    }
    row.update(over)
    return row


def marriage(seq: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "cert_no": f"J120114-2025-{seq:06d}",
        "registration_type": "结婚",
        "husband_name": f"赵{seq}",
        "husband_id": citizen_id(100 + seq),
        "husband_township": "120114001000",
        "wife_name": f"钱{seq}",
        "wife_id": citizen_id(200 + seq),
        "wife_township": "120114002000",
        "registered_on": dt.date(2025, 5, 20),
        "registry_office": "天津市武清区民政局婚姻登记处",
    }
    row.update(over)
    return row


def test_one_draft_per_household_row_with_the_record_as_text() -> None:
    (draft,) = drafts_from(table(HOUSEHOLD, [household(1)]), HOUSEHOLD)

    assert (draft.dataset, draft.record_key, draft.holder_id) == ("household", citizen_id(1), citizen_id(1))
    assert (draft.holder_name, draft.township) == ("王1", "120114001000")
    assert (draft.valid_from, draft.valid_to) == ("2000-01-01", None)
    assert draft.content == {
        "number": "H000001",
        "type": {"code": "11100000000019342N001", "name": "居民户口簿"},
        "issuer": {"name": "天津市公安局武清分局", "code": "111201140000000196"},
        "holder": {"name": "王1", "id_type": "居民身份证", "id_type_code": "111", "id": citizen_id(1)},
        "valid_from": "2000-01-01",
        "valid_to": None,
        "township": "120114001000",
        "status": "有效",
        "fields": {
            "name": "王1",
            "gender": "女",
            "ethnicity": "回族",
            "birth_date": "1990-03-07",
            "household_no": "H000001",
            "relation": "户主",
            "address": "天津市武清区杨村街道泉州路32号",
        },
    }
    assert draft.content_sha256 == hashlib.sha256(rfc8785.dumps(draft.content)).hexdigest()


def test_the_content_hash_follows_the_record_only() -> None:
    rows = [household(1), household(2)]
    first = {d.holder_id: d.content_sha256 for d in drafts_from(table(HOUSEHOLD, rows), HOUSEHOLD)}
    # the same records in another order, pulled at another time: the same hashes
    later = [dict(r, updated_at=dt.datetime(2026, 12, 1, tzinfo=SHANGHAI)) for r in reversed(rows)]
    assert {d.holder_id: d.content_sha256 for d in drafts_from(table(HOUSEHOLD, later), HOUSEHOLD)} == first
    # a changed address: a different hash for that holder only
    moved = [household(1), household(2, address="天津市武清区下朱庄街道1号")]
    changed = {d.holder_id: d.content_sha256 for d in drafts_from(table(HOUSEHOLD, moved), HOUSEHOLD)}
    assert changed[citizen_id(1)] == first[citizen_id(1)]
    assert changed[citizen_id(2)] != first[citizen_id(2)]


def test_a_marriage_gives_each_spouse_a_certificate_in_their_own_township() -> None:
    drafts = drafts_from(table(MARRIAGE, [marriage(1), marriage(2, wife_id=None)]), MARRIAGE)

    assert [(d.record_key, d.holder_id, d.township) for d in drafts] == [
        ("J120114-2025-000001", citizen_id(101), "120114001000"),
        ("J120114-2025-000001", citizen_id(201), "120114002000"),
        ("J120114-2025-000002", citizen_id(102), "120114001000"),  # no wife ID: no certificate for her
    ]
    husband, wife = drafts[0], drafts[1]
    assert husband.content["fields"] == wife.content["fields"]
    assert husband.content["holder"]["name"] == "赵1" and wife.content["holder"]["name"] == "钱1"


def test_licence_validity_and_decimals_become_text() -> None:
    row = {
        "uscc": "91120114MA05JHL40W",
        "name": "天津武清商贸有限公司",
        "entity_type": "有限责任公司",
        "legal_representative": "孙一",
        "legal_representative_id": citizen_id(7),
        "registered_capital": Decimal("1000000.50"),
        "established_on": dt.date(2015, 6, 1),
        "valid_from": dt.date(2015, 6, 1),
        "valid_to": dt.date(2045, 5, 31),
        "address": "天津市武清区黄庄街道1号",
        "township_code": "120114004000",
        "business_scope": None,
        "registration_authority": "天津市武清区市场监督管理局",
        "status": "存续",
        "updated_at": dt.datetime(2026, 11, 20, 8, tzinfo=SHANGHAI),
    }
    (draft,) = drafts_from(table(LICENCE, [row]), LICENCE)

    assert (draft.valid_from, draft.valid_to) == ("2015-06-01", "2045-05-31")
    assert draft.content["fields"]["registered_capital"] == "1000000.50"
    assert draft.content["fields"]["business_scope"] is None
    holder = {
        "name": "天津武清商贸有限公司",
        "id_type": "统一社会信用代码",
        "id_type_code": "001",
        "id": row["uscc"],
    }
    assert draft.content["holder"] == holder


def test_a_timestamp_field_is_written_in_the_source_timezone() -> None:
    spec = HOUSEHOLD.certificate
    assert spec is not None
    compiled = dataclasses.replace(HOUSEHOLD, certificate=dataclasses.replace(spec, fields=("updated_at",)))
    (draft,) = drafts_from(table(HOUSEHOLD, [household(1)]), compiled)
    assert draft.content["fields"]["updated_at"].startswith("2026-11-20T08:00:00")
    assert draft.content["fields"]["updated_at"].endswith("+0800")


def test_no_drafts_without_rows_or_without_a_certificate() -> None:
    assert drafts_from(table(HOUSEHOLD, []), HOUSEHOLD) == []
    no_certificate = dataclasses.replace(HOUSEHOLD, certificate=None)
    assert drafts_from(table(HOUSEHOLD, [household(1)]), no_certificate) == []


def test_an_unknown_holder_id_type_is_a_contract_error() -> None:
    spec = HOUSEHOLD.certificate
    assert spec is not None
    holders = tuple({**h, "idType": "驾驶证"} for h in spec.holders)
    compiled = dataclasses.replace(HOUSEHOLD, certificate=dataclasses.replace(spec, holders=holders))
    with pytest.raises(ContractError, match="holder idType '驾驶证' is not a known holder identity type"):
        drafts_from(table(HOUSEHOLD, [household(1)]), compiled)


def test_the_certificate_carries_every_gb_t_36903_element(draft: Draft) -> None:
    cid = CertificateId.build("11100000000019342N001", "111201140000000196", 42, 2)
    cert = issue(
        draft,
        cid,
        issue_date=dt.date(2026, 11, 21),
        batch_id="b" * 32,
        contract="household@1.0.0",
        previous=str(cid.with_version(1)),
        status_entry={"issuer": "111201140000000196", "list": 0, "index": 4711},
    )
    elements = {
        "identifier": cert["id"],
        "certificate number": cert["number"],
        "type code": cert["type"]["code"],
        "type name": cert["type"]["name"],
        "issuer name": cert["issuer"]["name"],
        "issuer USCC": cert["issuer"]["code"],
        "issue date": cert["issue_date"],
        "valid from": cert["valid_from"],
        "holder name": cert["holder"]["name"],
        "holder ID type": cert["holder"]["id_type"],
        "holder ID type code": cert["holder"]["id_type_code"],
        "holder ID number": cert["holder"]["id"],
        "status": cert["status"],
        "previous version": cert["previous"],
        "contract": cert["source"]["contract"],
        "batch": cert["source"]["batch"],
    }
    assert all(elements.values()), [k for k, v in elements.items() if not v]
    assert "valid_to" in cert  # null: a household register does not expire
    assert HOLDER_ID_TYPES[cert["holder"]["id_type"]] == "111"
    assert cert["credential_status"] == {"issuer": "111201140000000196", "list": 0, "index": 4711}


@pytest.fixture
def draft() -> Draft:
    return drafts_from(table(HOUSEHOLD, [household(1)]), HOUSEHOLD)[0]


def test_issue_adds_identity_status_and_provenance(draft: Draft) -> None:
    cid = CertificateId.build("11100000000019342N001", "111201140000000196", 42)
    cert = issue(draft, cid, issue_date=dt.date(2026, 11, 21), batch_id="b" * 32, contract="household@1.0.0")

    assert cert["schema"] == CERTIFICATE_SCHEMA and cert["id"] == str(cid)
    assert (cert["status"], cert["version"], cert["previous"]) == (STATUS_VALID, 1, None)
    assert cert["issue_date"] == "2026-11-21" and cert["valid_from"] == "2000-01-01"
    assert cert["source"] == {"dataset": "household", "contract": "household@1.0.0", "batch": "b" * 32}
    assert {k: cert[k] for k in draft.content if k != "valid_from"} == {
        k: v for k, v in draft.content.items() if k != "valid_from"
    }
    # the log leaf: RFC 8785 bytes, which read back as the same certificate
    assert json.loads(certificate_leaf_bytes(cert)) == cert


def test_a_renewal_names_its_previous_version(draft: Draft) -> None:
    first = CertificateId.build("11100000000019342N001", "111201140000000196", 42)
    cert = issue(
        draft,
        first.with_version(2),
        issue_date=dt.date(2026, 11, 21),
        batch_id="c" * 32,
        contract="household@1.0.0",
        previous=str(first),
    )
    assert (cert["version"], cert["previous"]) == (2, str(first))


def test_without_a_start_of_validity_the_certificate_is_valid_from_its_issue(draft: Draft) -> None:
    undated = dataclasses.replace(draft, valid_from=None)
    cid = CertificateId.build("11100000000019342N001", "111201140000000196", 1)
    cert = issue(undated, cid, issue_date=dt.date(2026, 11, 21), batch_id="d" * 32, contract="household@1")
    assert cert["valid_from"] == "2026-11-21"


def test_source_status_becomes_the_certificate_status_and_a_change_is_a_new_content_hash() -> None:
    from contracts.identifiers import uscc_check_char

    body = "91120114MA05K3P0" + "1"
    uscc = body + uscc_check_char(body)
    row = {
        "uscc": uscc,
        "name": "天津市武清区某某商贸有限公司",
        "entity_type": "有限责任公司(自然人独资)",
        "legal_representative": "张三",
        "legal_representative_id": None,
        "registered_capital": Decimal("100.00"),
        "established_on": dt.date(2020, 1, 1),
        "valid_from": dt.date(2020, 1, 1),
        "valid_to": None,
        "address": "天津市武清区杨村街道",
        "township_code": "120114001000",
        "business_scope": "零售",
        "registration_authority": "天津市武清区市场监督管理局",
        "status": "存续",
        "updated_at": dt.datetime(2026, 11, 20, tzinfo=dt.UTC),
    }
    (in_force,) = drafts_from(table(LICENCE, [row]), LICENCE)
    (revoked,) = drafts_from(table(LICENCE, [{**row, "status": "吊销"}]), LICENCE)
    assert in_force.content["status"] == "有效"
    assert revoked.content["status"] == "吊销"
    assert in_force.content_sha256 != revoked.content_sha256


def _licence_row(seq: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "uscc": "91120114MA05JHL40W",
        "name": f'天津"武清"\\商贸{seq}\n有限公司',
        "entity_type": "有限责任公司",
        "legal_representative": "孙一",
        "legal_representative_id": citizen_id(7),
        "registered_capital": Decimal("1000000.50"),
        "established_on": dt.date(2015, 6, 1),
        "valid_from": dt.date(2015, 6, 1),
        "valid_to": None,
        "address": "天津市武清区黄庄街道1号",
        "township_code": "120114004000",
        "business_scope": None,
        "registration_authority": "天津市武清区市场监督管理局",
        "status": "存续",
        "updated_at": dt.datetime(2026, 11, 20, 8, tzinfo=SHANGHAI),
    }
    row.update(over)
    return row


@pytest.mark.parametrize(
    ("compiled", "rows"),
    [
        (
            HOUSEHOLD,
            [
                household(i, address=f"泉州路{i}号", township_code=None if i == 3 else "120114001000")
                for i in range(1, 8)
            ],
        ),
        (
            MARRIAGE,
            [marriage(1), marriage(2, wife_id=None), marriage(3, husband_id=""), marriage(4, wife_name=None)],
        ),
        (
            LICENCE,
            [
                _licence_row(1),
                _licence_row(2, status="吊销", valid_to=dt.date(2030, 1, 1)),
                _licence_row(3, status=None),
            ],
        ),
        (HOUSEHOLD, []),
    ],
)
def test_draft_table_is_drafts_from_column_wise(
    compiled: CompiledContract, rows: list[dict[str, Any]]
) -> None:
    from evidence.certificate import draft_table

    accepted = table(compiled, rows)
    expected = drafts_from(accepted, compiled)
    got = draft_table(accepted, compiled).to_pylist()
    assert len(got) == len(expected)
    for row, draft in zip(got, expected, strict=True):
        content = draft.content
        assert row["record_key"] == draft.record_key and row["holder_id"] == draft.holder_id
        assert (row["holder_name"], row["township"]) == (draft.holder_name, draft.township)
        assert (row["valid_from"], row["valid_to"]) == (draft.valid_from, draft.valid_to)
        assert (row["number"], row["status"]) == (content["number"], content["status"])
        assert {k[len("field:") :]: v for k, v in row.items() if k.startswith("field:")} == content["fields"]
        assert row["content_sha256"] == draft.content_sha256


@pytest.mark.parametrize(
    ("compiled", "rows"),
    [
        (HOUSEHOLD, [household(i) for i in range(1, 6)]),
        (MARRIAGE, [marriage(1), marriage(2, wife_id=None), marriage(3), marriage(4, husband_id="")]),
    ],
)
def test_draft_table_of_a_slice_hashes_only_its_rows(
    compiled: CompiledContract, rows: list[dict[str, Any]]
) -> None:
    # Batches are slices of a larger table: the hashes are read from the slice's own bytes.
    from evidence.certificate import draft_table

    accepted = table(compiled, rows)
    for start, length in [(1, 3), (0, 1), (len(rows) - 1, 1)]:
        part = accepted.slice(start, length)
        got = draft_table(part, compiled).column("content_sha256").to_pylist()
        assert got == [d.content_sha256 for d in drafts_from(part, compiled)]


def _mixed_holders() -> CompiledContract:
    """Marriage, but the wife holds a passport and has no township column."""
    spec = MARRIAGE.certificate
    assert spec is not None
    husband, wife = spec.holders
    wife = {k: v for k, v in wife.items() if k != "townshipColumn"} | {"idType": "普通护照"}
    return dataclasses.replace(MARRIAGE, certificate=dataclasses.replace(spec, holders=(husband, wife)))


@pytest.mark.parametrize("compiled", [HOUSEHOLD, MARRIAGE, LICENCE, _mixed_holders()])
def test_content_shape_over_the_draft_table_writes_each_drafts_content(compiled: CompiledContract) -> None:
    # Landing writes certificates with content_shape over draft_table rows; what the contract
    # fixes for every draft is a constant there, and must write the same bytes as the column.
    from evidence.canonical import canonical_rows
    from evidence.certificate import content_shape, draft_table

    rows = {
        "household": [household(1), household(2, township_code=None)],
        "marriage": [marriage(1), marriage(2, wife_id=None), marriage(3, husband_township=None)],
        "business_licence": [_licence_row(1), _licence_row(2, status="吊销", valid_to=dt.date(2030, 1, 1))],
    }[compiled.contract.id]
    accepted = table(compiled, rows)
    drafts = draft_table(accepted, compiled)
    expected = drafts_from(accepted, compiled)
    assert drafts.column("content_sha256").to_pylist() == [d.content_sha256 for d in expected]
    written = canonical_rows(content_shape(compiled), drafts).to_pylist()
    assert [w.encode() for w in written] == [canonical_json(d.content) for d in expected]


def test_a_value_the_contract_fixes_is_a_constant_of_the_content_shape() -> None:
    from evidence.canonical import Column
    from evidence.certificate import content_shape

    household_shape, mixed_shape = content_shape(HOUSEHOLD), content_shape(_mixed_holders())
    assert household_shape["holder"]["id_type"] == "居民身份证"
    assert (household_shape["status"], household_shape["valid_to"]) == (STATUS_VALID, None)
    assert mixed_shape["holder"]["id_type"] == Column("id_type")
    assert mixed_shape["township"] == Column("township")
