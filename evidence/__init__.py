"""Evidence: certificate identifiers, the Merkle log, signed checkpoints, keys and proof bundles.

Example::

    >>> from evidence import verify_bundle
    >>> verify_bundle(bundle, trusted_vkey=district_vkey).status
    '有效'

This is the only package that imports ``cryptography.hazmat``. It signs canonical bytes
(RFC 8785 JSON, checkpoint text), never Python objects, and every ``verify*`` function raises
:class:`~onceonly.errors.VerificationFailed`; none returns ``False``.
"""

from evidence.bundle import (
    BUNDLE_FORMAT,
    VerifiedBundle,
    build_bundle,
    certificate_leaf_bytes,
    export_bundle,
    verify_bundle,
)
from evidence.canonical import canonical_json
from evidence.certificate import (
    CERTIFICATE_SCHEMA,
    STATUS_SUPERSEDED,
    STATUS_VALID,
    Draft,
    drafts_from,
    issue,
)
from evidence.identifier import (
    CERTIFICATE_ID_PREFIX,
    ISO7064_ALPHABET,
    CertificateId,
    InvalidCertificateId,
    iso7064_mod37_36,
)
from evidence.keys import (
    KEYRING_FILE,
    SUITES,
    KeyRecord,
    Keyring,
    KeyStore,
    SigningKey,
    check_key_status,
    open_key_store,
    parse_since,
    verifier_key_path,
)
from evidence.log import Appended, TransparencyLog, latest_checkpoint, prove_inclusion, tree_size
from evidence.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    SHA256,
    SM3,
    TREE_HASHES,
    CompactRange,
    Extension,
    TreeHash,
    consistency_proof,
    consistency_ranges,
    extend,
    fold_subtrees,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    perfect_subtrees,
    root,
    tree_hash,
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
    open_note_signers,
    parse_vkey,
    sign_note,
)

__all__ = [
    "ALG_ED25519",
    "BUNDLE_FORMAT",
    "CERTIFICATE_ID_PREFIX",
    "CERTIFICATE_SCHEMA",
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ISO7064_ALPHABET",
    "KEYRING_FILE",
    "MAX_SIGNATURES",
    "SHA256",
    "SIGNATURE_LINE_PREFIX",
    "SM3",
    "STATUS_SUPERSEDED",
    "STATUS_VALID",
    "SUITES",
    "TREE_HASHES",
    "Appended",
    "CertificateId",
    "Checkpoint",
    "CompactRange",
    "Draft",
    "Extension",
    "InvalidCertificateId",
    "KeyRecord",
    "KeyStore",
    "Keyring",
    "NoteVerifier",
    "SigningKey",
    "TransparencyLog",
    "TreeHash",
    "VerifiedBundle",
    "build_bundle",
    "canonical_json",
    "certificate_leaf_bytes",
    "check_key_status",
    "consistency_proof",
    "consistency_ranges",
    "drafts_from",
    "export_bundle",
    "extend",
    "fold_subtrees",
    "format_vkey",
    "inclusion_proof",
    "inclusion_ranges",
    "iso7064_mod37_36",
    "issue",
    "key_id",
    "latest_checkpoint",
    "leaf_hash",
    "node_hash",
    "open_key_store",
    "open_note",
    "open_note_signers",
    "parse_since",
    "parse_vkey",
    "perfect_subtrees",
    "prove_inclusion",
    "root",
    "sign_note",
    "tree_hash",
    "tree_size",
    "verifier_key_path",
    "verify_bundle",
    "verify_consistency",
    "verify_inclusion",
]
