"""`onceonly contracts check | diff`: every code a contract holds is checked before it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

SHIPPED = Path(__file__).parents[3] / "contracts" / "datasets" / "household.yaml"


def edited(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = SHIPPED.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "household.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["contracts", "check", str(path)])
    return result.exit_code, result.output


def test_the_shipped_contracts_pass() -> None:
    files = sorted(str(p) for p in SHIPPED.parent.glob("*.yaml"))
    result = CliRunner().invoke(app, ["contracts", "check", *files])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok   ") == len(files)


@pytest.mark.parametrize(
    ("replacement", "problem"),
    [
        (
            ("issuerCode: 111201140000000196", "issuerCode: 111201140000000197"),
            ":154: certificate issuerCode '111201140000000197' check character is '7'; "
            "GB 32100 MOD 31 gives '6'",
        ),
        (
            ("issuerCode: 111201140000000196", "issuerCode: 11120114000000019"),
            ":154: certificate issuerCode '11120114000000019' has 17 characters",
        ),
        (
            ("typeCode: 11100000000019342N001", "typeCode: 11100000000019342M001"),
            ":151: certificate typeCode '11100000000019342M001': its defining authority's code",
        ),
        (
            ("typeCode: 11100000000019342N001", "typeCode: hkb-1"),
            ":151: certificate typeCode 'hkb-1' is not 4-32 characters of 0-9 and A-Z",
        ),
        (
            ("idType: 居民身份证", "idType: 身份证"),
            ":158: holder idType '身份证' is not a known holder identity type",
        ),
    ],
)
def test_a_wrong_code_in_the_certificate_fails_with_file_and_line(
    tmp_path: Path, replacement: tuple[str, str], problem: str
) -> None:
    path = edited(tmp_path, replacement)
    code, output = check(path)
    assert code == 1 and f"FAIL {path}" in output
    assert f"{path}{problem}" in output, output


def test_literal_codes_are_checked_against_the_contracts_own_checks(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        (
            "        logicalTypeOptions: {minLength: 18, maxLength: 18}\n",
            "        logicalTypeOptions: {minLength: 18, maxLength: 18}\n"
            "        examples: ['120114199003070808', '120114199003070809']\n",
        ),
        (
            "        description: 12 位统计用区划代码，须为本区镇街。\n",
            "        description: 12 位统计用区划代码，须为本区镇街。\n"
            "        examples: ['120114001000', '120114999000']\n",
        ),
    )
    code, output = check(path)
    assert code == 1
    assert "person_id value '120114********0809' check character does not match" in output
    assert "120114199003070809" not in output  # masked
    assert "township_code value '120114999000' is not a township code of the district's region list" in output
    assert "120114001000'" not in output and "120114********0808" not in output  # the good ones pass
    assert f"{path}:" in output


def test_diff_renders_ranges_readably(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    old = edited(tmp_path, ("        logicalTypeOptions: {minLength: 1, maxLength: 50}\n", ""))
    old = old.rename(tmp_path / "old" / "household.yaml")
    new = edited(tmp_path, ("{minLength: 1, maxLength: 50}", "{maxLength: 100}"))
    added = CliRunner().invoke(app, ["contracts", "diff", str(old), str(new)])
    assert "new error rule: 长度 ≤ 100" in added.output and "None" not in added.output, added.output
    loosened = CliRunner().invoke(app, ["contracts", "diff", str(SHIPPED), str(new)])
    assert "name.length: minLength 1 -> none (looser)" in loosened.output, loosened.output
    assert "None" not in loosened.output


def test_bounds_text() -> None:
    from contracts.compiler import bounds_text

    assert bounds_text(None, 100) == "≤ 100"
    assert bounds_text(2, None) == "≥ 2"
    assert bounds_text(2, 100) == "2–100"
    assert bounds_text(18, 18) == "= 18"
    assert bounds_text(0.0, None, strict_low=True) == "> 0"
    assert bounds_text(0, 1.5, strict_high=True) == "0–1.5 (upper end excluded)"
