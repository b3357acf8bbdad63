"""Signing keys: one active key per name, encrypted at rest, and a public keyring of all of them.

Example::

    >>> store = KeyStore(Path("var/keys"), passphrase=b"correct horse battery staple")
    >>> key, created = store.load_or_create("onceonly.example/120114", suite="sm2-sm3")
    >>> key
    SigningKey(name='onceonly.example/120114', suite='sm2-sm3', key_id='1f0c4e2a')
    >>> open_note(key.sign_note("hello\\n"), store.keyring().verifiers())
    'hello\\n'
    >>> new = store.rotate("onceonly.example/120114")     # the old key keeps verifying
    >>> store.mark_compromised(key.key_id.hex(), since=datetime(2026, 11, 1, tzinfo=UTC))

Files in the store directory (created 0700), per key name::

    <slug>.key.pem   the ACTIVE private key, encrypted with the passphrase (0600, atomic writes):
                     PKCS#8 for ed25519 and ecdsa-p256-sha256, the scrypt + AES-256-GCM
                     envelope of evidence.suites.Sm2Suite for sm2-sm3
    <slug>.vkey      the active key's verifier key text (c2sp.org/signed-note)
    keyring.json     every key ever active, public data only (0644): name, suite, key ID, vkey,
                     created, retired, compromised-since — what verifiers need

Rotation generates a new key, which becomes the active one; the previous key is marked retired
in the keyring and its private key is deleted (it never signs again), while its verifier key
stays in the keyring so everything it signed keeps verifying. :func:`check_key_status` tells
whether a key was usable at a signing time: a signature made at or after a key's
compromised-since time, or after its retirement, raises :class:`VerificationFailed` naming the
key and the date.

The passphrase is never logged nor put in an error message; an empty passphrase is refused,
because we do not store a signing key in clear.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence.note import NoteVerifier, format_vkey, key_id, open_note_signers, parse_vkey, sign_note
from evidence.suites import (
    DEFAULT_SUITE,
    SUITES,
    Suite,
    UnreadableKey,
    get_suite,
    suite_of_private_key,
)
from onceonly.errors import ConfigurationError, EvidenceError, VerificationFailed
from onceonly.files import write_atomic

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from onceonly.settings import Settings

_DIRECTORY_MODE = 0o700
_KEY_FILE_MODE = 0o600
# The verifier key and the keyring are public, but they lie in the 700 keys folder, where a wider
# mode gives nobody anything: 600 like every file of the home (each run's home check,
# onceonly.files.secure_home, tightened them and warned at the run after `onceonly demo`).
_VKEY_FILE_MODE = 0o600
_SLUG_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")
KEYRING_FILE = "keyring.json"
KEYRING_FORMAT = "onceonly-keyring/1"

_log = logging.getLogger(__name__)


class SigningKey:
    """A named note-signing key of one suite. Its ``repr`` and ``str`` never show key material."""

    __slots__ = ("_name", "_private_key", "_public_key_raw", "_suite")

    def __init__(self, name: str, private_key: Any, suite: str | None = None) -> None:
        found = suite_of_private_key(private_key)
        if found is None or (suite is not None and found.name != suite):
            wanted = suite or "any signature suite"
            raise EvidenceError(f"key {name!r}: a {type(private_key).__name__} is not a key of {wanted}")
        self._suite: Suite = found
        self._name = name
        self._private_key = private_key
        self._public_key_raw = found.public_key(private_key)
        try:
            format_vkey(name, self._public_key_raw, found.name)
        except ValueError as exc:  # c2sp.org/signed-note: no spaces or "+" in key names
            raise EvidenceError(f"key name {name!r} cannot sign notes: {exc}") from exc

    @classmethod
    def from_private_key(cls, name: str, private_key: object) -> SigningKey | None:
        """The key ``name`` if ``private_key`` belongs to a signature suite, else ``None``."""
        if suite_of_private_key(private_key) is None:
            return None
        return cls(name, private_key)

    @classmethod
    def generate(cls, name: str, suite: str = DEFAULT_SUITE) -> SigningKey:
        """A fresh random key of ``suite``."""
        try:
            chosen = get_suite(suite)
        except ValueError as exc:
            raise EvidenceError(str(exc)) from None
        return cls(name, chosen.generate())

    @property
    def suite(self) -> str:
        """The signature suite's name (``ed25519``, ``ecdsa-p256-sha256`` or ``sm2-sm3``)."""
        return self._suite.name

    @property
    def name(self) -> str:
        """The key name written in signature lines (c2sp.org/signed-note)."""
        return self._name

    @property
    def public_key_raw(self) -> bytes:
        """The encoded public key (32 bytes for Ed25519, 0x04 || x || y for the EC suites)."""
        return self._public_key_raw

    @property
    def key_id(self) -> bytes:
        """The 4-byte note key ID (c2sp.org/signed-note)."""
        return key_id(self._name, self._public_key_raw, self._suite.signature_type)

    @property
    def vkey(self) -> str:
        """The verifier key text, ``<name>+<key id>+<base64(type || key)>``."""
        return format_vkey(self._name, self._public_key_raw, self._suite.name)

    @property
    def verifier(self) -> NoteVerifier:
        """The :class:`NoteVerifier` of this key."""
        return parse_vkey(self.vkey)

    def sign(self, message: bytes) -> bytes:
        """The raw signature of ``message`` in this key's suite (no key ID in front)."""
        return self._suite.sign(self._private_key, message)

    def sign_note(self, text: str) -> str:
        """Sign ``text`` (ending in a newline) as a signed note."""
        return sign_note(text, self._name, self._private_key, public_key=self._public_key_raw)

    def to_encrypted_pem(self, passphrase: bytes) -> bytes:
        """The private key encrypted with ``passphrase`` (PKCS#8, or the SM2 envelope)."""
        _check_passphrase(passphrase)
        return self._suite.encrypt_private_key(self._private_key, passphrase)

    def __repr__(self) -> str:
        return f"SigningKey(name={self._name!r}, suite={self.suite!r}, key_id={self.key_id.hex()!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write the private key in clear wherever the pickle goes.
        raise TypeError("a SigningKey cannot be pickled; store it with KeyStore")


# ----------------------------------------------------------------------------- keyring


@dataclass(frozen=True)
class KeyRecord:
    """One key of the keyring: public facts only."""

    name: str
    suite: str
    key_id: str  # 8 lower-case hex digits
    vkey: str
    created: dt.datetime
    retired: dt.datetime | None = None
    compromised_since: dt.datetime | None = None

    @property
    def status(self) -> str:
        """``active``, ``retired`` or ``compromised``."""
        if self.compromised_since is not None:
            return "compromised"
        return "retired" if self.retired is not None else "active"

    def to_json(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "suite": self.suite,
            "key_id": self.key_id,
            "vkey": self.vkey,
            "created": _iso(self.created),
            "retired": _iso(self.retired),
            "compromised_since": _iso(self.compromised_since),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRecord:
        """Parse one keyring entry; the vkey must match the name, suite and key ID given."""
        try:
            verifier = parse_vkey(data["vkey"])
            created = _parse_time(data["created"])
            if created is None:
                raise ValueError("no creation time")
            record = cls(
                name=data["name"],
                suite=data["suite"],
                key_id=data["key_id"],
                vkey=data["vkey"],
                created=created,
                retired=_parse_time(data.get("retired")),
                compromised_since=_parse_time(data.get("compromised_since")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationFailed(f"keyring entry {data!r:.80}: {exc}") from None
        if (verifier.name, verifier.key_id.hex(), verifier.suite) != (
            record.name,
            record.key_id,
            record.suite,
        ):
            raise VerificationFailed(f"keyring entry {record.key_id}: its vkey names another key")
        return record


@dataclass(frozen=True)
class Keyring:
    """Every key a deployment ever signed with: what verifiers need to follow rotations."""

    keys: tuple[KeyRecord, ...] = ()

    def find(self, key_id: bytes | str, name: str | None = None) -> KeyRecord | None:
        """The key with this ID (and name, if given)."""
        wanted = key_id.hex() if isinstance(key_id, bytes) else key_id.lower()
        for record in self.keys:
            if record.key_id == wanted and (name is None or record.name == name):
                return record
        return None

    def active(self, name: str) -> KeyRecord | None:
        """The key ``name`` signs with now, if any."""
        for record in reversed(self.keys):
            if record.name == name and record.retired is None:
                return record
        return None

    def verifiers(self, name: str | None = None) -> list[NoteVerifier]:
        """Verifiers of every key (of ``name``), retired and compromised ones included."""
        return [parse_vkey(r.vkey) for r in self.keys if name is None or r.name == name]

    def signer_of(self, note: str, name: str | None = None) -> KeyRecord:
        """The key (of ``name``) whose signature on ``note`` verifies; the first if several.

        Use it to ship the right verifier key with a checkpoint signed before a rotation.
        Raises :class:`VerificationFailed` when no key of the keyring signed the note.
        """
        _, signers = open_note_signers(note, self.verifiers(name))
        record = self.find(signers[0].key_id, signers[0].name)
        assert record is not None  # the verifiers came from this keyring
        return record

    def open_note(
        self, note: str, signed_at: dt.datetime | dt.date | None = None, name: str | None = None
    ) -> tuple[str, KeyRecord]:
        """Verify ``note`` with whichever key of the keyring signed it; return text and key.

        With ``signed_at``, also :func:`check_key_status`: a note signed by a key at or after
        its compromised-since time, or after its retirement, raises :class:`VerificationFailed`.
        Without it, a note by a compromised key is refused outright (it may be forged).
        """
        record = self.signer_of(note, name)
        if signed_at is not None:
            check_key_status(record.key_id, signed_at, self, record.name)
        elif record.compromised_since is not None:
            raise VerificationFailed(
                f"key {record.name}+{record.key_id} is compromised since {_iso(record.compromised_since)} "
                "and the signing time is unknown"
            )
        return open_note_signers(note, parse_vkey(record.vkey))[0], record

    def to_json(self) -> dict[str, Any]:
        return {"format": KEYRING_FORMAT, "keys": [record.to_json() for record in self.keys]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Keyring:
        """Parse a keyring made by :meth:`to_json`; raise :class:`VerificationFailed`."""
        if not isinstance(data, dict) or data.get("format") != KEYRING_FORMAT:
            raise VerificationFailed(f"not a keyring: the format is not {KEYRING_FORMAT!r}")
        entries = data.get("keys")
        if not isinstance(entries, list):
            raise VerificationFailed("keyring: 'keys' is not a list")
        return cls(tuple(KeyRecord.from_json(entry) for entry in entries))

    @classmethod
    def load(cls, path: Path) -> Keyring:
        """Read a keyring file (``keyring.json``), or the one in directory ``path``."""
        path = Path(path)
        if path.is_dir():
            path = path / KEYRING_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VerificationFailed(f"no keyring at {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VerificationFailed(f"cannot read the keyring {path}: {exc}") from None
        return cls.from_json(data)


def check_key_status(
    key_id: bytes | str,
    signed_at: dt.datetime | dt.date,
    keyring: Keyring,
    name: str | None = None,
) -> KeyRecord:
    """The keyring's record of the key that signed at ``signed_at``, if it was usable then.

    Raises :class:`VerificationFailed` naming the key and the date when the key is not in
    the keyring, when ``signed_at`` is at or after the key's compromised-since time (a
    signature by a stolen key proves nothing), or after the key was retired (a rotated key
    signs nothing new). ``signed_at`` is an aware datetime, or a date: a date counts as
    compromised on the day of the compromise and as retired only from the day after.
    """
    record = keyring.find(key_id, name)
    shown = key_id.hex() if isinstance(key_id, bytes) else key_id
    if record is None:
        raise VerificationFailed(f"key {name + '+' if name else ''}{shown} is not in the keyring")
    label = f"{record.name}+{record.key_id}"
    if isinstance(signed_at, dt.datetime):
        if signed_at.tzinfo is None:
            raise VerificationFailed("check_key_status needs a timezone-aware signing time")
        compromised = record.compromised_since is not None and signed_at >= record.compromised_since
        # The keyring records times to the second: within the retirement's second is before it.
        after_retired = record.retired is not None and signed_at.replace(microsecond=0) > record.retired
    else:
        compromised = record.compromised_since is not None and signed_at >= record.compromised_since.date()
        after_retired = record.retired is not None and signed_at > record.retired.date()
    if compromised:
        assert record.compromised_since is not None
        raise VerificationFailed(
            f"key {label} is compromised since {_iso(record.compromised_since)}; "
            f"it signed at {signed_at.isoformat()}, on or after that date"
        )
    if after_retired:
        assert record.retired is not None
        raise VerificationFailed(
            f"key {label} was retired at {_iso(record.retired)} but signed at {signed_at.isoformat()}"
        )
    return record


# ----------------------------------------------------------------------------- store


class KeyStore:
    """Named signing keys in one directory, encrypted with one passphrase, plus their keyring."""

    __slots__ = ("_directory", "_passphrase")

    def __init__(self, directory: Path, passphrase: bytes) -> None:
        _check_passphrase(passphrase)
        self._directory = Path(directory)
        self._passphrase = passphrase

    @property
    def directory(self) -> Path:
        """Where the key files live."""
        return self._directory

    @property
    def keyring_path(self) -> Path:
        """The public keyring file."""
        return self._directory / KEYRING_FILE

    def key_path(self, name: str) -> Path:
        """The encrypted private-key file of the active key ``name``."""
        return self._directory / f"{_slug(name)}.key.pem"

    def vkey_path(self, name: str) -> Path:
        """The public verifier-key file of the active key ``name``."""
        return verifier_key_path(self._directory, name)

    def load_or_create(self, name: str, suite: str | None = None) -> tuple[SigningKey, bool]:
        """The active key ``name``, generated and stored now if missing; the bool says it was created.

        ``suite`` (default ``ed25519``) is the suite of a NEW key only: the keyring's active key
        signs whatever its suite (``onceonly keys rotate --suite ...`` chose it). When the two
        differ the key is used all the same and a warning names the fix
        (:func:`suite_mismatch`), so a deployment that rotated to SM2 keeps signing with SM2.
        """
        if self.key_path(name).exists():
            key = self.load(name)
            if suite is not None:
                warning = suite_mismatch(key, suite)
                if warning:
                    _log.warning("%s", warning)
            return key, False
        return self.create(name, suite or DEFAULT_SUITE), True

    def create(self, name: str, suite: str = DEFAULT_SUITE) -> SigningKey:
        """Generate and store a new key; refuse to overwrite an existing one."""
        path = self.key_path(name)
        if path.exists():
            raise EvidenceError(f"{path} already exists; refusing to replace a signing key")
        key = SigningKey.generate(name, suite)
        self._ensure_directory()
        write_atomic(path, key.to_encrypted_pem(self._passphrase), mode=_KEY_FILE_MODE)
        write_atomic(self.vkey_path(name), f"{key.vkey}\n".encode("ascii"), mode=_VKEY_FILE_MODE)
        self._record_active(key, created=_now())
        return key

    def rotate(self, name: str, suite: str | None = None) -> SigningKey:
        """Make a new key (of ``suite``, default the current one's) the active key ``name``.

        The old key is retired: its private key file is replaced, its verifier key stays in
        the keyring so that everything it signed keeps verifying.
        """
        old = self._load(name, refuse_compromised=False)
        new = SigningKey.generate(name, suite or old.suite)
        now = _now()
        # Private key first: if we stop between the two writes, load() finds a key the
        # keyring does not know and records it then (the keyring is derived, the key is not).
        write_atomic(self.key_path(name), new.to_encrypted_pem(self._passphrase), mode=_KEY_FILE_MODE)
        write_atomic(self.vkey_path(name), f"{new.vkey}\n".encode("ascii"), mode=_VKEY_FILE_MODE)
        self._record_active(new, created=now)
        return new

    def load(self, name: str) -> SigningKey:
        """Decrypt the active key ``name``; raise ``EvidenceError`` if missing or unusable.

        A key marked compromised is refused: rotate first (``onceonly keys rotate``).
        """
        return self._load(name, refuse_compromised=True)

    def _load(self, name: str, refuse_compromised: bool) -> SigningKey:
        path = self.key_path(name)
        try:
            pem = path.read_bytes()
        except FileNotFoundError as exc:
            raise EvidenceError(f"no signing key {name!r}: {path} does not exist") from exc
        except OSError as exc:
            raise EvidenceError(f"cannot read {path}: {exc.strerror}") from exc
        key = SigningKey(name, _decrypt(pem, self._passphrase, path))
        self._check_vkey_file(name, key)
        record = self.keyring().find(key.key_id, name)
        if record is None:
            created = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(microsecond=0)
            self._record_active(key, created=created)
        elif refuse_compromised and record.compromised_since is not None:
            raise EvidenceError(
                f"the active key {name}+{record.key_id} is marked compromised since "
                f"{_iso(record.compromised_since)}; run `onceonly keys rotate` before signing again"
            )
        return key

    def keyring(self) -> Keyring:
        """The keyring (empty before the first key)."""
        if not self.keyring_path.exists():
            return Keyring()
        try:
            return Keyring.load(self.keyring_path)
        except VerificationFailed as exc:
            raise EvidenceError(str(exc)) from None

    def mark_compromised(self, key_id: str, since: dt.datetime) -> KeyRecord:
        """Record that key ``key_id`` (hex) may be in other hands since ``since``.

        An earlier date than one already recorded wins; a later one is refused (it would
        make signatures count again). Rotate first if the compromised key is the active one.
        """
        if since.tzinfo is None:
            raise EvidenceError("the compromised-since time needs a time zone")
        keyring = self.keyring()
        matches = [r for r in keyring.keys if r.key_id == key_id.lower()]
        if not matches:
            known = ", ".join(r.key_id for r in keyring.keys) or "none"
            raise EvidenceError(f"no key {key_id!r} in {self.keyring_path} (known: {known})")
        if len(matches) > 1:
            raise EvidenceError(f"key ID {key_id} is shared by keys of several names; cannot tell which")
        record = matches[0]
        if record.compromised_since is not None and record.compromised_since <= since:
            return record
        updated = replace(record, compromised_since=since.astimezone(dt.UTC))
        self._write_keyring(Keyring(tuple(updated if r is record else r for r in keyring.keys)))
        return updated

    def _record_active(self, key: SigningKey, created: dt.datetime) -> None:
        records = []
        for record in self.keyring().keys:
            if record.name == key.name and record.retired is None and record.key_id != key.key_id.hex():
                record = replace(record, retired=created)
            records.append(record)
        records.append(
            KeyRecord(name=key.name, suite=key.suite, key_id=key.key_id.hex(), vkey=key.vkey, created=created)
        )
        self._write_keyring(Keyring(tuple(records)))

    def _write_keyring(self, keyring: Keyring) -> None:
        self._ensure_directory()
        text = json.dumps(keyring.to_json(), ensure_ascii=False, indent=2) + "\n"
        write_atomic(self.keyring_path, text.encode("utf-8"), mode=_VKEY_FILE_MODE)

    def _check_vkey_file(self, name: str, key: SigningKey) -> None:
        path = self.vkey_path(name)
        try:
            stored = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            self._ensure_directory()
            write_atomic(path, f"{key.vkey}\n".encode("ascii"), mode=_VKEY_FILE_MODE)
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


@dataclass(frozen=True)
class KeyWarning:
    """An active key past the warning age of the rotation policy, or marked compromised."""

    record: KeyRecord
    kind: str  # expiring | expired | compromised
    expires: dt.datetime
    message: str


def key_warnings(
    keyring: Keyring, *, max_age: dt.timedelta, warn_before: dt.timedelta, now: dt.datetime | None = None
) -> list[KeyWarning]:
    """Active keys that must be rotated soon (or now): the rotation policy's view of the keyring.

    A key is due for rotation at ``created + max_age`` (``ONCEONLY_KEY_MAX_AGE_DAYS``); from
    ``warn_before`` earlier it is ``expiring``, after it ``expired``; an active key marked
    compromised is ``compromised`` whatever its age. Retired keys only verify: never warned of.
    """
    now = now or _now()
    out = []
    for record in keyring.keys:
        if record.retired is not None and record.compromised_since is None:
            continue
        label = f"{record.name}+{record.key_id}"
        expires = record.created + max_age
        if record.compromised_since is not None:
            if record.retired is None:
                out.append(
                    KeyWarning(
                        record,
                        "compromised",
                        expires,
                        f"signing key {label} is marked compromised since {_iso(record.compromised_since)} "
                        "and is still the active key: run `onceonly keys rotate`",
                    )
                )
            continue
        if now >= expires:
            kind, when = "expired", f"was due for rotation on {expires:%Y-%m-%d}"
        elif now >= expires - warn_before:
            days = (expires - now).days
            kind, when = "expiring", f"is due for rotation on {expires:%Y-%m-%d} (in {days} days)"
        else:
            continue
        out.append(
            KeyWarning(
                record,
                kind,
                expires,
                f"signing key {label}, created {record.created:%Y-%m-%d}, {when}: run `onceonly keys rotate`",
            )
        )
    return out


def suite_mismatch(active: SigningKey, configured: str) -> str | None:
    """What to say when the active key's suite is not the configured one (None when it is)."""
    if active.suite == configured:
        return None
    return (
        f"the active signing key {active.name}+{active.key_id.hex()} is {active.suite} (the keyring "
        f"decides which key signs) but ONCEONLY_SIGNATURE_SUITE is {configured}, the suite of new "
        f"keys: set ONCEONLY_SIGNATURE_SUITE={active.suite} to keep {active.suite} at the next "
        f"rotation, or run `onceonly keys rotate --suite {configured}` to sign with {configured} now"
    )


def open_key_store(settings: Settings) -> KeyStore:
    """The deployment's key store, with the passphrase from the settings or a Prefect Secret.

    ``ONCEONLY_KEY_PASSPHRASE`` wins; otherwise ``ONCEONLY_KEY_PASSPHRASE_SECRET`` names a
    Prefect Secret block holding it.
    """
    passphrase = settings.key_passphrase.get_secret_value() if settings.key_passphrase else ""
    if not passphrase and settings.key_passphrase_secret:
        passphrase = _prefect_secret(settings.key_passphrase_secret)
    if not passphrase:
        raise EvidenceError(
            "ONCEONLY_KEY_PASSPHRASE is not set (nor ONCEONLY_KEY_PASSPHRASE_SECRET naming a Prefect "
            "Secret block): the signing key is stored encrypted and needs it"
        )
    return KeyStore(settings.keys_dir, passphrase.encode("utf-8"))


def _prefect_secret(block: str) -> str:
    from prefect.blocks.system import Secret

    try:
        secret = Secret.load(block, _sync=True)  # type: ignore[call-arg]
        value = secret.get()  # type: ignore[union-attr]
    except ValueError:
        raise EvidenceError(f"no Prefect Secret block {block!r} (the key passphrase)") from None
    except Exception as exc:  # the Prefect API itself may be unreachable
        raise EvidenceError(
            f"could not ask Prefect for Secret block {block!r} (the key passphrase): {type(exc).__name__}"
        ) from None
    return str(value)


def _decrypt(pem: bytes, passphrase: bytes, path: Path) -> Any:
    """The private key of a key file, read by the first suite whose format it is."""
    suite = next((s for s in SUITES.values() if s.reads_private_key(pem)), None)
    if suite is None:
        labels = sorted({label for s in SUITES.values() for label in s.pem_labels})
        raise EvidenceError(
            f"{path} is not a private-key file any signature suite reads (PEM labels: {', '.join(labels)})"
        )
    try:
        private_key = suite.decrypt_private_key(pem, passphrase)
    except UnreadableKey as exc:
        raise EvidenceError(f"cannot read {path}: {exc}") from None
    # Suites may share a format (PKCS#8): the key's type decides whose it is.
    if suite_of_private_key(private_key) is None:
        kind = type(private_key).__name__
        raise EvidenceError(f"{path} holds a key of type {kind}, which no signature suite uses")
    return private_key


def _check_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes):
        raise EvidenceError("the key passphrase must be bytes")
    if not passphrase:
        raise EvidenceError("the key passphrase is empty; refusing to store a signing key in clear")


def verifier_key_path(directory: Path, name: str) -> Path:
    """Where the active verifier key of ``name`` is published (no passphrase needed to read it)."""
    return Path(directory) / f"{_slug(name)}.vkey"


def log_verifiers(settings: Settings) -> list[NoteVerifier]:
    """The verifiers of the district log's keys, rotated ones included: the keyring's, else the
    active key's published verifier file (a store from before keyrings). No passphrase needed."""
    keyring = Path(settings.keys_dir) / KEYRING_FILE
    if keyring.exists():
        verifiers = Keyring.load(keyring).verifiers(settings.log_origin)
        if verifiers:
            return verifiers
    vkey_file = verifier_key_path(settings.keys_dir, settings.log_origin)
    if not vkey_file.exists():
        raise ConfigurationError(
            f"no verifier key for {settings.log_origin} in {settings.keys_dir}: is ONCEONLY_HOME right?"
        )
    return [parse_vkey(vkey_file.read_text(encoding="utf-8").strip())]


def bundle_vkeys(settings: Settings, conn: Connection) -> list[str]:
    """The verifier keys a proof bundle exported now ships: every key of the keyring for the
    log (rotated ones included), the one that signed the newest checkpoint first — a bundle
    exported after ``keys rotate`` and before the next checkpoint ships the retired key that
    signed it; else the active key's verifier file (a store from before keyrings)."""
    from evidence.log import latest_checkpoint

    keyring_file = Path(settings.keys_dir) / KEYRING_FILE
    if keyring_file.exists():
        keyring = Keyring.load(settings.keys_dir)
        vkeys = [r.vkey for r in keyring.keys if r.name == settings.log_origin]
        if vkeys:
            head = latest_checkpoint(conn)
            if head is None:
                return vkeys
            try:
                signer = keyring.signer_of(head[1], settings.log_origin).vkey
            except VerificationFailed as exc:
                raise EvidenceError(
                    f"the newest checkpoint (size {head[0]}) is signed by no key of the keyring in "
                    f"{settings.keys_dir}: {exc}"
                ) from exc
            return [signer, *(v for v in vkeys if v != signer)]
    vkey_file = verifier_key_path(settings.keys_dir, settings.log_origin)
    if not vkey_file.exists():
        raise ConfigurationError(f"no verifier key at {vkey_file}: is ONCEONLY_HOME ({settings.home}) right?")
    return [vkey_file.read_text(encoding="utf-8").strip()]


def parse_since(text: str) -> dt.datetime:
    """``YYYY-MM-DD`` (00:00 UTC that day) or an ISO 8601 time with zone, as an aware datetime."""
    try:
        if len(text) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise EvidenceError(f"{text!r} is not a date (YYYY-MM-DD) nor an ISO 8601 time") from None
    if value.tzinfo is None:
        raise EvidenceError(f"{text!r} has no time zone; add Z or +08:00")
    return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no zone")
    return parsed


def _slug(name: str) -> str:
    slug = _SLUG_UNSAFE_RE.sub("_", name).strip("._")
    if not slug:
        raise EvidenceError(f"key name {name!r} gives no usable file name")
    return slug


__all__ = [
    "KEYRING_FILE",
    "SUITES",
    "KeyRecord",
    "KeyStore",
    "KeyWarning",
    "Keyring",
    "SigningKey",
    "bundle_vkeys",
    "check_key_status",
    "key_warnings",
    "log_verifiers",
    "open_key_store",
    "parse_since",
    "suite_mismatch",
    "verifier_key_path",
]
