"""Fixtures: a landing harness on a SQLite file, a fresh PostgreSQL schema or MariaDB database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from landing_harness import ORIGIN, Harness

from evidence.keys import SigningKey
from lake.catalog import Catalog


@pytest.fixture(scope="session")
def log_key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.integration),
        pytest.param("mariadb", marks=pytest.mark.integration),
    ]
)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The catalog on each database it supports: SQLite (the default), PostgreSQL, MariaDB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue(f"{request.param}_database")
    return url


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
