"""SM2 digital signatures with SM3 (GB/T 32918.2-2016, GM/T 0003.2-2012; GM/T 0009-2012).

Example::

    >>> key = Sm2PrivateKey.generate()
    >>> signature = key.sign(b"message digest")           # 64 bytes: r || s
    >>> verify(key.public_key(), b"message digest", signature)   # raises VerificationFailed if bad

Prime-field elliptic-curve arithmetic on Python integers over the recommended curve
``sm2p256v1`` (GB/T 32918.5-2017 / GM/T 0003.5-2012). The signed digest is
``e = SM3(Z_A || M)`` with ``Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)``
(GB/T 32918.2 §5.5) and, unless told otherwise, the default user ID ``1234567812345678`` of
GM/T 0009-2012 §10. Encodings: public key = the uncompressed point ``0x04 || x || y``
(65 bytes), signature = ``r || s`` as two 32-byte big-endian integers (GM/T 0009 ``SM2Signature``
without the DER wrapping).

No maintained Python library signs SM2 with the checks we want (``cryptography`` has SM3 as a
hash only). This module is small on purpose and pinned to the standard's examples in
``tests/unit/evidence/test_sm2.py``. Python integers are not constant-time: signing leaks timing
to a local observer; verification (the common case for townships) handles public data only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from evidence.sm3 import sm3
from onceonly.errors import VerificationFailed

DEFAULT_USER_ID = b"1234567812345678"  # GM/T 0009-2012 §10
PUBLIC_KEY_SIZE = 65
SIGNATURE_SIZE = 64

_Point = tuple[int, int] | None  # affine point; None is the point at infinity


@dataclass(frozen=True)
class Curve:
    """A short Weierstrass curve y² = x³ + ax + b over GF(p) with a base point of order n."""

    name: str
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    @property
    def size(self) -> int:
        """Bytes of one coordinate or scalar."""
        return (self.p.bit_length() + 7) // 8

    def contains(self, point: tuple[int, int]) -> bool:
        x, y = point
        return (
            0 <= x < self.p and 0 <= y < self.p and (y * y - (x * x * x + self.a * x + self.b)) % self.p == 0
        )

    def multiply(self, k: int, point: tuple[int, int]) -> _Point:
        """k·point, by a Montgomery ladder in Jacobian coordinates."""
        r0: tuple[int, int, int] = (1, 1, 0)  # infinity
        r1 = (point[0], point[1], 1)
        for bit in bin(k % self.n)[2:]:
            if bit == "1":
                r0, r1 = self._add(r0, r1), self._double(r1)
            else:
                r0, r1 = self._double(r0), self._add(r0, r1)
        return self._affine(r0)

    def multiply_sum(self, s: int, t: int, point: tuple[int, int]) -> _Point:
        """s·G + t·point for PUBLIC scalars (verification): Shamir's trick, 4-bit windows.

        About three times faster than two ladders, and not uniform in time, which is fine
        for signatures and public keys that everyone may see; secrets use :meth:`multiply`.
        """
        infinity = (1, 1, 0)
        g_table = [infinity, (self.gx, self.gy, 1)]
        p_table = [infinity, (point[0], point[1], 1)]
        for _ in range(14):
            g_table.append(self._add(g_table[-1], g_table[1]))
            p_table.append(self._add(p_table[-1], p_table[1]))
        s, t = s % self.n, t % self.n
        total = infinity
        for shift in range(((max(s, t).bit_length() + 3) // 4) * 4 - 4, -4, -4):
            for _ in range(4):
                total = self._double(total)
            g_digit, p_digit = (s >> shift) & 0xF, (t >> shift) & 0xF
            if g_digit:
                total = self._add(total, g_table[g_digit])
            if p_digit:
                total = self._add(total, p_table[p_digit])
        return self._affine(total)

    def add(self, p1: _Point, p2: _Point) -> _Point:
        """p1 + p2 in affine coordinates."""
        if p1 is None:
            return p2
        if p2 is None:
            return p1
        return self._affine(self._add((p1[0], p1[1], 1), (p2[0], p2[1], 1)))

    def _affine(self, point: tuple[int, int, int]) -> _Point:
        x, y, z = point
        if z == 0:
            return None
        zi = pow(z, -1, self.p)
        zi2 = zi * zi % self.p
        return x * zi2 % self.p, y * zi2 * zi % self.p

    def _double(self, point: tuple[int, int, int]) -> tuple[int, int, int]:
        x, y, z = point
        p = self.p
        if z == 0 or y == 0:
            return (1, 1, 0)
        yy = y * y % p
        s = 4 * x * yy % p
        zz = z * z % p
        m = (3 * x * x + self.a * zz * zz) % p
        x3 = (m * m - 2 * s) % p
        y3 = (m * (s - x3) - 8 * yy * yy) % p
        z3 = 2 * y * z % p
        return x3, y3, z3

    def _add(self, p1: tuple[int, int, int], p2: tuple[int, int, int]) -> tuple[int, int, int]:
        x1, y1, z1 = p1
        x2, y2, z2 = p2
        if z1 == 0:
            return p2
        if z2 == 0:
            return p1
        p = self.p
        z1z1 = z1 * z1 % p
        z2z2 = z2 * z2 % p
        u1 = x1 * z2z2 % p
        u2 = x2 * z1z1 % p
        s1 = y1 * z2 * z2z2 % p
        s2 = y2 * z1 * z1z1 % p
        if u1 == u2:
            return self._double(p1) if s1 == s2 else (1, 1, 0)
        h = (u2 - u1) % p
        r = (s2 - s1) % p
        hh = h * h % p
        hhh = h * hh % p
        v = u1 * hh % p
        x3 = (r * r - hhh - 2 * v) % p
        y3 = (r * (v - x3) - s1 * hhh) % p
        z3 = h * z1 * z2 % p
        return x3, y3, z3


# GB/T 32918.5-2017 / GM/T 0003.5-2012: the recommended 256-bit curve.
SM2P256V1 = Curve(
    name="sm2p256v1",
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)


def encode_point(curve: Curve, point: tuple[int, int]) -> bytes:
    """The uncompressed encoding ``0x04 || x || y`` (GB/T 32918.1 §4.2.9)."""
    return b"\x04" + point[0].to_bytes(curve.size, "big") + point[1].to_bytes(curve.size, "big")


def decode_point(curve: Curve, data: bytes) -> tuple[int, int]:
    """Parse an uncompressed point and check it lies on the curve; raise ``ValueError``."""
    size = curve.size
    if len(data) != 1 + 2 * size or data[0] != 0x04:
        raise ValueError(f"an SM2 public key is 0x04 || x || y, {1 + 2 * size} bytes")
    point = int.from_bytes(data[1 : 1 + size], "big"), int.from_bytes(data[1 + size :], "big")
    if not curve.contains(point):
        raise ValueError("the SM2 public key is not a point of the curve")
    return point


def z_a(public_key: bytes, user_id: bytes = DEFAULT_USER_ID, curve: Curve = SM2P256V1) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A) (GB/T 32918.2 §5.5)."""
    if len(user_id) * 8 > 0xFFFF:
        raise ValueError("the SM2 user ID is longer than 8191 bytes")
    point = decode_point(curve, public_key)
    size = curve.size
    fields = (curve.a, curve.b, curve.gx, curve.gy, point[0], point[1])
    return sm3(
        (len(user_id) * 8).to_bytes(2, "big") + user_id + b"".join(v.to_bytes(size, "big") for v in fields)
    )


def _digest(curve: Curve, public_key: bytes, message: bytes, user_id: bytes) -> int:
    # GB/T 32918.2 §6.1 A1–A2: e = H(Z_A || M) as an integer.
    return int.from_bytes(sm3(z_a(public_key, user_id, curve) + message), "big")


class Sm2PrivateKey:
    """An SM2 private key d in [1, n-2]. Its ``repr`` never shows d; it cannot be pickled."""

    __slots__ = ("_curve", "_d", "_public")

    def __init__(self, d: int, curve: Curve = SM2P256V1) -> None:
        # GB/T 32918.1 §6.1: d in [1, n-2] so that 1 + d is invertible mod n.
        if not 1 <= d <= curve.n - 2:
            raise ValueError("an SM2 private key is an integer in [1, n-2]")
        self._curve = curve
        self._d = d
        point = curve.multiply(d, (curve.gx, curve.gy))
        assert point is not None  # d < n, so dG is not infinity
        self._public = encode_point(curve, point)

    @classmethod
    def generate(cls, curve: Curve = SM2P256V1) -> Sm2PrivateKey:
        """A fresh key from the operating system's random source."""
        return cls(1 + secrets.randbelow(curve.n - 2), curve)

    @classmethod
    def from_bytes(cls, data: bytes, curve: Curve = SM2P256V1) -> Sm2PrivateKey:
        """The key whose big-endian scalar is ``data`` (``curve.size`` bytes)."""
        if len(data) != curve.size:
            raise ValueError(f"an SM2 private key is {curve.size} bytes")
        return cls(int.from_bytes(data, "big"), curve)

    def private_bytes(self) -> bytes:
        """The scalar d as big-endian bytes. Handle with care: this is the secret."""
        return self._d.to_bytes(self._curve.size, "big")

    def public_key(self) -> bytes:
        """The public key ``0x04 || x || y``."""
        return self._public

    def sign(self, message: bytes, user_id: bytes = DEFAULT_USER_ID) -> bytes:
        """``r || s`` over SM3(Z_A || message) with a random k (GB/T 32918.2 §6.1)."""
        while True:
            signature = self._sign_with_k(message, 1 + secrets.randbelow(self._curve.n - 1), user_id)
            if signature is not None:
                return signature

    def _sign_with_k(self, message: bytes, k: int, user_id: bytes = DEFAULT_USER_ID) -> bytes | None:
        """The signature with nonce ``k``; ``None`` when the standard says to pick another k."""
        curve, d = self._curve, self._d
        n = curve.n
        e = _digest(curve, self._public, message, user_id)
        point = curve.multiply(k, (curve.gx, curve.gy))  # A4
        if point is None:
            return None
        r = (e + point[0]) % n  # A5
        if r == 0 or r + k == n:
            return None
        s = pow(1 + d, -1, n) * (k - r * d) % n  # A6
        if s == 0:
            return None
        return r.to_bytes(curve.size, "big") + s.to_bytes(curve.size, "big")

    def __repr__(self) -> str:
        return f"Sm2PrivateKey(curve={self._curve.name!r})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("an SM2 private key cannot be pickled")


def verify(
    public_key: bytes,
    message: bytes,
    signature: bytes,
    user_id: bytes = DEFAULT_USER_ID,
    curve: Curve = SM2P256V1,
) -> None:
    """Raise :class:`VerificationFailed` unless ``signature`` (r || s) is valid (GB/T 32918.2 §7.1)."""
    size = curve.size
    if len(signature) != 2 * size:
        raise VerificationFailed(f"an SM2 signature is r || s, {2 * size} bytes")
    try:
        point = decode_point(curve, public_key)
    except ValueError as exc:
        raise VerificationFailed(str(exc)) from None
    n = curve.n
    r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
    if not (1 <= r < n and 1 <= s < n):  # B1, B2
        raise VerificationFailed("SM2 signature: r or s is out of range")
    e = _digest(curve, public_key, message, user_id)  # B3, B4
    t = (r + s) % n  # B5
    if t == 0:
        raise VerificationFailed("SM2 signature: r + s = 0 mod n")
    total = curve.multiply_sum(s, t, point)  # B6
    if total is None or (e + total[0]) % n != r:  # B7
        raise VerificationFailed("SM2 signature does not verify")


__all__ = [
    "DEFAULT_USER_ID",
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "SM2P256V1",
    "Curve",
    "Sm2PrivateKey",
    "decode_point",
    "encode_point",
    "verify",
    "z_a",
]
