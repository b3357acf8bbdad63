"""The offline proof bundle of one e-certificate: everything needed to check it without us.

Example::

    >>> bundle = build_bundle(certificate, leaf_index=7, inclusion_proof=proof,
    ...                       checkpoint_note=note, vkey=key.vkey)
    >>> verified = verify_bundle(json.loads(json.dumps(bundle)), trusted_vkey=key.vkey)
    >>> verified.certificate_id, verified.status
    ('1.2.156.3005.2.HKB0001.91350100M000100Y43.00000042.001.2', '有效')

A bundle is a JSON object::

    {"format": "onceonly-bundle/1",
     "certificate": {...},            the certificate, as issued
     "leaf_index": 7,                 its position in the transparency log
     "inclusion_proof": ["<hex>", …], RFC 9162 §2.1.3.1 PATH, leaf upwards, lower-case hex
     "checkpoint": "<signed note>",   c2sp.org/tlog-checkpoint, signed by the log key
     "public_key": "<vkey>"}          c2sp.org/signed-note verifier key of the log

The log's leaf for a certificate is its RFC 8785 (JCS) canonical JSON, so re-indenting or
re-ordering the JSON file does not change what is verified; changing any value does.

``public_key`` only says which key signed; a verifier that does not pass ``trusted_vkey``
learns that the bundle is self-consistent, not that it comes from the district's log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evidence.canonical import canonical_json
from evidence.identifier import CertificateId, InvalidCertificateId
from evidence.merkle import leaf_hash, verify_inclusion
from evidence.note import Checkpoint, open_note, parse_vkey
from onceonly.errors import EvidenceError, VerificationFailed

BUNDLE_FORMAT = "onceonly-bundle/1"
_FIELDS = ("format", "certificate", "leaf_index", "inclusion_proof", "checkpoint", "public_key")
_HASH_HEX_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VerifiedBundle:
    """What a successful :func:`verify_bundle` established."""

    certificate_id: str
    status: str | None
    leaf_index: int
    tree_size: int
    origin: str
    root_hash: bytes


def certificate_leaf_bytes(certificate: Mapping[str, Any]) -> bytes:
    """The log entry of a certificate: its RFC 8785 canonical JSON (UTF-8)."""
    try:
        return canonical_json(certificate)
    except (ValueError, TypeError) as exc:
        # RFC 8785 §3.2.2.3: numbers must be IEEE 754 doubles; integers beyond 2^53 are refused.
        raise EvidenceError(f"certificate cannot be written as canonical JSON: {exc}") from exc


def build_bundle(
    certificate: Mapping[str, Any],
    leaf_index: int,
    inclusion_proof: Sequence[bytes],
    checkpoint_note: str,
    vkey: str,
) -> dict[str, Any]:
    """Assemble the bundle of ``certificate`` (see the module docstring for the layout)."""
    return {
        "format": BUNDLE_FORMAT,
        "certificate": dict(certificate),
        "leaf_index": leaf_index,
        "inclusion_proof": [element.hex() for element in inclusion_proof],
        "checkpoint": checkpoint_note,
        "public_key": vkey,
    }


def verify_bundle(bundle: Mapping[str, Any], *, trusted_vkey: str | None = None) -> VerifiedBundle:
    """Check a bundle offline; raise :class:`VerificationFailed` naming the first failure.

    In order: structure and format; the public key (and that it is ``trusted_vkey``); the
    checkpoint's signature; the checkpoint text; the leaf index against the tree size; the
    certificate's identifier; the certificate's inclusion in the checkpoint's tree.
    """
    proof = _check_structure(bundle)
    certificate: Mapping[str, Any] = bundle["certificate"]
    leaf_index: int = bundle["leaf_index"]

    verifier = parse_vkey(bundle["public_key"])
    if trusted_vkey is not None:
        try:
            trusted = parse_vkey(trusted_vkey)
        except VerificationFailed as exc:
            raise VerificationFailed(f"the trusted key itself is malformed: {exc}") from exc
        if verifier != trusted:
            raise VerificationFailed(
                f"bundle is signed by {verifier.name}+{verifier.key_id.hex()}, "
                f"not by the trusted key {trusted.name}+{trusted.key_id.hex()}"
            )

    checkpoint = Checkpoint.parse(open_note(bundle["checkpoint"], verifier))
    if leaf_index >= checkpoint.size:
        raise VerificationFailed(
            f"leaf index {leaf_index} is not inside the checkpoint's tree of size {checkpoint.size}"
        )

    if "id" not in certificate:
        raise VerificationFailed("certificate has no id")
    try:
        certificate_id = CertificateId.parse(certificate["id"])
    except InvalidCertificateId as exc:
        raise VerificationFailed(f"certificate: {exc}") from exc

    try:
        entry = certificate_leaf_bytes(certificate)
    except EvidenceError as exc:
        raise VerificationFailed(str(exc)) from exc
    try:
        verify_inclusion(leaf_hash(entry), leaf_index, checkpoint.size, proof, checkpoint.root_hash)
    except VerificationFailed as exc:
        raise VerificationFailed(f"certificate is not in the checkpoint's log: {exc}") from exc

    status = certificate.get("status")
    return VerifiedBundle(
        certificate_id=str(certificate_id),
        status=status if isinstance(status, str) else None,
        leaf_index=leaf_index,
        tree_size=checkpoint.size,
        origin=checkpoint.origin,
        root_hash=checkpoint.root_hash,
    )


def _check_structure(bundle: Mapping[str, Any]) -> list[bytes]:
    """Check the bundle's shape; return the decoded inclusion proof."""
    if not isinstance(bundle, Mapping):
        raise VerificationFailed("bundle is not a JSON object")
    missing = [name for name in _FIELDS if name not in bundle]
    if missing:
        raise VerificationFailed(f"bundle lacks {', '.join(missing)}")
    unknown = sorted(str(name) for name in bundle if name not in _FIELDS)
    if unknown:
        raise VerificationFailed(f"bundle has unknown fields {', '.join(unknown)}")
    if bundle["format"] != BUNDLE_FORMAT:
        raise VerificationFailed(f"bundle format is {bundle['format']!r}, expected {BUNDLE_FORMAT!r}")
    if not isinstance(bundle["certificate"], Mapping):
        raise VerificationFailed("bundle certificate is not a JSON object")
    leaf_index = bundle["leaf_index"]
    if isinstance(leaf_index, bool) or not isinstance(leaf_index, int) or leaf_index < 0:
        raise VerificationFailed("bundle leaf_index is not a non-negative integer")
    elements = bundle["inclusion_proof"]
    if not isinstance(elements, list):
        raise VerificationFailed("bundle inclusion_proof is not a list")
    proof = []
    for position, element in enumerate(elements):
        if not isinstance(element, str) or not _HASH_HEX_RE.fullmatch(element):
            raise VerificationFailed(f"bundle inclusion_proof[{position}] is not 64 lower-case hex digits")
        proof.append(bytes.fromhex(element))
    for name in ("checkpoint", "public_key"):
        if not isinstance(bundle[name], str):
            raise VerificationFailed(f"bundle {name} is not a string")
    return proof


__all__ = [
    "BUNDLE_FORMAT",
    "VerifiedBundle",
    "build_bundle",
    "certificate_leaf_bytes",
    "verify_bundle",
]
