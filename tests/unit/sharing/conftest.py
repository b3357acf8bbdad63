"""A catalog for the township side: a SQLite file, or a fresh PostgreSQL schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from catalog_records import Records

from lake.catalog import Catalog


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    url = (
        f"sqlite:///{tmp_path / 'catalog.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgresql_database")
    )
    catalog = Catalog.connect(url)
    try:
        yield catalog
    finally:
        catalog.dispose()


@pytest.fixture
def records(catalog: Catalog) -> Records:
    return Records(catalog)
