"""``onceonly certificates parse`` and the lifecycle commands' refusals, from the command line."""

from __future__ import annotations

from pathlib import Path

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
