"""Data contracts: the Open Data Contract Standard v3 subset OnceOnly understands.

Example::

    contract = load_contract(Path("contracts/datasets/household.yaml"))
    contract.id, contract.version          # ("household", "1.0.0")
    contract.table.properties[0].name      # "person_id"

Anything outside the supported subset is rejected with the file, the line and the key —
never ignored — so a department never believes a rule is enforced when it is not. The
supported subset is listed in ``contracts/README.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from onceonly.errors import ContractError

SUPPORTED_API_VERSIONS = ("v3.0.0", "v3.0.1", "v3.0.2", "v3.1.0")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CustomProperty(_Strict):
    property: str
    value: Any = None
    description: str | None = None


class LogicalTypeOptions(_Strict):
    pattern: str | None = None
    minLength: int | None = Field(None, ge=0)
    maxLength: int | None = Field(None, ge=0)
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] | None = None
    format: str | None = None


class Quality(_Strict):
    """One ``quality[]`` entry: an ODCS library metric or a OnceOnly custom check."""

    type: Literal["library", "custom"] = "library"
    name: str | None = None
    description: str | None = None
    dimension: str | None = None
    severity: Literal["error", "warning"] = "error"
    metric: Literal["nullValues", "duplicateValues", "invalidValues"] | None = None
    arguments: dict[str, Any] | None = None
    mustBe: float | None = None
    engine: str | None = None
    implementation: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Quality:
        if self.type == "library":
            if self.metric is None:
                raise ValueError("a library quality rule needs `metric`")
            if self.mustBe != 0:
                raise ValueError("unsupported: library metrics are supported with `mustBe: 0` only")
        else:
            if self.engine != "onceonly":
                raise ValueError(f"unsupported: custom quality engine {self.engine!r} (only 'onceonly')")
            if self.implementation is None:
                raise ValueError("a custom quality rule needs `implementation` (a OnceOnly check name)")
        return self

    @property
    def check_name(self) -> str:
        impl = self.implementation
        return impl if isinstance(impl, str) else str((impl or {}).get("check", ""))

    @property
    def check_args(self) -> dict[str, Any]:
        impl = self.implementation
        return {k: v for k, v in impl.items() if k != "check"} if isinstance(impl, dict) else {}


class Property(_Strict):
    name: str
    logicalType: Literal["string", "date", "timestamp", "number", "integer", "boolean"]
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
    quality: tuple[Quality, ...] = ()
    customProperties: tuple[CustomProperty, ...] = ()


class SchemaObject(_Strict):
    name: str
    physicalName: str | None = None
    physicalType: str | None = None
    logicalType: Literal["object"] = "object"
    businessName: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    properties: tuple[Property, ...]
    customProperties: tuple[CustomProperty, ...] = ()


class Description(_Strict):
    purpose: str | None = None
    usage: str | None = None
    limitations: str | None = None


class SlaProperty(_Strict):
    property: str
    value: Any
    unit: str | None = None
    element: str | None = None
    driver: str | None = None


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
    slaProperties: tuple[SlaProperty, ...] = ()
    customProperties: tuple[CustomProperty, ...] = ()
    contractCreatedTs: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Contract:
        if self.apiVersion not in SUPPORTED_API_VERSIONS:
            raise ValueError(f"unsupported: apiVersion {self.apiVersion!r}")
        if len(self.schema_) != 1:
            raise ValueError("unsupported: a contract must describe exactly one schema object (one dataset)")
        names = [p.name for p in self.table.properties]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"property names repeated: {', '.join(dupes)}")
        return self

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


def load_contract(path: Path) -> Contract:
    """Load and validate one contract file; errors name the file, the line and the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_contract(text, source=str(path))


def parse_contract(text: str, *, source: str = "<contract>") -> Contract:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ContractError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, Mapping):
        raise ContractError(f"{source}: a contract is a YAML mapping")
    try:
        return Contract.model_validate(data)
    except ValidationError as exc:
        raise ContractError(_describe(exc, node, source)) from None


def _describe(exc: ValidationError, node: yaml.Node | None, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        line, key = _locate(node, loc)
        path = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = f"unsupported key {key!r} at {path}"
        else:
            msg = f"{path}: {err['msg'].removeprefix('Value error, ')}"
        lines.append(f"{source}:{line}: {msg}" if line else f"{source}: {msg}")
    return "\n".join(lines)


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
    "LogicalTypeOptions",
    "Property",
    "Quality",
    "SchemaObject",
    "all_contracts",
    "certificate_datasets",
    "contract_by_id",
    "load_contract",
    "parse_contract",
]
