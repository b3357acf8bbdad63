"""`contracts diff`: every kind of change classified, and the CLI as a CI gate."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from contracts.diff import diff_contracts
from contracts.model import parse_contract
from onceonly.errors import ContractError
from onceonly.settings import Settings

DATASETS = Path(Settings().contracts_dir)
HOUSEHOLD = (DATASETS / "household.yaml").read_text(encoding="utf-8")
LICENCE = (DATASETS / "business_licence.yaml").read_text(encoding="utf-8")
NEW_OPTIONAL = (
    "      - name: ethnicity\n",
    "      - name: nickname\n        logicalType: string\n      - name: ethnicity\n",
)
NEW_REQUIRED = (
    "      - name: ethnicity\n",
    "      - name: nickname\n        logicalType: string\n        required: true\n      - name: ethnicity\n",
)


def changes(old: str, new: str, *, bump: bool = False) -> list[tuple[bool, str]]:
    if bump:
        new = new.replace("version: 1.0.0", "version: 2.0.0", 1)
    found = diff_contracts(parse_contract(old), parse_contract(new))
    return [(c.breaking, f"{c.subject}: {c.what}") for c in found]


def one(old: str, replace: tuple[str, str], *, bump: bool = True) -> tuple[bool, str]:
    assert replace[0] in old, replace[0]
    found = changes(old, old.replace(replace[0], replace[1], 1), bump=bump)
    assert len(found) == 1, found
    return found[0]


def test_identical_contracts_have_no_changes() -> None:
    assert changes(HOUSEHOLD, HOUSEHOLD) == []


@pytest.mark.parametrize(
    ("replace", "breaking", "fragment"),
    [
        (("maxLength: 50}", "maxLength: 20}"), True, "name.length: maxLength 50 -> 20 (tighter)"),
        (("maxLength: 50}", "maxLength: 80}"), False, "maxLength 50 -> 80 (looser)"),
        (
            ("{minLength: 1, maxLength: 50}", "{minLength: 2, maxLength: 50}"),
            True,
            "minLength 1 -> 2 (tighter)",
        ),
        (("validValues: [男, 女]", "validValues: [男]"), True, "values no longer allowed: ['女']"),
        (("validValues: [男, 女]", "validValues: [男, 女, 未知]"), False, "values now allowed: ['未知']"),
        (("pattern: '^\\d{12}$'", "pattern: '^1201\\d{8}$'"), True, "township_code.pattern: pattern"),
        (
            (
                "        physicalType: VARCHAR(20)\n",
                "        physicalType: VARCHAR(20)\n        unique: true\n",
            ),
            True,
            "ethnicity.unique: new error rule",
        ),
        (
            (
                "        physicalType: VARCHAR(20)\n",
                "        physicalType: VARCHAR(20)\n        required: true\n",
            ),
            True,
            "ethnicity.required: new error rule",
        ),
        (
            ("        physicalType: VARCHAR(20)\n", "        physicalType: VARCHAR(10)\n"),
            True,
            "ethnicity: physicalType VARCHAR(20) -> VARCHAR(10) (narrowed)",
        ),
        (NEW_OPTIONAL, False, "nickname: new optional column"),
        (NEW_REQUIRED, True, "nickname: new required column"),
        (
            (
                "            implementation: not_in_future\n            severity: warning\n",
                "            implementation: not_in_future\n",
            ),
            True,
            "registered_on.not_in_future: severity warning -> error",
        ),
        (("value: 0.2\n", "value: 0.1\n"), True, "maxErrorRate 0.2 -> 0.1"),
        (("value: 0.2\n", "value: 0.3\n"), False, "maxErrorRate 0.2 -> 0.3"),
    ],
)
def test_each_change_is_classified(replace: tuple[str, str], breaking: bool, fragment: str) -> None:
    got = one(HOUSEHOLD, replace)
    assert got[0] is breaking, got
    assert fragment in got[1]


WITH_NICKNAME = HOUSEHOLD.replace(*NEW_OPTIONAL)


def test_a_removed_column_is_breaking() -> None:
    assert changes(WITH_NICKNAME, HOUSEHOLD, bump=True) == [(True, "nickname: column removed")]


def test_a_renamed_column_is_removed_plus_added_and_hinted() -> None:
    renamed = WITH_NICKNAME.replace("- name: nickname", "- name: alias", 1)
    found = changes(WITH_NICKNAME, renamed, bump=True)
    assert (True, "nickname: column removed (renamed to alias?)") in found
    assert (False, "alias: new optional column") in found


def test_a_column_a_certificate_uses_cannot_be_removed() -> None:
    start = HOUSEHOLD.index("      - name: ethnicity\n")
    end = HOUSEHOLD.index("      - name: birth_date\n")
    removed = HOUSEHOLD[:start] + HOUSEHOLD[end:]  # the whole property, not its first lines only
    with pytest.raises(ContractError, match=r"certificate refers to missing columns \['ethnicity'\]"):
        changes(HOUSEHOLD, removed)


def test_type_widening_is_not_breaking_and_narrowing_is() -> None:
    as_integer = WITH_NICKNAME.replace(
        "- name: nickname\n        logicalType: string", "- name: nickname\n        logicalType: integer"
    )
    as_number = as_integer.replace("logicalType: integer", "logicalType: number")
    assert changes(as_integer, as_number) == [(False, "nickname: type integer -> number (widened)")]
    assert changes(as_number, as_integer, bump=True) == [
        (True, "nickname: type number -> integer (narrowed or changed)")
    ]
    assert changes(as_integer, WITH_NICKNAME) == [(False, "nickname: type integer -> string (widened)")]


def test_thresholds_tighter_and_looser() -> None:
    assert "mustBeLessOrEqualTo: 1\n" in HOUSEHOLD  # ethnicity: at most 1 % missing
    tighter = HOUSEHOLD.replace("mustBeLessOrEqualTo: 1\n", "mustBeLessOrEqualTo: 0.5\n")
    assert changes(HOUSEHOLD, tighter, bump=True) == [
        (True, "ethnicity.nullValues: mustBeLessOrEqualTo 1 -> 0.5 (tighter)")
    ]
    assert changes(tighter, HOUSEHOLD) == [
        (False, "ethnicity.nullValues: mustBeLessOrEqualTo 0.5 -> 1 (looser)")
    ]


def test_breaking_without_a_major_bump_is_itself_breaking() -> None:
    found = changes(HOUSEHOLD, HOUSEHOLD.replace("maxLength: 50}", "maxLength: 20}"))
    assert found[0] == (True, "contract: breaking changes need a new major version (1.0.0 -> 1.0.0)")


# --------------------------------------------------------------------------------------------
# The commands, as a shell user or CI runs them

runner = CliRunner()


def test_cli_diff_exits_1_on_breaking_and_0_otherwise(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(HOUSEHOLD, encoding="utf-8")
    tighter = tmp_path / "tighter.yaml"
    tighter.write_text(HOUSEHOLD.replace("maxLength: 50}", "maxLength: 20}"), encoding="utf-8")
    looser = tmp_path / "looser.yaml"
    looser.write_text(HOUSEHOLD.replace(*NEW_OPTIONAL), encoding="utf-8")
    result = runner.invoke(app, ["contracts", "diff", str(old), str(tighter)])
    assert result.exit_code == 1
    assert "BREAKING  name.length: maxLength 50 -> 20 (tighter)" in result.output
    result = runner.invoke(app, ["contracts", "diff", str(old), str(looser)])
    assert result.exit_code == 0, result.output
    assert "ok        nickname: new optional column" in result.output
    assert "no breaking changes" in result.output


def test_cli_check_reports_ok_and_problems_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(HOUSEHOLD.replace("maxLength: 50}", "maxLength: 50, colour: red}"), encoding="utf-8")
    result = runner.invoke(app, ["contracts", "check", str(DATASETS / "household.yaml"), str(bad)])
    assert result.exit_code == 1
    assert "ok   " in result.output and "household@1.0.0" in result.output
    line = next(i for i, s in enumerate(bad.read_text().splitlines(), 1) if "colour" in s)
    assert f"{bad}:{line}: unsupported: key 'colour'" in result.output
    assert "1 of 2 contract(s) have problems" in result.output


def test_cli_check_yaml_syntax_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("apiVersion: v3.1.0\nschema: [\n", encoding="utf-8")
    result = runner.invoke(app, ["contracts", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:" in result.output and "not valid YAML" in result.output


def test_cli_show_prints_every_rule_and_the_arrow_schema() -> None:
    result = runner.invoke(app, ["contracts", "show", "household", "--json"])
    assert result.exit_code == 0, result.output
    import json

    shown = json.loads(result.output)
    rules = {e["rule"]: e for e in shown["expectations"]}
    assert (
        rules["person_id.gb11643_citizen_id"]["expectation"]
        == "expect_column_values_to_pass_gb11643_citizen_id"
    )
    assert rules["gender.enum"]["kwargs"] == {"value_set": ["男", "女"]}
    assert rules["registered_on.not_in_future"]["severity"] == "warning"
    assert {"name": "birth_date", "type": "date32[day]"} in shown["arrow_schema"]
    table = runner.invoke(app, ["contracts", "show", str(DATASETS / "marriage.yaml")])
    assert table.exit_code == 0 and "Arrow schema" in table.output and "marriage@1.1.0" in table.output
