"""Classify every change between two versions of a data contract as breaking or not.

Example::

    changes = diff_contracts(load_contract(old_path), load_contract(new_path))
    [str(c) for c in changes]
    # ["BREAKING  name.length: maxLength 50 -> 20 (tighter)",
    #  "ok        address: new optional column"]
    any(c.breaking for c in changes)   # the CI gate: `onceonly contracts diff OLD NEW` exits 1

Breaking means a department's data that passed the old contract may fail the new one, or a
consumer loses something it relied on: a removed or renamed column, a narrowed type, a new
required column, a tighter rule (smaller maxLength, bigger minLength, narrower range, fewer
enum values, a new or changed pattern, new uniqueness, a new error rule, a stricter threshold,
a warning turned error). Loosening, new optional columns and new warnings are not breaking. A
breaking change without a new major version is itself reported as breaking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from contracts.compiler import Rule, compile_contract
from contracts.model import Contract

_LENGTH_RE = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")
# logicalType changes that keep every old value valid.
_WIDENING = {("integer", "number"), ("date", "timestamp")}
_UPPER = ("mustBeLessThan", "mustBeLessOrEqualTo")
_LOWER = ("mustBeGreaterThan", "mustBeGreaterOrEqualTo")


@dataclass(frozen=True)
class Change:
    breaking: bool
    subject: str  # a column, a rule name, or "contract"
    what: str

    def __str__(self) -> str:
        return f"{'BREAKING' if self.breaking else 'ok':<9} {self.subject}: {self.what}"


def diff_contracts(old: Contract, new: Contract) -> list[Change]:
    """Every difference that matters for validation or consumers, each classified."""
    changes: list[Change] = []
    if old.id != new.id:
        changes.append(Change(True, "contract", f"id {old.id!r} -> {new.id!r} (a different dataset)"))
    old_cols = {p.name: p for p in old.table.properties}
    new_cols = {p.name: p for p in new.table.properties}
    removed = [n for n in old_cols if n not in new_cols]
    added = [n for n in new_cols if n not in old_cols]
    for name in removed:
        same_type = [a for a in added if new_cols[a].logicalType == old_cols[name].logicalType]
        hint = f" (renamed to {' or '.join(same_type)}?)" if same_type else ""
        changes.append(Change(True, name, f"column removed{hint}"))
    for name in added:
        prop = new_cols[name]
        if prop.required or prop.primaryKey:
            changes.append(Change(True, name, "new required column"))
        else:
            changes.append(Change(False, name, "new optional column"))
    for name in old_cols.keys() & new_cols.keys():
        changes.extend(_column_changes(name, old_cols[name], new_cols[name]))
    changes.extend(_rule_changes(old, new, set(added) | set(removed)))
    changes.extend(_custom_changes(old, new))
    changes.sort(key=lambda c: (not c.breaking, c.subject))
    if any(c.breaking for c in changes) and new.major <= old.major:
        changes.insert(
            0,
            Change(
                True,
                "contract",
                f"breaking changes need a new major version ({old.version} -> {new.version})",
            ),
        )
    return changes


def _column_changes(name: str, old: Any, new: Any) -> list[Change]:
    out: list[Change] = []
    if old.logicalType != new.logicalType:
        widened = (old.logicalType, new.logicalType) in _WIDENING or new.logicalType == "string"
        verb = "widened" if widened else "narrowed or changed"
        out.append(Change(not widened, name, f"type {old.logicalType} -> {new.logicalType} ({verb})"))
    if old.physicalType != new.physicalType:
        before, after = _size(old.physicalType), _size(new.physicalType)
        narrowed = before is not None and after is not None and after < before
        what = f"physicalType {old.physicalType} -> {new.physicalType}"
        out.append(Change(narrowed, name, what + (" (narrowed)" if narrowed else "")))
    if (old.classification or "") != (new.classification or ""):
        out.append(Change(False, name, f"classification {old.classification} -> {new.classification}"))
    return out


def _size(physical: str | None) -> tuple[int, int] | None:
    m = _LENGTH_RE.search(physical or "")
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def _rule_changes(old: Contract, new: Contract, changed_columns: set[str]) -> list[Change]:
    old_rules = {r.name: r for r in compile_contract(old).rules if r.kind != "type"}
    new_rules = {r.name: r for r in compile_contract(new).rules if r.kind != "type"}
    out: list[Change] = []
    for name, rule in new_rules.items():
        if rule.column in changed_columns:
            continue  # reported with the column
        if name not in old_rules:
            breaking = rule.severity == "error"
            out.append(Change(breaking, name, f"new {rule.severity} rule: {rule.description}"))
    for name, rule in old_rules.items():
        if rule.column in changed_columns:
            continue
        if name not in new_rules:
            out.append(Change(False, name, f"rule removed: {rule.description}"))
            continue
        out.extend(_changed_rule(rule, new_rules[name]))
    return out


def _changed_rule(old: Rule, new: Rule) -> list[Change]:
    out: list[Change] = []
    if old.severity != new.severity:
        out.append(Change(new.severity == "error", new.name, f"severity {old.severity} -> {new.severity}"))
    if old.kwargs == new.kwargs and old.check_args == new.check_args and old.check == new.check:
        return out
    match new.kind:
        case "length" | "range":
            out.extend(_bounds(old, new))
        case "enum":
            before, after = set(old.kwargs["value_set"]), set(new.kwargs["value_set"])
            if before - after:
                out.append(Change(True, new.name, f"values no longer allowed: {sorted(before - after)}"))
            if after - before:
                out.append(Change(False, new.name, f"values now allowed: {sorted(after - before)}"))
        case "pattern":
            out.append(Change(True, new.name, f"pattern {old.kwargs['regex']!r} -> {new.kwargs['regex']!r}"))
        case _:
            out.append(_threshold(old, new))
    return out


def _bounds(old: Rule, new: Rule) -> list[Change]:
    out = []
    label = {"length": ("minLength", "maxLength"), "range": ("minimum", "maximum")}[new.kind]
    for key, name, tighter in (("min_value", label[0], _gt), ("max_value", label[1], _lt)):
        a, b = old.kwargs.get(key), new.kwargs.get(key)
        if a == b:
            continue
        breaking = tighter(b, a)
        shown = f"{name} {_bound(a)} -> {_bound(b)}"
        out.append(Change(breaking, new.name, f"{shown} ({'tighter' if breaking else 'looser'})"))
    for key in ("strict_min", "strict_max"):
        a, b = bool(old.kwargs.get(key)), bool(new.kwargs.get(key))
        if a != b:
            out.append(
                Change(b, new.name, f"{key.replace('_', ' ')} bound {'now' if b else 'no longer'} strict")
            )
    return out


def _bound(value: Any) -> str:
    return "none" if value is None else str(value)


def _gt(new: Any, old: Any) -> bool:
    """A lower bound is tighter when it appears or rises."""
    return new is not None and (old is None or new > old)


def _lt(new: Any, old: Any) -> bool:
    """An upper bound is tighter when it appears or falls."""
    return new is not None and (old is None or new < old)


def _threshold(old: Rule, new: Rule) -> Change:
    a, b = old.check_args, new.check_args
    same_shape = old.check == new.check and {k: v for k, v in a.items() if k != "value"} == {
        k: v for k, v in b.items() if k != "value"
    }
    if same_shape and a.get("operator") in _UPPER + _LOWER:
        tighter = b["value"] < a["value"] if a["operator"] in _UPPER else b["value"] > a["value"]
        word = "tighter" if tighter else "looser"
        return Change(tighter, new.name, f"{a['operator']} {a['value']:g} -> {b['value']:g} ({word})")
    if same_shape and old.check == "freshness":
        return Change(False, new.name, f"freshness {a['seconds']:g}s -> {b['seconds']:g}s (a warning)")
    # Anything else cannot be shown to accept every row the old rule accepted.
    return Change(
        True, new.name, f"rule changed: {old.check or old.kind} {a or old.kwargs} -> {b or new.kwargs}"
    )


def _custom_changes(old: Contract, new: Contract) -> list[Change]:
    out: list[Change] = []
    for key in ("subjectColumns", "townshipColumn", "sourceTimezone", "certificate"):
        before, after = old.custom(key), new.custom(key)
        if before != after:
            out.append(Change(True, "contract", f"customProperties {key} changed"))
    for key, default in (("maxErrorRate", 1.0), ("minRowsForErrorRate", 100)):
        before, after = float(old.custom(key, default)), float(new.custom(key, default))
        if before != after:
            # A lower error-rate ceiling stops more batches; a lower minimum judges smaller ones.
            stricter = after < before
            out.append(Change(stricter, "contract", f"{key} {before:g} -> {after:g}"))
    return out


__all__ = ["Change", "diff_contracts"]
