"""sharing.impact / `onceonly contracts impact`: a contract change followed downstream."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.contracts import app
from sharing.impact import Consumers, contract_impact, rule_references

REPO = Path(__file__).resolve().parents[3]
BIRTH_TYPE = "11100000MB01Q0230J001"
HOUSEHOLD_TYPE = "11100000000019342N001"


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A checkout's consumers and two copies of its contracts: old/ and new/ (edited by tests)."""
    root = tmp_path / "tree"
    for part in ("connectors/registrations", "contracts/regions"):
        shutil.copytree(REPO / part, root / part)
    (root / "sharing").mkdir(parents=True)
    shutil.copy(REPO / "sharing" / "matters.yaml", root / "sharing" / "matters.yaml")
    shutil.copytree(REPO / "contracts" / "datasets", tmp_path / "old")
    shutil.copytree(REPO / "contracts" / "datasets", tmp_path / "new")
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path.name} no longer holds {old!r}: update the test"
    path.write_text(text.replace(old, new), encoding="utf-8")


def _bump_major(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    version = re.search(r"^version: ['\"]?(\d+)\.(\d+)\.(\d+)", text, re.M)
    assert version is not None
    path.write_text(
        text.replace(version.group(0), f"version: {int(version.group(1)) + 1}.0.0", 1), encoding="utf-8"
    )


def test_no_change_affects_nothing(tree: Path) -> None:
    report = contract_impact(tree.parent / "old", tree.parent / "new", Consumers.of_tree(tree))
    assert report.datasets == [] and not report.breaks


def test_a_removed_certificate_field_breaks_the_relatives_found_through_it(tree: Path) -> None:
    new = tree.parent / "new" / "birth.yaml"
    _edit(new, "child_gender, child_id, birth_date", "child_gender, birth_date")
    _bump_major(new)
    report = contract_impact(tree.parent / "old", tree.parent / "new", Consumers.of_tree(tree))
    [birth] = report.datasets
    matters = {a.name: a for a in birth.matters}
    assert matters["newborn-registration"].breaks and "child_id" in matters["newborn-registration"].why
    assert matters["school-enrolment"].breaks
    bundles = {a.name: a for a in birth.bundles}
    assert bundles["newborn"].breaks
    # The major bump announced the change, but the connector is pinned to major 1: the flow stops it.
    [connector] = birth.connectors
    assert connector.name == "weijian-births" and connector.breaks and "pinned to major 1" in connector.why
    assert report.breaks


def test_a_looser_rule_breaks_nothing_and_lists_what_it_touches(tree: Path) -> None:
    new = tree.parent / "new" / "household.yaml"
    _edit(new, "maxErrorRate\n        value: ", "maxErrorRate\n        value: 0.9 #")
    report = contract_impact(tree.parent / "old", tree.parent / "new", Consumers.of_tree(tree))
    [household] = report.datasets
    assert [c.breaking for c in household.changes] == [False]
    assert [a.name for a in household.connectors] == ["gongan-household"]
    assert [a.name for a in household.certificate_types] == [HOUSEHOLD_TYPE]
    assert "pension-enrolment" in {a.name for a in household.matters}
    assert household.townships and household.townships[0].name == "all 25"
    assert not report.breaks


def test_a_removed_contract_breaks_its_connector_its_matters_and_the_rules_naming_its_type(
    tree: Path,
) -> None:
    (tree.parent / "new" / "birth.yaml").unlink()
    rules = tree / "sharing" / "benefits"
    rules.mkdir()
    (rules / "newborn-grant.yaml").write_text(
        f"id: newborn-grant\nversion: 1\nconditions:\n  - certificate: {BIRTH_TYPE}\n    field: birth_date\n",
        encoding="utf-8",
    )
    report = contract_impact(tree.parent / "old", tree.parent / "new", Consumers.of_tree(tree))
    [birth] = report.datasets
    assert birth.after is None
    assert all(a.breaks for a in [*birth.connectors, *birth.certificate_types])
    assert {a.name for a in birth.matters if a.breaks} >= {"newborn-registration", "school-enrolment"}
    [rule] = birth.rules
    assert rule.breaks and rule.name.endswith("newborn-grant.yaml: newborn-grant")


def test_rule_files_name_types_and_the_fields_they_read(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"id: gaoling\nrules:\n  - id: age\n    certificate_types: [{HOUSEHOLD_TYPE}]\n"
        "    fields: [birth_date]\n"
        f"windows:\n  {BIRTH_TYPE}: {{days: 30}}\nname: 高龄津贴 11100000000019342N00\n",
        encoding="utf-8",
    )
    refs = {(r.rule, r.type_code, r.fields) for r in rule_references(path)}
    assert refs == {("age", HOUSEHOLD_TYPE, ("birth_date",)), ("gaoling", BIRTH_TYPE, ())}


def test_the_command_exits_1_when_something_breaks_and_counts_townships_in_the_catalog(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalog import Catalog

    home = tmp_path / "home"
    monkeypatch.setenv("ONCEONLY_HOME", str(home))
    monkeypatch.delenv("ONCEONLY_DATABASE_URL", raising=False)
    Catalog.connect(f"sqlite:///{home / 'catalog.db'}").dispose()
    with sqlite3.connect(home / "catalog.db") as db:  # two certificates in one township
        for leaf, township in ((0, "120114001000"), (1, "120114001000"), (2, None)):
            db.execute(
                "INSERT INTO certificates (cert_id, dataset, record_key, holder_id, type_code, "
                "type_name, issuer_code, serial, version, status, issue_date, township, content_sha256, "
                "leaf_index, batch_id) VALUES (?, 'birth', ?, 'h', ?, '出生医学证明', 'i', 1, 1, '有效', "
                "'2026-01-01', ?, 'x', ?, 'b')",
                (f"c{leaf}", f"k{leaf}", BIRTH_TYPE, township, leaf),
            )
    (tree.parent / "new" / "birth.yaml").unlink()
    runner = CliRunner()
    result = runner.invoke(
        app, ["impact", str(tree.parent / "old"), str(tree.parent / "new"), "--tree", str(tree)]
    )
    assert result.exit_code == 1, result.output
    assert (
        "BREAKS" in result.output
        and "120114001000" in result.output
        and "杨村街道 2 certificate" in result.output
    )
    result = runner.invoke(
        app, ["impact", str(tree.parent / "old"), str(tree.parent / "old"), "--tree", str(tree), "--json"]
    )
    assert result.exit_code == 0 and json.loads(result.output) == []


def test_a_benefit_rule_reading_a_removed_field_breaks(tree: Path) -> None:
    shutil.copytree(REPO / "sharing" / "benefits", tree / "sharing" / "benefits")
    new = tree.parent / "new" / "birth.yaml"
    _edit(new, "child_id, birth_date, birth_place", "child_id, birth_place")
    report = contract_impact(tree.parent / "old", tree.parent / "new", Consumers.of_tree(tree))
    [birth] = report.datasets
    rules = {a.name.rsplit(": ", 1)[1]: a for a in birth.rules}
    assert rules["shengyu-butie"].breaks and "birth_date" in rules["shengyu-butie"].why
    # A rule of another type is not listed; one reading only the catalog's columns is not broken.
    assert "gaoling-jintie" not in rules
