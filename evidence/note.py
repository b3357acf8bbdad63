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

Every suite of :mod:`evidence.suites` signs notes: Ed25519 with signature type 0x01 exactly as
c2sp.org/signed-note specifies, ECDSA P-256 and SM2 with type ``0xff || SHA-256(suite name)[:4]``
(the 0xff type is for algorithms without an assigned byte). The key ID is always
``SHA-256(name || 0x0A || type || public key)[:4]`` and the vkey ``<name>+<hex key ID>+
<base64(type || public key)>``; a signature line carries ``base64(key ID || signature)``.

Where the specifications leave room we are strict, because we only read notes we wrote:
base64 must be canonical (``encode(decode(s)) == s``) and hex key IDs lower case, so that
changing any one character of a note or key is always detected. The one allowance is for a
note a person passes on (a checkpoint given to ``--consistency-from``): :func:`note_as_given`
restores the final newline that ``$(...)`` drops, or removes the one ``jq -r`` or an editor
adds, since a signature covers the text before the signature lines, not that newline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from evidence.merkle import HASH_SIZE
from evidence.suites import DEFAULT_SUITE, SUITES, get_suite, suite_of_private_key, suite_of_type
from onceonly.errors import VerificationFailed

# c2sp.org/signed-note "Signature types": 0x01 is Ed25519 over the note text.
ALG_ED25519 = 0x01
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


def key_id(name: str, public_key: bytes, alg: int | bytes = ALG_ED25519) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || type || public key)[:4] (c2sp.org/signed-note).

    ``alg`` is the signature type: a byte value (0x01 for Ed25519) or the bytes of a longer
    type such as ``0xff || identifier`` (see :mod:`evidence.suites`).
    """
    kind = bytes([alg]) if isinstance(alg, int) else alg
    return hashlib.sha256(name.encode("utf-8") + b"\n" + kind + public_key).digest()[:KEY_ID_SIZE]


def format_vkey(name: str, public_key_raw: bytes, suite: str = DEFAULT_SUITE) -> str:
    """The verifier key ``<name>+<hex key ID>+<base64(signature type || public key)>``.

    For Ed25519 this is the text form of golang.org/x/mod/sumdb/note ``NewVerifier`` keys;
    other suites put their 0xff type (:mod:`evidence.suites`) where Ed25519 puts 0x01.
    """
    problem = _name_problem(name)
    if problem:
        raise ValueError(problem)
    chosen = get_suite(suite)
    if len(public_key_raw) != chosen.public_key_size:
        raise ValueError(f"a {chosen.name} public key is {chosen.public_key_size} bytes")
    encoded = base64.b64encode(chosen.signature_type + public_key_raw).decode("ascii")
    return f"{name}+{key_id(name, public_key_raw, chosen.signature_type).hex()}+{encoded}"


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted note key: its name, 4-byte key ID, encoded public key and signature suite."""

    name: str
    key_id: bytes
    public_key: bytes
    suite: str = field(default=DEFAULT_SUITE)

    @property
    def vkey(self) -> str:
        """The verifier key text this verifier was parsed from."""
        return format_vkey(self.name, self.public_key, self.suite)

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`VerificationFailed` unless ``signature`` is this key's over ``message``."""
        try:
            get_suite(self.suite).verify(self.public_key, message, signature)
        except (VerificationFailed, ValueError) as exc:
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
    suite = suite_of_type(raw) if raw else None
    if suite is None:
        known = ", ".join(f"{s.name} ({s.signature_type.hex()})" for s in SUITES.values())
        raise VerificationFailed(f"public key: unknown signature algorithm (known: {known})")
    public_key = raw[len(suite.signature_type) :]
    if len(public_key) != suite.public_key_size:
        raise VerificationFailed(f"public key: a {suite.name} key is {suite.public_key_size} bytes")
    expected = key_id(name, public_key, suite.signature_type)
    if bytes.fromhex(id_hex) != expected:
        raise VerificationFailed("public key: the key id does not match the name and key")
    try:
        suite.check_public_key(public_key)
    except ValueError as exc:
        raise VerificationFailed(f"public key: not a valid {suite.name} key") from exc
    return NoteVerifier(name=name, key_id=expected, public_key=public_key, suite=suite.name)


def sign_note(text: str, name: str, private_key: Any, *, public_key: bytes | None = None) -> str:
    """Sign ``text`` (which must end in a newline) as key ``name``; return the signed note.

    ``private_key`` is a private key of any suite (:mod:`evidence.suites`): an Ed25519 key
    signs with type 0x01 as golang.org/x/mod/sumdb/note does, the others with their 0xff type.
    c2sp.org/signed-note "Ed25519 signatures": the signature is over the UTF-8 note text,
    including its final newline but not the blank line that follows it; every suite signs
    those same bytes. ``public_key``: the key's encoded public key, if the caller keeps it
    (deriving it again is a scalar multiplication for every note; ``evidence.keys.SigningKey``).
    """
    problem = _text_problem(text) or _name_problem(name)
    if problem:
        raise ValueError(f"cannot sign: {problem}")
    suite = suite_of_private_key(private_key)
    if suite is None:
        raise ValueError(f"cannot sign: a {type(private_key).__name__} belongs to no signature suite")
    message = text.encode("utf-8")
    kid = key_id(name, public_key or suite.public_key(private_key), suite.signature_type)
    signature = base64.b64encode(kid + suite.sign(private_key, message)).decode("ascii")
    return f"{text}\n{SIGNATURE_LINE_PREFIX}{name} {signature}\n"


def open_note(note: str, verifier: NoteVerifier | Iterable[NoteVerifier]) -> str:
    """Check ``note`` carries a good signature by ``verifier``; return the note text.

    ``verifier`` may be one key or several (a keyring: every key of a district, rotated ones
    included): the name and key ID on each signature line pick the key that checks it.
    c2sp.org/signed-note "Signatures": signatures by other keys (another name or key ID)
    are ignored; a signature by a known key that does not verify rejects the note.
    """
    return open_note_signers(note, verifier)[0]


def open_note_signers(
    note: str, verifiers: NoteVerifier | Iterable[NoteVerifier]
) -> tuple[str, tuple[NoteVerifier, ...]]:
    """Like :func:`open_note`, also returning the known keys whose signatures verified.

    Pass the signers to :func:`evidence.keys.check_key_status` to learn whether a key was
    retired or compromised when it signed.
    """
    known = [verifiers] if isinstance(verifiers, NoteVerifier) else list(verifiers)
    by_id = {(v.name, v.key_id): v for v in known}
    text, lines = split_note(note)
    message = text.encode("utf-8")
    signers: list[NoteVerifier] = []
    for line in lines:
        verifier = by_id.get((line.name, line.key_id))
        if verifier is not None:
            verifier.verify(message, line.signature)
            if verifier not in signers:
                signers.append(verifier)
    if not signers:
        wanted = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in known) or "no trusted key"
        raise VerificationFailed(f"note has no signature by {wanted}")
    return text, tuple(signers)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a signed note, not verified: key name, 4-byte key ID, signature.

    Cosignatures (c2sp.org/tlog-cosignature) are signature lines too: a witness's line is added
    to the log's checkpoint note, and verifiers that do not know the witness's key ignore it.
    """

    name: str
    key_id: bytes
    signature: bytes

    @property
    def line(self) -> str:
        """The line as written in a note: ``— <name> base64(key ID || signature)`` and a newline."""
        encoded = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{SIGNATURE_LINE_PREFIX}{self.name} {encoded}\n"

    @classmethod
    def parse(cls, line: str, number: int = 1) -> NoteSignature:
        """Parse one signature line (without its newline); raise :class:`VerificationFailed`."""
        return cls(*_parse_signature_line(line, number))


def split_note(note: str) -> tuple[str, tuple[NoteSignature, ...]]:
    """The text of a signed note and its signature lines, unverified.

    Raises :class:`VerificationFailed` when the note is malformed (c2sp.org/signed-note
    "Format"): control characters, not exactly one final newline, no blank line before the
    signatures, a malformed signature line, more than :data:`MAX_SIGNATURES` of them.
    """
    if not isinstance(note, str):
        raise VerificationFailed("malformed note: not a string")
    problem = _characters_problem(note)
    if problem:
        raise VerificationFailed(f"malformed note: {problem}")
    trailing = len(note) - len(note.rstrip("\n"))
    if trailing != 1:
        ends = "no newline" if trailing == 0 else f"{trailing} newlines"
        raise VerificationFailed(
            f"malformed note: it ends with {ends}; a signed note ends with exactly one, after its last "
            "signature line"
        )
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
    return text, tuple(NoteSignature.parse(line, number) for number, line in enumerate(lines, start=1))


def add_signatures(note: str, signatures: Iterable[NoteSignature]) -> str:
    """``note`` with ``signatures`` appended as signature lines (a line it already has is not
    repeated): how cosignatures join the checkpoint they cosign (c2sp.org/tlog-witness)."""
    text, present = split_note(note)
    lines = list(dict.fromkeys([*present, *signatures]))
    if len(lines) > MAX_SIGNATURES:
        raise VerificationFailed(f"a note carries at most {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(line.line for line in lines)


def note_as_given(text: str) -> str:
    """A signed note as a person passes it on, with its one final newline put right.

    ``"$(jq -r .checkpoint b.json)"`` loses the newline that ends the last signature line, and
    ``jq -r .checkpoint b.json > old.txt`` adds one: either is restored here (no signed byte
    changes). Anything else (two extra newlines, Windows line ends) is left for
    :func:`open_note` to refuse with what is wrong.
    """
    if not text.endswith("\n"):
        return text + "\n"
    if text.endswith("\n\n") and not text.endswith("\n\n\n"):
        return text[:-1]
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
    if _NAME_BAD.search(name):
        return "the key name contains a space, a control character or '+'"
    return None


# A Unicode space (``\s``: what str.isspace() is true of), "+" or an ASCII control character;
# a search, not a generator over the characters (every checkpoint's signing checks its name).
_NAME_BAD = re.compile(r"[\s+\x00-\x1f]")
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")  # ASCII control characters but newline
_ANY_CONTROL = re.compile("[\x00-\x1f]")


def _characters_problem(text: str) -> str | None:
    # c2sp.org/signed-note "Format": valid UTF-8, no ASCII control characters but newline.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if _CONTROL.search(text):
        return "contains a control character other than newline"
    return None


def _text_problem(text: str) -> str | None:
    if not isinstance(text, str) or not text.endswith("\n"):
        return "the note text does not end with a newline"
    return _characters_problem(text)


def _line_problem(line: str, what: str) -> str | None:
    if not isinstance(line, str) or not line:
        return f"the {what} line is empty"
    if _ANY_CONTROL.search(line):
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
    "NoteSignature",
    "NoteVerifier",
    "add_signatures",
    "format_vkey",
    "key_id",
    "note_as_given",
    "open_note",
    "open_note_signers",
    "parse_vkey",
    "sign_note",
    "split_note",
]
