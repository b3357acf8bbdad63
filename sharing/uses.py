"""Who used my data (谁用了我的数据): every use and refused request the log records for a subject.

Example::

    report = uses_of(conn, "120114199003071234", verifiers)
    for u in report.uses:
        print(u.leaf_index, u.kind, u.entry["station"], u.entry["purpose"], u.proven)

The log's use and refusal entries commit to their subject under a salt kept in
``use_subjects``; this finds the subject's entries there and checks each: the commitment opens to
this subject, and the entry is in the tree of the newest checkpoint signed by one of the log's
keys (an inclusion proof from stored nodes). An entry altered after it was logged fails its
proof; one whose commitment is not this subject's is reported, not shown as theirs.

An entry can also be hidden from the list: its leaf removed from the catalog, or its opening
(the subject and salt that find it) removed. Every list checks that neither happened to anyone's
entry (``UsesReport.hidden``): the catalog holds every leaf of the signed tree, and every entry
committed to a subject has its opening — one pass over the log's entries (not the packed
certificate leaves). An opening edited to name another subject moves the entry to that
subject's list, where it is shown ✘ (its commitment does not open to them); ``onceonly audit``
checks every opening against its entry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlalchemy.engine import Connection

from catalog import log_bundles, log_leaves, use_subjects
from evidence.commitment import subject_commitment
from evidence.log import latest_checkpoint, leaf_at, prove_inclusion, read_head
from evidence.merkle import verify_inclusion
from evidence.note import Checkpoint, NoteVerifier, open_note
from onceonly.errors import EvidenceError, VerificationFailed
from onceonly.privacy import mask_citizen_id


@dataclass(frozen=True)
class Use:
    leaf_index: int
    kind: str  # use | refusal
    entry: dict[str, Any]
    proven: bool
    problem: str = ""
    inclusion_proof: tuple[str, ...] = field(default=(), repr=False)  # hex hashes


@dataclass(frozen=True)
class UsesReport:
    subject: str
    checkpoint_size: int
    checkpoint: str
    uses: tuple[Use, ...]
    hidden: tuple[str, ...] = ()  # what hides entries from this list (anyone's): none when complete

    @property
    def proven(self) -> bool:
        """Every entry proven, and nothing hidden from the list."""
        return not self.hidden and all(u.proven for u in self.uses)

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": mask_citizen_id(self.subject),
            "checkpoint_size": self.checkpoint_size,
            "checkpoint": self.checkpoint,
            "uses": [
                {
                    "leaf_index": u.leaf_index,
                    "kind": u.kind,
                    "entry": u.entry,
                    "proven": u.proven,
                    "problem": u.problem,
                    "inclusion_proof": list(u.inclusion_proof),
                }
                for u in self.uses
            ],
            "complete": not self.hidden,
            "hidden": list(self.hidden),
        }


def uses_of(conn: Connection, subject_id: str, verifiers: Sequence[NoteVerifier]) -> UsesReport:
    """The subject's uses and refusals, oldest first, each with its inclusion proof checked."""
    subject = subject_id.strip().upper()
    head = latest_checkpoint(conn)
    if head is None:
        return UsesReport(subject, 0, "", ())
    size, note = head
    try:
        checkpoint = Checkpoint.parse(open_note(note, list(verifiers)))
    except VerificationFailed as exc:
        raise VerificationFailed(
            f"the newest checkpoint is signed by none of the log's keys: {exc}"
        ) from None
    hasher = read_head(conn).hasher
    rows = conn.execute(
        select(use_subjects.c.leaf_index, use_subjects.c.salt)
        .where(use_subjects.c.subject_id == subject)
        .order_by(use_subjects.c.leaf_index)
    ).all()
    uses = []
    for r in rows:
        index = int(r.leaf_index)
        if index >= size:
            continue  # logged after the newest checkpoint: shown once a checkpoint covers it
        leaf = leaf_at(conn, index)
        logged = leaf.entry or b""
        try:
            entry = json.loads(logged)
        except ValueError:
            entry = {}
        problem = ""
        proof: list[bytes] = []
        try:
            proof = prove_inclusion(conn, index, size)
            verify_inclusion(hasher.leaf(logged), index, size, proof, checkpoint.root_hash, hasher=hasher)
        except (VerificationFailed, EvidenceError) as exc:
            problem = f"the entry is not the one the signed log holds ({exc})"
        if not problem and entry.get("subject_commitment") != subject_commitment(bytes(r.salt), subject):
            problem = "the entry's commitment does not open to this subject"
        uses.append(Use(index, leaf.kind, entry, not problem, problem, tuple(h.hex() for h in proof)))
    return UsesReport(subject, size, note, tuple(uses), hidden_entries(conn, size))


# The field every entry committed to a subject holds (``evidence.log.append_committed_many``),
# looked for in the entry's bytes, which the leaf hash covers (not in the kind column beside it).
_COMMITTED = b'"subject_commitment":'
_SHOWN = 10  # leaves named in a problem at most


def _holds_commitment(conn: Connection) -> Any:
    """Whether a leaf's entry holds :data:`_COMMITTED`: INSTR on SQLite and MariaDB (whose LIKE
    does not match inside a BLOB on SQLite), LIKE on PostgreSQL's bytea (no INSTR there; its "_"
    matches any byte)."""
    if conn.dialect.name == "postgresql":
        return log_leaves.c.entry.like(literal(b"%" + _COMMITTED + b"%"))
    return func.instr(log_leaves.c.entry, literal(_COMMITTED)) > 0


def hidden_entries(conn: Connection, size: int) -> tuple[str, ...]:
    """What hides entries below ``size`` from the lists of uses (anyone's): leaves of the signed
    tree the catalog no longer holds, and entries committed to a subject whose opening is gone."""
    problems = []
    stored = conn.execute(
        select(func.count()).select_from(log_leaves).where(log_leaves.c.leaf_index < size)
    ).scalar_one()
    b = log_bundles.c
    packed = conn.execute(
        select(
            func.coalesce(
                func.sum(case((b.first_leaf + b.leaf_count > size, size - b.first_leaf), else_=b.leaf_count)),
                0,
            )
        ).where(b.first_leaf < size)
    ).scalar_one()
    held = int(stored) + int(packed)
    if held != size:
        problems.append(
            f"the catalog holds {held:,} leaves of the signed log's {size:,}: entries removed or added "
            "(`onceonly log verify` names them)"
        )
    unopened = (
        conn.execute(
            select(log_leaves.c.leaf_index)
            .select_from(
                log_leaves.outerjoin(use_subjects, use_subjects.c.leaf_index == log_leaves.c.leaf_index)
            )
            .where(
                log_leaves.c.leaf_index < size,
                use_subjects.c.leaf_index.is_(None),
                _holds_commitment(conn),
            )
            .order_by(log_leaves.c.leaf_index)
            .limit(_SHOWN + 1)
        )
        .scalars()
        .all()
    )
    if unopened:
        named = ", ".join(str(i) for i in unopened[:_SHOWN]) + (", …" if len(unopened) > _SHOWN else "")
        problems.append(
            f"entries committed to a subject have lost the opening that finds them (leaves {named}): "
            "a use may be hidden from its subject's list"
        )
    return tuple(problems)


__all__ = ["Use", "UsesReport", "hidden_entries", "uses_of"]
