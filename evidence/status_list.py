"""Status lists of e-certificates, after the W3C Bitstring Status List (v1.0), one set per issuer.

Example::

    with catalog.begin() as conn:
        entries = allocate_entries(conn, issuer_uscc, count=len(drafts))   # at issuance
        published = publish_status_lists(conn, log)                        # after changes
    write_status_files(catalog, settings.home / "var" / "status")          # for townships

    status = open_status_list(published_json, verifier)                     # offline
    status.state(certificate["credential_status"]["index"])                 # '有效', '暂扣', …

Each issuer's certificates get an entry (list number, index) in a list of ``LIST_SIZE``
entries (131,072, the W3C minimum: "the uncompressed bitstring MUST be at least 16KB"),
handed out in a random order fixed when the list is created, so an index says nothing about
when or to whom a certificate was issued. The certificate carries its entry
(``credential_status``), so the entry is covered by the certificate's own log leaf.

A published list is one JSON document with three bitstrings over the same indices:
``revocation`` (1 bit: 撤销, 吊销, 注销, 失效 or superseded — never reversed), ``suspension``
(1 bit: 暂扣, reversed by 暂扣发还) and ``message`` (3 bits: which of ``STATES``). Each is
GZIP-compressed and multibase base64url encoded (``u`` + base64url without padding), index 0
the most significant bit of the first byte (W3C "Bitstring Generation Algorithm").

The document is signed with the log's key as a signed note over its SHA-256 (the note text is
``onceonly-status-list/1``, the list's id and the hex digest) and appended to the log (kind
``status-list``), so a township can check it offline and nobody can show one township a
different list than another without leaving a trace in the log.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, bindparam, exists, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from catalog import Catalog, certificates, insert_missing, status_lists, utcnow
from evidence.canonical import canonical_json
from evidence.certificate import (
    STATUS_CANCELLED,
    STATUS_EXPIRED,
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    STATUS_VALID,
    STATUS_WITHDRAWN,
)
from evidence.keys import SigningKey
from evidence.log import TransparencyLog
from evidence.note import NoteVerifier, open_note, parse_vkey
from onceonly.errors import EvidenceError, VerificationFailed
from onceonly.files import write_atomic

STATUS_LIST_FORMAT = "onceonly-status-list/1"
LIST_SIZE = 131_072  # W3C Bitstring Status List §2.1: at least 16 KB (131,072 entries of 1 bit)
MESSAGE_BITS = 3
# The ``message`` purpose: the value at an index names the certificate's state.
STATE_SUPERSEDED = "superseded"
STATES: tuple[str, ...] = (
    STATUS_VALID,  # 0 有效
    STATUS_SUSPENDED,  # 1 暂扣
    STATUS_REVOKED,  # 2 撤销
    STATUS_WITHDRAWN,  # 3 吊销
    STATUS_CANCELLED,  # 4 注销
    STATUS_EXPIRED,  # 5 失效
    STATE_SUPERSEDED,  # 6 失效: replaced by a newer version
)
_STATE_CODE = {state: code for code, state in enumerate(STATES)}
_MAX_DECOMPRESSED = 1 << 20  # far above 131,072 × 3 bits; refuses a gzip bomb
LOG_KIND = "status-list"


@dataclass(frozen=True)
class StatusEntry:
    """Where a certificate's status lies: list ``list_no`` of ``issuer``, at ``index``."""

    issuer: str
    list_no: int
    index: int

    def to_json(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "list": self.list_no, "index": self.index}


def list_id(issuer: str, list_no: int) -> str:
    return f"{issuer}/{list_no}"


# ---------------------------------------------------------------------------- assignment


def allocate_entries(conn: Connection, issuer: str, count: int) -> list[StatusEntry]:
    """``count`` unused entries of ``issuer``'s lists, in their random order.

    The issuer's newest list is locked for update (like serials), so two landings never get
    the same entry; a full list is followed by a new one.
    """
    lists, indexes = allocate_positions(conn, issuer, count)
    return [StatusEntry(issuer, n, i) for n, i in zip(lists.tolist(), indexes.tolist(), strict=True)]


def allocate_positions(conn: Connection, issuer: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`allocate_entries` as two arrays (list numbers, indexes), for a whole batch at once."""
    lists: list[np.ndarray] = []
    indexes: list[np.ndarray] = []
    taken = 0
    while taken < count:
        list_no = _newest_list(conn, issuer)
        key = and_(status_lists.c.issuer_code == issuer, status_lists.c.list_no == list_no)
        row = conn.execute(
            select(status_lists.c.next_slot, status_lists.c.permutation).where(key).with_for_update()
        ).one()
        first = int(row.next_slot)
        if first >= LIST_SIZE:
            _create_list(conn, issuer, list_no + 1)
            continue
        take = min(count - taken, LIST_SIZE - first)
        order = np.frombuffer(bytes(row.permutation), dtype="<u4")
        indexes.append(order[first : first + take].astype(np.int64))
        lists.append(np.full(take, list_no, dtype=np.int64))
        taken += take
        conn.execute(update(status_lists).where(key).values(next_slot=first + take))
    if not lists:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(lists), np.concatenate(indexes)


def _newest_list(conn: Connection, issuer: str) -> int:
    newest = conn.execute(
        select(status_lists.c.list_no)
        .where(status_lists.c.issuer_code == issuer)
        .order_by(status_lists.c.list_no.desc())
        .limit(1)
    ).scalar()
    if newest is None:
        _create_list(conn, issuer, 0)
        return 0
    return int(newest)


def _create_list(conn: Connection, issuer: str, list_no: int) -> None:
    # W3C §6.5 (herd privacy): random index assignment. The order of 64-bit keys from the OS's
    # CSPRNG is a uniformly random permutation (a tie, ~2**-30 per list, only keeps two in
    # place); NumPy sorts them, instead of a Python shuffle drawing 131,072 numbers one by one.
    keys = np.frombuffer(os.urandom(8 * LIST_SIZE), dtype="<u8")
    permutation = np.argsort(keys, kind="stable").astype("<u4").tobytes()
    insert_missing(
        conn,
        status_lists,
        {"issuer_code": issuer, "list_no": list_no, "next_slot": 0, "permutation": permutation},
    )


# ---------------------------------------------------------------------------- publication


@dataclass(frozen=True)
class PublishedList:
    """A signed status list as published: the document, its signature and its log leaf."""

    document: dict[str, Any]
    signature: str
    leaf_index: int

    def to_json(self) -> dict[str, Any]:
        return {"document": self.document, "signature": self.signature, "leaf_index": self.leaf_index}


def build_document(
    conn: Connection, issuer: str, list_no: int, origin: str, published: dt.datetime
) -> dict[str, Any]:
    """The status list document of one list, from the catalog's current statuses.

    Only certificates not 有效 set bits (ix_certificates_not_valid finds them): the others
    read 有效, superseded or not.
    """
    newer = aliased(certificates)
    superseded = exists().where(newer.c.previous_id == certificates.c.cert_id)
    rows = conn.execute(
        select(certificates.c.status_index, certificates.c.status, superseded.label("superseded")).where(
            and_(
                certificates.c.issuer_code == issuer,
                certificates.c.list_no == list_no,
                # a literal, not a parameter: SQLite uses a partial index only for its own WHERE
                certificates.c.status != bindparam("valid", STATUS_VALID, literal_execute=True),
            )
        )
    ).all()
    states = {int(r.status_index): _state_of(r.status, bool(r.superseded)) for r in rows}
    return make_document(issuer, list_no, origin, published, states)


def make_document(
    issuer: str, list_no: int, origin: str, published: dt.datetime, states: Mapping[int, str]
) -> dict[str, Any]:
    """The status list document giving each index in ``states`` its state (others: 有效)."""
    indices = np.fromiter(states.keys(), dtype=np.int64, count=len(states))
    codes = np.fromiter((_STATE_CODE[s] for s in states.values()), dtype=np.uint8, count=len(states))
    return {
        "format": STATUS_LIST_FORMAT,
        "id": f"{origin}/status/{list_id(issuer, list_no)}",
        "issuer": issuer,
        "list": list_no,
        "size": LIST_SIZE,
        "published": published.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "revocation": encode_bits(_bits(indices, codes >= _STATE_CODE[STATUS_REVOKED]), LIST_SIZE),
        "suspension": encode_bits(_bits(indices, codes == _STATE_CODE[STATUS_SUSPENDED]), LIST_SIZE),
        "message": {
            "statusSize": MESSAGE_BITS,
            "statusMessages": [{"status": hex(code), "message": state} for code, state in enumerate(STATES)],
            "encodedList": encode_bits(_message_bits(indices, codes), LIST_SIZE * MESSAGE_BITS),
        },
    }


def sign_document(document: Mapping[str, Any], key: SigningKey) -> tuple[bytes, str]:
    """``(RFC 8785 bytes, signed note)`` of a status list document: what is logged and published."""
    canonical = canonical_json(document)
    return canonical, key.sign_note(_note_text(str(document["id"]), canonical))


def publish_status_lists(
    conn: Connection, log: TransparencyLog, *, issuer: str | None = None, now: dt.datetime | None = None
) -> list[PublishedList]:
    """Sign, log and store every list (of ``issuer``) whose bits changed since its last publication
    (or that the log's current key did not sign: a rotation re-signs every list once).

    Runs in the caller's transaction, so a lifecycle change and the list that shows it are
    committed together. Lists whose bits did not change are left alone (no new log leaf).
    """
    now = now or utcnow()
    stmt = select(
        status_lists.c.issuer_code, status_lists.c.list_no, status_lists.c.document, status_lists.c.signature
    )
    if issuer is not None:
        stmt = stmt.where(status_lists.c.issuer_code == issuer)
    published: list[PublishedList] = []
    for row in conn.execute(stmt.order_by(status_lists.c.issuer_code, status_lists.c.list_no)).all():
        document = build_document(conn, row.issuer_code, int(row.list_no), log.origin, now)
        unchanged = row.document is not None and _bits_of(json.loads(row.document)) == _bits_of(document)
        if unchanged and _signed_by(row.signature, log.key.vkey):
            continue  # after a key rotation, the list is signed again by the new key
        canonical, signature = sign_document(document, log.key)
        appended = log.append(conn, [(canonical, LOG_KIND, list_id(row.issuer_code, int(row.list_no)))])
        conn.execute(
            update(status_lists)
            .where(and_(status_lists.c.issuer_code == row.issuer_code, status_lists.c.list_no == row.list_no))
            .values(
                document=canonical.decode("utf-8"),
                signature=signature,
                leaf_index=appended.first_index,
                published_at=now,
            )
        )
        published.append(PublishedList(document, signature, appended.first_index))
    return published


def stored_list(conn: Connection, issuer: str, list_no: int) -> PublishedList | None:
    """The newest published list ``list_no`` of ``issuer``, or None if never published."""
    row = conn.execute(
        select(status_lists.c.document, status_lists.c.signature, status_lists.c.leaf_index).where(
            and_(status_lists.c.issuer_code == issuer, status_lists.c.list_no == list_no)
        )
    ).first()
    if row is None or row.document is None:
        return None
    return PublishedList(json.loads(row.document), str(row.signature), int(row.leaf_index))


def status_directory(home: Path) -> Path:
    """Where published lists lie under ONCEONLY_HOME, for townships to fetch and cache."""
    return home / "status"


def write_status_files(catalog: Catalog, directory: Path) -> list[Path]:
    """Write every published list to ``directory/<issuer>-<list>.json`` (atomically)."""
    with catalog.read() as conn:
        rows = conn.execute(
            select(status_lists.c.issuer_code, status_lists.c.list_no).where(
                status_lists.c.document.is_not(None)
            )
        ).all()
        lists = [
            (r.issuer_code, int(r.list_no), stored_list(conn, r.issuer_code, int(r.list_no))) for r in rows
        ]
    written = []
    for issuer, list_no, published in lists:
        assert published is not None  # selected for having a document
        text = json.dumps(published.to_json(), ensure_ascii=False, indent=2) + "\n"
        # Public documents (the townships fetch them), but under the private home.
        written.append(write_atomic(directory / f"{issuer}-{list_no}.json", text))
    return written


# ---------------------------------------------------------------------------- offline reading


@dataclass(frozen=True)
class StatusList:
    """A verified status list: ask it for the state at an index."""

    issuer: str
    list_no: int
    published: str
    leaf_index: int
    canonical: bytes
    _messages: bytes

    def state(self, index: int) -> str:
        """The state at ``index``: one of :data:`STATES`."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < LIST_SIZE:
            raise VerificationFailed(f"status index {index!r} is not inside a list of {LIST_SIZE}")
        bit = index * MESSAGE_BITS
        value = 0
        for offset in range(MESSAGE_BITS):
            position = bit + offset
            value = (value << 1) | ((self._messages[position // 8] >> (7 - position % 8)) & 1)
        if value >= len(STATES):
            raise VerificationFailed(f"status list {self.issuer}/{self.list_no}: unknown state {value}")
        return STATES[value]


def open_status_list(published: Mapping[str, Any], verifier: NoteVerifier) -> StatusList:
    """Check a published list's shape and signature; raise :class:`VerificationFailed`."""
    if not isinstance(published, Mapping) or set(published) != {"document", "signature", "leaf_index"}:
        raise VerificationFailed("status list is not an object of document, signature and leaf_index")
    document, signature, leaf_index = published["document"], published["signature"], published["leaf_index"]
    if not isinstance(document, Mapping) or document.get("format") != STATUS_LIST_FORMAT:
        raise VerificationFailed(f"status list document is not in the {STATUS_LIST_FORMAT} format")
    if isinstance(leaf_index, bool) or not isinstance(leaf_index, int) or leaf_index < 0:
        raise VerificationFailed("status list leaf_index is not a non-negative integer")
    try:
        canonical = canonical_json(document)
    except (ValueError, TypeError) as exc:
        raise VerificationFailed(f"status list document is not canonical JSON: {exc}") from exc
    text = open_note(signature, verifier)
    if not isinstance(document.get("id"), str) or text != _note_text(document["id"], canonical):
        raise VerificationFailed("status list signature does not cover this document (it was changed)")
    return _status_list(document, leaf_index, canonical)


_FORMAT_MARKER = b'"format":"' + STATUS_LIST_FORMAT.encode() + b'"'


def listed_in(entry: bytes) -> tuple[str, int] | None:
    """The (issuer, list number) of the status list a log entry is, read from the entry itself
    (the kind and ref columns beside a leaf are not covered by its hash); None if it is none."""
    if _FORMAT_MARKER not in entry:
        return None
    try:
        document = json.loads(entry)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("format") != STATUS_LIST_FORMAT:
        return None
    issuer, number = document.get("issuer"), document.get("list")
    if isinstance(issuer, str) and isinstance(number, int) and not isinstance(number, bool):
        return issuer, number
    return None


def logged_status_list(document: Mapping[str, Any], leaf_index: int) -> StatusList:
    """A status list as its log leaf records it (the document is the leaf's entry): vouched for
    by the leaf's inclusion under a signed checkpoint, which the caller proves, not by the list's
    own signature (the catalog keeps only each list's newest signature). For answers as of a
    past checkpoint (``evidence.bundle.check_held(..., size=)``)."""
    if not isinstance(document, Mapping) or document.get("format") != STATUS_LIST_FORMAT:
        raise VerificationFailed(f"status list document is not in the {STATUS_LIST_FORMAT} format")
    return _status_list(document, leaf_index, canonical_json(document))


def _status_list(document: Mapping[str, Any], leaf_index: int, canonical: bytes) -> StatusList:
    issuer, list_no = document.get("issuer"), document.get("list")
    if not isinstance(issuer, str) or isinstance(list_no, bool) or not isinstance(list_no, int):
        raise VerificationFailed("status list document lacks its issuer or list number")
    if document.get("size") != LIST_SIZE:
        raise VerificationFailed(f"status list size is {document.get('size')!r}, expected {LIST_SIZE}")
    message = document.get("message")
    if not isinstance(message, Mapping) or message.get("statusSize") != MESSAGE_BITS:
        raise VerificationFailed("status list has no 3-bit message list")
    messages = decode_bits(message.get("encodedList"), LIST_SIZE * MESSAGE_BITS)
    return StatusList(issuer, list_no, str(document.get("published")), leaf_index, canonical, messages)


# ---------------------------------------------------------------------------- bitstrings


def encode_bits(bits: np.ndarray, length: int) -> str:
    """W3C encodedList: multibase ``u`` + base64url (no padding) of the GZIP of the bitstring."""
    if bits.size != length:
        raise EvidenceError(f"bitstring has {bits.size} bits, expected {length}")
    raw = np.packbits(bits.astype(np.uint8), bitorder="big").tobytes()
    compressed = gzip.compress(raw, mtime=0)  # mtime 0: the same bits give the same bytes
    return "u" + base64.urlsafe_b64encode(compressed).rstrip(b"=").decode("ascii")


def decode_bits(encoded: object, length: int) -> bytes:
    """The raw bitstring bytes of an encodedList; raise :class:`VerificationFailed`."""
    if not isinstance(encoded, str) or not encoded.startswith("u"):
        raise VerificationFailed("status list encodedList is not multibase base64url ('u' prefix)")
    body = encoded[1:]
    try:
        compressed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise VerificationFailed("status list encodedList is not base64url") from exc
    if base64.urlsafe_b64encode(compressed).rstrip(b"=").decode("ascii") != body:
        raise VerificationFailed("status list encodedList is not canonical base64url")
    try:
        decompressor = zlib.decompressobj(wbits=31)  # 31: a GZIP member
        raw = decompressor.decompress(compressed, _MAX_DECOMPRESSED)
    except zlib.error as exc:
        raise VerificationFailed("status list encodedList is not GZIP data") from exc
    if decompressor.unconsumed_tail or not decompressor.eof:
        raise VerificationFailed("status list encodedList is truncated or too large")
    if len(raw) * 8 != length:
        raise VerificationFailed(f"status list bitstring has {len(raw) * 8} bits, expected {length}")
    return raw


def _bits(indices: np.ndarray, mask: np.ndarray) -> np.ndarray:
    bits = np.zeros(LIST_SIZE, dtype=np.uint8)
    bits[indices[mask]] = 1
    return bits


def _message_bits(indices: np.ndarray, codes: np.ndarray) -> np.ndarray:
    bits = np.zeros((LIST_SIZE, MESSAGE_BITS), dtype=np.uint8)
    for offset in range(MESSAGE_BITS):  # most significant bit first
        bits[indices, offset] = (codes >> (MESSAGE_BITS - 1 - offset)) & 1
    return bits.reshape(-1)


def _state_of(status: str, superseded: bool) -> str:
    if status == STATUS_EXPIRED and superseded:
        return STATE_SUPERSEDED
    if status not in _STATE_CODE:
        raise EvidenceError(f"certificate status {status!r} has no status-list state")
    return status


def _bits_of(document: Mapping[str, Any]) -> tuple[Any, ...]:
    return (document.get("revocation"), document.get("suspension"), document.get("message"))


def _signed_by(note: str | None, vkey: str) -> bool:
    if note is None:
        return False
    try:
        open_note(note, parse_vkey(vkey))
    except VerificationFailed:
        return False
    return True


def _note_text(document_id: str, canonical: bytes) -> str:
    return f"{STATUS_LIST_FORMAT}\n{document_id}\n{hashlib.sha256(canonical).hexdigest()}\n"


__all__ = [
    "LIST_SIZE",
    "STATES",
    "STATE_SUPERSEDED",
    "STATUS_LIST_FORMAT",
    "PublishedList",
    "StatusEntry",
    "StatusList",
    "allocate_entries",
    "allocate_positions",
    "build_document",
    "decode_bits",
    "encode_bits",
    "list_id",
    "listed_in",
    "logged_status_list",
    "make_document",
    "open_status_list",
    "publish_status_lists",
    "sign_document",
    "status_directory",
    "stored_list",
    "write_status_files",
]
