"""``onceonly certificates parse`` and the lifecycle commands' refusals, from the command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from evidence.identifier import CertificateId
from onceonly.errors import CatalogError

VALID = str(CertificateId.build("11100000000019342N001", "111201140000000196", 42, 3))


def test_parse_prints_the_parts_of_a_valid_identifier() -> None:
    result = CliRunner().invoke(app, ["certificates", "parse", VALID])
    assert result.exit_code == 0, result.output
    assert f"VALID: {VALID}" in result.output
    for part in ("11100000000019342N001", "111201140000000196", "00000042", "003", "ISO 7064 MOD 37,36"):
        assert part in result.output


def test_parse_names_the_first_problem() -> None:
    runner = CliRunner()
    wrong_check = VALID[:-1] + ("0" if VALID[-1] != "0" else "1")
    cases = {
        wrong_check: "check character is",
        VALID.replace("1.2.156.3005.2.", "1.2.156.3005.3.", 1): "does not start with",
        VALID.replace(
            "111201140000000196", "111201140000000197", 1
        ): "not a valid unified social credit code",
        VALID.replace(".003.", ".3.", 1): "version '3' is not 3 digits",
        VALID.rsplit(".", 1)[0]: "parts after the prefix, expected 5",
    }
    for text, problem in cases.items():
        result = runner.invoke(app, ["certificates", "parse", text])
        assert result.exit_code == 1, text
        assert "INVALID" in result.output and problem in result.output, (text, result.output)


def test_lifecycle_commands_need_a_reason(home: Path) -> None:
    result = CliRunner().invoke(app, ["certificates", "suspend", VALID])
    assert result.exit_code == 2 and "--reason" in result.output


def test_history_on_a_home_with_no_catalog_says_so(home: Path) -> None:
    result = CliRunner().invoke(app, ["certificates", "history", VALID])
    assert isinstance(result.exception, CatalogError)
    assert not (home / "catalog.db").exists()


def test_rotate_to_sm2_then_publish_export_and_verify(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The keyring's active key signs after `keys rotate --suite sm2-sm3`, though
    ONCEONLY_SIGNATURE_SUITE still says ed25519 (a warning names the fix); a checkpoint seen
    before the rotation, passed as `$(jq -r .checkpoint old.json)`, still proves consistency."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "lake"))
    from landing_harness import ORIGIN, Harness, household_row

    from catalog import Catalog
    from evidence.keys import open_key_store
    from onceonly.settings import Settings

    monkeypatch.setenv("ONCEONLY_LOG_ORIGIN", ORIGIN)
    monkeypatch.setenv("ONCEONLY_SIGNATURE_SUITE", "ed25519")
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    cli("keys", "init")
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url)
    harness = Harness(catalog, settings.lake_dir, open_key_store(settings).load(ORIGIN))
    harness.land([household_row(1), household_row(2)], before=None, after={"watermark": 1})
    catalog.dispose()
    cli("certificates", "publish-status")
    listed = json.loads(cli("certificates", "list", "--json"))
    kept, suspended = (item["id"] for item in sorted(listed, key=lambda i: i["leaf_index"]))
    cli("certificates", "export", kept, "-o", str(tmp_path / "old.json"))
    old_checkpoint = json.loads((tmp_path / "old.json").read_text(encoding="utf-8"))["checkpoint"]

    rotated = cli("keys", "rotate", "--suite", "sm2-sm3")
    assert "active  sm2-sm3 key" in rotated
    assert "ONCEONLY_SIGNATURE_SUITE is ed25519; it only chooses the suite of new keys" in rotated
    with caplog.at_level(logging.WARNING, logger="evidence.keys"):
        cli("certificates", "suspend", suspended, "--reason", "under investigation")  # signs: a checkpoint
        cli("certificates", "publish-status")
    warnings = [r.getMessage() for r in caplog.records if r.name == "evidence.keys"]
    assert warnings and "set ONCEONLY_SIGNATURE_SUITE=sm2-sm3" in warnings[0]

    as_jq_r = old_checkpoint.rstrip("\n")  # "$(jq -r .checkpoint old.json)": the final newline is gone
    cli("certificates", "export", kept, "-o", str(tmp_path / "new.json"), "--consistency-from", as_jq_r)
    bundle = json.loads((tmp_path / "new.json").read_text(encoding="utf-8"))
    assert bundle["public_key"].split("+")[0] == ORIGIN and "consistency" in bundle
    cli("keys", "export-public", "--keyring", "-o", str(tmp_path / "keyring.json"))
    (tmp_path / "old.txt").write_text(old_checkpoint + "\n", encoding="utf-8")  # `jq -r ... > old.txt`
    for given in (as_jq_r, str(tmp_path / "old.txt")):
        out = cli(
            "verify",
            str(tmp_path / "new.json"),
            "--keyring",
            str(tmp_path / "keyring.json"),
            "--consistency-from",
            given,
        )
        assert f"VALID: certificate {kept}" in out and "extends the checkpoint of size" in out
    # Without the keyring, the checkpoint signed by the retired ed25519 key cannot be checked: said so.
    result = runner.invoke(app, ["verify", str(tmp_path / "new.json"), "--consistency-from", as_jq_r])
    assert result.exit_code == 1
    assert "the older checkpoint (--consistency-from): note has no signature by" in result.output
    assert "--keyring" in result.output


def test_list_has_a_header_row_and_masks_holders(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "sharing"))
    from catalog_records import Records

    from catalog import Catalog
    from onceonly.settings import Settings

    person = "120114199003070808"
    catalog = Catalog.connect(Settings().catalog_url)
    cid = Records(catalog).certificate(person)
    catalog.dispose()
    result = CliRunner().invoke(app, ["certificates", "list"])
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()[:2]
    assert header.split() == [
        "id",
        "type",
        "holder",
        "holder",
        "id",
        "status",
        "issued",
        "valid",
        "to",
        "leaf",
    ]
    assert row.startswith(cid) and "120114********0808" in row and person not in result.output
    assert "张*" in row and "张三" not in result.output
