"""The fast canonical-JSON path must equal the rfc8785 reference wherever it is taken."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.canonical import canonical_json

_keys = st.text(alphabet=st.characters(max_codepoint=127), max_size=12)
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)  # no lone surrogates
_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _text
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_keys, children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=600)
@given(_values)
def test_fast_path_equals_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@given(st.dictionaries(st.text(max_size=6), st.floats(allow_nan=False, allow_infinity=False), max_size=4))
def test_outside_the_domain_the_reference_is_used(value: dict[str, float]) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_control_characters_and_chinese_text() -> None:
    value = {"名": '张\u0001三\n\t"\\', "b": [1, None, True], "a": "\u2028\u007f"}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert json.loads(canonical_json(value)) == value


def test_what_the_fast_path_refuses_the_reference_decides() -> None:
    """A lone surrogate (no UTF-8 for it) and nesting deeper than orjson goes: the reference's
    answer, not orjson's error."""
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_json({"a": "\ud800"})
    deep: list[Any] = []
    inner = deep
    for _ in range(300):
        inner.append([])
        inner = inner[0]
    assert canonical_json(deep) == rfc8785.dumps(deep)


def test_non_ascii_keys_go_through_the_reference() -> None:
    value = {"\ue000": 1, "\U0001f600": 2}  # UTF-16 order differs from code-point order here
    assert canonical_json(value) == rfc8785.dumps(value)
    assert list(json.loads(canonical_json(value))) == ["\U0001f600", "\ue000"]


# --- the columnar writer: whole batches, byte-identical to the reference ---

_row_text = st.none() | _text
_row_int = st.none() | st.integers(-(2**53) + 1, 2**53 - 1)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(_row_text, _row_text, _row_int, st.none() | st.booleans()),
        min_size=1,
        max_size=20,
    ),
    st.dictionaries(_keys, _scalars, max_size=3),
)
def test_canonical_rows_equal_rfc8785_row_by_row(
    rows: list[tuple[Any, ...]], constants: dict[str, Any]
) -> None:
    import pyarrow as pa

    from evidence.canonical import Column, canonical_rows

    table = pa.table(
        {
            "name": pa.array([r[0] for r in rows], pa.string()),
            "id": pa.array([r[1] for r in rows], pa.string()),
            "n": pa.array([r[2] for r in rows], pa.int64()),
            "ok": pa.array([r[3] for r in rows], pa.bool_()),
        }
    )
    shape = {
        **constants,
        "holder": {"name": Column("name"), "id": Column("id"), "z": {"ok": Column("ok")}},
        "version": Column("n"),
        "schema": "onceonly-ecert/1",
        "A_upper": [1, "二", None],
    }
    got = canonical_rows(shape, table).to_pylist()
    for row, text in zip(rows, got, strict=True):
        value = {
            **constants,
            "holder": {"name": row[0], "id": row[1], "z": {"ok": row[3]}},
            "version": row[2],
            "schema": "onceonly-ecert/1",
            "A_upper": [1, "二", None],
        }
        assert text.encode("utf-8") == rfc8785.dumps(value)


def test_canonical_rows_escapes_every_control_character() -> None:
    import pyarrow as pa

    from evidence.canonical import Column, canonical_rows

    values = ["".join(chr(c) for c in range(0x20)) + '"\\\u2028\u007f张', "plain"]
    got = canonical_rows({"v": Column("v")}, pa.table({"v": values})).to_pylist()
    assert [g.encode() for g in got] == [rfc8785.dumps({"v": v}) for v in values]


def test_canonical_rows_refuses_what_it_cannot_write() -> None:
    import pyarrow as pa
    import pytest

    from evidence.canonical import Column, canonical_rows

    with pytest.raises(ValueError, match="beyond"):
        canonical_rows({"n": Column("n")}, pa.table({"n": pa.array([2**53], pa.int64())}))
    with pytest.raises(ValueError, match="no canonical form"):
        canonical_rows({"f": Column("f")}, pa.table({"f": pa.array([1.5])}))
    with pytest.raises(ValueError, match="not a string"):
        canonical_rows({1: Column("f")}, pa.table({"f": ["x"]}))  # type: ignore[dict-item]


def test_canonical_rows_sorts_any_keys_by_utf16_code_units() -> None:
    import pyarrow as pa

    from evidence.canonical import Column, canonical_rows

    # U+FB01 sorts before U+1D11E by code point but after it by UTF-16 code unit (RFC 8785 §3.2.3).
    shape = {"名": Column("f"), "\ufb01": 1, "\U0001d11e": Column("f"), "a": {"地址": Column("f")}}
    got = canonical_rows(shape, pa.table({"f": ["x", None]})).to_pylist()
    expected = [rfc8785.dumps({"名": v, "\ufb01": 1, "\U0001d11e": v, "a": {"地址": v}}) for v in ("x", None)]
    assert [g.encode() for g in got] == expected


def test_canonical_rows_scans_only_the_rows_of_a_slice() -> None:
    import pyarrow as pa

    from evidence.canonical import Column, canonical_rows

    values = ['a"b', "plain", "张三", "c\\d\n"]
    table = pa.table({"v": values})
    for start, length in [(1, 2), (0, 1), (3, 1), (1, 3)]:
        got = canonical_rows({"v": Column("v")}, table.slice(start, length)).to_pylist()
        assert [g.encode() for g in got] == [rfc8785.dumps({"v": v}) for v in values[start : start + length]]


def test_canonical_rows_ignores_bytes_behind_null_slots() -> None:
    import numpy as np
    import pyarrow as pa

    from evidence.canonical import Column, canonical_rows

    # Arrow leaves the bytes of a null slot unspecified: here they hold '"' and a control.
    data = b'ab"\x01cd'
    offsets = np.array([0, 2, 4, 6], np.int32)
    validity = pa.array([True, False, True]).buffers()[1]
    column = pa.StringArray.from_buffers(3, pa.py_buffer(offsets), pa.py_buffer(data), validity, 1)
    got = canonical_rows({"v": Column("v"), "k": 1}, pa.table({"v": column})).to_pylist()
    assert [g.encode() for g in got] == [rfc8785.dumps({"v": v, "k": 1}) for v in ("ab", None, "cd")]


def test_canonical_rows_writes_an_all_null_column_as_constant_null() -> None:
    import pyarrow as pa

    from evidence.canonical import Column, canonical_rows

    table = pa.table({"v": pa.nulls(3, pa.string()), "w": ["x", "y", None]})
    got = canonical_rows({"v": Column("v"), "w": Column("w")}, table).to_pylist()
    assert [g.encode() for g in got] == [rfc8785.dumps({"v": None, "w": w}) for w in ("x", "y", None)]


# --- hashing the values of an Arrow array from its buffers ---


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=30), st.data())
def test_sha256_each_equals_hashlib_per_value(values: list[bytes], data: st.DataObject) -> None:
    import hashlib

    import pyarrow as pa

    from evidence.canonical import sha256_each

    start = data.draw(st.integers(0, len(values)))
    length = data.draw(st.integers(0, len(values) - start))
    prefix = data.draw(st.sampled_from([b"", b"\x00"]))
    expected = [hashlib.sha256(prefix + v).digest() for v in values[start : start + length]]
    for kind in (pa.binary(), pa.large_binary()):
        array = pa.array(values, kind).slice(start, length)
        assert sha256_each(array, prefix=prefix) == expected


def test_sha256_hex_of_text_equals_hexdigest() -> None:
    import hashlib

    import pyarrow as pa

    from evidence.canonical import sha256_hex

    values = ['{"a":"张三"}', "", "x" * 1000, "\u2028"]
    chunked = pa.chunked_array([values[:1], [], values[1:]], pa.string())
    for array in (
        pa.array(values),
        pa.array(values, pa.large_string()),
        pa.array(values).slice(1, 2),
        chunked,
    ):
        expected = [hashlib.sha256(v.encode()).hexdigest() for v in array.to_pylist()]
        got = sha256_hex(array)
        assert got.type == pa.string() and got.to_pylist() == expected
    assert sha256_hex(pa.array([], pa.string())).to_pylist() == []


def test_sha256_each_refuses_nulls_and_non_text() -> None:
    import pyarrow as pa
    import pytest

    from evidence.canonical import sha256_each

    with pytest.raises(ValueError, match="nulls"):
        sha256_each(pa.array(["a", None]))
    with pytest.raises(ValueError, match="nulls"):
        sha256_each(pa.chunked_array([["a"], [None]], pa.string()))
    with pytest.raises(ValueError, match="string or binary"):
        sha256_each(pa.array([1, 2]))


_escapable = st.text(
    alphabet=st.sampled_from(['"', "\\", "\n", "\x01", "\x1f", "\t", "a", "张", "u"]), max_size=8
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.none() | _escapable, min_size=1, max_size=12))
def test_canonical_rows_escapes_only_what_a_column_holds(values: list[str | None]) -> None:
    # Each column runs one escape pass per character present; the backslash pass goes first.
    import pyarrow as pa

    from evidence.canonical import Column, canonical_rows

    got = canonical_rows({"v": Column("v"), "k": "\\"}, pa.table({"v": pa.array(values, pa.string())}))
    assert [g.encode() for g in got.to_pylist()] == [rfc8785.dumps({"v": v, "k": "\\"}) for v in values]
