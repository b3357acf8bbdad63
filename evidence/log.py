"""The transparency log, persisted in the catalog: leaves, signed checkpoints, proofs.

Example::

    log = TransparencyLog(signing_key, origin="onceonly.example/wuqing/evidence")
    with catalog.begin() as conn:
        appended = log.append(conn, [(canonical_bytes, "certificate", cert_id), ...])
    appended.checkpoint              # C2SP tlog-checkpoint signed note covering the new leaves

Appending happens inside the caller's transaction together with what the leaves stand for,
so a leaf exists exactly when its certificate does. The log head (size and compact range)
is locked for update, so appends are serialised even on PostgreSQL with several writers;
rows of ``log_leaves`` are only ever inserted, never updated or deleted (RFC 9162 §2.1: an
append-only tree).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from evidence.keys import SigningKey
from evidence.merkle import CompactRange, inclusion_proof, leaf_hash
from evidence.note import Checkpoint
from lake.catalog import checkpoints, insert_missing, log_head, log_leaves, utcnow
from onceonly.errors import EvidenceError


@dataclass(frozen=True)
class Appended:
    first_index: int
    tree_size: int
    root_hash: bytes
    checkpoint: str


class TransparencyLog:
    def __init__(self, key: SigningKey, origin: str) -> None:
        self.key = key
        self.origin = origin

    def append(self, conn: Connection, entries: Sequence[tuple[bytes, str, str]]) -> Appended:
        """Append ``(leaf bytes, kind, ref)`` entries and publish one signed checkpoint."""
        if not entries:
            raise EvidenceError("nothing to append to the log")
        head = _locked_head(conn)
        frontier = CompactRange.from_state(head[0], [bytes.fromhex(h) for h in head[1]])
        first = frontier.size
        now = utcnow()
        rows = []
        for offset, (data, kind, ref) in enumerate(entries):
            h = leaf_hash(data)
            frontier.append(h)
            rows.append(
                {"leaf_index": first + offset, "leaf_hash": h, "kind": kind, "ref": ref, "appended_at": now}
            )
        conn.execute(insert(log_leaves), rows)
        root = frontier.root()
        note = self.key.sign_note(Checkpoint(self.origin, frontier.size, root).to_body())
        conn.execute(
            insert(checkpoints).values(tree_size=frontier.size, root_hash=root, note=note, created_at=now)
        )
        conn.execute(
            update(log_head)
            .where(log_head.c.id == 1)
            .values(tree_size=frontier.size, frontier=[h.hex() for h in frontier.state()])
        )
        return Appended(first, frontier.size, root, note)


def _locked_head(conn: Connection) -> tuple[int, list[str]]:
    # The head row must exist before it can be locked: two first appends that both found it
    # missing and both inserted it would make one fail on the key (or, without the lock, both
    # write leaf 0). Insert-if-missing, then lock: every append waits for the one before it.
    insert_missing(conn, log_head, {"id": 1, "tree_size": 0, "frontier": []})
    stmt = select(log_head.c.tree_size, log_head.c.frontier).where(log_head.c.id == 1).with_for_update()
    row = conn.execute(stmt).one()
    return int(row.tree_size), list(row.frontier)


def latest_checkpoint(conn: Connection) -> tuple[int, str] | None:
    """``(tree size, signed note)`` of the newest checkpoint, or None for an empty log."""
    row = conn.execute(
        select(checkpoints.c.tree_size, checkpoints.c.note).order_by(checkpoints.c.tree_size.desc()).limit(1)
    ).first()
    return None if row is None else (int(row.tree_size), str(row.note))


def tree_size(conn: Connection) -> int:
    row = conn.execute(select(log_head.c.tree_size).where(log_head.c.id == 1)).first()
    return 0 if row is None else int(row.tree_size)


def prove_inclusion(conn: Connection, leaf_index: int, size: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of ``leaf_index`` in the tree of the first ``size`` leaves."""
    if not 0 <= leaf_index < size:
        raise EvidenceError(f"leaf {leaf_index} is not in a tree of size {size}")
    hashes = [
        bytes(h)
        for h in conn.execute(
            select(log_leaves.c.leaf_hash)
            .where(log_leaves.c.leaf_index < size)
            .order_by(log_leaves.c.leaf_index)
        ).scalars()
    ]
    if len(hashes) != size:
        raise EvidenceError(
            f"the log holds {len(hashes)} leaves below {size}; it was tampered with or truncated"
        )
    return inclusion_proof(leaf_index, hashes)


__all__ = ["Appended", "TransparencyLog", "latest_checkpoint", "prove_inclusion", "tree_size"]
