"""Inclusion and consistency proofs as JSON documents anyone can check offline.

Example::

    doc = inclusion_document(leaf_index=7, tree_size=9, leaf_hash=h, proof=p, root_hash=r,
                             hash_alg="sha256", checkpoint=note, public_keys=[vkey])
    checked = verify_proof_document(json.loads(json.dumps(doc)), trusted=[parse_vkey(vkey)])
    checked.summary   # 'leaf 7 is in the log onceonly.example/... at size 9'

An inclusion proof document::

    {"format": "onceonly-inclusion-proof/1", "hash": "sha256",
     "leaf_index": 7, "tree_size": 9,
     "leaf": {"kind": "certificate", "ref": "<id>", "hash": "<hex>", "entry": "<the entry, UTF-8>"},
     "inclusion_proof": ["<hex>", …],          RFC 9162 §2.1.3 PATH, leaf upwards
     "root_hash": "<hex>",
     "checkpoint": "<signed note>" | null,     c2sp.org/tlog-checkpoint of tree_size, if published
     "public_keys": ["<vkey>", …]}             the log's keys, rotated ones included

A consistency proof document has ``old_size``, ``new_size``, ``old_root``, ``new_root``,
``old_checkpoint``, ``new_checkpoint`` and ``consistency_proof`` (RFC 9162 §2.1.4) instead.

Checking needs no database and no network: the hashes are recomputed from the document, and a
root is trusted only through a checkpoint signed by a trusted key. Without ``trusted`` keys
the document's own ``public_keys`` are used (self-consistency only, which the result says);
a root with no checkpoint is reported as unsigned.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evidence.merkle import tree_hash, verify_consistency, verify_inclusion
from evidence.note import Checkpoint, NoteVerifier, open_note, parse_vkey
from onceonly.errors import ConfigurationError, VerificationFailed

INCLUSION_FORMAT = "onceonly-inclusion-proof/1"
CONSISTENCY_FORMAT = "onceonly-consistency-proof/1"
_HEX_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CheckedProof:
    """What :func:`verify_proof_document` established."""

    summary: str
    signed: bool
    warnings: tuple[str, ...] = field(default=())


def inclusion_document(
    *,
    leaf_index: int,
    tree_size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    root_hash: bytes,
    hash_alg: str,
    checkpoint: str | None,
    public_keys: Sequence[str],
    kind: str | None = None,
    ref: str | None = None,
    entry: bytes | None = None,
) -> dict[str, Any]:
    return {
        "format": INCLUSION_FORMAT,
        "hash": hash_alg,
        "leaf_index": leaf_index,
        "tree_size": tree_size,
        "leaf": {
            "kind": kind,
            "ref": ref,
            "hash": leaf_hash.hex(),
            "entry": None if entry is None else entry.decode("utf-8"),
        },
        "inclusion_proof": [h.hex() for h in proof],
        "root_hash": root_hash.hex(),
        "checkpoint": checkpoint,
        "public_keys": list(public_keys),
    }


def consistency_document(
    *,
    old_size: int,
    new_size: int,
    proof: Sequence[bytes],
    old_root: bytes,
    new_root: bytes,
    hash_alg: str,
    old_checkpoint: str | None,
    new_checkpoint: str | None,
    public_keys: Sequence[str],
) -> dict[str, Any]:
    return {
        "format": CONSISTENCY_FORMAT,
        "hash": hash_alg,
        "old_size": old_size,
        "new_size": new_size,
        "old_root": old_root.hex(),
        "new_root": new_root.hex(),
        "consistency_proof": [h.hex() for h in proof],
        "old_checkpoint": old_checkpoint,
        "new_checkpoint": new_checkpoint,
        "public_keys": list(public_keys),
    }


def verify_proof_document(doc: Mapping[str, Any], *, trusted: Sequence[NoteVerifier] = ()) -> CheckedProof:
    """Check an inclusion or consistency proof document; raise :class:`VerificationFailed`."""
    if not isinstance(doc, Mapping):
        raise VerificationFailed("proof document is not a JSON object")
    fmt = doc.get("format")
    if fmt not in (INCLUSION_FORMAT, CONSISTENCY_FORMAT):
        raise VerificationFailed(
            f"unknown proof format {fmt!r}; known: {INCLUSION_FORMAT}, {CONSISTENCY_FORMAT}"
        )
    try:
        hasher = tree_hash(_field(doc, "hash", str))
    except ConfigurationError as exc:
        raise VerificationFailed(str(exc)) from None
    warnings: list[str] = []
    verifiers = list(trusted)
    if not verifiers:
        keys = _field(doc, "public_keys", list)
        verifiers = [parse_vkey(k) for k in keys]
        warnings.append(
            "checked against the keys carried in the document; pass --trusted-key with the "
            "district's published key to know the checkpoints are the district's"
        )
    if fmt == INCLUSION_FORMAT:
        index, size = _size(doc, "leaf_index"), _size(doc, "tree_size")
        leaf = _field(doc, "leaf", dict)
        leaf_hash = _hash(leaf.get("hash"), "leaf.hash")
        entry = leaf.get("entry")
        if entry is not None:
            if not isinstance(entry, str):
                raise VerificationFailed("leaf.entry is not a string")
            if hasher.leaf(entry.encode("utf-8")) != leaf_hash:
                raise VerificationFailed("leaf.entry does not hash to leaf.hash")
        else:
            warnings.append("the document carries no entry: only the leaf hash is proven")
        root = _hash(doc.get("root_hash"), "root_hash")
        signed = _check_root(doc.get("checkpoint"), "checkpoint", size, root, verifiers, warnings)
        proof = [
            _hash(h, f"inclusion_proof[{i}]") for i, h in enumerate(_field(doc, "inclusion_proof", list))
        ]
        verify_inclusion(leaf_hash, index, size, proof, root, hasher=hasher)
        what = f"leaf {index}" + (f" ({leaf.get('kind')} {leaf.get('ref')})" if leaf.get("ref") else "")
        return CheckedProof(f"{what} is in the log at size {size}", signed, tuple(warnings))
    old, new = _size(doc, "old_size"), _size(doc, "new_size")
    old_root, new_root = _hash(doc.get("old_root"), "old_root"), _hash(doc.get("new_root"), "new_root")
    signed_old = _check_root(doc.get("old_checkpoint"), "old_checkpoint", old, old_root, verifiers, warnings)
    signed_new = _check_root(doc.get("new_checkpoint"), "new_checkpoint", new, new_root, verifiers, warnings)
    proof = [
        _hash(h, f"consistency_proof[{i}]") for i, h in enumerate(_field(doc, "consistency_proof", list))
    ]
    verify_consistency(old, new, proof, old_root, new_root, hasher=hasher)
    return CheckedProof(
        f"the log at size {new} extends the log at size {old}", signed_old and signed_new, tuple(warnings)
    )


def _check_root(
    note: Any, name: str, size: int, root: bytes, verifiers: Sequence[NoteVerifier], warnings: list[str]
) -> bool:
    if note is None:
        if size:
            warnings.append(f"no {name}: the root of size {size} is not signed")
        return False
    if not isinstance(note, str):
        raise VerificationFailed(f"{name} is not a signed note")
    try:
        checkpoint = Checkpoint.parse(open_note(note, verifiers))
    except VerificationFailed as exc:
        raise VerificationFailed(f"{name}: {exc}") from None
    if checkpoint.size != size:
        raise VerificationFailed(f"{name} is of size {checkpoint.size}, the proof of size {size}")
    if checkpoint.root_hash != root:
        raise VerificationFailed(f"{name} signs another root hash than the proof's")
    return True


def _field(doc: Mapping[str, Any], name: str, kind: type) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind):
        raise VerificationFailed(f"proof document: {name!r} is missing or not a {kind.__name__}")
    return value


def _size(doc: Mapping[str, Any], name: str) -> int:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VerificationFailed(f"proof document: {name!r} is not a non-negative integer")
    return value


def _hash(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not _HEX_RE.fullmatch(value):
        raise VerificationFailed(f"proof document: {name} is not 64 lower-case hex digits")
    return bytes.fromhex(value)


__all__ = [
    "CONSISTENCY_FORMAT",
    "INCLUSION_FORMAT",
    "CheckedProof",
    "consistency_document",
    "inclusion_document",
    "verify_proof_document",
]
