"""E-certificates (电子证照) built from accepted records, GB/T 36903-style metadata.

Example::

    drafts = drafts_from(accepted_table, compiled)        # one per (record, holder)
    cert = issue(drafts[0], CertificateId.build(...), issue_date=today, batch_id=b, contract=ref)
    canonical = certificate_leaf_bytes(cert)              # RFC 8785 bytes: the log leaf

Landing builds the drafts of a whole batch column-wise (``draft_table``: one Arrow row per
draft, the same values) and issues them in bulk (``lake.landing.issue_certificates``), with
bytes equal to ``issue`` of each draft.

A draft holds what comes from the department's record; ``issue`` adds the identifier, the
issue date, the status and where it came from (dataset, contract id@version, batch), so every
certificate shows it was issued through a contract gate. ``content_sha256`` covers only the
record-derived part, so an unchanged record is recognised and never issued twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contracts.compiler import CompiledContract
from contracts.identifiers import HOLDER_ID_TYPES
from evidence.canonical import Column, canonical_json, canonical_rows, sha256_hex
from evidence.identifier import CertificateId
from onceonly.errors import ContractError

CERTIFICATE_SCHEMA = "onceonly-ecert/1"
# GB/T 36903 certificate states (证照状态). A superseded version is 失效 too; the status list
# tells it apart from an expired one by the newer version that names it as ``previous``.
STATUS_VALID = "有效"
STATUS_SUSPENDED = "暂扣"
STATUS_REVOKED = "撤销"
STATUS_WITHDRAWN = "吊销"  # revoked as a penalty (a licence withdrawn)
STATUS_CANCELLED = "注销"
STATUS_EXPIRED = "失效"
STATUS_SUPERSEDED = STATUS_EXPIRED

# Holder identity document types and their codes: contracts.identifiers (the contract
# check refuses an unknown idType before anything runs).


@dataclass(frozen=True)
class Draft:
    dataset: str
    record_key: str
    holder_id: str
    holder_name: str | None
    township: str | None
    valid_from: str | None
    valid_to: str | None
    content: dict[str, Any]
    content_sha256: str


def drafts_from(table: pa.Table, compiled: CompiledContract) -> list[Draft]:
    """Certificate drafts for every accepted row and holder of a certificate-bearing dataset.

    One Python object per draft: the readable reference that :func:`draft_table` (what
    landing uses, column-wise) is tested against, and what :func:`issue` takes.
    """
    spec = compiled.certificate
    if spec is None or table.num_rows == 0:
        return []
    needed = {spec.number_column, *spec.fields, *compiled.record_key}
    needed |= {c for c in (spec.valid_from_column, spec.valid_to_column, spec.status_column) if c}
    for h in spec.holders:
        needed |= {
            h["nameColumn"],
            h["idColumn"],
            *([h["townshipColumn"]] if h.get("townshipColumn") else []),
        }
    # Dates, decimals and timestamps become their text form once, vectorised.
    text = {name: _text_column(table.column(name)) for name in needed}
    dataset = compiled.contract.id
    id_types = {}
    for h in spec.holders:
        name = h.get("idType", "居民身份证")
        if name not in HOLDER_ID_TYPES:
            raise ContractError(
                f"contract {compiled.ref}: holder idType {name!r} is not a known holder identity type "
                f"({', '.join(HOLDER_ID_TYPES)})"
            )
        id_types[h["idColumn"]] = name
    keys = compiled.record_keys({c: pa.array(text[c], pa.string()) for c in compiled.record_key})
    record_keys: list[str] = pc.fill_null(keys, "").to_pylist()
    drafts: list[Draft] = []
    for i in range(table.num_rows):
        record_key = record_keys[i]
        fields = {f: text[f][i] for f in spec.fields}
        valid_from = text[spec.valid_from_column][i] if spec.valid_from_column else None
        valid_to = text[spec.valid_to_column][i] if spec.valid_to_column else None
        # GB/T 36903 status from the source's own status (吊销, 注销 …); the contract's enum
        # admits only mapped values, so an unmapped one never reaches this point.
        status = (
            spec.status_map.get(text[spec.status_column][i] or "", STATUS_VALID)
            if spec.status_column
            else STATUS_VALID
        )
        for holder in spec.holders:
            holder_id = text[holder["idColumn"]][i]
            if not holder_id:
                continue
            township = text[holder["townshipColumn"]][i] if holder.get("townshipColumn") else None
            content = {
                "number": text[spec.number_column][i],
                "type": {"code": spec.type_code, "name": spec.type_name},
                "issuer": {"name": spec.issuer_name, "code": spec.issuer_code},
                "holder": {
                    "name": text[holder["nameColumn"]][i],
                    "id_type": id_types[holder["idColumn"]],
                    "id_type_code": HOLDER_ID_TYPES[id_types[holder["idColumn"]]],
                    "id": holder_id,
                },
                "valid_from": valid_from,
                "valid_to": valid_to,
                "township": township,
                "status": status,
                "fields": fields,
            }
            drafts.append(
                Draft(
                    dataset=dataset,
                    record_key=record_key,
                    holder_id=holder_id,
                    holder_name=text[holder["nameColumn"]][i],
                    township=township,
                    valid_from=valid_from,
                    valid_to=valid_to,
                    content=content,
                    # RFC 8785 bytes (the same as rfc8785.dumps, ten times faster here)
                    content_sha256=hashlib.sha256(canonical_json(content)).hexdigest(),
                )
            )
    return drafts


# Columns of a draft table (:func:`draft_table`); a contract's certificate fields follow as
# ``field:<name>``, so that no field name can collide with these.
DRAFT_COLUMNS = (
    "record_key",
    "holder_id",
    "holder_name",
    "id_type",
    "id_type_code",
    "number",
    "township",
    "valid_from",
    "valid_to",
    "status",
    "content_sha256",
)


def content_shape(compiled: CompiledContract) -> dict[str, Any]:
    """The shape (:func:`evidence.canonical.canonical_rows`) of a draft's ``content``.

    What the contract fixes for every draft (one holder identity type, no township, validity
    or status column) is a constant, not a column of the draft table: the same JSON text, with
    fewer pieces to join per row.
    """
    spec = compiled.certificate
    if spec is None:
        raise ContractError(f"contract {compiled.ref} issues no certificates")
    holder: dict[str, Any] = {
        "name": Column("holder_name"),
        "id_type": Column("id_type"),
        "id_type_code": Column("id_type_code"),
        "id": Column("holder_id"),
    }
    id_types = {h.get("idType", "居民身份证") for h in spec.holders}
    if len(id_types) == 1 and id_types <= HOLDER_ID_TYPES.keys():  # else draft_table says why
        (id_type,) = id_types
        holder.update(id_type=id_type, id_type_code=HOLDER_ID_TYPES[id_type])
    return {
        "number": Column("number"),
        "type": {"code": spec.type_code, "name": spec.type_name},
        "issuer": {"name": spec.issuer_name, "code": spec.issuer_code},
        "holder": holder,
        "valid_from": Column("valid_from") if spec.valid_from_column else None,
        "valid_to": Column("valid_to") if spec.valid_to_column else None,
        "township": Column("township") if any(h.get("townshipColumn") for h in spec.holders) else None,
        "status": Column("status") if spec.status_column else STATUS_VALID,
        "fields": {f: Column(f"field:{f}") for f in spec.fields},
    }


def draft_table(table: pa.Table, compiled: CompiledContract) -> pa.Table:
    """:func:`drafts_from` column-wise: one row per (record, holder), the same values and order.

    Columns are :data:`DRAFT_COLUMNS` and ``field:<name>`` for the contract's certificate
    fields, all text; ``content_sha256`` is the SHA-256 of the content's RFC 8785 bytes, built
    holder by holder for all rows with :func:`~evidence.canonical.canonical_rows` and hashed
    from the Arrow buffer (:func:`~evidence.canonical.sha256_hex`). A record with several
    holders gives its rows one after the other, holder by holder, like :func:`drafts_from`.
    """
    spec = compiled.certificate
    if spec is None or table.num_rows == 0:
        return pa.table({name: pa.array([], pa.string()) for name in DRAFT_COLUMNS})
    text = {}

    def column(name: str) -> pa.Array:
        if name not in text:
            text[name] = _text_array(table.column(name))
        return text[name]

    n = table.num_rows
    record_key = pc.fill_null(compiled.record_keys({c: column(c) for c in compiled.record_key}), "")
    status: pa.Array
    if spec.status_column:
        source = pc.fill_null(column(spec.status_column), "")
        # GB/T 36903 status from the source's own status (吊销, 注销 …), else 有效.
        known = pa.array(list(spec.status_map), pa.string())
        mapped = pa.array(list(spec.status_map.values()), pa.string())
        status = pc.fill_null(mapped.take(pc.index_in(source, value_set=known)), STATUS_VALID)
    else:
        status = pa.repeat(STATUS_VALID, n)
    nulls = pa.nulls(n, pa.string())
    shape = content_shape(compiled)
    parts = []
    for ordinal, holder in enumerate(spec.holders):
        id_type = holder.get("idType", "居民身份证")
        if id_type not in HOLDER_ID_TYPES:
            raise ContractError(
                f"contract {compiled.ref}: holder idType {id_type!r} is not a known holder identity type "
                f"({', '.join(HOLDER_ID_TYPES)})"
            )
        holder_id = column(holder["idColumn"])
        part = pa.table(
            {
                "record_key": record_key,
                "holder_id": holder_id,
                "holder_name": column(holder["nameColumn"]),
                "id_type": pa.repeat(id_type, n),
                "id_type_code": pa.repeat(HOLDER_ID_TYPES[id_type], n),
                "number": column(spec.number_column),
                "township": column(holder["townshipColumn"]) if holder.get("townshipColumn") else nulls,
                "valid_from": column(spec.valid_from_column) if spec.valid_from_column else nulls,
                "valid_to": column(spec.valid_to_column) if spec.valid_to_column else nulls,
                "status": status,
                **{f"field:{f}": column(f) for f in spec.fields},
                "_order": np.arange(ordinal, n * len(spec.holders), len(spec.holders), dtype=np.int64),
            }
        )
        # A row without this holder (no ID) has no certificate for them.
        present = pc.fill_null(pc.not_equal(holder_id, ""), False)
        if not pc.all(present).as_py():
            part = part.filter(present)
        content = canonical_rows(_holder_shape(shape, holder, id_type), part)
        parts.append(part.append_column("content_sha256", sha256_hex(content)))
    drafts = pa.concat_tables(parts)
    if len(parts) > 1:
        drafts = drafts.sort_by("_order")
    return drafts.drop_columns("_order")


def _holder_shape(shape: dict[str, Any], holder: Mapping[str, Any], id_type: str) -> dict[str, Any]:
    """:func:`content_shape` with what is the same on every draft of ``holder`` as constants."""
    code = HOLDER_ID_TYPES[id_type]
    fixed = {**shape, "holder": {**shape["holder"], "id_type": id_type, "id_type_code": code}}
    if not holder.get("townshipColumn"):
        fixed["township"] = None
    return fixed


def issue(
    draft: Draft,
    cert_id: CertificateId,
    *,
    issue_date: dt.date,
    batch_id: str,
    contract: str,
    previous: str | None = None,
    status_entry: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The complete certificate object; its RFC 8785 bytes are the transparency-log leaf.

    ``status_entry`` (``evidence.status_list.StatusEntry.to_json()``) says where the
    certificate's state lies in its issuer's status list; the leaf covers it.
    """
    body = {
        "schema": CERTIFICATE_SCHEMA,
        "id": str(cert_id),
        **draft.content,
        "issue_date": issue_date.isoformat(),
        "valid_from": draft.valid_from or issue_date.isoformat(),
        "version": cert_id.version,
        "previous": previous,
        "source": {"dataset": draft.dataset, "contract": contract, "batch": batch_id},
    }
    if status_entry is not None:
        body["credential_status"] = dict(status_entry)
    return body


def _text_array(column: pa.ChunkedArray) -> pa.Array:
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S%z")
    elif not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    return column.combine_chunks()


def _text_column(column: pa.ChunkedArray) -> list[str | None]:
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S%z")
    elif not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    values: list[str | None] = column.to_pylist()
    return values


__all__ = [
    "CERTIFICATE_SCHEMA",
    "DRAFT_COLUMNS",
    "HOLDER_ID_TYPES",
    "STATUS_CANCELLED",
    "STATUS_EXPIRED",
    "STATUS_REVOKED",
    "STATUS_SUPERSEDED",
    "STATUS_SUSPENDED",
    "STATUS_VALID",
    "STATUS_WITHDRAWN",
    "Draft",
    "content_shape",
    "draft_table",
    "drafts_from",
    "issue",
]
