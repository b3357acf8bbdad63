"""Fixtures: a landing harness on a SQLite file, a fresh PostgreSQL schema or MariaDB database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from landing_harness import ORIGIN, Harness

from catalog import Catalog
from evidence.keys import SigningKey


@pytest.fixture(scope="session")
def log_key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


@pytest.fixture
def harness(catalog_url: str, tmp_path: Path, log_key: SigningKey) -> Iterator[Harness]:
    catalog = Catalog.connect(catalog_url)
    try:
        yield Harness(catalog, tmp_path / "lake", log_key)
    finally:
        catalog.dispose()


@pytest.fixture
def sqlite_harness(tmp_path: Path, log_key: SigningKey) -> Iterator[Harness]:
    catalog = Catalog.connect(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        yield Harness(catalog, tmp_path / "lake", log_key)
    finally:
        catalog.dispose()
