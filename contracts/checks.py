"""Vectorised domain checks over Arrow arrays, and the registry contracts refer to them by.

Example::

    >>> import pyarrow as pa
    >>> citizen_id_valid(pa.array(["11010519491231002X", "110105194912310021", None])).to_pylist()
    [True, False, True]
    >>> get_check("gb32100_uscc").personal
    False

Every check takes arrays and returns a ``pa.BooleanArray`` of the same length: ``True`` means
the value passes, and a null value passes too, because whether a value may be missing is the
``required`` rule's business (as in Great Expectations' column map expectations). Checks work
on whole batches (10k-1M rows): identifiers are checked as a NumPy matrix of their fixed-width
bytes, never one Python string at a time. The scalar reference implementations are in
``contracts.identifiers``; the tests hold these checks equal to them and to an independent
oracle.

A data contract names checks from :data:`DOMAIN_CHECKS` (``gb11643_citizen_id``,
``gb32100_uscc``, ``region_code``, ``mobile_number``, ``not_in_future``, ``not_after``); each
is a :class:`DomainCheck` whose ``evaluate(table, column, args, ctx)`` returns the mask.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from contracts.identifiers import (
    CITIZEN_ID_CHECK_CHARS,
    CITIZEN_ID_WEIGHTS,
    USCC_CHARSET,
    USCC_WEIGHTS,
)
from onceonly.errors import ContractError

ArrayLike: TypeAlias = "pa.Array | pa.ChunkedArray"
_Bools: TypeAlias = npt.NDArray[np.bool_]
_Bytes: TypeAlias = npt.NDArray[np.uint8]

_REGIONS_DIR = Path(__file__).parent / "regions"
_DISTRICT_RE = re.compile(r"[0-9]{6}")

_ZERO, _NINE, _UPPER_X = ord("0"), ord("9"), ord("X")

# GB 11643-1999 校验码 (ISO 7064 MOD 11-2): weights W_i = 2^(18-i) mod 11 of the 17 body
# digits, and the check character for (sum mod 11) = 0..10.
_CID_WEIGHTS = np.array(CITIZEN_ID_WEIGHTS, dtype=np.int16)
_CID_CHECK = np.frombuffer(CITIZEN_ID_CHECK_CHARS.encode("ascii"), dtype=np.uint8)
# GB 11643-1999 出生日期码: YYYYMMDD (GB/T 7408) at positions 7-14; day counts per month.
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int16)
_EARLIEST_BIRTH = 19000101

# GB 32100-2015 代码字符集: byte -> code value 0..30 for the 31 permitted characters, 255 otherwise
# (I, O, S, V, Z and lower case are not permitted).
_USCC_VALUE = np.full(256, 255, dtype=np.uint8)
_USCC_VALUE[np.frombuffer(USCC_CHARSET.encode("ascii"), dtype=np.uint8)] = np.arange(
    len(USCC_CHARSET), dtype=np.uint8
)
# GB 32100-2015 校验码: weights W_i = 3^(i-1) mod 31.
_USCC_WEIGHTS = np.array(USCC_WEIGHTS, dtype=np.int32)

# 工业和信息化部 numbering plan: mainland mobile numbers are 11 digits, 1 then 3-9.
_MOBILE_PATTERN = "^1[3-9][0-9]{9}$"


# --------------------------------------------------------------------------------------------
# Array plumbing


def _combine(values: ArrayLike) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    raise TypeError(f"expected a pyarrow Array or ChunkedArray, got {type(values).__name__}")


def _string_array(values: ArrayLike, check: str) -> pa.Array:
    """The values as a ``string`` or ``large_string`` array (dictionaries decoded)."""
    arr = _combine(values)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.string())
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr
    if pa.types.is_string_view(arr.type):
        return arr.cast(pa.large_string())
    raise ContractError(f"check {check!r} needs a string column, got {arr.type}")


def _null_mask(arr: pa.Array) -> _Bools:
    if arr.null_count == 0:
        return np.zeros(len(arr), dtype=np.bool_)
    return np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)


def _fixed_width_rows(arr: pa.Array, width: int) -> tuple[_Bools, _Bytes]:
    """Rows of ``arr`` that are non-null and exactly ``width`` bytes, and their bytes.

    Returns the row mask and a ``(rows, width)`` uint8 matrix of those rows' bytes, read
    straight from the Arrow data buffer (after a C++ filter when other rows are mixed in).
    """
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.bool_), np.zeros((0, width), dtype=np.uint8)
    offsets = _offsets(arr)
    rows = np.diff(offsets) == width
    if arr.null_count:
        rows &= ~_null_mask(arr)
    count = int(np.count_nonzero(rows))
    if count == 0:
        return rows, np.zeros((0, width), dtype=np.uint8)
    if count != n:
        arr = arr.filter(pa.array(rows))
        offsets = _offsets(arr)
    # The selected rows are now contiguous: exactly `width` bytes each, back to back.
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=count * width, offset=int(offsets[0]))
    return rows, data.reshape(count, width)


def _offsets(arr: pa.Array) -> npt.NDArray[np.int64]:
    dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    itemsize = np.dtype(dtype).itemsize
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr) + 1, offset=arr.offset * itemsize)


def _mask_result(n: int, rows: _Bools, passed: _Bools, nulls: _Bools) -> pa.BooleanArray:
    out = np.zeros(n, dtype=np.bool_)
    out[rows] = passed
    out |= nulls
    return pa.array(out, type=pa.bool_())


def _nulls_pass(mask: pa.Array) -> pa.BooleanArray:
    return pc.fill_null(mask, True)


# --------------------------------------------------------------------------------------------
# Identifier checks


def citizen_id_valid(values: ArrayLike, *, today: dt.date | None = None) -> pa.BooleanArray:
    """GB 11643 citizen ID numbers: structure, a real birth date, and the check character.

    A value passes when it is ``^[1-9][0-9]{16}[0-9X]$``, its positions 7-14 are a calendar
    date from 1900-01-01 to ``today`` (default: the system date) inclusive, and its last
    character is the MOD 11-2 check character of the first 17. Nulls pass.
    """
    today = today or dt.date.today()
    arr = _string_array(values, "gb11643_citizen_id")
    rows, m = _fixed_width_rows(arr, 18)
    # uint8 wrap-around: bytes below '0' become large, so one comparison tests 0-9.
    digits = m - np.uint8(_ZERO)
    is_digit = digits <= 9
    # GB 11643-1999 号码的结构: 17 body digits (the first, of the GB/T 2260 region code, is
    # 1-9) then the check character, a digit or the capital Roman X (校验码; never lower case).
    ok = is_digit[:, :17].all(axis=1) & (m[:, 0] != _ZERO) & (is_digit[:, 17] | (m[:, 17] == _UPPER_X))
    # Rows already failing on structure may overflow int16 below; their result is discarded.
    d = digits.astype(np.int16)
    # GB 11643-1999 出生日期码: YYYYMMDD at positions 7-14, a real calendar date.
    year = d[:, 6] * 1000 + d[:, 7] * 100 + d[:, 8] * 10 + d[:, 9]
    month = d[:, 10] * 10 + d[:, 11]
    day = d[:, 12] * 10 + d[:, 13]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[np.clip(month, 0, 12)] + (leap & (month == 2))
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    ymd = year.astype(np.int32) * 10000 + month * 100 + day
    latest = today.year * 10000 + today.month * 100 + today.day
    ok &= (ymd >= _EARLIEST_BIRTH) & (ymd <= latest)
    # GB 11643-1999 校验码: check character = table[(Σ a_i · W_i) mod 11].
    total = d[:, :17] @ _CID_WEIGHTS
    ok &= _CID_CHECK[total % 11] == m[:, 17]
    return _mask_result(len(arr), rows, ok, _null_mask(arr))


def uscc_valid(values: ArrayLike) -> pa.BooleanArray:
    """GB 32100 unified social credit codes: 18 permitted characters and the check character.

    A value passes when all 18 characters are in the 31-character set ``0-9`` and
    ``ABCDEFGHJKLMNPQRTUWXY`` and the last is the MOD 31 check character of the first 17.
    Nulls pass.
    """
    arr = _string_array(values, "gb32100_uscc")
    rows, m = _fixed_width_rows(arr, 18)
    codes = _USCC_VALUE[m]
    ok = (codes != 255).all(axis=1)
    # GB 32100-2015 校验码: C18 = 31 - (Σ C_i · W_i mod 31), with 31 written as 0.
    total = codes[:, :17].astype(np.int32) @ _USCC_WEIGHTS
    ok &= (31 - total % 31) % 31 == codes[:, 17]
    return _mask_result(len(arr), rows, ok, _null_mask(arr))


def mobile_valid(values: ArrayLike) -> pa.BooleanArray:
    """Mainland mobile numbers ``^1[3-9][0-9]{9}$`` (no +86 prefix, no separators). Nulls pass."""
    arr = _string_array(values, "mobile_number")
    # RE2 anchors: `$` is the end of the value (no trailing-newline match as in Python's re).
    return _nulls_pass(pc.match_substring_regex(arr, _MOBILE_PATTERN))


# --------------------------------------------------------------------------------------------
# Region codes


@functools.lru_cache(maxsize=16)
def _region_rows(district: str) -> tuple[tuple[str, str], ...]:
    if not _DISTRICT_RE.fullmatch(district):
        raise ContractError(f"a district is a 6-digit GB/T 2260 code, got {district!r}")
    path = _REGIONS_DIR / f"{district}.csv"
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = tuple((row["code"], row["name"]) for row in csv.DictReader(fh))
    except FileNotFoundError:
        shipped = sorted(p.stem for p in _REGIONS_DIR.glob("*.csv"))
        raise ContractError(f"no region list for district {district!r}; shipped: {shipped}") from None
    except (KeyError, csv.Error) as exc:
        raise ContractError(f"region list {path.name} is malformed: {exc}") from exc
    return rows


def load_region_codes(district: str = "120114") -> dict[str, str]:
    """The district's 12-digit 统计用区划代码 → township name, from ``contracts/regions``.

    The file is read once per district; each call returns a fresh dict.
    """
    return dict(_region_rows(district))


def region_code_known(values: ArrayLike, known: Collection[str]) -> pa.BooleanArray:
    """Membership of each value in ``known`` (the shipped region list). Nulls pass."""
    arr = _combine(values)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    value_set = pa.array(sorted(known), type=pa.string())
    if arr.type != value_set.type:
        try:
            value_set = value_set.cast(arr.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ContractError(f"check 'region_code' cannot compare a {arr.type} column with codes") from exc
    return pc.or_(arr.is_null(), pc.is_in(arr, value_set=value_set))


# --------------------------------------------------------------------------------------------
# Dates


def _as_date(arr: pa.Array, check: str) -> pa.Array:
    """Dates and timestamps as ``date32``; a zoned timestamp gives its local calendar date."""
    if pa.types.is_date32(arr.type):
        return arr
    if pa.types.is_date64(arr.type) or pa.types.is_timestamp(arr.type):
        return arr.cast(pa.date32())
    raise ContractError(f"check {check!r} needs a date or timestamp column, got {arr.type}")


def not_in_future(values: ArrayLike, *, today: dt.date | None = None) -> pa.BooleanArray:
    """Dates (or timestamps, by their calendar date) on or before ``today``. Nulls pass."""
    today = today or dt.date.today()
    arr = _combine(values)
    if pa.types.is_null(arr.type):
        return pa.array(np.ones(len(arr), dtype=np.bool_), type=pa.bool_())
    dates = _as_date(arr, "not_in_future")
    return _nulls_pass(pc.less_equal(dates, pa.scalar(today, type=pa.date32())))


def not_after(left: ArrayLike, right: ArrayLike) -> pa.BooleanArray:
    """``left <= right`` row by row; passes when either side is null (an open-ended validity).

    A date compared with a timestamp is compared by calendar date.
    """
    lhs, rhs = _combine(left), _combine(right)
    if len(lhs) != len(rhs):
        raise ContractError(f"check 'not_after' needs columns of equal length, got {len(lhs)} and {len(rhs)}")
    temporal = (pa.types.is_date, pa.types.is_timestamp)
    l_date, r_date = pa.types.is_date(lhs.type), pa.types.is_date(rhs.type)
    if l_date != r_date and all(any(t(a.type) for t in temporal) for a in (lhs, rhs)):
        lhs, rhs = _as_date(lhs, "not_after"), _as_date(rhs, "not_after")
    try:
        result = pc.less_equal(lhs, rhs)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ContractError(f"check 'not_after' cannot compare {lhs.type} with {rhs.type}") from exc
    return _nulls_pass(result)


# --------------------------------------------------------------------------------------------
# Registry of named checks


@dataclass(frozen=True)
class CheckContext:
    """What a check may need besides the batch: the date of the run and the region list."""

    today: dt.date
    region_codes: frozenset[str] = field(default_factory=frozenset)
    now: dt.datetime | None = None  # for freshness; None means the wall clock at evaluation

    def clock(self) -> dt.datetime:
        return self.now or dt.datetime.now(dt.UTC)

    @classmethod
    def for_district(cls, district: str = "120114", *, today: dt.date | None = None) -> CheckContext:
        return cls(today=today or dt.date.today(), region_codes=frozenset(load_region_codes(district)))


Evaluate: TypeAlias = Callable[[pa.Table, str, Mapping[str, Any], CheckContext], pa.BooleanArray]


@dataclass(frozen=True)
class DomainCheck:
    """A named, reusable check a data contract refers to.

    ``personal`` says the checked values are personal data: failing values must be masked
    (``onceonly.privacy``) wherever they are reported.
    """

    name: str
    description: str
    personal: bool
    evaluate: Evaluate


def _column(table: pa.Table, name: str, check: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise ContractError(f"check {check!r}: column {name!r} is not in the batch {table.column_names}")
    return table.column(name)


def _expect_args(check: str, args: Mapping[str, Any], allowed: Collection[str] = ()) -> None:
    unexpected = sorted(set(args) - set(allowed))
    if unexpected:
        raise ContractError(
            f"check {check!r} takes no argument(s) {unexpected}; it takes {sorted(allowed) or 'none'}"
        )


def _eval_citizen_id(
    table: pa.Table, column: str, args: Mapping[str, Any], ctx: CheckContext
) -> pa.BooleanArray:
    _expect_args("gb11643_citizen_id", args)
    return citizen_id_valid(_column(table, column, "gb11643_citizen_id"), today=ctx.today)


def _eval_uscc(table: pa.Table, column: str, args: Mapping[str, Any], ctx: CheckContext) -> pa.BooleanArray:
    _expect_args("gb32100_uscc", args)
    return uscc_valid(_column(table, column, "gb32100_uscc"))


def _eval_region(table: pa.Table, column: str, args: Mapping[str, Any], ctx: CheckContext) -> pa.BooleanArray:
    _expect_args("region_code", args)
    if not ctx.region_codes:
        # An empty list would fail every row; that is a configuration mistake, not bad data.
        raise ContractError("check 'region_code': the check context has no region codes")
    return region_code_known(_column(table, column, "region_code"), ctx.region_codes)


def _eval_mobile(table: pa.Table, column: str, args: Mapping[str, Any], ctx: CheckContext) -> pa.BooleanArray:
    _expect_args("mobile_number", args)
    return mobile_valid(_column(table, column, "mobile_number"))


def _eval_not_in_future(
    table: pa.Table, column: str, args: Mapping[str, Any], ctx: CheckContext
) -> pa.BooleanArray:
    _expect_args("not_in_future", args)
    return not_in_future(_column(table, column, "not_in_future"), today=ctx.today)


def _eval_not_after(
    table: pa.Table, column: str, args: Mapping[str, Any], ctx: CheckContext
) -> pa.BooleanArray:
    _expect_args("not_after", args, ("other",))
    other = args.get("other")
    if not isinstance(other, str) or not other:
        raise ContractError("check 'not_after' needs args.other: the column this one may not be after")
    return not_after(_column(table, column, "not_after"), _column(table, other, "not_after"))


# --------------------------------------------------------------------------------------------
# ODCS v3 library metrics with a threshold, and the freshness SLA (batch-level checks)


def _offending(table: pa.Table, column: str, metric: str, args: Mapping[str, Any]) -> _Bools:
    """The rows that count towards ``metric`` (null, missing, invalid or duplicate values)."""
    n = table.num_rows
    if metric == "row_count":
        return np.zeros(n, dtype=np.bool_)
    if metric == "duplicate_values":
        names = list(args.get("properties") or [column])
        for name in names:
            _column(table, name, metric)
        keys = table.select(names)
        if len(names) == 1:
            values = keys.column(0).combine_chunks()
            counts = pc.value_counts(values)
            repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
            dup = pc.fill_null(pc.is_in(values, value_set=repeated), False)
            return np.asarray(dup.to_numpy(zero_copy_only=False), dtype=np.bool_)
        # Rows with a null in the key are not duplicates (as SQL UNIQUE treats them).
        frame = keys.to_pandas()
        complete = frame.notna().all(axis=1).to_numpy()
        return np.asarray(frame.duplicated(keep=False).to_numpy() & complete, dtype=np.bool_)
    values = _combine(_column(table, column, metric))
    nulls = _null_mask(values)
    if metric == "null_values":
        return nulls
    if metric == "missing_values":
        missing = [v for v in args.get("missingValues") or () if v is not None]
        if not missing:
            return nulls
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            value_set = pa.array([str(v) for v in missing], type=values.type)
        else:
            value_set = pa.array(missing).cast(values.type)
        found = pc.fill_null(pc.is_in(values, value_set=value_set), False)
        return nulls | np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.bool_)
    if metric == "invalid_values":
        bad = np.zeros(n, dtype=np.bool_)
        if "validValues" in args:
            valid = [v for v in args["validValues"] if v is not None]
            value_set = pa.array(valid).cast(values.type) if valid else pa.array([], type=values.type)
            inside = pc.fill_null(pc.is_in(values, value_set=value_set), True)
            bad |= ~np.asarray(inside.to_numpy(zero_copy_only=False), dtype=np.bool_)
        if "pattern" in args:
            text = _string_array(values, metric)
            matched = pc.fill_null(pc.match_substring_regex(text, str(args["pattern"])), True)
            bad |= ~np.asarray(matched.to_numpy(zero_copy_only=False), dtype=np.bool_)
        return bad & ~nulls
    raise ContractError(f"unknown library metric check {metric!r}")  # pragma: no cover


def metric_value(table: pa.Table, column: str, metric: str, args: Mapping[str, Any]) -> float:
    """The ODCS metric of the batch: a row count, or a count (or percent) of offending values."""
    n = table.num_rows
    if metric == "row_count":
        return float(n)
    offending = _offending(table, column, metric, args)
    count = float(np.count_nonzero(offending))
    if metric == "duplicate_values" and count:
        # ODCS/SQL duplicate count: rows beyond the first of each repeated value.
        names = list(args.get("properties") or [column])
        groups = table.filter(pa.array(offending)).group_by(names).aggregate([]).num_rows
        count -= groups
    if args.get("unit") == "percent":
        return 100.0 * count / n if n else 0.0
    return count


def metric_passes(value: float, operator: str, bound: Any) -> bool:
    """ODCS v3 DataQualityOperators applied to a metric value."""
    match operator:
        case "mustBe":
            return bool(value == bound)
        case "mustNotBe":
            return bool(value != bound)
        case "mustBeGreaterThan":
            return bool(value > bound)
        case "mustBeGreaterOrEqualTo":
            return bool(value >= bound)
        case "mustBeLessThan":
            return bool(value < bound)
        case "mustBeLessOrEqualTo":
            return bool(value <= bound)
        case "mustBeBetween":
            return bool(bound[0] <= value <= bound[1])
        case "mustNotBeBetween":
            return not bound[0] <= value <= bound[1]
    raise ContractError(f"unknown ODCS operator {operator!r}")


def _too_many(value: float, operator: str, bound: Any) -> bool:
    """A failed bound that caps the metric: then the offending rows are the ones to blame."""
    if operator in ("mustBeLessThan", "mustBeLessOrEqualTo"):
        return True
    if operator == "mustBe":
        return bool(value > bound)
    if operator == "mustBeBetween":
        return bool(value > bound[1])
    return False


def _metric_evaluator(metric: str) -> Evaluate:
    allowed = {"operator", "value", "unit", "missingValues", "validValues", "pattern", "properties"}

    def evaluate(table: pa.Table, column: str, args: Mapping[str, Any], ctx: CheckContext) -> pa.BooleanArray:
        _expect_args(metric, args, allowed)
        n = table.num_rows
        try:
            value = metric_value(table, column, metric, args)
            operator, bound = str(args["operator"]), args["value"]
            if metric_passes(value, operator, bound):
                return pa.array(np.ones(n, dtype=np.bool_), type=pa.bool_())
            if metric != "row_count" and _too_many(value, operator, bound):
                return pa.array(~_offending(table, column, metric, args), type=pa.bool_())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise ContractError(f"check {metric!r} on column {column!r}: {str(exc).splitlines()[0]}") from exc
        return pa.array(np.zeros(n, dtype=np.bool_), type=pa.bool_())  # the batch as a whole fails

    return evaluate


def _eval_freshness(
    table: pa.Table, column: str, args: Mapping[str, Any], ctx: CheckContext
) -> pa.BooleanArray:
    _expect_args("freshness", args, ("seconds",))
    n = table.num_rows
    if n == 0:
        return pa.array(np.zeros(0, dtype=np.bool_), type=pa.bool_())
    values = _combine(_column(table, column, "freshness"))
    newest = pc.max(values).as_py()
    now = ctx.clock()
    oldest_allowed = now - dt.timedelta(seconds=float(args["seconds"]))
    if newest is None:
        fresh = False
    elif isinstance(newest, dt.datetime):
        newest = newest if newest.tzinfo else newest.replace(tzinfo=dt.UTC)
        fresh = newest >= oldest_allowed
    else:
        fresh = newest >= oldest_allowed.date()
    return pa.array(np.full(n, fresh, dtype=np.bool_), type=pa.bool_())


METRIC_CHECK_NAMES = frozenset(
    {"null_values", "missing_values", "invalid_values", "duplicate_values", "row_count", "freshness"}
)


DOMAIN_CHECKS: Mapping[str, DomainCheck] = MappingProxyType(
    {
        check.name: check
        for check in (
            DomainCheck(
                "gb11643_citizen_id",
                "GB 11643 citizen ID number: structure, real birth date not in the future, MOD 11-2 check",
                True,
                _eval_citizen_id,
            ),
            DomainCheck(
                "gb32100_uscc",
                "GB 32100 unified social credit code: 31-character set and MOD 31 check character",
                False,
                _eval_uscc,
            ),
            DomainCheck(
                "region_code",
                "12-digit statistical region code listed for the district",
                False,
                _eval_region,
            ),
            DomainCheck(
                "mobile_number",
                "mainland mobile number: 11 digits starting 13-19",
                True,
                _eval_mobile,
            ),
            DomainCheck(
                "not_in_future",
                "date or timestamp on or before the day of the run",
                False,
                _eval_not_in_future,
            ),
            DomainCheck(
                "not_after",
                "date not after the column named by args.other (passes when either is null)",
                False,
                _eval_not_after,
            ),
            *(
                DomainCheck(
                    name, f"ODCS library metric {odcs} within its threshold", False, _metric_evaluator(name)
                )
                for name, odcs in (
                    ("null_values", "nullValues"),
                    ("missing_values", "missingValues"),
                    ("invalid_values", "invalidValues"),
                    ("duplicate_values", "duplicateValues"),
                    ("row_count", "rowCount"),
                )
            ),
            DomainCheck(
                "freshness",
                "slaProperties freshness: the newest value is not older than the SLA allows",
                False,
                _eval_freshness,
            ),
        )
    }
)


def get_check(name: str) -> DomainCheck:
    """The registered check called ``name``; an unknown name fails with the known names."""
    try:
        return DOMAIN_CHECKS[name]
    except KeyError:
        known = ", ".join(sorted(DOMAIN_CHECKS))
        raise ContractError(f"unknown domain check {name!r}; known checks: {known}") from None


__all__ = [
    "DOMAIN_CHECKS",
    "METRIC_CHECK_NAMES",
    "ArrayLike",
    "CheckContext",
    "DomainCheck",
    "citizen_id_valid",
    "get_check",
    "load_region_codes",
    "metric_passes",
    "metric_value",
    "mobile_valid",
    "not_after",
    "not_in_future",
    "region_code_known",
    "uscc_valid",
]
