"""Fixtures: a landing harness on a SQLite file, a fresh PostgreSQL schema or MariaDB database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from landing_harness import ORIGIN, Harness

from evidence.keys import SigningKey
from lake.catalog import Catalog


@pytest.fixture(scope="session")
def log_key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


@pytest.fixture
def postgresql_database(postgres_url: str) -> Iterator[str]:
    """The test PostgreSQL database seen through a fresh schema of its own, dropped afterwards."""
    schema = f"onceonly_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = sa.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def mariadb_database(mariadb_url: str) -> Iterator[str]:
    """A fresh MariaDB database for one test, dropped afterwards."""
    name = f"onceonly_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(mariadb_url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        url = sa.make_url(mariadb_url).set(database=name).update_query_dict({"charset": "utf8mb4"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


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
