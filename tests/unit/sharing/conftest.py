"""A catalog for the township side: a SQLite file, or a fresh PostgreSQL schema."""

from __future__ import annotations

import pytest
from catalog_records import Records

from catalog import Catalog


@pytest.fixture
def records(catalog: Catalog) -> Records:
    return Records(catalog)
