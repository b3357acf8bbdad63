"""Signed notes (c2sp.org/signed-note) and transparency-log checkpoints (c2sp.org/tlog-checkpoint).

Example::

    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> from evidence.merkle import EMPTY_ROOT
    >>> key = Ed25519PrivateKey.generate()
    >>> body = Checkpoint("onceonly.example/log", 0, EMPTY_ROOT).to_body()
    >>> signed = sign_note(body, "onceonly.example/log", key)
    >>> verifier = parse_vkey(format_vkey("onceonly.example/log", key.public_key().public_bytes_raw()))
    >>> Checkpoint.parse(open_note(signed, verifier)).size
    0

A signed note is a text ending in a newline, a blank line, and one or more signature lines
``— <key name> <base64(4-byte key ID || signature)>``. A checkpoint is a note whose text is
the log's origin, its tree size and its root hash, one per line. Verifiers raise
:class:`~onceonly.errors.VerificationFailed` naming what is wrong; they never return ``False``.

Where the specifications leave room we are strict, because we only read notes we wrote:
base64 must be canonical (``encode(decode(s)) == s``) and hex key IDs lower case, so that
changing any one character of a note or key is always detected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence.merkle import HASH_SIZE
from onceonly.errors import VerificationFailed

# c2sp.org/signed-note "Signature types": 0x01 is Ed25519 over the note text.
ALG_ED25519 = 0x01
ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
KEY_ID_SIZE = 4
# c2sp.org/signed-note "Format": em dash (U+2014), space, key name, space, signature.
SIGNATURE_LINE_PREFIX = "\u2014 "
# c2sp.org/signed-note "Format": verifiers SHOULD cap the signatures and MUST accept 16;
# golang.org/x/mod/sumdb/note caps at 100, and so do we.
MAX_SIGNATURES = 100

_KEY_ID_HEX_RE = re.compile(r"[0-9a-f]{8}")
# c2sp.org/tlog-checkpoint "Note text" 2: ASCII decimal, no leading zeroes except for "0".
_TREE_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_MAX_TREE_SIZE = 2**64 - 1


def key_id(name: str, public_key: bytes, alg: int = ALG_ED25519) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || alg || public key)[:4] (c2sp.org/signed-note)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[:KEY_ID_SIZE]


def format_vkey(name: str, public_key_raw: bytes) -> str:
    """The verifier key ``<name>+<hex key ID>+<base64(0x01 || Ed25519 public key)>``.

    This is the text form of golang.org/x/mod/sumdb/note ``NewVerifier`` keys.
    """
    problem = _name_problem(name)
    if problem:
        raise ValueError(problem)
    if len(public_key_raw) != ED25519_PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {ED25519_PUBLIC_KEY_SIZE} bytes")
    encoded = base64.b64encode(bytes([ALG_ED25519]) + public_key_raw).decode("ascii")
    return f"{name}+{key_id(name, public_key_raw).hex()}+{encoded}"


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted note key: its name, 4-byte key ID and raw Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: bytes

    @property
    def vkey(self) -> str:
        """The verifier key text this verifier was parsed from."""
        return format_vkey(self.name, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`VerificationFailed` unless ``signature`` is this key's over ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError) as exc:
            raise VerificationFailed(f"bad signature by {self.name}+{self.key_id.hex()}") from exc


def parse_vkey(text: str) -> NoteVerifier:
    """Parse a verifier key made by :func:`format_vkey`; raise :class:`VerificationFailed`."""
    if not isinstance(text, str):
        raise VerificationFailed("public key is not a string")
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise VerificationFailed("public key is not of the form <name>+<key id>+<key>")
    name, id_hex, key_b64 = parts
    problem = _name_problem(name)
    if problem:
        raise VerificationFailed(f"public key: {problem}")
    if not _KEY_ID_HEX_RE.fullmatch(id_hex):
        raise VerificationFailed("public key: the key id is not 8 lower-case hex digits")
    raw = _b64decode_canonical(key_b64)
    if raw is None:
        raise VerificationFailed("public key: the key is not canonical base64")
    if not raw or raw[0] != ALG_ED25519:
        raise VerificationFailed("public key: unknown signature algorithm (only Ed25519, 0x01, is known)")
    public_key = raw[1:]
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise VerificationFailed(f"public key: an Ed25519 key is {ED25519_PUBLIC_KEY_SIZE} bytes")
    expected = key_id(name, public_key)
    if bytes.fromhex(id_hex) != expected:
        raise VerificationFailed("public key: the key id does not match the name and key")
    try:
        Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError as exc:
        raise VerificationFailed("public key: not a valid Ed25519 key") from exc
    return NoteVerifier(name=name, key_id=expected, public_key=public_key)


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Sign ``text`` (which must end in a newline) as key ``name``; return the signed note.

    c2sp.org/signed-note "Ed25519 signatures": the signature is over the UTF-8 note text,
    including its final newline but not the blank line that follows it.
    """
    problem = _text_problem(text) or _name_problem(name)
    if problem:
        raise ValueError(f"cannot sign: {problem}")
    message = text.encode("utf-8")
    kid = key_id(name, private_key.public_key().public_bytes_raw())
    signature = base64.b64encode(kid + private_key.sign(message)).decode("ascii")
    return f"{text}\n{SIGNATURE_LINE_PREFIX}{name} {signature}\n"


def open_note(note: str, verifier: NoteVerifier) -> str:
    """Check ``note`` carries a good signature by ``verifier``; return the note text.

    c2sp.org/signed-note "Signatures": signatures by other keys (another name or key ID)
    are ignored; a signature by the verifier's key that does not verify rejects the note.
    """
    if not isinstance(note, str):
        raise VerificationFailed("malformed note: not a string")
    problem = _characters_problem(note)
    if problem:
        raise VerificationFailed(f"malformed note: {problem}")
    # c2sp.org/signed-note "Format": the text is separated from the signatures by the last
    # empty line, and includes its own final newline.
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationFailed("malformed note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise VerificationFailed("malformed note: the signature block does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerificationFailed(f"malformed note: more than {MAX_SIGNATURES} signatures")
    message = text.encode("utf-8")
    verified = False
    for number, line in enumerate(lines, start=1):
        name, kid, signature = _parse_signature_line(line, number)
        if name == verifier.name and kid == verifier.key_id:
            verifier.verify(message, signature)
            verified = True
    if not verified:
        raise VerificationFailed(f"note has no signature by {verifier.name}+{verifier.key_id.hex()}")
    return text


@dataclass(frozen=True)
class Checkpoint:
    """A transparency-log checkpoint body (c2sp.org/tlog-checkpoint "Note text").

    >>> from evidence.merkle import EMPTY_ROOT
    >>> Checkpoint("onceonly.example/log", 0, EMPTY_ROOT).to_body()
    'onceonly.example/log\\n0\\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\\n'
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = (
            _line_problem(self.origin, "origin")
            or _size_problem(self.size)
            or _root_problem(self.root_hash)
            or _extensions_problem(self.extensions)
        )
        if problem:
            raise ValueError(f"checkpoint: {problem}")

    def to_body(self) -> str:
        """The note text: origin, size, base64 root hash, then any extension lines."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode("ascii")]
        lines.extend(self.extensions)
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Parse a note text; raise :class:`VerificationFailed` naming the first bad line."""
        if not isinstance(body, str):
            raise VerificationFailed("checkpoint: not a string")
        if not body.endswith("\n"):
            raise VerificationFailed("checkpoint: the text does not end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise VerificationFailed(f"checkpoint: {len(lines)} lines, needs origin, tree size and root hash")
        origin, size_text, root_text, *extensions = lines
        problem = _line_problem(origin, "origin")
        if problem:
            raise VerificationFailed(f"checkpoint: {problem}")
        if not _TREE_SIZE_RE.fullmatch(size_text) or int(size_text) > _MAX_TREE_SIZE:
            raise VerificationFailed(
                "checkpoint: the tree size is not a decimal number without leading zeros"
            )
        root_hash = _b64decode_canonical(root_text)
        if root_hash is None or len(root_hash) != HASH_SIZE:
            raise VerificationFailed(
                f"checkpoint: the root hash is not the canonical base64 of {HASH_SIZE} bytes"
            )
        problem = _extensions_problem(tuple(extensions))
        if problem:
            raise VerificationFailed(f"checkpoint: {problem}")
        return cls(origin, int(size_text), root_hash, tuple(extensions))


def _parse_signature_line(line: str, number: int) -> tuple[str, bytes, bytes]:
    where = f"malformed note: signature line {number}"
    if not line.startswith(SIGNATURE_LINE_PREFIX):
        raise VerificationFailed(f"{where} does not start with an em dash and a space")
    name, _, encoded = line[len(SIGNATURE_LINE_PREFIX) :].partition(" ")
    problem = _name_problem(name)
    if problem:
        raise VerificationFailed(f"{where}: {problem}")
    raw = _b64decode_canonical(encoded)
    if raw is None or len(raw) <= KEY_ID_SIZE:
        raise VerificationFailed(f"{where}: the signature is not canonical base64 of a key id and signature")
    return name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:]


def _b64decode_canonical(text: str) -> bytes | None:
    """RFC 4648 §4 standard base64, padded; ``None`` unless ``text`` is the canonical encoding."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    # RFC 4648 §3.5: decoders MAY reject non-zero pad bits; we do, so one text = one value.
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def _name_problem(name: str) -> str | None:
    # c2sp.org/signed-note "Format": key names are non-empty, without Unicode spaces or "+".
    if not isinstance(name, str) or not name:
        return "the key name is empty"
    if any(char.isspace() or char == "+" or ord(char) < 0x20 for char in name):
        return "the key name contains a space, a control character or '+'"
    return None


def _characters_problem(text: str) -> str | None:
    # c2sp.org/signed-note "Format": valid UTF-8, no ASCII control characters but newline.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if any(ord(char) < 0x20 and char != "\n" for char in text):
        return "contains a control character other than newline"
    return None


def _text_problem(text: str) -> str | None:
    if not isinstance(text, str) or not text.endswith("\n"):
        return "the note text does not end with a newline"
    return _characters_problem(text)


def _line_problem(line: str, what: str) -> str | None:
    if not isinstance(line, str) or not line:
        return f"the {what} line is empty"
    if any(ord(char) < 0x20 for char in line):
        return f"the {what} line contains a control character"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return f"the {what} line is not valid UTF-8"
    return None


def _size_problem(size: int) -> str | None:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _MAX_TREE_SIZE:
        return "the tree size is not an integer between 0 and 2^64 - 1"
    return None


def _root_problem(root_hash: bytes) -> str | None:
    if not isinstance(root_hash, bytes) or len(root_hash) != HASH_SIZE:
        return f"the root hash is not {HASH_SIZE} bytes"
    return None


def _extensions_problem(extensions: tuple[str, ...]) -> str | None:
    # c2sp.org/tlog-checkpoint "Note text" 4: extension lines, if any, MUST be non-empty.
    if not isinstance(extensions, tuple):
        return "the extension lines are not a tuple"
    for number, line in enumerate(extensions, start=1):
        problem = _line_problem(line, f"extension {number}")
        if problem:
            return problem
    return None


__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "SIGNATURE_LINE_PREFIX",
    "Checkpoint",
    "NoteVerifier",
    "format_vkey",
    "key_id",
    "open_note",
    "parse_vkey",
    "sign_note",
]
