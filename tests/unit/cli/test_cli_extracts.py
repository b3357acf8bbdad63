"""``onceonly extracts write|list|since`` and ``onceonly verify-extract`` on a home with two
residents landed in its signed log (typer's CliRunner on the extracts app)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.extracts import app, show_for_demo, verify_extract_command

SHARING_TESTS = Path(__file__).parents[1] / "sharing"
MINE, OTHER = "120114001000", "120114002000"
runner = CliRunner()
verify_app = typer.Typer()
verify_app.command("verify-extract")(verify_extract_command)
verify_app.command("unused")(lambda: None)  # a group, so that the command is named


@pytest.fixture
def people(home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> dict[str, str]:
    monkeypatch.syspath_prepend(str(SHARING_TESTS))
    from counter_home import land_people

    return land_people(home, monkeypatch)


def test_write_list_since_and_verify(
    home: Path, people: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = runner.invoke(app, ["write"])
    assert written.exit_code == 0, written.output
    assert "写出 2 份" in written.output and people["mine"] not in written.output

    full = runner.invoke(app, ["write", "--full", "-t", MINE])
    assert full.exit_code == 0, full.output

    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    records = json.loads(listed.output)
    assert [(r["township"], r["extract_no"], r["kind"]) for r in records] == [
        (MINE, 1, "full"),
        (MINE, 2, "full"),
        (OTHER, 1, "full"),
    ]

    since = runner.invoke(app, ["since", "1", "-t", MINE, "--to", str(tmp_path / "usb")])
    assert since.exit_code == 0, since.output
    assert "apply in this order: 2" in since.output
    copied = tmp_path / "usb" / "extract=000002"
    assert sorted(p.name for p in copied.iterdir()) == [
        "certificates.parquet",
        "certificates.xlsx",
        "manifest.txt",
        "rows.sha256",
    ]
    assert (copied.stat().st_mode & 0o777) == 0o700
    assert "up to date" in runner.invoke(app, ["since", "2", "-t", MINE]).output
    unknown = runner.invoke(app, ["since", "7", "-t", MINE])
    assert unknown.exit_code != 0 and "no extract number 7" in str(unknown.exception or unknown.output)
    bad = runner.invoke(app, ["since", "1", "-t", "120114999999"])
    assert bad.exit_code == 2 and "not a township code" in bad.output

    folder = home / "extracts" / f"township={MINE}" / "extract=000002"
    ok = runner.invoke(verify_app, ["verify-extract", str(folder)])
    assert ok.exit_code == 0 and ok.output.startswith("VALID: 镇街"), ok.output
    vkey = next((home / "keys").glob("*.vkey")).read_text(encoding="utf-8").strip()
    assert runner.invoke(verify_app, ["verify-extract", str(copied), "--key", vkey]).exit_code == 0

    parquet = copied / "certificates.parquet"
    parquet.write_bytes(
        parquet.read_bytes().replace(b"\xe6\x9c\x89\xe6\x95\x88", b"\xe6\x92\xa4\xe9\x94\x80", 1)
    )
    changed = runner.invoke(verify_app, ["verify-extract", str(copied), "--key", vkey])
    assert changed.exit_code == 1 and "INVALID" in changed.output
    assert "certificates.parquet was changed" in changed.output

    capsys.readouterr()
    from onceonly.settings import Settings

    show_for_demo(Settings())
    shown = capsys.readouterr().out
    assert "数据回流: 2 township(s)" in shown and "2 verified offline" in shown
    assert "INVALID" not in shown and "VALID: 镇街" in shown


def test_since_to_hands_on_only_the_manifest_and_the_files_it_lists(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.syspath_prepend(str(SHARING_TESTS))
    from counter_home import land_people

    from flows.pipeline import pipeline_for
    from onceonly.settings import Settings
    from sharing.extracts import extract_policy, refresh_extracts

    land_people(home, monkeypatch)
    settings = Settings()
    pipeline = pipeline_for(settings)
    policy = extract_policy(settings.contracts_dir, settings.matters_file)
    refresh_extracts(pipeline.catalog, settings.extracts_dir, pipeline.log, policy)
    folder = settings.extracts_dir / f"township={MINE}" / "extract=000001"
    (folder / ".certificates.xlsx.a1b2.tmp").write_bytes(b"partial")  # left by a crash, say

    since = runner.invoke(app, ["since", "0", "-t", MINE, "--to", str(tmp_path / "usb")])
    assert since.exit_code == 0, since.output
    copied = tmp_path / "usb" / "extract=000001"
    assert sorted(p.name for p in copied.iterdir()) == [
        "certificates.parquet",
        "certificates.xlsx",
        "manifest.txt",
        "rows.sha256",
    ]
    vkey = next((home / "keys").glob("*.vkey")).read_text(encoding="utf-8").strip()
    assert runner.invoke(verify_app, ["verify-extract", str(copied), "--key", vkey]).exit_code == 0
