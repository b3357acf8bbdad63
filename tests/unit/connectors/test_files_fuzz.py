"""Fuzzing the ``files`` connector's readers: whatever bytes a department drops, a pull either
yields rows or fails with an ``OnceOnlyError`` naming the file — never another exception.

Inputs: arbitrary bytes, and near-valid CSV (UTF-8, GBK, GB18030) and JSON lines with random
mutations (bytes flipped, cut, inserted, a stretch repeated past the limits), written to a
``memory://`` drop folder and pulled under small limits so that every limit is reached; a real
workbook with a part mutated; and the cell grid the XLSX check bounds, against the one calamine
itself allocates. Derandomized, without an example database: the same examples on every run
(``tests/fuzz/files_atheris.py`` is the coverage-guided, open-ended counterpart, not run in CI).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import fsspec
import pytest
from connector_sources import ANYWHERE, registration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import EnvironmentSecrets, create_connector
from connectors.files import _CellGrid, _place_cells
from onceonly.errors import OnceOnlyError
from onceonly.limits import Limits

LIMITS = Limits(field_bytes=1024, row_bytes=4096, json_depth=4, json_int_digits=19, zip_ratio=10)
FUZZ = settings(
    max_examples=200,
    deadline=timedelta(seconds=3),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def pull(name: str, data: bytes, **options: Any) -> None:
    """Pull a drop folder holding ``data`` as ``name``: rows, or an OnceOnlyError naming it."""
    root = f"fuzz-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root}/{name}", "wb") as f:
        f.write(data)
    try:
        options = {"pattern": "*", "settle_seconds": 0, **options}
        reg = registration("files", name="fuzz-source", path=f"memory://{root}", **options)
        source = create_connector(
            reg, Path("/nonexistent"), EnvironmentSecrets({}), paths=ANYWHERE, limits=LIMITS
        )
        try:
            for _ in source.pull(None, 64):
                pass
        except OnceOnlyError as exc:
            assert name in str(exc), str(exc)
    finally:
        fs.rm(root, recursive=True)


# -- mutations ----------------------------------------------------------------------------------

MUTATION = st.tuples(
    st.sampled_from(["flip", "cut", "insert", "repeat"]),
    st.integers(min_value=0, max_value=1 << 20),
    st.binary(min_size=1, max_size=4) | st.sampled_from([b"\x00", b'"', b"\r", b"\n", b"\xff", b"[", b"{"]),
)


def mutate(data: bytes, mutations: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, at, piece in mutations:
        at = at % (len(out) + 1)
        if kind == "flip" and out:
            out[min(at, len(out) - 1)] = piece[0]
        elif kind == "cut":
            del out[at : at + len(piece) * 8]
        elif kind == "insert":
            out[at:at] = piece
        else:  # a stretch repeated: fields, lines and headers past field_bytes and row_bytes
            out[at:at] = bytes(out[at : at + 16]) * (len(piece) * 160)
    return bytes(out)


# -- CSV ----------------------------------------------------------------------------------------

CELL = st.text(
    alphabet=st.sampled_from(
        [*'ab1 ,;"\r\n\t', "张", "三", "丰", "号", "\ufeff", "é", "€"]
    ),  # NULs come by mutation
    max_size=24,
)
# Mostly rectangular (a ragged row is refused before any other check is reached), now and then not.
TABLE = st.integers(min_value=1, max_value=6).flatmap(
    lambda width: st.lists(st.lists(CELL, min_size=width, max_size=width), min_size=1, max_size=25)
) | st.lists(st.lists(CELL, min_size=1, max_size=6), min_size=1, max_size=5)
CSV_OPTIONS = st.fixed_dictionaries(
    {
        "encoding": st.sampled_from(["auto", "auto", "auto", "gbk", "utf-8"]),
        "delimiter": st.sampled_from([",", ",", ";"]),
    }
)


def csv_bytes(table: list[list[str]], encoding: str, line_end: str) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator=line_end).writerows(table)
    return text.getvalue().encode(encoding, errors="replace")


@FUZZ
@given(data=st.binary(max_size=4096), options=CSV_OPTIONS)
def test_any_bytes_as_csv(data: bytes, options: dict[str, str]) -> None:
    pull("drop.csv", data, **options)


@FUZZ
@given(
    table=TABLE,
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "gbk", "gb18030"]),
    line_end=st.sampled_from(["\n", "\r\n", "\r"]),
    mutations=st.lists(MUTATION, max_size=4),
    options=CSV_OPTIONS,
)
def test_near_valid_csv(
    table: list[list[str]],
    encoding: str,
    line_end: str,
    mutations: list[tuple[str, int, bytes]],
    options: dict[str, str],
) -> None:
    pull("drop.csv", mutate(csv_bytes(table, encoding, line_end), mutations), **options)


# -- JSON lines ---------------------------------------------------------------------------------

JSON_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
RECORD = st.dictionaries(st.text(max_size=6), JSON_VALUE, max_size=5)
RECORDS = st.lists(RECORD, max_size=20) | st.lists(RECORD | JSON_VALUE, max_size=5)  # now and then no object


@FUZZ
@given(data=st.binary(max_size=4096))
def test_any_bytes_as_json_lines(data: bytes) -> None:
    pull("drop.jsonl", data)


@FUZZ
@given(records=RECORDS, mutations=st.lists(MUTATION, max_size=4))
def test_near_valid_json_lines(records: list[Any], mutations: list[tuple[str, int, bytes]]) -> None:
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()
    pull("drop.jsonl", mutate(text, mutations))


# -- XLSX ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workbook_parts() -> dict[str, bytes]:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    wb.active.append(["编号", "姓名", "日期"])
    wb.active.append([1, "张三", 3.5])
    wb.active.append(["x", None, True])
    buffer = io.BytesIO()
    wb.save(buffer)
    archive = zipfile.ZipFile(buffer)
    return {p.filename: archive.read(p) for p in archive.infolist()}


@settings(
    FUZZ, max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    part=st.sampled_from(["xl/worksheets/sheet1.xml", "xl/sharedStrings.xml", "[Content_Types].xml"]),
    mutations=st.lists(MUTATION, min_size=1, max_size=4),
    zipped=st.lists(MUTATION, max_size=2),
)
def test_mutated_workbooks(
    workbook_parts: dict[str, bytes],
    part: str,
    mutations: list[tuple[str, int, bytes]],
    zipped: list[tuple[str, int, bytes]],
) -> None:
    parts = {**workbook_parts}
    parts[part] = mutate(parts.get(part, b""), mutations)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    pull("drop.xlsx", mutate(out.getvalue(), zipped))


# -- the cell grid bound, against calamine itself -------------------------------------------------

CELL_TAG = st.tuples(
    st.none() | st.tuples(st.integers(1, 60), st.integers(1, 30)),  # r="…", or none
    st.sampled_from(["value", "empty-element", "no-value"]),
    st.sampled_from([' r="{}"', ' t="n" r="{}"', " r='{}'", '\n r = "{}"']),  # where r stands, how
)
ROW_TAG = st.tuples(st.none() | st.integers(1, 60), st.booleans(), st.lists(CELL_TAG, max_size=6))


def sheet_xml(rows: list[Any], prefix: str) -> bytes:
    def ref(at: tuple[int, int] | None, form: str) -> str:
        if at is None:
            return ""
        row, column = at
        letters = ""
        while column:
            column, rest = divmod(column - 1, 26)
            letters = chr(65 + rest) + letters
        return form.format(f"{letters}{row}")

    out = []
    for r, self_closing, cells in rows:
        number = f' r="{r}"' if r else ""
        if self_closing:
            out.append(f"<{prefix}row{number}/>")
            continue
        out.append(f"<{prefix}row{number}>")
        for at, kind, form in cells:
            tag = f"{prefix}c{ref(at, form)}"
            out.append(
                {"value": f"<{tag}><{prefix}v>1</{prefix}v></{prefix}c>", "empty-element": f"<{tag}/>"}.get(
                    kind, f"<{tag}></{prefix}c>"
                )
            )
        out.append(f"</{prefix}row>")
    name = "x:" if prefix else ""
    declare = f'xmlns{":x" if prefix else ""}="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    return (
        f"<{name}worksheet {declare}><{name}sheetData>"
        + "".join(out)
        + f"</{name}sheetData></{name}worksheet>"
    ).encode()


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW_TAG, max_size=12), prefix=st.sampled_from(["", "", "x:"]), size=st.integers(1, 200))
def test_the_cell_grid_bound_covers_what_calamine_allocates(
    workbook_parts: dict[str, bytes], rows: list[Any], prefix: str, size: int
) -> None:
    from python_calamine import CalamineError, CalamineWorkbook

    sheet = sheet_xml(rows, prefix)
    grid = _CellGrid()
    for at in range(0, len(sheet), size):  # fed in chunks of any size
        grid.feed(sheet[at : at + size])
    grid.close()
    extent = grid.extent() or _place_cells(io.BytesIO(sheet))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in workbook_parts.items():
            z.writestr(name, sheet if name.endswith("sheet1.xml") else data)
    try:
        read = CalamineWorkbook.from_filelike(io.BytesIO(out.getvalue())).get_sheet_by_index(0)
    except CalamineError:
        return  # calamine refuses it: no grid
    if read.height and read.width and read.start is not None:  # rows, columns from 0
        assert extent[0] >= read.start[0] + read.height and extent[1] >= read.start[1] + read.width
