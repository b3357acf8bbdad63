"""Evidence: certificate identifiers, the Merkle log, signed checkpoints, keys and proof bundles.

Example::

    >>> from evidence import verify_bundle
    >>> verify_bundle(bundle, trusted_vkey=district_vkey).status
    '有效'

This is the only package that imports ``cryptography.hazmat``. It signs canonical bytes
(RFC 8785 JSON, checkpoint text), never Python objects, and every ``verify*`` function raises
:class:`~onceonly.errors.VerificationFailed`; none returns ``False``.
"""

from evidence.bundle import BUNDLE_FORMAT, VerifiedBundle, build_bundle, certificate_leaf_bytes, verify_bundle
from evidence.identifier import (
    CERTIFICATE_ID_PREFIX,
    ISO7064_ALPHABET,
    CertificateId,
    InvalidCertificateId,
    iso7064_mod37_36,
)
from evidence.keys import SUITES, KeyStore, SigningKey
from evidence.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from evidence.note import (
    ALG_ED25519,
    MAX_SIGNATURES,
    SIGNATURE_LINE_PREFIX,
    Checkpoint,
    NoteVerifier,
    format_vkey,
    key_id,
    open_note,
    parse_vkey,
    sign_note,
)

__all__ = [
    "ALG_ED25519",
    "BUNDLE_FORMAT",
    "CERTIFICATE_ID_PREFIX",
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ISO7064_ALPHABET",
    "MAX_SIGNATURES",
    "SIGNATURE_LINE_PREFIX",
    "SUITES",
    "CertificateId",
    "Checkpoint",
    "CompactRange",
    "InvalidCertificateId",
    "KeyStore",
    "NoteVerifier",
    "SigningKey",
    "VerifiedBundle",
    "build_bundle",
    "certificate_leaf_bytes",
    "consistency_proof",
    "format_vkey",
    "inclusion_proof",
    "iso7064_mod37_36",
    "key_id",
    "leaf_hash",
    "node_hash",
    "open_note",
    "parse_vkey",
    "root",
    "sign_note",
    "verify_bundle",
    "verify_consistency",
    "verify_inclusion",
]
