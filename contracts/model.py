"""Data contracts: the Open Data Contract Standard v3 subset OnceOnly understands.

Example::

    contract = load_contract(Path("contracts/datasets/household.yaml"))
    contract.id, contract.version          # ("household", "1.0.0")
    contract.table.properties[0].name      # "person_id"

Anything outside the supported subset is rejected with the file, the line and the key —
never ignored — so a department never believes a rule is enforced when it is not. The
supported subset is listed in ``contracts/SUPPORTED.md``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from onceonly.errors import ContractError

SUPPORTED_API_VERSIONS = ("v3.0.0", "v3.0.1", "v3.0.2", "v3.1.0")
LOGICAL_TYPES = ("string", "date", "timestamp", "number", "integer", "boolean")
LIBRARY_METRICS = ("nullValues", "missingValues", "invalidValues", "duplicateValues", "rowCount")
# ODCS v3.1 DataQualityOperators: exactly one per library rule.
OPERATORS = (
    "mustBe",
    "mustNotBe",
    "mustBeGreaterThan",
    "mustBeGreaterOrEqualTo",
    "mustBeLessThan",
    "mustBeLessOrEqualTo",
    "mustBeBetween",
    "mustNotBeBetween",
)
# customProperties OnceOnly reads, by where they may appear (anything else is rejected).
SCHEMA_CUSTOM_PROPERTIES = (
    "subjectColumns",
    "townshipColumn",
    "sourceTimezone",
    "maxErrorRate",
    "minRowsForErrorRate",
    "certificate",
)
PROPERTY_CUSTOM_PROPERTIES = ("severity",)
# slaProperties: `freshness` is enforced (a warning rule); the others are published metadata.
ENFORCED_SLA = ("freshness",)
INFORMATIONAL_SLA = (
    "latency",
    "frequency",
    "retention",
    "generalAvailability",
    "endOfSupport",
    "endOfLife",
    "timeOfAvailability",
)
# Keys of ODCS v3 that are valid ODCS but that OnceOnly does not implement: named in the error.
_UNSUPPORTED_FEATURES = {
    "servers": "servers (a connector registration says where the data is)",
    "price": "price",
    "roles": "roles (access is granted per township by OnceOnly)",
    "relationships": "relationships",
    "items": "array items",
    "encryptedName": "encryptedName",
    "timezone": "timestamp timezone options (customProperties sourceTimezone says the source's zone)",
    "defaultTimezone": "timestamp timezone options (customProperties sourceTimezone says the source's zone)",
    "schedule": "per-rule schedules (every rule runs on every pull)",
    "scheduler": "per-rule schedules (every rule runs on every pull)",
    "method": "quality method",
    "query": "sql quality rules",
    "multipleOf": "logicalTypeOptions.multipleOf",
}

Severity = Literal["error", "warning"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CustomProperty(_Strict):
    id: str | None = None
    property: str
    value: Any = None
    description: str | None = None


class LogicalTypeOptions(_Strict):
    """ODCS v3.1 ``logicalTypeOptions``: string lengths and pattern, number bounds."""

    pattern: str | None = None
    minLength: int | None = Field(None, ge=0)
    maxLength: int | None = Field(None, ge=0)
    minimum: float | str | None = None
    maximum: float | str | None = None
    exclusiveMinimum: float | str | None = None
    exclusiveMaximum: float | str | None = None
    format: str | None = None
    enum: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> LogicalTypeOptions:
        if self.enum is not None:
            raise ValueError(
                "unsupported: logicalTypeOptions.enum is not part of ODCS v3; "
                "write a quality rule `metric: invalidValues` with `arguments.validValues`"
            )
        if self.format is not None:
            raise ValueError("unsupported: logicalTypeOptions.format")
        if self.minLength is not None and self.maxLength is not None and self.minLength > self.maxLength:
            raise ValueError(f"minLength {self.minLength} > maxLength {self.maxLength}")
        low = [v for v in (self.minimum, self.exclusiveMinimum) if v is not None]
        high = [v for v in (self.maximum, self.exclusiveMaximum) if v is not None]
        if any(isinstance(v, str) for v in low + high):
            raise ValueError("unsupported: minimum/maximum bounds on dates or timestamps (numbers only)")
        if self.minimum is not None and self.exclusiveMinimum is not None:
            raise ValueError("give minimum or exclusiveMinimum, not both")
        if self.maximum is not None and self.exclusiveMaximum is not None:
            raise ValueError("give maximum or exclusiveMaximum, not both")
        if low and high and float(low[0]) > float(high[0]):
            raise ValueError(f"the lower bound {low[0]} > the upper bound {high[0]}")
        return self


class Quality(_Strict):
    """One ``quality[]`` entry: an ODCS library metric or a OnceOnly custom check."""

    id: str | None = None
    type: str = "library"
    name: str | None = None
    description: str | None = None
    dimension: str | None = None
    businessImpact: str | None = None
    tags: tuple[str, ...] = ()
    severity: str = "error"
    metric: str | None = None
    rule: str | None = None  # ODCS v3.0 spelling of `metric`
    arguments: dict[str, Any] | None = None
    unit: str | None = None
    mustBe: float | None = None
    mustNotBe: float | None = None
    mustBeGreaterThan: float | None = None
    mustBeGreaterOrEqualTo: float | None = None
    mustBeLessThan: float | None = None
    mustBeLessOrEqualTo: float | None = None
    mustBeBetween: tuple[float, float] | None = None
    mustNotBeBetween: tuple[float, float] | None = None
    engine: str | None = None
    implementation: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Quality:
        if self.severity not in ("error", "warning"):
            raise ValueError(
                f"unsupported: severity {self.severity!r} (error quarantines the row, warning reports it)"
            )
        if self.type in ("text", "sql"):
            raise ValueError(f"unsupported: quality type {self.type!r} (only library and custom are checked)")
        if self.type not in ("library", "custom"):
            raise ValueError(f"unsupported: quality type {self.type!r}")
        given = [op for op in OPERATORS if getattr(self, op) is not None]
        if self.type == "library":
            metric = self.metric or self.rule
            if metric is None:
                raise ValueError("a library quality rule needs `metric`")
            if metric not in LIBRARY_METRICS:
                raise ValueError(
                    f"unsupported: library metric {metric!r} (known: {', '.join(LIBRARY_METRICS)})"
                )
            if len(given) != 1:
                raise ValueError(
                    f"a library rule needs exactly one of {', '.join(OPERATORS)}; got {given or 'none'}"
                )
            if self.unit not in (None, "rows", "percent"):
                raise ValueError(f"unsupported: unit {self.unit!r} (rows or percent)")
            if metric == "rowCount" and self.unit == "percent":
                raise ValueError("rowCount is counted in rows, not percent")
            for op in ("mustBeBetween", "mustNotBeBetween"):
                pair = getattr(self, op)
                if pair is not None and pair[0] > pair[1]:
                    raise ValueError(f"{op}: the smaller number comes first, got {list(pair)}")
            allowed = {
                "nullValues": set(),
                "missingValues": {"missingValues"},
                "invalidValues": {"validValues", "pattern"},
                "duplicateValues": {"properties"},
                "rowCount": set(),
            }[metric]
            extra = sorted(set(self.arguments or {}) - allowed)
            if extra:
                raise ValueError(
                    f"unsupported: arguments {extra} for {metric} (it takes {sorted(allowed) or 'none'})"
                )
            args = self.arguments or {}
            if metric == "invalidValues" and not ({"validValues", "pattern"} & set(args)):
                raise ValueError("invalidValues needs arguments.validValues or arguments.pattern")
            if metric == "missingValues" and not isinstance(args.get("missingValues"), list):
                raise ValueError("missingValues needs arguments.missingValues: a list of values")
            if "pattern" in args:
                try:
                    re.compile(str(args["pattern"]))
                except re.error as exc:
                    raise ValueError(f"arguments.pattern is not a valid regex: {exc}") from None
        else:
            if self.engine != "onceonly":
                raise ValueError(f"unsupported: custom quality engine {self.engine!r} (only 'onceonly')")
            if self.implementation is None:
                raise ValueError("a custom quality rule needs `implementation` (a OnceOnly check name)")
            if given or self.metric or self.unit:
                raise ValueError("a custom onceonly rule takes no metric, unit or operator")
        return self

    @property
    def metric_name(self) -> str:
        return self.metric or self.rule or ""

    @property
    def operator(self) -> tuple[str, Any]:
        """The one ODCS operator of a library rule and its value."""
        for op in OPERATORS:
            value = getattr(self, op)
            if value is not None:
                return op, (list(value) if isinstance(value, tuple) else value)
        raise ValueError("no operator")  # pragma: no cover - validated above

    @property
    def check_name(self) -> str:
        impl = self.implementation
        return impl if isinstance(impl, str) else str((impl or {}).get("check", ""))

    @property
    def check_args(self) -> dict[str, Any]:
        impl = self.implementation
        return {k: v for k, v in impl.items() if k != "check"} if isinstance(impl, dict) else {}


def _reject_unsupported_custom(items: Sequence[CustomProperty], allowed: Sequence[str], where: str) -> None:
    for cp in items:
        if cp.property not in allowed:
            known = ", ".join(allowed) or "none"
            raise ValueError(
                f"unsupported: customProperties {cp.property!r} {where} (OnceOnly reads: {known})"
            )


class Property(_Strict):
    id: str | None = None
    name: str
    logicalType: str
    physicalType: str | None = None
    physicalName: str | None = None
    businessName: str | None = None
    description: str | None = None
    required: bool = False
    unique: bool = False
    primaryKey: bool = False
    primaryKeyPosition: int = -1
    classification: str | None = None
    criticalDataElement: bool = False
    logicalTypeOptions: LogicalTypeOptions | None = None
    examples: tuple[Any, ...] | None = None
    tags: tuple[str, ...] = ()
    authoritativeDefinitions: tuple[dict[str, Any], ...] = ()
    # Kept as documentation, not interpreted: how the source partitions or derives the column.
    partitioned: bool = False
    partitionKeyPosition: int = -1
    transformSourceObjects: tuple[str, ...] = ()
    transformLogic: str | None = None
    transformDescription: str | None = None
    quality: tuple[Quality, ...] = ()
    customProperties: tuple[CustomProperty, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Property:
        if self.logicalType not in LOGICAL_TYPES:
            raise ValueError(
                f"unsupported: logicalType {self.logicalType!r} (supported: {', '.join(LOGICAL_TYPES)})"
            )
        _reject_unsupported_custom(self.customProperties, PROPERTY_CUSTOM_PROPERTIES, "on a property")
        severity = self.custom("severity")
        if severity is not None and (
            not isinstance(severity, dict) or not all(v in ("error", "warning") for v in severity.values())
        ):
            raise ValueError("customProperties severity maps rule kinds to error or warning")
        for q in self.quality:
            if q.metric_name == "rowCount":
                raise ValueError("rowCount is a schema-level metric, not a property's")
            if q.metric_name == "duplicateValues" and q.arguments and "properties" in q.arguments:
                raise ValueError("arguments.properties of duplicateValues belongs on a schema-level rule")
        return self

    def custom(self, key: str, default: Any = None) -> Any:
        for cp in self.customProperties:
            if cp.property == key:
                return cp.value
        return default


class SchemaObject(_Strict):
    id: str | None = None
    name: str
    physicalName: str | None = None
    physicalType: str | None = None
    logicalType: Literal["object"] = "object"
    businessName: str | None = None
    description: str | None = None
    dataGranularityDescription: str | None = None
    tags: tuple[str, ...] = ()
    authoritativeDefinitions: tuple[dict[str, Any], ...] = ()
    properties: tuple[Property, ...]
    quality: tuple[Quality, ...] = ()
    customProperties: tuple[CustomProperty, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> SchemaObject:
        _reject_unsupported_custom(self.customProperties, SCHEMA_CUSTOM_PROPERTIES, "on the schema object")
        for q in self.quality:
            if q.type != "library" or q.metric_name not in ("rowCount", "duplicateValues"):
                raise ValueError(
                    "a schema-level quality rule is rowCount or duplicateValues (with arguments.properties)"
                )
            if q.metric_name == "duplicateValues" and not (q.arguments or {}).get("properties"):
                raise ValueError("a schema-level duplicateValues rule needs arguments.properties: [columns]")
        return self


class Description(_Strict):
    purpose: str | None = None
    usage: str | None = None
    limitations: str | None = None
    authoritativeDefinitions: tuple[dict[str, Any], ...] = ()
    customProperties: tuple[CustomProperty, ...] = ()


class SlaProperty(_Strict):
    id: str | None = None
    property: str
    value: Any
    valueExt: Any = None
    unit: str | None = None
    element: str | None = None
    driver: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SlaProperty:
        if self.property not in ENFORCED_SLA + INFORMATIONAL_SLA:
            known = ", ".join(ENFORCED_SLA + INFORMATIONAL_SLA)
            raise ValueError(f"unsupported: slaProperties property {self.property!r} (known: {known})")
        if self.property == "freshness":
            if not isinstance(self.value, int | float) or isinstance(self.value, bool) or self.value <= 0:
                raise ValueError("freshness value is a positive number")
            if self.unit not in FRESHNESS_UNITS:
                raise ValueError(
                    f"unsupported: freshness unit {self.unit!r} (use one of {', '.join(FRESHNESS_UNITS)})"
                )
        return self


# ISO 8601 style units ODCS uses for SLA durations, in seconds.
FRESHNESS_UNITS = {"d": 86400, "day": 86400, "days": 86400, "h": 3600, "hour": 3600, "hours": 3600}


class Contract(_Strict):
    apiVersion: str
    kind: Literal["DataContract"]
    id: str
    version: str
    status: str
    name: str | None = None
    domain: str | None = None
    dataProduct: str | None = None
    tenant: str | None = None
    tags: tuple[str, ...] = ()
    description: Description | None = None
    schema_: tuple[SchemaObject, ...] = Field(alias="schema")
    slaDefaultElement: str | None = None
    slaProperties: tuple[SlaProperty, ...] = ()
    team: Any = None
    support: Any = None
    authoritativeDefinitions: tuple[dict[str, Any], ...] = ()
    customProperties: tuple[CustomProperty, ...] = ()
    contractCreatedTs: str | None = None

    _source: str = PrivateAttr(default="<contract>")
    _node: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> Contract:
        if self.apiVersion not in SUPPORTED_API_VERSIONS:
            known = ", ".join(SUPPORTED_API_VERSIONS)
            raise ValueError(f"unsupported: apiVersion {self.apiVersion!r} (supported: {known})")
        if not _SEMVER_RE.fullmatch(self.version):
            raise ValueError(f"version {self.version!r} is not MAJOR.MINOR.PATCH")
        if len(self.schema_) != 1:
            raise ValueError("unsupported: a contract must describe exactly one schema object (one dataset)")
        _reject_unsupported_custom(self.customProperties, (), "at the top level (put them on schema[0])")
        names = [p.name for p in self.table.properties]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"property names repeated: {', '.join(dupes)}")
        return self

    @property
    def source(self) -> str:
        """The file the contract was loaded from (``<contract>`` when parsed from text)."""
        return self._source

    def where(self, *path: str | int) -> str:
        """``file:line`` of the YAML node at ``path`` (``"schema", 0, "properties", 2``), or the file."""
        line, _ = _locate(self._node, path)
        return f"{self._source}:{line}" if line else self._source

    def where_property(self, name: str, *path: str | int) -> str:
        index = next((i for i, p in enumerate(self.table.properties) if p.name == name), None)
        if index is None:
            return self.where("schema", 0)
        return self.where("schema", 0, "properties", index, *path)

    @property
    def table(self) -> SchemaObject:
        return self.schema_[0]

    @property
    def ref(self) -> str:
        """``id@version``, as recorded on every batch and certificate."""
        return f"{self.id}@{self.version}"

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    def custom(self, key: str, default: Any = None) -> Any:
        """A OnceOnly custom property of the schema object (``customProperties``)."""
        for cp in self.table.customProperties:
            if cp.property == key:
                return cp.value
        return default

    def column(self, name: str) -> Property:
        for p in self.table.properties:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def primary_key(self) -> tuple[str, ...]:
        keys = [p for p in self.table.properties if p.primaryKey]
        keys.sort(key=lambda p: p.primaryKeyPosition)
        return tuple(p.name for p in keys)


_SEMVER_RE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:[-+][0-9A-Za-z.+-]+)?")


def load_contract(path: Path) -> Contract:
    """Load and validate one contract file; errors name the file, the line and the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_contract(text, source=str(path))


def parse_contract(text: str, *, source: str = "<contract>") -> Contract:
    from onceonly.yamlfile import YamlProblem, read_yaml

    try:
        data, node = read_yaml(text, source)
    except YamlProblem as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        raise ContractError(f"{where}: {exc.problem}") from None
    if not isinstance(data, Mapping):
        raise ContractError(f"{source}: a contract is a YAML mapping")
    try:
        contract = Contract.model_validate(data)
    except ValidationError as exc:
        raise ContractError(_describe(exc, node, source)) from None
    contract._source = source
    contract._node = node
    return contract


_MAX_PROBLEMS = 20


def _describe(exc: ValidationError, node: yaml.Node | None, source: str) -> str:
    lines = []
    errors = exc.errors()
    for err in errors[:_MAX_PROBLEMS]:
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        line, key = _locate(node, loc)
        path = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = ".".join(str(p) for p in loc[:-1]) or "top level"
            feature = _UNSUPPORTED_FEATURES.get(key)
            msg = (
                f"unsupported: {feature} (key {key!r} at {parent})"
                if feature
                else f"unsupported: key {key!r} at {parent}"
            )
        else:
            msg = f"{path}: {err['msg'].removeprefix('Value error, ')}"
        lines.append(f"{source}:{line}: {msg}" if line else f"{source}: {msg}")
    if len(errors) > _MAX_PROBLEMS:
        lines.append(f"{source}: ... and {len(errors) - _MAX_PROBLEMS} more problem(s)")
    return "\n".join(lines)


def yaml_line(node: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """The 1-based line of the deepest node of a composed YAML document (``yaml.compose``) on
    ``loc`` (keys and list indices, as pydantic reports them); None without a document."""
    return _locate(node, loc)[0]


def _locate(node: yaml.Node | None, loc: Sequence[Any]) -> tuple[int | None, str]:
    """The 1-based line of the deepest YAML node on ``loc``, and the last key."""
    line = node.start_mark.line + 1 if node is not None else None
    key = ""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = None
            for k, v in node.value:
                if k.value == ("schema" if part == "schema_" else part):
                    found = (k, v)
                    break
            if found is None:
                break
            key = str(part)
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line, key


@functools.cache
def _contracts_in(directory: Path) -> dict[str, Contract]:
    found: dict[str, Contract] = {}
    for path in sorted(directory.glob("*.yaml")):
        contract = load_contract(path)
        if contract.id in found:
            raise ContractError(f"{path}: contract id {contract.id!r} is defined twice")
        found[contract.id] = contract
    return found


def all_contracts(directory: Path) -> dict[str, Contract]:
    """Every contract in ``directory`` by id (loaded once per process)."""
    return dict(_contracts_in(directory.resolve()))


def certificate_datasets(directory: Path) -> dict[str, str]:
    """Certificate type code → id of the dataset (contract) whose records issue it."""
    out: dict[str, str] = {}
    for contract in _contracts_in(directory.resolve()).values():
        spec = contract.custom("certificate")
        if isinstance(spec, dict) and "typeCode" in spec:
            out[str(spec["typeCode"])] = contract.id
    return out


def contract_by_id(directory: Path, contract_id: str) -> Contract:
    contracts = _contracts_in(directory.resolve())
    if contract_id not in contracts:
        known = ", ".join(sorted(contracts)) or "none"
        raise ContractError(f"no contract with id {contract_id!r} in {directory} (known: {known})")
    return contracts[contract_id]


__all__ = [
    "SUPPORTED_API_VERSIONS",
    "Contract",
    "CustomProperty",
    "Description",
    "LogicalTypeOptions",
    "Property",
    "Quality",
    "SchemaObject",
    "SlaProperty",
    "all_contracts",
    "certificate_datasets",
    "contract_by_id",
    "load_contract",
    "parse_contract",
    "yaml_line",
]
