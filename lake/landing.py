"""Land one validated batch: lake files, quarantine, certificates, log, cursor — atomically.

Example::

    lander = Lander(catalog, ParquetLake(settings.lake_dir), log, run_id=run_id)
    landed = lander.land(connector="gongan-household", compiled=compiled, validation=v,
                         cursor_before=cursor, cursor_after=pulled.cursor, content_sha256=digest)

Order of work: Parquet files are staged first (named after the batch id), then ONE catalog
transaction writes the batch row, its quarantine rows, its certificates, their log leaves and
signed checkpoint, and the connector's new cursor; only then are the files published into the
lake. If anything fails before the commit, nothing in the catalog changed, the next run pulls
the same rows again, and the staged files are discarded; if the commit succeeded, the cursor
has moved past them and the files are published (at the latest by the connector's next
landing, if the process died in between). Nothing is lost or doubled either way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Column, and_, func, insert, select, update
from sqlalchemy.engine import Connection

from connectors.base import Cursor
from contracts.compiler import CompiledContract
from contracts.validate import Validation
from evidence.canonical import Column as JsonColumn
from evidence.canonical import canonical_rows
from evidence.certificate import (
    CERTIFICATE_SCHEMA,
    STATUS_SUPERSEDED,
    STATUS_VALID,
    content_shape,
    draft_table,
)
from evidence.identifier import CertificateId, certificate_ids
from evidence.lifecycle import Lifecycle
from evidence.log import TransparencyLog, batch_receipt
from evidence.status_list import allocate_positions
from lake.catalog import (
    Catalog,
    batches,
    bind_value,
    breaches,
    certificates,
    connector_state,
    insert_missing,
    insert_rows,
    quarantine,
    serials,
    township_extracts,
    utcnow,
)
from lake.parquet import ParquetLake
from onceonly.errors import ConnectorBusy, ContractError

_IN_CHUNK = 500  # keys per IN (...) list: well under SQLite's bound-parameter limit
_KEY_CHUNK = 5_000  # record keys per lookup of earlier versions (SQLite allows 32,766 parameters)


# LandedBatch fields that are also columns of the batches table.
_BATCH_ROW_FIELDS = (
    "batch_id",
    "connector",
    "dataset",
    "pulled",
    "accepted",
    "quarantined",
    "warnings",
    "certificates",
    "tree_size",
)


@dataclass(frozen=True)
class Breach:
    """A batch refused for its error rate (see :meth:`Lander.refuse`)."""

    batch_id: str
    connector: str
    dataset: str
    contract: str
    pulled: int
    quarantined: int
    error_rate: float
    max_error_rate: float


@dataclass(frozen=True)
class LandedBatch:
    batch_id: str
    connector: str
    dataset: str
    pulled: int
    accepted: int
    quarantined: int
    warnings: int
    certificates: int
    tree_size: int | None
    townships: frozenset[str] = field(default_factory=frozenset)
    already_landed: bool = False


def batch_id_for(connector: str, cursor_before: Cursor | None, content_sha256: str) -> str:
    """Deterministic: the same rows pulled from the same cursor get the same id."""
    material = json.dumps([connector, cursor_before, content_sha256], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def content_digest(batch: pa.RecordBatch | pa.Table) -> str:
    """SHA-256 of a batch's content (Arrow IPC stream of the rows)."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


class Lander:
    def __init__(
        self,
        catalog: Catalog,
        lake: ParquetLake,
        log: TransparencyLog,
        *,
        run_id: str,
        lease_seconds: float | None = None,
    ) -> None:
        self.catalog = catalog
        self.lake = lake
        self.log = log
        self.run_id = run_id
        self.lease_seconds = lease_seconds

    def land(
        self,
        *,
        connector: str,
        compiled: CompiledContract,
        validation: Validation,
        cursor_before: Cursor | None,
        cursor_after: Cursor,
        content_sha256: str,
        issue_date: dt.date | None = None,
    ) -> LandedBatch:
        dataset = compiled.contract.id
        batch_id = batch_id_for(connector, cursor_before, content_sha256)
        self._settle_staged(connector)
        with self.catalog.read() as conn:
            if conn.execute(select(batches.c.batch_id).where(batches.c.batch_id == batch_id)).first():
                return self._already(batch_id, connector, dataset, validation)

        self.lake.stage(
            connector,
            dataset,
            batch_id,
            validation.accepted,
            compiled.township_column,
            validation.quarantined,
        )
        drafts = draft_table(validation.accepted, compiled)
        today = issue_date or dt.date.today()

        with self.catalog.begin() as conn:
            now = utcnow()
            _check_lease(conn, connector, self.run_id, now)

            def receipt(issued: int) -> tuple[bytes, str, str]:
                # The batch's receipt is the last leaf of its append: what came in, under which
                # contract, what passed — logged for every accepted batch, certificates or not.
                return batch_receipt(
                    batch_id=batch_id,
                    content_sha256=content_sha256,
                    contract=compiled.ref,
                    dataset=dataset,
                    pulled=validation.pulled,
                    accepted=validation.accepted.num_rows,
                    quarantined=validation.quarantined.num_rows,
                    certificates=issued,
                    landed_at=now.isoformat(timespec="seconds"),
                )

            issued = issue_certificates(
                conn,
                self.log,
                compiled,
                drafts,
                batch_id=batch_id,
                issue_date=today,
                now=now,
                receipt=receipt,
            )
            self._quarantine(conn, compiled, batch_id, validation, now)
            landed = LandedBatch(
                batch_id=batch_id,
                connector=connector,
                dataset=dataset,
                pulled=validation.pulled,
                accepted=validation.accepted.num_rows,
                quarantined=validation.quarantined.num_rows,
                warnings=validation.warnings,
                certificates=issued.certificates,
                tree_size=issued.tree_size,
                townships=issued.townships,
            )
            row = {f: getattr(landed, f) for f in _BATCH_ROW_FIELDS}
            conn.execute(
                insert(batches).values(
                    **row,
                    run_id=self.run_id,
                    contract_id=compiled.contract.id,
                    contract_version=compiled.contract.version,
                    cursor_before=cursor_before,
                    cursor_after=cursor_after,
                    content_sha256=content_sha256,
                    landed_at=now,
                )
            )
            save_cursor(conn, connector, dataset, cursor_after, self.run_id, rows=validation.pulled)
            if self.lease_seconds:  # each landed batch renews the run's hold on the connector
                conn.execute(
                    update(connector_state)
                    .where(
                        and_(
                            connector_state.c.connector == connector,
                            connector_state.c.lease_run_id == self.run_id,
                        )
                    )
                    .values(lease_until=now + dt.timedelta(seconds=self.lease_seconds))
                )
        self.lake.publish(connector, batch_id)
        return landed

    def refuse(
        self,
        *,
        connector: str,
        compiled: CompiledContract,
        validation: Validation,
        cursor_before: Cursor | None,
        content_sha256: str,
    ) -> Breach:
        """Keep a batch that broke its contract beyond ``maxErrorRate``, without landing it.

        Its failing rows go to the lake (``breach-<batch>.parquet``) and to the catalog's
        quarantine, with a ``breaches`` row, in one transaction; nothing is issued and the
        cursor stays put. The same batch pulled again (same id) is recorded once.
        """
        dataset = compiled.contract.id
        batch_id = batch_id_for(connector, cursor_before, content_sha256)
        breach = Breach(
            batch_id=batch_id,
            connector=connector,
            dataset=dataset,
            contract=compiled.ref,
            pulled=validation.pulled,
            quarantined=validation.quarantined.num_rows,
            error_rate=validation.error_rate,
            max_error_rate=compiled.max_error_rate,
        )
        self.lake.write_quarantine(dataset, f"breach-{batch_id}", validation.quarantined)
        with self.catalog.begin() as conn:
            if conn.execute(select(breaches.c.batch_id).where(breaches.c.batch_id == batch_id)).first():
                return breach
            now = utcnow()
            conn.execute(
                insert(breaches).values(
                    batch_id=batch_id,
                    run_id=self.run_id,
                    connector=connector,
                    dataset=dataset,
                    contract_id=compiled.contract.id,
                    contract_version=compiled.contract.version,
                    pulled=breach.pulled,
                    quarantined=breach.quarantined,
                    error_rate=breach.error_rate,
                    max_error_rate=breach.max_error_rate,
                    detected_at=now,
                )
            )
            _insert_failures(conn, compiled, batch_id, validation, now)
        return breach

    def _settle_staged(self, connector: str) -> None:
        """Publish what an earlier attempt staged and committed; discard what it never committed.

        Per connector: a connector is pulled by one run at a time, so what is staged under its
        name is not another transaction's work in progress.
        """
        staged = self.lake.staged(connector)
        if not staged:
            return
        with self.catalog.read() as conn:
            landed = set(
                conn.execute(select(batches.c.batch_id).where(batches.c.batch_id.in_(staged))).scalars()
            )
        for batch_id in staged:
            if batch_id in landed:
                self.lake.publish(connector, batch_id)
            else:
                self.lake.discard(connector, batch_id)

    def _quarantine(
        self, conn: Connection, compiled: CompiledContract, batch_id: str, v: Validation, now: dt.datetime
    ) -> None:
        dataset = compiled.contract.id
        _insert_failures(conn, compiled, batch_id, v, now)
        # A record that now passes its contract resolves what earlier batches quarantined or
        # warned about it (a warning it still carries was just found again, in this batch).
        # Looked up by this batch's keys (indexed), not by scanning the open
        # quarantine of the dataset, which only grows.
        accepted_keys = _record_keys(v.accepted, compiled.record_key)
        for chunk in _chunks(sorted(accepted_keys)):
            conn.execute(
                update(quarantine)
                .where(
                    and_(
                        quarantine.c.dataset == dataset,
                        quarantine.c.record_key.in_(chunk),
                        quarantine.c.resolved_at.is_(None),
                        quarantine.c.batch_id != batch_id,
                    )
                )
                .values(resolved_at=now, resolved_by_batch=batch_id)
            )

    @staticmethod
    def _already(batch_id: str, connector: str, dataset: str, v: Validation) -> LandedBatch:
        return LandedBatch(
            batch_id,
            connector,
            dataset,
            v.pulled,
            v.accepted.num_rows,
            v.quarantined.num_rows,
            v.warnings,
            0,
            None,
            already_landed=True,
        )


def _insert_failures(
    conn: Connection, compiled: CompiledContract, batch_id: str, v: Validation, now: dt.datetime
) -> None:
    """One quarantine row per (row, rule) the batch broke, the value masked if personal."""
    if not v.failures:
        return
    conn.execute(
        insert(quarantine),
        [
            {
                "batch_id": batch_id,
                "dataset": compiled.contract.id,
                "contract_id": compiled.contract.id,
                "contract_version": compiled.contract.version,
                # A failing row's values are whatever the source sent: cut them to the
                # column, or one over-long bad ID would stop the batch on PostgreSQL.
                "record_key": _fit(f.record_key, quarantine.c.record_key),
                "subject_id": _fit(" ".join(f.subjects) or None, quarantine.c.subject_id),
                "rule": _fit(f.rule, quarantine.c.rule),
                "column": _fit(f.column, quarantine.c.column),
                "severity": f.severity,
                "value_masked": f.value_masked,
                "detected_at": now,
            }
            for f in v.failures
        ],
    )


def save_cursor(
    conn: Connection, connector: str, dataset: str, cursor: Cursor | None, run_id: str, *, rows: int
) -> None:
    insert_missing(conn, connector_state, {"connector": connector, "dataset": dataset, "rows_pulled": 0})
    conn.execute(
        update(connector_state)
        .where(connector_state.c.connector == connector)
        .values(
            cursor=cursor,
            last_run_id=run_id,
            last_status="ok",
            last_error=None,
            last_pull_at=utcnow(),
            rows_pulled=connector_state.c.rows_pulled + rows,
        )
    )


def record_failure(conn: Connection, connector: str, dataset: str, run_id: str, error: str) -> None:
    insert_missing(conn, connector_state, {"connector": connector, "dataset": dataset, "rows_pulled": 0})
    conn.execute(
        update(connector_state)
        .where(connector_state.c.connector == connector)
        .values(last_run_id=run_id, last_status="failed", last_error=error, last_pull_at=utcnow())
    )


def acquire_lease(conn: Connection, connector: str, dataset: str, run_id: str, seconds: float) -> None:
    """Take the connector for ``run_id`` for ``seconds`` (renewed by each landed batch).

    Two runs pulling one connector would each stage and land the same rows; the second run
    finds the lease held and stops with ``ConnectorBusy`` before pulling anything.
    """
    insert_missing(conn, connector_state, {"connector": connector, "dataset": dataset, "rows_pulled": 0})
    now = utcnow()
    row = conn.execute(
        select(connector_state.c.lease_run_id, connector_state.c.lease_until)
        .where(connector_state.c.connector == connector)
        .with_for_update()
    ).one()
    if row.lease_run_id not in (None, run_id) and row.lease_until and _aware(row.lease_until) > now:
        until = _aware(row.lease_until).isoformat(timespec="seconds")
        raise ConnectorBusy(
            connector,
            f"run {row.lease_run_id} is pulling it (until {until} at the latest); this run leaves it alone",
        )
    conn.execute(
        update(connector_state)
        .where(connector_state.c.connector == connector)
        .values(lease_run_id=run_id, lease_until=now + dt.timedelta(seconds=seconds))
    )


def release_lease(conn: Connection, connector: str, run_id: str) -> None:
    conn.execute(
        update(connector_state)
        .where(and_(connector_state.c.connector == connector, connector_state.c.lease_run_id == run_id))
        .values(lease_run_id=None, lease_until=None)
    )


def _check_lease(conn: Connection, connector: str, run_id: str, now: dt.datetime) -> None:
    row = conn.execute(
        select(connector_state.c.lease_run_id, connector_state.c.lease_until).where(
            connector_state.c.connector == connector
        )
    ).first()
    if row is None or row.lease_run_id in (None, run_id) or not row.lease_until:
        return
    if _aware(row.lease_until) > now:
        raise ConnectorBusy(connector, f"run {row.lease_run_id} holds it; this batch is not landed")


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _townships_of(conn: Connection, cert_ids: Sequence[str]) -> set[str | None]:
    found: set[str | None] = set()
    for chunk in _chunks(cert_ids):
        found |= set(
            conn.execute(select(certificates.c.township).where(certificates.c.cert_id.in_(chunk))).scalars()
        )
    return found


def _mark_townships(conn: Connection, townships: Iterable[str | None]) -> None:
    """Mark township extracts stale in the landing transaction, so no crash can lose the mark."""
    marked = sorted(t for t in townships if t)
    for chunk in _chunks(marked):
        known = set(
            conn.execute(
                select(township_extracts.c.township).where(township_extracts.c.township.in_(chunk))
            ).scalars()
        )
        for township in chunk:
            if township not in known:
                insert_missing(
                    conn, township_extracts, {"township": township, "generation": 0, "written_generation": 0}
                )
        conn.execute(
            update(township_extracts)
            .where(township_extracts.c.township.in_(chunk))
            .values(generation=township_extracts.c.generation + 1)
        )


@dataclass(frozen=True)
class Issued:
    """What :func:`issue_certificates` did in the landing transaction."""

    certificates: int
    tree_size: int
    townships: frozenset[str]


def issue_certificates(
    conn: Connection,
    log: TransparencyLog,
    compiled: CompiledContract,
    drafts: pa.Table,
    *,
    batch_id: str,
    issue_date: dt.date,
    now: dt.datetime,
    receipt: Callable[[int], tuple[bytes, str, str]],
) -> Issued:
    """Issue the certificates of a batch's drafts (:func:`~evidence.certificate.draft_table`).

    In the caller's transaction: drafts never issued get new identifiers (consecutive serials),
    changed ones the next version of theirs; every one a status-list position; their RFC 8785
    bytes are built for the whole batch at once (``canonical_rows``), appended to the log with
    ``receipt(count)`` as the last leaf under ONE signed checkpoint, and stored with one bulk
    insert per table. Superseded versions become 失效 and the townships concerned are marked.
    Each certificate equals :func:`evidence.certificate.issue` of its draft, byte for byte.
    """
    spec = compiled.certificate
    dataset = compiled.contract.id
    new, renewals = _new_or_changed(conn, dataset, drafts) if spec is not None else ([], [])
    if spec is None or not (new or renewals):
        appended = log.append(conn, [receipt(0)])
        return Issued(0, appended.tree_size, frozenset())
    first_serial = _allocate_serials(conn, spec.type_code, spec.issuer_code, len(new)) if new else 0
    serial_of_new = np.arange(first_serial, first_serial + len(new), dtype=np.int64)
    # GB/T 36904: a renewed certificate is another version of the same one, same serial.
    renewed_ids = [CertificateId.parse(previous).with_version(v) for _, previous, v in renewals]
    ids = pa.concat_arrays(
        [
            certificate_ids(spec.type_code, spec.issuer_code, serial_of_new, np.ones(len(new), np.int64)),
            pa.array([str(c) for c in renewed_ids], pa.string()),
        ]
    )
    plan = drafts.take(pa.array(new + [i for i, _, _ in renewals], pa.int64()))
    count = plan.num_rows
    # Every version gets its own status-list entry, written into the certificate (its leaf).
    list_no, status_index = allocate_positions(conn, spec.issuer_code, count)
    valid_from = plan.column("valid_from")
    plan = plan.append_column("cert_id", ids)
    plan = plan.append_column(
        "serial", pa.array(np.concatenate([serial_of_new, [c.serial for c in renewed_ids]]).astype(np.int64))
    )
    plan = plan.append_column(
        "version",
        pa.array(np.concatenate([np.ones(len(new)), [c.version for c in renewed_ids]]).astype(np.int64)),
    )
    plan = plan.append_column(
        "previous", pa.array([None] * len(new) + [p for _, p, _ in renewals], pa.string())
    )
    plan = plan.append_column(
        # `draft.valid_from or issue date`, as `issue` does
        "issued_valid_from",
        pc.fill_null(pc.if_else(pc.equal(valid_from, ""), None, valid_from), issue_date.isoformat()),
    )
    plan = plan.append_column("list_no", pa.array(list_no))
    plan = plan.append_column("status_index", pa.array(status_index))
    shape = {
        **content_shape(compiled),
        "schema": CERTIFICATE_SCHEMA,
        "id": JsonColumn("cert_id"),
        "issue_date": issue_date.isoformat(),
        "valid_from": JsonColumn("issued_valid_from"),
        "version": JsonColumn("version"),
        "previous": JsonColumn("previous"),
        "source": {"dataset": dataset, "contract": compiled.ref, "batch": batch_id},
        "credential_status": {
            "issuer": spec.issuer_code,
            "list": JsonColumn("list_no"),
            "index": JsonColumn("status_index"),
        },
    }
    canonical = canonical_rows(shape, plan).cast(pa.binary())
    appended = log.append_certificates(conn, ids, canonical, [receipt(count)])
    cert_ids: list[str] = ids.to_pylist()
    tree_size = appended.tree_size
    _insert_certificates(conn, compiled, plan, appended.first_index, batch_id, issue_date)
    superseded = [previous for _, previous, _ in renewals]
    townships = {t for t in pc.unique(plan.column("township")).to_pylist() if t}
    _mark_townships(conn, townships | _townships_of(conn, superseded))
    for chunk in _chunks(superseded):
        # Only a version in force becomes 失效; a revoked (撤销) one keeps its status.
        conn.execute(
            update(certificates)
            .where(and_(certificates.c.cert_id.in_(chunk), certificates.c.status == STATUS_VALID))
            .values(status=STATUS_SUPERSEDED)
        )
    renewed = list(zip(cert_ids[len(new) :], superseded, strict=True))
    carried = Lifecycle(log).carry_suspensions(conn, renewed, now=now)
    if carried:  # their lifecycle leaves follow the batch's append
        tree_size = carried[-1].leaf_index + 1
    return Issued(count, tree_size, frozenset(townships))


def _insert_certificates(
    conn: Connection,
    compiled: CompiledContract,
    plan: pa.Table,
    first_leaf: int,
    batch_id: str,
    issue_date: dt.date,
) -> None:
    spec = compiled.certificate
    assert spec is not None
    count = plan.num_rows
    arrays: dict[str, pa.Array | pa.ChunkedArray] = {
        "cert_id": plan.column("cert_id"),
        "record_key": plan.column("record_key"),
        "holder_id": plan.column("holder_id"),
        "holder_name": plan.column("holder_name"),
        "serial": plan.column("serial"),
        "version": plan.column("version"),
        "status": plan.column("status"),
        "valid_from": _dates(conn, compiled, plan.column("issued_valid_from"), "valid_from"),
        "valid_to": _dates(conn, compiled, plan.column("valid_to"), "valid_to"),
        "township": plan.column("township"),
        "content_sha256": plan.column("content_sha256"),
        "previous_id": plan.column("previous"),
        "list_no": plan.column("list_no"),
        "status_index": plan.column("status_index"),
    }
    constants: dict[str, Any] = {
        "dataset": compiled.contract.id,
        "type_code": spec.type_code,
        "type_name": spec.type_name,
        "issuer_code": spec.issuer_code,
        "issue_date": bind_value(conn, certificates.c.issue_date, issue_date),
        "batch_id": batch_id,
    }
    # A column with one value in the whole batch (most are: status 有效, no previous version,
    # one status list, often no validity end) is a constant too: no Python object per row.
    columns: dict[str, Any] = {"leaf_index": range(first_leaf, first_leaf + count)}
    for name, array in arrays.items():
        if count > 1 and pc.count_distinct(array, mode="all").as_py() == 1:
            constants[name] = array[0].as_py()
        else:
            columns[name] = array.to_pylist()
    insert_rows(conn, certificates, list(columns), list(zip(*columns.values(), strict=True)), constants)


def _dates(
    conn: Connection, compiled: CompiledContract, text: pa.ChunkedArray, name: str
) -> pa.Array | pa.ChunkedArray:
    """The date at the start of each text value (a date or timestamp), as ``name`` is bound."""
    head = pc.utf8_slice_codeunits(pc.if_else(pc.equal(text, ""), None, text), 0, 10)
    try:
        dates = pc.strptime(head, format="%Y-%m-%d", unit="s").cast(pa.date32())
    except pa.ArrowInvalid as exc:
        raise ContractError(
            f"contract {compiled.ref}: the certificates' {name} holds a value that is not a date ({exc})"
        ) from exc
    if conn.dialect.name == "sqlite":  # stored as ISO text, as SQLAlchemy's DATE binds it
        return dates.cast(pa.string())
    return dates


def _new_or_changed(
    conn: Connection, dataset: str, drafts: pa.Table
) -> tuple[list[int], list[tuple[int, str, int]]]:
    """Drafts never issued (their row numbers), and drafts whose record changed (with the id
    and version to follow). One certificate per (record, holder), even if a holder appears twice."""
    if drafts.num_rows == 0:
        return [], []
    # The first row of each (record, holder), in row order.
    rows = pa.table(
        {
            "record_key": drafts.column("record_key"),
            "holder_id": drafts.column("holder_id"),
            "row": pa.array(np.arange(drafts.num_rows, dtype=np.int64)),
        }
    )
    firsts = rows.group_by(["record_key", "holder_id"], use_threads=False).aggregate([("row", "min")])
    firsts = firsts.sort_by("row_min")
    latest: dict[tuple[str, str], tuple[str, int, str]] = {}
    # By record key alone: `(record_key, holder_id) IN (...)` is not an index lookup on SQLite
    # (nor on PostgreSQL); it scanned every certificate of the dataset once per chunk.
    columns = select(
        certificates.c.record_key,
        certificates.c.holder_id,
        certificates.c.cert_id,
        certificates.c.version,
        certificates.c.content_sha256,
    )
    keys = sorted(pc.unique(firsts.column("record_key")).to_pylist())
    if conn.dialect.name == "sqlite":
        # The batch's keys as ONE JSON parameter: SQLAlchemy renders no bind per key, and
        # SQLite probes the (dataset, record_key, ...) index once per key.
        listed = func.json_each(json.dumps(keys, ensure_ascii=False)).table_valued("value")
        wanted = [certificates.c.record_key.in_(select(listed.c.value))]
    else:
        wanted = [certificates.c.record_key.in_(chunk) for chunk in _chunks(keys, _KEY_CHUNK)]
    for condition in wanted:
        rows = conn.execute(columns.where(and_(certificates.c.dataset == dataset, condition)))
        for r in rows:
            key = (r.record_key, r.holder_id)
            if key not in latest or r.version > latest[key][1]:
                latest[key] = (r.cert_id, int(r.version), r.content_sha256)
    first_rows: list[int] = firsts.column("row_min").to_pylist()
    if not latest:
        return first_rows, []
    digests: list[str] = drafts.column("content_sha256").to_pylist()
    record_keys = firsts.column("record_key").to_pylist()
    holder_ids = firsts.column("holder_id").to_pylist()
    new: list[int] = []
    renewals: list[tuple[int, str, int]] = []
    for key, i in zip(zip(record_keys, holder_ids, strict=True), first_rows, strict=True):
        found = latest.get(key)
        if found is None:
            new.append(i)
        elif found[2] != digests[i]:
            renewals.append((i, found[0], found[1] + 1))
    return new, renewals


def _allocate_serials(conn: Connection, type_code: str, issuer: str, count: int) -> int:
    insert_missing(conn, serials, {"type_code": type_code, "issuer_code": issuer, "next_serial": 1})
    key = and_(serials.c.type_code == type_code, serials.c.issuer_code == issuer)
    first = int(conn.execute(select(serials.c.next_serial).where(key).with_for_update()).scalar_one())
    conn.execute(update(serials).where(key).values(next_serial=first + count))
    return first


def _fit(value: str | None, column: Column[Any]) -> str | None:
    length = getattr(column.type, "length", None)
    return value if value is None or length is None else value[:length]


def _record_keys(table: pa.Table, key_columns: Sequence[str]) -> set[str]:
    columns = [table.column(c).cast(pa.string()).to_pylist() for c in key_columns]
    return {"|".join(v or "" for v in values) for values in zip(*columns, strict=True)}


def _chunks(items: Iterable[Any], size: int = _IN_CHUNK) -> Iterable[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = [
    "Breach",
    "Issued",
    "LandedBatch",
    "Lander",
    "acquire_lease",
    "batch_id_for",
    "content_digest",
    "issue_certificates",
    "record_failure",
    "release_lease",
    "save_cursor",
]
