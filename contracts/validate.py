"""Validate one batch against its contract: accepted rows, quarantined rows, and why.

Example::

    validator = Validator(compiled, CheckContext(today=date.today(), region_codes=codes))
    v = validator.validate(raw_table, connector="gongan-household")
    v.accepted          # pa.Table in the contract's schema; only rows passing every error rule
    v.quarantined       # the raw rows that failed (as text), with the rules they broke
    v.failures          # one Failure per (row, rule), the value masked if personal
    assert v.pulled == v.accepted.num_rows + v.quarantined.num_rows

Great Expectations is the gate: the rows it reports unexpected for an ``error`` rule are the
rows quarantined. Domain checks are computed vectorised into check columns that GX asserts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contracts.checks import DOMAIN_CHECKS, CheckContext
from contracts.compiler import CHECK_PREFIX, ROW_INDEX, TYPE_CHECK_PREFIX, CompiledContract, Rule
from contracts.conform import conform
from onceonly.errors import ContractError
from onceonly.privacy import mask_citizen_id, mask_name, mask_phone

RULES_COLUMN = "__rules"
EXAMPLES_PER_RULE = 3


@dataclass(frozen=True)
class Failure:
    row: int
    rule: str
    column: str
    severity: str
    value_masked: str | None
    record_key: str | None
    subjects: tuple[str, ...]


@dataclass(frozen=True)
class RuleOutcome:
    rule: str
    column: str
    severity: str
    expectation_type: str
    checked: int
    failed: int
    examples: tuple[str, ...]

    @property
    def share(self) -> float:
        return self.failed / self.checked if self.checked else 0.0


@dataclass
class RuleTally:
    """One rule's outcomes summed over the batches of a run (for reports and Data Docs)."""

    rule: str
    severity: str
    checked: int = 0
    failed: int = 0
    examples: tuple[str, ...] = ()

    def add(self, outcome: RuleOutcome) -> None:
        self.checked += outcome.checked
        self.failed += outcome.failed
        self.examples = (self.examples + tuple(e for e in outcome.examples if e))[:EXAMPLES_PER_RULE]

    @property
    def share(self) -> float:
        return self.failed / self.checked if self.checked else 0.0


@dataclass(frozen=True)
class Validation:
    accepted: pa.Table
    quarantined: pa.Table
    failures: tuple[Failure, ...]
    outcomes: tuple[RuleOutcome, ...]
    gx_success: bool
    extra_columns: tuple[str, ...]

    @property
    def pulled(self) -> int:
        return self.accepted.num_rows + self.quarantined.num_rows

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.failures if f.severity == "warning")

    @property
    def error_rate(self) -> float:
        return self.quarantined.num_rows / self.pulled if self.pulled else 0.0

    def breaches(self, compiled: CompiledContract) -> bool:
        """The error-rate gate: does this batch break its contract beyond ``maxErrorRate``?

        The share is judged only on batches of at least ``minRowsForErrorRate`` rows: one bad
        row in a batch of one is 100 % and says nothing about the source.
        """
        if self.pulled < compiled.min_rows_for_error_rate:
            return False
        return self.error_rate > compiled.max_error_rate

    def failed_rules(self) -> dict[str, int]:
        """Rows failed per ``error`` rule that failed any (counts only: no values)."""
        return {o.rule: o.failed for o in self.outcomes if o.failed and o.severity == "error"}


class Validator:
    def __init__(self, compiled: CompiledContract, context: CheckContext) -> None:
        self.compiled = compiled
        self.context = context

    def validate(self, raw: pa.Table | pa.RecordBatch, *, connector: str) -> Validation:
        from contracts.expectations import run_suite  # Great Expectations is imported lazily

        _skip_batch_fingerprint()

        raw_table = raw if isinstance(raw, pa.Table) else pa.Table.from_batches([raw])
        n = raw_table.num_rows
        conformed = conform(raw_table, self.compiled, connector=connector)
        frame = self._frame(conformed.table, conformed.type_ok)
        outcome = run_suite(self.compiled, frame)

        unexpected = {
            r.name: np.asarray(outcome.results[r.name].unexpected_rows, dtype=np.int64)
            for r in self.compiled.rules
        }
        # Only the failing rows are turned into Python values (for masking and the report).
        failing = np.unique(np.concatenate([np.empty(0, np.int64), *unexpected.values()]))
        failing_rows = raw_table.take(failing)
        text = _as_text(failing_rows, self.compiled.arrow_schema.names)
        keys: list[str | None] = self.compiled.record_keys(
            {c: pa.array(text[c], pa.string()) for c in self.compiled.record_key}
        ).to_pylist()
        at = {int(row): k for k, row in enumerate(failing.tolist())}
        bad = np.zeros(n, dtype=bool)
        failures: list[Failure] = []
        outcomes: list[RuleOutcome] = []
        for rule in self.compiled.rules:
            result = outcome.results[rule.name]
            rows = unexpected[rule.name]
            if rule.severity == "error":
                bad[rows] = True
            values = text[rule.column]
            masked = [self._masked(rule, values[at[i]]) for i in rows.tolist()]
            failures.extend(
                Failure(
                    row=i,
                    rule=rule.name,
                    column=rule.column,
                    severity=rule.severity,
                    value_masked=m,
                    record_key=keys[at[i]],
                    subjects=self._subjects(text, at[i]),
                )
                for i, m in zip(rows.tolist(), masked, strict=True)
            )
            outcomes.append(
                RuleOutcome(
                    rule=rule.name,
                    column=rule.column,
                    severity=rule.severity,
                    expectation_type=result.expectation_type,
                    checked=n,
                    failed=len(rows),
                    examples=tuple(str(m) for m in masked[:EXAMPLES_PER_RULE]),
                )
            )
        mask = pa.array(bad)
        accepted = conformed.table.filter(pc.invert(mask))
        quarantined = _quarantine_table(raw_table, mask, failures)
        if accepted.num_rows + quarantined.num_rows != n:  # the books must balance, per batch
            raise ContractError(
                f"contract {self.compiled.ref}: pulled {n} != accepted {accepted.num_rows} "
                f"+ quarantined {quarantined.num_rows}"
            )
        return Validation(
            accepted=accepted,
            quarantined=quarantined,
            failures=tuple(failures),
            outcomes=tuple(outcomes),
            gx_success=outcome.success,
            extra_columns=conformed.extra_columns,
        )

    def _frame(self, table: pa.Table, type_ok: dict[str, pa.BooleanArray]) -> Any:
        columns: dict[str, pa.Array] = {}
        for rule in self.compiled.rules:
            if rule.kind == "type":
                columns[TYPE_CHECK_PREFIX + rule.column] = type_ok[rule.column]
            elif rule.kind == "check":
                check = DOMAIN_CHECKS[rule.check or ""]
                passed = check.evaluate(table, rule.column, rule.check_args, self.context)
                columns[CHECK_PREFIX + rule.name] = passed
            elif rule.column not in columns:
                column = table.column(rule.column)
                if pa.types.is_decimal(column.type):
                    column = column.cast(pa.float64())  # GX compares numbers, not Decimals
                columns[rule.column] = column
        frame = pa.table(columns).to_pandas()
        # The row number as the frame's named index: GX then reports it for each unexpected
        # row without looking a column up by name per row (its named-column path did, for
        # about a third of the suite's time on a batch with 1 % bad rows).
        frame.index.name = ROW_INDEX
        return frame

    def _masked(self, rule: Rule, value: str | None) -> str | None:
        # The column's classification decides, whatever rule reported it: a schema-level rule
        # (duplicateValues over husband_id, wife_id, ...) reports the value of its first column.
        if value is None or not (rule.personal or rule.column in self.compiled.personal_columns):
            return value
        if self._is_citizen_id_column(rule.column):
            return mask_citizen_id(value)
        if rule.check == "mobile_number":
            return mask_phone(value)
        return mask_name(value)

    def _is_citizen_id_column(self, column: str) -> bool:
        return any(r.column == column and r.check == "gb11643_citizen_id" for r in self.compiled.rules)

    def _subjects(self, text: dict[str, list[str | None]], i: int) -> tuple[str, ...]:
        return tuple(v for c in self.compiled.subject_columns if (v := text[c][i]))


def _skip_batch_fingerprint() -> None:
    """Stop GX hashing every batch's DataFrame into a ``pandas_data_fingerprint`` marker.

    The fingerprint is only a batch marker, which we neither store nor read; computing it
    (``pandas.util.hash_pandas_object`` over every cell) cost about a fifth of a batch's
    validation. GX computes it below ``HASH_THRESHOLD`` bytes of frame memory.
    """
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0


def _as_text(table: pa.Table, names: list[str]) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for name in names:
        column = table.column(name)
        out[name] = (column if pa.types.is_string(column.type) else column.cast(pa.string())).to_pylist()
    return out


def _quarantine_table(raw: pa.Table, mask: pa.BooleanArray, failures: list[Failure]) -> pa.Table:
    """The raw rows that failed, every column as text, plus the error rules each broke."""
    rows = raw.filter(mask)
    text = pa.table({name: rows.column(name).cast(pa.string()) for name in rows.column_names})
    broken: dict[int, list[str]] = {}
    for f in failures:
        if f.severity == "error":
            broken.setdefault(f.row, []).append(f.rule)
    positions = np.flatnonzero(np.asarray(mask))
    rules = pa.array([broken.get(int(i), []) for i in positions], pa.list_(pa.string()))
    return text.append_column(RULES_COLUMN, rules)


__all__ = ["RULES_COLUMN", "Failure", "RuleOutcome", "RuleTally", "Validation", "Validator"]
