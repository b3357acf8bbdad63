"""Signature suites: published vectors for every algorithm, then tamper tests for each suite."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import sm2
from evidence.note import format_vkey, key_id, open_note, open_note_signers, parse_vkey, sign_note
from evidence.suites import SUITES, get_suite, suite_of_private_key, suite_of_type
from onceonly.errors import VerificationFailed

# --- RFC 8032 §7.1: Ed25519 TEST 1, TEST 2, TEST 3, TEST 1024 and TEST SHA(abc) ---
# (secret key, public key, message, signature), hex.
RFC8032 = {
    "TEST 1": (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    "TEST 2": (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    "TEST 3": (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    "TEST 1024": (
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98"
        "fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
        "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
        "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
        "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
        "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
        "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef"
        "efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7"
        "aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
        "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
        "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
        "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
        "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
        "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07"
        "07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
        "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a"
        "ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e"
        "c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
        "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c"
        "42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
        "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
        "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
        "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
        "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
        "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
        "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
        "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
        "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5"
        "0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1"
        "369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
        "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c"
        "0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0",
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    "TEST SHA(abc)": (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        hashlib.sha512(b"abc").hexdigest(),
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
}

# --- RFC 6979 Appendix A.2.5: ECDSA, 256 bits (prime field), key pair and SHA-256 signatures.
P256_X = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
P256_PUBLIC = bytes.fromhex(
    "04"
    "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6"
    "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299"
)
P256_SHA256 = {
    b"sample": (
        "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716"
        "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"
    ),
    b"test": (
        "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367"
        "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083"
    ),
}


def test_suite_names_and_types() -> None:
    assert list(SUITES) == ["ed25519", "ecdsa-p256-sha256", "sm2-sm3"]
    assert SUITES["ed25519"].signature_type == b"\x01"
    for name in ("ecdsa-p256-sha256", "sm2-sm3"):
        # The documented 0xff encoding: 0xff || SHA-256(suite name)[:4].
        assert SUITES[name].signature_type == b"\xff" + hashlib.sha256(name.encode()).digest()[:4]
    assert SUITES["ecdsa-p256-sha256"].signature_type.hex() == "ff8ef1d76d"
    assert SUITES["sm2-sm3"].signature_type.hex() == "ff6a630092"
    with pytest.raises(ValueError, match="known suites: ed25519, ecdsa-p256-sha256, sm2-sm3"):
        get_suite("rsa")


@pytest.mark.parametrize("test", list(RFC8032))
def test_rfc8032_vectors(test: str) -> None:
    secret, public, message, signature = (bytes.fromhex(v) for v in RFC8032[test])
    suite = SUITES["ed25519"]
    key = Ed25519PrivateKey.from_private_bytes(secret)
    assert suite.public_key(key) == public
    assert suite.sign(key, message) == signature
    suite.verify(public, message, signature)
    with pytest.raises(VerificationFailed):
        suite.verify(public, message + b"\x00", signature)
    with pytest.raises(VerificationFailed):
        suite.verify(public, message, signature[:-1] + bytes([signature[-1] ^ 0x80]))


@pytest.mark.parametrize("message", list(P256_SHA256))
def test_rfc6979_p256_sha256_vectors(message: bytes) -> None:
    suite = SUITES["ecdsa-p256-sha256"]
    signature = bytes.fromhex(P256_SHA256[message])
    key = ec.derive_private_key(P256_X, ec.SECP256R1())
    assert suite.public_key(key) == P256_PUBLIC
    suite.verify(P256_PUBLIC, message, signature)
    # Our signing uses RFC 6979 deterministic k, so it reproduces the published r, s.
    assert suite.sign(key, message) == signature
    with pytest.raises(VerificationFailed):
        suite.verify(P256_PUBLIC, message + b"!", signature)


def test_sm2_suite_is_the_gmt0003_algorithm_with_the_default_user_id() -> None:
    # GM/T 0003.5 Appendix A (see test_sm2.py): a signature made by sm2.py verifies in the suite.
    key = sm2.Sm2PrivateKey(0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8)
    signature = key._sign_with_k(
        b"message digest", 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
    )
    assert signature is not None
    assert signature.hex().startswith("f5a03b0648d2c463")
    SUITES["sm2-sm3"].verify(key.public_key(), b"message digest", signature)


@pytest.mark.parametrize("name", list(SUITES))
def test_every_suite_signs_verifies_and_refuses_tampering(name: str) -> None:
    suite = SUITES[name]
    private = suite.generate()
    assert suite.owns(private) and suite_of_private_key(private) is suite
    public = suite.public_key(private)
    assert len(public) == suite.public_key_size
    suite.check_public_key(public)
    message = b"onceonly.example/log\n3\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    signature = suite.sign(private, message)
    assert len(signature) == suite.signature_size
    suite.verify(public, message, signature)
    for position in range(len(signature)):
        tampered = bytearray(signature)
        tampered[position] ^= 0x04
        with pytest.raises(VerificationFailed, match=name):
            suite.verify(public, message, bytes(tampered))
    for position in (0, len(message) // 2, len(message) - 1):
        changed = bytearray(message)
        changed[position] ^= 0x01
        with pytest.raises(VerificationFailed):
            suite.verify(public, bytes(changed), signature)
    with pytest.raises(VerificationFailed):
        suite.verify(suite.public_key(suite.generate()), message, signature)
    with pytest.raises(VerificationFailed, match="bytes"):
        suite.verify(public, message, signature + b"\x00")


@pytest.mark.parametrize("name", list(SUITES))
def test_every_suite_signs_notes_with_its_type(name: str) -> None:
    suite = SUITES[name]
    private = suite.generate()
    public = suite.public_key(private)
    vkey = format_vkey("district.example/log", public, name)
    verifier = parse_vkey(vkey)
    assert verifier.suite == name and verifier.public_key == public and verifier.vkey == vkey
    assert verifier.key_id == key_id("district.example/log", public, suite.signature_type)
    assert suite_of_type(suite.signature_type + public) is suite
    note = sign_note("hello\n", "district.example/log", private)
    assert open_note(note, verifier) == "hello\n"
    for position, char in enumerate(note):
        if char in "\n—" or position < 6:
            continue  # the newline/dash structure is covered by the malformed-note tests
        mangled = note[:position] + ("A" if char != "A" else "B") + note[position + 1 :]
        with pytest.raises(VerificationFailed):
            open_note(mangled, verifier)


def test_the_key_that_signed_picks_the_verifier() -> None:
    name = "district.example/log"
    keys = {n: s.generate() for n, s in SUITES.items()}
    verifiers = [parse_vkey(format_vkey(name, SUITES[n].public_key(k), n)) for n, k in keys.items()]
    for suite_name, private in keys.items():
        note = sign_note("rotated\n", name, private)
        text, signers = open_note_signers(note, verifiers)
        assert text == "rotated\n"
        assert [s.suite for s in signers] == [suite_name]
    # A note signed by two keys names both.
    both = sign_note("two\n", name, keys["ed25519"])
    both += sign_note("two\n", name, keys["sm2-sm3"]).split("\n\n", 1)[1]
    assert [s.suite for s in open_note_signers(both, verifiers)[1]] == ["ed25519", "sm2-sm3"]
    with pytest.raises(VerificationFailed, match="no signature by"):
        open_note(both, [])


def test_a_signature_type_confusion_is_refused() -> None:
    # The same P-256 public key presented as an SM2 key has another key ID: no cross-suite reuse.
    p256 = SUITES["ecdsa-p256-sha256"].generate()
    public = SUITES["ecdsa-p256-sha256"].public_key(p256)
    note = sign_note("hi\n", "n", p256)
    with pytest.raises(VerificationFailed):
        open_note(note, parse_vkey(format_vkey("n", public, "sm2-sm3")))


def test_unknown_private_keys_cannot_sign() -> None:
    with pytest.raises(ValueError, match="no signature suite"):
        sign_note("x\n", "n", ec.generate_private_key(ec.SECP384R1()))


def test_suites_are_the_entry_points_and_settings_accept_exactly_their_names() -> None:
    import importlib.metadata
    import subprocess
    import sys

    from onceonly.settings import Settings, signature_suite_names

    registered = {ep.name for ep in importlib.metadata.entry_points(group="onceonly.signature_suites")}
    assert set(SUITES) == registered and list(SUITES) == signature_suite_names()
    for name in SUITES:
        assert Settings(signature_suite=name).signature_suite == name
    with pytest.raises(
        ValueError, match="unknown signature suite 'sm2'; known suites: ed25519, ecdsa-p256-sha256, sm2-sm3"
    ):
        Settings(signature_suite="sm2")
    # The ground floor validates the name without importing the evidence stage.
    probe = (
        "import sys; from onceonly.settings import Settings; Settings(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('evidence', 'cryptography')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", list(SUITES))
def test_each_suite_reads_back_the_private_key_files_it_writes(name: str) -> None:
    from evidence.suites import UnreadableKey

    suite = SUITES[name]
    private = suite.generate()
    pem = suite.encrypt_private_key(private, b"passphrase")
    readers = [s.name for s in SUITES.values() if s.reads_private_key(pem)]
    assert name in readers
    if name == "sm2-sm3":  # its own envelope; PKCS#8 is shared by the other two
        assert readers == ["sm2-sm3"]
    assert suite.public_key(suite.decrypt_private_key(pem, b"passphrase")) == suite.public_key(private)
    with pytest.raises(UnreadableKey, match="passphrase is wrong"):
        suite.decrypt_private_key(pem, b"another passphrase")
    assert not suite.reads_private_key(b"-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n")
