"""Keyring: every suite in the store, rotation keeps old signatures verifying, compromise reports."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from evidence.keys import Keyring, KeyStore, SigningKey, check_key_status, open_key_store, parse_since
from evidence.note import open_note, open_note_signers, parse_vkey
from evidence.suites import SM2_PEM_LABEL, SUITES
from onceonly.errors import EvidenceError, VerificationFailed
from onceonly.settings import Settings

NAME = "onceonly.example/120114"
PASSPHRASE = b"correct horse battery staple"
UTC = dt.UTC


@pytest.mark.parametrize("suite", list(SUITES))
def test_every_suite_is_stored_encrypted_and_loads_back(tmp_path: Path, suite: str) -> None:
    store = KeyStore(tmp_path / "keys", PASSPHRASE)
    key, created = store.load_or_create(NAME, suite)
    assert created and key.suite == suite
    pem = store.key_path(NAME).read_bytes()
    assert stat.S_IMODE(store.key_path(NAME).stat().st_mode) == 0o600
    if suite == "sm2-sm3":
        assert pem.startswith(f"-----BEGIN {SM2_PEM_LABEL}-----".encode())
        envelope = json.loads(base64.b64decode(b"".join(pem.splitlines()[1:-1])))
        assert envelope["kdf"] == "scrypt" and envelope["n"] >= 2**17 and envelope["cipher"] == "aes-256-gcm"
        assert key.public_key_raw.hex() not in pem.decode()
    else:
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        serialization.load_pem_private_key(pem, password=PASSPHRASE)
    again, created_again = store.load_or_create(NAME, suite)
    assert not created_again and again.vkey == key.vkey
    note = again.sign_note("hello\n")
    assert open_note(note, parse_vkey(key.vkey)) == "hello\n"
    assert store.keyring().active(NAME) is not None
    with pytest.raises(EvidenceError, match="passphrase is wrong"):
        KeyStore(tmp_path / "keys", b"not the passphrase").load(NAME)


def test_sm2_envelope_tampering_is_detected(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    store.create(NAME, "sm2-sm3")
    pem = store.key_path(NAME).read_text()
    lines = pem.splitlines()
    lines[2] = lines[2][:10] + ("A" if lines[2][10] != "A" else "B") + lines[2][11:]
    store.key_path(NAME).write_text("\n".join(lines) + "\n")
    with pytest.raises(EvidenceError, match=re.escape("onceonly.example_120114.key.pem")):
        store.load(NAME)


def test_the_keyring_decides_the_active_key_and_a_different_setting_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    store.create(NAME, "ed25519")
    rotated = store.rotate(NAME, "sm2-sm3")
    with caplog.at_level(logging.WARNING, logger="evidence.keys"):
        key, created = store.load_or_create(NAME, "ed25519")  # the setting still says ed25519
    assert (key.suite, key.key_id, created) == ("sm2-sm3", rotated.key_id, False)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "evidence.keys"]
    assert "is sm2-sm3" in warning and "ONCEONLY_SIGNATURE_SUITE is ed25519" in warning
    assert "set ONCEONLY_SIGNATURE_SUITE=sm2-sm3" in warning and "keys rotate --suite ed25519" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="evidence.keys"):
        assert store.load_or_create(NAME, "sm2-sm3")[0].suite == "sm2-sm3"
        assert store.load_or_create(NAME)[0].suite == "sm2-sm3"  # no suite asked: whatever is active
    assert not caplog.records


def test_rotation_keeps_old_signatures_verifying(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    first = store.create(NAME, "ed25519")
    old_note = first.sign_note("signed before the rotation\n")
    second = store.rotate(NAME, "sm2-sm3")
    third = store.rotate(NAME)  # keeps the current suite
    assert (second.suite, third.suite) == ("sm2-sm3", "sm2-sm3")
    assert store.load(NAME).vkey == third.vkey
    assert store.vkey_path(NAME).read_text() == third.vkey + "\n"
    keyring = store.keyring()
    assert [r.key_id for r in keyring.keys] == [k.key_id.hex() for k in (first, second, third)]
    assert [r.status for r in keyring.keys] == ["retired", "retired", "active"]
    assert keyring.keys[0].retired == keyring.keys[1].created
    # Only the active private key is kept; every public key stays in the keyring.
    assert sorted(p.name for p in store.directory.iterdir()) == sorted(
        [store.key_path(NAME).name, store.vkey_path(NAME).name, "keyring.json"]
    )
    verifiers = keyring.verifiers(NAME)
    text, signers = open_note_signers(old_note, verifiers)
    assert text == "signed before the rotation\n" and signers[0].key_id == first.key_id
    new_note = third.sign_note("after\n")
    assert open_note_signers(new_note, verifiers)[1][0].key_id == third.key_id
    assert keyring.signer_of(old_note).key_id == first.key_id.hex()
    assert keyring.signer_of(new_note, NAME).vkey == third.vkey
    with pytest.raises(VerificationFailed):
        Keyring((keyring.keys[1],)).signer_of(new_note)
    # A verifier that kept only the old key does not accept the new key's notes.
    with pytest.raises(VerificationFailed, match="no signature by"):
        open_note(new_note, parse_vkey(first.vkey))


def test_a_legacy_store_without_keyring_gets_one(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    key = store.create(NAME)
    store.keyring_path.unlink()
    assert store.load(NAME).vkey == key.vkey
    record = store.keyring().active(NAME)
    assert record is not None and record.key_id == key.key_id.hex()


def test_an_interrupted_rotation_is_recorded_on_next_load(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    store.create(NAME)
    keyring_before = store.keyring_path.read_bytes()
    new = store.rotate(NAME)
    store.keyring_path.write_bytes(keyring_before)  # as if we stopped before writing the keyring
    assert store.load(NAME).vkey == new.vkey
    assert [r.status for r in store.keyring().keys] == ["retired", "active"]


def test_compromise_is_reported_from_its_date(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    old = store.create(NAME)
    new = store.rotate(NAME)
    since = dt.datetime(2026, 11, 1, tzinfo=UTC)
    record = store.mark_compromised(old.key_id.hex(), since)
    assert record.compromised_since == since and record.status == "compromised"
    keyring = store.keyring()
    retired = keyring.keys[0].retired
    assert retired is not None
    before = dt.datetime(2026, 10, 31, 23, 59, tzinfo=UTC)
    assert check_key_status(old.key_id, before, keyring).key_id == old.key_id.hex()
    with pytest.raises(
        VerificationFailed, match=rf"{old.key_id.hex()} is compromised since 2026-11-01T00:00:00Z"
    ):
        check_key_status(old.key_id, since, keyring)
    with pytest.raises(VerificationFailed, match="compromised"):
        check_key_status(old.key_id.hex(), dt.date(2026, 11, 1), keyring)
    assert check_key_status(old.key_id, dt.date(2026, 10, 31), keyring, NAME).name == NAME
    # The new key is fine now; the retired key may not sign after its retirement.
    assert check_key_status(new.key_id, dt.datetime.now(UTC), keyring).status == "active"
    uncompromised = Keyring((replace(keyring.keys[0], compromised_since=None),))
    with pytest.raises(VerificationFailed, match="was retired"):
        check_key_status(old.key_id, retired + dt.timedelta(seconds=1), uncompromised)
    assert check_key_status(old.key_id, retired, uncompromised).key_id == old.key_id.hex()
    with pytest.raises(VerificationFailed, match="not in the keyring"):
        check_key_status("00000000", since, keyring)
    # The same through Keyring.open_note, which first finds the key that signed.
    note = new.sign_note("checkpoint\n")
    assert keyring.open_note(note) == ("checkpoint\n", keyring.keys[1])
    assert keyring.open_note(note, dt.datetime.now(UTC), NAME)[1].status == "active"
    compromised = Keyring((keyring.keys[0], replace(keyring.keys[1], compromised_since=since)))
    with pytest.raises(VerificationFailed, match=rf"{new.key_id.hex()} is compromised since 2026-11-01"):
        compromised.open_note(note, dt.date(2026, 11, 21))
    with pytest.raises(VerificationFailed, match="signing time is unknown"):
        compromised.open_note(note)
    with pytest.raises(VerificationFailed, match="timezone"):
        check_key_status(old.key_id, dt.datetime(2026, 11, 2), keyring)
    # An earlier date wins; a later one cannot make signatures count again.
    assert store.mark_compromised(old.key_id.hex(), since + dt.timedelta(days=3)).compromised_since == since
    earlier = since - dt.timedelta(days=3)
    assert store.mark_compromised(old.key_id.hex(), earlier).compromised_since == earlier


def test_a_compromised_active_key_refuses_to_sign_until_rotated(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    key = store.create(NAME)
    store.mark_compromised(key.key_id.hex(), dt.datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(EvidenceError, match="marked compromised since 2026-01-01T00:00:00Z"):
        store.load(NAME)
    with pytest.raises(EvidenceError, match="keys rotate"):
        store.load_or_create(NAME)
    new = store.rotate(NAME)
    assert store.load(NAME).key_id == new.key_id


def test_unknown_key_to_compromise(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    key = store.create(NAME)
    with pytest.raises(EvidenceError, match=f"known: {key.key_id.hex()}"):
        store.mark_compromised("deadbeef", dt.datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(EvidenceError, match="time zone"):
        store.mark_compromised(key.key_id.hex(), dt.datetime(2026, 1, 1))


def test_keyring_round_trip_and_tampering(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    store.create(NAME, "ecdsa-p256-sha256")
    store.rotate(NAME, "sm2-sm3")
    data = json.loads(store.keyring_path.read_text())
    assert Keyring.from_json(data) == store.keyring()
    assert Keyring.load(tmp_path) == store.keyring()  # a directory works too
    data["keys"][0]["key_id"] = data["keys"][1]["key_id"]
    with pytest.raises(VerificationFailed, match="vkey names another key"):
        Keyring.from_json(data)
    with pytest.raises(VerificationFailed, match="not a keyring"):
        Keyring.from_json({"keys": []})
    with pytest.raises(VerificationFailed, match="no keyring"):
        Keyring.load(tmp_path / "missing.json")


def test_parse_since() -> None:
    assert parse_since("2026-11-01") == dt.datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T08:00:00+08:00") == dt.datetime(2026, 11, 1, tzinfo=UTC)
    for bad in ("2026-11-01T08:00", "yesterday", "2026-13-01"):
        with pytest.raises(EvidenceError):
            parse_since(bad)


def test_open_key_store_takes_the_passphrase_from_the_settings(tmp_path: Path) -> None:
    store = open_key_store(Settings(home=tmp_path, key_passphrase="from settings"))  # type: ignore[arg-type]
    assert store.directory == tmp_path / "keys"
    with pytest.raises(EvidenceError, match="ONCEONLY_KEY_PASSPHRASE is not set"):
        open_key_store(Settings(home=tmp_path, key_passphrase=None, key_passphrase_secret=None))


def test_open_key_store_reads_a_prefect_secret(tmp_path: Path, prefect_harness: None) -> None:
    from prefect.blocks.system import Secret

    block = f"onceonly-test-passphrase-{os.getpid()}"
    Secret(value="from a prefect secret").save(block, overwrite=True)
    settings = Settings(home=tmp_path, key_passphrase=None, key_passphrase_secret=block)
    key, _ = open_key_store(settings).load_or_create(NAME)
    assert KeyStore(tmp_path / "keys", b"from a prefect secret").load(NAME).vkey == key.vkey
    missing = Settings(home=tmp_path, key_passphrase=None, key_passphrase_secret="no-such-block-here")
    with pytest.raises(EvidenceError, match="no-such-block-here"):
        open_key_store(missing)


def test_signing_key_raw_sign_matches_the_suite(tmp_path: Path) -> None:
    for suite in SUITES:
        key = SigningKey.generate(NAME, suite)
        SUITES[suite].verify(key.public_key_raw, b"payload", key.sign(b"payload"))
        assert key.verifier == parse_vkey(key.vkey)
