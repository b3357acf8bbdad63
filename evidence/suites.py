"""Signature suites: one small interface, three algorithms, chosen per deployment.

Example::

    >>> suite = SUITES["sm2-sm3"]
    >>> private = suite.generate()
    >>> signature = suite.sign(private, b"note text\\n")
    >>> suite.verify(suite.public_key(private), b"note text\\n", signature)  # raises if bad

=====================  ==========================================  =========  ===========
suite                  algorithm                                   public     signature
=====================  ==========================================  =========  ===========
``ed25519`` (default)  Ed25519, RFC 8032                           32 bytes   64 bytes
``ecdsa-p256-sha256``  ECDSA over NIST P-256 with SHA-256          65 bytes   64: r || s
                       (FIPS 186-5; deterministic k, RFC 6979)     (0x04||x||y)
``sm2-sm3``            SM2 with SM3 and Z_A, user ID               65 bytes   64: r || s
                       ``1234567812345678`` (GB/T 32918.2,         (0x04||x||y)
                       GM/T 0003.2, GM/T 0009 §10)
=====================  ==========================================  =========  ===========

Every suite signs the message bytes itself (the suite hashes them). Each suite has a
*signature type*, the bytes that start its verifier key and enter its key ID in signed notes
(c2sp.org/signed-note "Signature types")::

    ed25519             0x01                                  (assigned by c2sp.org/signed-note)
    ecdsa-p256-sha256   0xff || SHA-256("ecdsa-p256-sha256")[:4]  = ff 8e f1 d7 6d
    sm2-sm3             0xff || SHA-256("sm2-sm3")[:4]            = ff 6a 63 00 92

0xff is the type c2sp.org/signed-note reserves for algorithms without an assigned byte,
"followed by a longer identifier that is unlikely to collide"; ours is the first four bytes
of the SHA-256 of the suite name in ASCII. We do not use 0x02 for ECDSA: that type hashes
the DER SPKI into the key ID and belongs to the transparency-dev witness format.

Private keys at rest: ``ed25519`` and ``ecdsa-p256-sha256`` as PKCS#8 encrypted with the
passphrase (``cryptography``'s best available: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC); SM2
keys, which ``cryptography`` cannot serialise, in the envelope of :class:`Sm2Suite`. Each suite
says which private-key files it reads (:meth:`Suite.reads_private_key`) and decrypts them
(:meth:`Suite.decrypt_private_key`), so the key store needs no case per suite.

Suites are registered in one place, the ``onceonly.signature_suites`` entry-point group of
``pyproject.toml`` (name → ``module:SuiteClass``); :data:`SUITES` is built from it, and the
settings accept exactly its names for ``ONCEONLY_SIGNATURE_SUITE``. A suite from another
package registers the same way.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
from abc import ABC, abstractmethod
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from evidence import sm2
from onceonly.errors import VerificationFailed

#: The entry-point group signature suites register in (pyproject.toml).
SUITE_ENTRY_POINTS = "onceonly.signature_suites"


class UnreadableKey(ValueError):
    """A private-key file of a suite's format that cannot be decrypted; the message says why
    (never quoting the file: it may hold key material)."""


def _alt_type(suite_name: str) -> bytes:
    # c2sp.org/signed-note: 0xff, then an identifier unlikely to collide.
    return b"\xff" + hashlib.sha256(suite_name.encode("ascii")).digest()[:4]


class Suite(ABC):
    """A signature algorithm as the log and the certificates use it: raw bytes in and out."""

    name: str
    signature_type: bytes
    public_key_size: int
    signature_size: int
    #: PEM labels of the private-key files this suite writes (and reads back).
    pem_labels: tuple[str, ...]

    @abstractmethod
    def generate(self) -> Any:
        """A fresh private key (an object of this suite's private-key type)."""

    @abstractmethod
    def owns(self, private_key: object) -> bool:
        """True when ``private_key`` is a key of this suite."""

    @abstractmethod
    def public_key(self, private_key: Any) -> bytes:
        """The encoded public key of ``private_key``."""

    @abstractmethod
    def sign(self, private_key: Any, message: bytes) -> bytes:
        """The signature of ``message``."""

    @abstractmethod
    def check_public_key(self, public_key: bytes) -> None:
        """Raise ``ValueError`` unless ``public_key`` is a valid encoded public key."""

    @abstractmethod
    def _verify(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        """Raise ``InvalidSignature``, ``ValueError`` or ``VerificationFailed`` unless valid."""

    @abstractmethod
    def encrypt_private_key(self, private_key: Any, passphrase: bytes) -> bytes:
        """The private key encrypted with ``passphrase``, as PEM text."""

    @abstractmethod
    def decrypt_private_key(self, pem: bytes, passphrase: bytes) -> Any:
        """The private key in ``pem``; :class:`UnreadableKey` saying why when it cannot be read."""

    def reads_private_key(self, pem: bytes) -> bool:
        """True when ``pem`` is a private-key file in a format this suite writes (its PEM label)."""
        first = pem.lstrip().split(b"\n", 1)[0].strip()
        return any(first == f"-----BEGIN {label}-----".encode("ascii") for label in self.pem_labels)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        """Raise :class:`VerificationFailed` unless ``signature`` is valid for ``message``."""
        if len(signature) != self.signature_size:
            raise VerificationFailed(f"{self.name}: a signature is {self.signature_size} bytes")
        try:
            self._verify(public_key, message, signature)
        except (InvalidSignature, ValueError, VerificationFailed) as exc:
            raise VerificationFailed(f"{self.name}: the signature does not verify") from exc

    def __repr__(self) -> str:
        return f"<signature suite {self.name}>"


# RFC 7468 §10, §11: encrypted and clear PKCS#8 (the clear one is read only to refuse it).
_PKCS8_LABELS = ("ENCRYPTED PRIVATE KEY", "PRIVATE KEY")


def _pkcs8(private_key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey, passphrase: bytes) -> bytes:
    # cryptography 50 allows no kdf_rounds for PKCS#8 (only OpenSSH and PKCS#12); this is
    # PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, which OpenSSL reads back.
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def _read_pkcs8(pem: bytes, passphrase: bytes) -> Any:
    """The key of an encrypted PKCS#8 file, of whatever type: the caller asks which suite owns it
    (``ed25519`` and ``ecdsa-p256-sha256`` share the format)."""
    try:
        return serialization.load_pem_private_key(pem, password=passphrase)
    except TypeError:
        # cryptography raises TypeError when a passphrase is given for a key stored in clear.
        raise UnreadableKey("it is not encrypted; refusing a signing key stored in clear") from None
    except ValueError:
        # The message of the library error may quote the input; never chain it into ours.
        raise UnreadableKey("the passphrase is wrong (or the file is damaged)") from None


class Ed25519Suite(Suite):
    name = "ed25519"
    signature_type = b"\x01"
    public_key_size = 32
    signature_size = 64
    pem_labels = _PKCS8_LABELS

    def generate(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.generate()

    def owns(self, private_key: object) -> bool:
        return isinstance(private_key, Ed25519PrivateKey)

    def public_key(self, private_key: Ed25519PrivateKey) -> bytes:
        return private_key.public_key().public_bytes_raw()

    def sign(self, private_key: Ed25519PrivateKey, message: bytes) -> bytes:
        return private_key.sign(message)

    def check_public_key(self, public_key: bytes) -> None:
        if len(public_key) != self.public_key_size:
            raise ValueError(f"an Ed25519 public key is {self.public_key_size} bytes")
        Ed25519PublicKey.from_public_bytes(public_key)

    def _verify(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)

    def encrypt_private_key(self, private_key: Ed25519PrivateKey, passphrase: bytes) -> bytes:
        return _pkcs8(private_key, passphrase)

    def decrypt_private_key(self, pem: bytes, passphrase: bytes) -> Any:
        return _read_pkcs8(pem, passphrase)


class EcdsaP256Suite(Suite):
    name = "ecdsa-p256-sha256"
    signature_type = _alt_type("ecdsa-p256-sha256")
    public_key_size = 65
    signature_size = 64
    pem_labels = _PKCS8_LABELS

    def generate(self) -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def owns(self, private_key: object) -> bool:
        return isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
            private_key.curve, ec.SECP256R1
        )

    def public_key(self, private_key: ec.EllipticCurvePrivateKey) -> bytes:
        return private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def sign(self, private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
        # RFC 6979 deterministic k: no signature depends on the quality of a random source.
        der = private_key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def check_public_key(self, public_key: bytes) -> None:
        if len(public_key) != self.public_key_size or public_key[0] != 0x04:
            raise ValueError("an ECDSA P-256 public key is the uncompressed point 0x04 || x || y, 65 bytes")
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)

    def _verify(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))

    def encrypt_private_key(self, private_key: ec.EllipticCurvePrivateKey, passphrase: bytes) -> bytes:
        return _pkcs8(private_key, passphrase)

    def decrypt_private_key(self, pem: bytes, passphrase: bytes) -> Any:
        return _read_pkcs8(pem, passphrase)


class Sm2Suite(Suite):
    """SM2 with SM3 and the default user ID; keys stored in a documented envelope.

    ``cryptography`` cannot serialise SM2 keys, so the private scalar is kept in this
    equivalent of encrypted PKCS#8 (``SM2_PEM_LABEL`` PEM block around one JSON object)::

        {"format": "onceonly-encrypted-key/1", "suite": "sm2-sm3",
         "kdf": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": <base64, 16 bytes>,
         "cipher": "aes-256-gcm", "nonce": <base64, 12 bytes>,
         "ciphertext": <base64 of AES-256-GCM(key = scrypt(passphrase), the 32-byte d) || tag>}

    The additional authenticated data is ``onceonly-encrypted-key/1 sm2-sm3``. scrypt with
    N = 2^17 (RFC 7914; 128 MiB, about 0.3 s) costs an attacker far more per guess than the
    PKCS#8 default PBKDF2.
    """

    name = "sm2-sm3"
    signature_type = _alt_type("sm2-sm3")
    public_key_size = sm2.PUBLIC_KEY_SIZE
    signature_size = sm2.SIGNATURE_SIZE
    pem_labels = ("ONCEONLY ENCRYPTED SM2 PRIVATE KEY",)
    FORMAT = "onceonly-encrypted-key/1"
    SCRYPT_N = 2**17
    SCRYPT_R = 8
    SCRYPT_P = 1

    def generate(self) -> sm2.Sm2PrivateKey:
        return sm2.Sm2PrivateKey.generate()

    def owns(self, private_key: object) -> bool:
        return isinstance(private_key, sm2.Sm2PrivateKey)

    def public_key(self, private_key: sm2.Sm2PrivateKey) -> bytes:
        return private_key.public_key()

    def sign(self, private_key: sm2.Sm2PrivateKey, message: bytes) -> bytes:
        return private_key.sign(message)

    def check_public_key(self, public_key: bytes) -> None:
        sm2.decode_point(sm2.SM2P256V1, public_key)

    def _verify(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        sm2.verify(public_key, message, signature)

    def encrypt_private_key(self, private_key: sm2.Sm2PrivateKey, passphrase: bytes) -> bytes:
        salt, nonce = os.urandom(16), os.urandom(12)
        header = {
            "format": self.FORMAT,
            "suite": self.name,
            "kdf": "scrypt",
            "n": self.SCRYPT_N,
            "r": self.SCRYPT_R,
            "p": self.SCRYPT_P,
            "salt": base64.b64encode(salt).decode("ascii"),
            "cipher": "aes-256-gcm",
            "nonce": base64.b64encode(nonce).decode("ascii"),
        }
        key = self._kdf(passphrase, salt, self.SCRYPT_N, self.SCRYPT_R, self.SCRYPT_P)
        ciphertext = AESGCM(key).encrypt(nonce, private_key.private_bytes(), self._aad())
        header["ciphertext"] = base64.b64encode(ciphertext).decode("ascii")
        body = base64.encodebytes(json.dumps(header, sort_keys=True).encode("ascii")).decode("ascii")
        return f"-----BEGIN {SM2_PEM_LABEL}-----\n{body}-----END {SM2_PEM_LABEL}-----\n".encode("ascii")

    def decrypt_private_key(self, pem: bytes, passphrase: bytes) -> sm2.Sm2PrivateKey:
        """The key in an envelope made by :meth:`encrypt_private_key`.

        Raises :class:`UnreadableKey` for a wrong passphrase or a damaged file.
        """
        try:
            return self._open_envelope(pem, passphrase)
        except InvalidTag:
            raise UnreadableKey("the passphrase is wrong (or the file is damaged)") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise UnreadableKey("it is not a readable SM2 key envelope (damaged?)") from None

    def _open_envelope(self, pem: bytes, passphrase: bytes) -> sm2.Sm2PrivateKey:
        text = pem.decode("ascii").strip()
        begin, end = f"-----BEGIN {SM2_PEM_LABEL}-----", f"-----END {SM2_PEM_LABEL}-----"
        if not (text.startswith(begin) and text.endswith(end)):
            raise ValueError("not an SM2 key envelope")
        header = json.loads(base64.b64decode(text[len(begin) : -len(end)]))
        if header.get("format") != self.FORMAT or header.get("suite") != self.name:
            raise ValueError("an SM2 key envelope of an unknown format")
        if header.get("kdf") != "scrypt" or header.get("cipher") != "aes-256-gcm":
            raise ValueError("an SM2 key envelope with an unknown KDF or cipher")
        n, r, p = int(header["n"]), int(header["r"]), int(header["p"])
        key = self._kdf(passphrase, base64.b64decode(header["salt"]), n, r, p)
        scalar = AESGCM(key).decrypt(
            base64.b64decode(header["nonce"]), base64.b64decode(header["ciphertext"]), self._aad()
        )
        return sm2.Sm2PrivateKey.from_bytes(scalar)

    def _aad(self) -> bytes:
        return f"{self.FORMAT} {self.name}".encode("ascii")

    @staticmethod
    def _kdf(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
        if n < 2**14:
            raise ValueError("an SM2 key envelope with a too cheap scrypt cost")
        return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


SM2_PEM_LABEL = Sm2Suite.pem_labels[0]
DEFAULT_SUITE = "ed25519"


def _registered_suites() -> dict[str, Suite]:
    """The suites of the ``onceonly.signature_suites`` entry points, the default one first."""
    found: dict[str, Suite] = {}
    for ep in importlib.metadata.entry_points(group=SUITE_ENTRY_POINTS):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Suite)):
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) of {SUITE_ENTRY_POINTS} is not a Suite")
        suite = cls()
        if suite.name != ep.name:
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) registers the suite named {suite.name!r}")
        found[ep.name] = suite
    if DEFAULT_SUITE not in found:
        raise RuntimeError(
            f"no {DEFAULT_SUITE} signature suite registered: is the onceonly package installed "
            "(pip install -e .)?"
        )
    return dict(sorted(found.items(), key=lambda item: (item[0] != DEFAULT_SUITE, item[0])))


SUITES: dict[str, Suite] = _registered_suites()


def get_suite(name: str) -> Suite:
    """The suite called ``name``; ``ValueError`` naming the known suites otherwise."""
    try:
        return SUITES[name]
    except KeyError:
        known = ", ".join(SUITES)
        raise ValueError(f"unknown signature suite {name!r}; known suites: {known}") from None


def suite_of_private_key(private_key: object) -> Suite | None:
    """The suite whose private-key type ``private_key`` is, if any."""
    for suite in SUITES.values():
        if suite.owns(private_key):
            return suite
    return None


def suite_of_type(key_bytes: bytes) -> Suite | None:
    """The suite whose signature type starts ``key_bytes`` (a decoded verifier key), if any."""
    for suite in SUITES.values():
        if key_bytes.startswith(suite.signature_type):
            return suite
    return None


__all__ = [
    "DEFAULT_SUITE",
    "SM2_PEM_LABEL",
    "SUITES",
    "SUITE_ENTRY_POINTS",
    "EcdsaP256Suite",
    "Ed25519Suite",
    "Sm2Suite",
    "Suite",
    "UnreadableKey",
    "get_suite",
    "suite_of_private_key",
    "suite_of_type",
]
