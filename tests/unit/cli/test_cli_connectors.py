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


HOUSEHOLD_COLUMNS = (
    "id INTEGER PRIMARY KEY, person_id TEXT, name TEXT, gender TEXT, ethnicity TEXT, birth_date TEXT, "
    "household_no TEXT, relation TEXT, address TEXT, township_code TEXT, registered_on TEXT, "
    "updated_at DATETIME"
)


def household_db(path: Path, columns: str = HOUSEHOLD_COLUMNS) -> str:
    """A department table with the household contract's columns (and ``id``, the tiebreak)."""
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    names = [c.split()[0] for c in columns.split(", ")]
    values = {
        "person_id": ID_NUMBER,
        "gender": "男",
        "ethnicity": "汉族",
        "birth_date": "1990-03-07",
        "household_no": "120114000001",
        "relation": "户主",
        "address": "天津市武清区杨村街道1号",
        "township_code": "120114001000",
        "registered_on": "2010-01-01",
    }
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE huji ({columns})")
        for i in range(1, 8):
            row = {**values, "id": i, "name": f"王小明{i}", "updated_at": dt.datetime(2026, 11, 20, 8, i)}
            conn.execute(
                sa.text(
                    f"INSERT INTO huji ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"
                ),
                {n: row.get(n) for n in names},
            )
    engine.dispose()
    return url


def registration_file(
    folder: Path, url: str, *, name: str = "gongan-test", table: str = "huji", pin: str = "{major: 1}"
) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ndepartment: 天津市公安局武清分局\ndataset: household\ncontract: {pin}\ntype: sql\n"
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
    assert f"{bad}: line 9, options.cursor.tiebreak: Field required" in str(result.exception)

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


def _no_catalog() -> bool:
    try:
        Catalog.connect(Settings().catalog_url, create=False).dispose()
    except CatalogError:
        return True
    return False


def test_register_names_missing_and_renamed_columns_and_stores_nothing(home: Path, tmp_path: Path) -> None:
    renamed = HOUSEHOLD_COLUMNS.replace("birth_date TEXT", "birthdate TEXT").replace(", address TEXT", "")
    path = registration_file(tmp_path, household_db(tmp_path / "huji.db", renamed))
    result = CliRunner().invoke(app, ["connectors", "register", str(path), "--no-block"])
    assert isinstance(result.exception, ConfigurationError)
    message = str(result.exception)
    assert message.startswith(f"{path}: connector 'gongan-test' does not deliver dataset 'household'")
    assert "missing column(s) birth_date, address; maybe renamed: birth_date (renamed birthdate?)" in message
    assert "Nothing was stored" in message and _no_catalog()


def test_register_refuses_a_type_that_does_not_convert(home: Path, tmp_path: Path) -> None:
    path = registration_file(tmp_path, household_db(tmp_path / "huji.db"))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'huji.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE huji SET birth_date = '七号'")
    engine.dispose()
    result = CliRunner().invoke(app, ["connectors", "register", str(path), "--no-block"])
    assert isinstance(result.exception, ConfigurationError)
    assert "column birth_date: none of the 5 sample value(s) (string) converts" in str(result.exception)
    assert _no_catalog()


def test_register_refuses_a_pinned_major_the_contract_is_not_before_connecting(
    home: Path, tmp_path: Path
) -> None:
    # The database does not exist: the pin is checked first, so the message is about the pin.
    path = registration_file(tmp_path, "sqlite:////no/such/dir/huji.db", pin="{major: 2}")
    result = CliRunner().invoke(app, ["connectors", "register", str(path), "--no-block"])
    assert isinstance(result.exception, ConfigurationError)
    message = str(result.exception)
    assert message.startswith(f"{path}: connector 'gongan-test' was tested against contract 'household'")
    assert "major version 2" in message and "household@1.0.0" in message and _no_catalog()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql+psycopg://reader:Secret-Pw-42@db.gongan.local/huji", "the URL carries a password"),
        ("mysql+pymysql://reader:Secret-Pw-42@db/huji?charset=utf8mb4", "the URL carries a password"),
        (
            "sqlite:///huji.db?password=Secret-Pw-42",
            "the URL's query string carries a credential (password=…)",
        ),
    ],
)
def test_register_refuses_a_password_inside_the_url_without_echoing_it(
    home: Path, tmp_path: Path, url: str, problem: str
) -> None:
    path = registration_file(tmp_path, url)
    result = CliRunner().invoke(app, ["connectors", "register", str(path), "--no-block"])
    assert isinstance(result.exception, ConfigurationError)
    message = str(result.exception)
    assert f"{path}: line 7, options.url: {problem}" in message and "`secrets:`" in message
    assert "Secret-Pw-42" not in message + result.output and _no_catalog()


def test_list_has_a_header_and_a_short_masked_cursor_summary(home: Path, tmp_path: Path) -> None:
    from catalog import connector_state

    path = registration_file(tmp_path, household_db(tmp_path / "huji.db"))
    assert CliRunner().invoke(app, ["connectors", "register", str(path), "--no-block"]).exit_code == 0
    catalog = Catalog.connect(Settings().catalog_url)
    cursor = {
        "watermark": {"type": "datetime", "value": "2026-11-20T10:00:00"},
        "tiebreak": {"type": "int", "value": 4711},
        "columns": ["id", "person_id"],
    }
    with catalog.begin() as conn:
        conn.execute(
            connector_state.insert().values(
                connector="gongan-test", dataset="household", cursor=cursor, rows_pulled=7, last_status="ok"
            )
        )
    catalog.dispose()
    listed = CliRunner().invoke(app, ["connectors", "list"])
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()[:2]
    assert header.split() == [
        "name",
        "type",
        "dataset",
        "department",
        "rows",
        "status",
        "last",
        "pull",
        "cursor",
        "/",
        "last",
        "error",
    ]
    assert row.startswith("gongan-test") and "updated_at ≤ 2026-11-20 10:00, id 4711" in row
    assert "columns" not in listed.output and "{" not in listed.output


def test_cursor_summaries_of_every_connector_type() -> None:
    from cli.connectors import describe_cursor

    sha = "1a2b3c4d" + "0" * 56
    files = {
        "done": ["a" * 64, "b" * 64],
        "current": {"sha256": sha, "file": "marriages-3.csv", "rows": 2000},
    }
    assert (
        describe_cursor(files, {})
        == "file 3 (marriages-3.csv, sha 1a2b3c4d…), row 2000; 2 file(s) read before"
    )
    assert describe_cursor({"done": ["a" * 64], "current": None}, {}) == "1 file(s) read"
    http = {"watermark": "2026-11-20T10:00:00+08:00", "key": ID_NUMBER, "seen": [], "recent": {}}
    shown = describe_cursor(http, {"incremental": {"field": "updated_at", "key": "legal_representative_id"}})
    assert shown.startswith("updated_at ≤ 2026-11-20 10:00:00+08:00, legal_representative_id ")
    assert ID_NUMBER not in shown and "120104********1234" in shown  # masked
    assert describe_cursor({"snapshot": "7f3e9a1b2c3d4e5f"}, {}) == "snapshot generation 7f3e9a1b…"
    staged = {"snapshot": "7f3e9a1b2c3d4e5f", "staged": "0011223344556677", "rows": 500}
    assert describe_cursor(staged, {}) == (
        "snapshot generation 00112233… being landed, row 500; last complete 7f3e9a1b…"
    )
