"""Extracts built column-wise (Arrow) give the bytes the per-row definitions give: each row's
leaf hash and ``rows.sha256`` line; a workbook past one sheet's rows goes on to the next sheet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sharing.extracts as extracts
from sharing.extract_manifest import NAMES, read_xlsx_rows, row_leaf, rows_file, table_leaves, table_rows_file
from sharing.extracts import EXTRACT_SCHEMA, Extract

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
    extract = Extract("120114001000", 1, "full", None, 1, table, {"snapshot": 7}, {}, tmp_path / "x")
    path = tmp_path / "certificates.xlsx"
    extracts._write_xlsx(path, extract, [("镇街", "test")])
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        assert book.sheetnames == ["证照", "证照2", "证照3", "说明"]
        assert [book[name].max_row for name in book.sheetnames[:3]] == [4, 4, 2]  # a header each
    finally:
        book.close()
    assert read_xlsx_rows(path) == written
    assert list(written[0]) == list(NAMES)
