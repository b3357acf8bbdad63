"""A catalog for the township side: a SQLite file, or a fresh PostgreSQL schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalog_records import Records
from counter_home import land_people

from catalog import Catalog


@pytest.fixture
def records(catalog: Catalog) -> Records:
    return Records(catalog)


@pytest.fixture
def people(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Two residents (``mine``: township 120114001000, ``other``: 120114002000) in a signed log."""
    return land_people(home, monkeypatch)
