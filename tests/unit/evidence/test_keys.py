"""The signing key store: encrypted at rest, strict file modes, no key material in text."""

from __future__ import annotations

import pickle
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, SECP384R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import evidence
from evidence import keys
from evidence.keys import SUITES, KeyStore, SigningKey
from evidence.note import open_note, parse_vkey
from onceonly.errors import EvidenceError

NAME = "onceonly.example/120114"
PASSPHRASE = b"correct horse battery staple"


def test_exports() -> None:
    assert set(keys.__all__) <= set(evidence.__all__)
    for name in keys.__all__:
        assert getattr(evidence, name) is getattr(keys, name)


def test_create_then_load(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys", PASSPHRASE)
    key, created = store.load_or_create(NAME)
    assert created
    again, created_again = store.load_or_create(NAME)
    assert not created_again
    assert again.public_key_raw == key.public_key_raw
    assert again.vkey == key.vkey
    assert store.load(NAME).vkey == key.vkey


def test_files_modes_and_contents(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    store = KeyStore(directory, PASSPHRASE)
    key, _ = store.load_or_create(NAME)
    key_file = directory / "onceonly.example_120114.key.pem"
    vkey_file = directory / "onceonly.example_120114.vkey"
    keyring_file = directory / "keyring.json"
    assert store.key_path(NAME) == key_file and store.vkey_path(NAME) == vkey_file
    assert store.keyring_path == keyring_file
    assert stat.S_IMODE(keyring_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(vkey_file.stat().st_mode) == 0o600
    from onceonly.files import secure_home

    assert secure_home(tmp_path) == []  # nothing for a run's home check to tighten
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem = key_file.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert vkey_file.read_text() == key.vkey + "\n"
    # no temp files
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [key_file.name, vkey_file.name, "keyring.json"]
    )
    # The PEM is PKCS#8, encrypted with the passphrase, and holds the same key.
    loaded = serialization.load_pem_private_key(pem, password=PASSPHRASE)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert loaded.public_key().public_bytes_raw() == key.public_key_raw
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pem, password=None)


def test_signing_key_signs_notes_its_vkey_verifies(tmp_path: Path) -> None:
    key, _ = KeyStore(tmp_path, PASSPHRASE).load_or_create(NAME)
    assert key.suite == "ed25519" and key.name == NAME
    assert len(key.public_key_raw) == 32
    assert parse_vkey(key.vkey).key_id == key.key_id
    assert open_note(key.sign_note("hello\n"), parse_vkey(key.vkey)) == "hello\n"


def test_wrong_passphrase_names_the_file_not_the_passphrase(tmp_path: Path) -> None:
    KeyStore(tmp_path, PASSPHRASE).load_or_create(NAME)
    wrong = b"wrong passphrase 12345"
    with pytest.raises(EvidenceError) as caught:
        KeyStore(tmp_path, wrong).load(NAME)
    message = str(caught.value)
    assert "onceonly.example_120114.key.pem" in message
    assert "passphrase is wrong" in message
    assert wrong.decode() not in message and PASSPHRASE.decode() not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    # load_or_create must not "repair" a key it cannot decrypt by making a new one.
    with pytest.raises(EvidenceError, match="passphrase is wrong"):
        KeyStore(tmp_path, wrong).load_or_create(NAME)


@pytest.mark.parametrize("passphrase", [b"", "text passphrase"])
def test_empty_or_text_passphrase_is_refused(tmp_path: Path, passphrase: bytes) -> None:
    with pytest.raises(EvidenceError, match="passphrase"):
        KeyStore(tmp_path, passphrase)


def test_a_key_stored_in_clear_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    clear = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    store.key_path(NAME).write_bytes(clear)
    with pytest.raises(EvidenceError, match="not encrypted"):
        store.load(NAME)


def test_a_key_of_an_unknown_suite_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    p256 = generate_private_key(SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE),
    )
    store.key_path(NAME).write_bytes(p256)
    with pytest.raises(EvidenceError, match="which no signature suite uses"):
        store.load(NAME)


def test_unknown_suite_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="known suites: ed25519, ecdsa-p256-sha256, sm2-sm3"):
        KeyStore(tmp_path, PASSPHRASE).create(NAME, suite="sm2")
    assert set(SUITES) == {"ed25519", "ecdsa-p256-sha256", "sm2-sm3"}


def test_a_mismatched_vkey_file_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    store.load_or_create(NAME)
    other = SigningKey.generate(NAME)
    store.vkey_path(NAME).write_text(other.vkey + "\n")
    with pytest.raises(EvidenceError, match="does not match"):
        store.load(NAME)


def test_a_missing_vkey_file_is_rewritten(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    key, _ = store.load_or_create(NAME)
    store.vkey_path(NAME).unlink()
    assert store.load(NAME).vkey == key.vkey
    assert store.vkey_path(NAME).read_text() == key.vkey + "\n"


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    store.create(NAME)
    with pytest.raises(EvidenceError, match="already exists"):
        store.create(NAME)


def test_missing_key(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="does not exist"):
        KeyStore(tmp_path, PASSPHRASE).load(NAME)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "///"])
def test_bad_key_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(EvidenceError):
        KeyStore(tmp_path, PASSPHRASE).load_or_create(name)


def test_no_key_material_in_text_or_pickles(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, PASSPHRASE)
    key, _ = store.load_or_create(NAME)
    private = key._private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    for text in (repr(key), str(key), repr(store), str(store)):
        assert private.hex() not in text
        assert PASSPHRASE.decode() not in text
    assert repr(key) == f"SigningKey(name={NAME!r}, suite='ed25519', key_id={key.key_id.hex()!r})"
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        pickle.dumps(store)


def test_signing_key_refuses_other_key_types() -> None:
    with pytest.raises(EvidenceError, match="not a key of any signature suite"):
        SigningKey(NAME, generate_private_key(SECP384R1()))
    with pytest.raises(EvidenceError, match="not a key of sm2-sm3"):
        SigningKey(NAME, generate_private_key(SECP256R1()), suite="sm2-sm3")
    assert SigningKey.from_private_key(NAME, generate_private_key(SECP384R1())) is None
    assert SigningKey(NAME, generate_private_key(SECP256R1())).suite == "ecdsa-p256-sha256"
