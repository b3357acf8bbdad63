"""`onceonly log verify | prove | consistency | check-proof`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from catalog import Catalog, log_leaves, log_nodes
from cli.main import app
from evidence.keys import SigningKey, open_key_store
from evidence.log import TransparencyLog, batch_receipt, node_id, record_use
from onceonly.settings import Settings

runner = CliRunner()


@pytest.fixture
def logged(home: Path) -> tuple[Settings, str]:
    """A catalog under ONCEONLY_HOME whose log holds 11 entries in 5 appends: with the leaves
    logging the checkpoint before each append, 15 leaves under checkpoints at 3, 8, 11, 13, 15."""
    settings = Settings()
    key, _ = open_key_store(settings).load_or_create(settings.log_origin)
    log = TransparencyLog(key, settings.log_origin)
    catalog = Catalog.connect(settings.catalog_url)
    with catalog.begin() as conn:
        for start, count in ((0, 3), (3, 4), (7, 2)):
            log.append(
                conn, [(f'{{"n":{i}}}'.encode(), "lifecycle", f"e{i}") for i in range(start, start + count)]
            )
        receipt = batch_receipt(
            batch_id="b1",
            content_sha256="00" * 32,
            contract="c@1",
            dataset="d",
            pulled=3,
            accepted=2,
            quarantined=1,
            certificates=0,
            landed_at="2026-11-21T00:00:00+00:00",
        )
        log.append(conn, [receipt])
        record_use(conn, log, matter="m", certificate_id="cid", township="120114001")
    catalog.dispose()
    return settings, key.vkey


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_verify_reports_counts_per_kind(logged: tuple[Settings, str]) -> None:
    code, out, _ = run("log", "verify")
    assert code == 0, out
    assert "CONSISTENT: 15 leaves (batch-receipt 1, checkpoint 4, lifecycle 9, use 1)" in out
    assert "5 signed checkpoints recomputed with sha256" in out


def test_verify_names_the_first_tampered_row(logged: tuple[Settings, str]) -> None:
    settings, _ = logged
    key, _ = open_key_store(settings).load_or_create(settings.log_origin)
    engine = sa.create_engine(settings.catalog_url)
    with engine.begin() as conn:  # 16 leaves or more: the first stored interior node, (4, 0)
        entries = [(f'{{"n":{i}}}'.encode(), "lifecycle", f"e{i}") for i in range(11, 19)]
        TransparencyLog(key, settings.log_origin).append(conn, entries)
    assert run("log", "verify")[0] == 0
    with engine.begin() as conn:
        conn.execute(sa.update(log_nodes).where(log_nodes.c.node_id == node_id(4, 0)).values(hash=b"x" * 32))
    code, _, err = run("log", "verify")
    assert code == 1 and "INCONSISTENT: interior node (4, 0) differs" in err
    with engine.begin() as conn:
        conn.execute(sa.update(log_leaves).where(log_leaves.c.leaf_index == 1).values(entry=b'{"n":100}'))
    code, _, err = run("log", "verify")
    assert code == 1 and "INCONSISTENT: leaf 1 (lifecycle e1): its entry does not hash" in err
    engine.dispose()


def test_verify_with_another_trusted_key_fails(logged: tuple[Settings, str]) -> None:
    settings, _ = logged
    other = SigningKey.generate(settings.log_origin).vkey
    code, _, err = run("log", "verify", "--trusted-key", other)
    assert code == 1 and "checkpoint at size 3: note has no signature" in err


def test_prove_and_check_offline(
    logged: tuple[Settings, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, vkey = logged
    proof = tmp_path / "proof.json"
    code, out, _ = run("log", "prove", "--leaf", "12")
    assert code == 0
    doc = json.loads(out)
    assert doc["format"] == "onceonly-inclusion-proof/1" and doc["tree_size"] == 15
    assert doc["leaf"]["kind"] == "batch-receipt" and '"batch":"b1"' in doc["leaf"]["entry"]
    proof.write_text(out, encoding="utf-8")
    # Offline: no catalog, no keys under this home.
    monkeypatch.setenv("ONCEONLY_HOME", str(tmp_path / "elsewhere"))
    code, out, err = run("log", "check-proof", str(proof), "--trusted-key", vkey)
    assert code == 0 and "VALID: leaf 12 (batch-receipt b1) is in the log at size 15" in out
    assert not (tmp_path / "elsewhere").exists()
    code, out, err = run("log", "check-proof", str(proof))
    assert code == 0 and "keys carried in the document" in err

    tampered = dict(doc, inclusion_proof=[doc["inclusion_proof"][0][:-1] + "0", *doc["inclusion_proof"][1:]])
    if tampered["inclusion_proof"] == doc["inclusion_proof"]:
        tampered["inclusion_proof"][0] = tampered["inclusion_proof"][0][:-1] + "1"
    proof.write_text(json.dumps(tampered), encoding="utf-8")
    code, _, err = run("log", "check-proof", str(proof), "--trusted-key", vkey)
    assert code == 1 and "INVALID" in err

    entry = dict(doc, leaf=dict(doc["leaf"], entry=doc["leaf"]["entry"].replace('"pulled":3', '"pulled":4')))
    proof.write_text(json.dumps(entry), encoding="utf-8")
    code, _, err = run("log", "check-proof", str(proof), "--trusted-key", vkey)
    assert code == 1 and "leaf.entry does not hash to leaf.hash" in err

    other = SigningKey.generate("someone.else/log").vkey
    proof.write_text(json.dumps(doc), encoding="utf-8")
    code, _, err = run("log", "check-proof", str(proof), "--trusted-key", other)
    assert code == 1 and "checkpoint: note has no signature" in err


def test_consistency_between_checkpoints_and_unsigned_sizes(
    logged: tuple[Settings, str], tmp_path: Path
) -> None:
    _, vkey = logged
    path = tmp_path / "c.json"
    code, _, _ = run("log", "consistency", "--from", "3", "--to", "8", "-o", str(path))
    assert code == 0
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["old_checkpoint"] and doc["new_checkpoint"] and doc["consistency_proof"]
    code, out, _ = run("log", "check-proof", str(path), "--trusted-key", vkey)
    assert code == 0 and "VALID: the log at size 8 extends the log at size 3" in out
    assert "unsigned" not in out

    code, out, _ = run("log", "consistency", "--from", "5")
    path.write_text(out, encoding="utf-8")
    code, out, err = run("log", "check-proof", str(path), "--trusted-key", vkey)
    assert code == 0 and "size 15 extends the log at size 5 (unsigned root)" in out
    assert "no old_checkpoint: the root of size 5 is not signed" in err

    swapped = json.loads(path.read_text(encoding="utf-8"))
    swapped["old_root"], swapped["new_root"] = swapped["new_root"], swapped["old_root"]
    path.write_text(json.dumps(swapped), encoding="utf-8")
    code, _, err = run("log", "check-proof", str(path), "--trusted-key", vkey)
    assert code == 1 and "INVALID: new_checkpoint signs another root hash" in err


def test_bad_requests_are_clear(logged: tuple[Settings, str], tmp_path: Path) -> None:
    code, _, err = run("log", "prove", "--leaf", "15")
    assert code != 0
    path = tmp_path / "x.json"
    path.write_text("{not json", encoding="utf-8")
    code, _, err = run("log", "check-proof", str(path))
    assert code == 2 and "cannot read" in err
    path.write_text('{"format": "something/1"}', encoding="utf-8")
    code, _, err = run("log", "check-proof", str(path))
    assert code == 1 and "unknown proof format" in err


def test_verify_reports_checkpoints_signed_by_a_compromised_key_from_its_date(
    logged: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, vkey = logged
    key_id = open_key_store(settings).load(settings.log_origin).key_id.hex()
    published = tmp_path / "keyring.json"
    assert run("keys", "export-public", "--keyring", "-o", str(published))[0] == 0
    code, out, _ = run("log", "verify", "--keyring", str(published))
    assert code == 0 and "CONSISTENT" in out

    # compromised after every checkpoint was stored: nothing to report
    assert run("keys", "compromise", key_id, "--since", "2999-01-01")[0] == 0
    assert run("keys", "export-public", "--keyring", "-o", str(published))[0] == 0
    code, out, _ = run("log", "verify", "--keyring", str(published))
    assert code == 0 and "CONSISTENT" in out

    # compromised since before they were stored: each checkpoint is reported, by size and key
    assert run("keys", "compromise", key_id, "--since", "2020-01-01")[0] == 0
    assert run("keys", "export-public", "--keyring", "-o", str(published))[0] == 0
    code, out, err = run("log", "verify", "--keyring", str(published))
    assert code == 1 and "CONSISTENT" in out
    reported = [line for line in err.splitlines() if line.startswith("KEY NOT USABLE: checkpoint at size")]
    assert len(reported) == 5 and key_id in reported[0] and "created_at" in reported[0]
    assert "5 checkpoint(s)" in err
    # the key store's own keyring is used when no file is given
    assert run("log", "verify")[0] == 1
    # an explicit trusted key skips the keyring (and its compromise marks)
    assert run("log", "verify", "--trusted-key", vkey)[0] == 0


def test_verify_refuses_a_malformed_keyring_file(logged: tuple[Settings, str], tmp_path: Path) -> None:
    bad = tmp_path / "keyring.json"
    bad.write_text('{"format": "something else"}', encoding="utf-8")
    code, _, err = run("log", "verify", "--keyring", str(bad))
    assert code == 2 and "keyring" in err


def test_publish_then_check_the_published_folder(logged: tuple[Settings, str], tmp_path: Path) -> None:
    _, vkey = logged
    folder = tmp_path / "www" / "log"
    code, out, _ = run("log", "publish", str(folder))
    assert code == 0, out
    assert f"published size 15 to {folder}: 1 hash tiles, 1 entry bundles, checkpoint; root " in out
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "checkpoint",
        "tile/0/000.p/15",
        "tile/entries/000.p/15",
    ]
    code, out, _ = run("log", "publish", str(folder))
    assert code == 0 and out == f"{folder}: already published at size 15; nothing new\n"

    code, out, err = run(
        "log", "check-proof", "--tiles", str(folder), "--leaf", "9", "--all", "--trusted-key", vkey
    )
    assert code == 0, err
    assert f"VALID: the tiles at {folder} give the root of the signed checkpoint of " in out
    assert "VALID: leaf 9 is in the log at size 15" in out
    assert "VALID: every entry and tile of the 15 leaves recomputed" in out
    code, out, _ = run("log", "check-proof", "--tiles", str(folder), "--leaf", "3")  # the home's keys
    assert code == 0 and "VALID: leaf 3 is in the log at size 15" in out

    other = SigningKey.generate("someone.else/log").vkey
    code, _, err = run("log", "check-proof", "--tiles", str(folder), "--trusted-key", other)
    assert code == 1 and "INVALID: checkpoint: note has no signature by someone.else/log" in err
    code, _, err = run("log", "check-proof", "--tiles", str(folder), "--leaf", "15", "--trusted-key", vkey)
    assert code == 1 and "INVALID: leaf 15 is not in the published tree of size 15" in err
    code, _, err = run("log", "check-proof", "--tiles", str(tmp_path / "nowhere"), "--trusted-key", vkey)
    assert code == 2 and "INVALID: cannot read the log at" in err and "checkpoint is not published" in err

    bundle = folder / "tile/entries/000.p/15"
    bundle.write_bytes(bundle.read_bytes().replace(b'"n":3', b'"n":4'))
    code, _, err = run("log", "check-proof", "--tiles", str(folder), "--leaf", "4", "--trusted-key", vkey)
    assert code == 1 and "INVALID: leaf 4: inclusion proof does not lead to the expected root hash" in err
    code, _, err = run("log", "check-proof", "--tiles", str(folder), "--all", "--trusted-key", vkey)
    assert code == 1 and "INVALID: tile/entries/000.p/15: entry 4 (leaf 4) does not hash" in err


def test_check_a_published_log_against_a_checkpoint_saved_earlier(
    logged: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, vkey = logged
    from evidence.log import checkpoint_at

    catalog = Catalog.connect(settings.catalog_url)
    with catalog.read() as conn:
        saved = checkpoint_at(conn, 8)
    catalog.dispose()
    assert saved is not None
    old = tmp_path / "old.checkpoint"
    old.write_text(saved.rstrip("\n"), encoding="utf-8")  # as `$(...)` would have kept it
    folder = tmp_path / "log"
    assert run("log", "publish", str(folder))[0] == 0
    code, out, err = run(
        "log", "check-proof", "--tiles", str(folder), "--consistency-from", str(old), "--trusted-key", vkey
    )
    assert code == 0, err
    assert "VALID: the log at size 15 extends the checkpoint of size 8" in out

    other = SigningKey.generate(settings.log_origin)
    forged = other.sign_note(saved.split("\n\n")[0] + "\n")
    old.write_text(forged, encoding="utf-8")
    code, _, err = run(
        "log", "check-proof", "--tiles", str(folder), "--consistency-from", str(old), "--trusted-key", vkey
    )
    assert code == 1 and f"INVALID: the old checkpoint {old}: note has no signature" in err


def test_check_proof_takes_a_file_or_tiles(logged: tuple[Settings, str], tmp_path: Path) -> None:
    code, _, err = run("log", "check-proof")
    assert code == 2 and "give a PROOF_FILE or --tiles DIR_OR_URL" in err
    code, _, err = run("log", "check-proof", str(tmp_path / "p.json"), "--tiles", str(tmp_path))
    assert code == 2 and "give a PROOF_FILE or --tiles DIR_OR_URL" in err
    code, _, err = run("log", "check-proof", str(tmp_path / "p.json"), "--leaf", "3")
    assert code == 2 and "--leaf, --consistency-from and --all check a log published with --tiles" in err


def test_publish_an_empty_log(home: Path, tmp_path: Path) -> None:
    Catalog.connect(Settings().catalog_url).dispose()
    code, out, _ = run("log", "publish", str(tmp_path / "log"))
    assert code == 0 and out == "nothing to publish: the log has no checkpoint yet\n"
    assert not (tmp_path / "log").exists()


def test_checking_a_published_folder_needs_neither_the_catalog_nor_arrow(
    logged: tuple[Settings, str], tmp_path: Path
) -> None:
    from test_cli_startup import imported

    _, vkey = logged
    folder = tmp_path / "log"
    assert run("log", "publish", str(folder))[0] == 0
    args = ["log", "check-proof", "--tiles", str(folder), "--leaf", "9", "--trusted-key", vkey]
    modules, done = imported(args, tmp_path / "elsewhere", tmp_path)
    assert done.returncode == 0 and "VALID: leaf 9 is in the log at size 15" in done.stdout, done.stderr[
        -2000:
    ]
    loaded = modules & {"pyarrow", "sqlalchemy", "catalog", "prefect", "great_expectations", "httpx"}
    assert not loaded, f"check-proof --tiles DIR imported {sorted(loaded)}"
