"""The offline proof bundle of one e-certificate: everything needed to check it without us.

Example::

    >>> bundle = build_bundle(certificate, leaf_index=7, inclusion_proof=proof,
    ...                       checkpoint_note=note, vkey=key.vkey)
    >>> verified = verify_bundle(json.loads(json.dumps(bundle)), trusted_vkey=key.vkey)
    >>> verified.certificate_id, verified.status
    ('1.2.156.3005.2.HKB0001.91350100M000100Y43.00000042.001.2', '有效')

A bundle is a JSON object::

    {"format": "onceonly-bundle/3",
     "certificate": {...},            the certificate, as issued (with its credential_status)
     "opening": {"salt": "<hex>"},    what opens the log's commitment to it (evidence.commitment)
     "leaf_index": 7,                 its position in the transparency log
     "inclusion_proof": ["<hex>", …], RFC 9162 §2.1.3.1 PATH, leaf upwards, lower-case hex
     "checkpoint": "<signed note>",   c2sp.org/tlog-checkpoint, signed by the log key
     "public_key": "<vkey>",          c2sp.org/signed-note verifier key of the log
     "log_hash": "sha256",            the log's hash function (sha256, or sm3)
     "status_list": {document, signature, leaf_index},   the issuer's newest status list
     "status_list_proof": ["<hex>", …],                   its inclusion in the same checkpoint
     "status_list_key": "<vkey>",     optional: the key that signed the status list, when it is
                                      not ``public_key`` (a list signed before a key rotation)
     "consistency": {"from_size": 5, "proof": ["<hex>", …]}}   optional, see below

The log's leaf for a certificate is a public entry (identifier, type, issuer, issue date,
status-list position) with a salted commitment to the certificate's RFC 8785 (JCS) canonical
JSON (``evidence.commitment``): the verifier rebuilds the entry from the certificate and the
salt, so re-indenting or re-ordering the JSON file does not change what is verified; changing
any value of the certificate, or the salt, does. Format 2 (bundles of logs an earlier version
wrote, whose leaf is the certificate itself) has no ``opening`` and still verifies. The
status list is checked the same way (its signature covers the SHA-256 of its RFC 8785 form,
and its log leaf is that form), so the state it gives the certificate cannot be altered.

``public_key`` only says which key signed; a verifier that does not pass ``trusted_vkey``
(or ``keyring``) learns that the bundle is self-consistent, not that it comes from the
district's log. ``status_list_key`` needs no pinning of its own with ``trusted_vkey``: the
list is a leaf of the checkpoint's tree, which the pinned key signed.

Keyring: with ``keyring`` (the district's published keyring, ``onceonly keys export-public
--keyring``), every key that signed something in the bundle must be in it, and its status is
checked at the signing time. Checkpoints carry no time; the bundle's proof of time is the
status list's ``published`` time (a leaf inside the checkpoint's tree, so the checkpoint was
signed at or after it, and the list was signed at it). A signature by a key compromised at or
before that time, or by a key retired before it, fails; a signature by a key compromised
later is accepted with a warning (:attr:`VerifiedBundle.warnings`): whoever holds a stolen
key can also backdate, so export a fresh bundle, signed by the current key, to be sure.

Consistency: a verifier who saw an older checkpoint (from an earlier bundle, or published by
the district) passes it as ``old_checkpoint``; the bundle must then carry an RFC 9162
consistency proof from that checkpoint's size to its own (``certificates export
--consistency-from OLD``), which proves the log was only appended to in between.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from evidence.canonical import canonical_json
from evidence.certificate import (
    STATUS_CANCELLED,
    STATUS_EXPIRED,
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    STATUS_VALID,
    STATUS_WITHDRAWN,
)
from evidence.commitment import SALT_SIZE, certificate_entry, check_opening, is_commitment_entry
from evidence.identifier import CertificateId, InvalidCertificateId
from evidence.keys import Keyring, check_key_status
from evidence.merkle import TreeHash, tree_hash, verify_consistency, verify_inclusion
from evidence.note import Checkpoint, NoteVerifier, note_as_given, open_note, parse_vkey
from evidence.status_list import LOG_KIND as STATUS_LIST_KIND
from evidence.status_list import (
    STATE_SUPERSEDED,
    PublishedList,
    StatusList,
    listed_in,
    open_status_list,
)
from onceonly.errors import ConfigurationError, EvidenceError, VerificationFailed

BUNDLE_FORMAT = "onceonly-bundle/3"
#: Bundles of certificate leaves an earlier version wrote: the leaf is the certificate itself.
PREVIOUS_FORMAT = "onceonly-bundle/2"
_FIELDS = (
    "format",
    "certificate",
    "leaf_index",
    "inclusion_proof",
    "checkpoint",
    "public_key",
    "log_hash",
    "status_list",
    "status_list_proof",
)
_OPTIONAL = ("consistency", "status_list_key", "opening")
# What the status list says, in the words a counter clerk reads.
_STATE_WORDS = {
    STATUS_SUSPENDED: "suspended (暂扣)",
    STATUS_REVOKED: "revoked (撤销)",
    STATUS_WITHDRAWN: "revoked as a penalty (吊销)",
    STATUS_CANCELLED: "cancelled (注销)",
    STATUS_EXPIRED: "expired (失效)",
    STATE_SUPERSEDED: "superseded by a newer version (失效)",
}
_HASH_HEX_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VerifiedBundle:
    """What a successful :func:`verify_bundle` established."""

    certificate_id: str
    status: str
    leaf_index: int
    tree_size: int
    origin: str
    root_hash: bytes
    status_published: str
    consistent_from: int | None = None
    #: Reports that do not fail the bundle (a signing key compromised after the signing time).
    warnings: tuple[str, ...] = ()
    #: The witnesses (``name+keyid``) whose cosignatures of the checkpoint were required and valid.
    cosigned_by: tuple[str, ...] = ()


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
    *,
    status_list: PublishedList,
    status_list_proof: Sequence[bytes],
    log_hash: str = "sha256",
    consistency: tuple[int, Sequence[bytes]] | None = None,
    status_list_key: str | None = None,
    salt: bytes | None = None,
) -> dict[str, Any]:
    """Assemble the bundle of ``certificate`` (see the module docstring for the layout): format 3
    with the commitment's ``salt``, format 2 without (a leaf that is the certificate itself)."""
    bundle: dict[str, Any] = {
        "format": BUNDLE_FORMAT if salt is not None else PREVIOUS_FORMAT,
        "certificate": dict(certificate),
        "leaf_index": leaf_index,
        "inclusion_proof": [element.hex() for element in inclusion_proof],
        "checkpoint": checkpoint_note,
        "public_key": vkey,
        "log_hash": log_hash,
        "status_list": status_list.to_json(),
        "status_list_proof": [element.hex() for element in status_list_proof],
    }
    if consistency is not None:
        from_size, proof = consistency
        bundle["consistency"] = {"from_size": from_size, "proof": [element.hex() for element in proof]}
    if status_list_key is not None and status_list_key != vkey:
        bundle["status_list_key"] = status_list_key
    if salt is not None:
        bundle["opening"] = {"salt": salt.hex()}
    return bundle


def export_bundle(
    conn: Connection,
    cert_id: str,
    vkey: str | Sequence[str],
    *,
    old_checkpoint: str | None = None,
) -> tuple[dict[str, Any], str]:
    """The bundle of ``cert_id`` from the catalog, and the certificate's status in the catalog.

    The bundle carries the newest checkpoint, the issuer's newest published status list and,
    with ``old_checkpoint`` (a checkpoint of this log the verifier saw before), a consistency
    proof from its size. ``vkey`` may be every key of the keyring: the bundle names the one
    that signed the checkpoint and, if another one of them signed the status list (before a
    key rotation that no list publication followed yet), that one as ``status_list_key``.
    Raises :class:`EvidenceError` naming what is missing.
    """
    from catalog import certificates
    from evidence.log import (
        latest_checkpoint,
        leaf_at,
        opening_at,
        prove_consistency,
        prove_inclusion,
        read_head,
    )
    from evidence.status_list import stored_list

    row = conn.execute(
        select(
            certificates.c.leaf_index,
            certificates.c.status,
            certificates.c.issuer_code,
            certificates.c.list_no,
        ).where(certificates.c.cert_id == cert_id)
    ).first()
    if row is None:
        raise EvidenceError(f"no certificate {cert_id!r} in the catalog")
    if row.list_no is None:
        raise EvidenceError(f"certificate {cert_id} has no status-list entry (issued before status lists)")
    published = stored_list(conn, row.issuer_code, int(row.list_no))
    if published is None:
        raise EvidenceError(
            f"no status list of {row.issuer_code} is published yet: run the daily flow "
            "(`onceonly run`) or `onceonly certificates publish-status`"
        )
    head = latest_checkpoint(conn)
    if head is None:
        raise EvidenceError("the transparency log has no checkpoint yet")
    size, note = head
    note = _cosigned(conn, size, note)
    vkeys = [vkey] if isinstance(vkey, str) else list(vkey)
    vkey = _signer(note, vkeys)
    list_key = _signer(published.signature, [vkey, *vkeys], what=f"the status list of {row.issuer_code}")
    consistency = None
    if old_checkpoint is not None:
        old = _older_checkpoint(old_checkpoint, [parse_vkey(v) for v in [vkey, *vkeys]])
        if old.size > size:
            raise EvidenceError(f"the older checkpoint's tree ({old.size}) is larger than the log ({size})")
        if old.size < size:
            consistency = (old.size, prove_consistency(conn, old.size, size))
    certificate, salt = _certificate_of(
        leaf_at(conn, int(row.leaf_index)), opening_at(conn, int(row.leaf_index)), cert_id
    )
    bundle = build_bundle(
        certificate,
        int(row.leaf_index),
        prove_inclusion(conn, int(row.leaf_index), size),
        note,
        vkey,
        status_list=published,
        status_list_proof=prove_inclusion(conn, published.leaf_index, size),
        log_hash=read_head(conn).hasher.name,
        consistency=consistency,
        status_list_key=list_key,
        salt=salt,
    )
    return bundle, str(row.status)


@dataclass(frozen=True)
class HeldCertificate:
    """A certificate as the log commits to it, with its state in the signed status list."""

    certificate: dict[str, Any]
    state: str
    leaf_index: int
    tree_size: int


def check_held(
    conn: Connection,
    cert_id: str,
    leaf_index: int,
    verifiers: Sequence[NoteVerifier],
    *,
    size: int | None = None,
) -> HeldCertificate:
    """The certificate ``cert_id`` at ``leaf_index`` as the log commits to it — never as a catalog
    row says — and its state in its issuer's signed status list; :class:`VerificationFailed`
    naming what disagrees.

    The entry rebuilt from the stored opening (certificate and salt) must be in the tree of the
    newest checkpoint signed by one of ``verifiers`` (an inclusion proof from stored nodes,
    checked against the signed root: so the opening opens the leaf's commitment without reading
    the leaf), and the status list must be signed by one of them and be the newest the log
    records for it. A catalog row whose holder, validity or status was edited therefore cannot
    make a skip-check answer "may be skipped": the answer is read from what this returns
    (``sharing.skipcheck``).

    With ``size`` (a past checkpoint's tree size): the same, as of that checkpoint — the
    certificate must be under it, and its state is the one the newest status list logged before
    it gives, vouched for by that leaf's inclusion under the signed checkpoint of ``size`` (what
    the counter would have answered then: ``skip-check --as-of``).
    """
    from evidence.log import checkpoint_at, latest_checkpoint, leaf_at, opening_at, prove_inclusion, read_head
    from evidence.status_list import logged_status_list, stored_list

    opening = opening_at(conn, leaf_index)
    try:
        if opening is None:  # a leaf an earlier version wrote: its entry is the certificate
            certificate, salt = _certificate_of(leaf_at(conn, leaf_index), None, cert_id)
        else:
            certificate, salt = json.loads(opening.body), bytes(opening.salt)
            if (
                not isinstance(certificate, dict)
                or certificate.get("id") != cert_id
                or opening.ref != cert_id
            ):
                raise VerificationFailed(
                    f"the opening stored for leaf {leaf_index} is not certificate {cert_id}"
                )
    except (EvidenceError, ValueError) as exc:
        raise VerificationFailed(str(exc)) from None
    as_of = size is not None
    if size is None:
        head = latest_checkpoint(conn)
        if head is None:
            raise VerificationFailed("the transparency log has no checkpoint yet")
        size, note = head
    else:
        found = checkpoint_at(conn, size)
        if found is None:
            raise VerificationFailed(f"the log signed no checkpoint of size {size}")
        note = found
    checkpoint = Checkpoint.parse(open_note(note, list(verifiers)))
    if checkpoint.size != size or leaf_index >= size:
        which = "the" if as_of else "the newest"
        raise VerificationFailed(f"leaf {leaf_index} is not under {which} checkpoint (size {size})")
    hasher = read_head(conn).hasher
    entry = certificate_entry(certificate, salt) if salt is not None else certificate_leaf_bytes(certificate)
    try:
        verify_inclusion(
            hasher.leaf(entry),
            leaf_index,
            size,
            prove_inclusion(conn, leaf_index, size),
            checkpoint.root_hash,
            hasher=hasher,
        )
    except (VerificationFailed, EvidenceError) as exc:
        raise VerificationFailed(f"certificate {cert_id} is not in the signed log: {exc}") from None
    credential = certificate.get("credential_status") or {}
    issuer, list_no = str(credential.get("issuer")), int(credential.get("list", -1))
    if as_of:
        # The newest list the log recorded before the checkpoint, found by its entry (which the
        # leaf hash covers), not by the kind and ref columns beside it; proven under it.
        before = logged_list_before(conn, issuer, list_no, size)
        if before is None:
            raise VerificationFailed(f"no status list covered certificate {cert_id} at size {size}")
        listed = leaf_at(conn, int(before))
        try:
            verify_inclusion(
                hasher.leaf(listed.entry or b""),
                int(before),
                size,
                prove_inclusion(conn, int(before), size),
                checkpoint.root_hash,
                hasher=hasher,
            )
            document = json.loads(listed.entry or b"")
        except (VerificationFailed, EvidenceError, ValueError) as exc:
            raise VerificationFailed(
                f"the status list at leaf {before} is not in the signed log: {exc}"
            ) from None
        state = _state_of(
            certificate, CertificateId.parse(cert_id), logged_status_list(document, int(before))
        )
        return HeldCertificate(certificate, state, leaf_index, size)
    published = stored_list(conn, issuer, list_no)
    if published is None:
        raise VerificationFailed(f"no signed status list covers certificate {cert_id} yet")
    if published.leaf_index >= size:
        raise VerificationFailed(
            f"the status list of certificate {cert_id} is not under the newest checkpoint"
        )
    # The newest list the log holds, found by its entry (which the leaf hash covers), not by the
    # kind and ref columns beside it: a newer list relabelled must still be the one that counts.
    newest = logged_list_before(conn, issuer, list_no, size)
    logged = leaf_at(conn, published.leaf_index)
    if (
        newest != published.leaf_index
        or logged.kind != STATUS_LIST_KIND
        or logged.entry != canonical_json(published.document)
    ):
        raise VerificationFailed(
            f"the status list of certificate {cert_id} is not the newest one the log records "
            f"(leaf {published.leaf_index}, the log's newest {newest})"
        )
    status_list = _list_signed_by(published, verifiers)
    state = _state_of(certificate, CertificateId.parse(cert_id), status_list)
    return HeldCertificate(certificate, state, leaf_index, size)


def logged_list_before(conn: Connection, issuer: str, list_no: int, size: int) -> int | None:
    """The leaf of the newest status list ``list_no`` of ``issuer`` logged before ``size``,
    found by reading the entries backwards (only status lists carry their format), since the
    kind and ref columns are not covered by the leaf hash; None if none was."""
    from evidence.log import entries_before

    for index, entry in entries_before(conn, size):
        if listed_in(entry) == (issuer, list_no):
            return index
    return None


def _list_signed_by(published: PublishedList, verifiers: Sequence[NoteVerifier]) -> StatusList:
    last: VerificationFailed | None = None
    for verifier in verifiers:
        try:
            return open_status_list(published.to_json(), verifier)
        except VerificationFailed as exc:
            last = exc
    raise VerificationFailed(f"the status list is signed by none of the log's keys ({last})")


def _cosigned(conn: Connection, size: int, note: str) -> str:
    """The checkpoint with the cosignatures the district's witnesses returned for it, as extra
    signature lines (c2sp.org/tlog-cosignature); verifiers that do not ask for them ignore them."""
    from evidence.witness import with_cosignatures

    return with_cosignatures(conn, size, note)


def check_witnesses(note: str, witnesses: Sequence[str], minimum: int | None = None) -> tuple[str, ...]:
    """The witnesses among ``witnesses`` (cosignature vkeys) whose valid cosignatures ``note``
    carries, at least ``minimum`` of them (default all); :class:`VerificationFailed` otherwise."""
    from evidence.cosignature import require_cosignatures

    return tuple(c.label for c in require_cosignatures(note, witnesses, minimum))


def _certificate_of(leaf: Any, opening: Any, cert_id: str) -> tuple[dict[str, Any], bytes | None]:
    """The certificate ``cert_id`` and its salt: its opening, checked to open the log leaf's
    commitment; or, for a leaf an earlier version wrote, the leaf's entry itself (no salt). The
    leaf's id is stored beside the hashed entry, so the entry itself must say it too."""
    changed = (
        f"leaf {leaf.index} of the log does not hold certificate {cert_id}: the catalog or the "
        "log was changed; run `onceonly log verify` and `onceonly audit`"
    )
    entry = bytes(leaf.entry) if leaf.kind == "certificate" and leaf.entry is not None else None
    if leaf.ref != cert_id or entry is None:
        raise EvidenceError(changed)
    if opening is None:
        body = json.loads(entry)
        if not isinstance(body, dict) or body.get("id") != cert_id or is_commitment_entry(entry):
            raise EvidenceError(changed)
        return body, None
    certificate = json.loads(opening.body)
    try:
        check_opening(entry, certificate, opening.salt)
    except VerificationFailed as exc:
        raise EvidenceError(f"{changed} ({exc})") from None
    if not isinstance(certificate, dict) or certificate.get("id") != cert_id or opening.ref != cert_id:
        raise EvidenceError(changed)
    return certificate, bytes(opening.salt)


def _signer(note: str, vkeys: list[str], *, what: str = "the newest checkpoint") -> str:
    """The one of ``vkeys`` that signed ``note``."""
    for candidate in vkeys:
        try:
            open_note(note, parse_vkey(candidate))
        except VerificationFailed:
            continue
        return candidate
    raise EvidenceError(f"{what} is signed by none of the known keys (keys_dir and keyring)")


def verify_bundle(
    bundle: Mapping[str, Any],
    *,
    trusted_vkey: str | None = None,
    old_checkpoint: str | None = None,
    newer_status_list: Mapping[str, Any] | None = None,
    today: dt.date | None = None,
    keyring: Keyring | None = None,
    witnesses: Sequence[str] = (),
    min_witnesses: int | None = None,
) -> VerifiedBundle:
    """Check a bundle offline; raise :class:`VerificationFailed` naming the first failure.

    In order: structure and format; the public key (and that it is ``trusted_vkey``); the
    checkpoint's signature; the leaf index against the tree size; the certificate's
    identifier; its inclusion in the checkpoint's tree; the status list's signature, issuer
    and inclusion; the certificate's state in it (anything but 有效 fails, naming the state);
    its validity dates against ``today``; and, with ``old_checkpoint``, that the bundle's log
    is an append-only extension of the log the verifier saw before.

    ``newer_status_list`` is a status list file the verifier fetched since (``$ONCEONLY_HOME/
    status/<issuer>-<list>.json``): signed by the same key, for the same list and not older
    than the bundle's, it decides the state instead, so a cached bundle cannot hide a later
    suspension.

    ``keyring``: the district's trusted keyring; the keys must be in it and usable at the
    signing time (see the module docstring).

    ``witnesses``: cosignature verifier keys of witnesses (c2sp.org/tlog-cosignature); the
    checkpoint must carry valid cosignatures by at least ``min_witnesses`` of them (default
    all), checked right after the log's signature.
    """
    proof, list_proof, consistency = _check_structure(bundle)
    certificate: Mapping[str, Any] = bundle["certificate"]
    leaf_index: int = bundle["leaf_index"]
    try:
        hasher = tree_hash(bundle["log_hash"])
    except ConfigurationError as exc:
        raise VerificationFailed(f"bundle log_hash: {exc}") from exc

    verifier = _verifier(bundle["public_key"], trusted_vkey)
    list_verifier = verifier
    if "status_list_key" in bundle:
        try:
            list_verifier = parse_vkey(bundle["status_list_key"])
        except VerificationFailed as exc:
            raise VerificationFailed(f"bundle status_list_key: {exc}") from exc
    if keyring is not None:
        _in_keyring(keyring, verifier, "the checkpoint's key")
        _in_keyring(keyring, list_verifier, "the status list's key")
    checkpoint = Checkpoint.parse(open_note(bundle["checkpoint"], verifier))
    cosigned_by = check_witnesses(bundle["checkpoint"], witnesses, min_witnesses) if witnesses else ()
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
        if bundle["format"] == PREVIOUS_FORMAT:
            entry = certificate_leaf_bytes(certificate)
        else:
            entry = certificate_entry(certificate, _salt(bundle))
    except EvidenceError as exc:
        raise VerificationFailed(str(exc)) from exc
    try:
        verify_inclusion(
            hasher.leaf(entry), leaf_index, checkpoint.size, proof, checkpoint.root_hash, hasher=hasher
        )
    except VerificationFailed as exc:
        raise VerificationFailed(f"certificate is not in the checkpoint's log: {exc}") from exc

    status_list = _check_status_list(bundle["status_list"], list_proof, list_verifier, checkpoint, hasher)
    warnings: list[str] = []
    if keyring is not None:
        signed_at = _published_time(status_list)
        if list_verifier == verifier:
            warnings += _key_usable(keyring, verifier, signed_at, "checkpoint and status list")
        else:
            warnings += _key_usable(keyring, verifier, signed_at, "checkpoint")
            warnings += _key_usable(keyring, list_verifier, signed_at, "status list")
    if newer_status_list is not None:
        trusted = [verifier, list_verifier] if keyring is None else keyring.verifiers(verifier.name)
        status_list = _newer(newer_status_list, status_list, trusted)
        if keyring is not None:
            warnings += _key_usable(
                keyring, _list_signer(newer_status_list, trusted), _published_time(status_list), "newer list"
            )
    state = _state_of(certificate, certificate_id, status_list)
    if state != STATUS_VALID:
        raise VerificationFailed(
            f"certificate {certificate_id} is {_STATE_WORDS.get(state, state)} according to the status "
            f"list of {status_list.issuer} published {status_list.published}"
        )
    _check_dates(certificate, today or dt.date.today())

    consistent_from = None
    if old_checkpoint is not None:
        known = [verifier, list_verifier] + (keyring.verifiers(verifier.name) if keyring is not None else [])
        consistent_from = _check_consistency(old_checkpoint, consistency, known, checkpoint, hasher)

    return VerifiedBundle(
        certificate_id=str(certificate_id),
        status=state,
        leaf_index=leaf_index,
        tree_size=checkpoint.size,
        origin=checkpoint.origin,
        root_hash=checkpoint.root_hash,
        status_published=status_list.published,
        consistent_from=consistent_from,
        warnings=tuple(dict.fromkeys(warnings)),
        cosigned_by=cosigned_by,
    )


def _in_keyring(keyring: Keyring, verifier: NoteVerifier, what: str) -> None:
    record = keyring.find(verifier.key_id, verifier.name)
    if record is None or parse_vkey(record.vkey) != verifier:
        raise VerificationFailed(
            f"{what} {verifier.name}+{verifier.key_id.hex()} is not in the trusted keyring"
        )


def _published_time(status_list: StatusList) -> dt.datetime:
    try:
        published = dt.datetime.fromisoformat(status_list.published.replace("Z", "+00:00"))
    except ValueError:
        raise VerificationFailed(
            f"status list {status_list.issuer}/{status_list.list_no}: published time "
            f"{status_list.published!r} is not ISO 8601"
        ) from None
    if published.tzinfo is None:
        raise VerificationFailed(
            f"status list {status_list.issuer}/{status_list.list_no}: published time has no zone"
        )
    return published


def _key_usable(keyring: Keyring, verifier: NoteVerifier, signed_at: dt.datetime, what: str) -> list[str]:
    """Fail for a key compromised (or retired) by ``signed_at``; warn for one compromised later."""
    try:
        record = check_key_status(verifier.key_id, signed_at, keyring, verifier.name)
    except VerificationFailed as exc:
        raise VerificationFailed(
            f"{what} signature: {exc} (signing time: the status list's published time)"
        ) from None
    if record.compromised_since is None:
        return []
    return [
        f"the {what} was signed by key {record.name}+{record.key_id}, compromised since "
        f"{record.compromised_since.isoformat()}; the bundle dates the signature to {signed_at.isoformat()}, "
        "before that, but a stolen key can backdate: export a fresh bundle signed by the current key"
    ]


def _list_signer(published: Mapping[str, Any], verifiers: Sequence[NoteVerifier]) -> NoteVerifier:
    for verifier in verifiers:
        try:
            open_status_list(published, verifier)
        except VerificationFailed:
            continue
        return verifier
    raise VerificationFailed("the newer status list is signed by none of the trusted keys")


def _verifier(public_key: str, trusted_vkey: str | None) -> NoteVerifier:
    verifier = parse_vkey(public_key)
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
    return verifier


def _check_status_list(
    published: Mapping[str, Any],
    proof: list[bytes],
    verifier: NoteVerifier,
    checkpoint: Checkpoint,
    hasher: TreeHash,
) -> StatusList:
    try:
        status_list = open_status_list(published, verifier)
    except VerificationFailed as exc:
        raise VerificationFailed(f"status list: {exc}") from exc
    if status_list.leaf_index >= checkpoint.size:
        raise VerificationFailed(
            f"status list leaf {status_list.leaf_index} is not inside the checkpoint's tree of "
            f"size {checkpoint.size}"
        )
    try:
        verify_inclusion(
            hasher.leaf(status_list.canonical),
            status_list.leaf_index,
            checkpoint.size,
            proof,
            checkpoint.root_hash,
            hasher=hasher,
        )
    except VerificationFailed as exc:
        raise VerificationFailed(f"status list is not in the checkpoint's log: {exc}") from exc
    return status_list


def _newer(
    published: Mapping[str, Any], bundled: StatusList, verifiers: Sequence[NoteVerifier]
) -> StatusList:
    newer: StatusList | None = None
    failure: VerificationFailed | None = None
    for verifier in dict.fromkeys(verifiers):  # the checkpoint's key, then the others
        try:
            newer = open_status_list(published, verifier)
            break
        except VerificationFailed as exc:
            failure = failure or exc
    if newer is None:
        raise VerificationFailed(f"the newer status list: {failure}")
    if (newer.issuer, newer.list_no) != (bundled.issuer, bundled.list_no):
        raise VerificationFailed(
            f"the newer status list is {newer.issuer}/{newer.list_no}, the certificate's is "
            f"{bundled.issuer}/{bundled.list_no}"
        )
    if newer.published < bundled.published:  # ISO 8601 UTC with Z: text order is time order
        raise VerificationFailed(
            f"the 'newer' status list ({newer.published}) is older than the bundle's ({bundled.published})"
        )
    return newer


def _state_of(certificate: Mapping[str, Any], certificate_id: CertificateId, status_list: StatusList) -> str:
    entry = certificate.get("credential_status")
    if not isinstance(entry, Mapping):
        raise VerificationFailed("certificate names no status-list entry (credential_status)")
    if entry.get("issuer") != certificate_id.issuer_uscc:
        raise VerificationFailed("certificate's status entry names another issuer than its identifier")
    if (entry.get("issuer"), entry.get("list")) != (status_list.issuer, status_list.list_no):
        raise VerificationFailed(
            f"the bundle's status list is {status_list.issuer}/{status_list.list_no}, but the certificate's "
            f"status lies in {entry.get('issuer')}/{entry.get('list')}"
        )
    return status_list.state(entry.get("index"))  # type: ignore[arg-type]  # state() checks it


def _check_dates(certificate: Mapping[str, Any], today: dt.date) -> None:
    valid_from, valid_to = certificate.get("valid_from"), certificate.get("valid_to")
    try:
        if isinstance(valid_to, str) and dt.date.fromisoformat(valid_to[:10]) < today:
            raise VerificationFailed(f"certificate expired on {valid_to[:10]} (valid_to)")
        if isinstance(valid_from, str) and dt.date.fromisoformat(valid_from[:10]) > today:
            raise VerificationFailed(f"certificate is not valid before {valid_from[:10]} (valid_from)")
    except ValueError as exc:
        raise VerificationFailed(f"certificate validity dates are not ISO dates: {exc}") from exc


def _older_checkpoint(text: str, verifiers: Sequence[NoteVerifier]) -> Checkpoint:
    """The checkpoint a verifier saw before, as given (file or ``$(jq -r .checkpoint ...)``): one
    final newline lost or added is put right; any other problem is named."""
    unique = list({(v.name, v.key_id): v for v in verifiers}.values())
    try:
        return Checkpoint.parse(open_note(note_as_given(text), unique))
    except VerificationFailed as exc:
        hint = ""
        if str(exc).startswith("note has no signature by"):
            hint = " (signed by a key rotated out since? verify with the district's keyring: --keyring)"
        raise VerificationFailed(f"the older checkpoint (--consistency-from): {exc}{hint}") from exc


def _check_consistency(
    old_note: str,
    consistency: tuple[int, list[bytes]] | None,
    verifiers: Sequence[NoteVerifier],
    checkpoint: Checkpoint,
    hasher: TreeHash,
) -> int:
    old = _older_checkpoint(old_note, verifiers)
    if old.origin != checkpoint.origin:
        raise VerificationFailed(
            f"the older checkpoint is of the log {old.origin!r}, the bundle's of {checkpoint.origin!r}"
        )
    if old.size > checkpoint.size:
        raise VerificationFailed(
            f"the older checkpoint is of a larger tree ({old.size}) than the bundle's ({checkpoint.size}): "
            "ask for a newer bundle"
        )
    if old.size == checkpoint.size:
        if old.root_hash != checkpoint.root_hash:
            raise VerificationFailed(f"the log was rewritten: two different trees of size {old.size}")
        return old.size
    if consistency is None or consistency[0] != old.size:
        carried = "none" if consistency is None else f"one from size {consistency[0]}"
        raise VerificationFailed(
            f"the bundle carries no consistency proof from size {old.size} ({carried}); export it with "
            "--consistency-from <that checkpoint>"
        )
    try:
        verify_consistency(
            old.size, checkpoint.size, consistency[1], old.root_hash, checkpoint.root_hash, hasher=hasher
        )
    except VerificationFailed as exc:
        raise VerificationFailed(f"the log is not consistent with the older checkpoint: {exc}") from exc
    return old.size


def _check_structure(
    bundle: Mapping[str, Any],
) -> tuple[list[bytes], list[bytes], tuple[int, list[bytes]] | None]:
    """Check the bundle's shape; return the decoded proofs."""
    if not isinstance(bundle, Mapping):
        raise VerificationFailed("bundle is not a JSON object")
    missing = [name for name in _FIELDS if name not in bundle]
    if missing:
        raise VerificationFailed(f"bundle lacks {', '.join(missing)}")
    unknown = sorted(str(name) for name in bundle if name not in _FIELDS + _OPTIONAL)
    if unknown:
        raise VerificationFailed(f"bundle has unknown fields {', '.join(unknown)}")
    if bundle["format"] not in (BUNDLE_FORMAT, PREVIOUS_FORMAT):
        raise VerificationFailed(
            f"bundle format is {bundle['format']!r}, expected {BUNDLE_FORMAT!r} (or {PREVIOUS_FORMAT!r})"
        )
    if ("opening" in bundle) != (bundle["format"] == BUNDLE_FORMAT):
        lacks = "lacks" if bundle["format"] == BUNDLE_FORMAT else "has"
        raise VerificationFailed(f"a bundle of format {bundle['format']!r} {lacks} an opening")
    if not isinstance(bundle["certificate"], Mapping):
        raise VerificationFailed("bundle certificate is not a JSON object")
    if not _is_index(bundle["leaf_index"]):
        raise VerificationFailed("bundle leaf_index is not a non-negative integer")
    for name in ("checkpoint", "public_key", "log_hash", *(n for n in ("status_list_key",) if n in bundle)):
        if not isinstance(bundle[name], str):
            raise VerificationFailed(f"bundle {name} is not a string")
    if not isinstance(bundle["status_list"], Mapping):
        raise VerificationFailed("bundle status_list is not a JSON object")
    proof = _hashes(bundle["inclusion_proof"], "inclusion_proof")
    list_proof = _hashes(bundle["status_list_proof"], "status_list_proof")
    consistency = None
    if "consistency" in bundle:
        value = bundle["consistency"]
        if not isinstance(value, Mapping) or set(value) != {"from_size", "proof"}:
            raise VerificationFailed("bundle consistency is not an object of from_size and proof")
        if not _is_index(value["from_size"]):
            raise VerificationFailed("bundle consistency from_size is not a non-negative integer")
        consistency = (int(value["from_size"]), _hashes(value["proof"], "consistency.proof"))
    return proof, list_proof, consistency


def _salt(bundle: Mapping[str, Any]) -> bytes:
    opening = bundle["opening"]
    if not isinstance(opening, Mapping) or set(opening) != {"salt"} or not isinstance(opening["salt"], str):
        raise VerificationFailed("bundle opening is not an object of salt")
    try:
        salt = bytes.fromhex(opening["salt"])
    except ValueError:
        raise VerificationFailed("bundle opening salt is not hex") from None
    if len(salt) != SALT_SIZE or opening["salt"] != salt.hex():
        raise VerificationFailed(f"bundle opening salt is not {SALT_SIZE} bytes of lower-case hex")
    return salt


def _is_index(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 0


def _hashes(elements: object, name: str) -> list[bytes]:
    if not isinstance(elements, list):
        raise VerificationFailed(f"bundle {name} is not a list")
    decoded = []
    for position, element in enumerate(elements):
        if not isinstance(element, str) or not _HASH_HEX_RE.fullmatch(element):
            raise VerificationFailed(f"bundle {name}[{position}] is not 64 lower-case hex digits")
        decoded.append(bytes.fromhex(element))
    return decoded


__all__ = [
    "BUNDLE_FORMAT",
    "PREVIOUS_FORMAT",
    "HeldCertificate",
    "VerifiedBundle",
    "build_bundle",
    "certificate_leaf_bytes",
    "check_held",
    "check_witnesses",
    "export_bundle",
    "logged_list_before",
    "verify_bundle",
]
