"""Township extracts (数据回流): each township gets what its counters need of its own people.

Example::

    policy = extract_policy(settings.contracts_dir, settings.matters_file, settings.extracts_in_clear)
    written = refresh_extracts(catalog, settings.extracts_dir, log, policy)   # townships marked stale
    written = refresh_extracts(catalog, settings.extracts_dir, log, policy, full=True,
                               townships=["120114001000"])                     # a snapshot on demand
    # var/extracts/township=120114001000/extract=000004/
    #     certificates.parquet  certificates.xlsx  rows.sha256  manifest.txt
    later = extracts_since(conn, "120114001000", 1)   # a station that has number 1 catches up

What goes in (``extract_policy``): only the certificates of the township's subjects (the
holder's township), only of the types the matters catalogue names (``sharing/matters.yaml``),
and only the fields a counter needs to skip a proof (``sharing.extract_manifest.COLUMNS``). The
holder's name and ID are shown as the dataset's contract classifies the columns they come from:
restricted, confidential or secret (or unclassified, or a 居民身份证 number whatever its class)
are masked (``110101********1234``, ``张*``) unless a matter needs them in clear
(``ONCEONLY_EXTRACTS_IN_CLEAR``); the manifest says which field is masked or in clear, and why.

Each extract is numbered per township and follows the one before: the first is a full snapshot,
each later one carries the changes since (新增, 变更, 撤销, 暂扣, 失效, 换发, 移出), computed against
what the township was last sent (``extract_rows``) for the certificates that can have changed since
its last extract's checkpoint — issued, replaced or changed in status since (``_touched_since``), so
a day's increment costs what changed, not what the township holds (all it holds is compared when
the policy or the manifest schema changed since); a full snapshot is written on demand. A full
snapshot lists the versions in force (revoked ones and versions replaced by a newer one are left
out); an increment tells once of a version that left force — 撤销, 换发 (a newer version in the
same township), 移出 (the newer version is another township's, or the type is no longer sent:
the row then carries the certificate id only) — and the township is not sent it again. A station
applying the increments in order (``apply_rows``: 撤销, 换发 and 移出 drop the row) holds what a
full snapshot of the same moment lists.

Landing a batch (or a lifecycle change) marks the township stale in its transaction;
``refresh_extracts`` takes the stale townships in order, each planned, written, recorded and
dropped. Memory does not grow with a township: a full snapshot's rows go to its Parquet file
as they are read, a slice at a time, and its rows file, rows root, workbook and what the
township was sent are made from that file a slice at a time (an increment holds what may have
changed — all the township holds after a change of policy). A big extract's workbook is
written by a worker process from the Parquet file while the next townships are planned
(``_Workbooks``); the extracts are recorded in township order all the same. Files go into a
fresh temporary folder (``extract=N.tmp-…``), then in one transaction the manifest logged
(kind ``extract-manifest``), recorded with what was sent, and the mark read cleared; then the
folder renamed into place. Two
writers at once (the pull runs, ``township-return``, ``extracts write``) both plan number N: the
second to record it drops its own folder and leaves the township marked for the next run. A run
that dies before recording leaves no record (and at most a temporary folder, removed later); one
that dies between recording and renaming has its folder put in place by the next run
(``recover_extracts``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import multiprocessing
import os
import re
import shutil
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import and_, delete, false, func, insert, select, union, update
from sqlalchemy.engine import Connection

from catalog import (
    Catalog,
    certificate_events,
    certificates,
    checkpoints,
    chunks,
    extract_manifests,
    extract_rows,
    log_leaves,
    township_extracts,
    utcnow,
)
from evidence.canonical import canonical_json, sha256_hex
from evidence.certificate import (
    STATUS_CANCELLED,
    STATUS_EXPIRED,
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    STATUS_WITHDRAWN,
)
from evidence.log import KIND_CHECKPOINT, KIND_EXTRACT, KIND_EXTRACT_MANIFEST, TransparencyLog, log_entry
from lake.parquet import write_parquet_atomic
from onceonly.cells import spreadsheet_row, spreadsheet_texts
from onceonly.errors import ConfigurationError, OnceOnlyError
from onceonly.files import private_dir, write_atomic
from onceonly.memory import RELEASE_EVERY, release_freed_memory
from onceonly.privacy import mask_citizen_id, mask_citizen_ids, mask_name, mask_names
from sharing.extract_manifest import (
    CHANGE_LABELS,
    CHANGES,
    DATE_COLUMNS,
    FULL,
    HEADERS,
    INCREMENTAL,
    MANIFEST_FILE,
    MANIFEST_SCHEMA,
    NAMES,
    PARQUET_FILE,
    ROWS_FILE,
    SHEET,
    XLSX_FILE,
    canonical_texts,
    file_sha256,
    rows_frontier,
    table_leaves,
    table_rows_texts,
)

SENT_SCHEMA = pa.schema([("cert_id", pa.string()), ("content_sha256", pa.string())])
_TYPES = {"version": pa.int32(), "leaf_index": pa.int64()} | dict.fromkeys(DATE_COLUMNS, pa.date32())
EXTRACT_SCHEMA = pa.schema([pa.field(name, _TYPES.get(name, pa.string())) for name in NAMES])
HOLDER_FIELDS = ("holder_name", "holder_id")
_PERSONAL_CLASSES = frozenset({"restricted", "confidential", "secret"})
_REVOKED = frozenset({STATUS_REVOKED, STATUS_WITHDRAWN, STATUS_CANCELLED})
# A fixed time inside the XLSX (its zip entries and document properties): the same extract is the
# same file, whichever run writes it (a rerun after a crash must log the same manifest).
_XLSX_TIME = (1980, 1, 1, 0, 0, 0)
_MODIFIED = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


class ExtractNotFound(OnceOnlyError):
    """No extract of that township and number (or no township) in the catalog."""


# ------------------------------------------------------------------------------ policy


@dataclass(frozen=True)
class Shown:
    """How one holder field of one certificate type appears in extracts."""

    field: str
    classification: str
    clear: bool
    why: str
    matter: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"field": self.field, "header": HEADERS[self.field], "classification": self.classification}
        return (
            out
            | {"shown": "clear" if self.clear else "masked", "why": self.why}
            | ({"matter": self.matter} if self.matter else {})
        )


@dataclass(frozen=True)
class TypeRule:
    type_code: str
    type_name: str
    dataset: str
    matters: tuple[str, ...]
    fields: tuple[Shown, ...]

    def shown(self, name: str) -> Shown:
        return next(s for s in self.fields if s.field == name)


@dataclass(frozen=True)
class ExtractPolicy:
    """Which certificate types go into extracts, and how their holder fields are shown."""

    types: dict[str, TypeRule]

    def show(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A certificate row as the extract shows it (personal fields masked unless in clear)."""
        rule = self.types[str(row["type_code"])]
        out = {name: row.get(name) for name in NAMES if name != "change"}
        if not rule.shown("holder_name").clear:
            out["holder_name"] = mask_name(out["holder_name"])
        if not rule.shown("holder_id").clear:
            out["holder_id"] = mask_citizen_id(out["holder_id"])
        return out

    def show_table(self, found: pa.Table) -> pa.Table:
        """:meth:`show` over a table of certificates, column-wise: holder names and IDs masked
        where their type's rule masks them."""
        out = {n: found[n] for n in NAMES if n != "change"}
        for name, masked in (("holder_name", mask_names), ("holder_id", mask_citizen_ids)):
            hidden = sorted(code for code, rule in self.types.items() if not rule.shown(name).clear)
            if not hidden or not found.num_rows:
                continue
            column = found[name].combine_chunks()
            out[name] = pc.if_else(pc.is_in(found["type_code"], pa.array(hidden)), masked(column), column)
        return pa.table(out)

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                "type_code": r.type_code,
                "type_name": r.type_name,
                "matters": list(r.matters),
                "fields": [s.to_json() for s in r.fields],
            }
            for r in sorted(self.types.values(), key=lambda r: r.type_code)
        ]


def extract_policy(
    contracts_dir: Path, matters_file: Path, in_clear: Mapping[str, Sequence[str]] | None = None
) -> ExtractPolicy:
    """The policy from the contracts' classifications and the matters catalogue (module doc).

    ``in_clear``: matter code → holder fields (``holder_name``, ``holder_id``) that matter needs
    in clear for the certificate types it names; an unknown matter or field is an error."""
    from contracts.model import certificate_datasets, contract_by_id
    from sharing.matters import load_matters

    datasets = certificate_datasets(contracts_dir)
    catalogue = load_matters(matters_file, known_types=datasets)
    named: dict[str, list[str]] = {}
    for matter in catalogue.matters:
        for material in matter.materials:
            for type_code in material.certificate_types:
                if matter.code not in named.setdefault(type_code, []):
                    named[type_code].append(matter.code)
    clear: dict[tuple[str, str], tuple[str, str]] = {}  # (type, field) -> (matter, why)
    for code, wanted in (in_clear or {}).items():
        matter = catalogue.get(code)  # an unknown code fails, naming the known ones
        for name in wanted:
            if name not in HOLDER_FIELDS:
                raise ConfigurationError(
                    f"ONCEONLY_EXTRACTS_IN_CLEAR: {code}: unknown field {name!r} "
                    f"(known: {', '.join(HOLDER_FIELDS)})"
                )
            for material in matter.materials:
                for type_code in material.certificate_types:
                    why = (
                        f"事项「{matter.name}」（{code}）凭「{material.name}」免交材料，需核对{HEADERS[name]}明文"
                        "（ONCEONLY_EXTRACTS_IN_CLEAR）"
                    )
                    clear.setdefault((type_code, name), (code, why))
    types: dict[str, TypeRule] = {}
    for type_code, matters in sorted(named.items()):
        contract = contract_by_id(contracts_dir, datasets[type_code])
        spec = contract.custom("certificate")
        assert isinstance(spec, dict)
        classes = {p.name: (p.classification or "").lower() for p in contract.table.properties}
        holders = [h for h in spec.get("holders", []) if isinstance(h, dict)]
        fields = []
        for name, column_key in (("holder_name", "nameColumn"), ("holder_id", "idColumn")):
            found = sorted({classes.get(str(h.get(column_key)), "") for h in holders}, key=_strictness)
            classification = found[-1] if found else ""
            citizen_id = name == "holder_id" and any(h.get("idType") == "居民身份证" for h in holders)
            personal = classification in _PERSONAL_CLASSES or not classification or citizen_id
            if (type_code, name) in clear and citizen_id:
                raise ConfigurationError(
                    f"ONCEONLY_EXTRACTS_IN_CLEAR: {clear[(type_code, name)][0]}: {HEADERS[name]} of "
                    f"{spec.get('typeName', type_code)} is a 居民身份证 number, never in clear in an extract"
                )
            if (type_code, name) in clear and personal:
                matter_code, why = clear[(type_code, name)]
                fields.append(Shown(name, classification or "unclassified", True, why, matter_code))
            elif personal:
                reason = (
                    f"数据合同 {contract.id} 将其列为 {classification}"
                    if classification in _PERSONAL_CLASSES
                    else "公民身份号码一律屏蔽"
                    if citizen_id
                    else f"数据合同 {contract.id} 未标注密级，按个人信息屏蔽"
                )
                fields.append(Shown(name, classification or "unclassified", False, reason))
            else:
                fields.append(
                    Shown(
                        name,
                        classification,
                        True,
                        f"数据合同 {contract.id} 将其列为 {classification}，非个人信息",
                    )
                )
        types[type_code] = TypeRule(
            type_code, str(spec.get("typeName", type_code)), contract.id, tuple(matters), tuple(fields)
        )
    return ExtractPolicy(types)


def _strictness(classification: str) -> int:
    order = ["public", "internal", "", "restricted", "confidential", "secret"]
    return order.index(classification) if classification in order else order.index("")


# ------------------------------------------------------------------------------ planning


@dataclass
class Extract:
    """One extract written (or planned): a township's numbered full snapshot or increment."""

    township: str
    extract_no: int
    kind: str
    previous: tuple[int, str] | None  # the extract it follows: number, manifest SHA-256
    generation: int
    #: EXTRACT_SCHEMA; empty once planned: the rows wait in the Parquet file of ``temp``
    rows: pa.Table
    changes: dict[str, int]
    #: SENT_SCHEMA (cert id, content SHA-256): what the township has, of what an increment looked
    #: at, after it; a full snapshot's is read back from its Parquet file when it is recorded
    sent: pa.Table
    folder: Path
    manifest_sha256: str = ""
    files: list[dict[str, Any]] = field(default_factory=list)
    leaf_index: int | None = None
    count: int = 0  # its rows
    #: the fresh folder its files are written to (``extract=N.tmp-…``), renamed to ``folder`` once
    #: recorded; planning writes its Parquet file there
    temp: Path | None = None

    @property
    def relative(self) -> str:
        return f"township={self.township}/extract={self.extract_no:06d}"

    @property
    def size(self) -> int:
        """Its rows, planned (``count``) or still held (``rows``, an extract made by hand)."""
        return self.count or self.rows.num_rows

    def summary_row(self) -> dict[str, Any]:
        """One line of the run's table (Chinese headers, for the artifact and the CLI)."""
        from contracts.checks import load_region_codes

        changes = self.changes
        return {
            "镇街": f"{load_region_codes(self.township[:6]).get(self.township, '')}（{self.township}）",
            "编号": self.extract_no,
            "类型": "全量" if self.kind == FULL else "增量",
            "接续": self.previous[0] if self.previous else None,
            "行数": self.size,
            **{CHANGE_LABELS[k]: changes.get(k, 0) for k in CHANGES},
            "文件": " ".join(str(f["name"]) for f in self.files),
            "清单 SHA-256": self.manifest_sha256[:16],
            "日志序号": self.leaf_index,
        }


def extract_folder(extracts_dir: Path, township: str, extract_no: int) -> Path:
    return extracts_dir / f"township={township}" / f"extract={extract_no:06d}"


def _plan(
    conn: Connection,
    extracts_dir: Path,
    township: str,
    generation: int,
    policy: ExtractPolicy,
    full: bool,
) -> Extract | None:
    """The township's next extract, or None when it has nothing new to send.

    A full snapshot lists the certificates in force as versions (not revoked, not replaced by a
    newer version); an increment carries what changed since what the township was sent, and
    tells once of a version that is no longer in force (撤销, 换发; 移出 when the newer version
    or the certificate is no longer the township's), which the township then stops being sent.
    Planned column-wise (Arrow): no dict per certificate. A full snapshot is written to its
    Parquet file a slice at a time as it is read (``_write_snapshot``: the township is never
    whole in memory). An increment looks only at the certificates that can have changed since
    the township's last extract (``_touched_since``), unless the policy or the manifest schema
    changed since (then at all it holds); its rows go to the Parquet file once planned. Either
    way the file is in a fresh temporary folder (``Extract.temp``) and the rows are not kept."""
    last = conn.execute(
        select(
            extract_manifests.c.extract_no,
            extract_manifests.c.manifest_sha256,
            extract_manifests.c.tree_size,
            extract_manifests.c.manifest,
        )
        .where(extract_manifests.c.township == township)
        .order_by(extract_manifests.c.extract_no.desc())
        .limit(1)
    ).first()
    number = 1 if last is None else int(last.extract_no) + 1
    previous = None if last is None else (int(last.extract_no), str(last.manifest_sha256))
    folder = extract_folder(extracts_dir, township, number)
    temp = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex}")
    if full or last is None:
        with _planning_into(temp, number):
            count = _write_snapshot(conn, township, policy, temp / PARQUET_FILE)
        empty = EXTRACT_SCHEMA.empty_table()
        snapshot = {"snapshot": count}
        return Extract(
            township, number, FULL, previous, generation, empty, snapshot, SENT_SCHEMA.empty_table(), folder,
            count=count, temp=temp,
        )  # fmt: skip
    touched = None  # all the township holds
    if _shown_by(str(last.manifest)) == (MANIFEST_SCHEMA, _policy_json(policy)):
        touched = _touched_since(conn, township, int(last.tree_size))
    found = _found(conn, township, policy, touched)
    shown = policy.show_table(found)
    live = _live(found)
    contents = _contents(shown)
    rows, changes = _increment(conn, township, shown, contents, live, found, whole=touched is None)
    if rows is None:
        return None
    # What the township has after this extract, of the certificates looked at (an increment
    # records only the rows it tells of: ``_record_rows``). Arrow, not a dict: ~300 bytes a
    # certificate as Python strings, for each of the townships in flight.
    now = pa.table(
        {"cert_id": pc.filter(shown["cert_id"], live), "content_sha256": pc.filter(contents, live)},
        schema=SENT_SCHEMA,
    )
    with _planning_into(temp, number):
        write_parquet_atomic(rows, temp / PARQUET_FILE)
    return Extract(
        township, number, INCREMENTAL, previous, generation, EXTRACT_SCHEMA.empty_table(), changes, now,
        folder, count=rows.num_rows, temp=temp,
    )  # fmt: skip


class _Lost(Exception):
    """A planned extract's file could not be written: perhaps another writer recorded its number
    meanwhile and removed this writer's temporary folder (``_write_and_record``)."""

    def __init__(self, number: int, error: OSError) -> None:
        super().__init__(str(error))
        self.number, self.error = number, error


@contextlib.contextmanager
def _planning_into(temp: Path, number: int) -> Iterator[None]:
    """Write a plan's file into ``temp``: on any failure the folder goes, and a file error
    becomes :class:`_Lost` (the refresh asks whether number ``number`` was recorded meanwhile)."""
    try:
        yield
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise _Lost(number, exc) from exc
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _live(found: pa.Table) -> pa.Array:
    """The rows of :func:`_found` in force: not replaced by a newer version, not revoked."""
    return pc.and_not(pc.invert(found["superseded"]), pc.is_in(found["status"], pa.array(sorted(_REVOKED))))


def _write_snapshot(conn: Connection, township: str, policy: ExtractPolicy, path: Path) -> int:
    """A full snapshot's rows — the township's versions in force, in log order — written to the
    Parquet file ``path`` as they are read, a slice at a time; how many. Row groups of
    :data:`_GROUP_ROWS` whatever the slices: the same file however it was read. (A certificate
    with two newer versions, joined twice, is replaced, so not in force: no row of it here.)"""
    query, kinds = _found_query(policy)
    query = query.where(certificates.c.township == township)
    count = 0

    def save(tmp: Path) -> None:
        nonlocal count
        pending: list[pa.Table] = []
        held = 0
        with pq.ParquetWriter(tmp, EXTRACT_SCHEMA) as writer:
            for columns in _driver_slices(conn, query, kinds, stream=True):
                found = _found_table(columns)
                rows = _with_change(
                    pc.filter(policy.show_table(found), _live(found)), CHANGE_LABELS["snapshot"]
                )
                pending.append(rows)
                held += rows.num_rows
                while held >= _GROUP_ROWS:
                    table = pa.concat_tables(pending).combine_chunks()
                    writer.write_table(table.slice(0, _GROUP_ROWS), row_group_size=_GROUP_ROWS)
                    pending, held = [table.slice(_GROUP_ROWS)], table.num_rows - _GROUP_ROWS
                    count += _GROUP_ROWS
            if held:
                writer.write_table(pa.concat_tables(pending).combine_chunks(), row_group_size=_GROUP_ROWS)
                count += held

    write_atomic(path, save)
    return count


_GROUP_ROWS = 65_536  # rows per row group of a full snapshot's Parquet file


def _parquet_slices(path: Path, rows: int | None = None) -> Iterator[pa.Table]:
    """An extract's Parquet file, ``rows`` (:data:`_READ_ROWS`) rows at a time."""
    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(batch_size=rows or _READ_ROWS):
            yield pa.Table.from_batches([batch], EXTRACT_SCHEMA)


_READ_ROWS = 65_536  # rows of an extract's Parquet file read back at a time


def _policy_json(policy: ExtractPolicy) -> Any:
    """The policy as an extract's manifest carries it (``certificate_types``), JSON-plain."""
    return json.loads(canonical_json(policy.to_json()))


def _shown_by(manifest: str) -> tuple[Any, Any]:
    """The ``schema`` and ``certificate_types`` of a recorded manifest (its first line: the
    canonical JSON body): what its rows are and how they show each type. Another schema (a
    version that shows or hashes rows otherwise) or policy: the increment compares everything."""
    try:
        body = json.loads(manifest.split("\n", 1)[0])
        return body.get("schema"), body.get("certificate_types")
    except (ValueError, AttributeError):
        return None, None


def _touched_since(conn: Connection, township: str, tree_size: int) -> list[str]:
    """The township's certificates that can have changed since a log of ``tree_size`` leaves —
    issued since, replaced by a version issued since (in any township: 换发 or 移出), or changed
    in status since (a lifecycle leaf) — whatever their type.

    The township's last extract was planned after the checkpoint of ``tree_size`` it records was
    signed, so it saw every leaf below it: the log is appended under one lock, in commit order.
    A certificate it saw already comes back unchanged (compared with what was sent), so looking
    at too many costs time, never a wrong row; looking at too few would lose a change."""
    newer = certificates.alias("newer")
    changed = certificate_events.alias("changed")
    # Read from the log position on, the replaced or changed certificate then found by its id:
    # its township is compared as an expression, which no index serves, so that no planner
    # walks the township's index instead (SQLite, without statistics, would: all it holds).
    theirs = func.coalesce(certificates.c.township, "") == township
    query = union(
        select(certificates.c.cert_id).where(
            and_(certificates.c.township == township, certificates.c.leaf_index >= tree_size)
        ),
        select(certificates.c.cert_id)
        .select_from(newer.join(certificates, certificates.c.cert_id == newer.c.previous_id))
        .where(and_(newer.c.leaf_index >= tree_size, theirs)),
        select(certificates.c.cert_id)
        .select_from(changed.join(certificates, certificates.c.cert_id == changed.c.cert_id))
        .where(and_(changed.c.leaf_index >= tree_size, theirs)),
    )
    return [str(c) for c in conn.execute(query).scalars()]


def _found(
    conn: Connection, township: str, policy: ExtractPolicy, cert_ids: Sequence[str] | None = None
) -> pa.Table:
    """The township's certificates of the policy's types (of ``cert_ids`` only, when given), in
    log order, one row each, with whether a newer version replaced it (``superseded``) and that
    version's township."""
    query, kinds = _found_query(policy)
    if cert_ids is None:
        parts = [_driver_columns(conn, query.where(certificates.c.township == township), kinds, stream=True)]
    else:  # by id (the township's, compared so that no planner walks the township's index)
        query = query.where(func.coalesce(certificates.c.township, "") == township)
        parts = [
            _driver_columns(conn, query.where(certificates.c.cert_id.in_(chunk)), kinds)
            for chunk in chunks(sorted(cert_ids))
        ] or [_driver_columns(conn, query.where(false()), kinds)]
    table = pa.concat_tables(_found_table(columns) for columns in parts)
    if len(parts) > 1:
        table = table.take(pc.sort_indices(table["leaf_index"])).combine_chunks()
    if pc.count_distinct(table["cert_id"]).as_py() == table.num_rows:
        return table
    # A certificate with two newer versions comes once per version: keep one row, the last.
    position = pa.array(range(table.num_rows), pa.int64())
    keep = (
        pa.table({"cert_id": table["cert_id"], "i": position})
        .group_by("cert_id", use_threads=False)
        .aggregate([("i", "max")])["i_max"]
    )
    return table.take(keep.combine_chunks().sort())  # the rows kept, in log order


def _found_query(policy: ExtractPolicy) -> tuple[Any, list[pa.DataType]]:
    """The certificates of the policy's types in log order, each joined to its newer versions
    (``successor_id``, ``moved_to``: that version's township); the Arrow type of each column."""
    successor = certificates.alias("successor")
    query = (
        select(
            *(certificates.c[n] for n in _FOUND_NAMES),
            successor.c.cert_id.label("successor_id"),
            successor.c.township.label("moved_to"),
        )
        .select_from(certificates.outerjoin(successor, successor.c.previous_id == certificates.c.cert_id))
        .where(certificates.c.type_code.in_(sorted(policy.types)))
        .order_by(certificates.c.leaf_index)
    )
    return query, [*(EXTRACT_SCHEMA.field(n).type for n in _FOUND_NAMES), pa.string(), pa.string()]


def _found_table(columns: Sequence[pa.Array]) -> pa.Table:
    """:func:`_found_query`'s columns as a table: a certificate's fields, ``superseded``, ``moved_to``."""
    *fields, successor_id, moved_to = columns
    return pa.table(
        {
            **dict(zip(_FOUND_NAMES, fields, strict=True)),
            "superseded": pc.is_valid(successor_id),
            "moved_to": moved_to,
        }
    )


_FOUND_NAMES = [n for n in NAMES if n != "change"]


def _driver_columns(
    conn: Connection, statement: Any, types: Sequence[pa.DataType], *, stream: bool = False
) -> list[pa.Array]:
    """The statement's columns as Arrow arrays of ``types``, from the driver's own rows.

    No SQLAlchemy row per certificate and no per-value result processing: that was 3.6 s of a
    5.5 s plan of 25 townships' 565,000 certificates (on the servers a ``stream`` comes through
    SQLAlchemy's rows all the same: :func:`_driver_slices`)."""
    parts: list[list[pa.Array]] = [[] for _ in types]
    for columns in _driver_slices(conn, statement, types, stream=stream):
        for part, column in zip(parts, columns, strict=True):
            part.append(column)
    return [pa.chunked_array(part, kind).combine_chunks() for part, kind in zip(parts, types, strict=True)]


def _driver_slices(
    conn: Connection, statement: Any, types: Sequence[pa.DataType], *, stream: bool = False
) -> Iterator[list[pa.Array]]:
    """:func:`_driver_columns` a slice of :data:`_FETCH_ROWS` rows at a time (a big township's
    rows as Python tuples all at once were ~1 KB each). Dates come from SQLite as ISO text (as
    SQLAlchemy's ``Date`` stores them) and from the servers as dates: cast either way.

    On SQLite the driver's own cursor steps through the result. The servers' drivers hold a whole
    result in the client unless asked for a server-side cursor (psycopg: a named cursor; PyMySQL:
    an unbuffered one), so for a ``stream`` (a whole township) the rows come there through
    SQLAlchemy's ``yield_per``, a slice at a time (reading the driver's cursor under it would miss
    the row SQLAlchemy buffers first); a lookup of a chunk of ids needs no server-side cursor's
    round trips."""
    raw = conn.dialect.name == "sqlite" or not stream
    result = conn.execute(statement if raw else statement.execution_options(yield_per=_FETCH_ROWS))
    try:
        slices = _fetched(result.cursor) if raw else result.partitions()
        for rows in slices:
            columns = []
            for values, kind in zip(zip(*rows, strict=True), types, strict=True):
                if pa.types.is_date(kind):
                    array = pa.array(values)
                    columns.append(array if array.type == kind else array.cast(kind))
                else:
                    columns.append(pa.array(values, kind))
            yield columns
    finally:
        result.close()


def _fetched(cursor: Any) -> Iterator[Sequence[Any]]:
    """A driver cursor's rows, :data:`_FETCH_ROWS` at a time (PyMySQL's last is an empty tuple)."""
    while rows := cursor.fetchmany(_FETCH_ROWS):
        yield rows


_FETCH_ROWS = 65_536


def _contents(shown: pa.Table) -> pa.Array:
    """Each row's content SHA-256 (hex): RFC 8785 JSON of its fields but ``change``, dates as text."""
    names = [n for n in NAMES if n != "change"]
    return pa.concat_arrays([pa.array([], pa.string()), *map(sha256_hex, canonical_texts(shown, names))])


def _with_change(table: pa.Table, change: pa.Array | str) -> pa.Table:
    """An extract table (:data:`EXTRACT_SCHEMA`): ``table``'s fields and the ``change`` column."""
    if isinstance(change, str):
        change = pa.array([change] * table.num_rows, pa.string())
    return pa.table(
        {"change": change, **{n: table[n] for n in NAMES if n != "change"}}, schema=EXTRACT_SCHEMA
    )


def _removed_rows(cert_ids: Sequence[str]) -> pa.Table:
    """移出 rows of certificates the township was sent and no longer has: the id only."""
    return pa.table(
        {
            "change": pa.array([CHANGE_LABELS["removed"]] * len(cert_ids), pa.string()),
            "cert_id": pa.array(cert_ids, pa.string()),
            **{n: pa.nulls(len(cert_ids), EXTRACT_SCHEMA.field(n).type) for n in NAMES[2:]},
        },
        schema=EXTRACT_SCHEMA,
    )


def _increment(
    conn: Connection,
    township: str,
    shown: pa.Table,
    contents: pa.Array,
    live: pa.Array,
    found: pa.Table,
    *,
    whole: bool = True,
) -> tuple[pa.Table | None, dict[str, int]]:
    """The rows of an incremental extract and their count per change; None when nothing changed.

    ``whole``: ``found`` is all the township holds, so what it was sent and no longer holds (a
    type no longer sent) is 移出; otherwise ``found`` is what may have changed, compared with
    what was sent of it alone."""
    sent = select(extract_rows.c.cert_id, extract_rows.c.content_sha256).where(
        extract_rows.c.township == township
    )
    kinds = [pa.string(), pa.string()]
    if whole:
        sent_ids, sent_hashes = _driver_columns(conn, sent, kinds, stream=True)
    else:
        parts = [
            _driver_columns(conn, sent.where(extract_rows.c.cert_id.in_(chunk)), kinds)
            for chunk in chunks(shown["cert_id"].to_pylist())
        ]
        sent_ids, sent_hashes = (
            pa.concat_arrays([p[i] for p in parts]) if parts else pa.array([], pa.string()) for i in (0, 1)
        )
    before = pc.take(sent_hashes, pc.index_in(shown["cert_id"], value_set=sent_ids))
    was_sent = pc.is_valid(before)
    status = shown["status"]
    superseded = found["superseded"]
    moved = pc.fill_null(pc.not_equal(found["moved_to"], township), True)
    # Each row's change (None: nothing to tell): the first condition that holds, in this order.
    choices = (
        (pc.and_(live, pc.invert(was_sent)), "new"),
        (pc.and_(live, pc.fill_null(pc.equal(before, contents), False)), None),  # unchanged
        (pc.and_(live, pc.equal(status, STATUS_SUSPENDED)), "suspended"),
        (pc.and_(live, pc.is_in(status, pa.array(sorted(_REVOKED)))), "revoked"),
        (pc.and_(live, pc.equal(status, STATUS_EXPIRED)), "expired"),
        (live, "changed"),
        (pc.invert(was_sent), None),  # no longer in force, and never sent: nothing to tell
        (pc.and_(superseded, moved), "removed"),  # the newer version is another township's
        (superseded, "superseded"),
    )
    change = pc.case_when(
        pc.make_struct(*(condition for condition, _ in choices)),
        *(pa.scalar(kind, pa.string()) for _, kind in choices),
        pa.scalar("revoked", pa.string()),
    )
    told = pc.is_valid(change)
    change = pc.filter(change, told)
    rows = pc.filter(shown, told)
    kept = pc.is_in(sent_ids, value_set=shown["cert_id"].combine_chunks())
    gone = sorted(set(pc.filter(sent_ids, pc.invert(kept)).to_pylist()))
    counts = dict.fromkeys(CHANGES, 0)
    for kind, count in zip(*pc.value_counts(change).flatten(), strict=True):
        counts[str(kind)] = int(count.as_py())
    counts["removed"] += len(gone)
    if not rows.num_rows and not gone:
        return None, counts
    # 移出 rows carry the certificate id only: what was the township's is no longer its business.
    removed = pc.equal(change, "removed")
    blank = {
        n: pc.if_else(removed, pa.nulls(len(change), rows[n].type), rows[n])
        for n in NAMES
        if n not in ("change", "cert_id")
    }
    keys = pa.array(list(CHANGE_LABELS), pa.string())
    labels = pc.take(pa.array(list(CHANGE_LABELS.values()), pa.string()), pc.index_in(change, value_set=keys))
    told_rows = _with_change(pa.table({"cert_id": rows["cert_id"], **blank}), labels)
    if gone:
        told_rows = pa.concat_tables([told_rows, _removed_rows(gone)])
    return told_rows, counts


# ------------------------------------------------------------------------------ files


def _write_xlsx(
    path: Path, township: str, rows: pa.Table | Path, manifest_lines: Sequence[tuple[str, str]]
) -> None:
    """The staff's workbook: a 证照 sheet (Chinese headers, text cells formula-escaped; beyond a
    sheet's 1,048,576 rows the next rows go on 证照2, 证照3, …) and a 说明 sheet (what the extract
    is, what is masked and why), written reproducibly (fixed document times, zip entries of
    1980-01-01). XlsxWriter in constant-memory mode: each row is written out as it comes.
    ``rows``: the extract's table, or its Parquet file, read a slice at a time."""
    import xlsxwriter

    def slices() -> Iterator[pa.Table]:
        if isinstance(rows, Path):
            yield from _parquet_slices(rows, _CHUNK_ROWS)
        else:
            for offset in range(0, rows.num_rows, _CHUNK_ROWS):
                yield rows.slice(offset, _CHUNK_ROWS)

    def save(tmp: Path) -> None:
        book = xlsxwriter.Workbook(
            str(tmp),
            {
                "constant_memory": True,
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "default_date_format": "yyyy-mm-dd",
            },
        )
        fixed = dt.datetime(*_XLSX_TIME)
        book.set_properties({"created": fixed, "author": "OnceOnly"})
        bold = book.add_format({"bold": True})
        header = [HEADERS[name] for name in NAMES]
        pages = 0

        def next_sheet() -> Any:
            nonlocal pages
            sheet = book.add_worksheet(SHEET if pages == 0 else f"{SHEET}{pages + 1}")
            pages += 1
            sheet.freeze_panes(1, 0)
            for index, width in enumerate(_WIDTHS):
                sheet.set_column(index, index, width)
            sheet.write_row(0, 0, header, bold)
            return sheet.write_row

        write, number = next_sheet(), 1
        # Python values a chunk at a time: the whole table as lists took ~1 GB at 850,000 rows
        for part in slices():
            for values in zip(*_sheet_columns(part), strict=True):
                if number > _SHEET_ROWS:  # this sheet is full: on to the next
                    write, number = next_sheet(), 1
                if write(number, 0, values):  # XlsxWriter returns an error code, and stops the row
                    raise ConfigurationError(
                        f"township {township}: certificate {values[NAMES.index('cert_id')]} "
                        "cannot be written to the workbook (a text over 32,767 characters?)"
                    )
                number += 1
        notes = book.add_worksheet("说明")
        notes.set_column(0, 0, 18)
        notes.set_column(1, 1, 100)
        for number, (key, value) in enumerate(manifest_lines):
            notes.write_row(number, 0, spreadsheet_row([key, value]))
        book.close()

    write_atomic(path, save)


_SHEET_ROWS = 1_048_575  # rows of data on one sheet, under its header (Excel's limit: 1,048,576)
_CHUNK_ROWS = 65_536  # rows turned into Python values at a time for XlsxWriter


def _sheet_columns(table: pa.Table) -> list[list[Any]]:
    """The table's columns as Python values for the sheet: texts formula-escaped (column-wise)."""
    return [spreadsheet_texts(table[name].combine_chunks()).to_pylist() for name in NAMES]


_WIDTHS = (8, 48, 24, 18, 14, 22, 22, 6, 8, 12, 12, 12, 10)


def _notes(
    extract: Extract, policy: ExtractPolicy, checkpoint: tuple[int, str], as_of: dt.date
) -> list[tuple[str, str]]:
    """The workbook's 说明 sheet: what the extract is, what is masked and why."""
    from contracts.checks import load_region_codes

    name = load_region_codes(extract.township[:6]).get(extract.township, "")
    kind = "全量快照" if extract.kind == FULL else "增量（自上一号以来的变动）"
    masked = [
        f"{r.type_name}·{HEADERS[s.field]}：{'明文' if s.clear else '屏蔽'}（{s.why}）"
        for r in policy.types.values()
        for s in r.fields
    ]
    return [
        ("镇街", f"{name}（{extract.township}）"),
        ("回流编号", f"第 {extract.extract_no} 号"),
        ("类型", kind),
        ("接续", f"第 {extract.previous[0]} 号" if extract.previous else "无（首次回流）"),
        ("截至日志检查点", str(checkpoint[0])),
        ("数据日期", as_of.isoformat()),
        ("行数", str(extract.size)),
        ("变动", "，".join(f"{CHANGE_LABELS[k]} {v}" for k, v in extract.changes.items() if v) or "无"),
        *(("字段", line) for line in masked),
        ("核验", "onceonly verify-extract <本文件夹>：核对签名清单、文件与逐行哈希"),
    ]


def _write_files(
    extract: Extract,
    log: TransparencyLog,
    policy: ExtractPolicy,
    checkpoint: tuple[int, str],
    as_of: dt.date,
    folder: Path,
    workbook: Future[None] | None = None,
) -> None:
    """The extract's files (600) in ``folder`` (700, fresh but for the Parquet file planning
    wrote), the signed manifest last; the workbook is written here, or by a worker process
    already (``workbook``: waited for)."""
    from contracts.checks import load_region_codes

    folder = private_dir(folder)
    parquet = folder / PARQUET_FILE
    if not parquet.is_file():
        if extract.temp is not None:  # planned: its rows are that file, gone (another writer's cleanup?)
            raise FileNotFoundError(f"township {extract.township}: the planned rows file {parquet} is gone")
        write_parquet_atomic(extract.rows, parquet)  # an extract made with its rows
    frontier = rows_frontier()

    def rows_file(tmp: Path) -> None:
        # From the Parquet file a slice at a time: a big township's leaves, ids and hashes at
        # once were ~100 bytes a row.
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            for part in _parquet_slices(parquet):
                leaves = table_leaves(part)
                out.writelines(table_rows_texts(part, leaves))
                frontier.extend(leaves)

    write_atomic(folder / ROWS_FILE, rows_file)
    count = extract.count = frontier.size
    name = load_region_codes(extract.township[:6]).get(extract.township, "")
    if workbook is not None:
        try:
            workbook.result()
        except BrokenProcessPool:  # the worker died (OOM-killed?): write it here
            workbook = None
    if workbook is None:
        _write_xlsx(folder / XLSX_FILE, extract.township, parquet, _notes(extract, policy, checkpoint, as_of))
    extract.files = [
        {
            "name": n,
            "sha256": file_sha256(folder / n),
            "bytes": (folder / n).stat().st_size,
            "rows": count,
        }
        for n in (PARQUET_FILE, XLSX_FILE, ROWS_FILE)
    ]
    body = {
        "schema": MANIFEST_SCHEMA,
        "township": extract.township,
        "township_name": name,
        "extract_no": extract.extract_no,
        "kind": extract.kind,
        "previous": {"extract_no": extract.previous[0], "manifest_sha256": extract.previous[1]}
        if extract.previous
        else None,
        "generation": extract.generation,
        "as_of": as_of.isoformat(),
        "checkpoint": {"size": checkpoint[0], "note": checkpoint[1]},
        "rows": count,
        "rows_hash": "sha256",
        "rows_root": frontier.root().hex(),
        "changes": extract.changes,
        "certificate_types": policy.to_json(),
        "files": extract.files,
    }
    manifest = log.key.sign_note(canonical_json(body).decode("utf-8") + "\n")
    write_atomic(folder / MANIFEST_FILE, manifest)
    extract.manifest_sha256 = file_sha256(folder / MANIFEST_FILE)


# ------------------------------------------------------------------------------ refresh


class _Taken(Exception):
    """Another writer recorded this township's number first."""


_STALE_TMP = dt.timedelta(hours=1)  # a temporary folder no record names, this old: its writer died


def refresh_extracts(
    catalog: Catalog,
    extracts_dir: Path,
    log: TransparencyLog,
    policy: ExtractPolicy,
    *,
    full: bool = False,
    townships: Iterable[str] | None = None,
    as_of: dt.date | None = None,
) -> list[Extract]:
    """Write the next extract of every township marked stale (or of ``townships``; ``full``: a
    full snapshot each), log and record them; return those written (module docstring).

    Township by township, in order (its rows planned, written, recorded, then dropped; a big
    one's workbook written by a worker process while the next are planned, ``_Workbooks``, its
    rows waiting in its Parquet file and read back to be recorded): the files go to a
    fresh temporary folder beside the extract's (``extract=N.tmp-…``), the manifest is logged and
    recorded in one transaction, and only then is the folder renamed into place. When another
    writer recorded number N first, this one removes its folder, leaves the township marked and
    goes on (logged as a warning). A folder recorded but not yet renamed (a crash between the
    two) is put in place by the next run."""
    as_of = as_of or dt.date.today()
    with catalog.read() as conn:
        if townships is not None:
            asked = sorted(set(townships))
            marks = dict(
                conn.execute(
                    select(township_extracts.c.township, township_extracts.c.generation).where(
                        township_extracts.c.township.in_(asked)
                    )
                ).all()
            )
            targets = {t: int(marks.get(t, 0)) for t in asked}
        else:
            query = select(township_extracts.c.township, township_extracts.c.generation)
            if not full:
                query = query.where(township_extracts.c.generation != township_extracts.c.written_generation)
            targets = {str(t): int(g) for t, g in conn.execute(query)}
        recover_extracts(conn, extracts_dir)
        if not targets:
            return []
        checkpoint = _data_checkpoint(conn)
    written: list[Extract] = []
    waiting: deque[tuple[Extract, Path, Future[None] | None]] = deque()  # planned, not yet recorded

    def finish(extract: Extract, temp: Path, workbook: Future[None] | None) -> None:
        assert checkpoint is not None
        if _write_and_record(catalog, extract, log, policy, checkpoint, as_of, temp, workbook):
            written.append(extract)
        extract.rows, extract.sent = EXTRACT_SCHEMA.empty_table(), SENT_SCHEMA.empty_table()  # let them go
        release_freed_memory(at_most_every=RELEASE_EVERY)  # and what planning them freed (onceonly/memory.py)

    workbooks = _Workbooks()
    try:
        for township, generation in sorted(targets.items()):
            try:
                with catalog.read() as conn:
                    extract = _plan(conn, extracts_dir, township, generation, policy, full)
            except _Lost as lost:
                if not _recorded(catalog, township, lost.number):
                    raise lost.error from None
                _warn_taken(township, lost.number)
                continue
            if extract is None:
                with catalog.begin() as conn:
                    _clear_mark(conn, township, generation)
                continue
            assert extract.temp is not None  # planned: its Parquet file is there
            temp = extract.temp
            waiting.append((extract, temp, None))  # its folder goes if the refresh stops
            if checkpoint is None:
                raise ConfigurationError("the log has no checkpoint: an extract must reflect one")
            notes = _notes(extract, policy, checkpoint, as_of)
            workbook = workbooks.submit(temp / XLSX_FILE, extract, notes)
            if workbook is not None:
                waiting[-1] = (extract, temp, workbook)
            while len(waiting) > workbooks.ahead:  # recorded in township order, as planned
                finish(*waiting.popleft())
        while waiting:
            finish(*waiting.popleft())
    finally:
        for _, _, workbook in waiting:  # an error stopped the refresh: these are not recorded
            if workbook is not None:
                workbook.cancel()
        workbooks.close()  # waits for a workbook being written before its folder goes
        for _, temp, _ in waiting:
            shutil.rmtree(temp, ignore_errors=True)
    return written


class _Workbooks:
    """Big extracts' workbooks written by worker processes while the next townships are planned.

    XlsxWriter spends ~5 µs of pure Python per cell (15,000 rows/s here); on one core it was
    85% of a refresh. On a machine with two cores or more, an extract of at least ``min_rows``
    rows has its workbook written by a process of a pool of two (started on the first such
    extract), and up to ``ahead`` extracts wait to be recorded while theirs are written;
    smaller ones are written where they are recorded, as before. The workbook is the same file
    whichever process writes it (fixed times, fixed zip dates), so a rerun logs the same
    manifest. A pool that cannot start or breaks (no /dev/shm, a worker killed) is given up
    for the rest of the refresh: the workbooks are then written in this process. The workers
    start without the key passphrase, the catalog URL or any department secret in their
    environment: they write files from rows, nothing more.
    """

    def __init__(self, min_rows: int | None = None, workers: int | None = None) -> None:
        self.min_rows = _POOL_ROWS if min_rows is None else min_rows
        self.workers = workers or min(2, _cores())
        self._pool: ProcessPoolExecutor | None = None
        self._given_up = False

    @property
    def ahead(self) -> int:
        """How many planned extracts may wait for their workbooks (0: none, no pool)."""
        return 0 if self._pool is None else self.workers

    def submit(self, path: Path, extract: Extract, notes: list[tuple[str, str]]) -> Future[None] | None:
        """The workbook of ``extract`` being written at ``path`` by a worker; None: too small,
        or no pool — ``_write_files`` writes it. The worker reads the rows from the extract's
        Parquet file beside ``path`` (planning wrote it; written here from ``rows`` if not):
        the rows pickled to it were a second copy of the township in this process until the
        worker took them."""
        if extract.size < self.min_rows or self.workers < 2 or self._given_up:
            return None
        parquet = path.with_name(PARQUET_FILE)
        if not parquet.is_file():
            if extract.temp is not None:  # planned, its file gone: ``_write_files`` says so
                return None
            write_parquet_atomic(extract.rows, parquet)  # its folder made 700 if missing
        try:
            with _environment_without_secrets():  # a worker process starts within submit
                if self._pool is None:
                    # spawn: the flow's process has threads (Prefect's, the heartbeat), which
                    # fork copies badly
                    context = multiprocessing.get_context("spawn")
                    self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
                return self._pool.submit(_write_xlsx, path, extract.township, parquet, notes)
        except (OSError, RuntimeError) as exc:  # BrokenProcessPool is a RuntimeError
            self.give_up(exc)
            return None

    def give_up(self, exc: BaseException) -> None:
        if not self._given_up:
            logging.getLogger(__name__).warning(
                "township workbooks: the worker processes failed (%s); writing them in this process",
                type(exc).__name__,
            )
        self._given_up = True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # the cores this process may run on (Linux)
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def _environment_without_secrets() -> Iterator[None]:
    """The process environment without what a workbook writer has no business holding."""
    names = [n for n in os.environ if n.startswith("ONCEONLY_SECRET_") or n in _NOT_FOR_WORKBOOK_WRITERS]
    kept = {name: os.environ.pop(name) for name in names}
    try:
        yield
    finally:
        os.environ.update(kept)


_NOT_FOR_WORKBOOK_WRITERS = frozenset({"ONCEONLY_KEY_PASSPHRASE", "ONCEONLY_DATABASE_URL"})
_POOL_ROWS = 10_000  # an extract this big has its workbook written by a worker process (~0.6 s of work)


def _data_checkpoint(conn: Connection) -> tuple[int, str] | None:
    """The checkpoint the extracts of a refresh reflect: the first one signed after the newest leaf
    that is data — not an extract's manifest, nor the checkpoint leaf that opens each append. All
    the extracts of one refresh reflect it, and a run that died after writing some townships'
    writes the others against the very checkpoint a run that did not die used."""
    newest_leaf = conn.execute(
        select(func.max(log_leaves.c.leaf_index)).where(
            log_leaves.c.kind.not_in([KIND_EXTRACT_MANIFEST, KIND_EXTRACT, KIND_CHECKPOINT])
        )
    ).scalar()
    newest_certificate = conn.execute(select(func.max(certificates.c.leaf_index))).scalar()
    data = max((int(v) for v in (newest_leaf, newest_certificate) if v is not None), default=-1)
    row = conn.execute(
        select(checkpoints.c.tree_size, checkpoints.c.note)
        .where(checkpoints.c.tree_size > data)
        .order_by(checkpoints.c.tree_size)
        .limit(1)
    ).first()
    return None if row is None else (int(row.tree_size), str(row.note))


def _write_and_record(
    catalog: Catalog,
    e: Extract,
    log: TransparencyLog,
    policy: ExtractPolicy,
    checkpoint: tuple[int, str],
    as_of: dt.date,
    temp: Path,
    workbook: Future[None] | None = None,
) -> bool:
    """Write ``e`` to its temporary folder ``temp`` (its workbook perhaps by a worker already),
    log and record it, rename it into place; False (its folder removed) when another writer
    recorded the number first."""

    try:
        _write_files(e, log, policy, checkpoint, as_of, temp, workbook)
        with catalog.begin() as conn:
            taken = conn.execute(
                select(extract_manifests.c.extract_no).where(
                    and_(
                        extract_manifests.c.township == e.township,
                        extract_manifests.c.extract_no == e.extract_no,
                    )
                )
            ).first()
            if taken is not None:
                raise _Taken
            appended = log.append(
                conn,
                [
                    log_entry(
                        KIND_EXTRACT_MANIFEST,
                        f"{e.township}/{e.extract_no}",
                        {
                            "township": e.township,
                            "extract_no": e.extract_no,
                            "extract_kind": e.kind,
                            "previous_no": e.previous[0] if e.previous else None,
                            "generation": e.generation,
                            "tree_size": checkpoint[0],
                            "path": e.relative,
                            "manifest_sha256": e.manifest_sha256,
                            "rows": e.count,
                        },
                    )
                ],
            )
            e.leaf_index = appended.first_index
            _record(conn, e, checkpoint[0], temp)
            _clear_mark(conn, e.township, e.generation)
    except BaseException as exc:
        if workbook is not None and not workbook.cancel():
            wait([workbook])  # a worker still writing into the folder would bring it back
        shutil.rmtree(temp, ignore_errors=True)  # nothing recorded: nothing of it stays
        # Another writer recorded the number first — seen in the transaction, or by its removing
        # this writer's folder as a dead one's while this one still wrote its files.
        if isinstance(exc, _Taken) or (
            isinstance(exc, OSError) and _recorded(catalog, e.township, e.extract_no)
        ):
            _warn_taken(e.township, e.extract_no)
            return False
        raise
    _place(temp, e.folder, e.manifest_sha256)
    # Any other temporary folder of this number is a writer's that died (or lost): it goes now,
    # not at a later run, so the township's folder holds only what its records name.
    for other in e.folder.parent.glob(f"{e.folder.name}.tmp-*"):
        shutil.rmtree(other, ignore_errors=True)
    return True


def _recorded(catalog: Catalog, township: str, number: int) -> bool:
    with catalog.read() as conn:
        return (
            conn.execute(
                select(extract_manifests.c.extract_no).where(
                    and_(extract_manifests.c.township == township, extract_manifests.c.extract_no == number)
                )
            ).first()
            is not None
        )


def _warn_taken(township: str, number: int) -> None:
    logging.getLogger(__name__).warning(
        "township %s: extract %s was recorded by another writer meanwhile; this one is "
        "dropped and the township stays marked for the next run",
        township,
        number,
    )


def _clear_mark(conn: Connection, township: str, generation: int) -> None:
    conn.execute(
        update(township_extracts)
        .where(and_(township_extracts.c.township == township, township_extracts.c.generation == generation))
        .values(written_generation=generation, written_at=utcnow())
    )


def _place(temp: Path, final: Path, manifest_sha256: str) -> None:
    """Rename the recorded extract's temporary folder into place (a folder already there that is
    not the recorded extract — a run before these temporary folders died writing it — goes)."""
    if final.exists():
        if (final / MANIFEST_FILE).is_file() and file_sha256(final / MANIFEST_FILE) == manifest_sha256:
            shutil.rmtree(temp, ignore_errors=True)  # another run put it in place already
            return
        aside = final.with_name(f"{final.name}.stale-{uuid.uuid4().hex}")
        final.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        temp.rename(final)
    except FileNotFoundError:
        if not (final / MANIFEST_FILE).is_file():  # another run's recovery renamed it: fine
            raise


def recover_extracts(conn: Connection, extracts_dir: Path) -> list[Path]:
    """Put in place every temporary extract folder whose manifest is the one recorded (a run died
    after recording it, before the rename), and remove those no record will name: another
    writer's number, or a writer dead for over an hour. Returns the folders put in place."""
    placed: list[Path] = []
    if not extracts_dir.is_dir():
        return placed
    now = dt.datetime.now(dt.UTC)
    for temp in sorted(extracts_dir.glob("township=*/extract=*.tmp-*")):
        match = re.fullmatch(r"extract=(\d+)\.tmp-[0-9a-f]+", temp.name)
        township = temp.parent.name.removeprefix("township=")
        if not match or not temp.is_dir():
            continue
        number = int(match.group(1))
        record = conn.execute(
            select(extract_manifests.c.manifest_sha256).where(
                and_(extract_manifests.c.township == township, extract_manifests.c.extract_no == number)
            )
        ).first()
        manifest = temp / MANIFEST_FILE
        digest = file_sha256(manifest) if manifest.is_file() else None
        if record is not None and digest == record.manifest_sha256:
            final = extract_folder(extracts_dir, township, number)
            _place(temp, final, str(digest))
            placed.append(final)
        elif record is not None:
            shutil.rmtree(temp, ignore_errors=True)  # the number is another extract's
        elif now - dt.datetime.fromtimestamp(temp.stat().st_mtime, dt.UTC) > _STALE_TMP:
            shutil.rmtree(temp, ignore_errors=True)
    return placed


def _record(conn: Connection, e: Extract, tree_size: int, folder: Path) -> None:
    """The extract's row, and what the township has now (``extract_rows``)."""
    from sqlalchemy.exc import IntegrityError

    manifest = (folder / MANIFEST_FILE).read_text(encoding="utf-8")
    try:
        _insert_manifest(conn, e, tree_size, manifest)
    except IntegrityError:
        raise _Taken from None  # PostgreSQL: the other writer committed the number meanwhile
    _record_rows(conn, e, folder / PARQUET_FILE)


def _insert_manifest(conn: Connection, e: Extract, tree_size: int, manifest: str) -> None:
    conn.execute(
        insert(extract_manifests).values(
            township=e.township,
            extract_no=e.extract_no,
            kind=e.kind,
            previous_no=e.previous[0] if e.previous else None,
            generation=e.generation,
            tree_size=tree_size,
            path=e.relative,
            rows=e.count,
            changes=e.changes,
            manifest_sha256=e.manifest_sha256,
            manifest=manifest,
            leaf_index=e.leaf_index,
            written_at=utcnow(),
        )
    )


def _record_rows(conn: Connection, e: Extract, parquet: Path) -> None:
    """What the township has after ``e`` (``extract_rows``): a full snapshot's rows, read back
    from its Parquet file ``parquet`` a slice at a time (their content hashes computed again
    from the rows); an increment's ``sent``, of the certificates it tells of."""
    if e.kind == FULL:
        conn.execute(delete(extract_rows).where(extract_rows.c.township == e.township))
        for part in _parquet_slices(parquet):
            _insert_sent(
                conn, e.township, pa.table({"cert_id": part["cert_id"], "content_sha256": _contents(part)})
            )
        return
    # a version no longer in force (in no ``sent``) is forgotten once told
    touched = pq.read_table(parquet, columns=["cert_id"])["cert_id"].combine_chunks()
    for chunk in chunks(sorted(str(c) for c in touched.to_pylist())):
        conn.execute(
            delete(extract_rows).where(
                and_(extract_rows.c.township == e.township, extract_rows.c.cert_id.in_(chunk))
            )
        )
    _insert_sent(conn, e.township, e.sent.filter(pc.is_in(e.sent["cert_id"], value_set=touched)))


def _insert_sent(conn: Connection, township: str, sent: pa.Table) -> None:
    sent = sent.sort_by("cert_id")  # in key order: the index is appended to more than split
    for start in range(0, sent.num_rows, 5_000):
        part = sent.slice(start, 5_000)
        conn.execute(
            insert(extract_rows),
            [
                {"township": township, "cert_id": c, "content_sha256": h}
                for c, h in zip(part["cert_id"].to_pylist(), part["content_sha256"].to_pylist(), strict=True)
            ],
        )


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class ExtractRecord:
    township: str
    extract_no: int
    kind: str
    previous_no: int | None
    tree_size: int
    path: str
    rows: int
    changes: dict[str, int]
    manifest_sha256: str
    leaf_index: int
    written_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "township": self.township,
            "extract_no": self.extract_no,
            "kind": self.kind,
            "previous_no": self.previous_no,
            "tree_size": self.tree_size,
            "path": self.path,
            "rows": self.rows,
            "changes": self.changes,
            "manifest_sha256": self.manifest_sha256,
            "leaf_index": self.leaf_index,
            "written_at": self.written_at.isoformat(timespec="seconds"),
        }


def list_extracts(conn: Connection, township: str | None = None, *, after: int = 0) -> list[ExtractRecord]:
    """Extracts recorded (of ``township``; numbered above ``after``), by township and number."""
    query = select(extract_manifests).where(extract_manifests.c.extract_no > after)
    if township is not None:
        query = query.where(extract_manifests.c.township == township)
    return [
        ExtractRecord(
            r.township,
            int(r.extract_no),
            r.kind,
            None if r.previous_no is None else int(r.previous_no),
            int(r.tree_size),
            r.path,
            int(r.rows),
            dict(r.changes),
            r.manifest_sha256,
            int(r.leaf_index),
            r.written_at,
        )
        for r in conn.execute(query.order_by(extract_manifests.c.township, extract_manifests.c.extract_no))
    ]


def extracts_since(conn: Connection, township: str, extract_no: int) -> list[ExtractRecord]:
    """What a station that has extract ``extract_no`` of ``township`` applies, in order, to
    catch up: every later one (0: it has none). A number the township never had is refused."""
    if extract_no < 0:
        raise ExtractNotFound(f"no extract number {extract_no}: numbers start at 1 (0: none yet)")
    later = list_extracts(conn, township, after=extract_no)
    if extract_no > 0:
        known = conn.execute(
            select(extract_manifests.c.extract_no).where(
                and_(extract_manifests.c.township == township, extract_manifests.c.extract_no == extract_no)
            )
        ).first()
        if known is None:
            raise ExtractNotFound(f"township {township} has no extract number {extract_no}")
    return later


__all__ = [
    "EXTRACT_SCHEMA",
    "Extract",
    "ExtractNotFound",
    "ExtractPolicy",
    "ExtractRecord",
    "Shown",
    "TypeRule",
    "extract_folder",
    "extract_policy",
    "extracts_since",
    "list_extracts",
    "recover_extracts",
    "refresh_extracts",
]
