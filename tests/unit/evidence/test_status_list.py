"""Status lists after the W3C Bitstring Status List: encoding, states, signature, entry assignment."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catalog import Catalog, status_lists
from evidence import status_list as sl
from evidence.keys import SigningKey
from evidence.note import parse_vkey
from evidence.status_list import (
    LIST_SIZE,
    STATES,
    PublishedList,
    allocate_entries,
    decode_bits,
    encode_bits,
    make_document,
    open_status_list,
    sign_document,
)
from onceonly.errors import VerificationFailed

ORIGIN = "onceonly.example/test/evidence"
ISSUER = "111201140000000196"
WHEN = dt.datetime(2026, 11, 21, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


def published(key: SigningKey, states: dict[int, str]) -> dict[str, Any]:
    document = make_document(ISSUER, 0, ORIGIN, WHEN, states)
    _, signature = sign_document(document, key)
    return json.loads(json.dumps(PublishedList(document, signature, 5).to_json()))


def test_the_list_has_the_w3c_minimum_size_and_encoding(key: SigningKey) -> None:
    document = published(key, {})["document"]
    assert LIST_SIZE == 131_072  # "at least 16KB" uncompressed
    for encoded, bits in ((document["revocation"], LIST_SIZE), (document["suspension"], LIST_SIZE)):
        assert encoded.startswith("u") and "=" not in encoded  # multibase base64url, no padding
        raw = gzip.decompress(base64.urlsafe_b64decode(encoded[1:] + "=" * (-len(encoded[1:]) % 4)))
        assert len(raw) * 8 == bits and raw == bytes(len(raw))
    assert document["message"]["statusSize"] == 3
    assert [m["message"] for m in document["message"]["statusMessages"]] == list(STATES)


def test_index_zero_is_the_leftmost_bit() -> None:
    bits = np.zeros(16, dtype=np.uint8)
    bits[0] = 1
    bits[9] = 1
    assert decode_bits(encode_bits(bits, 16), 16) == bytes([0b1000_0000, 0b0100_0000])


def test_each_state_reads_back_at_its_index_and_sets_the_right_purpose_bits(key: SigningKey) -> None:
    states = {7: "暂扣", 1000: "撤销", 1001: "吊销", LIST_SIZE - 1: "注销", 42: "失效", 43: "superseded"}
    data = published(key, states)
    status = open_status_list(data, parse_vkey(key.vkey))
    for index, state in states.items():
        assert status.state(index) == state
    assert status.state(0) == status.state(8) == "有效"
    document = data["document"]
    revocation = decode_bits(document["revocation"], LIST_SIZE)
    suspension = decode_bits(document["suspension"], LIST_SIZE)

    def bit(raw: bytes, index: int) -> int:
        return (raw[index // 8] >> (7 - index % 8)) & 1

    assert [bit(suspension, i) for i in states] == [1, 0, 0, 0, 0, 0]
    assert [bit(revocation, i) for i in states] == [0, 1, 1, 1, 1, 1]
    with pytest.raises(VerificationFailed, match="not inside a list"):
        status.state(LIST_SIZE)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))
    else:
        yield path


def test_any_changed_value_fails_the_signature(key: SigningKey) -> None:
    good = published(key, {7: "暂扣"})
    verifier = parse_vkey(key.vkey)
    for path in _paths(good["document"]):
        changed = copy.deepcopy(good)
        target = changed["document"]
        for step in path[:-1]:
            target = target[step]
        value = target[path[-1]]
        target[path[-1]] = value + 1 if isinstance(value, int) else str(value)[:-1] + "Q"
        with pytest.raises(VerificationFailed):
            open_status_list(changed, verifier)
    with pytest.raises(VerificationFailed, match="no signature by"):
        open_status_list(good, parse_vkey(SigningKey.generate(ORIGIN).vkey))
    with pytest.raises(VerificationFailed, match="document, signature and leaf_index"):
        open_status_list({**good, "extra": 1}, verifier)


def test_a_gzip_bomb_or_truncated_list_is_refused() -> None:
    bomb = gzip.compress(bytes(10 << 20), mtime=0)
    encoded = "u" + base64.urlsafe_b64encode(bomb).rstrip(b"=").decode()
    with pytest.raises(VerificationFailed, match="truncated or too large"):
        decode_bits(encoded, LIST_SIZE)
    good = encode_bits(np.zeros(LIST_SIZE, dtype=np.uint8), LIST_SIZE)
    with pytest.raises(VerificationFailed):
        decode_bits(good[:-4], LIST_SIZE)
    with pytest.raises(VerificationFailed, match="multibase"):
        decode_bits(good[1:], LIST_SIZE)
    with pytest.raises(VerificationFailed, match="expected"):
        decode_bits(good, LIST_SIZE * 3)


def test_entries_are_random_unique_and_continue_in_a_new_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sl, "LIST_SIZE", 64)
    catalog = Catalog.connect(f"sqlite:///{tmp_path / 'catalog.db'}")
    with catalog.begin() as conn:
        first = allocate_entries(conn, ISSUER, 40)
        second = allocate_entries(conn, ISSUER, 40)
        other = allocate_entries(conn, "91120114MA00000013", 3)
    entries = first + second
    assert [e.list_no for e in entries] == [0] * 64 + [1] * 16
    assert sorted(e.index for e in entries if e.list_no == 0) == list(range(64))  # each once
    assert [e.index for e in first] != sorted(e.index for e in first)  # not in issue order
    assert {e.issuer for e in other} == {"91120114MA00000013"}
    with catalog.read() as conn:
        rows = conn.execute(status_lists.select()).all()
    assert {(r.issuer_code, r.list_no, r.next_slot) for r in rows} == {
        (ISSUER, 0, 64),
        (ISSUER, 1, 16),
        ("91120114MA00000013", 0, 3),
    }
    catalog.dispose()


def test_positions_in_bulk_cross_into_a_new_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sl, "LIST_SIZE", 64)
    catalog = Catalog.connect(f"sqlite:///{tmp_path / 'catalog.db'}")
    with catalog.begin() as conn:
        lists, indexes = sl.allocate_positions(conn, ISSUER, 100)
        later = allocate_entries(conn, ISSUER, 28)
    assert lists.tolist() == [0] * 64 + [1] * 36
    assert sorted(indexes[:64].tolist()) == list(range(64))
    assert sorted([*indexes[64:].tolist(), *(e.index for e in later)]) == list(range(64))
    assert {e.list_no for e in later} == {1}
    catalog.dispose()
