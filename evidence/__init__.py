"""Evidence: certificate identifiers, the Merkle log, signed checkpoints, keys and proof bundles.

Example::

    >>> from evidence import verify_bundle
    >>> verify_bundle(bundle, trusted_vkey=district_vkey).status
    '有效'

This is the only package that imports ``cryptography.hazmat``. It signs canonical bytes
(RFC 8785 JSON, checkpoint text), never Python objects, and every ``verify*`` function raises
:class:`~onceonly.errors.VerificationFailed`; none returns ``False``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from evidence.bundle import (
        BUNDLE_FORMAT,
        PREVIOUS_FORMAT,
        HeldCertificate,
        VerifiedBundle,
        build_bundle,
        certificate_leaf_bytes,
        check_held,
        check_witnesses,
        export_bundle,
        logged_list_before,
        verify_bundle,
    )
    from evidence.canonical import canonical_json
    from evidence.certificate import (
        CERTIFICATE_SCHEMA,
        STATUS_SUPERSEDED,
        STATUS_VALID,
        Draft,
        draft_table,
        drafts_from,
        issue,
    )
    from evidence.identifier import (
        CERTIFICATE_ID_PREFIX,
        ISO7064_ALPHABET,
        CertificateId,
        InvalidCertificateId,
        certificate_ids,
        iso7064_mod37_36,
    )
    from evidence.keys import (
        KEYRING_FILE,
        SUITES,
        KeyRecord,
        Keyring,
        KeyStore,
        SigningKey,
        bundle_vkeys,
        check_key_status,
        log_verifiers,
        open_key_store,
        parse_since,
        suite_mismatch,
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
        NoteSignature,
        NoteVerifier,
        add_signatures,
        format_vkey,
        key_id,
        note_as_given,
        open_note,
        open_note_signers,
        parse_vkey,
        sign_note,
        split_note,
    )

# Public names, each imported from its submodule when first used: ``import evidence.keys`` (the
# command line listing keys) must not load the bundle, the catalog and Arrow with it.
_EXPORTS: dict[str, str] = {
    "BUNDLE_FORMAT": "evidence.bundle",
    "HeldCertificate": "evidence.bundle",
    "check_held": "evidence.bundle",
    "logged_list_before": "evidence.bundle",
    "PREVIOUS_FORMAT": "evidence.bundle",
    "VerifiedBundle": "evidence.bundle",
    "build_bundle": "evidence.bundle",
    "certificate_leaf_bytes": "evidence.bundle",
    "check_witnesses": "evidence.bundle",
    "export_bundle": "evidence.bundle",
    "verify_bundle": "evidence.bundle",
    "canonical_json": "evidence.canonical",
    "CERTIFICATE_SCHEMA": "evidence.certificate",
    "STATUS_SUPERSEDED": "evidence.certificate",
    "STATUS_VALID": "evidence.certificate",
    "Draft": "evidence.certificate",
    "draft_table": "evidence.certificate",
    "drafts_from": "evidence.certificate",
    "issue": "evidence.certificate",
    "CERTIFICATE_ID_PREFIX": "evidence.identifier",
    "ISO7064_ALPHABET": "evidence.identifier",
    "CertificateId": "evidence.identifier",
    "InvalidCertificateId": "evidence.identifier",
    "certificate_ids": "evidence.identifier",
    "iso7064_mod37_36": "evidence.identifier",
    "KEYRING_FILE": "evidence.keys",
    "SUITES": "evidence.keys",
    "KeyRecord": "evidence.keys",
    "Keyring": "evidence.keys",
    "KeyStore": "evidence.keys",
    "SigningKey": "evidence.keys",
    "bundle_vkeys": "evidence.keys",
    "check_key_status": "evidence.keys",
    "log_verifiers": "evidence.keys",
    "open_key_store": "evidence.keys",
    "parse_since": "evidence.keys",
    "suite_mismatch": "evidence.keys",
    "verifier_key_path": "evidence.keys",
    "Appended": "evidence.log",
    "TransparencyLog": "evidence.log",
    "latest_checkpoint": "evidence.log",
    "prove_inclusion": "evidence.log",
    "tree_size": "evidence.log",
    "EMPTY_ROOT": "evidence.merkle",
    "HASH_SIZE": "evidence.merkle",
    "SHA256": "evidence.merkle",
    "SM3": "evidence.merkle",
    "TREE_HASHES": "evidence.merkle",
    "CompactRange": "evidence.merkle",
    "Extension": "evidence.merkle",
    "TreeHash": "evidence.merkle",
    "consistency_proof": "evidence.merkle",
    "consistency_ranges": "evidence.merkle",
    "extend": "evidence.merkle",
    "fold_subtrees": "evidence.merkle",
    "inclusion_proof": "evidence.merkle",
    "inclusion_ranges": "evidence.merkle",
    "leaf_hash": "evidence.merkle",
    "node_hash": "evidence.merkle",
    "perfect_subtrees": "evidence.merkle",
    "root": "evidence.merkle",
    "tree_hash": "evidence.merkle",
    "verify_consistency": "evidence.merkle",
    "verify_inclusion": "evidence.merkle",
    "ALG_ED25519": "evidence.note",
    "MAX_SIGNATURES": "evidence.note",
    "SIGNATURE_LINE_PREFIX": "evidence.note",
    "Checkpoint": "evidence.note",
    "NoteSignature": "evidence.note",
    "NoteVerifier": "evidence.note",
    "add_signatures": "evidence.note",
    "format_vkey": "evidence.note",
    "key_id": "evidence.note",
    "note_as_given": "evidence.note",
    "open_note": "evidence.note",
    "open_note_signers": "evidence.note",
    "parse_vkey": "evidence.note",
    "sign_note": "evidence.note",
    "split_note": "evidence.note",
}


def __getattr__(name: str) -> _Any:
    """Import the submodule that defines ``name`` on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


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
    "PREVIOUS_FORMAT",
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
    "HeldCertificate",
    "InvalidCertificateId",
    "KeyRecord",
    "KeyStore",
    "Keyring",
    "NoteSignature",
    "NoteVerifier",
    "SigningKey",
    "TransparencyLog",
    "TreeHash",
    "VerifiedBundle",
    "add_signatures",
    "build_bundle",
    "bundle_vkeys",
    "canonical_json",
    "certificate_ids",
    "certificate_leaf_bytes",
    "check_held",
    "check_key_status",
    "check_witnesses",
    "consistency_proof",
    "consistency_ranges",
    "draft_table",
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
    "log_verifiers",
    "logged_list_before",
    "node_hash",
    "note_as_given",
    "open_key_store",
    "open_note",
    "open_note_signers",
    "parse_since",
    "parse_vkey",
    "perfect_subtrees",
    "prove_inclusion",
    "root",
    "sign_note",
    "split_note",
    "suite_mismatch",
    "tree_hash",
    "tree_size",
    "verifier_key_path",
    "verify_bundle",
    "verify_consistency",
    "verify_inclusion",
]
