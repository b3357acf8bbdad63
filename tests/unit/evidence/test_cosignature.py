"""Witness cosignatures (c2sp.org/tlog-cosignature): the signed message, key IDs, vkeys; any byte
changed fails; a verifier asks for at least N of the witnesses it trusts."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence.cosignature import (
    ALG_COSIGNATURE_V1,
    CosignatureVerifier,
    Cosigner,
    cosignatures,
    cosigned_message,
    format_cosigner_vkey,
    parse_cosigner_vkey,
    require_cosignatures,
)
from evidence.keys import SigningKey
from evidence.merkle import EMPTY_ROOT
from evidence.note import Checkpoint, NoteSignature, add_signatures, open_note, split_note
from onceonly.errors import EvidenceError, VerificationFailed

ORIGIN = "onceonly.example/wuqing/evidence"
# RFC 8032 §7.1 TEST 1: a published Ed25519 key, so the key ID and vkey below are reproducible.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
WHEN = int(NOW.timestamp()) - 60


@pytest.fixture(scope="module")
def log_key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


@pytest.fixture(scope="module")
def note(log_key: SigningKey) -> str:
    return log_key.sign_note(Checkpoint(ORIGIN, 7, hashlib.sha256(b"seven").digest()).to_body())


@pytest.fixture(scope="module")
def witnesses() -> list[Cosigner]:
    return [Cosigner.generate(f"witness.district{n}.example/w1") for n in range(3)]


def text_of(note: str) -> str:
    return split_note(note)[0]


def test_the_signed_message_is_the_header_the_time_and_the_whole_note_text() -> None:
    body = Checkpoint(ORIGIN, 0, EMPTY_ROOT, ("extension line",)).to_body()
    assert cosigned_message(body, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n"
        b"onceonly.example/wuqing/evidence\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nextension line\n"
    )
    for bad in (-1, 2**63, True):
        with pytest.raises(ValueError):
            cosigned_message(body, bad)


def test_key_id_and_vkey_of_the_rfc8032_key() -> None:
    name = "witness.example/w1"
    expected_id = hashlib.sha256(name.encode() + b"\n" + b"\x04" + RFC8032_PUBLIC).digest()[:4]
    vkey = format_cosigner_vkey(name, RFC8032_PUBLIC)
    assert vkey == f"{name}+{expected_id.hex()}+" + base64.b64encode(b"\x04" + RFC8032_PUBLIC).decode()
    verifier = parse_cosigner_vkey(vkey)
    assert (verifier.name, verifier.key_id, verifier.public_key) == (name, expected_id, RFC8032_PUBLIC)
    cosigner = Cosigner(name, Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET))
    assert cosigner.vkey == vkey and cosigner.verifier == verifier


def test_a_cosignature_is_key_id_then_big_endian_timestamp_then_the_ed25519_signature(note: str) -> None:
    cosigner = Cosigner("witness.example/w1", Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET))
    line = cosigner.cosign(text_of(note), timestamp=1679315147)
    assert line.key_id == cosigner.verifier.key_id
    assert (
        line.signature[:8]
        == struct.pack(">Q", 1679315147)
        == bytes.fromhex("000000006418 50cb".replace(" ", ""))
    )
    # Checked with the Ed25519 primitive directly, over the message spelled out by hand.
    message = b"cosignature/v1\ntime 1679315147\n" + text_of(note).encode()
    Ed25519PublicKey.from_public_bytes(RFC8032_PUBLIC).verify(line.signature[8:], message)
    assert line.line.startswith("\u2014 witness.example/w1 ") and line.line.endswith("\n")


def test_the_example_line_of_the_specification_parses() -> None:
    # c2sp.org/tlog-cosignature's example: key ID 8d66cf3f, and its "time 1679315147".
    line = NoteSignature.parse(
        "\u2014 witness.example.com/w1 "
        "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
    )
    assert line.key_id.hex() == "8d66cf3f"
    assert struct.unpack(">Q", line.signature[:8])[0] == 1679315147 and len(line.signature) == 72


def test_a_cosigned_note_still_opens_with_the_log_key_alone(log_key: SigningKey, note: str) -> None:
    cosigned = add_signatures(note, [Cosigner.generate("w.example/1").cosign(text_of(note))])
    assert open_note(cosigned, log_key.verifier) == text_of(note)
    assert add_signatures(cosigned, split_note(cosigned)[1]) == cosigned, "a line is not added twice"


def test_round_trip_and_every_byte_of_the_line_matters(note: str, witnesses: list[Cosigner]) -> None:
    witness = witnesses[0]
    line = witness.cosign(text_of(note), timestamp=WHEN)
    cosigned = add_signatures(note, [line])
    found = require_cosignatures(cosigned, [witness.vkey], now=NOW)
    assert [(c.witness, c.timestamp) for c in found] == [(witness.name, WHEN)]
    raw = line.key_id + line.signature
    for position in range(4, len(raw)):  # timestamp and signature (a changed key ID is another key's)
        tampered = bytearray(raw)
        tampered[position] ^= 0x01
        bad = NoteSignature(line.name, bytes(tampered[:4]), bytes(tampered[4:]))
        with pytest.raises(VerificationFailed, match="bad cosignature by witness"):
            require_cosignatures(add_signatures(note, [bad]), [witness.vkey], now=NOW)
    changed_id = NoteSignature(line.name, bytes([line.key_id[0] ^ 1]) + line.key_id[1:], line.signature)
    with pytest.raises(VerificationFailed, match="0 valid cosignature"):
        require_cosignatures(add_signatures(note, [changed_id]), [witness.vkey], now=NOW)


def test_a_changed_checkpoint_fails_the_cosignature(
    log_key: SigningKey, note: str, witnesses: list[Cosigner]
) -> None:
    line = witnesses[0].cosign(text_of(note), timestamp=WHEN)
    other = log_key.sign_note(Checkpoint(ORIGIN, 8, hashlib.sha256(b"eight").digest()).to_body())
    with pytest.raises(VerificationFailed, match="bad cosignature"):
        require_cosignatures(add_signatures(other, [line]), [witnesses[0].vkey], now=NOW)


def test_at_least_n_of_the_trusted_witnesses(note: str, witnesses: list[Cosigner]) -> None:
    a, b, c = witnesses
    cosigned = add_signatures(note, [a.cosign(text_of(note), WHEN), b.cosign(text_of(note), WHEN)])
    vkeys = [a.vkey, b.vkey, c.vkey]
    assert len(require_cosignatures(cosigned, vkeys, 2, now=NOW)) == 2
    with pytest.raises(VerificationFailed) as failed:
        require_cosignatures(cosigned, vkeys, now=NOW)  # default: all three
    assert "2 valid cosignature(s) of the 3 required" in str(failed.value)
    assert c.verifier.label in str(failed.value) and "missing" in str(failed.value)
    with pytest.raises(VerificationFailed, match="0 valid cosignature"):
        require_cosignatures(note, [a.vkey], now=NOW)
    with pytest.raises(VerificationFailed, match="cannot require 4 cosignatures from 3"):
        require_cosignatures(cosigned, vkeys, 4, now=NOW)
    # The same key twice counts once.
    with pytest.raises(VerificationFailed, match="cannot require 2 cosignatures from 1"):
        require_cosignatures(cosigned, [a.vkey, a.vkey], 2, now=NOW)


def test_a_cosignature_from_the_future_is_refused(note: str, witnesses: list[Cosigner]) -> None:
    later = int(NOW.timestamp()) + 3600
    cosigned = add_signatures(note, [witnesses[0].cosign(text_of(note), later)])
    with pytest.raises(VerificationFailed, match="in the future"):
        require_cosignatures(cosigned, [witnesses[0].vkey], now=NOW)
    assert require_cosignatures(cosigned, [witnesses[0].vkey], now=NOW + dt.timedelta(hours=1))


def test_unknown_lines_are_ignored_and_lines_by_the_log_are_not_cosignatures(
    log_key: SigningKey, note: str, witnesses: list[Cosigner]
) -> None:
    stranger = Cosigner.generate("someone.else/w9").cosign(text_of(note), WHEN)
    cosigned = add_signatures(note, [stranger, witnesses[1].cosign(text_of(note), WHEN)])
    assert [c.witness for c in cosignatures(cosigned, [witnesses[1].verifier])] == [witnesses[1].name]
    with pytest.raises(VerificationFailed, match="signature type 0x01"):
        parse_cosigner_vkey(log_key.vkey)  # the log's note key is not a witness key


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("no-plus-signs", "of the form"),
        ("w+00000000+!!!", "not base64"),
        ("w+00000000+" + base64.b64encode(b"\x04" + bytes(31)).decode(), "32 bytes"),
        ("w+00000000+" + base64.b64encode(b"\x04" + RFC8032_PUBLIC).decode(), "key id does not match"),
        ("w+00000000+" + base64.b64encode(b"\x02" + RFC8032_PUBLIC).decode(), "type 0x02"),
    ],
)
def test_malformed_witness_keys_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(VerificationFailed, match=problem):
        parse_cosigner_vkey(text)


def test_the_private_key_at_rest_is_encrypted_and_never_shown() -> None:
    cosigner = Cosigner.generate("w.example/1")
    pem = cosigner.to_encrypted_pem(b"a passphrase")
    assert b"ENCRYPTED PRIVATE KEY" in pem
    assert Cosigner.from_encrypted_pem("w.example/1", pem, b"a passphrase").vkey == cosigner.vkey
    with pytest.raises(EvidenceError, match="passphrase is wrong"):
        Cosigner.from_encrypted_pem("w.example/1", pem, b"another")
    with pytest.raises(EvidenceError, match="empty"):
        cosigner.to_encrypted_pem(b"")
    assert "PRIVATE" not in repr(cosigner) and cosigner.verifier.key_id.hex() in repr(cosigner)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(cosigner)


def test_the_cosignature_type_byte() -> None:
    assert ALG_COSIGNATURE_V1 == 0x04
    assert isinstance(parse_cosigner_vkey(Cosigner.generate("w/1").vkey), CosignatureVerifier)
