"""`onceonly keys`: init, rotate, list, export-public, compromise — as a user runs them."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from evidence.keys import Keyring, check_key_status
from evidence.note import open_note_signers, parse_vkey
from onceonly.errors import EvidenceError, VerificationFailed

ORIGIN = "onceonly.example/wuqing/evidence"


def run(*args: str) -> str:
    result = CliRunner().invoke(app, ["keys", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def keys_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONCEONLY_LOG_ORIGIN", ORIGIN)
    monkeypatch.delenv("ONCEONLY_SIGNATURE_SUITE", raising=False)
    monkeypatch.delenv("ONCEONLY_KEY_PASSPHRASE_SECRET", raising=False)
    return home


def test_init_rotate_list_export_compromise(
    keys_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "no keys yet" in run("list")
    monkeypatch.setenv("ONCEONLY_SIGNATURE_SUITE", "sm2-sm3")
    out = run("init")
    assert "created sm2-sm3 key" in out
    first_vkey = out.strip().splitlines()[-1]
    assert parse_vkey(first_vkey).suite == "sm2-sm3"
    with pytest.raises(EvidenceError, match="already exists"):
        CliRunner().invoke(app, ["keys", "init"], catch_exceptions=False)

    out = run("rotate", "--suite", "ecdsa-p256-sha256")
    assert "retired sm2-sm3 key" in out and "active  ecdsa-p256-sha256 key" in out
    out = run("rotate", "--suite", "ed25519")
    last_vkey = out.strip().splitlines()[-1]

    listed = json.loads(run("list", "--json"))
    assert [k["suite"] for k in listed] == ["sm2-sm3", "ecdsa-p256-sha256", "ed25519"]
    assert [k["retired"] is None for k in listed] == [False, False, True]
    table = run("list")
    assert "compromised since" in table and all(k["key_id"] in table for k in listed)

    exported = run("export-public").splitlines()
    assert exported[0] == first_vkey and exported[-1] == last_vkey and len(exported) == 3
    target = tmp_path / "district.vkeys"
    run("export-public", ORIGIN, "-o", str(target))
    assert target.read_text().splitlines() == exported
    keyring_file = tmp_path / "keyring.json"
    run("export-public", "--keyring", "-o", str(keyring_file))
    keyring = Keyring.load(keyring_file)
    assert [r.vkey for r in keyring.keys] == exported

    out = run("compromise", listed[0]["key_id"], "--since", "2026-11-01")
    assert f"{listed[0]['key_id']} (sm2-sm3) is compromised since 2026-11-01T00:00:00Z" in out
    keyring = Keyring.load(keys_home / "keys")
    with pytest.raises(VerificationFailed, match="compromised since 2026-11-01"):
        check_key_status(listed[0]["key_id"], dt.datetime(2026, 11, 2, tzinfo=dt.UTC), keyring)


def test_the_exported_keys_verify_what_each_key_signed(keys_home: Path) -> None:
    from evidence.keys import KeyStore

    run("init", "--suite", "sm2-sm3")
    store = KeyStore(keys_home / "keys", os.environ["ONCEONLY_KEY_PASSPHRASE"].encode())
    old_note = store.load(ORIGIN).sign_note("old\n")
    run("rotate", "--suite", "ed25519")
    new_note = store.load(ORIGIN).sign_note("new\n")
    verifiers = [parse_vkey(line) for line in run("export-public").splitlines()]
    assert open_note_signers(old_note, verifiers)[1][0].suite == "sm2-sm3"
    assert open_note_signers(new_note, verifiers)[1][0].suite == "ed25519"


def test_errors_from_a_shell_are_one_clear_line(keys_home: Path) -> None:
    env = {**os.environ, "ONCEONLY_SIGNATURE_SUITE": "ed25519", "COLUMNS": "300"}
    command = [sys.executable, "-m", "cli.main", "keys"]
    done = subprocess.run([*command, "init"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    wrong = {**env, "ONCEONLY_KEY_PASSPHRASE": "not the passphrase"}
    done = subprocess.run([*command, "rotate"], env=wrong, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "the passphrase is wrong" in done.stderr and "not the passphrase" not in done.stderr
    assert "Traceback" not in done.stderr
    done = subprocess.run(
        [*command, "compromise", "deadbeef", "--since", "2026-11-01"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "no key 'deadbeef'" in done.stderr
    done = subprocess.run([*command, "init", "--suite", "rsa"], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "known suites: ed25519, ecdsa-p256-sha256, sm2-sm3" in done.stderr
    unset = {k: v for k, v in env.items() if k != "ONCEONLY_KEY_PASSPHRASE"}
    done = subprocess.run([*command, "rotate"], env=unset, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "ONCEONLY_KEY_PASSPHRASE is not set" in done.stderr


def test_list_has_a_header_row(keys_home: Path) -> None:
    run("init")
    header, row = run("list").splitlines()[:2]
    assert header.split() == [
        "name",
        "suite",
        "key",
        "id",
        "status",
        "created",
        "retired",
        "compromised",
        "since",
    ]
    assert row.startswith(ORIGIN) and " active " in row
