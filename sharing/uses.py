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

An entry can also be hidden from the list: its leaf removed or changed in the catalog, or its
opening (the subject and salt that find it) removed. Every list checks that neither happened to
anyone's entry (``UsesReport.hidden``): the log verifies (a ``LogView``: every leaf there,
folding to the signed root), and every leaf whose verified entry commits to a subject has its
opening. An opening edited to name another subject moves the entry to that subject's list,
where it is shown ✘ (its commitment does not open to them); ``onceonly audit`` checks every
opening against its entry.
"""

from __future__ import annotations

import json
import threading
import time
from array import array
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
from evidence.view import LogView
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


def uses_of(
    conn: Connection,
    subject_id: str,
    verifiers: Sequence[NoteVerifier],
    view: LogView | None = None,
    openings: OpeningsCheck | None = None,
) -> UsesReport:
    """The subject's uses and refusals, oldest first, each with its inclusion proof checked, and
    what hides entries from the lists (``UsesReport.hidden``). ``view``: a view of the log this
    process follows (the service's); without one the whole log is verified here first (~3.5 s
    per million leaves), since only verified entries say which leaves commit to a subject.
    ``openings``: a long-running process's check of the openings (at most once a minute)."""
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
    if view is None:
        view = LogView(list(verifiers), hasher=hasher)
    try:
        view.refresh(conn, head)
        hidden = (openings or hidden_entries)(conn, size, view.committed(size))
    except VerificationFailed as exc:  # no entry can be said to be all there
        hidden = (f"the log does not verify: {exc}",)
    return UsesReport(subject, size, note, tuple(uses), hidden)


_SHOWN = 10  # leaves named in a problem at most


class OpeningsCheck:
    """:func:`hidden_entries` for a long-running process (the service, asked by any citizen): the
    openings of the whole log compared at most every ``every`` seconds (one index scan, ~1 s
    per million entries committed to a subject), the last finding given in between."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._lock = threading.Lock()
        self._checked: tuple[float, tuple[str, ...]] | None = None

    def __call__(self, conn: Connection, size: int, committed: Sequence[int]) -> tuple[str, ...]:
        with self._lock:
            now = time.monotonic()
            if self._checked is None or now - self._checked[0] >= self.every:
                self._checked = (now, hidden_entries(conn, size, committed))
            return self._checked[1]


def hidden_entries(conn: Connection, size: int, committed: Sequence[int]) -> tuple[str, ...]:
    """What hides entries below ``size`` from the lists of uses (anyone's): ``committed``, the
    leaves a verified view found committed to a subject (``LogView.committed``), each of which
    must have its opening in ``use_subjects``."""
    opened = array(
        "q",
        conn.execute(
            select(use_subjects.c.leaf_index)
            .where(use_subjects.c.leaf_index < size)
            .order_by(use_subjects.c.leaf_index)
        ).scalars(),
    )
    if opened == committed:  # the common case, compared in C
        return ()
    unopened = sorted(set(committed).difference(opened))
    if not unopened:
        return ()  # an opening beside an entry that commits to nobody hides nothing (audit names it)
    named = ", ".join(str(i) for i in unopened[:_SHOWN]) + (", …" if len(unopened) > _SHOWN else "")
    return (
        f"{len(unopened)} entr{'y' if len(unopened) == 1 else 'ies'} committed to a subject "
        f"{'has' if len(unopened) == 1 else 'have'} lost the opening that finds "
        f"{'it' if len(unopened) == 1 else 'them'} (leaves {named}): a use may be hidden from its "
        "subject's list",
    )


__all__ = ["OpeningsCheck", "Use", "UsesReport", "hidden_entries", "uses_of"]
