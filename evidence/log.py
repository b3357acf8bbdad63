"""The transparency log, persisted in the catalog: leaves, interior nodes, signed checkpoints, proofs.

Example::

    log = TransparencyLog(signing_key, origin="onceonly.example/wuqing/evidence")
    with catalog.begin() as conn:
        appended = log.append(conn, [(canonical_bytes, KIND_CERTIFICATE, cert_id), ...])
        log.append(conn, [batch_receipt(batch_id=..., content_sha256=..., contract="x@1", ...)])
        record_use(conn, log, matter="m", certificate_id=cid, township="120114001")
    appended.checkpoint              # C2SP tlog-checkpoint signed note covering the new leaves
    with catalog.read() as conn:
        proof = prove_inclusion(conn, 7, appended.tree_size)   # O(log n) stored nodes

Appending happens inside the caller's transaction together with what the leaves stand for,
so a leaf exists exactly when its certificate does. The log head (size, frontier, hash) is
locked for update, so appends are serialised even on PostgreSQL with several writers. Every
append also writes the interior nodes of level 4 and up that its leaves complete
(``log_nodes``); a proof rebuilds a lower node from at most 8 leaf hashes, so any inclusion
or consistency proof is a handful of primary-key reads, O(log n), at any size. Rows of
``log_leaves``, ``log_bundles``, ``log_nodes`` and ``checkpoints`` are only ever inserted:
this module has no update or delete path for them (RFC 9162 §2.1: an append-only tree), and
:func:`verify_log` recomputes everything from the entries to prove nobody else did either.

Leaves carry a kind: ``certificate`` (the certificate's RFC 8785 bytes), ``batch-receipt``
(an accepted batch: its content hash, contract and validation counts), ``lifecycle`` (a
certificate's status change), ``use`` (a township used shared data instead of asking the
citizen). Certificate leaves are stored packed, up to 256 consecutive ones per
``log_bundles`` row (their hashes raw, their ids and entries as a compressed Arrow IPC
stream); every other leaf is a ``log_leaves`` row with its entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlalchemy import and_, bindparam, func, insert, literal_column, or_, select, union_all, update
from sqlalchemy.engine import Connection

from catalog import (
    BUNDLE_LEAVES,
    Prepared,
    bind_value,
    certificate_openings,
    certificates,
    checkpoints,
    insert_missing,
    insert_rows,
    log_bundles,
    log_head,
    log_leaves,
    log_nodes,
    use_subjects,
    utcnow,
)
from evidence.canonical import canonical_json
from evidence.commitment import new_salts, subject_commitment
from evidence.keys import Keyring, SigningKey, check_key_status
from evidence.merkle import (
    SHA256,
    TreeHash,
    consistency_ranges,
    extend,
    fold_subtrees,
    inclusion_ranges,
    perfect_subtrees,
    root,
    tree_hash,
)
from evidence.note import Checkpoint, NoteVerifier, open_note
from onceonly.errors import EvidenceError, VerificationFailed

KIND_CERTIFICATE = "certificate"
KIND_BATCH_RECEIPT = "batch-receipt"
KIND_LIFECYCLE = "lifecycle"
KIND_USE = "use"
KIND_REFUSAL = "refusal"  # a station's request for shared data, refused (sharing.service)
#: A batch refused for its error rate: its counts, its quarantine rows' digest and its file.
KIND_BREACH_RECEIPT = "breach-receipt"
#: A township extract as written: its file's SHA-256 and rows (``sharing.extracts``).
KIND_EXTRACT = "extract"
#: The checkpoint the log signed before an append, logged as the first leaf of that append:
#: the history of checkpoints is itself in the tree, so a deleted checkpoint row is found.
KIND_CHECKPOINT = "checkpoint"
#: A township extract's signed manifest: its files' hashes and rows, the checkpoint it reflects.
KIND_EXTRACT_MANIFEST = "extract-manifest"
#: A 免申即享 decision (sharing.benefits): rule id and version, facts by certificate id, result.
KIND_DECISION = "benefit-decision"
#: An approval pushed to its supervising department (sharing.supervision), and what came back.
KIND_SUPERVISION = "supervision"
#: An expiry reminder sent (sharing.reminders): once per certificate and window.
KIND_REMINDER = "expiry-reminder"
ENTRY_SCHEMA = "onceonly-log-entry/1"

_VERIFY_CHUNK = 65_536  # leaves per step of verify_log: bounded memory at any log size
_NODE_ID_SHIFT = 48  # node (level, index) is stored as level << 48 | index: 2**48 leaves at most
# Interior nodes are stored from this level up; a lower one is rebuilt from <= 2**3 leaf hashes.
NODE_MIN_LEVEL = 4
_BUNDLE_SCHEMA = pa.schema([("ref", pa.string()), ("entry", pa.binary())])
# LZ4: a bundle of 256 certificates packs ~10x in ~1 us per certificate; zstd packs a little
# tighter at twice the cost, which the smaller write does not win back.
_BUNDLE_IPC = pa.ipc.IpcWriteOptions(compression="lz4")
# A packed row (~30 KB, 256 leaves) decompressed in the calling thread: handing its three
# buffers to Arrow's thread pool cost twice the decompression (77 us against 27 us a row;
# the counter opens one certificate's row per first answer).
_READ_IPC = pa.ipc.IpcReadOptions(use_threads=False)


def node_id(level: int, index: int) -> int:
    """The ``log_nodes`` key of interior node ``(level, index)``."""
    if not 1 <= level < 64 or not 0 <= index < 1 << _NODE_ID_SHIFT:
        raise ValueError(f"no interior node ({level}, {index})")
    return level << _NODE_ID_SHIFT | index


@dataclass(frozen=True)
class Appended:
    first_index: int
    tree_size: int
    root_hash: bytes
    checkpoint: str
    # Every leaf :meth:`TransparencyLog.append` added, in order — the leading checkpoint leaf,
    # then the caller's entries: leaves ``tree_size - len(entries)..`` (a service's view of the
    # log follows its own appends from them: ``evidence.view.LogView.follow_own``). Empty from
    # ``append_certificates``, which hands no Python object per certificate around.
    entries: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class LogHead:
    tree_size: int
    frontier: list[bytes]
    hasher: TreeHash

    @property
    def root_hash(self) -> bytes:
        return fold_subtrees(self.frontier, hasher=self.hasher) if self.frontier else self.hasher.empty_root


class TransparencyLog:
    def __init__(self, key: SigningKey, origin: str, *, hasher: TreeHash = SHA256) -> None:
        self.key = key
        self.origin = origin
        self.hasher = hasher
        # The frontier this log grew to last and its root: the next append's head is usually
        # that frontier, whose root its checkpoint leaf logs (a memo of fold_subtrees, not
        # folded again then).
        self._folded: tuple[list[bytes], bytes] | None = None

    def append(self, conn: Connection, entries: Sequence[tuple[bytes, str, str]]) -> Appended:
        """Append ``(entry bytes, kind, ref)`` entries and publish one signed checkpoint.

        Every entry is stored with its leaf: certificates packed in bundles, the rest a row each.
        """
        if not entries:
            raise EvidenceError("nothing to append to the log")
        hashes = self.hasher.leaves(data for data, _, _ in entries)

        def layout(first: int, stamp: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            rows: list[tuple[Any, ...]] = []
            bundles: list[tuple[Any, ...]] = []
            offset = 0
            for is_certificate, run in itertools.groupby(entries, key=lambda e: e[1] == KIND_CERTIFICATE):
                group = list(run)
                if is_certificate:
                    refs = pa.array([ref for _, _, ref in group], pa.string())
                    data = pa.array([entry for entry, _, _ in group], pa.binary())
                    bundles += _bundles(
                        first + offset, refs, data, hashes[offset : offset + len(group)], stamp
                    )
                else:
                    rows += [
                        (first + offset + i, hashes[offset + i], kind, ref, stamp, entry)
                        for i, (entry, kind, ref) in enumerate(group)
                    ]
                offset += len(group)
            return rows, bundles

        return self._append(conn, hashes, layout, keep=[data for data, _, _ in entries])

    def append_certificates(
        self,
        conn: Connection,
        refs: pa.Array,
        entries: pa.Array,
        then: Sequence[tuple[bytes, str, str]] = (),
        *,
        openings: tuple[pa.Array, pa.Array] | None = None,
    ) -> Appended:
        """Append certificates given column-wise — their ids and public entries (commitments,
        ``evidence.commitment``), as Arrow arrays — and then the entries ``then`` (a batch's
        receipt), under one checkpoint. ``openings``: each certificate's salt and RFC 8785
        bytes, kept privately beside the log (``certificate_openings``), packed like the leaves.

        The same leaves and storage as :meth:`append` of the same entries, without a Python
        object per certificate on the way to storage.
        """
        if len(refs) != len(entries):
            raise EvidenceError(f"{len(refs)} certificate ids for {len(entries)} certificates")
        if openings is not None and not (len(openings[0]) == len(openings[1]) == len(entries)):
            raise EvidenceError(f"{len(openings[0])} salts and {len(openings[1])} bodies for {len(entries)}")
        if not len(entries) and not then:
            raise EvidenceError("nothing to append to the log")
        count = len(entries)
        hashes = self.hasher.leaves(entries.to_pylist()) + self.hasher.leaves(data for data, _, _ in then)

        def layout(first: int, stamp: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            rows = [
                (first + count + i, hashes[count + i], kind, ref, stamp, entry)
                for i, (entry, kind, ref) in enumerate(then)
            ]
            if openings is not None and count:
                insert_rows(
                    conn,
                    certificate_openings,
                    ("first_leaf", "leaf_count", "openings"),
                    _opening_rows(first, refs, *openings),
                )
            return rows, _bundles(first, refs, entries, hashes[:count], stamp)

        return self._append(conn, hashes, layout)

    def _append(
        self,
        conn: Connection,
        hashes: list[bytes],
        layout: Callable[[int, Any], tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]],
        *,
        keep: Sequence[bytes] | None = None,
    ) -> Appended:
        """Append leaves ``hashes`` (stored as ``layout(first index, time stamp)`` lays out their
        log_leaves and log_bundles rows), their nodes from level 4 up, and a signed checkpoint.

        Every append but the first begins with a ``checkpoint`` leaf logging the checkpoint the
        log signed last (its size, root and note's SHA-256): ``Appended.first_index`` is then
        the index of the caller's first leaf, after it. ``keep``: the caller's entries, handed
        back with that leaf's in ``Appended.entries``."""
        head = _locked_head(conn, self.hasher)
        now = utcnow()
        stamp = bind_value(conn, log_leaves.c.appended_at, now)
        logged: list[tuple[Any, ...]] = []
        if head.tree_size:
            folded = self._folded
            head_root = folded[1] if folded is not None and folded[0] == head.frontier else head.root_hash
            entry, kind, ref = checkpoint_entry(conn, head.tree_size, head_root)
            logged = [(head.tree_size, self.hasher.leaf(entry), kind, ref, stamp, entry)]
            hashes = [logged[0][1], *hashes]
        first = head.tree_size + len(logged)
        grown = extend(head.tree_size, head.frontier, hashes, hasher=self.hasher)
        rows, bundles = layout(first, stamp)
        rows = [*logged, *rows]
        if rows:
            insert_rows(
                conn, log_leaves, ("leaf_index", "leaf_hash", "kind", "ref", "appended_at", "entry"), rows
            )
        if bundles:
            columns = ("first_leaf", "leaf_count", "leaf_hashes", "entries", "appended_at")
            insert_rows(conn, log_bundles, columns, bundles)
        nodes = [
            (level << _NODE_ID_SHIFT | start + offset, value)
            for level, (start, values) in enumerate(grown.levels, start=1)
            if level >= NODE_MIN_LEVEL
            for offset, value in enumerate(values)
        ]
        if nodes:
            insert_rows(conn, log_nodes, ("node_id", "hash"), nodes)
        root = fold_subtrees(grown.frontier, hasher=self.hasher)
        note = self.key.sign_note(Checkpoint(self.origin, grown.size, root).to_body())
        _ADD_CHECKPOINT.run(conn, size=grown.size, root=root, note=note, at=now)
        frontier = [h.hex() for h in grown.frontier]
        moved = _MOVE_HEAD.run(
            conn, was=head.tree_size, size=grown.size, frontier=frontier, alg=self.hasher.name
        )
        if moved != 1:  # the head was locked above: only a change outside OnceOnly gets here
            raise EvidenceError(
                f"the log head moved from size {head.tree_size} during an append; run `onceonly audit`"
            )
        kept = () if keep is None else (*(row[5] for row in logged), *keep)
        self._folded = (grown.frontier, root)
        return Appended(first, grown.size, root, note, kept)

    def append_entry(self, conn: Connection, kind: str, ref: str, document: Mapping[str, Any]) -> Appended:
        """Append one entry of ``kind`` (e.g. ``lifecycle``): ``document`` as RFC 8785 bytes."""
        return self.append(conn, [log_entry(kind, ref, document)])


def checkpoint_entry(conn: Connection, size: int, root_hash: bytes) -> tuple[bytes, str, str]:
    """The ``checkpoint`` entry logging the stored checkpoint of ``size`` (which must exist)."""
    # A locking read: under InnoDB's repeatable read a plain one would see the snapshot taken
    # before the previous append committed (the head was read locked, so it is the latest).
    found = _NOTE_LOCKED.first(conn, size=size)
    note = found.note if found is not None else None
    if note is None:
        raise EvidenceError(
            f"the log's newest checkpoint (size {size}) is missing from the catalog: the log was "
            "changed outside OnceOnly; run `onceonly audit`"
        )
    document = {
        "size": size,
        "root": root_hash.hex(),
        "note_sha256": hashlib.sha256(note.encode()).hexdigest(),
    }
    return log_entry(KIND_CHECKPOINT, str(size), document)


def log_entry(kind: str, ref: str, document: Mapping[str, Any]) -> tuple[bytes, str, str]:
    """``(entry bytes, kind, ref)`` for :meth:`TransparencyLog.append`: the RFC 8785 JSON of
    ``{"schema", "kind", **document}``, so a leaf says what it is."""
    if kind == KIND_CERTIFICATE:
        raise EvidenceError("certificates are appended as their own canonical bytes, not as log entries")
    return canonical_json({"schema": ENTRY_SCHEMA, "kind": kind, **document}), kind, ref


def _bundles(
    first: int, refs: pa.Array, entries: pa.Array, hashes: Sequence[bytes], stamp: Any
) -> list[tuple[Any, ...]]:
    """log_bundles rows of consecutive certificate leaves ``first..``, BUNDLE_LEAVES per row."""
    return [
        (
            first + lo,
            min(BUNDLE_LEAVES, len(entries) - lo),
            b"".join(hashes[lo : lo + BUNDLE_LEAVES]),
            _pack(refs.slice(lo, BUNDLE_LEAVES), entries.slice(lo, BUNDLE_LEAVES)),
            stamp,
        )
        for lo in range(0, len(entries), BUNDLE_LEAVES)
    ]


def _pack(refs: pa.Array, entries: pa.Array) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, _BUNDLE_SCHEMA, options=_BUNDLE_IPC) as writer:
        writer.write_batch(
            pa.record_batch([refs.cast(pa.string()), entries.cast(pa.binary())], schema=_BUNDLE_SCHEMA)
        )
    return bytes(sink.getvalue())


def _unpack(first_leaf: int, count: int, blob: bytes) -> tuple[list[str], list[bytes]]:
    """The refs and entries of a bundle; VerificationFailed if the blob is not one of ``count``."""
    try:
        table = pa.ipc.open_stream(pa.py_buffer(blob), options=_READ_IPC).read_all()
        if table.schema != _BUNDLE_SCHEMA or table.num_rows != count:
            raise ValueError(f"{table.num_rows} entries of {table.schema.names}")
    except (pa.ArrowException, ValueError) as exc:
        raise VerificationFailed(
            f"leaves {first_leaf}..{first_leaf + count - 1}: their stored entries are unreadable ({exc})"
        ) from exc
    return table.column("ref").to_pylist(), table.column("entry").to_pylist()


_OPENING_SCHEMA = pa.schema([("ref", pa.string()), ("salt", pa.binary()), ("body", pa.binary())])


def _opening_rows(first: int, refs: pa.Array, salts: pa.Array, bodies: pa.Array) -> list[tuple[Any, ...]]:
    """certificate_openings rows aligned with the log_bundles rows of the same leaves."""
    rows = []
    for lo in range(0, len(refs), BUNDLE_LEAVES):
        batch = pa.record_batch(
            [
                refs.slice(lo, BUNDLE_LEAVES).cast(pa.string()),
                salts.slice(lo, BUNDLE_LEAVES).cast(pa.binary()),
                bodies.slice(lo, BUNDLE_LEAVES).cast(pa.binary()),
            ],
            schema=_OPENING_SCHEMA,
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, _OPENING_SCHEMA, options=_BUNDLE_IPC) as writer:
            writer.write_batch(batch)
        rows.append((first + lo, batch.num_rows, bytes(sink.getvalue())))
    return rows


@dataclass(frozen=True)
class Opening:
    """A certificate leaf's opening: its id, salt and RFC 8785 bytes (private)."""

    leaf_index: int
    ref: str
    salt: bytes
    body: bytes


# The packed openings holding a leaf: run on the driver (a counter opens one per answer).
_OPENING_ROW = Prepared(
    select(
        certificate_openings.c.first_leaf, certificate_openings.c.leaf_count, certificate_openings.c.openings
    )
    .where(
        and_(
            certificate_openings.c.first_leaf <= bindparam("index"),
            certificate_openings.c.first_leaf > bindparam("after"),
        )
    )
    .order_by(certificate_openings.c.first_leaf.desc())
    .limit(1)
)


def opening_at(conn: Connection, index: int) -> Opening | None:
    """The opening of certificate leaf ``index``; None when it has none (a leaf an earlier
    version wrote: its entry is the certificate itself)."""
    row = _OPENING_ROW.first(conn, index=index, after=index - BUNDLE_LEAVES)
    if row is None or index >= row.first_leaf + row.leaf_count:
        return None
    at = index - int(row.first_leaf)
    refs, salts, bodies = _unpack_openings(int(row.first_leaf), int(row.leaf_count), bytes(row.openings), at)
    return Opening(index, refs[0], salts[0], bodies[0])


def openings(conn: Connection, lo: int = 0, hi: int | None = None) -> Iterator[Opening]:
    """Every stored opening of leaves ``lo..hi-1``, in leaf order."""
    stop = tree_size(conn) if hi is None else hi
    query = (
        select(certificate_openings)
        .where(
            and_(
                certificate_openings.c.first_leaf > lo - BUNDLE_LEAVES,
                certificate_openings.c.first_leaf < stop,
            )
        )
        .order_by(certificate_openings.c.first_leaf)
    )
    for row in conn.execute(query):
        first, count = int(row.first_leaf), int(row.leaf_count)
        refs, salts, bodies = _unpack_openings(first, count, bytes(row.openings))
        for at in range(max(lo - first, 0), min(stop - first, count)):
            yield Opening(first + at, refs[at], salts[at], bodies[at])


def _unpack_openings(
    first: int, count: int, blob: bytes, at: int | None = None
) -> tuple[list[str], list[bytes], list[bytes]]:
    """The refs, salts and bodies of a packed row of openings (only the one ``at``, if given)."""
    try:
        table = pa.ipc.open_stream(pa.py_buffer(blob), options=_READ_IPC).read_all()
        if table.schema != _OPENING_SCHEMA or table.num_rows != count:
            raise ValueError(f"{table.num_rows} openings of {table.schema.names}")
    except (pa.ArrowException, ValueError) as exc:
        raise VerificationFailed(
            f"leaves {first}..{first + count - 1}: their stored openings are unreadable ({exc})"
        ) from exc
    if at is not None:
        table = table.slice(at, 1)
    return (
        table.column("ref").to_pylist(),
        table.column("salt").to_pylist(),
        table.column("body").to_pylist(),
    )


def batch_receipt(
    *,
    batch_id: str,
    content_sha256: str,
    contract: str,
    dataset: str,
    pulled: int,
    accepted: int,
    quarantined: int,
    certificates: int,
    landed_at: str,
    files: Sequence[Mapping[str, Any]] = (),
    quarantine_sha256: str | None = None,
    resolved: tuple[int, str] | None = None,
) -> tuple[bytes, str, str]:
    """The receipt leaf of an accepted batch: what came in, under which contract, what passed —
    and what it left: its lake files (path, SHA-256, rows), the digest of its quarantine rows
    (``lake.landing.quarantine_digest``) and the number and digest of the earlier quarantine
    rows it resolved (``lake.landing.resolution_digest``), so ``onceonly audit`` can tell any of
    them changed."""
    document: dict[str, Any] = {
        "batch": batch_id,
        "content_sha256": content_sha256,
        "contract": contract,
        "dataset": dataset,
        "counts": {
            "pulled": pulled,
            "accepted": accepted,
            "quarantined": quarantined,
            "certificates": certificates,
        },
        "landed_at": landed_at,
    }
    if quarantine_sha256 is not None:
        document["files"] = [dict(f) for f in files]
        document["quarantine_sha256"] = quarantine_sha256
    if resolved is not None:
        document["resolved"] = {"rows": resolved[0], "sha256": resolved[1]}
    return log_entry(KIND_BATCH_RECEIPT, batch_id, document)


def use_entry(
    *,
    matter: str,
    certificate_id: str,
    township: str | None,
    material: str | None = None,
    purpose: str | None = None,
    subject: str | None = None,
    station: str | None = None,
    case_number: str | None = None,
) -> Committed:
    """The entry logging that shared data (a certificate) was used for ``matter`` instead of
    asking the citizen (append it with :func:`append_committed_many`, or :func:`record_use`).

    ``station`` and ``case_number`` (受理编号), when given, name who used it and for which case.

    The entry names the certificate, never the citizen: with ``subject`` (the ID number or USCC
    the use was for) it carries a salted commitment to it (``evidence.commitment``), and the
    subject and its salt are kept privately (``use_subjects``), so the citizen can be shown and
    can prove every use of their data while the published log names nobody.
    """
    document: dict[str, Any] = {
        "matter": matter,
        "certificate": certificate_id,
        "township": township,
        "material": material,
        "purpose": purpose,
        "used_at": utcnow().isoformat(timespec="seconds"),
    }
    if station is not None:
        document["station"] = station
    if case_number is not None:
        document["case_number"] = case_number
    return Committed(KIND_USE, certificate_id, document, subject)


def record_use(conn: Connection, log: TransparencyLog, **use: Any) -> Appended:
    """Log one use (:func:`use_entry`'s arguments) under its own checkpoint."""
    return append_committed_many(conn, log, [use_entry(**use)])


def refusal_entry(
    *,
    station: str,
    township: str,
    matter: str,
    reason: str,
    subject: str | None = None,
    purpose: str | None = None,
    case_number: str | None = None,
) -> Committed:
    """The entry logging that a station's request for shared data was refused, and why (kind
    ``refusal``).

    Like a use, the entry commits to the subject (when the request named a valid one) and never
    names them; the subject and salt are kept in ``use_subjects``, so the citizen sees refused
    attempts on their data too.
    """
    document: dict[str, Any] = {
        "station": station,
        "township": township,
        "matter": matter,
        "reason": reason,
        "purpose": purpose,
        "case_number": case_number,
        "refused_at": utcnow().isoformat(timespec="seconds"),
    }
    return Committed(KIND_REFUSAL, station, document, subject)


def record_refusal(conn: Connection, log: TransparencyLog, **refusal: Any) -> Appended:
    """Log one refusal (:func:`refusal_entry`'s arguments) under its own checkpoint."""
    return append_committed_many(conn, log, [refusal_entry(**refusal)])


@dataclass(frozen=True)
class Committed:
    """An entry to log committed to its subject (an ID number or USCC; None: no commitment)."""

    kind: str
    ref: str
    document: dict[str, Any]
    subject: str | None = field(default=None, repr=False)  # an ID number: never in a repr


def append_committed(
    conn: Connection,
    log: TransparencyLog,
    kind: str,
    ref: str,
    document: dict[str, Any],
    subject: str | None,
) -> Appended:
    """Append ``document`` (kind ``kind``) committed to ``subject``: :func:`append_committed_many`
    of one."""
    return append_committed_many(conn, log, [Committed(kind, ref, document, subject)])


def append_committed_many(conn: Connection, log: TransparencyLog, items: Sequence[Committed]) -> Appended:
    """Append ``items`` under one checkpoint, each committed to its subject under a fresh salt,
    never naming them; the subject and salt kept in ``use_subjects``, where the citizen's list of
    uses of their data (``sharing.uses``) finds them. Item ``i`` is leaf ``first_index + i``."""
    salts = iter(new_salts(sum(1 for item in items if item.subject is not None)))
    entries, kept = [], []
    for at, item in enumerate(items):
        document = item.document
        if item.subject is not None:
            salt = next(salts)
            document = {**document, "subject_commitment": subject_commitment(salt, item.subject)}
            kept.append((at, item.subject, salt))
        entries.append(log_entry(item.kind, item.ref, document))
    appended = log.append(conn, entries)
    if kept:  # on SQLite to the driver (SQLAlchemy's executemany was ~6 % of a counter's append)
        insert_rows(
            conn,
            use_subjects,
            ("leaf_index", "subject_id", "salt"),
            [(appended.first_index + at, subject, salt) for at, subject, salt in kept],
        )
    return appended


_LOGGED_TIMES = ("used_at", "refused_at", "granted_at", "landed_at", "published", "occurred_at", "at")


def entries_before(conn: Connection, size: int, *, chunk: int = 2000) -> Iterator[tuple[int, bytes]]:
    """The entries of the ``log_leaves`` rows below ``size`` (not the packed certificate leaves),
    newest first, read ``chunk`` rows at a time: for lookups that must trust only what the leaf
    hash covers (the entry), not the kind and ref columns beside it."""
    hi = size
    while hi > 0:
        rows = conn.execute(
            select(log_leaves.c.leaf_index, log_leaves.c.entry)
            .where(log_leaves.c.leaf_index < hi)
            .order_by(log_leaves.c.leaf_index.desc())
            .limit(chunk)
        ).all()
        if not rows:
            return
        for row in rows:
            yield int(row.leaf_index), bytes(row.entry or b"")
        hi = int(rows[-1].leaf_index)


def logged_time_before(conn: Connection, size: int) -> dt.datetime | None:
    """The newest time an entry logged before ``size`` records (a use, a receipt, a status list,
    a lifecycle change…): the time of the log at that checkpoint, as the log itself signed it —
    unlike the checkpoint row's ``created_at``, which nothing covers. None if no entry has one."""
    for _, entry in entries_before(conn, size):
        try:
            document = json.loads(entry or b"{}")
        except ValueError:
            continue
        if not isinstance(document, dict):
            continue
        for name in _LOGGED_TIMES:
            value = document.get(name)
            if isinstance(value, str):
                try:
                    when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    continue
                return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return None


# The statements of every append, compiled once (``catalog.Prepared``): a counter appends the
# uses of every answer, and SQLAlchemy's statement building cost more than the SQL itself.
_HEAD_LOCKED = Prepared(
    select(log_head.c.tree_size, log_head.c.frontier, log_head.c.hash_alg)
    .where(log_head.c.id == 1)
    .with_for_update()
)
_LAST_LEAVES_LOCKED = Prepared(
    select(log_leaves.c.leaf_index)
    .where(log_leaves.c.leaf_index >= bindparam("floor"))
    .order_by(log_leaves.c.leaf_index)
    .limit(2)
    .with_for_update()
)
_LAST_BUNDLES_LOCKED = Prepared(
    select(log_bundles.c.first_leaf, log_bundles.c.leaf_count)
    .where(log_bundles.c.first_leaf > bindparam("after"))
    .with_for_update()
)
_NOTE_LOCKED = Prepared(
    select(checkpoints.c.note).where(checkpoints.c.tree_size == bindparam("size")).with_for_update()
)
_ADD_CHECKPOINT = Prepared(
    insert(checkpoints).values(
        tree_size=bindparam("size"),
        root_hash=bindparam("root"),
        note=bindparam("note"),
        created_at=bindparam("at", type_=checkpoints.c.created_at.type),
    )
)
_MOVE_HEAD = Prepared(
    update(log_head)
    .where(and_(log_head.c.id == 1, log_head.c.tree_size == bindparam("was")))
    .values(tree_size=bindparam("size"), frontier=bindparam("frontier"), hash_alg=bindparam("alg"))
)


def _locked_head(conn: Connection, hasher: TreeHash) -> LogHead:
    # The head row must exist before it can be locked: two first appends that both found it
    # missing and both inserted it would make one fail on the key (or, without the lock, both
    # write leaf 0). Insert-if-missing, then lock: every append waits for the one before it.
    # On MySQL/MariaDB always (a locking read that finds no row takes a gap lock two
    # transactions can share, and their inserts then deadlock); elsewhere only when the lock
    # found no row, which saves a statement on every append but the first.
    first = conn.dialect.name in ("mysql", "mariadb")
    row = None if first else _HEAD_LOCKED.first(conn)
    if row is None:
        insert_missing(conn, log_head, {"id": 1, "tree_size": 0, "frontier": [], "hash_alg": hasher.name})
        row = _HEAD_LOCKED.first(conn)
    size = int(row.tree_size)
    if size and row.hash_alg != hasher.name:
        raise EvidenceError(
            f"the log uses {row.hash_alg}, this deployment is configured for {hasher.name} "
            "(ONCEONLY_LOG_HASH); a log never mixes two hash functions"
        )
    # Append-only, checked: the head must sit exactly after the last stored leaf. Locking
    # reads, so that InnoDB's repeatable read sees the latest leaves, not its first snapshot.
    floor = max(size - 1, 0)
    rows = [r.leaf_index for r in _LAST_LEAVES_LOCKED.all(conn, floor=floor)]
    bundles = _LAST_BUNDLES_LOCKED.all(conn, after=floor - BUNDLE_LEAVES)
    packed = (i for b in bundles for i in range(max(b.first_leaf, floor), b.first_leaf + b.leaf_count))
    tail = sorted([*rows, *packed])[:2]
    if tail != ([size - 1] if size else []):
        raise EvidenceError(
            f"the log head says {size} leaves but the stored leaves from {max(size - 1, 0)} on are "
            f"{tail}: the log was changed outside OnceOnly; run `onceonly log verify`"
        )
    return LogHead(size, [bytes.fromhex(h) for h in row.frontier], hasher)


def read_head(conn: Connection) -> LogHead:
    """The log's size, frontier and hash function (an empty SHA-256 log if nothing was appended)."""
    row = conn.execute(
        select(log_head.c.tree_size, log_head.c.frontier, log_head.c.hash_alg).where(log_head.c.id == 1)
    ).first()
    if row is None:
        return LogHead(0, [], SHA256)
    return LogHead(int(row.tree_size), [bytes.fromhex(h) for h in row.frontier], tree_hash(row.hash_alg))


def latest_checkpoint(conn: Connection) -> tuple[int, str] | None:
    """``(tree size, signed note)`` of the newest checkpoint, or None for an empty log."""
    row = conn.execute(
        select(checkpoints.c.tree_size, checkpoints.c.note).order_by(checkpoints.c.tree_size.desc()).limit(1)
    ).first()
    return None if row is None else (int(row.tree_size), str(row.note))


def checkpoint_at(conn: Connection, size: int) -> str | None:
    """The signed checkpoint note of tree size ``size``, if one was published."""
    # A locking read: under InnoDB's repeatable read a plain one would see the snapshot taken
    # before the previous append committed (the head was read locked, so it is the latest).
    note = conn.execute(
        select(checkpoints.c.note).where(checkpoints.c.tree_size == size).with_for_update()
    ).scalar()
    return None if note is None else str(note)


def tree_size(conn: Connection) -> int:
    row = conn.execute(select(log_head.c.tree_size).where(log_head.c.id == 1)).first()
    return 0 if row is None else int(row.tree_size)


@dataclass(frozen=True)
class Leaf:
    index: int
    kind: str
    ref: str
    leaf_hash: bytes
    entry: bytes | None  # the logged bytes (a certificate's canonical JSON for certificates)


def leaf_at(conn: Connection, index: int) -> Leaf:
    """Leaf ``index`` with its entry; EvidenceError if the log has no such leaf."""
    row = _LEAF_ROWS.first(conn, lo=index, hi=index + 1)
    if row is not None:
        return Leaf(index, row.kind, row.ref, bytes(row.leaf_hash), _stored_bytes(row.entry))
    bundle = conn.execute(
        select(log_bundles)
        .where(and_(log_bundles.c.first_leaf <= index, log_bundles.c.first_leaf > index - BUNDLE_LEAVES))
        .order_by(log_bundles.c.first_leaf.desc())
        .limit(1)
    ).first()
    if bundle is None or index >= bundle.first_leaf + bundle.leaf_count:
        raise EvidenceError(f"the log has no leaf {index} (it holds {tree_size(conn)})")
    at = index - bundle.first_leaf
    refs, entries = _unpack(bundle.first_leaf, bundle.leaf_count, bytes(bundle.entries))
    return Leaf(
        index, KIND_CERTIFICATE, refs[at], bytes(bundle.leaf_hashes)[32 * at : 32 * at + 32], entries[at]
    )


def leaves(conn: Connection, lo: int = 0, hi: int | None = None) -> Iterator[Leaf]:
    """The stored leaves ``lo..hi-1`` (to the end by default) in order, with their entries.

    As stored: a missing leaf is skipped, not reported (:func:`verify_log` reports it).
    """
    stop = tree_size(conn) if hi is None else hi
    for start in range(lo, stop, _VERIFY_CHUNK):
        yield from _stored_leaves(conn, start, min(stop, start + _VERIFY_CHUNK))


# The rows of leaves lo..hi-1 in both stores, run on the driver (``catalog.Prepared``): a
# service's view of the log reads them after every append, `log verify` a chunk at a time.
_LEAF_ROWS = Prepared(
    select(
        log_leaves.c.leaf_index,
        log_leaves.c.kind,
        log_leaves.c.ref,
        log_leaves.c.leaf_hash,
        log_leaves.c.entry,
    )
    .where(and_(log_leaves.c.leaf_index >= bindparam("lo"), log_leaves.c.leaf_index < bindparam("hi")))
    .order_by(log_leaves.c.leaf_index)
)
_BUNDLE_ROWS = Prepared(
    select(
        log_bundles.c.first_leaf, log_bundles.c.leaf_count, log_bundles.c.leaf_hashes, log_bundles.c.entries
    )
    .where(and_(log_bundles.c.first_leaf > bindparam("after"), log_bundles.c.first_leaf < bindparam("hi")))
    .order_by(log_bundles.c.first_leaf)
)


def _stored_bytes(value: Any) -> bytes | None:
    """A BLOB as read back; text written into it (an edit) as its UTF-8 bytes, to be compared."""
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else bytes(value)


def _stored_leaves(conn: Connection, lo: int, hi: int) -> list[Leaf]:
    """Leaves ``lo..hi-1`` from both stores, in index order (duplicates kept: tampering)."""
    found = [
        Leaf(int(r.leaf_index), r.kind, r.ref, bytes(r.leaf_hash), _stored_bytes(r.entry))
        for r in _LEAF_ROWS.all(conn, lo=lo, hi=hi)
    ]
    for bundle in _BUNDLE_ROWS.all(conn, after=lo - BUNDLE_LEAVES, hi=hi):
        first, count = int(bundle.first_leaf), int(bundle.leaf_count)
        hashes = bytes(bundle.leaf_hashes)
        if len(hashes) != 32 * count:
            raise VerificationFailed(
                f"leaves {first}..{first + count - 1}: {len(hashes)} bytes of leaf hashes for {count} leaves"
            )
        refs, entries = _unpack(first, count, bytes(bundle.entries))
        for at in range(max(lo - first, 0), min(hi - first, count)):
            found.append(
                Leaf(first + at, KIND_CERTIFICATE, refs[at], hashes[32 * at : 32 * at + 32], entries[at])
            )
    found.sort(key=lambda leaf: leaf.index)
    return found


def stored_entries(conn: Connection, lo: int, hi: int) -> list[tuple[int, bytes | None]]:
    """``(index, entry)`` of leaves ``lo..hi-1`` from both stores, in index order, duplicates
    kept: for a reader that hashes the entries itself (``evidence.view``), without a
    :class:`Leaf` per certificate (a third of the time of verifying a large log)."""
    found = [(int(r.leaf_index), _stored_bytes(r.entry)) for r in _LEAF_ROWS.all(conn, lo=lo, hi=hi)]
    for bundle in _BUNDLE_ROWS.all(conn, after=lo - BUNDLE_LEAVES, hi=hi):
        first, count = int(bundle.first_leaf), int(bundle.leaf_count)
        _, entries = _unpack(first, count, bytes(bundle.entries))
        found += [(first + at, entries[at]) for at in range(max(lo - first, 0), min(hi - first, count))]
    found.sort(key=lambda leaf: leaf[0])
    return found


def prove_inclusion(conn: Connection, leaf_index: int, size: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of ``leaf_index`` in the tree of the first ``size`` leaves."""
    if not 0 <= leaf_index < size:
        raise EvidenceError(f"leaf {leaf_index} is not in a tree of size {size}")
    return _range_roots(conn, inclusion_ranges(leaf_index, size), _hasher_of_size(conn, size))


def prove_consistency(conn: Connection, old_size: int, new_size: int) -> list[bytes]:
    """The RFC 9162 consistency proof from the tree of ``old_size`` leaves to ``new_size``."""
    if not 0 <= old_size <= new_size:
        raise EvidenceError(f"no consistency proof from size {old_size} to {new_size}")
    hasher = _hasher_of_size(conn, new_size)
    return _range_roots(conn, consistency_ranges(old_size, new_size), hasher)


def root_at(conn: Connection, size: int) -> bytes:
    """MTH of the first ``size`` leaves, from stored nodes (one per set bit of ``size``)."""
    hasher = _hasher_of_size(conn, size)
    if size == 0:
        return hasher.empty_root
    return _range_roots(conn, [(0, size)], hasher)[0]


# Size and hash function, without the frontier a proof does not need; built once.
_SIZE_AND_HASH = select(log_head.c.tree_size, log_head.c.hash_alg).where(log_head.c.id == 1)


def _hasher_of_size(conn: Connection, size: int) -> TreeHash:
    """The log's hash function, the log checked to hold at least ``size`` leaves."""
    row = conn.execute(_SIZE_AND_HASH).first()
    current = 0 if row is None else int(row.tree_size)
    if size > current:
        raise EvidenceError(f"the log has {current} leaves, fewer than the {size} asked for")
    return SHA256 if row is None else tree_hash(row.hash_alg)


def _range_roots(conn: Connection, ranges: Sequence[tuple[int, int]], hasher: TreeHash) -> list[bytes]:
    """MTH of each leaf range, from the stored perfect subtrees that make it up."""
    parts = [perfect_subtrees(lo, hi) for lo, hi in ranges]
    found = _subtree_hashes(conn, {key for keys in parts for key in keys}, hasher)
    return [fold_subtrees([found[key] for key in keys], hasher=hasher) for keys in parts]


# Where _subtree_hashes' one query found a hash: a log_leaves row, a bundle, a log_nodes row.
_FROM_LEAF, _FROM_BUNDLE, _FROM_NODE = 0, 1, 2


def _hash_rows(source: int, key: Any, count: Any, data: Any) -> Any:
    return select(
        literal_column(str(source)).label("source"),
        key.label("key"),
        count.label("count"),
        data.label("data"),
    )


# Built once: a proof's cost is mostly statement building and round trips, so a proof is one
# cached statement whose IN lists expand at execution. Bundles are found by the spans of leaf
# indexes they may start in: the bundle holding leaf i starts in (i - BUNDLE_LEAVES, i].
# Fixed IN lists (unused slots -1, which no row has): one SQL text, prepared once by the driver,
# instead of a statement rendered anew for each list length. A proof needs at most 15 leaves
# per span (levels 0-3) and one node per level 4..63.
_LEAF_SLOTS, _NODE_SLOTS = 32, 64
_LEAF_HASHES = _hash_rows(
    _FROM_LEAF, log_leaves.c.leaf_index, literal_column("1"), log_leaves.c.leaf_hash
).where(log_leaves.c.leaf_index.in_([bindparam(f"leaf{i}") for i in range(_LEAF_SLOTS)]))
_NODE_HASHES = _hash_rows(_FROM_NODE, log_nodes.c.node_id, literal_column("1"), log_nodes.c.hash).where(
    log_nodes.c.node_id.in_([bindparam(f"node{i}") for i in range(_NODE_SLOTS)])
)
_BUNDLE_HASHES = _hash_rows(
    _FROM_BUNDLE, log_bundles.c.first_leaf, log_bundles.c.leaf_count, log_bundles.c.leaf_hashes
).where(
    or_(
        and_(log_bundles.c.first_leaf > bindparam("lo1"), log_bundles.c.first_leaf < bindparam("hi1")),
        and_(log_bundles.c.first_leaf > bindparam("lo2"), log_bundles.c.first_leaf < bindparam("hi2")),
    )
)
_ALL_HASHES = union_all(_LEAF_HASHES, _BUNDLE_HASHES, _NODE_HASHES)


def _subtree_hashes(
    conn: Connection, keys: set[tuple[int, int]], hasher: TreeHash
) -> dict[tuple[int, int], bytes]:
    """Hashes of perfect subtrees ``(level, index)``: nodes of level 4 up from log_nodes, the
    lower ones rebuilt from their (at most 8) stored leaf hashes, all read with one query."""
    low = sorted((level, index) for level, index in keys if level < NODE_MIN_LEVEL)
    ids = {node_id(level, index): (level, index) for level, index in keys if level >= NODE_MIN_LEVEL}
    ranges = [(index << level, (index + 1) << level) for level, index in low]
    spans: list[list[int]] = []  # nearby ranges share a span of bundles
    for lo, hi in sorted(ranges):
        if spans and lo <= spans[-1][1] + BUNDLE_LEAVES:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    found: dict[tuple[int, int], bytes] = {}
    hashes: dict[int, bytes] = {}
    rows: list[Any] = []
    leaves = sorted({i for lo, hi in ranges for i in range(lo, hi)})
    nodes = list(ids)
    # A proof is one query; more leaves, nodes or spans than one query takes make several.
    steps = max(-(-len(leaves) // _LEAF_SLOTS), -(-len(nodes) // _NODE_SLOTS), -(-len(spans) // 2), 1)
    for step in range(steps):
        (lo1, hi1), (lo2, hi2) = [*spans[2 * step : 2 * step + 2], [0, 0], [0, 0]][:2]
        parameters = {"lo1": lo1 - BUNDLE_LEAVES, "hi1": hi1, "lo2": lo2 - BUNDLE_LEAVES, "hi2": hi2}
        parameters |= _slots("leaf", leaves[step * _LEAF_SLOTS : (step + 1) * _LEAF_SLOTS], _LEAF_SLOTS)
        parameters |= _slots("node", nodes[step * _NODE_SLOTS : (step + 1) * _NODE_SLOTS], _NODE_SLOTS)
        rows += conn.execute(_ALL_HASHES, parameters).all()
    for row in rows:
        source, key, data = int(row.source), int(row.key), bytes(row.data)
        if source == _FROM_NODE:
            found[ids[key]] = data
        else:
            _take_leaf_hashes(hashes, key, int(row.count), data, ranges)
    for level, index in low:
        span = [hashes.get(i) for i in range(index << level, (index + 1) << level)]
        if all(h is not None for h in span):
            found[level, index] = root([h for h in span if h is not None], hasher=hasher)
    missing = sorted(keys - found.keys())
    if missing:
        level, index = missing[0]
        what = f"leaf {index}" if level == 0 else f"node ({level}, {index})"
        raise EvidenceError(f"the log is missing {what}: it was tampered with or truncated")
    return found


def _slots(name: str, values: list[int], slots: int) -> dict[str, int]:
    return {f"{name}{i}": values[i] if i < len(values) else -1 for i in range(slots)}


def _take_leaf_hashes(
    hashes: dict[int, bytes], first: int, count: int, blob: bytes, ranges: Sequence[tuple[int, int]]
) -> None:
    """The hashes of leaves ``first..first+count-1`` (a row's or a bundle's) that ``ranges`` want."""
    for lo, hi in ranges:
        for i in range(max(lo, first), min(hi, first + count, first + len(blob) // 32)):
            hashes.setdefault(i, blob[32 * (i - first) : 32 * (i - first + 1)])


# ---------------------------------------------------------------------------- verification


@dataclass
class LogReport:
    """What :func:`verify_log` checked."""

    tree_size: int = 0
    hash_alg: str = "sha256"
    root_hash: bytes = b""
    kinds: Counter[str] = field(default_factory=Counter)
    nodes: int = 0
    checkpoints: int = 0


def verify_log(
    conn: Connection, verifier: NoteVerifier | Sequence[NoteVerifier], *, chunk: int = _VERIFY_CHUNK
) -> LogReport:
    """Recompute the whole log from its entries and check every stored leaf, node and checkpoint.

    Raises :class:`VerificationFailed` naming the first inconsistency: a leaf whose entry does
    not hash to it (or has no entry), a missing, extra or differing interior node, a checkpoint
    whose root differs from the recomputed tree or whose signature or text is wrong, a head
    that does not match. ``verifier`` may be several keys (a keyring after rotations): each
    checkpoint must carry a good signature by one of them. Memory stays bounded: ``chunk``
    leaves at a time.
    """
    head = read_head(conn)
    hasher = head.hasher
    report = LogReport(tree_size=head.tree_size, hash_alg=hasher.name)
    stored_checkpoints = conn.execute(
        select(checkpoints.c.tree_size, checkpoints.c.root_hash, checkpoints.c.note).order_by(
            checkpoints.c.tree_size
        )
    ).all()
    beyond = [int(c.tree_size) for c in stored_checkpoints if int(c.tree_size) > head.tree_size]
    if beyond:
        raise VerificationFailed(
            f"checkpoint at size {beyond[0]} is beyond the log's {head.tree_size} leaves"
        )
    _check_bundle_shapes(conn, head.tree_size)
    by_size = {int(c.tree_size): c for c in stored_checkpoints}
    stops = sorted({*by_size, head.tree_size})
    size = 0
    frontier: list[bytes] = []
    for stop in stops:
        while size < stop:
            end = min(stop, size + chunk)
            hashes = _checked_leaves(conn, size, end, hasher, report)
            grown = extend(size, frontier, hashes, hasher=hasher)
            for level, (first, expected) in enumerate(grown.levels, start=1):
                if level >= NODE_MIN_LEVEL:
                    _check_nodes(conn, level, first, expected)
                    report.nodes += len(expected)
            size, frontier = end, grown.frontier
        if stop in by_size:
            _check_checkpoint(by_size[stop], stop, frontier, hasher, verifier)
            report.checkpoints += 1
    stored_nodes = conn.execute(select(func.count()).select_from(log_nodes)).scalar_one()
    if stored_nodes != report.nodes:
        raise VerificationFailed(
            f"the log stores {stored_nodes} interior nodes; "
            f"a tree of {head.tree_size} leaves has {report.nodes}"
        )
    if frontier != head.frontier:
        raise VerificationFailed("the log head's frontier differs from the tree recomputed from the leaves")
    stored_leaves = conn.execute(select(func.count()).select_from(log_leaves)).scalar_one() + int(
        conn.execute(select(func.coalesce(func.sum(log_bundles.c.leaf_count), 0))).scalar_one()
    )
    if stored_leaves != head.tree_size:
        raise VerificationFailed(f"the log stores {stored_leaves} leaves, its head says {head.tree_size}")
    report.root_hash = head.root_hash
    return report


def _checked_leaves(conn: Connection, lo: int, hi: int, hasher: TreeHash, report: LogReport) -> list[bytes]:
    stored = _stored_leaves(conn, lo, hi)
    holders = {
        int(r.leaf_index): r.cert_id
        for r in conn.execute(
            select(certificates.c.leaf_index, certificates.c.cert_id).where(
                and_(certificates.c.leaf_index >= lo, certificates.c.leaf_index < hi)
            )
        )
    }
    hashes: list[bytes] = []
    for expected_index, leaf in zip(_count(lo), stored, strict=False):
        index = leaf.index
        if index < expected_index:
            raise VerificationFailed(f"leaf {index} is stored twice")
        if index != expected_index:
            raise VerificationFailed(f"leaf {expected_index} is missing from the log")
        if leaf.kind == KIND_CERTIFICATE and holders.get(index) != leaf.ref:
            raise VerificationFailed(f"leaf {index}: no certificate {leaf.ref} holds this leaf")
        if leaf.entry is None:
            raise VerificationFailed(f"leaf {index} ({leaf.kind} {leaf.ref}) has no stored entry")
        if leaf.kind == KIND_CERTIFICATE and _certificate_id(leaf.entry) != leaf.ref:
            # The id beside a packed entry is not hashed: the entry must name the same one.
            raise VerificationFailed(f"leaf {index}: its entry is not certificate {leaf.ref}")
        if leaf.kind != KIND_CERTIFICATE:
            _check_label(leaf)
        recomputed = hasher.leaf(leaf.entry)
        if recomputed != leaf.leaf_hash:
            raise VerificationFailed(
                f"leaf {index} ({leaf.kind} {leaf.ref}): its entry does not hash to the stored leaf hash"
            )
        report.kinds[leaf.kind] += 1
        hashes.append(recomputed)
    if len(hashes) != hi - lo:
        raise VerificationFailed(f"leaf {lo + len(hashes)} is missing from the log")
    return hashes


def _check_label(leaf: Leaf) -> None:
    """The kind (and a status list's ref) stored beside an entry that says what it is must be
    what it says: those columns are not covered by the leaf hash, and a relabelled status list
    would hide the newest one from whoever looks lists up by kind."""
    from evidence.status_list import LOG_KIND, STATUS_LIST_FORMAT, list_id, listed_in

    marked = b'"schema":"' + ENTRY_SCHEMA.encode() + b'"' in (leaf.entry or b"") or (
        b'"format":"' + STATUS_LIST_FORMAT.encode() + b'"' in (leaf.entry or b"")
    )
    if not marked:
        return  # an entry that does not say what it is (none is written so): nothing to compare
    try:
        document = json.loads(leaf.entry or b"")
    except ValueError:
        return
    if not isinstance(document, dict):
        return
    if document.get("schema") == ENTRY_SCHEMA:
        kind, ref = document.get("kind"), None
    elif document.get("format") == STATUS_LIST_FORMAT:
        listed = listed_in(leaf.entry or b"")
        kind, ref = LOG_KIND, list_id(*listed) if listed else "?"
    else:
        return
    if leaf.kind != kind or (ref is not None and leaf.ref != ref):
        raise VerificationFailed(
            f"leaf {leaf.index}: the catalog labels it {leaf.kind} {leaf.ref}, but its entry is "
            f"{kind}{' ' + ref if ref else ''}"
        )


def _certificate_id(entry: bytes) -> Any:
    try:
        body = json.loads(entry)
    except ValueError:
        return None
    return body.get("id") if isinstance(body, dict) else None


def _check_bundle_shapes(conn: Connection, size: int) -> None:
    """Every bundle holds 1..BUNDLE_LEAVES leaves inside the tree: what lookups and counts assume."""
    bad = conn.execute(
        select(log_bundles.c.first_leaf, log_bundles.c.leaf_count)
        .where(
            or_(
                log_bundles.c.leaf_count < 1,
                log_bundles.c.leaf_count > BUNDLE_LEAVES,
                log_bundles.c.first_leaf < 0,
                log_bundles.c.first_leaf + log_bundles.c.leaf_count > size,
            )
        )
        .order_by(log_bundles.c.first_leaf)
        .limit(1)
    ).first()
    if bad is not None:
        raise VerificationFailed(
            f"the bundle of leaves from {bad.first_leaf} claims {bad.leaf_count} leaves: a bundle holds "
            f"1 to {BUNDLE_LEAVES} leaves of a tree of {size}"
        )


def _check_nodes(conn: Connection, level: int, first: int, expected: list[bytes]) -> None:
    lo = node_id(level, first)
    rows = conn.execute(
        select(log_nodes.c.node_id, log_nodes.c.hash)
        .where(and_(log_nodes.c.node_id >= lo, log_nodes.c.node_id < lo + len(expected)))
        .order_by(log_nodes.c.node_id)
    ).all()
    stored = {int(r.node_id) - lo + first: bytes(r.hash) for r in rows}
    for offset, value in enumerate(expected):
        index = first + offset
        if index not in stored:
            raise VerificationFailed(f"interior node ({level}, {index}) is missing from the log")
        if stored[index] != value:
            raise VerificationFailed(
                f"interior node ({level}, {index}) differs from the tree recomputed from the leaves"
            )


def _check_checkpoint(
    row: Any,
    size: int,
    frontier: list[bytes],
    hasher: TreeHash,
    verifier: NoteVerifier | Sequence[NoteVerifier],
) -> None:
    recomputed = fold_subtrees(frontier, hasher=hasher) if frontier else hasher.empty_root
    if bytes(row.root_hash) != recomputed:
        raise VerificationFailed(
            f"checkpoint at size {size}: its root differs from the tree recomputed from the leaves"
        )
    try:
        body = Checkpoint.parse(open_note(str(row.note), verifier))
    except VerificationFailed as exc:
        raise VerificationFailed(f"checkpoint at size {size}: {exc}") from exc
    if body.size != size or body.root_hash != recomputed:
        raise VerificationFailed(
            f"checkpoint at size {size}: the signed note says size {body.size} and another root"
        )


def _count(start: int) -> Iterator[int]:
    while True:
        yield start
        start += 1


def unusable_checkpoints(conn: Connection, keyring: Keyring) -> list[tuple[int, str]]:
    """``(tree size, why)`` of every stored checkpoint whose key was not usable when it was stored.

    The signing time is the checkpoint row's ``created_at`` (written in the transaction that
    signed it; checkpoints themselves carry no time): at or after the key's compromised-since
    time, or after its retirement, the checkpoint is reported (``evidence.keys.check_key_status``).
    """
    watched = [r for r in keyring.keys if r.compromised_since is not None or r.retired is not None]
    if not watched:
        return []
    found: list[tuple[int, str]] = []
    rows = conn.execute(
        select(checkpoints.c.tree_size, checkpoints.c.note, checkpoints.c.created_at).order_by(
            checkpoints.c.tree_size
        )
    )
    for row in rows:
        created = row.created_at
        if created.tzinfo is None:  # SQLite returns the stored UTC time without its zone
            created = created.replace(tzinfo=dt.UTC)
        try:
            signer = keyring.signer_of(str(row.note))
            check_key_status(signer.key_id, created, keyring, signer.name)
        except VerificationFailed as exc:
            found.append((int(row.tree_size), f"{exc} (signing time: the checkpoint's created_at)"))
    return found


# ---------------------------------------------------------------------------- read helpers


def node_hashes(conn: Connection, level: int, lo: int, hi: int) -> list[bytes]:
    """The stored interior nodes ``(level, lo)`` .. ``(level, hi - 1)`` in order (level 4 up).

    One range read of ``log_nodes`` (static publication reads its tiles of level 1 and up,
    tree levels 8, 16, …, with it); EvidenceError naming the first node that is not stored.
    """
    if level < NODE_MIN_LEVEL:
        raise ValueError(f"nodes of level {level} are not stored; levels {NODE_MIN_LEVEL} and up are")
    if lo >= hi:
        return []
    first = node_id(level, lo)
    rows = conn.execute(
        select(log_nodes.c.node_id, log_nodes.c.hash)
        .where(and_(log_nodes.c.node_id >= first, log_nodes.c.node_id < first + hi - lo))
        .order_by(log_nodes.c.node_id)
    ).all()
    ids = [int(r.node_id) for r in rows]
    if ids != list(range(first, first + hi - lo)):
        gap = next(offset for offset, got in enumerate([*ids, -1]) if got != first + offset)
        raise EvidenceError(
            f"the log is missing node ({level}, {lo + gap}): it was tampered with or truncated"
        )
    return [bytes(r.hash) for r in rows]


__all__ = [
    "ENTRY_SCHEMA",
    "KIND_BATCH_RECEIPT",
    "KIND_BREACH_RECEIPT",
    "KIND_CERTIFICATE",
    "KIND_CHECKPOINT",
    "KIND_DECISION",
    "KIND_EXTRACT",
    "KIND_EXTRACT_MANIFEST",
    "KIND_LIFECYCLE",
    "KIND_REFUSAL",
    "KIND_REMINDER",
    "KIND_SUPERVISION",
    "KIND_USE",
    "NODE_MIN_LEVEL",
    "Appended",
    "Committed",
    "Leaf",
    "LogHead",
    "LogReport",
    "Opening",
    "TransparencyLog",
    "append_committed",
    "append_committed_many",
    "batch_receipt",
    "checkpoint_at",
    "checkpoint_entry",
    "entries_before",
    "latest_checkpoint",
    "leaf_at",
    "leaves",
    "log_entry",
    "logged_time_before",
    "node_hashes",
    "node_id",
    "opening_at",
    "openings",
    "prove_consistency",
    "prove_inclusion",
    "read_head",
    "record_refusal",
    "record_use",
    "refusal_entry",
    "root_at",
    "stored_entries",
    "tree_size",
    "unusable_checkpoints",
    "use_entry",
    "verify_log",
]
