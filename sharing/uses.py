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
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from catalog import use_subjects
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
    return UsesReport(subject, size, note, tuple(uses))


__all__ = ["Use", "UsesReport", "uses_of"]
