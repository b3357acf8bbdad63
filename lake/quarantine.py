"""Reading the quarantine: what was kept back, why, and what each department must fix.

Example::

    with catalog.read() as conn:
        entries = list_entries(conn, dataset="household", status="open")
        entry = get_entry(conn, 17)                              # QuarantineEntry or QuarantineNotFound
        report = department_report(conn, department="公安")        # one DepartmentReport per department
        shown = masked_source_key(entry.record_key, compiled)    # for screens: by classification

An entry is one (row, rule) a batch broke: dataset, batch, contract id and version, rule,
severity, the failing value (masked when personal), the record's source key and when. It is
open until a later pull of the same record (by its primary key) passes the contract; the
lander then marks it resolved in the landing transaction. The department of an entry is the
department registered for the connector that pulled its batch (landed or refused for its
error rate), as the catalog's registrations name it.

On screens, a source key is shown masked by the contract's classification of its key columns
(:func:`masked_source_key`): a restricted certificate number that embeds a citizen ID is
personal data whatever its length. The department's own CSV (``quarantine report -o``) has
them in clear.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Row, Select, and_, case, func, not_, or_, select
from sqlalchemy.engine import Connection

from catalog import batches, breaches, connector_registrations, quarantine
from onceonly.errors import CatalogRefused
from onceonly.privacy import mask_citizen_id, scrub_text

if TYPE_CHECKING:  # contracts.compiler loads pyarrow: `quarantine list` must start quickly
    from contracts.compiler import CompiledContract

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
    connector_removed: bool = False


@dataclass(frozen=True)
class Departmentship:
    """The department a connector is registered for, and whether it was removed since."""

    department: str
    removed: bool = False


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


def departments(conn: Connection) -> dict[str, Departmentship]:
    """Connector name → its department, from the catalog's registrations, removed ones included.

    The catalog is what the daily flow runs (``connectors.registry``), so it is what the
    quarantine's batches came from; a connector removed since keeps its department (the
    registration row stays as history) and so does what it left in quarantine.
    """
    c = connector_registrations.c
    rows = conn.execute(select(c.name, c.department, c.removed_at)).all()
    return {r.name: Departmentship(r.department, removed=r.removed_at is not None) for r in rows}


def department_report(conn: Connection, *, department: str | None = None) -> list[DepartmentReport]:
    """Per department, the open entries grouped by rule: what to fix at the source.

    A record quarantined again by a later batch (its source not yet corrected) counts once per
    rule. The department of a connector is the one its catalog registration names
    (:func:`departments`). ``department`` matches a department name or a part of it, or a
    connector name.
    """
    owners = departments(conn)
    grouped: dict[tuple[str, str, str, str, str], dict[str, str | None]] = {}
    for e in list_entries(conn, status="open", limit=None):
        connector = e.connector or "?"
        key = (connector, e.dataset, f"{e.contract_id}@{e.contract_version}", e.rule, e.severity)
        keys = grouped.setdefault(key, {})
        source_key = e.record_key or f"(no key; batch {e.batch_id[:12]})"
        keys.setdefault(source_key, e.value_masked)
    reports: dict[str, DepartmentReport] = {}
    for (connector, dataset, contract, rule, severity), keys in sorted(grouped.items()):
        owner = owners.get(connector)
        name = owner.department if owner else f"(unregistered connector {connector})"
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
                connector_removed=bool(owner and owner.removed),
            )
        )
    for report in reports.values():  # errors first (they stop records), then by size
        report.rules.sort(key=lambda r: (r.severity != "error", -r.rows, r.rule))
    return sorted(reports.values(), key=lambda r: r.department)


def mask_key_part(value: str) -> str:
    """One personal part of a source key, as shown on screens.

    Of a value at least as long as a citizen ID, the first 6 and last 4 characters are kept:
    the customary form of a masked ID number (GB/T 35273 leaves the form open), which keeps
    no more of an ID embedded in a longer number (a 残疾人证 number is the ID and 2 digits)
    than it keeps of the ID itself. Shorter values keep their last 2 characters, at most a
    quarter of them; values under 8 characters are hidden entirely.
    """
    if len(value) >= 18:
        return mask_citizen_id(value) or ""
    if len(value) >= 8:
        return "*" * (len(value) - 2) + value[-2:]
    return "*" * len(value)


def masked_source_key(record_key: str | None, compiled: CompiledContract | None) -> str | None:
    """``record_key`` for screens: each part whose key column the contract classifies
    restricted, confidential or secret (or checks as personal) is masked (:func:`mask_key_part`).

    Without the contract (a dataset no longer in the contracts folder), or when the parts do
    not match the key columns (a value holding the separator), every part is masked: masking
    too much is the safe error. Citizen ID numbers left anywhere are masked as well.
    """
    if record_key is None:
        return None
    from contracts.compiler import RECORD_KEY_SEPARATOR

    parts = record_key.split(RECORD_KEY_SEPARATOR)
    if compiled is None or len(parts) != len(compiled.record_key):
        personal = [True] * len(parts)
    else:
        # Classified personal, or checked by a rule that says its values are (GB 11643 IDs).
        classified = compiled.personal_columns | {r.column for r in compiled.rules if r.personal}
        personal = [column in classified for column in compiled.record_key]
    shown = [mask_key_part(p) if secret else p for p, secret in zip(parts, personal, strict=True)]
    return scrub_text(RECORD_KEY_SEPARATOR.join(shown))


__all__ = [
    "DepartmentReport",
    "Departmentship",
    "QuarantineEntry",
    "QuarantineNotFound",
    "RuleToFix",
    "department_report",
    "departments",
    "get_entry",
    "list_entries",
    "mask_key_part",
    "masked_source_key",
]
