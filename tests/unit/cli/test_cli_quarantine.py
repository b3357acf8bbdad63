"""``onceonly quarantine``: bad input refused clearly; departments from the catalog; keys masked."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from catalog import Catalog, batches, quarantine, utcnow
from cli.main import app
from connectors.registration import parse_registration
from connectors.registry import register, remove
from contracts.identifiers import citizen_id_check_char
from lake.quarantine import QuarantineNotFound
from onceonly.errors import CatalogError
from onceonly.privacy import scrub_text
from onceonly.settings import Settings

DISABILITY_CONTRACT = Path(__file__).resolve().parents[1] / "lake" / "disability_contract.yaml"
_ID = "12011419900307007" + citizen_id_check_char("12011419900307007")
CARD = _ID + "42"  # a 残疾人证 number: the holder's citizen ID, category 4, grade 2
BAD_CARD = "12011419850101002" + citizen_id_check_char("12011419850101002") + "92"  # no category 9


def test_a_home_where_nothing_ran_says_so_and_creates_no_catalog(home: Path) -> None:
    for args in (["list"], ["show", "1"], ["report"]):
        result = CliRunner().invoke(app, ["quarantine", *args])
        assert isinstance(result.exception, CatalogError), args
        assert "nothing has run under this ONCEONLY_HOME" in str(result.exception)
    assert not (home / "catalog.db").exists()


def test_unknown_entry_and_status_are_refused(home: Path) -> None:
    Catalog.connect(Settings().catalog_url).dispose()
    shown = CliRunner().invoke(app, ["quarantine", "show", "42"])
    assert isinstance(shown.exception, QuarantineNotFound)
    assert "no quarantine entry 42" in str(shown.exception)
    listed = CliRunner().invoke(app, ["quarantine", "list", "--status", "closed"])
    assert listed.exit_code == 2 and "open, resolved or all" in listed.output
    empty = CliRunner().invoke(app, ["quarantine", "report", "--department", "民政"])
    assert empty.exit_code == 0 and "nothing to fix" in empty.output


def _quarantined_under(catalog: Catalog, connector: str, dataset: str, keys: dict[str, str]) -> None:
    """A landed batch of ``connector`` whose rows ``keys`` (record key → rule) were quarantined."""
    now = utcnow()
    with catalog.begin() as conn:
        conn.execute(
            sa.insert(batches).values(
                batch_id="b" * 32,
                run_id="run-1",
                connector=connector,
                dataset=dataset,
                contract_id=dataset,
                contract_version="1.0.0",
                pulled=len(keys) + 1,
                accepted=1,
                quarantined=len(keys),
                warnings=0,
                certificates=0,
                content_sha256="0" * 64,
                landed_at=now,
            )
        )
        for key, rule in keys.items():
            conn.execute(
                sa.insert(quarantine).values(
                    batch_id="b" * 32,
                    dataset=dataset,
                    contract_id=dataset,
                    contract_version="1.0.0",
                    record_key=key,
                    rule=rule,
                    column=rule.split(".")[0],
                    severity="error",
                    value_masked=key[0] + "*" * (len(key) - 1)
                    if rule.startswith("card_no")
                    else "120114999000",
                    detected_at=now,
                )
            )


@pytest.fixture
def disability_home(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Catalog]:
    """A home whose contracts folder holds the 残疾人证 contract and whose registrations folder
    is empty: the connector is registered in the catalog only (`onceonly connectors register`)."""
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    shutil.copy(DISABILITY_CONTRACT, contracts / "disability.yaml")
    (tmp_path / "registrations").mkdir()
    monkeypatch.setenv("ONCEONLY_CONTRACTS_DIR", str(contracts))
    monkeypatch.setenv("ONCEONLY_REGISTRATIONS_DIR", str(tmp_path / "registrations"))
    catalog = Catalog.connect(Settings().catalog_url)
    text = (
        "name: canlian-disability\ndepartment: 天津市武清区残疾人联合会\ndataset: disability\ntype: sql\n"
        "options:\n  url: sqlite:///{home}/canlian.db\n  table: card\n"
        "  cursor: {column: updated_at, tiebreak: id}\n"
    )
    register(catalog, parse_registration(text, "canlian-disability.yaml"), text)
    _quarantined_under(
        catalog,
        "canlian-disability",
        "disability",
        {CARD: "township_code.region_code", BAD_CARD: "card_no.pattern"},
    )
    yield catalog
    catalog.dispose()


def test_report_names_the_department_registered_in_the_catalog(
    disability_home: Catalog, tmp_path: Path
) -> None:
    runner = CliRunner()
    report = runner.invoke(app, ["quarantine", "report", "--department", "残疾人联合会"])
    assert report.exit_code == 0, report.output
    assert "天津市武清区残疾人联合会: 2 row(s) to correct at the source" in report.output
    assert "unregistered" not in report.output and "nothing to fix" not in report.output

    remove(disability_home, "canlian-disability")  # history: its open entries are still its department's
    written = runner.invoke(
        app, ["quarantine", "report", "--department", "残疾人联合会", "-o", str(tmp_path / "fix.csv")]
    )
    assert written.exit_code == 0, written.output
    assert "2 row(s) to correct" in written.output and "(connector removed since)" in written.output
    with (tmp_path / "fix.csv").open(encoding="utf-8-sig") as f:
        keys = {(r["department"], r["source_key"]) for r in csv.DictReader(f)}
    assert keys == {("天津市武清区残疾人联合会", CARD), ("天津市武清区残疾人联合会", BAD_CARD)}, "in clear"
    assert (tmp_path / "fix.csv").stat().st_mode & 0o077 == 0


def test_list_show_and_report_mask_a_restricted_key_by_its_classification(disability_home: Catalog) -> None:
    assert scrub_text(CARD) == CARD, "the ID regex alone misses an ID followed by more digits"
    runner = CliRunner()
    masked = CARD[:6] + "*" * 10 + CARD[-4:]
    outputs = {
        "list": runner.invoke(app, ["quarantine", "list"]),
        "json": runner.invoke(app, ["quarantine", "list", "--json"]),
        "show": runner.invoke(app, ["quarantine", "show", "1"]),
        "report": runner.invoke(app, ["quarantine", "report"]),
    }
    for name, result in outputs.items():
        assert result.exit_code == 0, (name, result.output)
        for number in (CARD, BAD_CARD):
            assert number[:18] not in result.output, f"{name}: the citizen ID in the key is shown"
            assert number[6:14] not in result.output, f"{name}: the birth date in the key is shown"
    items = json.loads(outputs["json"].output)
    assert {it["source_key"] for it in items} == {masked, BAD_CARD[:6] + "*" * 10 + BAD_CARD[-4:]}
    assert {it["value"] for it in items} == {"120114999000", BAD_CARD[0] + "*" * 19}
    assert f"source key      {masked}" in outputs["show"].output
