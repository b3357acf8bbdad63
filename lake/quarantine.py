"""Reading the quarantine: what was kept back, why, and what each department must fix.

Example::

    with catalog.read() as conn:
        entries = list_entries(conn, dataset="household", status="open")
        entry = get_entry(conn, 17)                              # QuarantineEntry or QuarantineNotFound
        report = department_report(conn, registrations)          # one DepartmentReport per department

An entry is one (row, rule) a batch broke: dataset, batch, contract id and version, rule,
severity, the failing value (masked when personal), the record's source key and when. It is
open until a later pull of the same record (by its primary key) passes the contract; the
lander then marks it resolved in the landing transaction. The department of an entry is the
department registered for the connector that pulled its batch (landed or refused for its
error rate).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Row, Select, and_, case, func, not_, or_, select
from sqlalchemy.engine import Connection

from catalog import batches, breaches, quarantine
from connectors.registration import Registration
from onceonly.errors import CatalogRefused

Status = Literal["open", "resolved", "all"]
EXAMPLES = 3


class QuarantineNotFound(CatalogRefused):
    """No quarantine entry has the id asked for."""


@dataclass(frozen=True)
class QuarantineEntry:
    id: int
    dataset: str
    connector: str | None
    batch_id: str
    contract_id: str
    contract_version: str
    rule: str
    column: str | None
    severity: str
    value_masked: str | None
    record_key: str | None
    detected_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_by_batch: str | None
    batch_refused: bool

    @property
    def status(self) -> str:
        return "resolved" if self.resolved_at else "open"


@dataclass(frozen=True)
class RuleToFix:
    dataset: str
    connector: str
    contract: str
    rule: str
    severity: str
    rows: int
    examples: tuple[str, ...]
    source_keys: tuple[str, ...]


@dataclass
class DepartmentReport:
    department: str
    rules: list[RuleToFix] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.rules)


def _entries(status: Status, dataset: str | None) -> Select[tuple[object, ...]]:
    """Each entry ONCE, with the connector of its batch, landed or refused.

    Two outer joins on primary keys, each matching at most one row. (A union of landed and
    refused batches joined by id listed an entry twice when a refused and a landed batch shared
    an id, as they did before refusals got ids of their own: ``lake.landing.refused_batch_id``.
    In a catalog that still holds such a pair, an entry belongs to the refusal when its contract
    is the refusal's and not the landed batch's.)
    """
    q, b, r = quarantine.c, batches.c, breaches.c
    landed_here = and_(
        b.batch_id.is_not(None), b.contract_id == q.contract_id, b.contract_version == q.contract_version
    )
    refused = and_(r.batch_id.is_not(None), or_(b.batch_id.is_(None), not_(landed_here)))
    stmt = (
        select(
            *quarantine.c,
            func.coalesce(b.connector, r.connector).label("connector"),
            case((refused, 1), else_=0).label("batch_refused"),
        )
        .outerjoin(batches, b.batch_id == q.batch_id)
        .outerjoin(breaches, r.batch_id == q.batch_id)
    )
    if status == "open":
        stmt = stmt.where(q.resolved_at.is_(None))
    elif status == "resolved":
        stmt = stmt.where(q.resolved_at.is_not(None))
    if dataset:
        stmt = stmt.where(q.dataset == dataset)
    return stmt


def _entry(row: Row[tuple[object, ...]]) -> QuarantineEntry:
    m = row._mapping
    return QuarantineEntry(
        id=int(m["id"]),
        dataset=m["dataset"],
        connector=m["connector"],
        batch_id=m["batch_id"],
        contract_id=m["contract_id"],
        contract_version=m["contract_version"],
        rule=m["rule"],
        column=m["column"],
        severity=m["severity"],
        value_masked=m["value_masked"],
        record_key=m["record_key"],
        detected_at=m["detected_at"],
        resolved_at=m["resolved_at"],
        resolved_by_batch=m["resolved_by_batch"],
        batch_refused=bool(m["batch_refused"]),
    )


def list_entries(
    conn: Connection, *, dataset: str | None = None, status: Status = "open", limit: int | None = 100
) -> list[QuarantineEntry]:
    """Entries, newest first."""
    stmt = _entries(status, dataset).order_by(quarantine.c.id.desc())
    if limit:
        stmt = stmt.limit(limit)
    return [_entry(r) for r in conn.execute(stmt)]


def get_entry(conn: Connection, entry_id: int) -> QuarantineEntry:
    row = conn.execute(_entries("all", None).where(quarantine.c.id == entry_id)).first()
    if row is None:
        raise QuarantineNotFound(f"no quarantine entry {entry_id} (see `onceonly quarantine list`)")
    return _entry(row)


def department_report(
    conn: Connection, registrations: Mapping[str, Registration], *, department: str | None = None
) -> list[DepartmentReport]:
    """Per department, the open entries grouped by rule: what to fix at the source.

    A record quarantined again by a later batch (its source not yet corrected) counts once per
    rule. ``department`` matches a registered department name or a part of it.
    """
    grouped: dict[tuple[str, str, str, str, str], dict[str, str | None]] = {}
    for e in list_entries(conn, status="open", limit=None):
        connector = e.connector or "?"
        key = (connector, e.dataset, f"{e.contract_id}@{e.contract_version}", e.rule, e.severity)
        keys = grouped.setdefault(key, {})
        source_key = e.record_key or f"(no key; batch {e.batch_id[:12]})"
        keys.setdefault(source_key, e.value_masked)
    reports: dict[str, DepartmentReport] = {}
    for (connector, dataset, contract, rule, severity), keys in sorted(grouped.items()):
        reg = registrations.get(connector)
        name = reg.department if reg else f"(unregistered connector {connector})"
        if department and department not in name and department != connector:
            continue
        examples = tuple(str(v) for v in keys.values() if v is not None)[:EXAMPLES]
        reports.setdefault(name, DepartmentReport(name)).rules.append(
            RuleToFix(
                dataset=dataset,
                connector=connector,
                contract=contract,
                rule=rule,
                severity=severity,
                rows=len(keys),
                examples=examples,
                source_keys=tuple(sorted(keys)),
            )
        )
    for report in reports.values():  # errors first (they stop records), then by size
        report.rules.sort(key=lambda r: (r.severity != "error", -r.rows, r.rule))
    return sorted(reports.values(), key=lambda r: r.department)


__all__ = [
    "DepartmentReport",
    "QuarantineEntry",
    "QuarantineNotFound",
    "RuleToFix",
    "department_report",
    "get_entry",
    "list_entries",
]
