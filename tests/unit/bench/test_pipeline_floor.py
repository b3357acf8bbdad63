"""The pipeline benchmark's floor does the same checks as the product, only vectorised."""

from __future__ import annotations

import hashlib
import random

import pyarrow as pa
import pytest

from bench.pipeline import _merkle_root, _row_hashes, _valid_citizen_ids
from contracts.identifiers import citizen_id_check_char


def test_the_vectorised_check_digit_agrees_with_the_contracts_checker() -> None:
    rng = random.Random(5)
    ids: list[str | None] = []
    expected: list[bool] = []
    for _ in range(2000):
        first17 = "".join(rng.choice("0123456789") for _ in range(17))
        good = first17 + citizen_id_check_char(first17)
        bad = first17 + rng.choice([c for c in "0123456789X" if c != good[17]])
        ids += [good, bad]
        expected += [True, False]
    ids += [None, "", "1" * 17, "1" * 19, "11010119900307123A", "1101011990030712３4", "A" * 18]
    expected += [False] * 7
    assert _valid_citizen_ids(pa.array(ids, pa.string())).tolist() == expected


def test_row_hashes_cover_every_column_and_the_root_pairs_them() -> None:
    table = pa.table({"a": ["x", None, "\\N"], "b": [1, 2, 3]})
    hashes = _row_hashes(table)
    assert hashes[0] == hashlib.sha256(b"\x00x\x1f1").digest()
    assert len(set(hashes)) == 3
    assert (
        _merkle_root(hashes)
        == hashlib.sha256(
            b"\x01" + hashlib.sha256(b"\x01" + hashes[0] + hashes[1]).digest() + hashes[2]
        ).digest()
    )


def test_row_hashes_are_the_same_joined_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A table joined a slice at a time (a 5M-row system's text is over a string array's 2 GiB)
    hashes each row as joined whole, chunked or not."""
    from bench import pipeline

    rows = 23
    table = pa.Table.from_batches(
        [
            pa.record_batch(
                {"a": [f"v{n}" if n % 5 else None for n in range(s, s + 7)], "b": list(range(s, s + 7))}
            )
            for s in range(0, 21, 7)
        ]
        + [pa.record_batch({"a": ["y", "z"], "b": [21, 22]})]
    )
    assert table.num_rows == rows and table.column("a").num_chunks == 4
    whole = _row_hashes(table)
    monkeypatch.setattr(pipeline, "ROW_HASH_SLICE", 5)
    assert _row_hashes(table) == whole
    assert (
        whole[1] == hashlib.sha256(b"\x00v1\x1f1").digest()
        and whole[22] == hashlib.sha256(b"\x00z\x1f22").digest()
    )
