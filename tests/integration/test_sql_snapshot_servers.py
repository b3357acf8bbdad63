"""The ``sql`` connector in snapshot mode against the real PostgreSQL and MariaDB servers.

Each test creates its own uniquely named table and drops it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors import EnvironmentSecrets, Pulled, Registration, SourcePaths, create_connector
from connectors.base import Connector, Cursor

pytestmark = pytest.mark.integration


@pytest.fixture
def table(server: str) -> Iterator[tuple[sa.Engine, sa.Table]]:
    """A table without a change timestamp (``stamped`` is a business date, not a watermark)."""
    engine = sa.create_engine(server)
    metadata = sa.MetaData()
    tbl = sa.Table(
        f"oo_snap_{uuid.uuid4().hex[:10]}",
        metadata,
        sa.Column("cert_no", sa.String(20), primary_key=True),
        sa.Column("holder", sa.String(50)),
        sa.Column("fee", sa.Numeric(10, 2)),
        sa.Column("stamped", sa.DateTime),
        sa.Column("scan", sa.LargeBinary),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(tbl), [_row(i) for i in range(1, 41)])
    try:
        yield engine, tbl
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def _row(i: int, holder: str | None = None) -> dict[str, Any]:
    return {
        "cert_no": f"C{i:04d}",
        "holder": holder or f"持证人{i}",
        "fee": Decimal(i) / 4,
        "stamped": dt.datetime(2026, 1, 1, 8) + dt.timedelta(hours=i),
        "scan": bytes([i, 0x1F, 0x5C]),
    }


def _source(url: str, table: str, home: Path, reader: str = "auto") -> Connector:
    registration = Registration(
        name="scjg-snapshot",
        department="测试",
        dataset="business_licence",
        type="sql",
        options={
            "url": url,
            "table": table,
            "change_detection": "snapshot",
            "key": ["cert_no"],
            "reader": reader,
        },
    )
    return create_connector(
        registration, home=home, secrets=EnvironmentSecrets({}), paths=SourcePaths.build(["/"])
    )


def _drain(source: Connector, cursor: Cursor | None, batch_size: int = 16) -> list[Pulled]:
    out = []
    for p in source.pull(cursor, batch_size):
        assert 0 < p.batch.num_rows <= batch_size or (p.deleted is not None and p.batch.num_rows == 0)
        out.append(dataclasses.replace(p, cursor=json.loads(json.dumps(p.cursor))))
    return out


def _keys(pulled: list[Pulled]) -> list[str]:
    return sorted(v for p in pulled for v in p.batch.column("cert_no").to_pylist())


def _counts(pulled: list[Pulled]) -> dict[str, int]:
    total: dict[str, int] = {}
    for p in pulled:
        for k, v in p.changes.items():
            total[k] = total.get(k, 0) + v
    return total


@pytest.mark.parametrize("reader", ["auto", "sqlalchemy"])
def test_new_changed_and_deleted_rows_are_detected_and_a_second_pull_yields_nothing(
    server: str, table: tuple[sa.Engine, sa.Table], tmp_path: Path, reader: str
) -> None:
    engine, tbl = table
    first = _drain(_source(server, tbl.name, tmp_path, reader), None)
    assert _keys(first) == [f"C{i:04d}" for i in range(1, 41)]
    assert [p.batch.num_rows for p in first] == [16, 16, 8]
    assert _counts(first) == {"new": 40, "changed": 0, "deleted": 0}
    assert _drain(_source(server, tbl.name, tmp_path, reader), first[-1].cursor) == []

    with engine.begin() as conn:
        conn.execute(sa.update(tbl).where(tbl.c.cert_no == "C0007").values(fee=Decimal("99.99")))
        conn.execute(sa.update(tbl).where(tbl.c.cert_no == "C0008").values(scan=None))
        conn.execute(sa.delete(tbl).where(tbl.c.cert_no.in_(["C0010", "C0011"])))
        conn.execute(sa.insert(tbl), [_row(50, "新户")])
    second = _drain(_source(server, tbl.name, tmp_path, reader), first[-1].cursor)
    assert _keys(second) == ["C0007", "C0008", "C0050"]
    assert _counts(second) == {"new": 1, "changed": 2, "deleted": 2}
    assert second[-1].deleted is not None and sorted(second[-1].deleted.to_pylist()) == ["C0010", "C0011"]
    assert _drain(_source(server, tbl.name, tmp_path, reader), second[-1].cursor) == []


def test_deletions_alone_are_reported(server: str, table: tuple[sa.Engine, sa.Table], tmp_path: Path) -> None:
    engine, tbl = table
    first = _drain(_source(server, tbl.name, tmp_path), None)
    with engine.begin() as conn:
        conn.execute(sa.delete(tbl).where(tbl.c.cert_no == "C0001"))
    second = _drain(_source(server, tbl.name, tmp_path), first[-1].cursor)
    assert len(second) == 1 and second[0].batch.num_rows == 0
    assert second[0].deleted is not None and second[0].deleted.to_pylist() == ["C0001"]
    assert _drain(_source(server, tbl.name, tmp_path), second[-1].cursor) == []
