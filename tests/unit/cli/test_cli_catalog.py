"""``onceonly catalog version`` and ``catalog upgrade``: what they print, and that they create nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from catalog import SCHEMA_REVISION, Catalog
from cli.main import app
from onceonly.errors import CatalogOutdated, CatalogRefused
from onceonly.settings import Settings


def test_a_home_where_nothing_ran_says_so_and_creates_no_catalog(home: Path) -> None:
    for command in ("version", "upgrade"):
        result = CliRunner().invoke(app, ["catalog", command])
        assert isinstance(result.exception, CatalogRefused), result.output
        assert "nothing has run under this ONCEONLY_HOME" in str(result.exception)
    assert not (home / "catalog.db").exists()


def test_a_catalog_of_the_previous_release_is_upgraded_once(home: Path) -> None:
    from alembic import command

    from catalog._migrations import alembic_config

    url = Settings().catalog_url
    home.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the release before schema revisions: 0001's tables, none recorded
        command.upgrade(alembic_config(conn), "0001")
        conn.exec_driver_sql("DROP TABLE catalog_version")
    engine.dispose()
    with pytest.raises(CatalogOutdated):
        Catalog.connect(url)

    shown = CliRunner().invoke(app, ["catalog", "version"])
    assert shown.exit_code == 1, shown.output
    assert "revision:      0001 (by its tables; none recorded before revisions)" in shown.output
    assert f"this OnceOnly: {SCHEMA_REVISION}" in shown.output
    assert "run `onceonly catalog upgrade`" in shown.output

    upgraded = CliRunner().invoke(app, ["catalog", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.output == (
        f"{url}: upgraded from revision 0001 (recorded now: the release before schema "
        f"revisions had none) to {SCHEMA_REVISION}\n"
    )
    again = CliRunner().invoke(app, ["catalog", "upgrade"])
    assert again.exit_code == 0 and again.output == f"{url}: already at revision {SCHEMA_REVISION}\n"
    current = CliRunner().invoke(app, ["catalog", "version"])
    assert current.exit_code == 0 and current.output.endswith("up to date\n")
    Catalog.connect(url).dispose()


@pytest.mark.integration
def test_an_empty_database_holds_no_catalog_and_the_password_is_not_shown(
    home: Path, postgresql_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sa.make_url(postgresql_database).set(password="hunter2")  # trust auth: any password
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", url.render_as_string(hide_password=False))
    shown = CliRunner().invoke(app, ["catalog", "version"])
    assert shown.exit_code == 1
    assert "revision:      none (the database holds no catalog; a first run creates one)" in shown.output
    assert "hunter2" not in shown.output and "***" in shown.output
    upgraded = CliRunner().invoke(app, ["catalog", "upgrade"])
    assert isinstance(upgraded.exception, CatalogRefused)
    assert "the database holds no catalog: nothing to upgrade" in str(upgraded.exception)
