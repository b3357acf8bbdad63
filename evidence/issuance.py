"""Issuing a landed batch's certificates: serials, versions, status positions and log leaves.

Example (what ``lake.landing`` does inside the landing transaction)::

    drafts = draft_table(validation.accepted, compiled)          # evidence.certificate
    with catalog.begin() as conn:
        issued = issue_certificates(conn, log, compiled, drafts, batch_id=batch_id,
                                    issue_date=today, now=now, receipt=receipt)

Drafts never issued get new identifiers (consecutive serials per type and issuer); a draft whose
record changed gets the next version of its certificate (GB/T 36904: same serial), and the
version it replaces becomes 失效 (superseded). Every version gets its own status-list position.
The certificates' RFC 8785 bytes are built column-wise for the whole batch; the log gets a
salted commitment to each (``evidence.commitment``: the published log names nobody), appended
with the batch's receipt as the last leaf under one signed checkpoint; the certificates and
their salts are kept beside the log (``certificate_openings``), the rows with one bulk insert.
The townships concerned are marked stale (``evidence.townships``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Connection

from catalog import bind_value, certificates, chunks, insert_missing, insert_rows, serials
from contracts.compiler import CompiledContract
from evidence.canonical import Column as JsonColumn
from evidence.canonical import canonical_rows
from evidence.certificate import (
    CERTIFICATE_SCHEMA,
    STATUS_SUPERSEDED,
    STATUS_VALID,
    content_shape,
)
from evidence.commitment import ENTRY_SCHEMA, commitment, new_salts
from evidence.identifier import CertificateId, certificate_ids
from evidence.lifecycle import Lifecycle
from evidence.log import TransparencyLog
from evidence.status_list import allocate_positions
from evidence.townships import mark_stale, townships_of
from onceonly.errors import ContractError

_KEY_CHUNK = 5_000  # record keys per lookup of earlier versions (SQLite allows 32,766 parameters)


def salts_for(ids: pa.Array) -> pa.Array:
    """A fresh random salt (``evidence.commitment``) for each certificate of ``ids``."""
    return pa.array(new_salts(len(ids)), pa.binary())


def commitments(salts: pa.Array, bodies: pa.Array) -> pa.Array:
    """The commitment (``evidence.commitment``, hex) to each certificate of ``bodies`` under its salt."""
    count = len(bodies)
    digests = b"".join(
        commitment(salt, body) for salt, body in zip(salts.to_pylist(), bodies.to_pylist(), strict=True)
    )
    # One hex conversion for the whole batch, cut into 64-character strings by their offsets.
    offsets = np.arange(0, 64 * (count + 1), 64, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(digests.hex().encode()))


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
    # The log gets a commitment to each certificate, not the certificate (its holder's name and
    # ID number): evidence.commitment. The certificate and its salt are kept beside the log.
    salts = salts_for(ids)
    plan = plan.append_column("commitment", commitments(salts, canonical))
    entry_shape = {
        "schema": ENTRY_SCHEMA,
        "id": JsonColumn("cert_id"),
        "type": {"code": spec.type_code, "name": spec.type_name},
        "issuer": {"code": spec.issuer_code, "name": spec.issuer_name},
        "issue_date": issue_date.isoformat(),
        "credential_status": shape["credential_status"],
        "commitment": JsonColumn("commitment"),
    }
    entries = canonical_rows(entry_shape, plan).cast(pa.binary())
    appended = log.append_certificates(conn, ids, entries, [receipt(count)], openings=(salts, canonical))
    cert_ids: list[str] = ids.to_pylist()
    tree_size = appended.tree_size
    _insert_certificates(conn, compiled, plan, appended.first_index, batch_id, issue_date)
    superseded = [previous for _, previous, _ in renewals]
    townships = {t for t in pc.unique(plan.column("township")).to_pylist() if t}
    mark_stale(conn, townships | townships_of(conn, superseded))
    for chunk in chunks(superseded):
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
        wanted = [certificates.c.record_key.in_(chunk) for chunk in chunks(keys, _KEY_CHUNK)]
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


__all__ = ["Issued", "commitments", "issue_certificates", "salts_for"]
