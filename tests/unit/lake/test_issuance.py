"""The column-wise issuance path writes exactly the certificates ``issue`` describes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from landing_harness import (
    LICENCE,
    MARRIAGE,
    TODAY,
    Harness,
    licence_row,
    marriage_row,
    validate,
)

from catalog import certificates
from contracts.compiler import CompiledContract
from evidence.bundle import certificate_leaf_bytes
from evidence.certificate import drafts_from, issue
from evidence.commitment import certificate_entry
from evidence.identifier import CertificateId, certificate_ids
from evidence.log import leaf_at, opening_at
from evidence.status_list import StatusEntry


def _assert_each_certificate_is_issue_of_its_draft(
    harness: Harness, compiled: CompiledContract, rows: Sequence[dict[str, Any]]
) -> int:
    drafts = {
        (d.record_key, d.holder_id): d for d in drafts_from(validate(compiled, rows).accepted, compiled)
    }
    stored = harness.all(sa.select(certificates).where(certificates.c.dataset == compiled.contract.id))
    checked = 0
    for row in stored:
        draft = drafts.get((row.record_key, row.holder_id))
        if draft is None or draft.content_sha256 != row.content_sha256:
            continue  # an older version, from other rows
        spec = compiled.certificate
        assert spec is not None
        entry = StatusEntry(spec.issuer_code, row.list_no, row.status_index).to_json()
        expected = issue(
            draft,
            CertificateId.parse(row.cert_id),
            issue_date=TODAY,
            batch_id=row.batch_id,
            contract=compiled.ref,
            previous=row.previous_id,
            status_entry=entry,
        )
        with harness.catalog.read() as conn:
            opening = opening_at(conn, row.leaf_index)
            entry = leaf_at(conn, row.leaf_index).entry
        # The certificate is kept beside the log, byte for byte; the log holds only its
        # commitment under the certificate's own salt, built column-wise as one by one.
        assert opening is not None and opening.body == certificate_leaf_bytes(expected)
        assert opening.ref == row.cert_id and len(opening.salt) == 16
        assert entry == certificate_entry(expected, opening.salt)
        assert entry is not None and b"holder" not in entry and row.holder_id.encode() not in entry
        assert row.valid_from == dt.date.fromisoformat(expected["valid_from"][:10])
        assert row.valid_to == (dt.date.fromisoformat(draft.valid_to[:10]) if draft.valid_to else None)
        assert (row.status, row.township, row.holder_name) == (
            expected["status"],
            draft.township,
            draft.holder_name,
        )
        checked += 1
    return checked


def test_marriages_licences_and_renewals_are_issue_byte_for_byte(harness: Harness) -> None:
    marriages = [marriage_row(1), marriage_row(2), marriage_row(3)]
    assert (
        harness.land(marriages, before=None, after={"m": 1}, compiled=MARRIAGE, connector="m").certificates
        == 6
    )
    assert _assert_each_certificate_is_issue_of_its_draft(harness, MARRIAGE, marriages) == 6

    licences = [licence_row(1), licence_row(2, valid_to=None), licence_row(3, status="吊销")]
    assert (
        harness.land(licences, before=None, after={"l": 1}, compiled=LICENCE, connector="l").certificates == 3
    )
    assert _assert_each_certificate_is_issue_of_its_draft(harness, LICENCE, licences) == 3

    # one renewal and one new record in the same batch: versions follow, serials continue
    again = [marriage_row(1, registry_office="天津市武清区民政局"), *marriages[1:], marriage_row(4)]
    landed = harness.land(again, before={"m": 1}, after={"m": 2}, compiled=MARRIAGE, connector="m")
    assert landed.certificates == 4  # two spouses renewed, two new
    assert _assert_each_certificate_is_issue_of_its_draft(harness, MARRIAGE, again) == 8
    versions = harness.all(sa.select(certificates.c.version).where(certificates.c.dataset == "marriage"))
    assert sorted(v.version for v in versions) == [1, 1, 1, 1, 1, 1, 1, 1, 2, 2]


def test_certificate_ids_in_bulk_are_build_one_by_one() -> None:
    type_code, issuer = "HKB0001", "91350100M000100Y43"
    serials = [0, 1, 42, 99_999_999, 100_000_000, 123_456_789_012, 10**18 - 1]
    versions = [1, 2, 999, 1, 7, 10, 3]
    expected = [
        str(CertificateId.build(type_code, issuer, s, v)) for s, v in zip(serials, versions, strict=True)
    ]
    assert certificate_ids(type_code, issuer, serials, versions).to_pylist() == expected
    assert certificate_ids(type_code, issuer, [], []).to_pylist() == []
