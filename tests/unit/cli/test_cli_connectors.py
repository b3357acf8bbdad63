"""``onceonly connectors register/list/test/remove`` as a department engineer runs them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from catalog import Catalog
from cli.main import app
from connectors.registry import register_directory, registered
from onceonly.errors import CatalogError, ConfigurationError, SourceSchemaChanged
from onceonly.settings import Settings

ID_NUMBER = "120104199003071234"


def household_db(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE huji (id INTEGER PRIMARY KEY, person_id TEXT, name TEXT, updated_at DATETIME)"
        )
        for i in range(1, 8):
            conn.execute(
                sa.text("INSERT INTO huji VALUES (:i, :p, :n, :t)"),
                {"i": i, "p": ID_NUMBER, "n": f"王小明{i}", "t": dt.datetime(2026, 11, 20, 8, i)},
            )
    engine.dispose()
    return url


def registration_file(folder: Path, url: str, *, name: str = "gongan-test", table: str = "huji") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ndepartment: 天津市公安局武清分局\ndataset: household\ntype: sql\n"
        f"options:\n  url: {url}\n  table: {table}\n  cursor: {{column: updated_at, tiebreak: id}}\n",
        encoding="utf-8",
    )
    return path


def test_register_list_test_remove(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    path = registration_file(tmp_path, household_db(tmp_path / "huji.db"))

    result = runner.invoke(app, ["connectors", "register", str(path), "--no-block"])
    assert result.exit_code == 0, result.output
    assert "connected; 5 sample rows (personal fields masked)" in result.output
    assert ID_NUMBER not in result.output and "王小明" not in result.output  # masked
    assert "120104********1234" in result.output and "registered in the catalog" in result.output

    catalog = Catalog.connect(Settings().catalog_url)
    assert set(registered(catalog)) == {"gongan-test"}

    listed = runner.invoke(app, ["connectors", "list"])
    assert listed.exit_code == 0 and "gongan-test" in listed.output and "never" in listed.output

    tested = runner.invoke(app, ["connectors", "test", "gongan-test", "--rows", "2"])
    assert tested.exit_code == 0 and "2 sample rows" in tested.output

    again = runner.invoke(app, ["connectors", "register", str(path), "--no-block"])
    assert "registration replaced" in again.output

    removed = runner.invoke(app, ["connectors", "remove", "gongan-test", "--no-block"])
    assert removed.exit_code == 0, removed.output
    assert registered(catalog) == {}
    missing = runner.invoke(app, ["connectors", "test", "gongan-test"])
    assert isinstance(missing.exception, ConfigurationError) and "no connector named" in str(
        missing.exception
    )
    catalog.dispose()


def test_register_refuses_a_bad_file_and_a_failing_connection_and_stores_nothing(
    home: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    url = household_db(tmp_path / "huji.db")
    bad = registration_file(tmp_path, url)
    bad.write_text(bad.read_text(encoding="utf-8").replace("tiebreak: id", "tiebrake: id"), encoding="utf-8")
    result = runner.invoke(app, ["connectors", "register", str(bad), "--no-block"])
    assert isinstance(result.exception, ConfigurationError)
    assert f"{bad}: line 8, options.cursor.tiebreak: Field required" in str(result.exception)

    gone = registration_file(tmp_path, url, name="gongan-gone", table="no_such_table")
    result = runner.invoke(app, ["connectors", "register", str(gone), "--no-block"])
    assert isinstance(result.exception, SourceSchemaChanged) and "'gongan-gone'" in str(result.exception)
    with pytest.raises(CatalogError):  # nothing was stored: the catalog was never even created
        Catalog.connect(Settings().catalog_url, create=False)


def test_shipped_files_are_registered_once_and_a_removed_connector_stays_removed(
    home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "registrations"
    folder.mkdir()
    registration_file(folder, household_db(tmp_path / "huji.db"))
    catalog = Catalog.connect(Settings().catalog_url)
    assert register_directory(catalog, folder) == ["gongan-test"]
    assert register_directory(catalog, folder) == []
    result = CliRunner().invoke(app, ["connectors", "remove", "gongan-test", "--no-block"])
    assert result.exit_code == 0, result.output
    assert register_directory(catalog, folder) == [] and registered(catalog) == {}
    catalog.dispose()


def test_schema_prints_the_json_schema() -> None:
    result = CliRunner().invoke(app, ["connectors", "schema"])
    assert result.exit_code == 0 and '"SqlOptions"' in result.output
