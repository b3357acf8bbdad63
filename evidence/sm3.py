"""SM3, the Chinese cryptographic hash (GB/T 32905-2016, GM/T 0004-2012).

Example::

    >>> sm3(b"abc").hex()
    '66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0'

:func:`sm3` uses OpenSSL's SM3 through ``hashlib`` when the local OpenSSL provides it and
falls back to :func:`sm3_pure`, a small pure-Python implementation of the standard, so that a
verifier on a machine without SM3 in OpenSSL still works. Both are tested against the
standard's examples.
"""

from __future__ import annotations

import hashlib
import struct

DIGEST_SIZE = 32

# GB/T 32905-2016 §4.1 initial value IV.
_IV = (0x7380166F, 0x4914B2B9, 0x172442D7, 0xDA8A0600, 0xA96F30BC, 0x163138AA, 0xE38DEE4D, 0xB0FB0E4E)
_MASK = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    n %= 32
    return ((x << n) | (x >> (32 - n))) & _MASK


def _p0(x: int) -> int:
    return x ^ _rotl(x, 9) ^ _rotl(x, 17)


def _p1(x: int) -> int:
    return x ^ _rotl(x, 15) ^ _rotl(x, 23)


# GB/T 32905-2016 §4.2 constants T_j, pre-rotated by j (§5.3.3: SS1 uses T_j <<< j).
_T_ROTATED = tuple(_rotl(0x79CC4519 if j < 16 else 0x7A879D8A, j) for j in range(64))


def _compress(v: tuple[int, ...], block: bytes) -> tuple[int, ...]:
    # GB/T 32905-2016 §5.3.2 message expansion.
    w = list(struct.unpack(">16I", block))
    for j in range(16, 68):
        w.append(_p1(w[j - 16] ^ w[j - 9] ^ _rotl(w[j - 3], 15)) ^ _rotl(w[j - 13], 7) ^ w[j - 6])
    w1 = [w[j] ^ w[j + 4] for j in range(64)]
    # §5.3.3 compression function CF.
    a, b, c, d, e, f, g, h = v
    for j in range(64):
        a12 = _rotl(a, 12)
        ss1 = _rotl((a12 + e + _T_ROTATED[j]) & _MASK, 7)
        ss2 = ss1 ^ a12
        if j < 16:
            ff = a ^ b ^ c
            gg = e ^ f ^ g
        else:
            ff = (a & b) | (a & c) | (b & c)
            gg = (e & f) | (~e & g)
        tt1 = (ff + d + ss2 + w1[j]) & _MASK
        tt2 = (gg + h + ss1 + w[j]) & _MASK
        d, c, b, a = c, _rotl(b, 9), a, tt1
        h, g, f, e = g, _rotl(f, 19), e, _p0(tt2)
    return tuple(x ^ y for x, y in zip((a, b, c, d, e, f, g, h), v, strict=True))


def sm3_pure(data: bytes) -> bytes:
    """SM3 of ``data`` computed in Python (GB/T 32905-2016 §5)."""
    # §5.2 padding: 1 bit, zeros to 448 mod 512, then the bit length as 64 bits.
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack(">Q", len(data) * 8)
    v: tuple[int, ...] = _IV
    for offset in range(0, len(padded), 64):
        v = _compress(v, padded[offset : offset + 64])
    return struct.pack(">8I", *v)


def openssl_has_sm3() -> bool:
    """True when ``hashlib`` (OpenSSL) provides SM3 here."""
    try:
        hashlib.new("sm3")
    except ValueError:
        return False
    return True


_HAS_OPENSSL_SM3 = openssl_has_sm3()


def sm3(data: bytes) -> bytes:
    """SM3 of ``data``: OpenSSL's when available, else :func:`sm3_pure` (same result)."""
    if _HAS_OPENSSL_SM3:
        return hashlib.new("sm3", data).digest()
    return sm3_pure(data)


__all__ = ["DIGEST_SIZE", "openssl_has_sm3", "sm3", "sm3_pure"]
