"""What a long-running reader (the counter's service) trusts of the log, checked once and followed.

Example::

    view = LogView(verifiers, hasher=SHA256)     # the log's keys (evidence.keys.log_verifiers)
    with catalog.read() as conn:
        held = view.held(conn, cert_id, leaf_index)   # as evidence.bundle.check_held, without
        held.state, held.certificate["holder"]        #   an inclusion proof per answer

:func:`evidence.bundle.check_held` proves one certificate from scratch: its opening, an inclusion
proof from stored nodes against the newest signed checkpoint, the newest signed status list.
That is right for a command run once, and 5 ms an answer for a service. The view does the same
work once for the whole log and then follows it:

- on the first call it reads every leaf, hashes each entry itself (the stored ``leaf_hash``
  column is not trusted), folds them and requires the root of the newest checkpoint signed by
  one of ``verifiers``; later calls read only the leaves appended since and require the grown
  tree to fold to the newer signed root — so a leaf it trusts can never be changed under it;
- it keeps every leaf hash and interior node (64 bytes a leaf: inclusion proofs without a
  query, ``prove_inclusion``) and, found by their entries (never by the ``kind``
  and ``ref`` columns beside them, which no hash covers), the newest status list of each issuer
  and list number;
- :meth:`LogView.held` checks a certificate's stored opening against the leaf hash it holds
  and reads the certificate's state from the newest logged status list — the same answer as
  ``check_held``, with no proof per answer. Opened certificates are kept (``cache`` of them).

A log that does not fold to its signed root, a checkpoint signed by nobody trusted or a leaf
missing: :class:`~onceonly.errors.VerificationFailed` naming it, and the view keeps what it had
verified before (a service answers 证照核验未通过 until the log is put right).
"""

from __future__ import annotations

import base64
import json
import threading
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from catalog import Prepared, checkpoints
from evidence.bundle import HeldCertificate, _state_of
from evidence.commitment import SUBJECT_COMMITMENT_FIELD, certificate_entry, is_commitment_entry
from evidence.identifier import CertificateId
from evidence.log import leaf_at, opening_at, stored_entries
from evidence.merkle import SHA256, TreeHash, extend, fold_subtrees, inclusion_ranges, perfect_subtrees
from evidence.note import KEY_ID_SIZE, SIGNATURE_LINE_PREFIX, Checkpoint, NoteVerifier, open_note
from evidence.status_list import StatusList, listed_in, logged_status_list
from onceonly.errors import EvidenceError, VerificationFailed

_NEWEST = Prepared(
    select(checkpoints.c.tree_size, checkpoints.c.note).order_by(checkpoints.c.tree_size.desc()).limit(1)
)
_CHUNK = 50_000


def _committed_in(at: int, entries: Sequence[bytes]) -> list[int]:
    """The leaves among ``entries`` (leaves ``at..``) committed to a subject (a use, a refusal, …):
    every entry is looked at, wherever stored (~0.3 s per million, a tenth of a view's start)."""
    return [at + i for i, data in enumerate(entries) if SUBJECT_COMMITMENT_FIELD in data]


def _note_list(index: int, entry: bytes, lists: dict[tuple[str, int], tuple[int, bytes]]) -> None:
    """Keep ``entry`` if it is a status list (by its own format, not the columns beside it) and
    the newest of its list, whatever order the rows came in."""
    listed = listed_in(entry)
    if listed is not None and (listed not in lists or index > lists[listed][0]):
        lists[listed] = (index, entry)


class LogView:
    """The log as verified by this process: leaf hashes, the signed head, the newest status lists."""

    def __init__(self, verifiers: Sequence[NoteVerifier], *, hasher: TreeHash = SHA256, cache: int = 200_000):
        if not verifiers:
            raise VerificationFailed("no key to verify the log's checkpoints with")
        self.verifiers = list(verifiers)
        self._key_ids = {(v.name, v.key_id) for v in self.verifiers}
        self.hasher = hasher
        self.size = 0
        self.note = ""
        self._frontier: list[bytes] = []
        self._levels: list[bytearray] = [bytearray()]  # level 0: the leaf hashes; then their parents
        self._lists: dict[tuple[str, int], tuple[int, bytes]] = {}  # (issuer, list) -> (leaf, entry)
        self._committed = array("q")  # the leaves committed to a subject, ascending (who-used)
        self._parsed: dict[tuple[str, int], StatusList] = {}  # the newest list parsed, by list
        self._opened: OrderedDict[int, tuple[str, dict[str, Any], CertificateId]] = OrderedDict()
        self._cache = cache
        self._lock = threading.Lock()
        self.head: tuple[int, str] = (0, "")  # the size and note verified, read together
        # Notes this process signed itself (``vouch``): when the catalog hands one back (the same
        # bytes), its signature is not checked again; its key and its root still are.
        self._vouched: OrderedDict[str, None] = OrderedDict()

    def busy(self) -> bool:
        """Whether following the log would wait now (another thread is folding a growth)."""
        return self._lock.locked()

    def vouch(self, note: str) -> None:
        """Note that this process signed ``note`` (the service's own log writer did): following
        the log to it then skips the signature check — not the check that the signing key is one
        of the log's, nor the root's (the newest 64 are kept)."""
        with self._lock:
            self._vouched[note] = None
            while len(self._vouched) > 64:
                self._vouched.popitem(last=False)

    def newest(self, conn: Connection) -> tuple[int, str] | None:
        """The size and note of the newest checkpoint in the catalog as ``conn``'s transaction
        sees it (one query; nothing verified), or None before the first: for a caller that reads
        it once and hands it to :meth:`refresh` or :meth:`reader` in the same transaction."""
        row = _NEWEST.first(conn)
        return (int(row.tree_size), str(row.note)) if row is not None else None

    def refresh(self, conn: Connection, newest: tuple[int, str] | None = None) -> int:
        """Follow the log to its newest signed checkpoint; the size verified. ``newest``: what
        :meth:`newest` returned in this same transaction (not asked again)."""
        found = newest if newest is not None else self.newest(conn)
        if found is None:
            raise VerificationFailed("the transparency log has no checkpoint yet")
        size, note = found
        # Smaller: a read that began before the newest append saw less; what the view holds covers it.
        if size < self.size or (size, note) == self.head:
            return self.size
        with self._lock:
            if size > self.size or (size == self.size and note != self.note):
                self._follow(conn, size, note)
        return self.size

    def behind(self, conn: Connection) -> int:
        """How many leaves the newest checkpoint in the catalog holds beyond what the view
        verified (one query; nothing verified): a caller that must not stall for long — an event
        loop — follows a big growth elsewhere first."""
        return self.behind_of(self.newest(conn))

    def behind_of(self, newest: tuple[int, str] | None) -> int:
        """:meth:`behind` for the checkpoint :meth:`newest` returned."""
        return max(0, newest[0] - self.size) if newest is not None else 0

    def follow_own(self, first: int, entries: Sequence[bytes], note: str) -> bool:
        """Follow an append this process made itself (its log writer, right after committing
        it): ``entries`` at leaves ``first..`` under the checkpoint ``note`` it signed. Grown
        from those bytes, not read back — folded and required to reach the note's root as any
        growth is. False (nothing done; :meth:`refresh` reads the log) when the view is not at
        ``first``: another process appended between, or the view is behind. Only for a note
        this process signed: its signature is not checked (its key must still be one of the
        log's); it is vouched for once the leaves held."""
        with self._lock:
            if first != self.size or not entries:
                return False
            size = first + len(entries)

            def given(lo: int, hi: int, lists: dict[tuple[str, int], tuple[int, bytes]]) -> list[bytes]:
                chunk = list(entries[lo - first : hi - first])
                for index, entry in enumerate(chunk, start=lo):
                    _note_list(index, entry, lists)
                return chunk

            self._grow(*self._own_checkpoint(size, note), note, given)
            self._vouched[note] = None  # signed here, and it held (see vouch)
            while len(self._vouched) > 64:
                self._vouched.popitem(last=False)
            return True

    def _follow(self, conn: Connection, size: int, note: str) -> None:
        if note in self._vouched:
            size, root = self._own_checkpoint(size, note)
        else:
            checkpoint = self._checkpoint(size, note)
            size, root = checkpoint.size, checkpoint.root_hash
        self._grow(size, root, note, lambda lo, hi, lists: self._entries(conn, lo, hi, lists))

    def _checkpoint(self, size: int, note: str) -> Checkpoint:
        """``note`` parsed, its signature checked, of tree size ``size``."""
        try:
            checkpoint = Checkpoint.parse(open_note(note, self.verifiers))
        except (VerificationFailed, EvidenceError, ValueError) as exc:
            raise VerificationFailed(
                f"the newest checkpoint (size {size}) is not signed by the log's keys: {exc}"
            ) from None
        if checkpoint.size != size:
            raise VerificationFailed(
                f"the newest checkpoint says size {checkpoint.size} where the catalog says {size}"
            )
        return checkpoint

    def _own_checkpoint(self, size: int, note: str) -> tuple[int, bytes]:
        """The tree size and root of ``note``, signed by this process (``follow_own``) or vouched
        for: made by its own signer from a checkpoint body, so neither parsed in full nor its
        signature checked again (the two were ~5 % of an answer's CPU on the service's loop) —
        but it must be signed by a key the view trusts (a signing key that is not among the
        published ones would sign slips nobody can verify), say ``size``, and the leaves must
        still fold to its root (``_grow``)."""
        try:
            split = note.rindex("\n\n")
            body = note[: split + 1].split("\n")
            signers = {
                (name, base64.b64decode(encoded[:8], validate=True)[:KEY_ID_SIZE])
                for name, _, encoded in (
                    line.removeprefix(SIGNATURE_LINE_PREFIX).partition(" ")
                    for line in note[split + 2 : -1].split("\n")
                )
            }
            said, root = int(body[1]), base64.b64decode(body[2], validate=True)
            if len(root) != len(self.hasher.empty_root):
                raise ValueError("not a root hash")
        except (ValueError, IndexError):  # binascii.Error is a ValueError
            raise VerificationFailed(f"the newest checkpoint (size {size}) is not a signed note") from None
        if not signers & self._key_ids:
            raise VerificationFailed(
                f"the newest checkpoint (size {size}) is not signed by the log's keys: signed here by a "
                "key that is not among the log's keys"
            )
        if said != size:
            raise VerificationFailed(f"the newest checkpoint says size {said} where the catalog says {size}")
        return size, root

    def _grow(
        self,
        size: int,
        root_hash: bytes,
        note: str,
        entries_of: Callable[[int, int, dict[tuple[str, int], tuple[int, bytes]]], list[bytes]],
    ) -> None:
        """Fold the leaves ``self.size..size`` (``entries_of(lo, hi, lists)``, noting status
        lists in ``lists``) onto the tree held; keep them only if they fold to ``root_hash``."""
        levels = [bytearray() for _ in self._levels]
        lists: dict[tuple[str, int], tuple[int, bytes]] = {}
        committed: list[int] = []
        frontier, at = self._frontier, self.size
        while at < size:
            end = min(size, at + _CHUNK)
            entries = entries_of(at, end, lists)
            committed += _committed_in(at, entries)
            chunk = [self.hasher.leaf(data) for data in entries]
            grown = extend(at, frontier, chunk, hasher=self.hasher)
            levels[0] += b"".join(chunk)
            for level, (_, nodes) in enumerate(grown.levels, start=1):
                while len(levels) <= level:
                    levels.append(bytearray())
                levels[level] += b"".join(nodes)
            frontier, at = grown.frontier, end
        root = fold_subtrees(frontier, hasher=self.hasher) if frontier else self.hasher.empty_root
        if root != root_hash:
            raise VerificationFailed(
                f"the log's leaves {self.size}..{size - 1} do not fold to the root of its signed "
                f"checkpoint of size {size}: the log was changed; run `onceonly log verify`"
            )
        while len(self._levels) < len(levels):
            self._levels.append(bytearray())
        for mine, new in zip(self._levels, levels, strict=False):
            mine += new
        # What a reader needs first, the head last: a thread that sees the new head (and returns
        # early from refresh) must find the status lists it covers.
        self._lists.update(lists)
        self._committed.extend(committed)
        self._frontier = frontier
        self.size, self.note = size, note
        self.head = (size, note)

    @staticmethod
    def _entries(
        conn: Connection, lo: int, hi: int, lists: dict[tuple[str, int], tuple[int, bytes]]
    ) -> list[bytes]:
        """The entries of leaves ``lo..hi-1`` in order (noting status lists among them)."""
        entries: list[bytes] = []
        for expected, (index, entry) in enumerate(stored_entries(conn, lo, hi), start=lo):
            if index != expected or entry is None:
                raise VerificationFailed(f"leaf {expected} is missing from the log or stored twice")
            entries.append(entry)
            # Status lists by their entries alone, wherever stored: the kind column beside a leaf
            # is not covered by its hash (a list relabelled `certificate` must still be seen).
            _note_list(index, entry, lists)
        if len(entries) != hi - lo:
            raise VerificationFailed(f"leaf {lo + len(entries)} is missing from the log")
        return entries

    def committed(self, size: int) -> array[int]:
        """The leaves below ``size`` whose verified entries commit to a subject (uses, refusals,
        decisions, reminders, …): every one must have its opening (``sharing.uses``)."""
        with self._lock:
            return self._committed[: bisect_left(self._committed, size)]

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise VerificationFailed(f"leaf {index} is not under the newest checkpoint (size {self.size})")
        return bytes(self._levels[0][32 * index : 32 * index + 32])

    def prove_inclusion(self, index: int, size: int) -> list[bytes]:
        """The RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` (≤ the size
        verified), from the hashes held: no query."""
        if not 0 <= index < size <= self.size:
            raise VerificationFailed(f"leaf {index} is not in a verified tree of size {size}")
        return [
            fold_subtrees(
                [self._node(level, at) for level, at in perfect_subtrees(lo, hi)], hasher=self.hasher
            )
            for lo, hi in inclusion_ranges(index, size)
        ]

    def _node(self, level: int, index: int) -> bytes:
        return bytes(self._levels[level][32 * index : 32 * index + 32])

    def status_list(self, issuer: str, list_no: int) -> StatusList:
        """The newest status list ``list_no`` of ``issuer`` the verified log holds."""
        found = self._lists.get((issuer, list_no))
        if found is None:
            raise VerificationFailed(f"no status list {issuer}/{list_no} is in the signed log")
        leaf, entry = found
        parsed = self._parsed.get((issuer, list_no))
        if parsed is None or parsed.leaf_index != leaf:
            parsed = self._parsed[(issuer, list_no)] = logged_status_list(json.loads(entry), leaf)
        return parsed

    def held(self, conn: Connection, cert_id: str, leaf_index: int) -> HeldCertificate:
        """Certificate ``cert_id`` at ``leaf_index`` as the verified log commits to it, and its
        state in the newest logged status list; :class:`VerificationFailed` naming what disagrees
        (the same contract as ``evidence.bundle.check_held`` without ``size``)."""
        return self._held(conn, cert_id, leaf_index, self.refresh(conn))

    def reader(
        self, conn: Connection, newest: tuple[int, str] | None = None
    ) -> Callable[[Connection, str, int], HeldCertificate]:
        """:meth:`held` for the rest of ``conn``'s read transaction: the view follows the log
        now, once, and each certificate is then read without asking the catalog for its newest
        checkpoint again (one query per answer, not one per certificate it reads). A leaf
        beyond what the view holds (a database whose statements see what others committed
        since the transaction began) follows the log first, as :meth:`held` does. A log that
        does not verify: each certificate read raises :class:`VerificationFailed`, as from
        :meth:`held`. ``newest``: as for :meth:`refresh`."""
        try:
            self.refresh(conn, newest)
        except VerificationFailed:
            return self.held  # which says why, for every certificate asked

        def held(conn: Connection, cert_id: str, leaf_index: int) -> HeldCertificate:
            size = self.size
            if leaf_index >= size:
                size = self.refresh(conn)
            return self._held(conn, cert_id, leaf_index, size)

        return held

    def _held(self, conn: Connection, cert_id: str, leaf_index: int, size: int) -> HeldCertificate:
        certificate, parsed_id = self._open(conn, cert_id, leaf_index)
        credential = certificate.get("credential_status") or {}
        try:
            status_list = self.status_list(str(credential.get("issuer")), int(credential.get("list", -1)))
        except VerificationFailed:
            raise VerificationFailed(f"no signed status list covers certificate {cert_id} yet") from None
        state = _state_of(certificate, parsed_id, status_list)
        return HeldCertificate(certificate, state, leaf_index, size)

    def _open(self, conn: Connection, cert_id: str, leaf_index: int) -> tuple[dict[str, Any], CertificateId]:
        kept = self._opened.get(leaf_index)
        if kept is not None and kept[0] == cert_id:
            return kept[1], kept[2]
        expected = self.leaf_hash(leaf_index)
        opening = opening_at(conn, leaf_index)
        try:
            if opening is None:  # a leaf an earlier version wrote: its entry is the certificate
                leaf = leaf_at(conn, leaf_index)
                entry = leaf.entry or b""
                certificate = json.loads(entry)
                if is_commitment_entry(entry):
                    raise VerificationFailed(
                        f"no opening of certificate {cert_id} is stored for leaf {leaf_index}"
                    )
            else:
                certificate = json.loads(opening.body)
                if opening.ref != cert_id or not isinstance(certificate, dict):
                    raise VerificationFailed(
                        f"the opening stored for leaf {leaf_index} is not certificate {cert_id}"
                    )
                entry = certificate_entry(certificate, bytes(opening.salt))
        except VerificationFailed:
            raise
        except (ValueError, EvidenceError) as exc:
            raise VerificationFailed(
                f"the opening stored for leaf {leaf_index} is unreadable: {exc}"
            ) from None
        if not isinstance(certificate, dict) or certificate.get("id") != cert_id:
            raise VerificationFailed(f"the opening stored for leaf {leaf_index} is not certificate {cert_id}")
        if self.hasher.leaf(entry) != expected:
            raise VerificationFailed(
                f"certificate {cert_id} is not in the signed log: its opening does not open leaf {leaf_index}"
            )
        parsed_id = CertificateId.parse(cert_id)
        with self._lock:
            self._opened[leaf_index] = (cert_id, certificate, parsed_id)
            while len(self._opened) > self._cache:
                self._opened.popitem(last=False)
        return certificate, parsed_id


__all__ = ["LogView"]
