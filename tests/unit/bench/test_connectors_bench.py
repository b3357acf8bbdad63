"""The connectors benchmark's own parts on a small table: what it pulls and writes is complete."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow.parquet as pq
import sqlalchemy as sa

from bench.connectors import _COPY_FLOOR, _OURS, BATCH, _child, _create


def test_ours_pulls_the_whole_table_into_snappy_parquet_and_the_copy_floor_reads_it(
    postgres_url: str, tmp_path: Path
) -> None:
    engine = sa.create_engine(postgres_url)
    schema = f"oo_bench_test_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        _create(engine, schema, "household_1m", 3000)
        with engine.connect() as conn:
            indexes = sa.inspect(conn).get_indexes("household_1m", schema=schema)
        assert [i["column_names"] for i in indexes] == [["updated_at", "id"]]

        got = _child(_OURS, postgres_url, schema, "household_1m", str(tmp_path), "1000")
        assert got["rows"] == 3000 and got["peak_rss_mb"] > 0
        assert got["parquet"] == {
            "files": 1,
            "row_groups": 3,
            "max_row_group_rows": 1000,
            "codecs": ["SNAPPY"],
            "bytes": (tmp_path / "household.parquet").stat().st_size,
        }
        table = pq.read_table(tmp_path / "household.parquet")
        assert table.column("id").to_pylist() == list(range(1, 3001))  # keyset order, each row once

        psycopg_url = (
            sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        floor = _child(_COPY_FLOOR, psycopg_url, schema, "household_1m")
        assert floor["bytes"] > 3000 * 50 and floor["seconds"] > 0
        assert BATCH == 65_536  # dlt's chunk size in the benchmark: the same row groups on both sides
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()
