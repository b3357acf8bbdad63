"""办事堵点: which departments' bad records stopped how many citizens, as work orders to correct.

Example::

    with catalog.begin() as conn:
        result = run_bottlenecks(conn, contracts_dir=settings.contracts_dir, run_id=run_id)
    result.departments["天津市公安局武清分局"]        # Counts(open=3, new=1, closed=2, citizens=5)
    with catalog.read() as conn:
        written = write_work_order_files(conn, workorders_dir(settings.home), result)
    # var/workorders/天津市公安局武清分局/2026-11-21/办事堵点工单.xlsx (and .csv; 600, folders 700)
    with catalog.read() as conn:
        list_orders(conn, department="公安", status="open")   # [WorkOrder, ...]
        trend(conn, runs=14)                                    # [TrendRun, ...] newest last

**Who was stopped.** A counter's skip-check (``sharing.skipcheck.skip_check`` with a township:
the service, or ``onceonly skip-check --record-use``) that answers a material 数据待部门更正
— the subject's record of the dataset that issues it failed its data contract and sits in
quarantine — records it (:func:`record_blocked`): the matter, the material, the township, the
quarantine entries that stopped it, and the citizen as a commitment under the catalog's
bottleneck salt (``evidence.commitment.subject_commitment``): counted as distinct, never named.
The applicant is the one stopped, also when the record is a relative's (the spouse's 户口簿).

**Work orders.** :func:`run_bottlenecks` groups the open error-severity quarantine entries by
source record (dataset and record key; the department is the one registered for the connector
that pulled it, as ``lake.quarantine`` says) and opens one work order per record that stopped at
least ``min_citizens`` citizens (0: every failing record): the rules it failed with the failing
values (masked), its key masked as the contract classifies the key columns (a household key is
a citizen ID), how many distinct citizens it stopped, how often, at which matters and materials.
An open work order is updated each run; one is never opened twice for the same record.

**Closed when corrected.** When the department corrects the record and the next pull of it passes
its contract, the lander resolves its quarantine entries (``lake.landing``); the next run finds
no open entry left for the record and closes its work order (已更正), naming the batch that
resolved it and the certificate that batch issued for the record.

**Files and trend.** Per department and run, a CSV (UTF-8 with BOM) and an XLSX (Chinese
headers, every text cell through ``onceonly.cells``) listing its open work orders and those the
run closed, under ``<home>/workorders/<department>/<day>/`` (600 in 700 folders); nothing in them
names a citizen. Each run's per-department counts (open, new, closed, citizens) are kept in
``bottleneck_runs`` for the trend (:func:`trend`).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import io
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from catalog import (
    blocked_materials,
    bottleneck_runs,
    bottleneck_salt,
    certificates,
    insert_missing,
    quarantine,
    utcnow,
    work_orders,
)
from evidence.commitment import SALT_SIZE, subject_commitment
from onceonly.cells import spreadsheet_row
from onceonly.errors import CatalogRefused
from onceonly.files import private_dir, write_atomic
from onceonly.privacy import scrub_text
from sharing.skipcheck import NEEDS_CORRECTION

if TYPE_CHECKING:
    from contracts.compiler import CompiledContract
    from sharing.matters import Asked
    from sharing.skipcheck import MaterialAnswer

_logger = logging.getLogger("onceonly.bottlenecks")

OPEN, CLOSED = "open", "closed"
STATUS_NAMES = {OPEN: "待更正", CLOSED: "已更正"}
FILE_STEM = "办事堵点工单"
_KEY_DOMAIN = b"onceonly-work-order-record/1\x00"

HEADERS = (
    "工单号",
    "状态",
    "部门",
    "数据集",
    "连接器",
    "记录主键（脱敏）",
    "未通过的校验规则",
    "问题字段",
    "问题值（脱敏）",
    "受阻群众（人）",
    "受阻次数",
    "受阻事项与材料",
    "首次发现",
    "工单创建",
    "关闭时间",
    "更正批次",
    "更正后证照",
    "整批被拒",
)


class WorkOrderNotFound(CatalogRefused):
    """No work order has the id asked for."""


# ------------------------------------------------------------------ recording (skip-check hook)


def workorders_dir(home: Path) -> Path:
    """Where the work order files are written: ``<home>/workorders``."""
    return Path(home) / "workorders"


def bottleneck_salt_of(conn: Connection) -> bytes:
    """The catalog's bottleneck salt, made on first use (a race between two writers keeps one)."""
    row = conn.execute(select(bottleneck_salt.c.salt).where(bottleneck_salt.c.id == 1)).first()
    if row is None:
        insert_missing(
            conn, bottleneck_salt, {"id": 1, "salt": os.urandom(SALT_SIZE), "created_at": utcnow()}
        )
        row = conn.execute(select(bottleneck_salt.c.salt).where(bottleneck_salt.c.id == 1)).one()
    return bytes(row.salt)


def _holds(subject_id: str) -> Any:
    # As sharing.skipcheck._not_found: a quarantine row names its record's subjects separated by
    # spaces (both spouses of a marriage); match whole IDs. The ID was validated: no wildcard.
    s = quarantine.c.subject_id
    return or_(
        s == subject_id,
        s.like(f"{subject_id} %"),
        s.like(f"% {subject_id}"),
        s.like(f"% {subject_id} %"),
    )


def record_blocked(
    conn: Connection,
    asked: Asked,
    answers: Sequence[MaterialAnswer],
    subject_id: str,
    relatives: Mapping[str, str | None],
    issued_by: Mapping[str, str],
    *,
    township: str,
    station: str | None = None,
) -> int:
    """Record, in ``conn``'s transaction, the materials of an answer that a department's bad
    record stopped (数据待部门更正); returns the rows recorded. See :func:`blocked_recorder`."""
    recorder = blocked_recorder(
        asked, answers, subject_id, relatives, issued_by, township=township, station=station
    )
    return recorder(conn) if recorder is not None else 0


def blocked_recorder(
    asked: Asked,
    answers: Sequence[MaterialAnswer],
    subject_id: str,
    relatives: Mapping[str, str | None],
    issued_by: Mapping[str, str],
    *,
    township: str,
    station: str | None = None,
) -> Callable[[Connection], int] | None:
    """What recording an answer's stopped materials takes, to run in a write transaction: None
    when nothing was stopped.

    ``relatives``: the relatives the answer found, by relation (whose record a material of a
    relative is). One row per material and open error-severity quarantine entry of the holder in
    a dataset issuing the material's types; the applicant committed under the bottleneck salt.
    The CLI's ``--record-use`` runs it in its own transaction; the service hands it to its log
    writer with the answer's uses (``SkipCheckAnswer.blocked``), so an answer never opens a write
    transaction of its own. A failure to record is logged (in a savepoint) and never fails the
    answer: only the bottleneck count misses it.
    """
    stopped: list[tuple[str, str, str, str, list[str]]] = []  # material, types, holder, id, datasets
    for material, answer in zip(asked.materials, answers, strict=True):
        if answer.verdict != NEEDS_CORRECTION:
            continue
        holder_id = subject_id if material.holder == "applicant" else relatives.get(material.holder)
        datasets = sorted({issued_by[t] for t in material.certificate_types if t in issued_by})
        if holder_id and datasets:
            types = " ".join(material.certificate_types)[:200]
            stopped.append((material.name, types, material.holder, holder_id, datasets))
    if not stopped:
        return None

    def record(conn: Connection) -> int:
        try:
            with conn.begin_nested():
                return _record(conn, asked.code, stopped, subject_id, township, station)
        except SQLAlchemyError as exc:  # the answer stands; only the bottleneck count misses it
            _logger.warning("could not record a material stopped by a bad record: %s", scrub_text(str(exc)))
            return 0

    return record


def _record(
    conn: Connection,
    matter: str,
    stopped: list[tuple[str, str, str, str, list[str]]],
    subject_id: str,
    township: str,
    station: str | None,
) -> int:
    commitment = subject_commitment(bottleneck_salt_of(conn), subject_id)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for material, types, holder, holder_id, datasets in stopped:
        entries = conn.execute(
            select(quarantine.c.id, quarantine.c.dataset).where(
                and_(
                    quarantine.c.resolved_at.is_(None),
                    quarantine.c.severity == "error",
                    quarantine.c.dataset.in_(datasets),
                    _holds(holder_id),
                )
            )
        ).all()
        rows += [
            {
                "answered_at": now,
                "township": township,
                "station": station,
                "matter": matter[:64],
                "material": material[:200],
                "certificate_types": types,
                "holder": holder[:20],
                "quarantine_id": int(e.id),
                "dataset": e.dataset,
                "subject_commitment": commitment,
            }
            for e in entries
        ]
    if rows:
        conn.execute(insert(blocked_materials), rows)
    return len(rows)


# ------------------------------------------------------------------ computing the work orders


@dataclass(frozen=True)
class Counts:
    open: int = 0
    new: int = 0
    closed: int = 0
    citizens: int = 0  # distinct citizens stopped by the department's open work orders

    def to_json(self) -> dict[str, int]:
        return {"open": self.open, "new": self.new, "closed": self.closed, "citizens": self.citizens}


@dataclass
class _Record:
    """One source record with open error entries: what a work order is about."""

    group_key: str
    dataset: str
    connector: str
    department: str
    key_shown: str | None
    first_detected_at: dt.datetime
    batch_refused: bool = False
    entries: list[int] = field(default_factory=list)
    rules: dict[tuple[str, str | None], dict[str, Any]] = field(default_factory=dict)
    citizens: set[str] = field(default_factory=set)
    stops: int = 0
    materials: dict[tuple[str, str], list[Any]] = field(default_factory=dict)  # → [citizens, stops]

    def materials_json(self) -> list[dict[str, Any]]:
        return [
            {"matter": matter, "material": material, "citizens": len(who), "stops": stops}
            for (matter, material), (who, stops) in sorted(
                self.materials.items(), key=lambda kv: (-len(kv[1][0]), kv[0])
            )
        ]


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_at: dt.datetime
    departments: dict[str, Counts]
    opened: tuple[int, ...]
    updated: tuple[int, ...]
    closed: tuple[int, ...]

    @property
    def totals(self) -> Counts:
        c = self.departments.values()
        return Counts(
            open=sum(x.open for x in c),
            new=sum(x.new for x in c),
            closed=sum(x.closed for x in c),
            citizens=sum(x.citizens for x in c),
        )


def record_group_key(salt: bytes, dataset: str, record_key: str | None, entry_id: int) -> str:
    """The work order's key for a record: keyed SHA-256 of dataset and record key (a household
    key is a citizen ID: not stored in clear here); a record without a key is its entry."""
    key = record_key if record_key is not None else f"\x00entry:{entry_id}"
    return hashlib.sha256(_KEY_DOMAIN + salt + f"{dataset}\x00{key}".encode()).hexdigest()


class _Contracts:
    """Compiled contracts by dataset, for masking keys (None: no contract, every part masked)."""

    def __init__(self, contracts_dir: Path | None) -> None:
        self.contracts_dir = contracts_dir
        self._compiled: dict[str, CompiledContract | None] = {}

    def shown(self, dataset: str, record_key: str | None) -> str | None:
        from lake.quarantine import masked_source_key

        if dataset not in self._compiled:
            self._compiled[dataset] = None
            if self.contracts_dir is not None:
                from contracts.compiler import compile_contract
                from contracts.model import contract_by_id
                from onceonly.errors import ContractError

                with contextlib.suppress(ContractError):  # no contract: every key part masked
                    self._compiled[dataset] = compile_contract(contract_by_id(self.contracts_dir, dataset))
        return masked_source_key(record_key, self._compiled[dataset])


def open_records(conn: Connection, salt: bytes, contracts_dir: Path | None) -> dict[str, _Record]:
    """The source records with open error-severity quarantine entries, by group key, each with
    the citizens its entries stopped (one aggregate query over ``blocked_materials``)."""
    from lake.quarantine import departments, list_entries

    owners = departments(conn)
    contracts = _Contracts(contracts_dir)
    records: dict[str, _Record] = {}
    by_entry: dict[int, _Record] = {}
    for e in list_entries(conn, status="open", limit=None):
        if e.severity != "error":
            continue  # a warning lands the record: it stops nobody
        key = record_group_key(salt, e.dataset, e.record_key, e.id)
        record = records.get(key)
        if record is None:
            connector = e.connector or "?"
            owner = owners.get(connector)
            record = records[key] = _Record(
                group_key=key,
                dataset=e.dataset,
                connector=connector,
                department=owner.department if owner else f"（未登记的连接器 {connector}）",
                key_shown=contracts.shown(e.dataset, e.record_key),
                first_detected_at=e.detected_at,
            )
        record.entries.append(e.id)
        record.batch_refused |= e.batch_refused
        record.first_detected_at = min(record.first_detected_at, e.detected_at)
        value = scrub_text(e.value_masked) if e.value_masked is not None else None
        record.rules.setdefault(
            (e.rule, e.column),
            {
                "rule": e.rule,
                "column": e.column,
                "severity": e.severity,
                "value": value,
                "contract": f"{e.contract_id}@{e.contract_version}",
            },
        )
        by_entry[e.id] = record
    b = blocked_materials.c
    stops = func.count().label("stops")
    blocked = conn.execute(
        select(b.quarantine_id, b.matter, b.material, b.subject_commitment, stops)
        .join(quarantine, quarantine.c.id == b.quarantine_id)
        .where(quarantine.c.resolved_at.is_(None))
        .group_by(b.quarantine_id, b.matter, b.material, b.subject_commitment)
    ).all()
    for row in blocked:
        record = by_entry.get(int(row.quarantine_id))
        if record is None:
            continue  # a warning's entry (never recorded) or one no longer open
        record.citizens.add(row.subject_commitment)
        record.stops += int(row.stops)
        tally = record.materials.setdefault((row.matter, row.material), [set(), 0])
        tally[0].add(row.subject_commitment)
        tally[1] += int(row.stops)
    return records


def run_bottlenecks(
    conn: Connection,
    *,
    contracts_dir: Path | None,
    run_id: str,
    min_citizens: int = 1,
    now: dt.datetime | None = None,
) -> RunResult:
    """Open, update and close the work orders (see the module docstring) in ``conn``'s write
    transaction, and record the run's per-department counts for the trend."""
    now = now or utcnow()
    salt = bottleneck_salt_of(conn)
    records = open_records(conn, salt, contracts_dir)
    w = work_orders.c
    existing = {r.group_key: r for r in conn.execute(select(work_orders).where(w.status == OPEN)).all()}
    opened: list[int] = []
    updated: list[int] = []
    closed: list[int] = []
    closed_by_department: dict[str, int] = defaultdict(int)
    for key, order in existing.items():
        if key in records:
            continue
        batch, cert = _resolution(conn, order.entries or [])
        conn.execute(
            update(work_orders)
            .where(w.order_id == order.order_id)
            .values(
                status=CLOSED,
                closed_at=now,
                closed_run=run_id,
                closed_by_batch=batch,
                closed_by_cert=cert,
                updated_run=run_id,
            )
        )
        closed.append(int(order.order_id))
        closed_by_department[order.department] += 1
    new_by_department: dict[str, int] = defaultdict(int)
    for key, record in sorted(records.items(), key=lambda kv: (kv[1].department, kv[1].first_detected_at)):
        values = {
            "department": record.department[:200],
            "connector": record.connector[:100],
            "dataset": record.dataset,
            "key_shown": (record.key_shown or "")[:200] or None,
            "rules": list(record.rules.values()),
            "entries": sorted(record.entries),
            "batch_refused": int(record.batch_refused),
            "citizens": len(record.citizens),
            "stops": record.stops,
            "materials": record.materials_json(),
            "first_detected_at": record.first_detected_at,
            "updated_run": run_id,
        }
        if key in existing:
            conn.execute(update(work_orders).where(w.order_id == existing[key].order_id).values(**values))
            updated.append(int(existing[key].order_id))
        elif len(record.citizens) >= min_citizens:
            result = conn.execute(
                insert(work_orders).values(
                    group_key=key, status=OPEN, opened_at=now, opened_run=run_id, **values
                )
            )
            inserted = result.inserted_primary_key
            assert inserted is not None
            opened.append(int(inserted[0]))
            new_by_department[record.department] += 1
    # Per department: its open work orders now, the distinct citizens they stopped.
    open_now = conn.execute(select(w.department, w.group_key).where(w.status == OPEN)).all()
    open_count: dict[str, int] = defaultdict(int)
    citizens: dict[str, set[str]] = defaultdict(set)
    for row in open_now:
        open_count[row.department] += 1
        still = records.get(row.group_key)
        if still is not None:
            citizens[row.department] |= still.citizens
    names = set(open_count) | set(closed_by_department)
    departments = {
        d: Counts(
            open=open_count.get(d, 0),
            new=new_by_department.get(d, 0),
            closed=closed_by_department.get(d, 0),
            citizens=len(citizens.get(d, ())),
        )
        for d in sorted(names)
    }
    conn.execute(
        insert(bottleneck_runs).values(
            run_id=run_id, run_at=now, departments={d: c.to_json() for d, c in departments.items()}
        )
    )
    return RunResult(run_id, now, departments, tuple(opened), tuple(updated), tuple(closed))


def _resolution(conn: Connection, entries: Iterable[int]) -> tuple[str | None, str | None]:
    """The batch that resolved the newest of ``entries`` and the certificate it issued for the
    record (None when it issued none: a record that lands without a certificate)."""
    ids = list(entries)
    if not ids:
        return None, None
    q = quarantine.c
    row = conn.execute(
        select(q.resolved_by_batch, q.dataset, q.record_key)
        .where(and_(q.id.in_(ids), q.resolved_at.is_not(None)))
        .order_by(q.resolved_at.desc(), q.id.desc())
        .limit(1)
    ).first()
    if row is None or row.resolved_by_batch is None:
        return None, None
    cert = None
    if row.record_key is not None:
        c = certificates.c
        cert = conn.execute(
            select(c.cert_id)
            .where(
                and_(
                    c.batch_id == row.resolved_by_batch,
                    c.dataset == row.dataset,
                    c.record_key == row.record_key,
                )
            )
            .order_by(c.leaf_index)
            .limit(1)
        ).scalar()
    return str(row.resolved_by_batch), cert


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class WorkOrder:
    order_id: int
    department: str
    connector: str
    dataset: str
    key_shown: str | None
    rules: tuple[dict[str, Any], ...]
    batch_refused: bool
    citizens: int
    stops: int
    materials: tuple[dict[str, Any], ...]
    first_detected_at: dt.datetime
    status: str
    opened_at: dt.datetime
    opened_run: str
    updated_run: str
    closed_at: dt.datetime | None
    closed_run: str | None
    closed_by_batch: str | None
    closed_by_cert: str | None

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, self.status)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.order_id,
            "status": self.status,
            "status_name": self.status_name,
            "department": self.department,
            "connector": self.connector,
            "dataset": self.dataset,
            "source_key": self.key_shown,
            "rules": list(self.rules),
            "batch_refused": self.batch_refused,
            "citizens": self.citizens,
            "stops": self.stops,
            "materials": list(self.materials),
            "first_detected_at": _iso(self.first_detected_at),
            "opened_at": _iso(self.opened_at),
            "closed_at": _iso(self.closed_at),
            "closed_by_batch": self.closed_by_batch,
            "closed_by_certificate": self.closed_by_cert,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _order(row: Any) -> WorkOrder:
    m = row._mapping
    return WorkOrder(
        order_id=int(m["order_id"]),
        department=m["department"],
        connector=m["connector"],
        dataset=m["dataset"],
        key_shown=m["key_shown"],
        rules=tuple(m["rules"] or ()),
        batch_refused=bool(m["batch_refused"]),
        citizens=int(m["citizens"]),
        stops=int(m["stops"]),
        materials=tuple(m["materials"] or ()),
        first_detected_at=m["first_detected_at"],
        status=m["status"],
        opened_at=m["opened_at"],
        opened_run=m["opened_run"],
        updated_run=m["updated_run"],
        closed_at=m["closed_at"],
        closed_run=m["closed_run"],
        closed_by_batch=m["closed_by_batch"],
        closed_by_cert=m["closed_by_cert"],
    )


def list_orders(
    conn: Connection,
    *,
    department: str | None = None,
    status: str | None = None,
    closed_run: str | None = None,
) -> list[WorkOrder]:
    """Work orders, most citizens first; ``department`` matches a part of its name or a
    connector; ``status`` open or closed; ``closed_run``: also those that run closed."""
    w = work_orders.c
    stmt = select(work_orders)
    if status is not None and closed_run is not None:
        stmt = stmt.where(or_(w.status == status, w.closed_run == closed_run))
    elif status is not None:
        stmt = stmt.where(w.status == status)
    if department:
        stmt = stmt.where(or_(w.department.contains(department, autoescape=True), w.connector == department))
    stmt = stmt.order_by(w.department, w.status.desc(), w.citizens.desc(), w.order_id)
    return [_order(r) for r in conn.execute(stmt)]


def get_order(conn: Connection, order_id: int) -> WorkOrder:
    row = conn.execute(select(work_orders).where(work_orders.c.order_id == order_id)).first()
    if row is None:
        raise WorkOrderNotFound(f"no work order {order_id} (see `onceonly bottlenecks list`)")
    return _order(row)


@dataclass(frozen=True)
class TrendRun:
    run_id: str
    run_at: dt.datetime
    departments: dict[str, Counts]


def trend(conn: Connection, *, runs: int = 14) -> list[TrendRun]:
    """The recent runs' per-department counts, oldest first."""
    r = bottleneck_runs.c
    rows = conn.execute(select(bottleneck_runs).order_by(r.run_at.desc(), r.run_id).limit(runs)).all()
    return [
        TrendRun(
            row.run_id,
            row.run_at,
            {d: Counts(**{k: int(v) for k, v in c.items()}) for d, c in (row.departments or {}).items()},
        )
        for row in reversed(rows)
    ]


# ------------------------------------------------------------------ files


def describe_materials(materials: Iterable[Mapping[str, Any]], matter_names: Mapping[str, str]) -> str:
    """``城乡居民养老保险参保登记·居民户口簿（2 人 3 次）；…`` — where citizens were stopped."""
    return "；".join(
        f"{matter_names.get(m['matter'], m['matter'])}·{m['material']}（{m['citizens']} 人 {m['stops']} 次）"
        for m in materials
    )


def order_row(order: WorkOrder, matter_names: Mapping[str, str]) -> list[Any]:
    """The order as a file row (:data:`HEADERS`), nothing in it naming a citizen."""
    rules = order.rules
    values = [r.get("value") for r in rules if r.get("value") is not None]
    return [
        order.order_id,
        order.status_name,
        order.department,
        order.dataset,
        order.connector,
        order.key_shown or "-",
        "；".join(str(r["rule"]) for r in rules),
        "；".join(sorted({str(r["column"]) for r in rules if r.get("column")})),
        scrub_text("；".join(str(v) for v in values)),
        order.citizens,
        order.stops,
        describe_materials(order.materials, matter_names),
        _day_time(order.first_detected_at),
        _day_time(order.opened_at),
        _day_time(order.closed_at),
        order.closed_by_batch or "",
        order.closed_by_cert or "",
        "是" if order.batch_refused else "否",
    ]


def _day_time(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    from zoneinfo import ZoneInfo

    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return f"{aware.astimezone(ZoneInfo('Asia/Shanghai')):%Y-%m-%d %H:%M}"


_UNSAFE = re.compile(r"[\x00-\x1f/\\:*?\"<>|]")


def department_folder(department: str) -> str:
    """A department's folder name: its name with path and control characters replaced."""
    name = _UNSAFE.sub("_", department).strip(". ") or "_"
    return name[:100]


@dataclass(frozen=True)
class WrittenFiles:
    department: str
    csv: Path
    xlsx: Path
    rows: int


def write_work_order_files(
    conn: Connection,
    folder: Path,
    result: RunResult,
    *,
    day: dt.date,
    matter_names: Mapping[str, str] | None = None,
) -> list[WrittenFiles]:
    """Per department with open work orders or orders this run closed: the CSV and XLSX of them
    under ``folder/<department>/<day>/``."""
    names = matter_names or {}
    orders = list_orders(conn, status=OPEN, closed_run=result.run_id)
    by_department: dict[str, list[WorkOrder]] = defaultdict(list)
    for order in orders:
        by_department[order.department].append(order)
    written = []
    for department, mine in sorted(by_department.items()):
        target = private_dir(folder / department_folder(department) / day.isoformat())
        rows = [spreadsheet_row(order_row(o, names)) for o in mine]
        csv_path = target / f"{FILE_STEM}.csv"
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(HEADERS)
        writer.writerows(rows)
        write_atomic(csv_path, text.getvalue().encode("utf-8-sig"))  # utf-8-sig: Excel reads Chinese
        xlsx_path = target / f"{FILE_STEM}.xlsx"
        _write_xlsx(xlsx_path, department, rows, result, day)
        written.append(WrittenFiles(department, csv_path, xlsx_path, len(rows)))
    return written


def _cell(value: Any) -> Any:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value


def _write_xlsx(
    path: Path, department: str, rows: Sequence[list[Any]], result: RunResult, day: dt.date
) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "工单"
    sheet.append(list(HEADERS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([_cell(v) for v in row])
    widths = (8, 8, 24, 14, 18, 26, 36, 16, 26, 10, 8, 48, 17, 17, 17, 34, 44, 8)
    from openpyxl.utils import get_column_letter

    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    counts = result.departments.get(department, Counts())
    notes = book.create_sheet("说明")
    notes.column_dimensions["A"].width = 16
    notes.column_dimensions["B"].width = 90
    for key, value in (
        ("部门", department),
        ("日期", day.isoformat()),
        ("运行", result.run_id),
        ("待更正工单", counts.open),
        ("本次新增", counts.new),
        ("本次关闭", counts.closed),
        ("受阻群众（人）", counts.citizens),
        (
            "说明",
            "每张工单是一条未通过数据契约校验、致使群众在窗口无法免交材料的源记录。请按“未通过的校验规则”"
            "在本部门系统中更正该记录；更正后的记录下次汇聚通过校验即自动关闭工单。记录主键按数据契约的"
            "分级脱敏，群众身份证号码不出现在本文件中。",
        ),
    ):
        notes.append([_cell(v) for v in spreadsheet_row([key, value])])
    write_atomic(path, lambda tmp: book.save(tmp))


# ------------------------------------------------------------------ words


def report_markdown(
    result: RunResult,
    orders: Sequence[WorkOrder],
    runs: Sequence[TrendRun],
    matter_names: Mapping[str, str] | None = None,
    *,
    limit: int = 50,
) -> str:
    """The run in words (Chinese): per department, the work orders, and the trend."""
    names = matter_names or {}
    t = result.totals
    lines = [
        "# 办事堵点工单",
        "",
        f"运行 `{result.run_id}`：待更正工单 {t.open} 张（本次新增 {t.new} 张），本次关闭 {t.closed} 张，"
        f"受阻群众 {t.citizens} 人（各部门分别去重后合计）。",
        "",
        "## 各部门",
        "",
        "| 部门 | 待更正 | 本次新增 | 本次关闭 | 受阻群众（人） |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {d} | {c.open} | {c.new} | {c.closed} | {c.citizens} |" for d, c in result.departments.items()
    ] or ["| （无） | 0 | 0 | 0 | 0 |"]
    lines += ["", "## 工单", ""]
    if not orders:
        lines.append("没有待更正的工单。")
    for o in list(orders)[:limit]:
        rules = "、".join(str(r["rule"]) for r in o.rules)
        lines.append(
            f"- **{o.order_id}** {o.status_name} · {o.department} · {o.dataset} `{o.key_shown or '-'}` · "
            f"{rules} · 受阻 {o.citizens} 人 {o.stops} 次"
            + (f" · {describe_materials(o.materials, names)}" if o.materials else "")
            + (f" · 更正批次 {o.closed_by_batch[:12]}" if o.closed_by_batch else "")
        )
    if len(orders) > limit:
        lines.append(f"- ……另有 {len(orders) - limit} 张（见各部门工单文件）")
    lines += ["", "## 趋势", "", trend_markdown(runs)]
    return scrub_text("\n".join(lines))


def trend_rows(runs: Sequence[TrendRun]) -> list[dict[str, Any]]:
    """One row per run and department: the trend artifact's table."""
    rows = []
    for run in runs:
        for department, c in sorted(run.departments.items()):
            rows.append(
                {
                    "运行时间": _day_time(run.run_at),
                    "部门": department,
                    "待更正": c.open,
                    "新增": c.new,
                    "关闭": c.closed,
                    "受阻群众": c.citizens,
                }
            )
    return rows


def trend_markdown(runs: Sequence[TrendRun]) -> str:
    if not runs:
        return "尚无运行记录。"
    departments = sorted({d for run in runs for d in run.departments})
    head = "| 运行时间 | " + " | ".join(f"{d}（待更正/新增/关闭/受阻人数）" for d in departments) + " |"
    lines = [head, "|---|" + "---|" * len(departments)]
    for run in runs:
        cells = []
        for d in departments:
            c = run.departments.get(d, Counts())
            cells.append(f"{c.open}/{c.new}/{c.closed}/{c.citizens}")
        lines.append(f"| {_day_time(run.run_at)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "CLOSED",
    "FILE_STEM",
    "HEADERS",
    "OPEN",
    "STATUS_NAMES",
    "Counts",
    "RunResult",
    "TrendRun",
    "WorkOrder",
    "WorkOrderNotFound",
    "WrittenFiles",
    "blocked_recorder",
    "bottleneck_salt_of",
    "department_folder",
    "describe_materials",
    "get_order",
    "list_orders",
    "open_records",
    "order_row",
    "record_blocked",
    "record_group_key",
    "report_markdown",
    "run_bottlenecks",
    "trend",
    "trend_markdown",
    "trend_rows",
    "workorders_dir",
    "write_work_order_files",
]
