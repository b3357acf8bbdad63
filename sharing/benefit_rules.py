"""免申即享 benefit rules: one small YAML file per policy, validated like a data contract.

Example::

    rules = load_rules(settings.benefit_rules_dir, settings.contracts_dir)
    rule = rules[0]
    rule.id, rule.version, rule.name            # ("gaoling-jintie", "1.0.0", "高龄津贴")
    [f.name for f in rule.facts]                # ["居民户口簿"]
    rule.describe(rule.facts[0].conditions[1])  # "持证人年龄（周岁） 不小于 80"

A rule names the facts a decision rests on — each a certificate of one type (证照类型代码)
held by the subject, in one of the listed states (default 有效) and in force on the day — and
conditions over that certificate's fields::

    facts:
      - name: 居民户口簿
        certificate_type: 11100000000019342N001
        conditions:
          - {field: township, operator: inDistrict}
          - {field: holder_age, operator: mustBeGreaterOrEqualTo, value: 80}

A subject qualifies when every fact holds. A one-off benefit triggered by an event (a birth)
names the fact that is the event with ``once_per: <fact name>``: a grant is then made once per
subject *and* certificate of that fact (a mother is granted for each child's 出生医学证明, once
each, its renewals included); without it, once per subject while the grant is in force.

Fields are the catalog's (``township``,
``valid_from``, ``valid_to``, ``issue_date``), ``holder_age`` (whole years since the birth date
of the holder's GB 11643 ID number, §5.2.2: digits 7-14) and ``fields.<name>`` for a field the
type's data contract puts on the certificate (``fields.birth_date``), typed as the contract
types it. Operators: the ODCS comparisons (``mustBe``, ``mustNotBe``, ``mustBeGreaterThan``,
``mustBeGreaterOrEqualTo``, ``mustBeLessThan``, ``mustBeLessOrEqualTo``) and three of
OnceOnly's: ``inDistrict`` (a township code of the district served), ``withinDays`` (a date no
more than N days before the day) and ``isSubject`` (an ID on the certificate is the subject's).

As with a contract, anything unknown — key, certificate type, field, operator, state — or a
value of the wrong type is an error naming the file and the line; nothing is ignored.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from contracts.model import certificate_datasets, contract_by_id, yaml_line
from evidence.certificate import (
    STATUS_CANCELLED,
    STATUS_EXPIRED,
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    STATUS_VALID,
    STATUS_WITHDRAWN,
)
from onceonly.errors import ConfigurationError

STATUSES = (
    STATUS_VALID,
    STATUS_SUSPENDED,
    STATUS_REVOKED,
    STATUS_WITHDRAWN,
    STATUS_CANCELLED,
    STATUS_EXPIRED,
)
FieldType = Literal["string", "date", "integer", "number", "boolean"]
# The catalog's columns a condition may read, their types and what a clerk calls them.
CATALOG_FIELDS: dict[str, tuple[FieldType, str]] = {
    "township": ("string", "所在乡镇（街道）"),
    "valid_from": ("date", "有效期起始日"),
    "valid_to": ("date", "有效期截止日"),
    "issue_date": ("date", "签发日期"),
    "holder_age": ("integer", "持证人年龄（周岁）"),
}
_COMPARISONS = {
    "mustBe": "等于",
    "mustNotBe": "不等于",
    "mustBeGreaterThan": "大于",
    "mustBeGreaterOrEqualTo": "不小于",
    "mustBeLessThan": "小于",
    "mustBeLessOrEqualTo": "不大于",
}
_ORDERED = ("integer", "number", "date")
# operator -> (field types it applies to, what its value is: a field-typed value, days, none)
OPERATORS: dict[str, tuple[tuple[str, ...], str]] = {
    "mustBe": (("string", "integer", "number", "date", "boolean"), "typed"),
    "mustNotBe": (("string", "integer", "number", "date", "boolean"), "typed"),
    "mustBeGreaterThan": (_ORDERED, "typed"),
    "mustBeGreaterOrEqualTo": (_ORDERED, "typed"),
    "mustBeLessThan": (_ORDERED, "typed"),
    "mustBeLessOrEqualTo": (_ORDERED, "typed"),
    "inDistrict": (("string",), "none"),
    "withinDays": (("date",), "days"),
    "isSubject": (("string",), "none"),
}
_ID_TYPE_PERSON = "居民身份证"
_SEMVER = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")


class BenefitRuleError(ConfigurationError):
    """A benefit rule file that cannot be used; the message names the file and the line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    field: str = Field(min_length=1)
    operator: str = Field(min_length=1)
    value: Any = None


class Fact(_Strict):
    """A certificate the decision rests on: its type, the states that count, its conditions."""

    name: str = Field(min_length=1)
    certificate_type: str = Field(min_length=1)
    status: tuple[str, ...] = (STATUS_VALID,)
    conditions: tuple[Condition, ...] = ()


class Grant(_Strict):
    """What a decision grants (shown in the explanation and logged with the decision)."""

    benefit: str = Field(min_length=1)
    amount: float | None = None
    unit: str | None = None
    note: str | None = None

    def describe(self) -> str:
        if self.amount is None:
            return self.benefit
        amount = f"{self.amount:g}"
        return f"{self.benefit} {amount} {self.unit or '元'}"


class Rule(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    version: str
    name: str = Field(min_length=1)
    department: str = Field(min_length=1)
    description: str | None = None
    subject: Literal["person", "organisation"] = "person"
    facts: tuple[Fact, ...] = Field(min_length=1)
    grants: Grant
    once_per: str | None = Field(default=None, min_length=1)  # the name of the triggering fact

    _source: str = PrivateAttr(default="<rule>")
    _labels: dict[str, str] = PrivateAttr(default_factory=dict)  # field -> its Chinese name

    @property
    def source(self) -> str:
        return self._source

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def trigger(self) -> int | None:
        """The index of the ``once_per`` fact (None: once per subject)."""
        names = [f.name for f in self.facts]
        return None if self.once_per is None else names.index(self.once_per)

    def label(self, field: str) -> str:
        return self._labels.get(field, field)

    def describe(self, condition: Condition) -> str:
        """The condition in words (Chinese), as the explanation shows it."""
        name = self.label(condition.field)
        if condition.operator == "inDistrict":
            return f"{name} 在本区"
        if condition.operator == "isSubject":
            return f"{name} 为本人"
        if condition.operator == "withinDays":
            return f"{name} 在 {condition.value} 日内"
        return f"{name} {_COMPARISONS[condition.operator]} {condition.value}"


@dataclass(frozen=True)
class FieldSpec:
    type: FieldType
    label: str
    column: str | None  # a catalog column, or None for a certificate field (fields.<name>)


def known_fields(contracts_dir: Path, type_code: str) -> dict[str, FieldSpec]:
    """The fields a condition on a certificate of ``type_code`` may read, with their types."""
    dataset = certificate_datasets(contracts_dir)[type_code]
    contract = contract_by_id(contracts_dir, dataset)
    spec = contract.custom("certificate") or {}
    out = {name: FieldSpec(kind, label, name) for name, (kind, label) in CATALOG_FIELDS.items()}
    if not all(h.get("idType", _ID_TYPE_PERSON) == _ID_TYPE_PERSON for h in spec.get("holders", [])):
        del out["holder_age"]  # an organisation's USCC has no birth date
    for name in spec.get("fields", []):
        prop = contract.column(str(name))
        kind = (
            prop.logicalType
            if prop.logicalType in ("string", "date", "integer", "number", "boolean")
            else "string"
        )
        out[f"fields.{name}"] = FieldSpec(kind, prop.businessName or str(name), None)  # type: ignore[arg-type]
    return out


def load_rule(path: Path, contracts_dir: Path) -> Rule:
    """One rule file, validated; :class:`BenefitRuleError` naming the file and line otherwise."""
    from onceonly.yamlfile import YamlProblem, read_yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenefitRuleError(f"{path}: cannot read the benefit rule: {exc}") from exc
    try:
        data, node = read_yaml(text, str(path))
    except YamlProblem as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise BenefitRuleError(f"{where}: {exc.problem}") from None
    if not isinstance(data, Mapping):
        raise BenefitRuleError(f"{path}: a benefit rule is a YAML mapping (id, version, name, facts, ...)")
    try:
        rule = Rule.model_validate(data)
    except ValidationError as exc:
        problems = []
        errors = [
            (tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p)), err)
            for err in exc.errors()
        ]
        # A list whose items failed is also "too short" (pydantic counts the valid ones): the
        # items' own errors say what is wrong.
        failed_items = {loc[:i] for loc, _ in errors for i in range(1, len(loc)) if isinstance(loc[i], int)}
        errors = [
            (loc, err) for loc, err in errors if not (err["type"] == "too_short" and loc in failed_items)
        ]
        for loc, err in errors[:20]:
            line = yaml_line(node, loc)
            where = f"{path}:{line}" if line else str(path)
            what = ".".join(map(str, loc)) or "the rule"
            if err["type"] == "extra_forbidden":
                problems.append(
                    f"{where}: unknown key {loc[-1]!r} at {'.'.join(map(str, loc[:-1])) or 'top level'}"
                )
            else:
                problems.append(f"{where}: {what}: {err['msg'].removeprefix('Value error, ')}")
        raise BenefitRuleError("\n".join(problems)) from None
    problems = [
        f"{path}:{yaml_line(node, loc) or '?'}: {message}" for loc, message in _problems(rule, contracts_dir)
    ]
    if problems:
        raise BenefitRuleError("\n".join(problems))
    rule._source = str(path)
    return rule


def load_rules(directory: Path, contracts_dir: Path) -> tuple[Rule, ...]:
    """Every rule in ``directory`` (``*.yaml``), by id; an id defined twice is an error."""
    if not directory.is_dir():
        raise BenefitRuleError(f"{directory}: no such folder of benefit rules (ONCEONLY_BENEFIT_RULES_DIR)")
    rules: dict[str, Rule] = {}
    for path in sorted(directory.glob("*.yaml")):
        rule = load_rule(path, contracts_dir)
        if rule.id in rules:
            raise BenefitRuleError(
                f"{path}: rule id {rule.id!r} is defined twice (also in {rules[rule.id].source})"
            )
        rules[rule.id] = rule
    return tuple(rules[k] for k in sorted(rules))


def _problems(rule: Rule, contracts_dir: Path) -> list[tuple[tuple[Any, ...], str]]:
    found: list[tuple[tuple[Any, ...], str]] = []
    if not _SEMVER.fullmatch(rule.version):
        found.append((("version",), f"version {rule.version!r} is not MAJOR.MINOR.PATCH"))
    types = certificate_datasets(contracts_dir)
    names: set[str] = set()
    labels: dict[str, str] = {}
    for i, fact in enumerate(rule.facts):
        at = ("facts", i)
        if fact.name in names:
            found.append(((*at, "name"), f"fact {fact.name!r} is named twice"))
        names.add(fact.name)
        for j, status in enumerate(fact.status):
            if status not in STATUSES:
                found.append(
                    (
                        (*at, "status", j),
                        f"unknown certificate status {status!r} (GB/T 36903: {', '.join(STATUSES)})",
                    )
                )
        if fact.certificate_type not in types:
            found.append(
                (
                    (*at, "certificate_type"),
                    f"fact {fact.name}: unknown certificate type {fact.certificate_type!r} (no data contract "
                    f"issues it; known: {', '.join(sorted(types)) or 'none'})",
                )
            )
            continue
        fields = known_fields(contracts_dir, fact.certificate_type)
        for k, condition in enumerate(fact.conditions):
            where = (*at, "conditions", k)
            spec = fields.get(condition.field)
            if spec is None:
                found.append(
                    (
                        (*where, "field"),
                        f"fact {fact.name}: unknown field {condition.field!r} of {fact.certificate_type} "
                        f"(known: {', '.join(fields)})",
                    )
                )
                continue
            labels[condition.field] = spec.label
            problem = _operator_problem(condition, spec)
            if problem:
                key = (
                    "operator"
                    if problem.startswith("unknown operator") or "applies to" in problem
                    else "value"
                )
                found.append(((*where, key), f"fact {fact.name}: {problem}"))
    if rule.once_per is not None and rule.once_per not in names:
        found.append(
            (
                ("once_per",),
                f"once_per names no fact of the rule: {rule.once_per!r} (facts: {', '.join(sorted(names))})",
            )
        )
    rule._labels.update(labels)
    return found


def _operator_problem(condition: Condition, spec: FieldSpec) -> str | None:
    if condition.operator not in OPERATORS:
        return f"unknown operator {condition.operator!r} (known: {', '.join(OPERATORS)})"
    applies, takes = OPERATORS[condition.operator]
    if spec.type not in applies:
        kinds = " or ".join(applies)
        return f"operator {condition.operator} applies to {kinds} fields; {condition.field} is a {spec.type}"
    if condition.operator == "inDistrict" and condition.field != "township":
        return "operator inDistrict applies to the township field only"
    value = condition.value
    if takes == "none":
        return None if value is None else f"operator {condition.operator} takes no value (got {value!r})"
    if value is None:
        return f"operator {condition.operator} needs a value"
    if takes == "days":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"withinDays takes a whole number of days ≥ 0, not {value!r}"
        return None
    return _value_problem(condition.field, spec.type, value)


def _value_problem(field: str, kind: str, value: Any) -> str | None:
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{field} is an integer; the value {value!r} is not"
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"{field} is a number; the value {value!r} is not"
    if kind == "boolean" and not isinstance(value, bool):
        return f"{field} is true or false; the value {value!r} is not"
    if kind == "string" and not isinstance(value, str):
        return f"{field} is text; the value {value!r} is not (quote it)"
    if kind == "date" and not isinstance(value, dt.date):
        return f"{field} is a date; the value {value!r} is not (write YYYY-MM-DD)"
    return None


def as_date_text(value: Any) -> str:
    """A date condition's value as ISO text (YAML reads 2026-01-01 as a date)."""
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def rule_document(rule: Rule) -> dict[str, Any]:
    """What the log records of a rule with each decision: id, version, name, department."""
    return {"id": rule.id, "version": rule.version, "name": rule.name, "department": rule.department}


def fact_types(rules: Sequence[Rule]) -> set[str]:
    return {f.certificate_type for r in rules for f in r.facts}


__all__ = [
    "CATALOG_FIELDS",
    "OPERATORS",
    "STATUSES",
    "BenefitRuleError",
    "Condition",
    "Fact",
    "FieldSpec",
    "Grant",
    "Rule",
    "as_date_text",
    "fact_types",
    "known_fields",
    "load_rule",
    "load_rules",
    "rule_document",
]
