"""The ``sql`` type mapping on SQLite: BLOB, CHAR, NULLs, the source's time zone, queries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from connector_sources import connector, drain, registration

CURSOR = {"column": "updated_at", "tiebreak": "id"}


def _database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'types.db'}"
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    tbl = sa.Table(
        "member",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("id_number", sa.CHAR(18)),
        sa.Column("photo", sa.LargeBinary),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(tbl),
            [
                {
                    "id": 1,
                    "updated_at": dt.datetime(2026, 11, 20, 8),
                    "id_number": "X" * 18,
                    "photo": b"\x00\x01",
                },
                {"id": 2, "updated_at": dt.datetime(2026, 11, 20, 9), "id_number": None, "photo": None},
            ],
        )
    engine.dispose()
    return url


def test_blob_char_and_nulls(tmp_path: Path) -> None:
    (pulled,) = drain(connector(registration("sql", url=_database(tmp_path), table="member", cursor=CURSOR)))
    assert pulled.batch.schema.field("photo").type == pa.binary()
    assert pulled.batch.schema.field("id_number").type == pa.string()
    assert pulled.batch.column("photo").to_pylist() == [b"\x00\x01", None]
    assert pulled.batch.column("id_number").to_pylist() == ["X" * 18, None]


def test_naive_timestamps_are_read_on_the_sources_clock(tmp_path: Path) -> None:
    url = _database(tmp_path)
    (shanghai,) = drain(connector(registration("sql", url=url, table="member", cursor=CURSOR)))
    (utc,) = drain(
        connector(registration("sql", url=url, table="member", cursor=CURSOR, source_timezone="UTC"))
    )
    assert shanghai.batch.schema.field("updated_at").type == pa.timestamp("us", tz="Asia/Shanghai")
    assert shanghai.batch.column("updated_at")[0].as_py() == dt.datetime(2026, 11, 20, 0, tzinfo=dt.UTC)
    assert utc.batch.column("updated_at")[0].as_py() == dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)


def test_a_query_is_typed_from_its_first_row_and_resumes(tmp_path: Path) -> None:
    url = _database(tmp_path)
    source = connector(
        registration("sql", url=url, query="SELECT id, updated_at, photo FROM member;", cursor=CURSOR)
    )
    first, second = drain(source, None, batch_size=1)
    assert first.batch.schema.names == ["id", "updated_at", "photo"]
    assert second.batch.schema == first.batch.schema  # typed once, not per batch
    assert drain(source, first.cursor, batch_size=1)[0].batch.column("id").to_pylist() == [2]
