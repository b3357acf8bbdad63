"""The supported ODCS v3 subset: each construct compiles to a named rule and GX expectation."""

from __future__ import annotations

import datetime as dt
import textwrap
from typing import Any

import pyarrow as pa
import pytest

from contracts.checks import DOMAIN_CHECKS, CheckContext, metric_passes
from contracts.compiler import CompiledContract, compile_contract
from contracts.model import OPERATORS, parse_contract
from contracts.validate import Validator
from onceonly.errors import ContractError

TODAY = dt.date(2026, 11, 21)
CTX = CheckContext.for_district("120114", today=TODAY)


def contract_text(properties: str, *, schema_extra: str = "", top_extra: str = "") -> str:
    """A minimal valid contract with ``properties`` (YAML, indented as list items) spliced in."""
    return (
        textwrap.dedent(
            """\
            apiVersion: v3.1.0
            kind: DataContract
            id: sample
            version: 1.2.0
            status: active
            schema:
              - name: sample
                properties:
                  - name: id
                    logicalType: string
                    primaryKey: true
            """
        )
        + textwrap.indent(textwrap.dedent(properties), "      ")
        + textwrap.indent(textwrap.dedent(schema_extra), "    ")
        + textwrap.dedent(top_extra)
    )


def compiled(properties: str, **extra: str) -> CompiledContract:
    return compile_contract(parse_contract(contract_text(properties, **extra), source="sample.yaml"))


def rules(c: CompiledContract) -> dict[str, Any]:
    return {r.name: r for r in c.rules}


def validate(c: CompiledContract, columns: dict[str, list[Any]]) -> Any:
    return Validator(c, CTX).validate(pa.table(columns), connector="test")


# --------------------------------------------------------------------------------------------
# Every construct becomes one named rule


def test_each_supported_construct_compiles_to_one_named_expectation() -> None:
    c = compiled(
        """\
        - name: code
          logicalType: string
          required: true
          unique: true
          logicalTypeOptions: {pattern: '^[A-Z]+$', minLength: 2, maxLength: 5}
        - name: amount
          logicalType: number
          logicalTypeOptions: {exclusiveMinimum: 0, maximum: 100}
        - name: kind
          logicalType: string
          quality:
            - {metric: invalidValues, arguments: {validValues: [a, b]}, mustBe: 0}
            - {id: kind_nulls, metric: nullValues, mustBeLessOrEqualTo: 10, unit: percent, severity: warning}
            - {metric: missingValues, arguments: {missingValues: [null, 'N/A']}, mustBeLessThan: 3}
        """,
        schema_extra="""\
        quality:
          - {metric: rowCount, mustBeGreaterOrEqualTo: 1}
        """,
    )
    by_name = rules(c)
    assert by_name["code.required"].expectation == "ExpectColumnValuesToNotBeNull"
    assert by_name["code.unique"].expectation == "ExpectColumnValuesToBeUnique"
    assert by_name["code.pattern"].kwargs == {"regex": "^[A-Z]+$"}
    assert by_name["code.length"].kwargs == {"min_value": 2, "max_value": 5}
    assert by_name["amount.range"].kwargs == {
        "min_value": 0,
        "max_value": 100,
        "strict_min": True,
        "strict_max": False,
    }
    assert by_name["kind.enum"].kwargs == {"value_set": ["a", "b"]}
    assert by_name["kind.kind_nulls"].check == "null_values"
    assert by_name["kind.kind_nulls"].severity == "warning"
    assert by_name["kind.kind_nulls"].check_args == {
        "operator": "mustBeLessOrEqualTo",
        "value": 10,
        "unit": "percent",
    }
    assert by_name["kind.missingValues"].check == "missing_values"
    assert by_name["sample.rowCount"].check == "row_count"
    suite = c.build_suite()
    assert [(e.meta or {})["rule"] for e in suite.expectations] == [r.name for r in c.rules]
    types = {(e.meta or {})["rule"]: e.expectation_type for e in suite.expectations}
    assert types["kind.kind_nulls"] == "expect_column_values_to_pass_null_values_metric"
    assert types["sample.rowCount"] == "expect_column_values_to_pass_row_count_metric"


@pytest.mark.parametrize(
    ("operator", "value", "unit"),
    [("mustBe", 0, None), ("mustBeLessOrEqualTo", 0, "percent"), ("mustBeLessThan", 1, "rows")],
)
def test_zero_tolerance_forms_are_row_level_native_rules(operator: str, value: int, unit: str | None) -> None:
    unit_line = f", unit: {unit}" if unit else ""
    c = compiled(
        f"""\
        - name: v
          logicalType: string
          quality:
            - {{metric: nullValues, {operator}: {value}{unit_line}}}
        """
    )
    assert rules(c)["v.required"].expectation == "ExpectColumnValuesToNotBeNull"


def test_severity_override_per_rule_kind() -> None:
    c = compiled(
        """\
        - name: note
          logicalType: string
          logicalTypeOptions: {maxLength: 3}
          customProperties:
            - {property: severity, value: {length: warning}}
        """
    )
    assert rules(c)["note.length"].severity == "warning"
    v = validate(c, {"id": ["1", "2"], "note": ["abc", "abcdef"]})
    assert v.accepted.num_rows == 2  # a warning keeps the row ...
    assert [(f.rule, f.severity) for f in v.failures] == [("note.length", "warning")]  # ... and reports it


def test_severity_override_for_an_undeclared_rule_is_rejected() -> None:
    with pytest.raises(
        ContractError, match=r"sample\.yaml:\d+: property 'note': severity given for \['unique'\]"
    ):
        compiled(
            """\
            - name: note
              logicalType: string
              customProperties:
                - {property: severity, value: {unique: warning}}
            """
        )


# --------------------------------------------------------------------------------------------
# Threshold metrics: batch-level, the offending rows fail only when the batch breaks the bound


def test_null_threshold_tolerates_within_and_quarantines_the_nulls_beyond() -> None:
    c = compiled(
        """\
        - name: v
          logicalType: string
          quality:
            - {metric: nullValues, mustBeLessOrEqualTo: 25, unit: percent}
        """
    )
    ok = validate(c, {"id": ["1", "2", "3", "4"], "v": ["a", None, "c", "d"]})
    assert ok.accepted.num_rows == 4 and not ok.failures
    bad = validate(c, {"id": ["1", "2", "3", "4"], "v": ["a", None, None, "d"]})
    assert bad.accepted.num_rows == 2
    assert sorted(f.row for f in bad.failures) == [1, 2]
    assert {f.rule for f in bad.failures} == {"v.nullValues"}


def test_row_count_failure_fails_the_whole_batch() -> None:
    c = compiled(
        """\
        - name: v
          logicalType: string
        """,
        schema_extra="""\
        quality:
          - {metric: rowCount, mustBeBetween: [3, 10], severity: warning}
        """,
    )
    small = validate(c, {"id": ["1", "2"], "v": ["a", "b"]})
    assert small.accepted.num_rows == 2  # warning: kept, reported
    assert sorted(f.row for f in small.failures if f.rule == "sample.rowCount") == [0, 1]
    assert not validate(c, {"id": ["1", "2", "3"], "v": ["a", "b", "c"]}).failures


def test_duplicates_over_several_columns_at_schema_level() -> None:
    c = compiled(
        """\
        - name: a
          logicalType: string
        - name: b
          logicalType: string
        """,
        schema_extra="""\
        quality:
          - {metric: duplicateValues, arguments: {properties: [a, b]}, mustBe: 0}
        """,
    )
    v = validate(c, {"id": ["1", "2", "3", "4"], "a": ["x", "x", "x", None], "b": ["p", "p", "q", None]})
    assert sorted(f.row for f in v.failures) == [0, 1]
    assert v.quarantined.num_rows == 2


def test_invalid_values_pattern_threshold_in_rows() -> None:
    c = compiled(
        """\
        - name: v
          logicalType: string
          quality:
            - {metric: invalidValues, arguments: {pattern: '^[0-9]+$'}, mustBeLessThan: 2}
        """
    )
    assert not validate(c, {"id": ["1", "2", "3"], "v": ["1", "x", None]}).failures
    v = validate(c, {"id": ["1", "2", "3"], "v": ["y", "x", "3"]})
    assert sorted(f.row for f in v.failures) == [0, 1]


@pytest.mark.parametrize(
    ("operator", "bound", "value", "expected"),
    [
        ("mustBe", 3, 3, True),
        ("mustNotBe", 3, 3, False),
        ("mustBeGreaterThan", 3, 3, False),
        ("mustBeGreaterOrEqualTo", 3, 3, True),
        ("mustBeLessThan", 3, 2, True),
        ("mustBeLessOrEqualTo", 3, 4, False),
        ("mustBeBetween", [1, 3], 3, True),
        ("mustNotBeBetween", [1, 3], 2, False),
    ],
)
def test_every_odcs_operator(operator: str, bound: Any, value: float, expected: bool) -> None:
    assert operator in OPERATORS
    assert metric_passes(value, operator, bound) is expected


def test_freshness_sla_is_a_warning_on_the_element() -> None:
    c = compiled(
        """\
        - name: updated_at
          logicalType: timestamp
        """,
        top_extra="""\
        slaProperties:
          - {property: freshness, value: 2, unit: d, element: sample.updated_at}
          - {property: frequency, value: 1, unit: d}
        """,
    )
    rule = rules(c)["updated_at.freshness"]
    assert (rule.severity, rule.check_args) == ("warning", {"seconds": 172800.0})
    now = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
    ctx = CheckContext(today=TODAY, now=now)
    fresh = pa.table({"updated_at": pa.array([now - dt.timedelta(days=5), now - dt.timedelta(hours=1)])})
    stale = pa.table({"updated_at": pa.array([now - dt.timedelta(days=5)])})
    check = DOMAIN_CHECKS["freshness"]
    assert check.evaluate(fresh, "updated_at", rule.check_args, ctx).to_pylist() == [True, True]
    assert check.evaluate(stale, "updated_at", rule.check_args, ctx).to_pylist() == [False]


# --------------------------------------------------------------------------------------------
# Bad contracts: each a clear error with the file and line


def _error(properties: str, **extra: str) -> str:
    with pytest.raises(ContractError) as info:
        compiled(properties, **extra)
    return str(info.value)


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("{minLength: 5, maxLength: 2}", "minLength 5 > maxLength 2"),
        ("{minimum: 5, maximum: 2}", "the lower bound 5.0 > the upper bound 2.0"),
        ("{pattern: '([a-z'}", "is not a valid regex"),
        ("{enum: [a, b]}", "unsupported: logicalTypeOptions.enum is not part of ODCS v3"),
        ("{format: email}", "unsupported: logicalTypeOptions.format"),
        ("{multipleOf: 5}", "unsupported: logicalTypeOptions.multipleOf"),
    ],
)
def test_bad_logical_type_options(snippet: str, message: str) -> None:
    logical = "number" if "imum" in snippet or "multipleOf" in snippet else "string"
    text = _error(f"- name: v\n  logicalType: {logical}\n  logicalTypeOptions: {snippet}\n")
    assert message in text
    assert text.startswith("sample.yaml:1") or "sample.yaml:" in text.split(" ")[0]


def test_ranges_on_strings_and_lengths_on_numbers_are_rejected() -> None:
    assert "minimum/maximum apply to numbers only" in _error(
        "- name: v\n  logicalType: string\n  logicalTypeOptions: {maximum: 3}\n"
    )
    assert "pattern and lengths apply to strings only" in _error(
        "- name: v\n  logicalType: integer\n  logicalTypeOptions: {maxLength: 3}\n"
    )


@pytest.mark.parametrize(
    ("quality", "message"),
    [
        ("{metric: nullValues}", "needs exactly one of mustBe"),
        ("{metric: nullValues, mustBe: 0, mustBeLessThan: 3}", "needs exactly one of"),
        ("{metric: averageValue, mustBe: 0}", "unsupported: library metric 'averageValue'"),
        ("{metric: nullValues, mustBe: 0, unit: bytes}", "unsupported: unit 'bytes'"),
        ("{metric: nullValues, mustBeBetween: [5, 1]}", "the smaller number comes first"),
        ("{metric: invalidValues, mustBe: 0}", "needs arguments.validValues or arguments.pattern"),
        ("{metric: invalidValues, arguments: {pattern: '(['}, mustBe: 0}", "not a valid regex"),
        ("{metric: nullValues, arguments: {x: 1}, mustBe: 0}", "unsupported: arguments ['x'] for nullValues"),
        ("{type: sql, query: 'select 1', mustBe: 1}", "unsupported: sql quality rules"),
        ("{type: text, description: good}", "unsupported: quality type 'text'"),
        ("{metric: nullValues, mustBe: 0, severity: info}", "unsupported: severity 'info'"),
        ("{metric: nullValues, mustBe: 0, schedule: '0 20 * * *'}", "unsupported: per-rule schedules"),
        ("{type: custom, engine: soda, implementation: x}", "unsupported: custom quality engine 'soda'"),
        ("{type: custom, engine: onceonly, implementation: gb9999}", "unknown domain check 'gb9999'"),
        ("{type: custom, engine: onceonly, implementation: row_count}", "is an ODCS library metric"),
        (
            "{type: custom, engine: onceonly, implementation: {check: not_after, other: nope}}",
            "refers to missing column 'nope'",
        ),
    ],
)
def test_bad_quality_rules(quality: str, message: str) -> None:
    text = _error(f"- name: v\n  logicalType: date\n  quality:\n    - {quality}\n")
    assert message in text
    assert "sample.yaml:" in text


def test_patterns_on_non_strings_and_re2_incompatible_threshold_patterns() -> None:
    assert "arguments.pattern applies to strings only" in _error(
        "- name: v\n  logicalType: integer\n"
        "  quality: [{metric: invalidValues, arguments: {pattern: x}, mustBe: 0}]\n"
    )
    assert "unsupported: pattern '(?=a)a' in a threshold rule" in _error(
        "- name: v\n  logicalType: string\n"
        "  quality: [{metric: invalidValues, arguments: {pattern: '(?=a)a'}, mustBeLessThan: 5}]\n"
    )


def test_a_value_list_that_cannot_be_compared_is_a_contract_error_naming_the_column() -> None:
    c = compiled(
        """\
        - name: n
          logicalType: integer
          quality:
            - {metric: invalidValues, arguments: {validValues: [one, two]}, mustBeLessThan: 5}
        """
    )
    with pytest.raises(ContractError, match="check 'invalid_values' on column 'n'"):
        validate(c, {"id": ["1"], "n": ["1"]})


def test_errors_carry_the_line_of_the_offending_entry() -> None:
    text = contract_text("- name: v\n  logicalType: string\n  quality:\n    - {metric: nullValues}\n")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.strip() == "- {metric: nullValues}")
    with pytest.raises(ContractError, match=rf"^sample\.yaml:{line}: "):
        parse_contract(text, source="sample.yaml")


def test_unsupported_top_level_and_custom_properties() -> None:
    assert "unsupported: servers" in _error("", top_extra="servers: [{server: x, type: postgres}]\n")
    assert "unsupported: customProperties 'colour' on the schema object" in _error(
        "", schema_extra="customProperties: [{property: colour, value: red}]\n"
    )
    assert "unsupported: slaProperties property 'uptime'" in _error(
        "", top_extra="slaProperties: [{property: uptime, value: 99}]\n"
    )
    assert "unsupported: logicalType 'array'" in _error("- name: v\n  logicalType: array\n")
    with pytest.raises(ContractError, match=r"unsupported: apiVersion 'v2\.2\.2'"):
        parse_contract(contract_text("").replace("v3.1.0", "v2.2.2"))


def test_schema_level_rule_on_missing_columns_and_freshness_on_a_missing_element() -> None:
    assert "duplicateValues refers to missing column(s) ['nope']" in _error(
        "", schema_extra="quality: [{metric: duplicateValues, arguments: {properties: [nope]}, mustBe: 0}]\n"
    )
    assert "freshness element 'gone' is not a column" in _error(
        "", top_extra="slaProperties: [{property: freshness, value: 1, unit: d, element: gone}]\n"
    )
    assert "rowCount is a schema-level metric" in _error(
        "- name: v\n  logicalType: string\n  quality: [{metric: rowCount, mustBeGreaterThan: 0}]\n"
    )


def test_rules_declared_twice_need_an_id() -> None:
    text = _error(
        "- name: v\n  logicalType: string\n  required: true\n  quality: [{metric: nullValues, mustBe: 0}]\n"
    )
    assert "rule 'v.required' is declared twice (give one of them an `id`)" in text
