"""Signed notes and checkpoints: Go sumdb/note and RFC 8032 vectors, then tampering."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import evidence
from evidence import note
from evidence.merkle import EMPTY_ROOT, leaf_hash, root
from evidence.note import (
    MAX_SIGNATURES,
    Checkpoint,
    NoteVerifier,
    format_vkey,
    key_id,
    open_note,
    parse_vkey,
    sign_note,
)
from onceonly.errors import VerificationFailed

# --- golang.org/x/mod/sumdb/note note_test.go (TestNewVerifier, TestSign, TestOpen) ---

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_B64 = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
ENOCH_B64 = "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
PETER_SIG = f"— PeterNeumann {PETER_B64}\n"
ENOCH_SIG = f"— EnochRoot {ENOCH_B64}\n"

# --- RFC 8032 §7.1 TEST 1 ---

RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def peter_key() -> Ed25519PrivateKey:
    """Decode the Go skey form PRIVATE+KEY+<name>+<key id>+base64(0x01 || seed)."""
    private, key, name, id_hex, encoded = PETER_SKEY.split("+", 4)
    assert (private, key, name, id_hex) == ("PRIVATE", "KEY", "PeterNeumann", "c74f20a3")
    raw = base64.b64decode(encoded)
    assert raw[0] == 0x01 and len(raw) == 33
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


def test_exports() -> None:
    assert set(note.__all__) <= set(evidence.__all__)
    for name in note.__all__:
        assert getattr(evidence, name) is getattr(note, name)


def test_rfc8032_test_1() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    assert key.public_key().public_bytes_raw() == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_SIGNATURE
    verifier = NoteVerifier("rfc8032", key_id("rfc8032", RFC8032_PUBLIC), RFC8032_PUBLIC)
    verifier.verify(b"", RFC8032_SIGNATURE)
    with pytest.raises(VerificationFailed):
        verifier.verify(b"", RFC8032_SIGNATURE[:-1] + bytes([RFC8032_SIGNATURE[-1] ^ 1]))
    with pytest.raises(VerificationFailed):
        verifier.verify(b"\x00", RFC8032_SIGNATURE)


def test_go_vkey_and_key_id() -> None:
    public = peter_key().public_key().public_bytes_raw()
    assert format_vkey("PeterNeumann", public) == PETER_VKEY
    assert key_id("PeterNeumann", public) == bytes.fromhex("c74f20a3")
    verifier = parse_vkey(PETER_VKEY)
    assert verifier == NoteVerifier("PeterNeumann", bytes.fromhex("c74f20a3"), public)
    assert verifier.vkey == PETER_VKEY
    assert parse_vkey(ENOCH_VKEY).key_id == bytes.fromhex("af0cfe78")


def test_go_signed_note_byte_for_byte() -> None:
    assert sign_note(TEXT, "PeterNeumann", peter_key()) == TEXT + "\n" + PETER_SIG


def test_go_open() -> None:
    peter, enoch = parse_vkey(PETER_VKEY), parse_vkey(ENOCH_VKEY)
    both = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(TEXT + "\n" + PETER_SIG, peter) == TEXT
    assert open_note(both, peter) == TEXT  # Enoch's signature is ignored
    assert open_note(both, enoch) == TEXT
    with pytest.raises(VerificationFailed, match="no signature by PeterNeumann"):
        open_note(TEXT + "\n" + ENOCH_SIG, peter)


def test_go_invalid_signature() -> None:
    # note_test.go inserts "ABCD" 60 bytes into the line; "— " is 4 bytes there, 2 characters here.
    with pytest.raises(VerificationFailed, match="bad signature by PeterNeumann"):
        open_note(TEXT + "\n" + PETER_SIG[:58] + "ABCD" + PETER_SIG[58:], parse_vkey(PETER_VKEY))


@pytest.mark.parametrize(
    "message",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        "\ud800" + TEXT + "\n" + PETER_SIG,  # not encodable as UTF-8
        TEXT + "\n" + f"— Bad Name {PETER_B64}",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1),
    ],
)
def test_go_malformed_notes(message: str) -> None:
    with pytest.raises(VerificationFailed, match="malformed note"):
        open_note(message, parse_vkey(PETER_VKEY))


def test_go_vkey_manglings_are_rejected() -> None:
    for start in range(len(PETER_VKEY) + 1):
        for end in range(start + 1, len(PETER_VKEY) + 1):
            if (start, end) != (0, len(PETER_VKEY)):
                with pytest.raises(VerificationFailed):
                    parse_vkey(PETER_VKEY[start:end])
    for position, char in enumerate(PETER_VKEY):
        mangled = PETER_VKEY[:position] + chr(ord(char) + 1) + PETER_VKEY[position + 1 :]
        with pytest.raises(VerificationFailed):
            parse_vkey(mangled)


def test_go_bad_keys_with_adjusted_key_ids() -> None:
    # Go rejects this one for its length; we already reject its non-canonical base64.
    with pytest.raises(VerificationFailed, match="public key"):
        parse_vkey("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
    with pytest.raises(VerificationFailed, match="unknown signature algorithm"):
        parse_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


@pytest.mark.parametrize(
    ("vkey", "problem"),
    [
        ("PeterNeumann", "of the form"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "lower-case hex"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TX", "key id does not match"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n", "canonical base64"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "canonical base64"),
    ],
)
def test_vkey_problems_are_named(vkey: str, problem: str) -> None:
    with pytest.raises(VerificationFailed, match=problem):
        parse_vkey(vkey)


def test_sign_note_refuses_bad_input() -> None:
    key = Ed25519PrivateKey.generate()
    for text in ("no newline", "", "tab\there\n", "\ud800\n"):
        with pytest.raises(ValueError):
            sign_note(text, "log", key)
    for name in ("", "a b", "a+b", "a\u3000b"):
        with pytest.raises(ValueError):
            sign_note("text\n", name, key)


def test_a_key_name_is_refused_exactly_for_a_space_a_plus_or_a_control_character() -> None:
    # The check is a regular expression (every checkpoint's signing runs it): the same code
    # points as str.isspace(), "+" and below U+0020, over all of Unicode, and nothing else.
    key = Ed25519PrivateKey.generate()
    refused = {c for c in map(chr, range(0x110000)) if note._name_problem(f"a{c}b")}
    assert refused == {c for c in map(chr, range(0x110000)) if c.isspace() or c == "+" or ord(c) < 0x20}
    for name in ("a\u00a0b", "a\u2028b", "a\x1fb", "log\u3000"):
        with pytest.raises(ValueError, match="space, a control character"):
            sign_note("text\n", name, key)
    assert sign_note("text\n", "tianjin.wuqing/日志", key).startswith("text\n\n— tianjin.wuqing/日志 ")
    for origin in ("a\x01b", "a\x1fb"):  # a control character in a checkpoint's origin line
        with pytest.raises(ValueError, match="control character"):
            Checkpoint(origin=origin, size=1, root_hash=EMPTY_ROOT)
    Checkpoint(origin="a\x7fb", size=1, root_hash=EMPTY_ROOT)  # DEL is not below U+0020


def test_note_text_may_contain_blank_lines() -> None:
    # c2sp.org/signed-note: the text MAY contain empty lines; the LAST blank line separates.
    key = Ed25519PrivateKey.generate()
    verifier = parse_vkey(format_vkey("log", key.public_key().public_bytes_raw()))
    for text in ("a\n\nb\n", "a\n\n", "\n", "a\n\n\n"):
        assert open_note(sign_note(text, "log", key), verifier) == text


def test_same_name_other_key_is_ignored_not_trusted() -> None:
    # c2sp.org/signed-note: ignore signatures from unknown keys even if they share the name.
    trusted, impostor = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    verifier = parse_vkey(format_vkey("log", trusted.public_key().public_bytes_raw()))
    forged = sign_note("hello\n", "log", impostor)
    with pytest.raises(VerificationFailed, match="no signature by log"):
        open_note(forged, verifier)
    cosigned = forged + sign_note("hello\n", "log", trusted).split("\n\n")[1]
    assert open_note(cosigned, verifier) == "hello\n"


def test_a_bad_signature_by_the_trusted_key_rejects_the_note() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = parse_vkey(format_vkey("log", key.public_key().public_bytes_raw()))
    good = sign_note("hello\n", "log", key)
    bad_line = sign_note("other\n", "log", key).split("\n\n")[1]
    with pytest.raises(VerificationFailed, match="bad signature by log"):
        open_note(good + bad_line, verifier)


# --- checkpoints ---

ORIGIN = "onceonly.example/120114"
HASHES = [leaf_hash(f"entry {i}".encode()) for i in range(5)]


@pytest.fixture(scope="module")
def signer() -> tuple[Ed25519PrivateKey, NoteVerifier]:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    return key, parse_vkey(format_vkey(ORIGIN, key.public_key().public_bytes_raw()))


def test_checkpoint_body_format() -> None:
    checkpoint = Checkpoint(ORIGIN, 5, root(HASHES), ("time 2026-11-21",))
    body = checkpoint.to_body()
    assert body == (f"{ORIGIN}\n5\n{base64.b64encode(root(HASHES)).decode()}\ntime 2026-11-21\n")
    assert Checkpoint.parse(body) == checkpoint
    assert Checkpoint.parse(Checkpoint(ORIGIN, 0, EMPTY_ROOT).to_body()).size == 0


def test_c2sp_spec_example_body_parses() -> None:
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    checkpoint = Checkpoint.parse(body)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert checkpoint.to_body() == body


ROOT_B64 = base64.b64encode(b"\x01" * 32).decode()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (f"{ORIGIN}\n5\n{ROOT_B64}", "newline"),
        (f"{ORIGIN}\n5\n", "needs origin"),
        (f"\n5\n{ROOT_B64}\n", "origin line is empty"),
        (f"{ORIGIN}\t\n5\n{ROOT_B64}\n", "control character"),
        (f"{ORIGIN}\n05\n{ROOT_B64}\n", "tree size"),
        (f"{ORIGIN}\n\n{ROOT_B64}\n", "tree size"),
        (f"{ORIGIN}\n-5\n{ROOT_B64}\n", "tree size"),
        (f"{ORIGIN}\n+5\n{ROOT_B64}\n", "tree size"),
        (f"{ORIGIN}\n5 \n{ROOT_B64}\n", "tree size"),
        (f"{ORIGIN}\n５\n{ROOT_B64}\n", "tree size"),
        (f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n", "tree size"),
        (f"{ORIGIN}\n{'9' * 5000}\n{ROOT_B64}\n", "tree size"),
        (f"{ORIGIN}\n5\n{ROOT_B64[:-1]}\n", "root hash"),
        (f"{ORIGIN}\n5\n{base64.b64encode(b'x' * 31).decode()}\n", "root hash"),
        (f"{ORIGIN}\n5\n{base64.b64encode(b'x' * 32).hex()}\n", "root hash"),
        (f"{ORIGIN}\n5\n{ROOT_B64[:-2]}F=\n", "root hash"),  # non-zero pad bits
        (f"{ORIGIN}\n5\n{ROOT_B64}\n\n", "extension 1 line is empty"),
        (f"{ORIGIN}\n5\n{ROOT_B64}\nok\n\n", "extension 2 line is empty"),
    ],
)
def test_checkpoint_parse_names_the_bad_line(body: str, problem: str) -> None:
    with pytest.raises(VerificationFailed, match=problem):
        Checkpoint.parse(body)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origin": "", "size": 1, "root_hash": EMPTY_ROOT},
        {"origin": "a\nb", "size": 1, "root_hash": EMPTY_ROOT},
        {"origin": "log", "size": -1, "root_hash": EMPTY_ROOT},
        {"origin": "log", "size": True, "root_hash": EMPTY_ROOT},
        {"origin": "log", "size": 1, "root_hash": EMPTY_ROOT[:31]},
        {"origin": "log", "size": 1, "root_hash": EMPTY_ROOT, "extensions": ("",)},
        {"origin": "log", "size": 1, "root_hash": EMPTY_ROOT, "extensions": ("a\nb",)},
    ],
)
def test_checkpoint_refuses_to_hold_what_it_cannot_write(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Checkpoint(**kwargs)  # type: ignore[arg-type]


def _one_character_changes(text: str) -> list[tuple[int, str]]:
    changes = []
    for position, char in enumerate(text):
        for replacement in {chr(ord(char) ^ 1), "x" if char != "x" else "y", "\n" if char != "\n" else " "}:
            changes.append((position, text[:position] + replacement + text[position + 1 :]))
    return changes


def test_every_character_of_a_checkpoint_note_is_protected(
    signer: tuple[Ed25519PrivateKey, NoteVerifier],
) -> None:
    key, verifier = signer
    body = Checkpoint(ORIGIN, 5, root(HASHES), ("time 2026-11-21",)).to_body()
    signed = sign_note(body, ORIGIN, key)
    assert Checkpoint.parse(open_note(signed, verifier)).root_hash == root(HASHES)
    for position, changed in _one_character_changes(signed):
        with pytest.raises(VerificationFailed):
            Checkpoint.parse(open_note(changed, verifier))
            pytest.fail(f"changing character {position} of {signed!r} went unnoticed")


def test_every_character_of_the_vkey_is_protected(
    signer: tuple[Ed25519PrivateKey, NoteVerifier],
) -> None:
    key, verifier = signer
    signed = sign_note(Checkpoint(ORIGIN, 5, root(HASHES)).to_body(), ORIGIN, key)
    for position, changed in _one_character_changes(verifier.vkey):
        with pytest.raises(VerificationFailed):
            open_note(signed, parse_vkey(changed))
            pytest.fail(f"changing character {position} of the key went unnoticed")
