"""RFC 8785 (JCS) canonical JSON, with a fast path where the standard library is provably equal.

Example::

    canonical_json({"b": 1, "a": "张三"})     # b'{"a":"\xe5\xbc\xa0\xe4\xb8\x89","b":1}'

The maintained ``rfc8785`` library is the reference. It is pure Python (about 0.25 ms per
certificate here), so values in the domain where JCS and ``json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` produce the same bytes take a fast path:
objects with ASCII keys (JCS sorts by UTF-16 code units, Python by code points — equal for
ASCII), strings (both escape only ``"``, ``\\`` and C0 controls, as ``\\b \\f \\n \\r \\t`` or
lowercase ``\\u00xx``), integers within ±2**53, booleans and null. Anything else — floats,
larger integers, non-ASCII keys, lone surrogates — goes through ``rfc8785``. The fast path is
``orjson`` with sorted keys, which writes those same bytes at a fifteenth of the standard
library's cost (1 µs against 14 µs for a certificate). Property tests check it against the
standard library and against ``rfc8785`` on random values of that domain.

For a whole batch of objects of one shape, :func:`canonical_rows` writes the same bytes
column by column with Arrow string kernels (escape, quote, join), with no Python per row::

    shape = {"id": Column("id"), "schema": "onceonly-ecert/1", "holder": {"name": Column("name")}}
    canonical_rows(shape, table)     # one RFC 8785 string per row of ``table``
    sha256_hex(canonical_rows(shape, table))    # their SHA-256, read from the Arrow buffers
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import rfc8785

_MAX_SAFE = 2**53 - 1  # RFC 8785 §3.2.2.3: integers must be exact IEEE 754 doubles


def canonical_json(value: Any) -> bytes:
    if _plain(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # a lone surrogate (or nesting past orjson's depth): the reference decides
    return rfc8785.dumps(value)


def _plain(value: Any) -> bool:
    """True when every node is in the domain where the standard library equals RFC 8785."""
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is str or kind is bool or node is None:
            continue
        if kind is int:
            if not -_MAX_SAFE <= node <= _MAX_SAFE:
                return False
        elif kind is dict:
            for key in node:
                if type(key) is not str or not key.isascii():
                    return False
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)
        else:
            return False  # floats, subclasses, tuples, ...: the reference decides
    return True


@dataclass(frozen=True)
class Column:
    """In a :func:`canonical_rows` shape: the value of this row in ``table[name]``."""

    name: str


# RFC 8785 §3.2.2.2 (ECMAScript JSON.stringify): these C0 controls get short escapes, the
# others \u00xx in lower-case hex; '"' and '\\' are escaped; everything else stays as is.
_SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
_ESCAPES = {ord('"'): '\\"', **{code: _SHORT_ESCAPES.get(code, f"\\u{code:04x}") for code in range(0x20)}}


def canonical_rows(shape: Mapping[str, Any], table: pa.Table) -> pa.Array:
    """RFC 8785 JSON of ``shape`` for every row of ``table``, built column-wise.

    ``shape`` is a JSON object whose values are constants (anything :func:`canonical_json`
    takes), nested objects of the same kind, or :class:`Column` references. A referenced
    column may be a string column (escaped and quoted; null is ``null``), an integer column
    (within ±2**53, as RFC 8785 §3.2.2.3 requires) or a boolean column. Keys are sorted by
    their UTF-16 code units (RFC 8785 §3.2.3), so they may be any text.
    Each result equals ``canonical_json`` of the row's object, byte for byte.
    """
    pieces: list[Any] = []
    _emit(shape, table, pieces)
    merged: list[Any] = []
    for piece in pieces:  # adjacent constant text joins into one scalar
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    if all(isinstance(piece, str) for piece in merged):
        return pa.array(["".join(merged)] * table.num_rows, pa.string())
    args = [pa.scalar(piece, pa.string()) if isinstance(piece, str) else piece for piece in merged]
    return pc.binary_join_element_wise(*args, "")


def _emit(shape: Mapping[str, Any], table: pa.Table, pieces: list[Any]) -> None:
    for key in shape:
        if type(key) is not str:
            raise ValueError(f"canonical_rows: key {key!r} is not a string")
    pieces.append("{")
    # RFC 8785 §3.2.3: members sorted by the UTF-16 code units of their names.
    for position, key in enumerate(sorted(shape, key=lambda k: k.encode("utf-16-be", "surrogatepass"))):
        pieces.append(("," if position else "") + canonical_json(key).decode("utf-8") + ":")
        value = shape[key]
        if isinstance(value, Column):
            pieces.extend(_json_column(table.column(value.name), value.name))
        elif isinstance(value, Mapping):
            _emit(value, table, pieces)
        else:
            pieces.append(canonical_json(value).decode("utf-8"))
    pieces.append("}")


def _json_column(column: pa.ChunkedArray, name: str) -> list[Any]:
    """The JSON text of every value of ``column``, as pieces for the row's join."""
    array = column.combine_chunks()
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        text = array.cast(pa.string())
        if text.null_count == len(text):
            return ["null"]  # joins the row's constant text
        # One scan of the bytes finds what needs escaping; most columns need nothing, and one
        # pass per character present (not 34 passes) escapes the others.
        present = _escaped_present(text)
        if ord("\\") in present:  # first: the other escapes add backslashes of their own
            text = pc.replace_substring(text, "\\", "\\\\")
        for code in present:  # one pass each; no later pass rewrites what an earlier one wrote
            if code in _ESCAPES:
                text = pc.replace_substring(text, chr(code), _ESCAPES[code])
        if text.null_count == 0:  # the quotes join the row's constant text
            return ['"', text, '"']
        quoted = pc.binary_join_element_wise(pa.scalar('"'), text, pa.scalar('"'), "")
        return [pc.fill_null(quoted, "null")]
    if pa.types.is_integer(array.type):
        low, high = pc.min_max(array).values()
        if low.is_valid and not (low.as_py() >= -_MAX_SAFE and high.as_py() <= _MAX_SAFE):
            raise ValueError(
                f"canonical_rows: column {name!r} holds integers beyond ±2**53 (RFC 8785 §3.2.2.3)"
            )
        digits = array.cast(pa.string())
        return [pc.fill_null(digits, "null") if array.null_count else digits]  # fill_null copies
    if pa.types.is_boolean(array.type):
        return [pc.fill_null(pc.if_else(array, "true", "false"), "null")]
    raise ValueError(f"canonical_rows: column {name!r} of type {array.type} has no canonical form here")


def _offsets_and_values(array: pa.Array) -> tuple[np.ndarray, memoryview]:
    """The value offsets (one more than rows) of a string or binary array, and its data buffer."""
    wide = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    if not (wide or pa.types.is_string(array.type) or pa.types.is_binary(array.type)):
        raise ValueError(f"expected a string or binary array, not {array.type}")
    _, offsets, data = array.buffers()
    dtype = np.dtype(np.int64 if wide else np.int32)
    bounds = np.frombuffer(offsets, dtype, len(array) + 1, array.offset * dtype.itemsize)
    return bounds, memoryview(data if data is not None else b"")


def _escaped_present(text: pa.Array) -> list[int]:
    """The characters of a string array that RFC 8785 §3.2.2.2 escapes: '"', '\\', C0 controls.

    Null slots may hold bytes too; they are scanned with the rest, which can only add a
    character to escape, and the escape kernels leave null values as they are.
    """
    bounds, data = _offsets_and_values(text)
    values = np.frombuffer(data, np.uint8, int(bounds[-1] - bounds[0]), int(bounds[0]))
    # Every byte of a multi-byte UTF-8 sequence is >= 0x80 (RFC 3629 §3): a byte below 0x20,
    # '"' or '\\' is always that character. Comparisons run vectorised; a 256-entry lookup
    # table (fancy indexing) measured ten times slower.
    escaped = (values < 0x20) | (values == ord('"')) | (values == ord("\\"))
    if not escaped.any():
        return []
    found: list[int] = np.unique(values[escaped]).tolist()
    return found


def sha256_each(array: pa.Array | pa.ChunkedArray, *, prefix: bytes = b"") -> list[bytes]:
    """SHA-256 of ``prefix`` + each value of a string or binary array, straight from its buffer.

    Equal to ``[hashlib.sha256(prefix + v).digest() for v in array.cast(pa.binary()).to_pylist()]``
    without a bytes object per value: ``sha256_each(canonical_rows(shape, table))`` hashes a
    batch's RFC 8785 text, and ``prefix=b"\\x00"`` gives RFC 9162 §2.1.1 leaf hashes.
    """
    if array.null_count:
        raise ValueError("sha256_each: the array holds nulls, which have no bytes to hash")
    if isinstance(array, pa.ChunkedArray):  # a table's column
        of_chunks: list[bytes] = []
        for chunk in array.chunks:
            of_chunks += sha256_each(chunk, prefix=prefix)
        return of_chunks
    if len(array) == 0:
        return []
    bounds, data = _offsets_and_values(array)
    start = hashlib.sha256(prefix)
    copy = start.copy
    digests = []
    # hashlib has no batch interface: one call per value is the vectorised form here.
    at = bounds.tolist()
    for begin, end in pairwise(at):
        digest = copy()
        digest.update(data[begin:end])
        digests.append(digest.digest())
    return digests


def sha256_hex(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Lower-case hex SHA-256 of each value (:func:`sha256_each`), as a string array."""
    hexed = binascii.hexlify(b"".join(sha256_each(array)))
    offsets = np.arange(0, len(hexed) + 1, 64, dtype=np.int32)
    return pa.StringArray.from_buffers(len(array), pa.py_buffer(offsets), pa.py_buffer(hexed))


__all__ = ["Column", "canonical_json", "canonical_rows", "sha256_each", "sha256_hex"]
