"""Identifiers of e-certificates, in the style of GB/T 36904 (电子证照 标识规范).

Example::

    >>> cid = CertificateId.build("HKB0001", "91350100M000100Y43", 42)
    >>> str(cid)
    '1.2.156.3005.2.HKB0001.91350100M000100Y43.00000042.001.2'
    >>> CertificateId.parse(str(cid)) == cid
    True
    >>> str(cid.with_version(2))
    '1.2.156.3005.2.HKB0001.91350100M000100Y43.00000042.002.Z'

An identifier is the OID arc of Chinese e-certificates followed by five dot-separated parts:
the certificate type code, the issuer's unified social credit code (GB 32100), a serial
number, a three-digit version and one ISO/IEC 7064 MOD 37,36 check character computed over
the four parts before it (without their dots).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contracts.identifiers import is_valid_uscc
from onceonly.errors import VerificationFailed

# GB/T 36904: every e-certificate identifier lives under this OID arc.
CERTIFICATE_ID_PREFIX = "1.2.156.3005.2."
# ISO/IEC 7064 MOD 37,36: the 36 characters, each worth its index.
ISO7064_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_TYPE_CODE_RE = re.compile(r"[0-9A-Z]{4,32}")
_SERIAL_RE = re.compile(r"[0-9]{8,18}")
_VERSION_RE = re.compile(r"[0-9]{3}")
_SERIAL_DIGITS = 8
_MAX_VERSION = 999


class InvalidCertificateId(VerificationFailed, ValueError):
    """An e-certificate identifier is malformed; the message names the part that is wrong.

    It is also a ``ValueError`` so that ``CertificateId.build`` with bad arguments can be
    caught like any other bad argument.
    """


def _iso7064_hybrid(payload: str, alphabet: str) -> str:
    """The ISO/IEC 7064 hybrid system (MOD M+1, M) check character, M = ``len(alphabet)``.

    ISO/IEC 7064 hybrid systems: P starts at M; for each character S = (P + v) mod M,
    with S = M when that is 0, then P = 2·S mod (M + 1); the check value is (M + 1 − P) mod M.
    """
    modulus = len(alphabet)
    product = modulus
    for char in payload:
        value = alphabet.find(char)
        if value < 0:
            raise ValueError(f"character {char!r} is not in the ISO 7064 alphabet")
        total = (product + value) % modulus or modulus
        product = (2 * total) % (modulus + 1)
    return alphabet[(modulus + 1 - product) % modulus]


def iso7064_mod37_36(payload: str) -> str:
    """The ISO/IEC 7064 MOD 37,36 check character of ``payload`` (characters 0-9, A-Z).

    >>> iso7064_mod37_36("HKB000191350100M000100Y4300000042001")
    '2'
    """
    return _iso7064_hybrid(payload, ISO7064_ALPHABET)


@dataclass(frozen=True)
class CertificateId:
    """A parsed, always-valid e-certificate identifier (construction validates every part)."""

    type_code: str
    issuer_uscc: str
    serial: int
    version: int
    check: str

    def __post_init__(self) -> None:
        _check_parts(self.type_code, self.issuer_uscc, self.serial, self.version)
        expected = iso7064_mod37_36(self._payload)
        if self.check != expected:
            raise InvalidCertificateId(
                f"certificate id check character is {_show(self.check)}, expected {expected!r}"
            )

    @classmethod
    def build(cls, type_code: str, issuer_uscc: str, serial: int, version: int = 1) -> CertificateId:
        """A new identifier with its check character computed."""
        _check_parts(type_code, issuer_uscc, serial, version)
        payload = type_code + issuer_uscc + _serial_text(serial) + _version_text(version)
        return cls(type_code, issuer_uscc, serial, version, iso7064_mod37_36(payload))

    @classmethod
    def parse(cls, text: str) -> CertificateId:
        """Parse and validate ``text``; raise :class:`InvalidCertificateId` naming the bad part."""
        if not isinstance(text, str):
            raise InvalidCertificateId("certificate id is not a string")
        if not text.startswith(CERTIFICATE_ID_PREFIX):
            raise InvalidCertificateId(f"certificate id does not start with {CERTIFICATE_ID_PREFIX!r}")
        parts = text[len(CERTIFICATE_ID_PREFIX) :].split(".")
        if len(parts) != 5:
            raise InvalidCertificateId(
                f"certificate id has {len(parts)} parts after the prefix, expected 5 "
                "(type code, issuer USCC, serial, version, check)"
            )
        type_code, issuer_uscc, serial_text, version_text, check = parts
        _check_type_and_issuer(type_code, issuer_uscc)
        if not _SERIAL_RE.fullmatch(serial_text) or _serial_text(int(serial_text)) != serial_text:
            raise InvalidCertificateId(
                f"certificate id serial {_show(serial_text)} is not a zero-padded number of 8 to 18 digits"
            )
        if not _VERSION_RE.fullmatch(version_text):
            raise InvalidCertificateId(f"certificate id version {_show(version_text)} is not 3 digits")
        if len(check) != 1:
            raise InvalidCertificateId(f"certificate id check {_show(check)} is not one character")
        return cls(type_code, issuer_uscc, int(serial_text), int(version_text), check)

    def with_version(self, version: int) -> CertificateId:
        """The identifier of another version of the same certificate."""
        return CertificateId.build(self.type_code, self.issuer_uscc, self.serial, version)

    @property
    def _payload(self) -> str:
        return self.type_code + self.issuer_uscc + _serial_text(self.serial) + _version_text(self.version)

    def __str__(self) -> str:
        return (
            f"{CERTIFICATE_ID_PREFIX}{self.type_code}.{self.issuer_uscc}."
            f"{_serial_text(self.serial)}.{_version_text(self.version)}.{self.check}"
        )


def certificate_ids(
    type_code: str,
    issuer_uscc: str,
    serials: Sequence[int] | np.ndarray[Any, Any],
    versions: Sequence[int] | np.ndarray[Any, Any],
) -> pa.Array:
    """``str(CertificateId.build(type_code, issuer_uscc, s, v))`` for many serials at once.

    The check character runs the ISO 7064 hybrid system over the shared prefix once, then
    over the serial and version digits of every identifier together with NumPy.
    """
    _check_type_and_issuer(type_code, issuer_uscc)
    serial = np.asarray(serials, dtype=np.int64)
    version = np.asarray(versions, dtype=np.int64)
    if serial.shape != version.shape:
        raise ValueError("certificate_ids: as many versions as serials, please")
    if serial.size == 0:
        return pa.array([], pa.string())
    if serial.min() < 0 or serial.max() >= 10**18:
        raise InvalidCertificateId("certificate id serial is not an integer between 0 and 10^18 - 1")
    if version.min() < 1 or version.max() > _MAX_VERSION:
        raise InvalidCertificateId("certificate id version is not between 1 and 999")
    modulus = len(ISO7064_ALPHABET)
    start = modulus
    for char in type_code + issuer_uscc:
        start = (2 * ((start + ISO7064_ALPHABET.index(char)) % modulus or modulus)) % (modulus + 1)
    # Serials of 8 digits, or as many as the largest needs (up to 18): each its own width.
    width = _SERIAL_DIGITS + np.searchsorted(_WIDER, serial, side="right")
    product = np.full(serial.shape, start, dtype=np.intp)
    for position in range(int(width.max()) - 1, 5, -1):  # most significant digit first
        digit = (serial // 10**position) % 10
        product = np.where(position < width, _STEP[product, digit], product)
    # Every serial has its lowest six digits (width >= 8), and every version three digits.
    for block in ((serial // 1000) % 1000, serial % 1000, version):
        product = _STEP3[product, block]
    alphabet = pa.array(list(ISO7064_ALPHABET))
    checks = alphabet.take(pa.array((modulus + 1 - product) % modulus))
    return pc.binary_join_element_wise(
        f"{CERTIFICATE_ID_PREFIX}{type_code}.{issuer_uscc}.",
        pc.utf8_lpad(pa.array(serial).cast(pa.string()), _SERIAL_DIGITS, "0"),
        ".",
        pc.utf8_lpad(pa.array(version).cast(pa.string()), 3, "0"),
        ".",
        checks,
        "",
    )


def _hybrid_steps(modulus: int) -> tuple[np.ndarray, np.ndarray]:
    """ISO/IEC 7064 hybrid system steps over digits as tables: state after one digit, and after
    three (``[state, 0..999]``, hundreds digit first). The state is 1..modulus (index 0 unused
    but defined), so a whole batch steps with one gather per digit or per three digits."""
    state = np.arange(modulus + 1)[:, None]
    digit = np.arange(10)[None, :]
    step = (2 * np.where((state + digit) % modulus == 0, modulus, (state + digit) % modulus)) % (modulus + 1)
    block = np.arange(1000)
    step3 = step[step[step[state, block // 100], (block // 10) % 10], block % 10]
    return step.astype(np.intp), step3.astype(np.intp)


_STEP, _STEP3 = _hybrid_steps(len(ISO7064_ALPHABET))
# Serials from 10**8 on are written wider than _SERIAL_DIGITS, one digit per power of ten.
_WIDER = np.array([10**digits for digits in range(_SERIAL_DIGITS, 18)], dtype=np.int64)


def _show(value: object) -> str:
    """``repr`` cut short, so that a hostile identifier cannot flood a log line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _serial_text(serial: int) -> str:
    return f"{serial:0{_SERIAL_DIGITS}d}"


def _version_text(version: int) -> str:
    return f"{version:03d}"


def _check_parts(type_code: str, issuer_uscc: str, serial: int, version: int) -> None:
    _check_type_and_issuer(type_code, issuer_uscc)
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 <= serial < 10**18:
        raise InvalidCertificateId(
            f"certificate id serial {serial!r} is not an integer between 0 and 10^18 - 1"
        )
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= _MAX_VERSION:
        raise InvalidCertificateId(f"certificate id version {version!r} is not between 1 and 999")


@functools.lru_cache(maxsize=1024)
def _valid_issuer(issuer_uscc: str) -> bool:
    # A district has a handful of issuers; every identifier repeats one of them.
    return is_valid_uscc(issuer_uscc)


def _check_type_and_issuer(type_code: str, issuer_uscc: str) -> None:
    if not isinstance(type_code, str) or not _TYPE_CODE_RE.fullmatch(type_code):
        raise InvalidCertificateId(
            f"certificate id type code {_show(type_code)} is not 4-32 characters of 0-9A-Z"
        )
    # GB 32100-2015: the issuer is identified by its 18-character unified social credit code.
    if not isinstance(issuer_uscc, str) or not _valid_issuer(issuer_uscc):
        raise InvalidCertificateId(
            f"certificate id issuer {_show(issuer_uscc)} is not a valid unified social credit code"
        )


__all__ = [
    "CERTIFICATE_ID_PREFIX",
    "ISO7064_ALPHABET",
    "CertificateId",
    "InvalidCertificateId",
    "certificate_ids",
    "iso7064_mod37_36",
]
