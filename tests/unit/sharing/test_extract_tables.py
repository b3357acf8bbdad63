"""Extracts built column-wise (Arrow) give the bytes the per-row definitions give: each row's
leaf hash and ``rows.sha256`` line; a workbook past one sheet's rows goes on to the next sheet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sharing.extracts as extracts
from sharing.extract_manifest import (
    NAMES,
    PARQUET_FILE,
    read_xlsx_rows,
    row_leaf,
    rows_file,
    table_leaves,
    table_rows_file,
)
from sharing.extracts import EXTRACT_SCHEMA, SENT_SCHEMA, Extract

texts = st.one_of(st.none(), st.text(max_size=12))  # quotes, backslashes, controls, any plane
dates = st.one_of(st.none(), st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2199, 12, 31)))
rows = st.lists(
    st.fixed_dictionaries(
        {
            "change": st.sampled_from(["全量", "新增", "移出"]),
            "cert_id": st.text(min_size=1, max_size=20),
            "type_code": texts,
            "type_name": texts,
            "holder_name": texts,
            "holder_id": texts,
            "issuer_code": texts,
            "version": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
            "status": texts,
            "issue_date": dates,
            "valid_from": dates,
            "valid_to": dates,
            "leaf_index": st.one_of(st.none(), st.integers(0, 2**53 - 1)),
        }
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(rows)
def test_leaves_and_the_rows_file_built_column_wise_equal_the_per_row_definition(
    given_rows: list[dict[str, Any]],
) -> None:
    table = pa.Table.from_pylist(given_rows, schema=EXTRACT_SCHEMA)
    leaves = table_leaves(table)
    assert leaves == [row_leaf(r) for r in given_rows]
    assert table_rows_file(table, leaves) == rows_file(given_rows)


def _row(number: int) -> dict[str, Any]:
    return {
        "change": "全量",
        "cert_id": f"E-{number:04d}",
        "type_code": "11100000000000000X",
        "type_name": "=居民户口簿",  # formula-escaped in the sheet, read back as written
        "holder_name": "张*",
        "holder_id": "120114********0021",
        "issuer_code": "11120114000000000X",
        "version": 1,
        "status": "有效",
        "issue_date": dt.date(2026, 1, 2),
        "valid_from": None,
        "valid_to": dt.date(2036, 1, 1),
        "leaf_index": number,
    }


def test_a_workbook_past_one_sheets_rows_goes_on_to_the_next_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openpyxl

    monkeypatch.setattr(extracts, "_SHEET_ROWS", 3)
    written = [_row(n) for n in range(7)]
    table = pa.Table.from_pylist(written, schema=EXTRACT_SCHEMA)
    extract = Extract(
        "120114001000", 1, "full", None, 1, table, {"snapshot": 7}, SENT_SCHEMA.empty_table(), tmp_path / "x"
    )
    path = tmp_path / "certificates.xlsx"
    extracts._write_xlsx(path, extract.township, extract.rows, [("镇街", "test")])
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        assert book.sheetnames == ["证照", "证照2", "证照3", "说明"]
        assert [book[name].max_row for name in book.sheetnames[:3]] == [4, 4, 2]  # a header each
    finally:
        book.close()
    assert read_xlsx_rows(path) == written
    assert list(written[0]) == list(NAMES)


def test_a_certificate_replaced_twice_counts_once_and_the_later_ones_stay(tmp_path: Path) -> None:
    """Two newer versions of one certificate join it twice: planning keeps one row of it, and
    every later certificate of the township (a wrong ``take`` once kept the first rows instead)."""
    import sqlalchemy as sa

    from catalog._schema import certificates, extract_manifests, extract_rows, metadata
    from sharing.extracts import ExtractPolicy, Shown, TypeRule, _found, _plan

    rule = TypeRule(
        "T",
        "证照",
        "d",
        ("m",),
        (Shown("holder_name", "public", True, "w"), Shown("holder_id", "secret", False, "w")),
    )
    policy = ExtractPolicy({"T": rule})
    here, there = "120114001000", "120114002000"

    def cert(leaf: int, cert_id: str, township: str = here, previous: str | None = None) -> dict[str, Any]:
        return {
            "cert_id": cert_id, "dataset": "d", "record_key": cert_id,
            "holder_id": f"12011419900101{leaf:04d}",
            "holder_name": "张三", "type_code": "T", "type_name": "证照", "issuer_code": "I", "serial": leaf,
            "version": 1, "status": "有效", "issue_date": dt.date(2020, 1, 1), "valid_from": None,
            "valid_to": None, "township": township, "content_sha256": "x", "leaf_index": leaf,
            "batch_id": "b", "previous_id": previous,
        }  # fmt: skip

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    metadata.create_all(engine, tables=[certificates, extract_rows, extract_manifests])
    with engine.begin() as conn:
        conn.execute(certificates.insert(), [cert(1, "A"), cert(2, "B"), cert(3, "C")])
        conn.execute(certificates.insert(), [cert(4, "A2", there, "A"), cert(5, "A3", there, "A")])
    with engine.connect() as conn:
        found = _found(conn, here, policy)
        planned = _plan(conn, tmp_path / "x", here, 1, policy, True)
    assert found["cert_id"].to_pylist() == ["A", "B", "C"]
    assert found["superseded"].to_pylist() == [True, False, False]
    assert found["moved_to"].to_pylist()[0] == there
    assert planned is not None and planned.temp is not None and planned.count == 2
    # a full snapshot waits in its Parquet file, not in memory
    assert planned.rows.num_rows == 0 and planned.sent.num_rows == 0
    assert pq.read_table(planned.temp / PARQUET_FILE)["cert_id"].to_pylist() == ["B", "C"]
    engine.dispose()


def test_a_workbook_written_a_few_rows_at_a_time_is_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows become Python values a chunk at a time (memory flat for a big township): the same
    bytes as all at once, across sheets too."""
    from sharing.extract_manifest import file_sha256

    monkeypatch.setattr(extracts, "_SHEET_ROWS", 3)
    written = [_row(n) for n in range(8)]
    table = pa.Table.from_pylist(written, schema=EXTRACT_SCHEMA)
    extracts._write_xlsx(tmp_path / "whole.xlsx", "120114001000", table, [("镇街", "test")])
    monkeypatch.setattr(extracts, "_CHUNK_ROWS", 2)
    extracts._write_xlsx(tmp_path / "chunks.xlsx", "120114001000", table, [("镇街", "test")])
    assert file_sha256(tmp_path / "whole.xlsx") == file_sha256(tmp_path / "chunks.xlsx")
    assert read_xlsx_rows(tmp_path / "chunks.xlsx") == written


def test_a_workbook_written_from_the_parquet_file_a_few_rows_at_a_time_is_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker (or the refresh) writes the workbook from the extract's Parquet file, read a
    chunk at a time and across sheets: the same bytes as from the table whole."""
    from sharing.extract_manifest import file_sha256

    monkeypatch.setattr(extracts, "_SHEET_ROWS", 3)
    written = [_row(n) for n in range(8)]
    table = pa.Table.from_pylist(written, schema=EXTRACT_SCHEMA)
    extracts._write_xlsx(tmp_path / "table.xlsx", "120114001000", table, [("镇街", "test")])
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=5)
    monkeypatch.setattr(extracts, "_CHUNK_ROWS", 2)
    extracts._write_xlsx(
        tmp_path / "file.xlsx", "120114001000", tmp_path / "rows.parquet", [("镇街", "test")]
    )
    assert file_sha256(tmp_path / "table.xlsx") == file_sha256(tmp_path / "file.xlsx")
    assert read_xlsx_rows(tmp_path / "file.xlsx") == written
    empty = EXTRACT_SCHEMA.empty_table()
    extracts._write_xlsx(tmp_path / "empty.xlsx", "120114001000", empty, [("镇街", "test")])
    assert read_xlsx_rows(tmp_path / "empty.xlsx") == []  # a sheet with its header all the same


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=70), st.integers(min_value=1, max_value=9))
def test_the_rows_root_folded_a_slice_at_a_time_is_the_root_of_all_leaves(count: int, step: int) -> None:
    import hashlib

    from sharing.extract_manifest import rows_frontier, rows_root

    leaves = [hashlib.sha256(str(n).encode()).digest() for n in range(count)]
    frontier = rows_frontier()
    for start in range(0, count, step):
        frontier.extend(leaves[start : start + step])
    assert frontier.size == count and frontier.root().hex() == rows_root(leaves)


def test_a_townships_rows_come_a_slice_at_a_time_on_each_database(
    catalog_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's driver cursor, and the servers' server-side cursors (SQLAlchemy's ``yield_per``:
    their drivers would otherwise hold the whole result): the same rows, typed, in log order, a
    slice at a time; the connection is free for the next query once the rows are read."""
    import sqlalchemy as sa

    from catalog import Catalog
    from catalog._schema import certificates
    from sharing.extracts import (
        ExtractPolicy,
        Shown,
        TypeRule,
        _driver_columns,
        _driver_slices,
        _found_query,
        _found_table,
    )

    rule = TypeRule("T", "证照", "d", ("m",), (Shown("holder_name", "public", True, "w"),))
    here, there = "120114001000", "120114002000"

    def cert(leaf: int, township: str = here, previous: str | None = None) -> dict[str, Any]:
        return {
            "cert_id": f"C{leaf}", "dataset": "d", "record_key": f"R{leaf}",
            "holder_id": f"12011419900101{leaf:04d}", "holder_name": "张三", "type_code": "T",
            "type_name": "证照", "issuer_code": "I", "serial": leaf, "version": 1, "status": "有效",
            "issue_date": dt.date(2020, 1, 1), "valid_from": dt.date(2020, 1, leaf), "valid_to": None,
            "township": township, "content_sha256": "x", "leaf_index": leaf, "batch_id": "b",
            "previous_id": previous,
        }  # fmt: skip

    catalog = Catalog.connect(catalog_url)
    try:
        with catalog.begin() as conn:
            conn.execute(certificates.insert(), [cert(n) for n in range(1, 8)] + [cert(8, there, "C2")])
        monkeypatch.setattr(extracts, "_FETCH_ROWS", 3)
        query, kinds = _found_query(ExtractPolicy({"T": rule}))
        with catalog.read() as conn:
            spy = _CursorSpy(conn)
            township = query.where(certificates.c.township == here)
            slices = list(_driver_slices(spy, township, kinds, stream=True))  # type: ignore[arg-type]
            assert conn.execute(sa.select(sa.func.count()).select_from(certificates)).scalar() == 8
            expected = {"sqlite": "Cursor", "postgresql": "ServerCursor"}.get(conn.dialect.name, "SSCursor")
            chunk = _driver_columns(spy, query.where(certificates.c.cert_id.in_(["C1", "C3"])), kinds)  # type: ignore[arg-type]
        # a whole township through psycopg's named cursor or PyMySQL's unbuffered one; a chunk of
        # ids, read whole anyway, through the drivers' plain cursors (no server cursor round trips)
        assert spy.cursors == [expected, "Cursor"] and chunk[0].to_pylist() == ["C1", "C3"]
        assert [len(columns[0]) for columns in slices] == [3, 3, 1]
        found = pa.concat_tables(_found_table(columns) for columns in slices)
        assert found["cert_id"].to_pylist() == [f"C{n}" for n in range(1, 8)]
        assert found["valid_from"].type == pa.date32()
        assert found["valid_from"].to_pylist() == [dt.date(2020, 1, n) for n in range(1, 8)]
        assert found["superseded"].to_pylist() == [n == 2 for n in range(1, 8)]
        assert found["moved_to"].to_pylist()[1] == there
    finally:
        catalog.dispose()


class _CursorSpy:
    """A connection that notes the driver cursor class of each result it executes."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.cursors: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        result = self.conn.execute(*args, **kwargs)
        self.cursors.append(type(result.cursor).__name__)
        return result
