"""Commitments: the published entry names nobody; only the right certificate and salt open it."""

from __future__ import annotations

import copy
import json

import pytest

from evidence.commitment import (
    ENTRY_SCHEMA,
    SALT_SIZE,
    certificate_entry,
    check_opening,
    commitment,
    is_commitment_entry,
    new_salts,
    open_entry,
    public_part,
    subject_commitment,
)
from onceonly.errors import VerificationFailed

CERTIFICATE = {
    "schema": "onceonly-ecert/1",
    "id": "1.2.156.3005.2.1110000000001201XK001.11120114000000123A.00000001.001.9",
    "type": {"code": "1110000000001201XK001", "name": "居民户口簿"},
    "issuer": {"code": "11120114000000123A", "name": "天津市公安局武清分局"},
    "holder": {"name": "张三", "id_type": "居民身份证", "id_type_code": "111", "id": "11010519491231002X"},
    "issue_date": "2026-11-21",
    "valid_from": "2026-11-21",
    "valid_to": None,
    "status": "有效",
    "township": "120114001000",
    "fields": {"household_no": "H000001"},
    "version": 1,
    "previous": None,
    "credential_status": {"issuer": "11120114000000123A", "list": 0, "index": 4711},
}
SALT = bytes(range(16))


def test_the_entry_holds_only_what_may_be_public_and_the_commitment() -> None:
    entry = certificate_entry(CERTIFICATE, SALT)
    opened = open_entry(entry)
    assert opened == {
        "schema": ENTRY_SCHEMA,
        **public_part(CERTIFICATE),
        "commitment": commitment(
            SALT, json.dumps(CERTIFICATE, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
        ).hex(),
    }
    for personal in ("张三", "11010519491231002X", "120114001000", "H000001"):
        assert personal.encode() not in entry
    assert is_commitment_entry(entry) and not is_commitment_entry(b'{"holder":{}}')


def test_the_right_opening_verifies_and_any_changed_byte_or_salt_fails() -> None:
    entry = certificate_entry(CERTIFICATE, SALT)
    check_opening(entry, CERTIFICATE, SALT)
    for position in range(SALT_SIZE):
        other = bytearray(SALT)
        other[position] ^= 1
        with pytest.raises(VerificationFailed, match="do not open"):
            check_opening(entry, CERTIFICATE, bytes(other))
    for path, value in [
        (("holder", "id"), "110105194912310037"),
        (("holder", "name"), "李四"),
        (("township",), "120114002000"),
        (("valid_to",), "2030-01-01"),
        (("status",), "撤销"),
        (("fields", "household_no"), "H000002"),
    ]:
        changed = copy.deepcopy(CERTIFICATE)
        target = changed
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(VerificationFailed, match="do not open"):
            check_opening(entry, changed, SALT)
    with pytest.raises(VerificationFailed, match="not 16"):
        check_opening(entry, CERTIFICATE, SALT[:15])


def test_salts_are_fresh_and_a_subject_commitment_hides_the_subject() -> None:
    salts = new_salts(1000)
    assert len(set(salts)) == 1000 and all(len(s) == SALT_SIZE for s in salts)
    one, two = (
        subject_commitment(salts[0], "11010519491231002X"),
        subject_commitment(salts[1], "11010519491231002X"),
    )
    assert one != two and len(one) == 64 and "1101051949" not in one
    assert subject_commitment(salts[0], "11010519491231002X") == one


def test_an_entry_that_is_not_a_certificate_entry_is_refused() -> None:
    for entry in (b"not json", b"[]", b'{"schema":"onceonly-log-entry/1"}'):
        with pytest.raises(VerificationFailed):
            open_entry(entry)
