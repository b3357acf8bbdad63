"""The CLI refuses what would corrupt the demo or leak key material."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from departments import generate_all
from onceonly.errors import ConfigurationError


def test_demo_refuses_to_regenerate_with_other_rows_over_an_existing_catalog(home: Path) -> None:
    generate_all(home / "departments", rows=120, seed=20261121)
    (home / "catalog.db").touch()
    result = CliRunner().invoke(app, ["demo", "--rows", "150"])
    assert isinstance(result.exception, ConfigurationError)
    assert "hold 120 rows" in str(result.exception) and "--reset" in str(result.exception)


def test_demo_reset_leaves_a_lake_on_an_object_store_alone(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEONLY_LAKE_URL", "s3://district/wuqing/lake")
    home.mkdir()
    (home / "catalog.db").touch()
    result = CliRunner().invoke(app, ["demo", "--reset"])
    assert isinstance(result.exception, ConfigurationError)
    assert "empty s3://district/wuqing/lake yourself" in str(result.exception)
    assert (home / "catalog.db").exists()  # refused before anything was deleted


def test_export_needs_no_private_key_and_creates_none(home: Path) -> None:
    result = CliRunner().invoke(
        app, ["certificates", "export", "1.2.156.3005.2.X", "-o", str(home / "b.json")]
    )
    assert isinstance(result.exception, ConfigurationError)
    assert "no verifier key" in str(result.exception)
    assert not (home / "keys").exists() and not (home / "secrets").exists()


def test_verify_reports_an_unreadable_bundle(tmp_path: Path) -> None:
    bad = tmp_path / "bundle.json"
    bad.write_text("{not json", encoding="utf-8")
    result = CliRunner().invoke(app, ["verify", str(bad)])
    assert result.exit_code == 2
    assert "INVALID" in result.output


@pytest.mark.parametrize("subject", ["110105194912310021", "not-an-id"])
def test_skip_check_rejects_invalid_subjects_with_the_id_masked(home: Path, subject: str) -> None:
    from catalog import Catalog
    from onceonly.settings import Settings

    Catalog.connect(Settings().catalog_url).dispose()
    result = CliRunner().invoke(app, ["skip-check", "--subject", subject, "--matter", "pension-enrolment"])
    assert isinstance(result.exception, ConfigurationError)
    assert "110105194912310021" not in str(result.exception)


def test_read_only_commands_on_a_home_with_no_catalog_say_so(home: Path) -> None:
    from onceonly.errors import CatalogError

    result = CliRunner().invoke(app, ["certificates", "list"])
    assert isinstance(result.exception, CatalogError)
    assert "nothing has run under this ONCEONLY_HOME" in str(result.exception)
    assert not (home / "catalog.db").exists()
