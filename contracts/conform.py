"""Bring a source batch to the contract's Arrow types, row by row failure-tolerant.

Example::

    conformed = conform(raw_table, compiled, connector="gongan-household")
    conformed.table                      # columns and types of compiled.arrow_schema
    conformed.type_ok["birth_date"]      # BooleanArray: False where "1990-02-30" could not convert

A value that does not convert becomes NULL plus a ``False`` in ``type_ok`` — the row is then
quarantined by the ``<column>.type`` rule instead of one bad date failing the whole batch. A
column the contract promises but the source no longer sends is a schema change: the batch
stops with ``SourceSchemaChanged`` naming the connector and the column.

Before a connector is registered, :func:`check_sample` holds its sample rows against the
contract and names every problem at once (missing columns, with the source's columns that
may be them renamed; columns whose type does not convert)::

    found = check_sample(connector.sample(5), compiled)
    found.problems      # ["missing column(s) gender (the source sends sex, ...)", ...]
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from contracts.compiler import CompiledContract
from onceonly.errors import SourceSchemaChanged

_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d")
_AWARE_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z")
_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
_TRUE = ("true", "1", "是", "y", "yes")
_FALSE = ("false", "0", "否", "n", "no")


@dataclass(frozen=True)
class Conformed:
    table: pa.Table
    type_ok: dict[str, pa.BooleanArray]
    extra_columns: tuple[str, ...]


_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _shown_columns(present: set[str]) -> str:
    """The columns a source sends, for an error: names like a column's, the others counted only
    (a file without its header row sends its first row as names: a person's name, an ID)."""
    shown = sorted(c for c in present if _COLUMN_NAME.fullmatch(c))
    hidden = len(present) - len(shown)
    if hidden:
        shown.append(
            f"and {hidden} column(s) whose names are not shown (not column names: is the header row "
            "missing, or a header not renamed?)"
        )
    return ", ".join(shown) or "nothing"


def conform(raw: pa.Table | pa.RecordBatch, compiled: CompiledContract, *, connector: str) -> Conformed:
    table = raw if isinstance(raw, pa.Table) else pa.Table.from_batches([raw])
    schema = compiled.arrow_schema
    present = set(table.column_names)
    missing = [name for name in schema.names if name not in present]
    if missing:
        raise SourceSchemaChanged(
            connector,
            f"the source no longer sends column(s) {', '.join(missing)} promised by contract "
            f"{compiled.ref}; it sends: {_shown_columns(present)}",
        )
    arrays: list[pa.Array] = []
    type_ok: dict[str, pa.BooleanArray] = {}
    for field in schema:
        source = table.column(field.name).combine_chunks()
        try:
            converted, ok = convert(source, field.type, compiled.timezone)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SourceSchemaChanged(
                connector,
                f"column {field.name!r} arrives as {source.type}, which does not convert to the "
                f"contract's {field.type} ({compiled.ref}): {str(exc).splitlines()[0]}",
            ) from exc
        arrays.append(converted)
        type_ok[field.name] = ok
    extra = tuple(sorted(present - set(schema.names)))
    return Conformed(pa.Table.from_arrays(arrays, schema=schema), type_ok, extra)


@dataclass(frozen=True)
class SampleCheck:
    """Problems (the connector cannot deliver the contract) and warnings (some rows will be
    quarantined) found in sample rows; no values are quoted, only column names and counts."""

    problems: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)


def check_sample(sample: pa.Table | pa.RecordBatch, compiled: CompiledContract) -> SampleCheck:
    """Hold a connector's sample rows against the contract before anything is stored.

    A contract column the sample does not have is a problem (named, with the source's extra
    columns as likely renames); so is a column whose type cannot be brought to the contract's,
    or whose every sample value fails to convert. Some values failing is a warning: those rows
    would be quarantined.
    """
    table = sample if isinstance(sample, pa.Table) else pa.Table.from_batches([sample])
    found = SampleCheck()
    if table.num_columns == 0:
        found.warnings.append("the source returned no rows, so its columns could not be checked yet")
        return found
    schema = compiled.arrow_schema
    present = list(table.column_names)
    missing = [name for name in schema.names if name not in present]
    extra = [name for name in present if name not in schema.names]
    if missing:
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, extra, n=1, cutoff=0.6)
            if close:
                hints.append(f"{name} (renamed {close[0]}?)")
        hint = f"; maybe renamed: {', '.join(hints)}" if hints else ""
        found.problems.append(
            f"missing column(s) {', '.join(missing)}{hint} (the source sends: {', '.join(present)}); "
            "map the source's names to the contract's (a `rename:` option or a query)"
        )
    for column in schema:
        if column.name not in present:
            continue
        source = table.column(column.name).combine_chunks()
        try:
            _, ok = convert(source, column.type, compiled.timezone)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            found.problems.append(
                f"column {column.name} arrives as {source.type}, which does not convert to the contract's "
                f"{column.type}"
            )
            continue
        given = len(source) - source.null_count
        failed = len(source) - int(pc.sum(ok.cast(pa.int64())).as_py() or 0)
        if given and failed == given:
            found.problems.append(
                f"column {column.name}: none of the {given} sample value(s) ({source.type}) converts to the "
                f"contract's {column.type}"
            )
        elif failed:
            found.warnings.append(
                f"column {column.name}: {failed} of {given} sample value(s) do not convert to "
                f"{column.type}; such rows will be quarantined"
            )
    return found


def convert(source: pa.Array, target: pa.DataType, timezone: str) -> tuple[pa.Array, pa.BooleanArray]:
    """``source`` as ``target``, and a mask that is False where a non-null value did not convert."""
    if pa.types.is_large_string(source.type) or pa.types.is_string_view(source.type):
        source = source.cast(pa.string())
    if pa.types.is_null(source.type):
        return pa.nulls(len(source), target), _all_true(len(source))
    if pa.types.is_string(source.type):
        text = _blank_to_null(source)
        result = _from_text(text, target, timezone)
        ok = pc.or_(pc.is_null(text), pc.is_valid(result))
        return result, ok
    result = _from_typed(source, target, timezone)
    return result, _all_true(len(source))


def _from_text(text: pa.Array, target: pa.DataType, timezone: str) -> pa.Array:
    if pa.types.is_string(target):
        return text
    trimmed = pc.utf8_trim_whitespace(text)
    if pa.types.is_date32(target):
        parsed = _first_parse(trimmed, _DATE_FORMATS, "s")
        return parsed.cast(pa.date32()) if parsed is not None else pa.nulls(len(text), target)
    if pa.types.is_timestamp(target):
        aware = _first_parse(trimmed, _AWARE_FORMATS, target.unit)
        naive = _first_parse(trimmed, _NAIVE_FORMATS, target.unit)
        naive_local = pc.assume_timezone(naive, timezone, ambiguous="earliest", nonexistent="earliest")
        return pc.coalesce(aware.cast(target), naive_local.cast(target))
    if pa.types.is_decimal(target):
        whole = target.precision - target.scale
        pattern = (
            rf"^[+-]?\d{{1,{whole}}}(\.\d{{1,{target.scale}}})?$"
            if target.scale
            else rf"^[+-]?\d{{1,{whole}}}$"
        )
        return _cast_where_matches(trimmed, pattern, target)
    if pa.types.is_integer(target):
        return _cast_where_matches(trimmed, r"^[+-]?\d{1,18}$", target)
    if pa.types.is_floating(target):
        return _cast_where_matches(trimmed, r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$", target)
    if pa.types.is_boolean(target):
        lowered = pc.utf8_lower(trimmed)
        is_true = pc.is_in(lowered, pa.array(_TRUE))
        is_false = pc.is_in(lowered, pa.array(_FALSE))
        return pc.if_else(is_true, True, pc.if_else(is_false, False, pa.scalar(None, pa.bool_())))
    return text.cast(target)


def _from_typed(source: pa.Array, target: pa.DataType, timezone: str) -> pa.Array:
    if source.type == target:
        return source
    if pa.types.is_string(target):
        return source.cast(pa.string())
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(source.type):
        if source.type.tz is None:
            source = pc.assume_timezone(source, timezone, ambiguous="earliest", nonexistent="earliest")
        return source.cast(target)
    if pa.types.is_timestamp(target) and pa.types.is_date(source.type):
        local = source.cast(pa.timestamp(target.unit))
        return pc.assume_timezone(local, timezone).cast(target)
    if pa.types.is_date32(target) and pa.types.is_timestamp(source.type):
        if source.type.tz is not None:
            source = pc.local_timestamp(source.cast(pa.timestamp(source.type.unit, timezone)))
        return source.cast(pa.date32(), safe=False)
    if pa.types.is_decimal(target) and pa.types.is_floating(source.type):
        return _from_text(source.cast(pa.string()), target, timezone)
    return source.cast(target)


def _first_parse(text: pa.Array, formats: tuple[str, ...], unit: str) -> pa.Array:
    parsed = [_strict_parse(text, f, unit) for f in formats]
    return pc.coalesce(*parsed) if len(parsed) > 1 else parsed[0]


def _strict_parse(text: pa.Array, fmt: str, unit: str) -> pa.Array:
    """strptime that rejects impossible dates: Arrow turns 2023-02-29 into 2023-03-01."""
    parsed = pc.strptime(text, format=fmt, unit=unit, error_is_null=True)
    date_fmt = fmt.split("T")[0].split(" ")[0]  # every format starts with its calendar part
    width = len(date_fmt.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD"))
    given = pc.utf8_slice_codeunits(text, 0, width)
    day = pc.strptime(given, format=date_fmt, unit="s", error_is_null=True)
    real = pc.fill_null(pc.equal(pc.strftime(day, format=date_fmt), given), False)
    return pc.if_else(real, parsed, pa.scalar(None, parsed.type))


def _cast_where_matches(text: pa.Array, pattern: str, target: pa.DataType) -> pa.Array:
    good = pc.fill_null(pc.match_substring_regex(text, pattern), False)
    return pc.if_else(good, text, pa.scalar(None, pa.string())).cast(target)


def _blank_to_null(text: pa.Array) -> pa.Array:
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), False)
    return pc.if_else(blank, pa.scalar(None, pa.string()), text)


def _all_true(n: int) -> pa.BooleanArray:
    return pa.array([True] * n, pa.bool_()) if n < 64 else pc.fill_null(pa.nulls(n, pa.bool_()), True)


__all__ = ["Conformed", "SampleCheck", "check_sample", "conform", "convert"]
