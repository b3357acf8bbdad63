"""Witness cosignatures (c2sp.org/tlog-cosignature): Ed25519 ``cosignature/v1``, key type 0x04.

Example::

    >>> cosigner = Cosigner.generate("witness.baodi.example/w1")
    >>> line = cosigner.cosign(checkpoint_text, timestamp=1679315147)   # a NoteSignature
    >>> cosigned = add_signatures(checkpoint_note, [line])              # the log's note + the line
    >>> [c.timestamp for c in require_cosignatures(cosigned, [cosigner.vkey])]
    [1679315147]

A cosignature is a signature line added to the log's signed checkpoint: ``— <witness name>
base64(key ID || timestamp || signature)``, where the key ID is ``SHA-256(name || 0x0A || 0x04 ||
public key)[:4]``, the timestamp a big-endian u64 of POSIX seconds, and the Ed25519 signature is
over::

    cosignature/v1
    time <timestamp>
    <the checkpoint's note text: origin, size, root hash, any extension lines>

It states that, at that time, the consistent tree with the largest size the witness has seen of
that log has that root hash. The witness's verifier key is ``<name>+<hex key ID>+base64(0x04 ||
public key)`` (c2sp.org/signed-note vkeys with the cosignature type).

Verifiers that do not know a witness's key ignore its line (c2sp.org/signed-note), so a cosigned
checkpoint still opens with the log's key alone; :func:`require_cosignatures` is where a verifier
demands them. A line by a known witness key whose signature does not verify rejects the note.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence.note import NoteSignature, key_id, split_note
from evidence.suites import SUITES, UnreadableKey
from onceonly.errors import EvidenceError, VerificationFailed

#: c2sp.org/tlog-cosignature: the signature type of Ed25519 cosignatures in key IDs and vkeys.
ALG_COSIGNATURE_V1 = 0x04
COSIGNATURE_HEADER = "cosignature/v1"
#: c2sp.org/tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1.
MAX_TIMESTAMP = 2**63 - 1
#: How far in the future a verifier accepts a cosignature's time (clocks differ a little).
CLOCK_SKEW_SECONDS = 600
_PUBLIC_KEY_SIZE = 32
_SIGNATURE_SIZE = 8 + 64  # timestamp || Ed25519 signature


def cosigned_message(text: str, timestamp: int) -> bytes:
    """The bytes an Ed25519 cosignature signs: header line, time line, the checkpoint's note text."""
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"a cosignature timestamp is an integer from 0 to 2^63 - 1, not {timestamp!r}")
    if not text.endswith("\n"):
        raise ValueError("the note text does not end with a newline")
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n{text}".encode()


def format_cosigner_vkey(name: str, public_key: bytes) -> str:
    """The witness's verifier key ``<name>+<hex key ID>+base64(0x04 || Ed25519 public key)``."""
    if not name or any(char.isspace() or char == "+" for char in name):
        raise ValueError("a witness name is non-empty, without spaces or '+'")
    if len(public_key) != _PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {_PUBLIC_KEY_SIZE} bytes")
    kid = key_id(name, public_key, ALG_COSIGNATURE_V1).hex()
    return f"{name}+{kid}+{base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + public_key).decode('ascii')}"


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's public key: its name, 4-byte key ID and Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: bytes

    @property
    def vkey(self) -> str:
        return format_cosigner_vkey(self.name, self.public_key)

    @property
    def label(self) -> str:
        """``name+keyid``, as messages name the witness."""
        return f"{self.name}+{self.key_id.hex()}"

    def verify(self, text: str, signature: NoteSignature) -> Cosignature:
        """The cosignature of ``signature`` (a line by this key) over note text ``text``.

        Raises :class:`VerificationFailed` when the line is another key's, is not a timestamp
        and an Ed25519 signature, or does not verify.
        """
        if (signature.name, signature.key_id) != (self.name, self.key_id):
            raise VerificationFailed(f"the signature line is not by witness {self.label}")
        raw = signature.signature
        if len(raw) != _SIGNATURE_SIZE:
            raise VerificationFailed(
                f"cosignature by {self.label}: {len(raw)} bytes, a timestamp and an Ed25519 signature are "
                f"{_SIGNATURE_SIZE}"
            )
        (timestamp,) = struct.unpack(">Q", raw[:8])
        if timestamp > MAX_TIMESTAMP:
            raise VerificationFailed(f"cosignature by {self.label}: its timestamp exceeds 2^63 - 1")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                raw[8:], cosigned_message(text, timestamp)
            )
        except (InvalidSignature, ValueError):
            raise VerificationFailed(f"bad cosignature by witness {self.label}") from None
        return Cosignature(self.name, self.key_id, timestamp, signature)


def parse_cosigner_vkey(text: str) -> CosignatureVerifier:
    """Parse a witness verifier key; raise :class:`VerificationFailed` saying what is wrong."""
    if not isinstance(text, str):
        raise VerificationFailed("witness key is not a string")
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise VerificationFailed("witness key is not of the form <name>+<key id>+<key>")
    name, id_hex, encoded = parts
    if not name or any(char.isspace() for char in name):
        raise VerificationFailed("witness key: the name is empty or contains a space")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise VerificationFailed("witness key: the key is not base64") from None
    if base64.b64encode(raw).decode("ascii") != encoded:
        raise VerificationFailed("witness key: the key is not canonical base64")
    if not raw or raw[0] != ALG_COSIGNATURE_V1:
        kind = f"0x{raw[0]:02x}" if raw else "none"
        hint = " (that is a log's note key, not a witness's cosignature key)" if raw[:1] == b"\x01" else ""
        raise VerificationFailed(
            f"witness key: signature type {kind}, a cosignature/v1 key has type 0x04{hint}"
        )
    public_key = raw[1:]
    if len(public_key) != _PUBLIC_KEY_SIZE:
        raise VerificationFailed(f"witness key: an Ed25519 key is {_PUBLIC_KEY_SIZE} bytes")
    expected = key_id(name, public_key, ALG_COSIGNATURE_V1)
    if id_hex != expected.hex():
        raise VerificationFailed("witness key: the key id does not match the name and key")
    try:
        Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise VerificationFailed("witness key: not a valid Ed25519 key") from None
    return CosignatureVerifier(name, expected, public_key)


@dataclass(frozen=True)
class Cosignature:
    """A verified cosignature: the witness, its key ID, when it cosigned, and the line itself."""

    witness: str
    key_id: bytes
    timestamp: int
    signature: NoteSignature

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp, dt.UTC)

    @property
    def label(self) -> str:
        return f"{self.witness}+{self.key_id.hex()}"


class Cosigner:
    """A witness's Ed25519 cosigning key. Its ``repr`` never shows key material."""

    __slots__ = ("_name", "_private_key", "_public_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise EvidenceError(f"witness {name!r}: a cosignature/v1 key is Ed25519")
        self._name = name
        self._private_key = private_key
        self._public_key = private_key.public_key().public_bytes_raw()
        try:
            format_cosigner_vkey(name, self._public_key)
        except ValueError as exc:
            raise EvidenceError(f"witness name {name!r}: {exc}") from None

    @classmethod
    def generate(cls, name: str) -> Cosigner:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_encrypted_pem(cls, name: str, pem: bytes, passphrase: bytes) -> Cosigner:
        """The key of a file :meth:`to_encrypted_pem` wrote; :class:`EvidenceError` saying why not."""
        try:
            private_key = SUITES["ed25519"].decrypt_private_key(pem, passphrase)
        except UnreadableKey as exc:
            raise EvidenceError(f"cannot read the witness key: {exc}") from None
        return cls(name, private_key)

    def to_encrypted_pem(self, passphrase: bytes) -> bytes:
        """The private key as PKCS#8 encrypted with ``passphrase`` (as the log's Ed25519 keys)."""
        if not passphrase:
            raise EvidenceError("the key passphrase is empty; refusing to store a witness key in clear")
        return SUITES["ed25519"].encrypt_private_key(self._private_key, passphrase)

    @property
    def name(self) -> str:
        return self._name

    @property
    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(
            self._name, key_id(self._name, self._public_key, ALG_COSIGNATURE_V1), self._public_key
        )

    @property
    def vkey(self) -> str:
        return format_cosigner_vkey(self._name, self._public_key)

    def cosign(self, text: str, timestamp: int | None = None) -> NoteSignature:
        """The cosignature line over checkpoint note text ``text``, at ``timestamp`` (default now).

        c2sp.org/tlog-witness: the timestamp MUST NOT be zero.
        """
        when = int(time.time()) if timestamp is None else timestamp
        if when == 0:
            raise ValueError("a witness's cosignature carries a non-zero timestamp")
        signature = self._private_key.sign(cosigned_message(text, when))
        return NoteSignature(self._name, self.verifier.key_id, struct.pack(">Q", when) + signature)

    def __repr__(self) -> str:
        return f"Cosigner(name={self._name!r}, key_id={self.verifier.key_id.hex()!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Cosigner cannot be pickled: it would write the private key in clear")


def cosignatures(note: str, verifiers: Iterable[CosignatureVerifier]) -> tuple[Cosignature, ...]:
    """The valid cosignatures on ``note`` by ``verifiers``, one per witness key, in line order.

    Lines by other keys are ignored (c2sp.org/signed-note); a line by one of ``verifiers`` that
    does not verify raises :class:`VerificationFailed`: such a note is malformed.
    """
    known = {(v.name, v.key_id): v for v in verifiers}
    text, lines = split_note(note)
    found: dict[tuple[str, bytes], Cosignature] = {}
    for line in lines:
        verifier = known.get((line.name, line.key_id))
        if verifier is not None:
            found.setdefault((line.name, line.key_id), verifier.verify(text, line))
    return tuple(found.values())


def require_cosignatures(
    note: str,
    witness_vkeys: Sequence[str],
    minimum: int | None = None,
    *,
    now: dt.datetime | None = None,
) -> tuple[Cosignature, ...]:
    """Check that ``note`` carries valid cosignatures by at least ``minimum`` of ``witness_vkeys``.

    ``minimum`` defaults to every key given. A cosignature dated more than
    :data:`CLOCK_SKEW_SECONDS` after ``now`` fails (c2sp.org/tlog-cosignature: verifiers MAY
    reject cosignatures with timestamps in the future). Raises :class:`VerificationFailed`
    naming the witnesses that cosigned and those missing.
    """
    if not witness_vkeys:
        raise VerificationFailed("no witness key given to check cosignatures against")
    verifiers = []
    for vkey in witness_vkeys:
        try:
            verifiers.append(parse_cosigner_vkey(vkey))
        except VerificationFailed as exc:
            raise VerificationFailed(f"the trusted {exc}") from None
    unique = list({(v.name, v.key_id): v for v in verifiers}.values())
    wanted = len(unique) if minimum is None else minimum
    if not 1 <= wanted <= len(unique):
        raise VerificationFailed(
            f"cannot require {wanted} cosignatures from {len(unique)} distinct witness key(s)"
        )
    try:
        found = cosignatures(note, unique)
    except VerificationFailed as exc:
        raise VerificationFailed(f"checkpoint cosignature: {exc}") from None
    limit = (now or dt.datetime.now(dt.UTC)).timestamp() + CLOCK_SKEW_SECONDS
    for cosignature in found:
        if cosignature.timestamp > limit:
            raise VerificationFailed(
                f"the cosignature by witness {cosignature.label} is dated {cosignature.time.isoformat()}, "
                "in the future"
            )
    if len(found) < wanted:
        present = {(c.witness, c.key_id) for c in found}
        missing = [v.label for v in unique if (v.name, v.key_id) not in present]
        cosigned = ", ".join(c.label for c in found) or "none"
        raise VerificationFailed(
            f"the checkpoint carries {len(found)} valid cosignature(s) of the {wanted} required "
            f"(cosigned by: {cosigned}; missing: {', '.join(missing)})"
        )
    return found


__all__ = [
    "ALG_COSIGNATURE_V1",
    "CLOCK_SKEW_SECONDS",
    "COSIGNATURE_HEADER",
    "MAX_TIMESTAMP",
    "Cosignature",
    "CosignatureVerifier",
    "Cosigner",
    "cosignatures",
    "cosigned_message",
    "format_cosigner_vkey",
    "parse_cosigner_vkey",
    "require_cosignatures",
]
