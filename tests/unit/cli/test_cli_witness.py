"""``onceonly witness init|state|submit``, and ``certificates export`` / ``verify --witness``: a
bundle carries the cosignatures the catalog kept for its checkpoint, and verify requires them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from onceonly.errors import EvidenceError

WITNESS = "witness.baodi.example/w1"


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_init_creates_the_witness_key_and_prints_its_vkey(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evidence.cosignature import parse_cosigner_vkey

    out = cli("witness", "init", "--name", WITNESS)
    vkey = out.splitlines()[0]
    assert parse_cosigner_vkey(vkey).name == WITNESS
    assert (home / "witness" / "witness.vkey").read_text(encoding="ascii") == vkey + "\n"
    assert (home / "witness" / "witness.key.pem").stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(app, ["witness", "init", "--name", WITNESS])
    assert isinstance(again.exception, EvidenceError) and "already exists" in str(again.exception)
    monkeypatch.delenv("ONCEONLY_KEY_PASSPHRASE")
    other = CliRunner().invoke(app, ["witness", "init", "--name", WITNESS, "--dir", str(home / "w2")])
    assert isinstance(other.exception, EvidenceError) and "ONCEONLY_KEY_PASSPHRASE" in str(other.exception)


def test_state_shows_sizes_and_refusals(home: Path) -> None:
    from evidence.cosignature import Cosigner
    from evidence.keys import SigningKey
    from evidence.merkle import leaf_hash, root
    from evidence.note import Checkpoint
    from evidence.witness import AddCheckpoint, Witness, WitnessedLog, WitnessState

    result = CliRunner().invoke(app, ["witness", "state"])
    assert isinstance(result.exception, EvidenceError) and "no witness state" in str(result.exception)
    key = SigningKey.generate("onceonly.example/wuqing/evidence")
    witness = Witness(
        Cosigner.generate(WITNESS),
        WitnessState(home / "witness" / "state.db"),
        [WitnessedLog(key.name, (key.verifier,))],
    )

    def note(*entries: bytes) -> str:
        return key.sign_note(
            Checkpoint(key.name, len(entries), root([leaf_hash(e) for e in entries])).to_body()
        )

    assert witness.add_checkpoint(AddCheckpoint(0, (), note(b"a", b"b")).to_body()).status == 200
    assert witness.add_checkpoint(AddCheckpoint(2, (), note(b"a", b"x")).to_body()).status == 422
    out = cli("witness", "state")
    assert "onceonly.example/wuqing/evidence  cosigned up to size 2" in out
    assert "refused 422  onceonly.example/wuqing/evidence: the checkpoint of size 2 has another root" in out


def test_submit_needs_configured_witnesses(home: Path) -> None:
    result = CliRunner().invoke(app, ["witness", "submit"])
    assert isinstance(result.exception, EvidenceError) and "ONCEONLY_WITNESSES" in str(result.exception)


def test_min_witnesses_must_fit_the_keys_given(tmp_path: Path) -> None:
    from evidence.cosignature import Cosigner

    bundle = tmp_path / "b.json"
    bundle.write_text("{}", encoding="utf-8")
    vkey = Cosigner.generate(WITNESS).vkey
    for args in (
        ["--min-witnesses", "1"],
        ["--witness", vkey, "--min-witnesses", "2"],
        ["--witness", vkey, "--min-witnesses", "0"],
    ):
        result = CliRunner().invoke(app, ["verify", str(bundle), *args])
        assert result.exit_code == 2 and "--min-witnesses" in result.output, args


def test_export_carries_the_kept_cosignatures_and_verify_requires_them(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "lake"))
    from landing_harness import ORIGIN, Harness, household_row

    from catalog import Catalog
    from evidence.cosignature import Cosigner
    from evidence.keys import open_key_store
    from evidence.log import latest_checkpoint
    from evidence.note import split_note
    from evidence.witness import record_cosignatures
    from onceonly.settings import Settings

    monkeypatch.setenv("ONCEONLY_LOG_ORIGIN", ORIGIN)
    cli("keys", "init")
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url)
    harness = Harness(catalog, settings.lake_dir, open_key_store(settings).load(ORIGIN))
    harness.land([household_row(1)], before=None, after={"watermark": 1})
    cli("certificates", "publish-status")
    (cert_id,) = (item["id"] for item in json.loads(cli("certificates", "list", "--json")))
    log_vkey = (settings.keys_dir / f"{ORIGIN.replace('/', '_')}.vkey").read_text(encoding="ascii").strip()

    monkeypatch.setenv("ONCEONLY_WITNESSES", json.dumps([{"url": "http://127.0.0.1:9", "vkey": "unused"}]))
    bare = CliRunner().invoke(app, ["certificates", "export", cert_id, "-o", str(tmp_path / "bare.json")])
    assert bare.exit_code == 0 and "no witness cosignature yet" in bare.output
    monkeypatch.delenv("ONCEONLY_WITNESSES")

    baodi, jinghai = Cosigner.generate(WITNESS), Cosigner.generate("witness.jinghai.example/w1")
    with catalog.begin() as conn:  # as submit_checkpoint keeps them, after checking each
        size, note = latest_checkpoint(conn) or (0, "")
        text = split_note(note)[0]
        record_cosignatures(conn, size, [baodi.verifier.verify(text, baodi.cosign(text))])
    catalog.dispose()
    out = cli("certificates", "export", cert_id, "-o", str(tmp_path / "b.json"))
    assert "cosigned by 1 witness(es)" in out
    bundle = str(tmp_path / "b.json")

    out = cli("verify", bundle, "--trusted-key", log_vkey, "--witness", baodi.vkey)
    assert f"VALID: certificate {cert_id}" in out and f"cosigned by witness(es) {baodi.verifier.label}" in out
    cli("verify", bundle, "--witness", baodi.vkey, "--witness", jinghai.vkey, "--min-witnesses", "1")
    for args, problem in (
        (["--witness", jinghai.vkey], "0 valid cosignature(s) of the 1 required"),
        (["--witness", baodi.vkey, "--witness", jinghai.vkey], "1 valid cosignature(s) of the 2 required"),
        (["--witness", log_vkey], "a cosignature/v1 key has type 0x04"),
    ):
        assert problem in cli("verify", bundle, *args, code=1)
    assert "0 valid cosignature" in cli(
        "verify", str(tmp_path / "bare.json"), "--witness", baodi.vkey, code=1
    )
