"""Compile a data contract into named rules, an Arrow schema and a Great Expectations suite.

Example::

    compiled = compile_contract(load_contract(path))
    compiled.arrow_schema                 # pa.schema([...]) the lake stores
    [r.name for r in compiled.rules]      # ["person_id.required", "person_id.unique", ...]
    suite = compiled.build_suite()        # a great_expectations.ExpectationSuite (imports GX lazily)

Every rule becomes exactly one expectation. Rules Great Expectations evaluates natively (not
null, unique, regex, lengths, ranges, enums) run on the data columns; domain checks (GB 11643,
GB 32100, region codes, cross-field dates) and type conformance are computed vectorised into
boolean check columns first and asserted through named expectation subclasses, so the GX
result records each by name. Nothing in the contract is silently dropped: an unsupported
combination raises ``ContractError``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from contracts.model import Contract, Property, Quality
from onceonly.errors import ContractError

#: Between the parts of a record key (:meth:`CompiledContract.record_keys`).
RECORD_KEY_SEPARATOR = "|"

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite
    from great_expectations.expectations import Expectation

RuleKind = Literal["required", "unique", "type", "pattern", "length", "range", "enum", "check"]
TYPE_CHECK_PREFIX = "__type__"
CHECK_PREFIX = "__check__"
ROW_INDEX = "__row"

_DECIMAL_RE = re.compile(r"^\s*(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$", re.I)
_PERSONAL_CLASSES = {"restricted", "confidential", "secret"}
# 电子证照 statuses (GB/T 36903): in force, suspended, revoked, cancelled, invalid, revoked (licence).
CERTIFICATE_STATUSES = frozenset({"有效", "暂扣", "撤销", "注销", "失效", "吊销"})


@dataclass(frozen=True)
class Rule:
    """One named rule of a contract, and how Great Expectations asserts it."""

    name: str
    kind: RuleKind
    column: str
    severity: Literal["error", "warning"]
    description: str
    personal: bool
    expectation: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    check: str | None = None
    check_args: dict[str, Any] = field(default_factory=dict)

    @property
    def gx_column(self) -> str:
        """The DataFrame column the expectation reads: the data column or a check column."""
        if self.kind == "type":
            return TYPE_CHECK_PREFIX + self.column
        if self.kind == "check":
            return CHECK_PREFIX + self.name
        return self.column


@dataclass(frozen=True)
class CertificateSpec:
    """What a certificate-bearing dataset's rows become (``customProperties.certificate``)."""

    type_code: str
    type_name: str
    issuer_name: str
    issuer_code: str
    number_column: str
    holders: tuple[dict[str, str], ...]
    fields: tuple[str, ...]
    valid_from_column: str | None = None
    valid_to_column: str | None = None
    status_column: str | None = None
    status_map: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompiledContract:
    contract: Contract
    arrow_schema: pa.Schema
    rules: tuple[Rule, ...]
    record_key: tuple[str, ...]
    subject_columns: tuple[str, ...]
    township_column: str | None
    max_error_rate: float
    min_rows_for_error_rate: int
    certificate: CertificateSpec | None
    personal_columns: frozenset[str]
    timezone: str

    @property
    def ref(self) -> str:
        return self.contract.ref

    def record_keys(self, text: Mapping[str, pa.Array | pa.ChunkedArray]) -> pa.Array:
        """Each row's record key: its primary-key values, as text, in contract order joined by ``|``.

        ``text`` maps each primary-key column to its values as strings. A NULL part is written
        as the empty string; a row whose key columns are all NULL has no key (NULL). This is the
        one place a record key is written: ``certificates.record_key``, ``quarantine.record_key``
        and the keys of deleted records all come from here, so they always match.
        """
        parts = [_one_chunk(text[c]).cast(pa.string()) for c in self.record_key]
        joined = pc.binary_join_element_wise(
            *parts, RECORD_KEY_SEPARATOR, null_handling="replace", null_replacement=""
        )
        no_key = functools.reduce(pc.and_, [pc.is_null(p) for p in parts])
        return pc.if_else(no_key, pa.scalar(None, pa.string()), joined)

    def build_suite(self) -> ExpectationSuite:
        """The Great Expectations 1.x suite for this contract (imports GX on first use)."""
        from contracts import expectations

        return expectations.build_suite(self)


def _one_chunk(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def arrow_type(prop: Property, timezone: str = "Asia/Shanghai") -> pa.DataType:
    """The Arrow type the lake stores a contract property as."""
    match prop.logicalType:
        case "string":
            return pa.string()
        case "date":
            return pa.date32()
        case "timestamp":
            return pa.timestamp("us", tz=timezone)
        case "integer":
            return pa.int64()
        case "boolean":
            return pa.bool_()
        case "number":
            m = _DECIMAL_RE.match(prop.physicalType or "")
            return pa.decimal128(int(m.group(1)), int(m.group(2))) if m else pa.float64()
    raise ContractError(f"unsupported logicalType {prop.logicalType!r}")  # pragma: no cover


_COMPILED: dict[str, CompiledContract] = {}


def compile_contract(contract: Contract) -> CompiledContract:
    """Turn a validated contract into rules; raises ContractError on unsupported combinations."""
    key = contract.model_dump_json()
    if key not in _COMPILED:
        _COMPILED[key] = _compile(contract)
    return _COMPILED[key]


def _compile(contract: Contract) -> CompiledContract:
    tz = str(contract.custom("sourceTimezone", "Asia/Shanghai"))
    columns = {p.name for p in contract.table.properties}
    rules: list[Rule] = []
    for index, prop in enumerate(contract.table.properties):
        personal = (prop.classification or "").lower() in _PERSONAL_CLASSES
        where = contract.where("schema", 0, "properties", index)
        prop_rules: list[Rule] = [
            _rule(
                prop,
                "type",
                "error",
                f"值可转换为 {prop.logicalType}",
                personal,
                "expect_column_values_to_conform_to_contract_type",
            )
        ]
        if prop.required or prop.primaryKey:
            prop_rules.append(
                _rule(prop, "required", "error", "必填", personal, "ExpectColumnValuesToNotBeNull")
            )
        if prop.unique or prop.primaryKey:
            prop_rules.append(
                _rule(prop, "unique", "error", "唯一", personal, "ExpectColumnValuesToBeUnique")
            )
        if prop.logicalTypeOptions is not None:
            prop_rules.extend(_option_rules(prop, personal, where))
        prop_rules = _with_severity_overrides(prop, prop_rules, where)
        for q_index, q in enumerate(prop.quality):
            q_where = contract.where("schema", 0, "properties", index, "quality", q_index)
            if q.type == "library":
                prop_rules.append(_library_rule(prop.name, prop, q, personal, q_where))
                continue
            prop_rules.append(_custom_rule(prop, q, personal, columns, q_where))
        rules.extend(prop_rules)
    for q_index, q in enumerate(contract.table.quality):
        q_where = contract.where("schema", 0, "quality", q_index)
        rules.append(_schema_rule(contract, q, columns, q_where))
    rules.extend(_sla_rules(contract, columns))
    _reject_duplicate_names(contract, rules)
    subject_columns = tuple(contract.custom("subjectColumns", ()) or ())
    township = contract.custom("townshipColumn")
    for col in (*subject_columns, *([township] if township else [])):
        if col not in columns:
            raise ContractError(
                f"{contract.where('schema', 0, 'customProperties')}: contract {contract.ref}: "
                f"customProperties name missing column {col!r}"
            )
    record_key = contract.primary_key
    if not record_key:
        raise ContractError(
            f"{contract.source}: contract {contract.ref}: unsupported: a contract without a primaryKey "
            "property (OnceOnly keys every record)"
        )
    return CompiledContract(
        contract=contract,
        arrow_schema=pa.schema([pa.field(p.name, arrow_type(p, tz)) for p in contract.table.properties]),
        rules=tuple(rules),
        record_key=record_key,
        subject_columns=subject_columns,
        township_column=township,
        max_error_rate=float(contract.custom("maxErrorRate", 1.0)),
        min_rows_for_error_rate=int(contract.custom("minRowsForErrorRate", 100)),
        certificate=_certificate_spec(contract, columns),
        personal_columns=frozenset(
            p.name for p in contract.table.properties if (p.classification or "").lower() in _PERSONAL_CLASSES
        ),
        timezone=tz,
    )


def _rule(
    prop: Property,
    kind: RuleKind,
    severity: Literal["error", "warning"],
    description: str,
    personal: bool,
    expectation: str,
    **kwargs: Any,
) -> Rule:
    return Rule(
        name=f"{prop.name}.{kind}",
        kind=kind,
        column=prop.name,
        severity=severity,
        description=description,
        personal=personal,
        expectation=expectation,
        kwargs=kwargs,
    )


_OVERRIDABLE = ("required", "unique", "pattern", "length", "range", "enum")


def _with_severity_overrides(prop: Property, rules: list[Rule], where: str) -> list[Rule]:
    """Apply the property's ``customProperties`` ``severity`` map (rule kind → error/warning)."""
    overrides = prop.custom("severity") or {}
    unknown = sorted(set(overrides) - set(_OVERRIDABLE))
    if unknown:
        raise ContractError(
            f"{where}: property {prop.name!r}: severity given for {unknown}; "
            f"it can be set for {', '.join(_OVERRIDABLE)} (quality rules carry their own)"
        )
    absent = sorted(set(overrides) - {r.kind for r in rules})
    if absent:
        raise ContractError(
            f"{where}: property {prop.name!r}: severity given for {absent}, which it does not declare"
        )
    return [dataclasses.replace(r, severity=overrides[r.kind]) if r.kind in overrides else r for r in rules]


def _option_rules(prop: Property, personal: bool, where: str) -> list[Rule]:
    opts = prop.logicalTypeOptions
    assert opts is not None
    out: list[Rule] = []
    is_text = prop.logicalType == "string"
    is_number = prop.logicalType in ("number", "integer")
    if (opts.pattern or opts.minLength is not None or opts.maxLength is not None) and not is_text:
        raise ContractError(f"{where}: property {prop.name!r}: pattern and lengths apply to strings only")
    low = opts.minimum if opts.minimum is not None else opts.exclusiveMinimum
    high = opts.maximum if opts.maximum is not None else opts.exclusiveMaximum
    if (low is not None or high is not None) and not is_number:
        raise ContractError(f"{where}: property {prop.name!r}: minimum/maximum apply to numbers only")
    if opts.pattern:
        try:
            re.compile(opts.pattern)
        except re.error as exc:
            raise ContractError(
                f"{where}: property {prop.name!r}: pattern {opts.pattern!r} is not a valid regex: {exc}"
            ) from exc
        out.append(
            _rule(
                prop,
                "pattern",
                "error",
                f"匹配 {opts.pattern}",
                personal,
                "ExpectColumnValuesToMatchRegex",
                regex=opts.pattern,
            )
        )
    if opts.minLength is not None or opts.maxLength is not None:
        out.append(
            _rule(
                prop,
                "length",
                "error",
                f"长度 {bounds_text(opts.minLength, opts.maxLength)}",
                personal,
                "ExpectColumnValueLengthsToBeBetween",
                min_value=opts.minLength,
                max_value=opts.maxLength,
            )
        )
    if low is not None or high is not None:
        out.append(
            _rule(
                prop,
                "range",
                "error",
                "取值 "
                + bounds_text(
                    low,
                    high,
                    strict_low=opts.exclusiveMinimum is not None,
                    strict_high=opts.exclusiveMaximum is not None,
                ),
                personal,
                "ExpectColumnValuesToBeBetween",
                min_value=low,
                max_value=high,
                strict_min=opts.exclusiveMinimum is not None,
                strict_max=opts.exclusiveMaximum is not None,
            )
        )
    return out


def bounds_text(
    low: float | str | None,
    high: float | str | None,
    *,
    strict_low: bool = False,
    strict_high: bool = False,
) -> str:
    """A range as people read it: ``2–100``, ``≤ 100``, ``≥ 2``, ``> 0``, ``2–100 (ends excluded)``."""
    if low is None and high is None:
        return "any"
    if low is None:
        return f"{'<' if strict_high else '≤'} {_number(high)}"
    if high is None:
        return f"{'>' if strict_low else '≥'} {_number(low)}"
    if low == high and not (strict_low or strict_high):
        return f"= {_number(low)}"
    excluded = [end for end, strict in (("lower", strict_low), ("upper", strict_high)) if strict]
    note = f" ({' and '.join(excluded)} end excluded)" if excluded else ""
    return f"{_number(low)}–{_number(high)}{note}"


def _number(value: float | str | None) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _zero_tolerance(q: Quality) -> bool:
    """True when the rule allows no offending row at all (so each offending row fails)."""
    op, value = q.operator
    if op == "mustBe" or op == "mustBeLessOrEqualTo":
        return bool(value == 0)
    if op == "mustBeLessThan":
        return bool(0 < value <= 1) if (q.unit or "rows") == "rows" else False
    return False


def _describe_metric(q: Quality) -> str:
    op, value = q.operator
    unit = "%" if q.unit == "percent" else ""
    shown = f"[{value[0]}{unit}, {value[1]}{unit}]" if isinstance(value, list) else f"{value}{unit}"
    return f"{q.metric_name} {_OPERATOR_SYMBOL[op]} {shown}"


_OPERATOR_SYMBOL = {
    "mustBe": "=",
    "mustNotBe": "≠",
    "mustBeGreaterThan": ">",
    "mustBeGreaterOrEqualTo": "≥",
    "mustBeLessThan": "<",
    "mustBeLessOrEqualTo": "≤",
    "mustBeBetween": "between",
    "mustNotBeBetween": "not between",
}


def _library_rule(column: str, prop: Property | None, q: Quality, personal: bool, where: str) -> Rule:
    """An ODCS v3 library metric rule on ``column``.

    Zero tolerance (``mustBe: 0`` and equivalents) becomes the native row-level GX expectation;
    any other threshold is a batch metric: computed vectorised into a check column that is
    False on the offending rows when (and only when) the batch breaks the threshold.
    """
    metric = q.metric_name
    args = dict(q.arguments or {})
    severity = q.severity  # validated error|warning
    if "pattern" in args and prop is not None and prop.logicalType != "string":
        raise ContractError(f"{where}: {column}: arguments.pattern applies to strings only")
    description = q.description or _describe_metric(q)
    if (
        metric in ("nullValues", "duplicateValues", "invalidValues")
        and _zero_tolerance(q)
        and "properties" not in args
    ):
        kwargs: dict[str, Any] = {}
        if metric == "nullValues":
            kind: RuleKind = "required"
            expectation, kwargs = "ExpectColumnValuesToNotBeNull", {}
        elif metric == "duplicateValues":
            kind, expectation, kwargs = "unique", "ExpectColumnValuesToBeUnique", {}
        elif "validValues" in args and "pattern" in args:
            raise ContractError(
                f"{where}: {column}: unsupported: invalidValues with both validValues and pattern; "
                "write two rules"
            )
        elif "validValues" in args:
            kind, expectation = "enum", "ExpectColumnValuesToBeInSet"
            kwargs = {"value_set": [v for v in args["validValues"] if v is not None]}
        else:
            kind, expectation = "pattern", "ExpectColumnValuesToMatchRegex"
            kwargs = {"regex": str(args["pattern"])}
        return Rule(
            name=f"{column}.{q.id or kind}",
            kind=kind,
            column=column,
            severity=severity,  # type: ignore[arg-type]
            description=description,
            personal=personal,
            expectation=expectation,
            kwargs=kwargs,
        )
    check = _METRIC_CHECKS[metric]
    if "pattern" in args:
        _require_re2(str(args["pattern"]), f"{where}: {column}")
    op, value = q.operator
    check_args: dict[str, Any] = {"operator": op, "value": value, "unit": q.unit or "rows", **args}
    return Rule(
        name=f"{column}.{q.id or metric}",
        kind="check",
        column=column,
        severity=severity,  # type: ignore[arg-type]
        description=description,
        personal=personal,
        expectation=_expectation_name(check),
        check=check,
        check_args=check_args,
    )


def _require_re2(pattern: str, where: str) -> None:
    """Threshold rules match with Arrow (RE2): reject what RE2 cannot run (look-arounds...)."""
    import pyarrow.compute as pc

    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ContractError(f"{where}: unsupported: pattern {pattern!r} in a threshold rule: {exc}") from exc


_METRIC_CHECKS = {
    "nullValues": "null_values",
    "missingValues": "missing_values",
    "invalidValues": "invalid_values",
    "duplicateValues": "duplicate_values",
    "rowCount": "row_count",
}


def _custom_rule(prop: Property, q: Quality, personal: bool, columns: set[str], where: str) -> Rule:
    from contracts.checks import METRIC_CHECK_NAMES, get_check

    if q.check_name in METRIC_CHECK_NAMES:
        raise ContractError(
            f"{where}: {prop.name}: {q.check_name!r} is an ODCS library metric; write `metric:` instead"
        )
    try:
        check = get_check(q.check_name)
    except ContractError as exc:
        raise ContractError(f"{where}: {prop.name}: {exc}") from None
    other = q.check_args.get("other")
    if other is not None and other not in columns:
        raise ContractError(f"{where}: rule {prop.name}.{check.name} refers to missing column {other!r}")
    return Rule(
        name=f"{prop.name}.{q.id or check.name}",
        kind="check",
        column=prop.name,
        severity=q.severity,  # type: ignore[arg-type]
        description=q.description or check.description,
        personal=personal or check.personal,
        expectation=_expectation_name(check.name),
        check=check.name,
        check_args=dict(q.check_args),
    )


def _schema_rule(contract: Contract, q: Quality, columns: set[str], where: str) -> Rule:
    """Schema-level rules: ``rowCount``, and ``duplicateValues`` over ``arguments.properties``."""
    table = contract.table.name
    if q.metric_name == "duplicateValues":
        properties = list((q.arguments or {}).get("properties") or [])
        missing = [c for c in properties if c not in columns]
        if missing:
            raise ContractError(f"{where}: duplicateValues refers to missing column(s) {missing}")
        anchor = properties[0]
    else:
        anchor = (contract.primary_key or (contract.table.properties[0].name,))[0]
    rule = _library_rule(anchor, None, q, False, where)
    return dataclasses.replace(rule, name=f"{table}.{q.id or q.metric_name}")


def _sla_rules(contract: Contract, columns: set[str]) -> list[Rule]:
    """``slaProperties`` ``freshness``: the newest value of its element is at most that old."""
    from contracts.model import FRESHNESS_UNITS

    out = []
    for index, sla in enumerate(contract.slaProperties):
        if sla.property != "freshness":
            continue
        where = contract.where("slaProperties", index)
        element = sla.element or contract.slaDefaultElement
        if not element:
            raise ContractError(
                f"{where}: freshness needs `element` (or slaDefaultElement): the column to check"
            )
        column = element.rsplit(".", 1)[-1]  # ODCS writes table.column
        if column not in columns:
            raise ContractError(f"{where}: freshness element {element!r} is not a column of the contract")
        prop = contract.column(column)
        if prop.logicalType not in ("date", "timestamp"):
            raise ContractError(f"{where}: freshness element {column!r} must be a date or timestamp")
        seconds = float(sla.value) * FRESHNESS_UNITS[str(sla.unit)]
        out.append(
            Rule(
                name=f"{column}.freshness",
                kind="check",
                column=column,
                # An SLA breach is the department's delivery problem, not a fault of the rows.
                severity="warning",
                description=sla.description or f"最新数据不早于 {sla.value} {sla.unit} 前",
                personal=False,
                expectation=_expectation_name("freshness"),
                check="freshness",
                check_args={"seconds": seconds},
            )
        )
    return out


def _expectation_name(check: str) -> str:
    return f"expect_column_values_to_pass_{check}"


def _reject_duplicate_names(contract: Contract, rules: list[Rule]) -> None:
    seen: set[str] = set()
    for r in rules:
        if r.name in seen:
            raise ContractError(
                f"{contract.source}: contract {contract.ref}: rule {r.name!r} is declared twice "
                "(give one of them an `id`)"
            )
        seen.add(r.name)


def _certificate_spec(contract: Contract, columns: set[str]) -> CertificateSpec | None:
    raw = contract.custom("certificate")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ContractError(
            f"{contract.source}: contract {contract.ref}: customProperties.certificate must be a mapping"
        )
    allowed = {
        "typeCode",
        "typeName",
        "issuerName",
        "issuerCode",
        "numberColumn",
        "holders",
        "fields",
        "validFromColumn",
        "validToColumn",
        "statusColumn",
        "statusMap",
    }
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ContractError(
            f"{contract.source}: contract {contract.ref}: unsupported certificate keys: {', '.join(unknown)}"
        )
    try:
        spec = CertificateSpec(
            type_code=str(raw["typeCode"]),
            type_name=str(raw["typeName"]),
            issuer_name=str(raw["issuerName"]),
            issuer_code=str(raw["issuerCode"]),
            number_column=str(raw["numberColumn"]),
            holders=tuple(dict(h) for h in raw["holders"]),
            fields=tuple(raw.get("fields", ())),
            valid_from_column=raw.get("validFromColumn"),
            valid_to_column=raw.get("validToColumn"),
            status_column=raw.get("statusColumn"),
            status_map={str(k): str(v) for k, v in (raw.get("statusMap") or {}).items()},
        )
    except (KeyError, TypeError) as exc:
        raise ContractError(
            f"{contract.source}: contract {contract.ref}: certificate is missing {exc}"
        ) from exc
    referenced = [spec.number_column, *spec.fields]
    referenced += [c for c in (spec.valid_from_column, spec.valid_to_column, spec.status_column) if c]
    for h in spec.holders:
        referenced += [h.get("nameColumn", ""), h.get("idColumn", "")]
        referenced += [h["townshipColumn"]] if h.get("townshipColumn") else []
    unknown_status = sorted(set(spec.status_map.values()) - CERTIFICATE_STATUSES)
    if unknown_status:
        raise ContractError(
            f"{contract.source}: contract {contract.ref}: certificate statusMap values {unknown_status} "
            "are not GB/T 36903 "
            f"statuses ({', '.join(sorted(CERTIFICATE_STATUSES))})"
        )
    missing = sorted({c for c in referenced if c not in columns})
    if missing:
        raise ContractError(
            f"{contract.source}: contract {contract.ref}: certificate refers to missing columns {missing}"
        )
    problems = _certificate_code_problems(contract, spec)
    if problems:
        raise ContractError("\n".join(problems))
    return spec


# GB/T 36904 identifier part: what CertificateId accepts as a certificate type code.
_TYPE_CODE_RE = re.compile(r"[0-9A-Z]{4,32}")


def _certificate_code_problems(contract: Contract, spec: CertificateSpec) -> list[str]:
    """Every code of ``customProperties.certificate`` checked now, not when the first row issues.

    The issuer's code is a USCC (GB 32100: every certificate identifier carries it); the type
    code is what a GB/T 36904 identifier accepts, and in the national catalogue's form (the
    defining authority's USCC and a 3-digit sequence) that USCC must be valid too; each holder's
    ``idType`` is a known holder identity type.
    """
    from contracts.identifiers import HOLDER_ID_TYPES, uscc_problem

    index = next(i for i, cp in enumerate(contract.table.customProperties) if cp.property == "certificate")

    def where(*path: str | int) -> str:
        return contract.where("schema", 0, "customProperties", index, "value", *path)

    problems = []
    problem = uscc_problem(spec.issuer_code)
    if problem:
        problems.append(f"{where('issuerCode')}: certificate issuerCode {spec.issuer_code!r} {problem}")
    if not _TYPE_CODE_RE.fullmatch(spec.type_code):
        problems.append(
            f"{where('typeCode')}: certificate typeCode {spec.type_code!r} is not 4-32 characters of 0-9 "
            "and A-Z (GB/T 36904 identifiers)"
        )
    elif len(spec.type_code) == 21 and spec.type_code[18:].isdigit():
        problem = uscc_problem(spec.type_code[:18])
        if problem:
            problems.append(
                f"{where('typeCode')}: certificate typeCode {spec.type_code!r}: its defining authority's "
                f"code {spec.type_code[:18]!r} {problem}"
            )
    for i, holder in enumerate(spec.holders):
        id_type = holder.get("idType", "居民身份证")
        if id_type not in HOLDER_ID_TYPES:
            problems.append(
                f"{where('holders', i, 'idType')}: holder idType {id_type!r} is not a known holder "
                f"identity type ({', '.join(HOLDER_ID_TYPES)})"
            )
    return problems


#: Domain checks whose values a contract may also write literally (examples, validValues).
_CODE_CHECKS = ("gb11643_citizen_id", "gb32100_uscc", "region_code", "mobile_number")


def code_problems(contract: Contract, region_codes: Collection[str]) -> list[str]:
    """``file:line: ...`` for every code a contract writes literally that its own check refuses.

    A property checked as a citizen ID, a USCC, a region code (``region_codes``: the district's
    list, ``contracts.checks.load_region_codes``) or a mobile number: each of its ``examples``
    and the ``validValues`` of its ``invalidValues`` rules must pass that check, or every row
    holding it would be quarantined. Citizen IDs are masked in the messages.
    """
    from contracts.identifiers import citizen_id_problem, uscc_problem
    from onceonly.privacy import mask_citizen_id

    def problem_of(check: str, value: str) -> str | None:
        if check == "gb11643_citizen_id":
            return citizen_id_problem(value)
        if check == "gb32100_uscc":
            return uscc_problem(value)
        if check == "region_code":
            return None if value in region_codes else "is not a township code of the district's region list"
        return (
            None if _MOBILE_RE.fullmatch(value) else "is not a mainland mobile number (1[3-9] and 9 digits)"
        )

    problems = []
    for index, prop in enumerate(contract.table.properties):
        checks = [q.check_name for q in prop.quality if q.type == "custom" and q.check_name in _CODE_CHECKS]
        if not checks:
            continue
        literals: list[tuple[tuple[str | int, ...], Any]] = [
            (("examples", i), v) for i, v in enumerate(prop.examples or ())
        ]
        for q_index, q in enumerate(prop.quality):
            for i, v in enumerate((q.arguments or {}).get("validValues") or ()):
                literals.append((("quality", q_index, "arguments", "validValues", i), v))
        for path, value in literals:
            if value is None:
                continue
            text = str(value)
            for check in checks:
                problem = problem_of(check, text)
                if problem:
                    shown = mask_citizen_id(text) if check == "gb11643_citizen_id" else text
                    where = contract.where("schema", 0, "properties", index, *path)
                    problems.append(f"{where}: {prop.name} value {shown!r} {problem} ({check})")
    return problems


_MOBILE_RE = re.compile(r"1[3-9][0-9]{9}")


ExpectationFactory = Callable[[Rule], "Expectation"]

__all__ = [
    "CHECK_PREFIX",
    "RECORD_KEY_SEPARATOR",
    "ROW_INDEX",
    "TYPE_CHECK_PREFIX",
    "CertificateSpec",
    "CompiledContract",
    "Rule",
    "arrow_type",
    "bounds_text",
    "code_problems",
    "compile_contract",
]
