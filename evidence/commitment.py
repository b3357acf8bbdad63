"""Commitments: what the published log holds of a certificate, and the opening its holder keeps.

Example::

    salt = new_salts(1)[0]                                   # 16 bytes from the OS's CSPRNG
    entry = certificate_entry(certificate, salt)             # RFC 8785 bytes of the public entry
    check_opening(entry, certificate, salt)                  # raises VerificationFailed if not its
    opened = open_entry(entry)                               # {"id", "type", ..., "commitment"}

The transparency log is meant to be published and witnessed by other districts, so a
certificate's leaf must not hold the certificate (its holder's name and ID number). The leaf's
entry holds what may be public — the identifier, the type, the issuer, the issue date and the
status-list position — and a commitment to the whole certificate::

    commitment = SHA-256("onceonly-certificate-commitment/1" ‖ 0x00 ‖ salt ‖ RFC 8785(certificate))

with a fresh 16-byte random ``salt`` per certificate (per version): without the salt, nobody
can test a guessed certificate (a holder's ID has little entropy) against a published entry;
with it, the holder (whose bundle carries certificate and salt, the *opening*) proves the
certificate is the one the log committed to. Use entries commit to their subject the same way
(:func:`subject_commitment`), so a citizen can find and prove the uses of their data without
the log naming them.

Entries are RFC 8785 JSON with ``"schema": "onceonly-certificate-entry/1"``; the column-wise
builder of issuance (``evidence.issuance``) and :func:`certificate_entry` give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from evidence.canonical import canonical_json
from onceonly.errors import VerificationFailed

ENTRY_SCHEMA = "onceonly-certificate-entry/1"
SALT_SIZE = 16
_CERTIFICATE_DOMAIN = b"onceonly-certificate-commitment/1\x00"
_SUBJECT_DOMAIN = b"onceonly-subject-commitment/1\x00"
# The field of every entry committed to a subject (``evidence.log.append_committed_many``), as
# its RFC 8785 bytes hold it: found in an entry without parsing it.
SUBJECT_COMMITMENT_FIELD = b'"subject_commitment":'


def new_salts(count: int) -> list[bytes]:
    """``count`` fresh random salts (one read of the OS's CSPRNG)."""
    pool = os.urandom(SALT_SIZE * count)
    return [pool[i : i + SALT_SIZE] for i in range(0, len(pool), SALT_SIZE)]


def commitment(salt: bytes, body: bytes) -> bytes:
    """The commitment to a certificate's RFC 8785 bytes under ``salt`` (32 bytes)."""
    return hashlib.sha256(_CERTIFICATE_DOMAIN + salt + body).digest()


def subject_commitment(salt: bytes, subject_id: str) -> str:
    """The commitment (hex) to the subject of a use of shared data (an ID number or a USCC)."""
    return hashlib.sha256(_SUBJECT_DOMAIN + salt + subject_id.encode("utf-8")).hexdigest()


def public_part(certificate: Mapping[str, Any]) -> dict[str, Any]:
    """What of a certificate may be published: identifier, type, issuer, issue date, status entry."""
    try:
        status = certificate["credential_status"]
        return {
            "id": certificate["id"],
            "type": {"code": certificate["type"]["code"], "name": certificate["type"]["name"]},
            "issuer": {"code": certificate["issuer"]["code"], "name": certificate["issuer"]["name"]},
            "issue_date": certificate["issue_date"],
            "credential_status": {
                "issuer": status["issuer"],
                "list": status["list"],
                "index": status["index"],
            },
        }
    except (KeyError, TypeError) as exc:
        raise VerificationFailed(f"the certificate lacks a field its public entry needs: {exc}") from None


def certificate_entry(certificate: Mapping[str, Any], salt: bytes) -> bytes:
    """The RFC 8785 bytes of ``certificate``'s public log entry under ``salt``."""
    body = canonical_json(certificate)
    return entry_for(public_part(certificate), commitment(salt, body))


def entry_for(public: Mapping[str, Any], digest: bytes) -> bytes:
    """The public entry of ``public`` fields with the commitment ``digest``."""
    return canonical_json({"schema": ENTRY_SCHEMA, **public, "commitment": digest.hex()})


def open_entry(entry: bytes) -> dict[str, Any]:
    """A certificate entry's fields; VerificationFailed if it is not one."""
    try:
        opened = json.loads(entry)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationFailed(f"the log entry is not JSON: {exc}") from None
    if not isinstance(opened, dict) or opened.get("schema") != ENTRY_SCHEMA:
        raise VerificationFailed(f"the log entry is not a certificate entry ({ENTRY_SCHEMA})")
    return opened


def is_commitment_entry(entry: bytes) -> bool:
    """True for a certificate entry of this format (not an earlier version's whole certificate)."""
    return entry.startswith(b'{"commitment":') and b'"schema":"' + ENTRY_SCHEMA.encode() + b'"' in entry


def check_opening(entry: bytes, certificate: Mapping[str, Any], salt: bytes) -> None:
    """Raise VerificationFailed unless ``certificate`` with ``salt`` opens ``entry``."""
    if len(salt) != SALT_SIZE:
        raise VerificationFailed(f"the opening's salt is {len(salt)} bytes, not {SALT_SIZE}")
    if certificate_entry(certificate, salt) != entry:
        raise VerificationFailed("the certificate and its salt do not open the log's entry (changed?)")


__all__ = [
    "ENTRY_SCHEMA",
    "SALT_SIZE",
    "certificate_entry",
    "check_opening",
    "commitment",
    "entry_for",
    "is_commitment_entry",
    "new_salts",
    "open_entry",
    "public_part",
    "subject_commitment",
]
