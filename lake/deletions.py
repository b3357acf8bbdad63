"""Records deleted at a snapshot source cancel (注销) the certificates issued from them, exactly once.

Example (what the daily flow does around each landed batch)::

    pending = PendingDeletions(settings.home, "minzheng-marriages")
    settle_pending(catalog, log, pending, dataset, status_dir=..., drop_unlanded=True)  # a dead run's
    keys = deleted_record_keys(pulled.deleted, registration_key, compiled, connector=...)
    pending.stage(batch_id, keys)                   # durable BEFORE the batch's landing commits
    lander.land(...)                                # the cursor moves past the deletion
    cancel_deleted(catalog, log, pending, batch_id, dataset, keys, status_dir=...)  # one transaction

Landing commits in its own transaction (``lake.landing``), so the cancellation cannot share it.
Instead the deleted keys are written to ``<home>/deletions/<connector>/<batch>.parquet`` before
the batch lands and removed only after the cancellation committed. A run that dies between the
two finds the file on its next pull of the connector (under the connector's lease) and cancels
then, before pulling anything newer; a file whose batch never landed is dropped (the snapshot
yields the deletion again with the batch). Each cancellation's reason names its batch, and a
batch whose cancellation is already in ``certificate_events`` is not cancelled again, so a
replayed batch or a settle after a crash past the commit changes nothing (and
``Lifecycle.cancel_for_deleted`` ignores certificates no longer in force anyway).

Keys: snapshot keys are decoded by ``connectors.snapshot.decode_keys``; certificates carry the
contract's record key (``CompiledContract.record_keys``). The snapshot key columns must be the
contract's primary key columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import and_, select

from catalog import Catalog, batches, certificate_events
from connectors.snapshot import decode_keys
from contracts.compiler import CompiledContract
from evidence.lifecycle import Lifecycle
from evidence.log import TransparencyLog
from evidence.status_list import publish_status_lists, write_status_files
from onceonly.errors import ConfigurationError
from onceonly.files import private_dir, write_atomic
from onceonly.privacy import scrub_text

_KEY = "record_key"


def deleted_record_keys(
    deleted: pa.Array | pa.ChunkedArray,
    snapshot_key: Sequence[str],
    compiled: CompiledContract,
    *,
    connector: str,
) -> list[str]:
    """The ``certificates.record_key`` values of snapshot keys reported deleted."""
    if sorted(snapshot_key) != sorted(compiled.record_key):
        raise ConfigurationError(
            f"connector {connector!r}: its snapshot key ({', '.join(snapshot_key)}) is not the "
            f"contract's primary key ({', '.join(compiled.record_key)}); deleted records cannot be "
            "matched to the certificates issued from them — set options.key to the primary key columns"
        )
    columns = decode_keys(deleted, snapshot_key)
    keys = compiled.record_keys({name: columns.column(name) for name in snapshot_key})
    return [str(k) for k in pc.fill_null(keys, "").to_pylist()]


class PendingDeletions:
    """One connector's deletions staged before their batch lands (a file per batch)."""

    def __init__(self, home: Path, connector: str) -> None:
        self.dir = Path(home) / "deletions" / connector
        self.connector = connector

    def path(self, batch_id: str) -> Path:
        return self.dir / f"{batch_id}.parquet"

    def stage(self, batch_id: str, keys: Sequence[str]) -> None:
        """Write the batch's deleted record keys durably (fsync, atomic rename, mode 600)."""
        private_dir(self.dir)
        table = pa.table({_KEY: pa.array(list(keys), pa.string())})
        write_atomic(self.path(batch_id), lambda tmp: pq.write_table(table, tmp))

    def batches(self) -> list[str]:
        """The batches with staged deletions, oldest file first."""
        if not self.dir.is_dir():
            return []
        files = sorted(self.dir.glob("*.parquet"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.stem for p in files]

    def keys(self, batch_id: str) -> list[str]:
        return [str(k) for k in pq.read_table(self.path(batch_id)).column(_KEY).to_pylist()]

    def done(self, batch_id: str) -> None:
        self.path(batch_id).unlink(missing_ok=True)


@dataclass(frozen=True)
class Cancelled:
    batch_id: str
    certificates: int
    already: bool = False


def deletion_reason(connector: str, batch_id: str) -> str:
    return f"the source record was deleted (connector {connector}, batch {batch_id[:16]})"


def cancel_deleted(
    catalog: Catalog,
    log: TransparencyLog,
    pending: PendingDeletions,
    batch_id: str,
    dataset: str,
    keys: Sequence[str],
    *,
    status_dir: Path,
) -> Cancelled:
    """注销 the certificates of ``keys`` for a landed batch and republish the status lists.

    One transaction: the lifecycle leaves, the catalog status, the events and the signed lists.
    Then the published list files in ``status_dir`` are rewritten and the staged file removed.
    """
    reason = scrub_text(deletion_reason(pending.connector, batch_id))  # as the lifecycle stores it
    with catalog.begin() as conn:
        seen = conn.execute(
            select(certificate_events.c.id)
            .where(and_(certificate_events.c.action == "cancel", certificate_events.c.reason == reason))
            .limit(1)
        ).first()
        if seen is not None:
            cancelled = Cancelled(batch_id, 0, already=True)
        else:
            changes = Lifecycle(log).cancel_for_deleted(conn, dataset, keys, reason=reason)
            if changes:
                publish_status_lists(conn, log)
            cancelled = Cancelled(batch_id, len(changes))
    if cancelled.certificates:
        write_status_files(catalog, status_dir)
    pending.done(batch_id)
    return cancelled


def settle_pending(
    catalog: Catalog,
    log: TransparencyLog,
    pending: PendingDeletions,
    dataset: str,
    *,
    status_dir: Path,
    drop_unlanded: bool,
) -> list[Cancelled]:
    """Cancel for every staged batch that has landed; with ``drop_unlanded`` (only under the
    connector's lease) drop the files of batches that never landed."""
    staged = pending.batches()
    if not staged:
        return []
    with catalog.read() as conn:
        landed = set(conn.execute(select(batches.c.batch_id).where(batches.c.batch_id.in_(staged))).scalars())
    done = []
    for batch_id in staged:
        if batch_id in landed:
            keys = pending.keys(batch_id)
            done.append(cancel_deleted(catalog, log, pending, batch_id, dataset, keys, status_dir=status_dir))
        elif drop_unlanded:
            pending.done(batch_id)
    return done


__all__ = [
    "Cancelled",
    "PendingDeletions",
    "cancel_deleted",
    "deleted_record_keys",
    "deletion_reason",
    "settle_pending",
]
