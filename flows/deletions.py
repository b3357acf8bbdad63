"""Records deleted at a snapshot source cancel (注销) the certificates issued from them, exactly once.

Example (what ``flows.daily_sharing`` does around each landed batch)::

    pending = PendingDeletions(settings.home / "deletions", "minzheng-marriages")
    settle_pending(pipeline, pending, dataset, drop_unlanded=True)    # a run that died in between
    keys = record_keys(pulled.deleted, registration.options["key"], compiled.record_key, connector=...)
    pending.stage(batch_id, keys)                   # durable BEFORE the batch's landing commits
    lander.land(...)                                # the cursor moves past the deletion
    cancel_deleted(pipeline, pending, batch_id, dataset, keys)   # 注销 + status lists, one transaction

Landing commits in its own transaction (``lake.landing``), so the cancellation cannot share it.
Instead the deleted keys are written to ``<home>/deletions/<connector>/<batch>.parquet`` before
the batch lands and removed only after the cancellation committed. A run that dies between the
two finds the file on its next pull of the connector (under the connector's lease) and cancels
then, before pulling anything newer; a file whose batch never landed is dropped (the snapshot
yields the deletion again with the batch). Each cancellation's reason names its batch, and a
batch whose cancellation is already in ``certificate_events`` is not cancelled again, so a
replayed batch or a settle after a crash past the commit changes nothing (and
``Lifecycle.cancel_for_deleted`` ignores certificates no longer in force anyway).

Keys: snapshot keys are the canonical text of the registration's ``key`` columns (sorted by
name, ``connectors.snapshot``); certificates carry ``record_key``, the contract's primary key
columns in contract order joined by ``|``. The two column sets must be the same.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import and_, select

from evidence.lifecycle import Lifecycle
from evidence.status_list import publish_status_lists, status_directory, write_status_files
from flows.pipeline import Pipeline
from lake.catalog import batches, certificate_events
from onceonly.errors import ConfigurationError
from onceonly.privacy import scrub_text

_SEP = "\x1f"
_ESCAPE = re.compile(r"\\(\\|x1f)")
_NULL = "\\N"
_KEY = "record_key"


def record_keys(
    deleted: pa.Array | pa.ChunkedArray,
    snapshot_key: Sequence[str],
    record_key: Sequence[str],
    *,
    connector: str,
) -> list[str]:
    """The ``certificates.record_key`` values of snapshot keys reported deleted."""
    if sorted(snapshot_key) != sorted(record_key):
        raise ConfigurationError(
            f"connector {connector!r}: its snapshot key ({', '.join(snapshot_key)}) is not the "
            f"contract's primary key ({', '.join(record_key)}); deleted records cannot be matched "
            "to the certificates issued from them — set options.key to the primary key columns"
        )
    if isinstance(deleted, pa.ChunkedArray):
        deleted = deleted.combine_chunks()
    order = sorted(snapshot_key)
    position = [order.index(column) for column in record_key]
    keys = []
    for text in deleted.to_pylist():
        parts = [_decode(part) for part in text.split(_SEP)]
        keys.append("|".join(parts[i] for i in position))
    return keys


def _decode(part: str) -> str:
    if part == _NULL:
        return ""  # as landing's record_key writes a NULL key column
    return _ESCAPE.sub(lambda m: "\\" if m.group(1) == "\\" else _SEP, part)


class PendingDeletions:
    """One connector's deletions staged before their batch lands (a file per batch)."""

    def __init__(self, directory: Path, connector: str) -> None:
        self.dir = Path(directory) / connector
        self.connector = connector

    def path(self, batch_id: str) -> Path:
        return self.dir / f"{batch_id}.parquet"

    def stage(self, batch_id: str, keys: Sequence[str]) -> None:
        """Write the batch's deleted record keys durably (fsync, atomic rename)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(batch_id)
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(pa.table({_KEY: pa.array(list(keys), pa.string())}), tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.dir)

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
    pipeline: Pipeline, pending: PendingDeletions, batch_id: str, dataset: str, keys: Sequence[str]
) -> Cancelled:
    """注销 the certificates of ``keys`` for a landed batch and republish the status lists.

    One transaction: the lifecycle leaves, the catalog status, the events and the signed lists.
    Then the published list files are rewritten and the staged file removed.
    """
    reason = scrub_text(deletion_reason(pending.connector, batch_id))  # as the lifecycle stores it
    with pipeline.catalog.begin() as conn:
        seen = conn.execute(
            select(certificate_events.c.id)
            .where(and_(certificate_events.c.action == "cancel", certificate_events.c.reason == reason))
            .limit(1)
        ).first()
        if seen is not None:
            cancelled = Cancelled(batch_id, 0, already=True)
        else:
            changes = Lifecycle(pipeline.log).cancel_for_deleted(conn, dataset, keys, reason=reason)
            if changes:
                publish_status_lists(conn, pipeline.log)
            cancelled = Cancelled(batch_id, len(changes))
    if cancelled.certificates:
        write_status_files(pipeline.catalog, status_directory(pipeline.settings.home))
    pending.done(batch_id)
    return cancelled


def settle_pending(
    pipeline: Pipeline, pending: PendingDeletions, dataset: str, *, drop_unlanded: bool
) -> list[Cancelled]:
    """Cancel for every staged batch that has landed; with ``drop_unlanded`` (only under the
    connector's lease) drop the files of batches that never landed."""
    staged = pending.batches()
    if not staged:
        return []
    with pipeline.catalog.read() as conn:
        landed = set(conn.execute(select(batches.c.batch_id).where(batches.c.batch_id.in_(staged))).scalars())
    done = []
    for batch_id in staged:
        if batch_id in landed:
            done.append(cancel_deleted(pipeline, pending, batch_id, dataset, pending.keys(batch_id)))
        elif drop_unlanded:
            pending.done(batch_id)
    return done


def deletions_directory(home: Path) -> Path:
    return home / "deletions"


def _fsync_dir(directory: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = [
    "Cancelled",
    "PendingDeletions",
    "cancel_deleted",
    "deletion_reason",
    "deletions_directory",
    "record_keys",
    "settle_pending",
]
