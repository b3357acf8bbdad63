"""``onceonly quarantine`` on bad input: a clear error naming the cause, nothing created."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from catalog import Catalog
from cli.main import app
from lake.quarantine import QuarantineNotFound
from onceonly.errors import CatalogError
from onceonly.settings import Settings


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
