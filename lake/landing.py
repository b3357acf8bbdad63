"""Land one validated batch: lake files, quarantine, certificates, log, cursor — atomically.

Example::

    lander = Lander(catalog, ParquetLake.of(settings), log, run_id=run_id)
    landed = lander.land(connector="gongan-household", compiled=compiled, validation=v,
                         cursor_before=cursor, cursor_after=pulled.cursor, content_sha256=digest)

Order of work: Parquet files are staged first (named after the batch id), then ONE catalog
transaction writes the batch row, its quarantine rows, its certificates, their log leaves and
signed checkpoint, and the connector's new cursor; only then are the files published into the
lake. If anything fails before the commit, nothing in the catalog changed, the next run pulls
the same rows again, and the staged files are discarded; if the commit succeeded, the cursor
has moved past them and the files are published — if the process died in between, by the next
run's start-up recovery (``settle_staged`` under the connector's lease) or the connector's next
landing. The staged files are fsync'd before the commit. Nothing is lost or doubled either way.
With ``lease_seconds`` (the flow), a batch lands only while the run still holds the connector's
lease: a run taken for dead that comes back lands nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Column, and_, insert, select, update
from sqlalchemy.engine import Connection

from catalog import Catalog, batches, breaches, chunks, quarantine, utcnow
from connectors.base import Cursor
from connectors.state import check_lease, renew_lease, save_cursor
from contracts.compiler import CompiledContract
from contracts.validate import Validation
from evidence.canonical import canonical_json
from evidence.certificate import draft_table
from evidence.issuance import issue_certificates
from evidence.log import KIND_BREACH_RECEIPT, TransparencyLog, batch_receipt, log_entry
from lake.parquet import ParquetLake

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
    #: False when this very batch was refused before (the same rows pulled again, still bad).
    first: bool = True


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
    """The id of a landed batch. Deterministic: the same rows pulled from the same cursor get the same id.

    It does not depend on the contract: the id names the batch's staged and lake files and its
    staged deletions (``lake.deletions``), which a retry after a crash must find again, and a
    landed batch is landed once, whatever contract a retry runs under.
    """
    material = json.dumps([connector, cursor_before, content_sha256], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def refused_batch_id(connector: str, cursor_before: Cursor | None, content_sha256: str, contract: str) -> str:
    """The id of a batch refused under ``contract`` (``id@version``): ``<landed id>-<12 hex of contract>``.

    A refusal is a judgment of rows that were not landed: the cursor stays put, so the same rows
    come back, and once the contract is fixed they land, or are judged again under another
    version. Had the refusal the landed id, the refused and the landed batch would share one id
    (every quarantine entry listed twice, and the refused entries never resolved, since a
    landing resolves the entries of OTHER batches). So a refusal commits to the contract it was
    judged under, and keeps the landed id as its prefix: the refusals of the same rows are found
    by that prefix when the rows are judged again (:meth:`Lander.land`, :meth:`Lander.refuse`).
    The same rows from the same cursor under the same contract still get the same id, so a
    refusal pulled again is recorded once.
    """
    contract_digest = hashlib.sha256(contract.encode()).hexdigest()[:12]
    return f"{batch_id_for(connector, cursor_before, content_sha256)}-{contract_digest}"


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
        files = self.lake.staged_files(connector, batch_id)
        failures = quarantine_rows(compiled, batch_id, validation)
        drafts = draft_table(validation.accepted, compiled)
        today = issue_date or dt.date.today()

        with self.catalog.begin() as conn:
            now = utcnow()
            check_lease(conn, connector, self.run_id, now, held=self.lease_seconds is not None)

            def receipt(issued: int) -> tuple[bytes, str, str]:
                # The batch's receipt is the last leaf of its append: what came in, under which
                # contract, what passed, and the lake files and quarantine rows it left (so an
                # edit of any of them is found) — for every accepted batch, certificates or not.
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
                    files=files,
                    quarantine_sha256=quarantine_digest(failures),
                    resolved=(len(resolved), resolution_digest(resolved)),
                )

            # Quarantine first, so that the receipt can record what this batch resolved.
            resolved = self._quarantine(conn, compiled, batch_id, validation, failures, now)
            resolved += _supersede_refusals(conn, connector, batch_id, batch_id, now)
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
                renew_lease(conn, connector, self.run_id, self.lease_seconds)
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
        cursor stays put. The same batch pulled again under the same contract (same id) is
        recorded once; under another contract it is a new judgment of the same rows, which
        supersedes the open entries of the earlier refusal (see :func:`refused_batch_id`).
        """
        dataset = compiled.contract.id
        batch_id = refused_batch_id(connector, cursor_before, content_sha256, compiled.ref)
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
        name = f"breach-{batch_id}"
        self.lake.write_quarantine(dataset, name, validation.quarantined)
        kept = self.lake.quarantine_dir(dataset) / f"{name}.parquet"
        files = (
            [{"path": kept.relative_to(self.lake.root).as_posix(), **self.lake.file_facts(kept)}]
            if self.lake.is_file(kept)
            else []
        )
        failures = quarantine_rows(compiled, batch_id, validation)
        with self.catalog.begin() as conn:
            if conn.execute(select(breaches.c.batch_id).where(breaches.c.batch_id == batch_id)).first():
                return replace(breach, first=False)
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
            _insert_failures(conn, failures, now)
            same_rows = batch_id_for(connector, cursor_before, content_sha256)
            resolved = _supersede_refusals(conn, connector, same_rows, batch_id, now)
            # Logged like a landed batch's receipt: what was refused, its rows kept in quarantine
            # and its file, the earlier refusal's rows it resolved, so a deleted or resolved
            # quarantine row or an edited file is found.
            self.log.append(
                conn,
                [
                    log_entry(
                        KIND_BREACH_RECEIPT,
                        batch_id,
                        {
                            "batch": batch_id,
                            "contract": compiled.ref,
                            "dataset": dataset,
                            "counts": {"pulled": breach.pulled, "quarantined": breach.quarantined},
                            "error_rate": round(breach.error_rate, 6),
                            "max_error_rate": breach.max_error_rate,
                            "files": files,
                            "quarantine_sha256": quarantine_digest(failures),
                            "resolved": {"rows": len(resolved), "sha256": resolution_digest(resolved)},
                            "refused_at": now.isoformat(timespec="seconds"),
                        },
                    )
                ],
            )
        return breach

    def _settle_staged(self, connector: str) -> None:
        settle_staged(self.catalog, self.lake, connector)

    def _quarantine(
        self,
        conn: Connection,
        compiled: CompiledContract,
        batch_id: str,
        v: Validation,
        failures: list[dict[str, Any]],
        now: dt.datetime,
    ) -> list[dict[str, Any]]:
        """Insert the batch's failures; resolve (and return) the earlier entries it fixes."""
        dataset = compiled.contract.id
        _insert_failures(conn, failures, now)
        # A record that now passes its contract resolves what earlier batches quarantined or
        # warned about it (a warning it still carries was just found again, in this batch).
        # Looked up by this batch's keys (indexed), not by scanning the open
        # quarantine of the dataset, which only grows.
        keys = compiled.record_keys({c: v.accepted.column(c) for c in compiled.record_key})
        accepted_keys = set(pc.fill_null(keys, "").to_pylist())
        resolved: list[dict[str, Any]] = []
        for chunk in chunks(sorted(accepted_keys)):
            resolved += _resolve(
                conn,
                and_(
                    quarantine.c.dataset == dataset,
                    quarantine.c.record_key.in_(chunk),
                    quarantine.c.resolved_at.is_(None),
                    quarantine.c.batch_id != batch_id,
                ),
                batch_id,
                now,
            )
        return resolved

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


@dataclass(frozen=True)
class Settled:
    """What :func:`settle_staged` found in one connector's staging area."""

    connector: str
    published: tuple[str, ...]
    discarded: tuple[str, ...]


def settle_staged(catalog: Catalog, lake: ParquetLake, connector: str) -> Settled:
    """Publish what an earlier attempt staged and committed; discard what it never committed.

    Per connector, and only under the connector's lease (the landing run's own, or the one the
    next run's start-up recovery takes): what is staged under its name is then no other
    transaction's work in progress. A batch is committed exactly when its ``batches`` row exists.
    """
    staged = lake.staged(connector)
    if not staged:
        return Settled(connector, (), ())
    with catalog.read() as conn:
        landed = set(conn.execute(select(batches.c.batch_id).where(batches.c.batch_id.in_(staged))).scalars())
    for batch_id in staged:
        if batch_id in landed:
            lake.publish(connector, batch_id)
        else:
            lake.discard(connector, batch_id)
    return Settled(
        connector,
        tuple(b for b in staged if b in landed),
        tuple(b for b in staged if b not in landed),
    )


#: The columns of a quarantine row its batch's log receipt commits to (not when it was found or
#: resolved: those change as departments correct their records).
QUARANTINE_FACTS = ("record_key", "subject_id", "rule", "column", "severity", "value_masked")


def quarantine_rows(compiled: CompiledContract, batch_id: str, v: Validation) -> list[dict[str, Any]]:
    """One quarantine row per (row, rule) the batch broke, the value masked if personal."""
    return [
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
        }
        for f in v.failures
    ]


def quarantine_digest(rows: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of a batch's quarantine rows (:data:`QUARANTINE_FACTS`, in any order): what its
    receipt records and ``onceonly audit`` recomputes from the catalog."""
    facts = sorted([["" if row[k] is None else str(row[k]) for k in QUARANTINE_FACTS] for row in rows])
    return hashlib.sha256(canonical_json(facts)).hexdigest()


def _insert_failures(conn: Connection, rows: list[dict[str, Any]], now: dt.datetime) -> None:
    if rows:
        conn.execute(insert(quarantine), [{**row, "detected_at": now} for row in rows])


def _supersede_refusals(
    conn: Connection, connector: str, landed_id: str, judged_by: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """Resolve the open entries of earlier refusals of the same rows, now judged by ``judged_by``.

    The refusals of the rows that land (or would land) as ``landed_id`` are the breaches whose id
    is that id and a contract suffix (:func:`refused_batch_id`). Their rows were judged again,
    all of them: those that pass are fixed, and those that still fail are in ``judged_by``'s own
    entries, open, under the contract in force. Leaving the refusal's entries open would list
    every still-failing row twice, once under a contract version no longer in force.
    """
    refusals = list(
        conn.execute(
            select(breaches.c.batch_id).where(
                and_(
                    breaches.c.connector == connector,
                    breaches.c.batch_id.startswith(f"{landed_id}-", autoescape=True),
                    breaches.c.batch_id != judged_by,
                )
            )
        ).scalars()
    )
    if not refusals:  # the common case; ``breaches`` is small, ``quarantine`` only grows
        return []
    return _resolve(
        conn,
        and_(quarantine.c.batch_id.in_(refusals), quarantine.c.resolved_at.is_(None)),
        judged_by,
        now,
    )


#: The columns of a resolved quarantine row the resolving batch's receipt commits to.
RESOLUTION_FACTS = ("batch_id", "record_key", "rule", "column")


def _resolve(conn: Connection, where: Any, by: str, now: dt.datetime) -> list[dict[str, Any]]:
    """Resolve the open quarantine rows ``where`` selects, by batch ``by``; return their facts.

    Read first, then updated by id: the receipt of ``by`` records which rows it resolved. In
    the common case (nothing to resolve) this is the one indexed lookup the update was."""
    columns = [quarantine.c.id, *(quarantine.c[name] for name in RESOLUTION_FACTS)]
    rows = [dict(r._mapping) for r in conn.execute(select(*columns).where(where))]
    for chunk in chunks([r["id"] for r in rows]):
        conn.execute(
            update(quarantine)
            .where(and_(quarantine.c.id.in_(chunk), quarantine.c.resolved_at.is_(None)))
            .values(resolved_at=now, resolved_by_batch=by)
        )
    return rows


def resolution_digest(rows: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of the quarantine rows a batch resolved (:data:`RESOLUTION_FACTS`, in any order):
    what its receipt records and ``onceonly audit`` recomputes from the catalog."""
    facts = sorted([["" if row[k] is None else str(row[k]) for k in RESOLUTION_FACTS] for row in rows])
    return hashlib.sha256(canonical_json(facts)).hexdigest()


def _fit(value: str | None, column: Column[Any]) -> str | None:
    length = getattr(column.type, "length", None)
    return value if value is None or length is None else value[:length]


__all__ = [
    "QUARANTINE_FACTS",
    "RESOLUTION_FACTS",
    "Breach",
    "LandedBatch",
    "Lander",
    "Settled",
    "batch_id_for",
    "content_digest",
    "quarantine_digest",
    "quarantine_rows",
    "refused_batch_id",
    "resolution_digest",
    "settle_staged",
]
