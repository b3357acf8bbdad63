"""A catalog for the township side: a SQLite file, or a fresh PostgreSQL schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from catalog_records import Records

from lake.catalog import Catalog


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """The test PostgreSQL database seen through a fresh schema of its own, dropped afterwards."""
    schema = f"onceonly_sharing_{uuid.uuid4().hex[:12]}"
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    url = (
        f"sqlite:///{tmp_path / 'catalog.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    catalog = Catalog.connect(url)
    try:
        yield catalog
    finally:
        catalog.dispose()


@pytest.fixture
def records(catalog: Catalog) -> Records:
    return Records(catalog)
