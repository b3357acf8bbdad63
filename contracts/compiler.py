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

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from contracts.model import Contract, Property
from onceonly.errors import ContractError

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

    def build_suite(self) -> ExpectationSuite:
        """The Great Expectations 1.x suite for this contract (imports GX on first use)."""
        from contracts import expectations

        return expectations.build_suite(self)


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
    from contracts.checks import get_check

    tz = str(contract.custom("sourceTimezone", "Asia/Shanghai"))
    columns = {p.name for p in contract.table.properties}
    rules: list[Rule] = []
    for prop in contract.table.properties:
        personal = (prop.classification or "").lower() in _PERSONAL_CLASSES
        rules.append(
            _rule(
                prop,
                "type",
                "error",
                f"值可转换为 {prop.logicalType}",
                personal,
                "expect_column_values_to_conform_to_contract_type",
            )
        )
        if prop.required or prop.primaryKey:
            rules.append(_rule(prop, "required", "error", "必填", personal, "ExpectColumnValuesToNotBeNull"))
        if prop.unique or prop.primaryKey:
            rules.append(_rule(prop, "unique", "error", "唯一", personal, "ExpectColumnValuesToBeUnique"))
        opts = prop.logicalTypeOptions
        if opts is not None:
            rules.extend(_option_rules(prop, personal))
        for q in prop.quality:
            if q.type == "library":
                rules.append(_library_rule(prop, q.metric or "", q.arguments or {}, q.severity, personal))
                continue
            check = get_check(q.check_name)  # raises ContractError listing the known checks
            other = q.check_args.get("other")
            if other is not None and other not in columns:
                raise ContractError(
                    f"contract {contract.ref}: rule {prop.name}.{check.name} "
                    f"refers to missing column {other!r}"
                )
            rules.append(
                Rule(
                    name=f"{prop.name}.{check.name}",
                    kind="check",
                    column=prop.name,
                    severity=q.severity,
                    description=q.description or check.description,
                    personal=personal or check.personal,
                    expectation=_expectation_name(check.name),
                    check=check.name,
                    check_args=dict(q.check_args),
                )
            )
    _reject_duplicate_names(contract, rules)
    subject_columns = tuple(contract.custom("subjectColumns", ()) or ())
    township = contract.custom("townshipColumn")
    for col in (*subject_columns, *([township] if township else [])):
        if col not in columns:
            raise ContractError(f"contract {contract.ref}: customProperties name missing column {col!r}")
    record_key = contract.primary_key
    if not record_key:
        raise ContractError(f"contract {contract.ref}: no primaryKey property; records need a key")
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


def _option_rules(prop: Property, personal: bool) -> list[Rule]:
    opts = prop.logicalTypeOptions
    assert opts is not None
    out: list[Rule] = []
    is_text = prop.logicalType == "string"
    is_number = prop.logicalType in ("number", "integer")
    if (
        opts.pattern or opts.minLength is not None or opts.maxLength is not None or opts.enum
    ) and not is_text:
        raise ContractError(f"property {prop.name!r}: pattern, lengths and enum apply to strings only")
    if (opts.minimum is not None or opts.maximum is not None) and not is_number:
        raise ContractError(f"property {prop.name!r}: minimum/maximum apply to numbers only")
    if opts.format is not None:
        raise ContractError(f"property {prop.name!r}: unsupported: logicalTypeOptions.format")
    if opts.pattern:
        try:
            re.compile(opts.pattern)
        except re.error as exc:
            raise ContractError(f"property {prop.name!r}: pattern is not a valid regex: {exc}") from exc
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
                f"长度 {opts.minLength}–{opts.maxLength}",
                personal,
                "ExpectColumnValueLengthsToBeBetween",
                min_value=opts.minLength,
                max_value=opts.maxLength,
            )
        )
    if opts.minimum is not None or opts.maximum is not None:
        out.append(
            _rule(
                prop,
                "range",
                "error",
                f"取值 {opts.minimum}–{opts.maximum}",
                personal,
                "ExpectColumnValuesToBeBetween",
                min_value=opts.minimum,
                max_value=opts.maximum,
            )
        )
    if opts.enum:
        out.append(
            _rule(
                prop,
                "enum",
                "error",
                f"取值于 {list(opts.enum)}",
                personal,
                "ExpectColumnValuesToBeInSet",
                value_set=list(opts.enum),
            )
        )
    return out


def _library_rule(prop: Property, metric: str, args: dict[str, Any], severity: Any, personal: bool) -> Rule:
    # ODCS v3 library metrics with mustBe: 0, i.e. "no row may be ...".
    if metric == "nullValues":
        return _rule(prop, "required", severity, "nullValues = 0", personal, "ExpectColumnValuesToNotBeNull")
    if metric == "duplicateValues":
        return _rule(
            prop, "unique", severity, "duplicateValues = 0", personal, "ExpectColumnValuesToBeUnique"
        )
    if "validValues" in args:
        return _rule(
            prop,
            "enum",
            severity,
            "invalidValues = 0",
            personal,
            "ExpectColumnValuesToBeInSet",
            value_set=list(args["validValues"]),
        )
    if "pattern" in args:
        return _rule(
            prop,
            "pattern",
            severity,
            "invalidValues = 0",
            personal,
            "ExpectColumnValuesToMatchRegex",
            regex=str(args["pattern"]),
        )
    raise ContractError(
        f"property {prop.name!r}: unsupported: invalidValues needs arguments.validValues or arguments.pattern"
    )


def _expectation_name(check: str) -> str:
    return f"expect_column_values_to_pass_{check}"


def _reject_duplicate_names(contract: Contract, rules: list[Rule]) -> None:
    seen: set[str] = set()
    for r in rules:
        if r.name in seen:
            raise ContractError(f"contract {contract.ref}: rule {r.name!r} is declared twice")
        seen.add(r.name)


def _certificate_spec(contract: Contract, columns: set[str]) -> CertificateSpec | None:
    raw = contract.custom("certificate")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ContractError(f"contract {contract.ref}: customProperties.certificate must be a mapping")
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
        raise ContractError(f"contract {contract.ref}: unsupported certificate keys: {', '.join(unknown)}")
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
        raise ContractError(f"contract {contract.ref}: certificate is missing {exc}") from exc
    referenced = [spec.number_column, *spec.fields]
    referenced += [c for c in (spec.valid_from_column, spec.valid_to_column, spec.status_column) if c]
    for h in spec.holders:
        referenced += [h.get("nameColumn", ""), h.get("idColumn", "")]
        referenced += [h["townshipColumn"]] if h.get("townshipColumn") else []
    unknown_status = sorted(set(spec.status_map.values()) - CERTIFICATE_STATUSES)
    if unknown_status:
        raise ContractError(
            f"contract {contract.ref}: certificate statusMap values {unknown_status} are not GB/T 36903 "
            f"statuses ({', '.join(sorted(CERTIFICATE_STATUSES))})"
        )
    missing = sorted({c for c in referenced if c not in columns})
    if missing:
        raise ContractError(f"contract {contract.ref}: certificate refers to missing columns {missing}")
    return spec


ExpectationFactory = Callable[[Rule], "Expectation"]

__all__ = [
    "CHECK_PREFIX",
    "ROW_INDEX",
    "TYPE_CHECK_PREFIX",
    "CertificateSpec",
    "CompiledContract",
    "Rule",
    "arrow_type",
    "compile_contract",
]
