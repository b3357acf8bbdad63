"""SM2 signatures against the published examples, then tampering."""

from __future__ import annotations

import pickle

import pytest

from evidence.sm2 import DEFAULT_USER_ID, SM2P256V1, Curve, Sm2PrivateKey, decode_point, verify, z_a
from onceonly.errors import VerificationFailed

MESSAGE = b"message digest"

# --- GB/T 32918.2-2016 Appendix A.2 (GM/T 0003.2-2012 example, also in draft-shen-sm2-ecdsa-02
# and OpenSSL test/sm2_internal_test.c): the 256-bit example curve over Fp, user ID
# ALICE123@YAHOO.COM, fixed private key and k, published public key, r and s.
EXAMPLE_CURVE = Curve(
    name="GB/T 32918.2 A.2 Fp-256",
    p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
    gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
    n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
)
ALICE = b"ALICE123@YAHOO.COM"
EXAMPLE_D = 0x128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263
EXAMPLE_K = 0x6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F
EXAMPLE_PUBLIC = bytes.fromhex(
    "04"
    "0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A"
    "7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857"
)
EXAMPLE_SIGNATURE = bytes.fromhex(
    "40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1"
    "6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7"
)

# --- GM/T 0003.5-2012 / GB/T 32918.5-2017 Appendix A: the recommended curve sm2p256v1,
# default user ID 1234567812345678 (as in OpenSSL test/sm2_internal_test.c and GmSSL).
GM_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
GM_K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
GM_PUBLIC = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
GM_SIGNATURE = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)


def test_gbt32918_example_curve_signature() -> None:
    key = Sm2PrivateKey(EXAMPLE_D, EXAMPLE_CURVE)
    assert key.public_key() == EXAMPLE_PUBLIC
    assert key._sign_with_k(MESSAGE, EXAMPLE_K, ALICE) == EXAMPLE_SIGNATURE
    verify(EXAMPLE_PUBLIC, MESSAGE, EXAMPLE_SIGNATURE, ALICE, EXAMPLE_CURVE)


def test_gmt0003_recommended_curve_signature() -> None:
    key = Sm2PrivateKey(GM_D)
    assert key.public_key() == GM_PUBLIC
    assert key._sign_with_k(MESSAGE, GM_K) == GM_SIGNATURE
    verify(GM_PUBLIC, MESSAGE, GM_SIGNATURE)
    verify(GM_PUBLIC, MESSAGE, GM_SIGNATURE, DEFAULT_USER_ID, SM2P256V1)


def test_the_user_id_is_part_of_what_is_signed() -> None:
    assert z_a(GM_PUBLIC) != z_a(GM_PUBLIC, ALICE)
    with pytest.raises(VerificationFailed):
        verify(GM_PUBLIC, MESSAGE, GM_SIGNATURE, ALICE)


@pytest.mark.parametrize("position", range(64))
def test_every_byte_of_the_signature_is_protected(position: int) -> None:
    tampered = bytearray(GM_SIGNATURE)
    tampered[position] ^= 0x01
    with pytest.raises(VerificationFailed):
        verify(GM_PUBLIC, MESSAGE, bytes(tampered))


def test_tampered_message_or_key_fails() -> None:
    with pytest.raises(VerificationFailed):
        verify(GM_PUBLIC, MESSAGE + b".", GM_SIGNATURE)
    other = Sm2PrivateKey.generate().public_key()
    with pytest.raises(VerificationFailed, match="does not verify"):
        verify(other, MESSAGE, GM_SIGNATURE)
    off_curve = GM_PUBLIC[:-1] + bytes([GM_PUBLIC[-1] ^ 1])
    with pytest.raises(VerificationFailed, match="not a point of the curve"):
        verify(off_curve, MESSAGE, GM_SIGNATURE)


@pytest.mark.parametrize(
    "signature",
    [
        b"",
        GM_SIGNATURE[:-1],
        bytes(64),  # r = s = 0
        SM2P256V1.n.to_bytes(32, "big") + GM_SIGNATURE[32:],  # r = n
        GM_SIGNATURE[:32] + SM2P256V1.n.to_bytes(32, "big"),  # s = n
    ],
)
def test_malformed_signatures_fail(signature: bytes) -> None:
    with pytest.raises(VerificationFailed):
        verify(GM_PUBLIC, MESSAGE, signature)


def test_random_keys_sign_and_verify() -> None:
    key = Sm2PrivateKey.generate()
    first, second = key.sign(MESSAGE), key.sign(MESSAGE)
    assert first != second  # a fresh k each time
    verify(key.public_key(), MESSAGE, first)
    verify(key.public_key(), MESSAGE, second)
    assert Sm2PrivateKey.from_bytes(key.private_bytes()).public_key() == key.public_key()


def test_point_and_key_checks() -> None:
    assert decode_point(SM2P256V1, GM_PUBLIC)[0] == int.from_bytes(GM_PUBLIC[1:33], "big")
    for bad in (GM_PUBLIC[1:], b"\x02" + GM_PUBLIC[1:], GM_PUBLIC + b"\x00"):
        with pytest.raises(ValueError):
            decode_point(SM2P256V1, bad)
    for d in (0, SM2P256V1.n - 1, SM2P256V1.n):
        with pytest.raises(ValueError):
            Sm2PrivateKey(d)


def test_private_key_is_not_shown_nor_pickled() -> None:
    key = Sm2PrivateKey(GM_D)
    assert f"{GM_D:x}" not in repr(key).lower()
    with pytest.raises(TypeError):
        pickle.dumps(key)


# --- Interoperability: a signature made by OpenSSL 4.0.3 (`openssl genpkey -algorithm SM2`, then
# `openssl pkeyutl -sign -rawin -digest sm3 -pkeyopt distid:1234567812345678`), DER-encoded.
OPENSSL_PUBLIC = bytes.fromhex(
    "049006350af93ffcbfd24fbf82b307d25e0bb8cc4b4e02f27ea955f1caf3ce84"
    "144bfaab0cb1f4827cdd0852a21a1e2e5b451439ad3f177427b6f80dbd758f25ab"
)
OPENSSL_MESSAGE = b"onceonly.example/log\n3\nabc=\n"
OPENSSL_SIGNATURE_DER = bytes.fromhex(
    "3045022024a69df93e0dcf5f1429118572f4d92090c0881c076b073b7b216bf5fa228097"
    "022100bf2076407ca83988b30aadacae5b89ed3450c76331a3a774942e525d14e95398"
)


def test_a_signature_made_by_openssl_verifies() -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(OPENSSL_SIGNATURE_DER)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    verify(OPENSSL_PUBLIC, OPENSSL_MESSAGE, signature)
    with pytest.raises(VerificationFailed):
        verify(OPENSSL_PUBLIC, OPENSSL_MESSAGE.replace(b"3", b"4"), signature)


@pytest.mark.parametrize("seed", range(8))
def test_the_fast_public_sum_agrees_with_the_ladder(seed: int) -> None:
    import random

    rng = random.Random(seed)
    for curve in (SM2P256V1, EXAMPLE_CURVE):
        point = curve.multiply(rng.randrange(1, curve.n), (curve.gx, curve.gy))
        assert point is not None
        scalars = [rng.randrange(curve.n), rng.randrange(curve.n), 0, 1, curve.n - 1, 15, 16]
        s, t = rng.choice(scalars), rng.choice(scalars)
        expected = curve.add(curve.multiply(s, (curve.gx, curve.gy)), curve.multiply(t, point))
        assert curve.multiply_sum(s, t, point) == expected
    assert SM2P256V1.multiply_sum(0, 0, (SM2P256V1.gx, SM2P256V1.gy)) is None
