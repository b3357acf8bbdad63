"""The log's signing key, kept encrypted at rest.

Example::

    >>> store = KeyStore(Path("var/keys"), passphrase=b"correct horse battery staple")
    >>> key, created = store.load_or_create("onceonly.example/120114")
    >>> key
    SigningKey(name='onceonly.example/120114', suite='ed25519', key_id='1f0c4e2a')
    >>> open_note(key.sign_note("hello\\n"), parse_vkey(key.vkey))
    'hello\\n'

Files in the store directory (created 0700), per key name::

    <slug>.key.pem   PKCS#8 PEM, encrypted with the passphrase (0600, written atomically)
    <slug>.vkey      the public verifier key text (c2sp.org/signed-note), for verifiers

The passphrase is never logged nor put in an error message; an empty passphrase is refused,
because we do not store a signing key in clear.

Only the ``ed25519`` suite exists today. A suite is a name (``SigningKey.suite``) and the
private-key type stored under it; ECDSA P-256 or SM2 would add a ``SigningKey`` subclass and
an entry in ``SUITES``, and the PKCS#8 file already says which algorithm it holds.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import ClassVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.note import format_vkey, key_id, sign_note
from onceonly.errors import EvidenceError

_DIRECTORY_MODE = 0o700
_KEY_FILE_MODE = 0o600
_VKEY_FILE_MODE = 0o644
_SLUG_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")


class SigningKey:
    """A named Ed25519 note-signing key. Its ``repr`` and ``str`` never show key material."""

    suite: ClassVar[str] = "ed25519"

    __slots__ = ("_name", "_private_key", "_public_key_raw")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise EvidenceError(f"key {name!r}: suite {self.suite} needs an Ed25519 private key")
        self._name = name
        self._private_key = private_key
        self._public_key_raw = private_key.public_key().public_bytes_raw()
        try:
            format_vkey(name, self._public_key_raw)
        except ValueError as exc:  # c2sp.org/signed-note: no spaces or "+" in key names
            raise EvidenceError(f"key name {name!r} cannot sign notes: {exc}") from exc

    @classmethod
    def from_private_key(cls, name: str, private_key: object) -> SigningKey | None:
        """The key ``name`` if ``private_key`` belongs to this suite, else ``None``."""
        if isinstance(private_key, Ed25519PrivateKey):
            return cls(name, private_key)
        return None

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        """A fresh random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def name(self) -> str:
        """The key name written in signature lines (c2sp.org/signed-note)."""
        return self._name

    @property
    def public_key_raw(self) -> bytes:
        """The 32-byte Ed25519 public key (RFC 8032 §5.1.5)."""
        return self._public_key_raw

    @property
    def key_id(self) -> bytes:
        """The 4-byte note key ID (c2sp.org/signed-note)."""
        return key_id(self._name, self._public_key_raw)

    @property
    def vkey(self) -> str:
        """The verifier key text, ``<name>+<key id>+<base64 key>``."""
        return format_vkey(self._name, self._public_key_raw)

    def sign_note(self, text: str) -> str:
        """Sign ``text`` (ending in a newline) as a signed note."""
        return sign_note(text, self._name, self._private_key)

    def to_encrypted_pem(self, passphrase: bytes) -> bytes:
        """PKCS#8 PEM of the private key, encrypted with ``passphrase``."""
        _check_passphrase(passphrase)
        return self._private_key.private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=serialization.BestAvailableEncryption(passphrase),
        )

    def __repr__(self) -> str:
        return f"SigningKey(name={self._name!r}, suite={self.suite!r}, key_id={self.key_id.hex()!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write the private key in clear wherever the pickle goes.
        raise TypeError("a SigningKey cannot be pickled; store it with KeyStore")


# Suite name -> SigningKey class. The loader picks the class whose private-key type matches.
SUITES: dict[str, type[SigningKey]] = {SigningKey.suite: SigningKey}


class KeyStore:
    """Named signing keys in one directory, encrypted with one passphrase."""

    __slots__ = ("_directory", "_passphrase")

    def __init__(self, directory: Path, passphrase: bytes) -> None:
        _check_passphrase(passphrase)
        self._directory = Path(directory)
        self._passphrase = passphrase

    @property
    def directory(self) -> Path:
        """Where the key files live."""
        return self._directory

    def key_path(self, name: str) -> Path:
        """The encrypted private-key file of key ``name``."""
        return self._directory / f"{_slug(name)}.key.pem"

    def vkey_path(self, name: str) -> Path:
        """The public verifier-key file of key ``name``."""
        return verifier_key_path(self._directory, name)

    def load_or_create(self, name: str, suite: str = "ed25519") -> tuple[SigningKey, bool]:
        """The key ``name``, generated and stored now if missing; the bool says it was created."""
        if self.key_path(name).exists():
            return self.load(name), False
        return self.create(name, suite), True

    def create(self, name: str, suite: str = "ed25519") -> SigningKey:
        """Generate and store a new key; refuse to overwrite an existing one."""
        if suite not in SUITES:
            known = ", ".join(sorted(SUITES))
            raise EvidenceError(f"unknown signature suite {suite!r}; known suites: {known}")
        path = self.key_path(name)
        if path.exists():
            raise EvidenceError(f"{path} already exists; refusing to replace a signing key")
        key = SUITES[suite].generate(name)
        self._ensure_directory()
        _write_atomically(path, key.to_encrypted_pem(self._passphrase), _KEY_FILE_MODE)
        _write_atomically(self.vkey_path(name), f"{key.vkey}\n".encode("ascii"), _VKEY_FILE_MODE)
        return key

    def load(self, name: str) -> SigningKey:
        """Decrypt the stored key ``name``; raise ``EvidenceError`` if missing or unusable."""
        path = self.key_path(name)
        try:
            pem = path.read_bytes()
        except FileNotFoundError as exc:
            raise EvidenceError(f"no signing key {name!r}: {path} does not exist") from exc
        except OSError as exc:
            raise EvidenceError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            private_key = serialization.load_pem_private_key(pem, password=self._passphrase)
        except TypeError as exc:
            # cryptography raises TypeError when a passphrase is given for a key stored in clear.
            raise EvidenceError(f"{path} is not encrypted; refusing a signing key stored in clear") from exc
        except ValueError:
            # The message of the library error may quote the input; never chain it into ours.
            raise EvidenceError(
                f"cannot decrypt {path}: the passphrase is wrong (or the file is damaged)"
            ) from None
        key = _signing_key_for(name, private_key, path)
        self._check_vkey_file(name, key)
        return key

    def _check_vkey_file(self, name: str, key: SigningKey) -> None:
        path = self.vkey_path(name)
        try:
            stored = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            self._ensure_directory()
            _write_atomically(path, f"{key.vkey}\n".encode("ascii"), _VKEY_FILE_MODE)
            return
        except (OSError, UnicodeDecodeError) as exc:
            raise EvidenceError(f"cannot read {path}: {exc}") from exc
        if stored != key.vkey:
            raise EvidenceError(
                f"{path} does not match the private key of {name!r} (or was written for another name)"
            )

    def _ensure_directory(self) -> None:
        if not self._directory.exists():
            self._directory.mkdir(parents=True, mode=_DIRECTORY_MODE)
            os.chmod(self._directory, _DIRECTORY_MODE)  # mkdir's mode is filtered by the umask

    def __repr__(self) -> str:
        return f"KeyStore(directory={str(self._directory)!r})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a KeyStore holds a passphrase and cannot be pickled")


def _signing_key_for(name: str, private_key: object, path: Path) -> SigningKey:
    for cls in SUITES.values():
        key = cls.from_private_key(name, private_key)
        if key is not None:
            return key
    kind = type(private_key).__name__
    raise EvidenceError(f"{path} holds a key of type {kind}, which no signature suite uses")


def _check_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes):
        raise EvidenceError("the key passphrase must be bytes")
    if not passphrase:
        raise EvidenceError("the key passphrase is empty; refusing to store a signing key in clear")


def verifier_key_path(directory: Path, name: str) -> Path:
    """Where the public verifier key of ``name`` is published (no passphrase needed to read it)."""
    return Path(directory) / f"{_slug(name)}.vkey"


def _slug(name: str) -> str:
    slug = _SLUG_UNSAFE_RE.sub("_", name).strip("._")
    if not slug:
        raise EvidenceError(f"key name {name!r} gives no usable file name")
    return slug


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and os.replace."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


__all__ = [
    "SUITES",
    "KeyStore",
    "SigningKey",
    "verifier_key_path",
]
