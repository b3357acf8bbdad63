"""Great Expectations 1.x side of a contract: named expectations, suites, and running them.

Example::

    suite = build_suite(compiled)                          # ExpectationSuite named "household@1.0.0"
    outcome = run_suite(compiled, frame)                   # frame: pandas DataFrame with __row
    outcome.unexpected_rows["person_id.gb11643_citizen_id"]  # -> [17, 4211, ...]

Importing this module imports Great Expectations (about 4 s), so only the validator imports
it, lazily. Domain checks use GX's supported subclassing route: each is a subclass of
``ExpectColumnValuesToBeInSet`` over a boolean check column with ``value_set=[True]``, so the
validation result names the check (``expect_column_values_to_pass_gb11643_citizen_id``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.data_context.types.base import ProgressBarsConfig

from contracts.compiler import ROW_INDEX, CompiledContract, Rule
from onceonly.errors import ContractError

if TYPE_CHECKING:
    import pandas as pd

logging.getLogger("great_expectations").setLevel(logging.WARNING)
# This module sets its own logger to INFO when imported, and says "Created temporary directory
# '/tmp/…' for ephemeral docs site" for every context: chatter in an operator's run log.
logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)


def _named_expectation(name: str, doc: str, description: str) -> type[gxe.Expectation]:
    """A named subclass of ExpectColumnValuesToBeInSet over a boolean check column.

    GX 1.x registers an expectation under the snake_case of its class name, so the validation
    result says e.g. ``expect_column_values_to_pass_gb11643_citizen_id``.
    """
    namespace = {
        "__module__": __name__,
        "__doc__": doc,
        "__annotations__": {"value_set": list[Any], "description": str},
        "value_set": [True],
        "description": description,
    }
    return type(name, (gxe.ExpectColumnValuesToBeInSet,), namespace)


# check name → (class name suffix, docstring, Chinese description shown in Data Docs)
_CHECKS = {
    "gb11643_citizen_id": (
        "Gb11643CitizenId",
        "GB 11643: structure, birth date, MOD 11-2 check.",
        "公民身份号码校验 (GB 11643)",
    ),
    "gb32100_uscc": (
        "Gb32100Uscc",
        "GB 32100: character set and MOD 31 check character.",
        "统一社会信用代码校验 (GB 32100)",
    ),
    "region_code": (
        "RegionCode",
        "The township code exists in the shipped district list.",
        "区划代码存在于本区代码表",
    ),
    "mobile_number": ("MobileNumber", "A mainland China mobile number.", "手机号码格式"),
    "not_in_future": ("NotInFuture", "A date that is not after today.", "日期不晚于今天"),
    "not_after": ("NotAfter", "A date not after another column's date.", "日期不晚于另一列"),
    # ODCS v3 library metrics with a threshold, and the freshness SLA.
    "null_values": ("NullValuesMetric", "ODCS nullValues within its threshold.", "空值数量符合阈值"),
    "missing_values": (
        "MissingValuesMetric",
        "ODCS missingValues within its threshold.",
        "缺失值数量符合阈值",
    ),
    "invalid_values": (
        "InvalidValuesMetric",
        "ODCS invalidValues within its threshold.",
        "无效值数量符合阈值",
    ),
    "duplicate_values": (
        "DuplicateValuesMetric",
        "ODCS duplicateValues within its threshold.",
        "重复值数量符合阈值",
    ),
    "row_count": ("RowCountMetric", "ODCS rowCount of the batch within its bounds.", "批次行数符合约定"),
    "freshness": (
        "Freshness",
        "slaProperties freshness: the newest value is recent enough.",
        "数据新鲜度符合约定",
    ),
}
_CHECK_CLASSES: dict[str, type[gxe.Expectation]] = {
    check: _named_expectation(f"ExpectColumnValuesToPass{suffix}", doc, description)
    for check, (suffix, doc, description) in _CHECKS.items()
}
ExpectColumnValuesToConformToContractType = _named_expectation(
    "ExpectColumnValuesToConformToContractType",
    "The source value converts to the contract's logical type (date, number, timestamp...).",
    "值可转换为合同约定的类型",
)


def expectation_for(rule: Rule) -> gxe.Expectation:
    """The one GX expectation that asserts ``rule``; its meta carries the rule's name."""
    meta = {"rule": rule.name, "severity": rule.severity, "description": rule.description}
    if rule.kind == "type":
        cls: type[gxe.Expectation] = ExpectColumnValuesToConformToContractType
    elif rule.kind == "check":
        if rule.check not in _CHECK_CLASSES:
            raise ContractError(f"rule {rule.name}: no Great Expectations class for check {rule.check!r}")
        cls = _CHECK_CLASSES[rule.check]
    else:
        cls = getattr(gxe, rule.expectation)
    return cls(column=rule.gx_column, meta=meta, **rule.kwargs)  # type: ignore[call-arg]


def build_suite(compiled: CompiledContract) -> gx.ExpectationSuite:
    _engine()  # a GX 1.x suite needs an active (here: ephemeral) data context
    suite = gx.ExpectationSuite(name=compiled.ref, meta={"contract": compiled.ref})
    for rule in compiled.rules:
        suite.add_expectation(expectation_for(rule))
    return suite


@dataclass(frozen=True)
class RuleResult:
    rule: str
    success: bool
    element_count: int
    unexpected_count: int
    unexpected_rows: tuple[int, ...]
    expectation_type: str


@dataclass(frozen=True)
class SuiteOutcome:
    success: bool
    results: dict[str, RuleResult]
    statistics: dict[str, Any]

    @property
    def unexpected_rows(self) -> dict[str, tuple[int, ...]]:
        return {name: r.unexpected_rows for name, r in self.results.items()}


class _Engine:
    """One ephemeral GX context per process, one suite and batch definition per contract."""

    RESULT_FORMAT: ClassVar[dict[str, Any]] = {
        "result_format": "COMPLETE",
        "unexpected_index_column_names": [ROW_INDEX],
        "return_unexpected_index_query": False,
        "partial_unexpected_count": 0,
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.source = self.context.data_sources.add_pandas("onceonly")
        self._prepared: dict[str, tuple[Any, Any]] = {}

    def _prepare(self, compiled: CompiledContract) -> tuple[Any, Any]:
        # Keyed by content, not id@version: an edited contract that kept its version (while it
        # is being written, or in tests) must not be validated with the previous suite.
        key = hashlib.sha256(compiled.contract.model_dump_json().encode()).hexdigest()[:16]
        if key not in self._prepared:
            name = f"{compiled.ref}#{key}"
            asset = self.source.add_dataframe_asset(name=name)
            batch_definition = asset.add_batch_definition_whole_dataframe("batch")
            suite = build_suite(compiled)
            suite.name = name
            suite = self.context.suites.add(suite)
            self._prepared[key] = (batch_definition, suite)
        return self._prepared[key]

    def run(self, compiled: CompiledContract, frame: pd.DataFrame) -> SuiteOutcome:
        with self._lock:
            batch_definition, suite = self._prepare(compiled)  # may change expectations: not memoised
            batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
            with _configurations_built_once(), _metric_ids_memoised():
                result = batch.validate(suite, result_format=self.RESULT_FORMAT)
        results: dict[str, RuleResult] = {}
        for r in result.results:
            name = r.expectation_config.meta["rule"]
            if r.exception_info.get("raised_exception"):
                # An expectation that crashed has checked nothing: refuse rather than pass rows.
                raise ContractError(
                    f"contract {compiled.ref}: rule {name} could not be evaluated: "
                    f"{r.exception_info.get('exception_message')}"
                )
            rows = tuple(int(d[ROW_INDEX]) for d in r.result.get("unexpected_index_list") or ())
            results[name] = RuleResult(
                rule=name,
                success=bool(r.success),
                element_count=int(r.result.get("element_count", len(frame))),
                unexpected_count=int(r.result.get("unexpected_count", len(rows))),
                unexpected_rows=rows,
                expectation_type=r.expectation_config.type,
            )
        missing = {rule.name for rule in compiled.rules} - set(results)
        if missing:
            raise ContractError(f"contract {compiled.ref}: GX returned no result for {sorted(missing)}")
        return SuiteOutcome(success=bool(result.success), results=results, statistics=dict(result.statistics))


@contextlib.contextmanager
def _configurations_built_once() -> Iterator[None]:
    """While one suite runs on this thread, build each expectation's configuration once.

    GX 1.x derives ``Expectation.configuration`` afresh (a pydantic ``dict()`` plus a new
    ``ExpectationConfiguration``) on every read, and reads it about a hundred times per
    expectation while building the metric graph: close to half of a 10,000-row batch's
    validation, all of it the same answer. Here each expectation *instance* read during the
    run returns the configuration it built on first read. Nothing changes an expectation while
    a prepared suite runs (the suite is built and added to the context before, outside this
    scope); the memo keeps the instances alive (so no ``id`` is reused), is dropped when the
    run ends, and other threads see GX unchanged.
    """
    from great_expectations.expectations.expectation import Expectation

    original = Expectation.__dict__["configuration"]
    build = original.fget
    owner = threading.get_ident()
    memo: dict[int, tuple[Any, Any]] = {}

    def configuration(self: Expectation) -> Any:
        if threading.get_ident() != owner:
            return build(self)
        hit = memo.get(id(self))
        if hit is None or hit[0] is not self:
            hit = memo[id(self)] = (self, build(self))
        return hit[1]

    Expectation.configuration = property(configuration, doc=original.__doc__)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Expectation.configuration = original  # type: ignore[method-assign]
        memo.clear()


_SCALARS = (str, int, bool, type(None))


@contextlib.contextmanager
def _metric_ids_memoised() -> Iterator[None]:
    """While one suite runs on this thread, compute each distinct metric id once.

    GX names every metric of its dependency graph (about 1,700 for the household suite) by
    JSON-serialising and hashing its domain and value kwargs (``IDDict.to_id``), the same few
    dozen dicts over and over: about a third of the graph building. Dicts whose values are
    all plain scalars are looked up by their content (the id is a function of it); any other
    dict (lists, numbers GX converts) is computed by GX as before.
    """
    from great_expectations.core.id_dict import IDDict

    original = IDDict.__dict__["to_id"]
    owner = threading.get_ident()
    memo: dict[tuple[Any, ...], Any] = {}

    def to_id(self: IDDict, id_keys: Any = None, id_ignore_keys: Any = None) -> Any:
        if threading.get_ident() != owner or not all(type(v) in _SCALARS for v in self.values()):
            return original(self, id_keys, id_ignore_keys)
        key = (
            tuple(sorted(self.items())),
            None if id_keys is None else frozenset(id_keys),
            None if id_ignore_keys is None else frozenset(id_ignore_keys),
            type(self),
        )
        if key not in memo:
            memo[key] = original(self, id_keys, id_ignore_keys)
        return memo[key]

    IDDict.to_id = to_id  # type: ignore[method-assign]
    try:
        yield
    finally:
        IDDict.to_id = original  # type: ignore[method-assign]
        memo.clear()


@functools.cache
def _engine() -> _Engine:
    return _Engine()


def run_suite(compiled: CompiledContract, frame: pd.DataFrame) -> SuiteOutcome:
    """Validate one batch (a DataFrame with a ``__row`` column) against the contract's suite."""
    return _engine().run(compiled, frame)


__all__ = [
    "ExpectColumnValuesToConformToContractType",
    "RuleResult",
    "SuiteOutcome",
    "build_suite",
    "expectation_for",
    "run_suite",
]
