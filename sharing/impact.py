"""What a contract change touches downstream, and what it would break.

Example::

    report = contract_impact(
        old=Path("/tmp/prev/contracts/datasets"),        # the contracts as they were
        new=Path("contracts/datasets"),                  # as proposed
        consumers=Consumers.of_tree(Path(".")),          # registrations, matters, rule files
    )
    report.breaks              # True: `onceonly contracts impact OLD NEW` exits 1
    report.datasets[0].matters # [Affected("pension-enrolment", breaks=False, why="…"), …]

A changed contract is followed to everything that consumes it, as the proposed tree has them:

- the **connectors** registered for its dataset — broken by a removed contract, by a breaking
  change (``contracts.diff``) without a new major version, and by a new major version the
  registration's pin neither names nor accepts (the flow stops such a connector:
  ``contracts.pinning``);
- the **certificate types** it issues — a type no contract issues any more is broken;
- the **matters** whose materials ask for those types, the relatives found through them
  (``relatives`` in the matters catalogue: a field removed from the certificate breaks them), and
  the **一件事 bundles** holding those matters;
- the **rule files** (benefit rules, reminder windows …) that name those types, and the fields of
  them they read;
- the **townships** whose residents hold those certificates: counted in the catalog when one is
  given, otherwise every township of the district (nothing tells them apart without data).

A consumer is *affected* by any change and *broken* when, as proposed, it would fail or
silently stop answering. ``onceonly contracts impact`` exits 1 when anything is broken; CI runs it
against the previous commit's contracts.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connectors.registration import Registration, load_registrations
from contracts.diff import Change, diff_contracts
from contracts.model import Contract, load_contract
from onceonly.errors import ConfigurationError
from sharing.matters import Catalogue, load_matters

# The rule files that name certificate types, relative to the tree: benefit rules (免申即享)
# and the expiry reminders' windows. Each is read as plain YAML: any string equal to a
# certificate type code is a reference, and a mapping holding it that lists ``fields`` or names
# a ``field`` reads those fields of that type.
RULE_FILES = ("sharing/benefits/*.yaml", "sharing/reminders.yaml")
_TYPE_CODE_RE = re.compile(r"[0-9A-Z]{18}[0-9]{3}")


@dataclass(frozen=True)
class Affected:
    name: str
    breaks: bool
    why: str

    def __str__(self) -> str:
        return f"{self.name}  {'BREAKS: ' if self.breaks else ''}{self.why}"


@dataclass(frozen=True)
class RuleReference:
    """A rule file naming a certificate type (and the fields of it the rule reads)."""

    file: str
    rule: str
    type_code: str
    fields: tuple[str, ...]


@dataclass
class DatasetImpact:
    dataset: str
    before: str | None  # the contract's version, None when it is new
    after: str | None  # None when it is removed
    changes: list[Change] = field(default_factory=list)
    connectors: list[Affected] = field(default_factory=list)
    certificate_types: list[Affected] = field(default_factory=list)
    matters: list[Affected] = field(default_factory=list)
    bundles: list[Affected] = field(default_factory=list)
    rules: list[Affected] = field(default_factory=list)
    townships: list[Affected] = field(default_factory=list)

    @property
    def breaks(self) -> bool:
        return any(a.breaks for a in self.affected())

    def affected(self) -> Iterator[Affected]:
        for group in (self.connectors, self.certificate_types, self.matters, self.bundles, self.rules):
            yield from group

    def as_dict(self) -> dict[str, Any]:
        def rows(items: list[Affected]) -> list[dict[str, Any]]:
            return [{"name": a.name, "breaks": a.breaks, "why": a.why} for a in items]

        return {
            "dataset": self.dataset,
            "before": self.before,
            "after": self.after,
            "breaks": self.breaks,
            "changes": [{"breaking": c.breaking, "subject": c.subject, "what": c.what} for c in self.changes],
            "connectors": rows(self.connectors),
            "certificate_types": rows(self.certificate_types),
            "matters": rows(self.matters),
            "bundles": rows(self.bundles),
            "rules": rows(self.rules),
            "townships": rows(self.townships),
        }


@dataclass
class ImpactReport:
    datasets: list[DatasetImpact]

    @property
    def breaks(self) -> bool:
        return any(d.breaks for d in self.datasets)


@dataclass(frozen=True)
class Consumers:
    """Everything that consumes contracts, as the proposed tree has it."""

    registrations: Mapping[str, Registration]
    matters: Catalogue
    rules: tuple[RuleReference, ...]
    townships: tuple[tuple[str, str], ...]  # (code, name) of the district's townships

    @classmethod
    def of_tree(
        cls,
        root: Path,
        *,
        registrations_dir: Path | None = None,
        matters_file: Path | None = None,
        extra_registrations: Iterable[Registration] = (),
        district_code: str = "120114",
    ) -> Consumers:
        registrations = dict(load_registrations(registrations_dir or root / "connectors" / "registrations"))
        for reg in extra_registrations:
            registrations.setdefault(reg.name, reg)
        # Loaded without the type check: a matter naming a type no contract issues any more is
        # exactly what this reports (load_matters would refuse the whole catalogue for it).
        matters = load_matters(matters_file or root / "sharing" / "matters.yaml")
        rules = tuple(
            r for pattern in RULE_FILES for path in sorted(root.glob(pattern)) for r in rule_references(path)
        )
        regions = root / "contracts" / "regions" / f"{district_code}.csv"
        townships: tuple[tuple[str, str], ...] = ()
        if regions.is_file():
            with regions.open(encoding="utf-8", newline="") as fh:
                townships = tuple((row["code"], row["name"]) for row in csv.DictReader(fh))
        return cls(registrations, matters, rules, townships)


def load_contracts(path: Path) -> dict[str, Contract]:
    """A contract file or a folder of them, by dataset id."""
    if path.is_file():
        contract = load_contract(path)
        return {contract.id: contract}
    if not path.is_dir():
        raise ConfigurationError(f"{path}: no such contract file or folder")
    found: dict[str, Contract] = {}
    for file in sorted(path.glob("*.yaml")):
        contract = load_contract(file)
        if contract.id in found:
            raise ConfigurationError(f"{file}: contract id {contract.id!r} is defined twice")
        found[contract.id] = contract
    return found


def rule_references(path: Path) -> list[RuleReference]:
    """Where a rule file names a certificate type (a string of the type code's shape)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{path}: cannot read the rule file: {exc}") from exc
    file_rule = str(data.get("id") or path.stem) if isinstance(data, dict) else path.stem
    found: list[RuleReference] = []

    def walk(node: Any, rule: str) -> None:
        if isinstance(node, dict):
            rule = str(node["id"]) if isinstance(node.get("id"), str) else rule
            fields = _fields_named(node)
            for value in node.values():
                if isinstance(value, str) and _is_type_code(value):
                    found.append(RuleReference(path.as_posix(), rule, value, fields))
                elif isinstance(value, list) and any(isinstance(v, str) and _is_type_code(v) for v in value):
                    found.extend(
                        RuleReference(path.as_posix(), rule, v, fields)
                        for v in value
                        if isinstance(v, str) and _is_type_code(v)
                    )
                else:
                    walk(value, rule)
            for key in node:
                if isinstance(key, str) and _is_type_code(key):
                    found.append(RuleReference(path.as_posix(), rule, key, _fields_named(node[key])))
        elif isinstance(node, list):
            for item in node:
                walk(item, rule)

    walk(data, file_rule)
    return found


def _fields_named(node: Any) -> tuple[str, ...]:
    if not isinstance(node, dict):
        return ()
    named: list[str] = []
    if isinstance(node.get("field"), str):
        named.append(node["field"])
    if isinstance(node.get("fields"), list):
        named.extend(str(f) for f in node["fields"] if isinstance(f, str))
    for item in node.get("conditions", []) if isinstance(node.get("conditions"), list) else []:
        if isinstance(item, dict) and isinstance(item.get("field"), str):
            named.append(item["field"])
    # A benefit rule names a certificate's own fields as ``fields.<name>`` (its other fields —
    # township, holder_age — are the catalog's, not the certificate's).
    return tuple(dict.fromkeys(n.removeprefix("fields.") for n in named))


def _is_type_code(value: str) -> bool:
    # 证照类型代码: an 18-character USCC of the issuing authority and a 3-digit serial.
    return _TYPE_CODE_RE.fullmatch(value) is not None


def contract_impact(
    old: Path,
    new: Path,
    consumers: Consumers,
    *,
    township_counts: Callable[[list[str]], Mapping[str, int]] | None = None,
) -> ImpactReport:
    """Every dataset whose contract differs between ``old`` and ``new``, followed downstream."""
    before, after = load_contracts(old), load_contracts(new)
    issued_after = {code: c.id for c in after.values() if (code := _type_code(c)) is not None}
    report: list[DatasetImpact] = []
    for dataset in sorted(before.keys() | after.keys()):
        was, now = before.get(dataset), after.get(dataset)
        changes = diff_contracts(was, now) if was is not None and now is not None else []
        if was is not None and now is not None and not changes and was.version == now.version:
            continue
        impact = DatasetImpact(dataset, was.version if was else None, now.version if now else None, changes)
        _connectors(impact, was, now, consumers.registrations)
        lost_types, lost_fields = _certificate(impact, was, now, issued_after)
        _consumers(impact, consumers, lost_types, lost_fields, was, now)
        if impact.certificate_types:
            _townships(impact, consumers, township_counts)
        report.append(impact)
    return ImpactReport(report)


def _type_code(contract: Contract | None) -> str | None:
    spec = contract.custom("certificate") if contract is not None else None
    return str(spec["typeCode"]) if isinstance(spec, dict) and "typeCode" in spec else None


def _certificate_fields(contract: Contract | None) -> set[str]:
    """The fields a certificate of this contract carries (its ``certificate.fields``)."""
    if contract is None:
        return set()
    spec = contract.custom("certificate")
    if isinstance(spec, dict) and isinstance(spec.get("fields"), list):
        return {str(f) for f in spec["fields"]}
    return {p.name for p in contract.table.properties}


def _connectors(
    impact: DatasetImpact,
    was: Contract | None,
    now: Contract | None,
    registrations: Mapping[str, Registration],
) -> None:
    breaking = [c for c in impact.changes if c.breaking]
    for reg in sorted(registrations.values(), key=lambda r: r.name):
        if reg.dataset != impact.dataset:
            continue
        if now is None:
            impact.connectors.append(
                Affected(reg.name, True, "its contract is removed: nothing validates its data")
            )
            continue
        pin = reg.contract
        if pin is not None and now.major not in (pin.major, pin.accept_major):
            impact.connectors.append(
                Affected(
                    reg.name,
                    True,
                    f"pinned to major {pin.major}, the contract is now {now.version}: the flow stops it "
                    "until the connector is tested and its registration says so",
                )
            )
        elif breaking and was is not None and now.major <= was.major:
            impact.connectors.append(
                Affected(reg.name, True, f"{len(breaking)} breaking change(s) without a new major version")
            )
        elif breaking:
            impact.connectors.append(
                Affected(
                    reg.name, False, f"{len(breaking)} breaking change(s), announced by major {now.major}"
                )
            )
        else:
            impact.connectors.append(Affected(reg.name, False, "validated against the changed contract"))


def _certificate(
    impact: DatasetImpact, was: Contract | None, now: Contract | None, issued_after: Mapping[str, str]
) -> tuple[set[str], dict[str, set[str]]]:
    """The types no contract issues any more, and per type the fields its certificates lost."""
    old_type, new_type = _type_code(was), _type_code(now)
    lost_types: set[str] = set()
    lost_fields: dict[str, set[str]] = {}
    if old_type is not None:
        if old_type not in issued_after:
            lost_types.add(old_type)
            impact.certificate_types.append(Affected(old_type, True, "no contract issues this type any more"))
        else:
            gone = (
                _certificate_fields(was) - _certificate_fields(now)
                if issued_after[old_type] == impact.dataset
                else set()
            )
            if gone:
                lost_fields[old_type] = gone
            moved = issued_after[old_type] != impact.dataset
            why = f"now issued by {issued_after[old_type]}" if moved else "issued from the changed contract"
            if gone:
                why += f"; fields no longer carried: {', '.join(sorted(gone))}"
            impact.certificate_types.append(Affected(old_type, False, why))
    if new_type is not None and new_type != old_type:
        impact.certificate_types.append(Affected(new_type, False, "newly issued by this contract"))
    return lost_types, lost_fields


def _consumers(
    impact: DatasetImpact,
    consumers: Consumers,
    lost_types: set[str],
    lost_fields: Mapping[str, set[str]],
    was: Contract | None,
    now: Contract | None,
) -> None:
    types = {a.name for a in impact.certificate_types}
    if not types:
        return
    catalogue = consumers.matters
    relatives_broken: dict[str, str] = {}
    for relation, rule in catalogue.relatives.items():
        used = types.intersection(rule.types)
        if not used:
            continue
        for type_code in sorted(used):
            if type_code in lost_types:
                relatives_broken[relation] = (
                    f"relatives.{relation} is found through {type_code}, no longer issued"
                )
            elif missing := set(rule.fields) & lost_fields.get(type_code, set()):
                relatives_broken[relation] = (
                    f"relatives.{relation} reads {', '.join(sorted(missing))} of {type_code}, "
                    "no longer carried"
                )
    touched: dict[str, Affected] = {}
    for matter in catalogue.matters:
        reasons, broken = [], []
        for material in matter.materials:
            used = types.intersection(material.certificate_types)
            for type_code in sorted(used):
                if type_code in lost_types:
                    broken.append(f"{material.name}: {type_code} is no longer issued")
                else:
                    reasons.append(f"{material.name} ({type_code})")
            if material.holder in relatives_broken:
                broken.append(f"{material.name}: {relatives_broken[material.holder]}")
            elif material.holder != "applicant" and types.intersection(
                catalogue.relatives.get(material.holder, _NO_RULE).types
            ):
                reasons.append(f"{material.name}: the {material.holder} is found through the changed type")
        if broken:
            touched[matter.code] = Affected(matter.code, True, f"{matter.name}: {'; '.join(broken)}")
        elif reasons:
            touched[matter.code] = Affected(matter.code, False, f"{matter.name}: {', '.join(reasons)}")
    impact.matters.extend(touched[code] for code in sorted(touched))
    for bundle in catalogue.bundles:
        hit = [m for m in bundle.matters if m in touched]
        if hit:
            breaks = any(touched[m].breaks for m in hit)
            impact.bundles.append(Affected(bundle.code, breaks, f"{bundle.name}: through {', '.join(hit)}"))
    for ref in consumers.rules:
        if ref.type_code not in types:
            continue
        name = f"{ref.file}: {ref.rule}"
        if ref.type_code in lost_types:
            impact.rules.append(Affected(name, True, f"reads {ref.type_code}, no longer issued"))
        elif missing := set(ref.fields) & lost_fields.get(ref.type_code, set()):
            impact.rules.append(
                Affected(
                    name, True, f"reads {', '.join(sorted(missing))} of {ref.type_code}, no longer carried"
                )
            )
        elif (
            ref.fields
            and now is not None
            and (unknown := set(ref.fields) - _certificate_fields(now))
            and not (set(ref.fields) - _certificate_fields(was))
        ):
            impact.rules.append(
                Affected(name, True, f"reads {', '.join(sorted(unknown))}, no longer carried")
            )
        else:
            impact.rules.append(Affected(name, False, f"reads {ref.type_code}"))


def _townships(
    impact: DatasetImpact,
    consumers: Consumers,
    township_counts: Callable[[list[str]], Mapping[str, int]] | None,
) -> None:
    names = dict(consumers.townships)
    if township_counts is not None:
        counts = township_counts(sorted(a.name for a in impact.certificate_types))
        for code, count in sorted(counts.items()):
            impact.townships.append(
                Affected(
                    code,
                    False,
                    f"{names.get(code, '')} {count:,} certificate(s) of the changed type(s)".strip(),
                )
            )
        return
    if consumers.townships:
        shown = "、".join(name for _, name in consumers.townships)
        impact.townships.append(
            Affected(
                f"all {len(consumers.townships)}",
                False,
                f"every township of the district (no catalog to count their holders): {shown}",
            )
        )


class _NoRule:
    types: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()


_NO_RULE = _NoRule()


__all__ = [
    "RULE_FILES",
    "Affected",
    "Consumers",
    "DatasetImpact",
    "ImpactReport",
    "RuleReference",
    "contract_impact",
    "load_contracts",
    "rule_references",
]
