"""The ``files`` connector on hostile drops: each bad file is refused by name with its cause or the
limit it passed (``onceonly.limits``), in bounded time and memory, never quoting a row, and the
good files beside it still land. Every hostile input is built here."""

from __future__ import annotations

import functools
import io
import os
import re
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import pytest
from connector_sources import ANYWHERE, column, drain, registration

from connectors import EnvironmentSecrets, create_connector
from connectors.base import Connector
from onceonly.errors import SourceDataMalformed
from onceonly.limits import Limits, MiB

CITIZEN_ID = "110101199003071234"  # planted in every hostile row: no message may carry it
NAME = "张三丰"
SMALL = Limits(field_bytes=1024, row_bytes=4096, unzipped_bytes=MiB, xlsx_bytes=MiB, zip_ratio=10)
SHEET = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def files(folder: Path, limits: Limits | None = None, **options: Any) -> Connector:
    options = {"settle_seconds": 0, "pattern": "*", **options}
    reg = registration("files", name="minzheng-test", path=str(folder), **options)
    return create_connector(reg, Path("/nonexistent"), EnvironmentSecrets({}), paths=ANYWHERE, limits=limits)


def put(path: Path, data: bytes, age: float = 10.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def refused(source: Connector, seconds: float = 5.0) -> str:
    """The message of the SourceDataMalformed the pull ends in, checked for bounded time and for
    carrying no row content."""
    started = time.monotonic()
    with pytest.raises(SourceDataMalformed) as info:
        drain(source)
    assert time.monotonic() - started < seconds
    message = str(info.value)
    assert "minzheng-test" in message
    assert CITIZEN_ID not in message and CITIZEN_ID[:6] + "********" not in message and NAME not in message
    return message


def peak_bytes(source: Connector) -> int:
    """Peak of Python allocations while ``source`` is pulled to its error."""
    tracemalloc.start()
    try:
        with pytest.raises(SourceDataMalformed):
            drain(source)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- XLSX ---------------------------------------------------------------------------------------


def workbook(sheet: bytes | None = None) -> bytes:
    """A real XLSX (openpyxl writes it), its first sheet's XML replaced by ``sheet``."""
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    wb.active.append(["编号", "姓名", "公民身份号码"])
    wb.active.append([1, NAME, CITIZEN_ID])
    buffer = io.BytesIO()
    wb.save(buffer)
    if sheet is None:
        return buffer.getvalue()
    source = zipfile.ZipFile(buffer)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for part in source.infolist():
            z.writestr(part.filename, sheet if part.filename.endswith("sheet1.xml") else source.read(part))
    return out.getvalue()


def worksheet(rows: bytes) -> bytes:
    return b'<worksheet xmlns="' + SHEET.encode() + b'"><sheetData>' + rows + b"</sheetData></worksheet>"


BOMB_BYTES = 64 * MiB


@functools.cache
def bomb() -> bytes:
    """A valid workbook whose sheet holds one cell of 64 MiB of repeated text: ~64 KB zipped."""
    cell = b'<c r="B2" t="inlineStr"><is><t>' + CITIZEN_ID.encode() * (BOMB_BYTES // 18) + b"</t></is></c>"
    return workbook(
        worksheet(
            b'<row r="1"><c r="A1" t="inlineStr"><is><t>no</t></is></c></row><row r="2">' + cell + b"</row>"
        )
    )


def understated(data: bytes, part: str = "xl/worksheets/sheet1.xml", size: int = 1000) -> bytes:
    """``data`` with ``part``'s uncompressed size rewritten in its local header and the central
    directory: a zip entry that lies about what it inflates to."""
    out = bytearray(data)
    for signature, name_at, header, size_at in ((b"PK\x03\x04", 26, 30, 22), (b"PK\x01\x02", 28, 46, 24)):
        at = out.find(signature)
        while at >= 0:
            (length,) = struct.unpack_from("<H", out, at + name_at)
            if out[at + header : at + header + length] == part.encode():
                struct.pack_into("<I", out, at + size_at, size)
            at = out.find(signature, at + 4)
    return bytes(out)


@pytest.mark.parametrize(
    ("limits", "lie", "expected"),
    [
        (
            None,
            False,
            r"part xl/worksheets/sheet1\.xml inflating [\d,]+-fold exceeds the limit zip_ratio = 200",
        ),
        (
            Limits(unzipped_bytes=8 * MiB, zip_ratio=1 << 20),
            False,
            r"its parts unzipped \([\d,]+ bytes declared\) exceeds the limit unzipped_bytes = 8 MiB "
            r"\(ONCEONLY_LIMIT_UNZIPPED_BYTES\)",
        ),
        (None, True, r"inflating more than its zip entry declares exceeds the limit zip_ratio = 200"),
        (
            Limits(unzipped_bytes=8 * MiB, zip_ratio=1 << 20),
            True,
            r"its parts unzipped \(more than their zip entries declare\) exceeds the limit unzipped_bytes",
        ),
    ],
    ids=["ratio", "unzipped", "lying-ratio", "lying-unzipped"],
)
def test_a_zip_bomb_is_refused_before_calamine_in_bounded_memory(
    tmp_path: Path, limits: Limits | None, lie: bool, expected: str
) -> None:
    data = bomb()
    put(tmp_path / "bomb.xlsx", understated(data) if lie else data)
    source = files(tmp_path, limits, pattern="*.xlsx")
    message = refused(source)
    assert "file bomb.xlsx" in message
    assert re.search(expected, message), message
    assert peak_bytes(source) < BOMB_BYTES // 8  # streamed through 1 MiB chunks, never held


def test_cells_far_apart_are_refused_before_calamine_allocates_the_grid(tmp_path: Path) -> None:
    # calamine allocates first cell to last, 32 bytes a cell: A1 and XFD1048576 would ask for
    # 512 GiB and abort the process. A cell without r= lands after the previous row's cells.
    put(
        tmp_path / "far.xlsx",
        workbook(worksheet(b'<row r="1"><c r="A1"><v>1</v></c><c r="XFD1048576"><v>2</v></c></row>')),
    )
    assert "the cell grid of xl/worksheets/sheet1.xml (1,048,576 rows × 16,384 columns" in refused(
        files(tmp_path)
    )

    implicit = (
        b'<row r="1"><c><v>1</v></c></row><row r="3000"><c r="ALL3000"><v>2</v></c><c><v>3</v></c></row>'
    )
    put(tmp_path / "far.xlsx", workbook(worksheet(implicit)))
    message = refused(files(tmp_path, SMALL))
    assert "(3,000 rows × 1,001 columns" in message and "exceeds the limit unzipped_bytes = 1 MiB" in message


def test_a_workbook_whose_cells_carry_no_position_still_reads(tmp_path: Path) -> None:
    # The r= attribute is optional (ECMA-376 §18.3.1.4): such cells are placed one by one.
    cells = b"".join(
        b'<row><c t="inlineStr"><is><t>%d</t></is></c><c t="inlineStr"><is><t>n%d</t></is></c></row>' % (i, i)
        for i in range(50)
    )
    put(tmp_path / "a.xlsx", workbook(worksheet(b'<x:row xmlns:x="' + SHEET.encode() + b'"/>' + cells)))
    pulled = drain(files(tmp_path, SMALL))
    assert pulled[0].batch.schema.names == ["0", "n0"]
    assert column(pulled, "n0") == [f"n{i}" for i in range(1, 50)]

    doctype = b'<!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa">]>'
    put(tmp_path / "a.xlsx", workbook(doctype + worksheet(cells)))
    assert "part xl/worksheets/sheet1.xml is not a well-formed worksheet" in refused(files(tmp_path))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"PK\x03\x04 but nothing after", "not an XLSX workbook: a damaged or truncated zip archive"),
        (
            b"\xd0\xcf\x11\xe0" + bytes(600),
            "not an XLSX workbook: an OLE2 file: a password-protected workbook",
        ),
        ("编号,姓名\n1,张三丰\n".encode(), "not an XLSX workbook: not a zip archive"),
        (b"", "not an XLSX workbook: not a zip archive"),
    ],
    ids=["zip-header-only", "ole2", "csv-renamed", "empty"],
)
def test_a_file_that_is_no_zip_is_not_a_workbook(tmp_path: Path, content: bytes, expected: str) -> None:
    put(tmp_path / "a.xlsx", content)
    assert f"file a.xlsx: {expected}" in refused(files(tmp_path))


def test_a_truncated_workbook_is_refused(tmp_path: Path) -> None:
    data = workbook()
    put(tmp_path / "cut.xlsx", data[: len(data) * 2 // 3])
    assert "file cut.xlsx: not an XLSX workbook: a damaged or truncated zip archive" in refused(
        files(tmp_path)
    )


def test_a_workbook_over_xlsx_bytes_is_refused_unread(tmp_path: Path) -> None:
    put(tmp_path / "big.xlsx", workbook() + bytes(2 * MiB))
    message = refused(files(tmp_path, SMALL))
    assert (
        "file big.xlsx (" in message
        and "exceeds the limit xlsx_bytes = 1 MiB (ONCEONLY_LIMIT_XLSX_BYTES)" in message
    )


def test_a_cell_over_field_bytes_is_refused(tmp_path: Path) -> None:
    header = b'<row r="1"><c r="A1" t="inlineStr"><is><t>h</t></is></c><c r="B1"><v>1</v></c></row>'
    cell = b'<c r="B2" t="inlineStr"><is><t>' + b"x" * 2000 + b"</t></is></c>"
    put(tmp_path / "a.xlsx", workbook(worksheet(header + b'<row r="2">' + cell + b"</row>")))
    message = refused(files(tmp_path, SMALL))
    assert "file a.xlsx: the value in data row 1, column 2 exceeds the limit field_bytes = 1 KiB" in message


# -- CSV ----------------------------------------------------------------------------------------


def test_a_50_mb_field_is_refused_as_a_row_over_row_bytes(tmp_path: Path) -> None:
    put(
        tmp_path / "big.csv",
        "编号,备注,公民身份号码\n1,".encode() + b"x" * (50 * MiB) + f",{CITIZEN_ID}\n".encode(),
    )
    message = refused(files(tmp_path))
    assert "file big.csv: row 1 exceeds the limit row_bytes = 4 MiB (ONCEONLY_LIMIT_ROW_BYTES)" in message


def test_a_field_over_field_bytes_and_a_row_over_row_bytes_are_refused_by_position(tmp_path: Path) -> None:
    rows = "".join(f"{i},{NAME},{CITIZEN_ID}\n" for i in range(5))
    put(tmp_path / "a.csv", ("编号,姓名,备注\n" + rows + "6,x," + "长" * 400 + "\n").encode("gbk"))
    # 400 characters are 800 bytes in GBK but 1,200 in UTF-8, as Arrow holds them
    assert "file a.csv: the value in row 6, column 3 exceeds the limit field_bytes = 1 KiB" in refused(
        files(tmp_path, SMALL)
    )
    wide = ",".join(["y" * 1000] * 5)  # 5,004 bytes: each value fits, the row does not
    put(tmp_path / "a.csv", ("a,b,c,d,e\n" + f"1,{NAME},{CITIZEN_ID},4,5\n" + wide + "\n").encode())
    assert "file a.csv: row 2 exceeds the limit row_bytes = 4 KiB (ONCEONLY_LIMIT_ROW_BYTES)" in refused(
        files(tmp_path, SMALL)
    )


def test_a_header_over_row_bytes_is_refused_without_reading_the_file(tmp_path: Path) -> None:
    put(tmp_path / "a.csv", b"a" * (64 * MiB) + b",b\n1,2\n")
    source = files(tmp_path, SMALL)
    assert "file a.csv: the header exceeds the limit row_bytes = 4 KiB" in refused(source)
    assert peak_bytes(source) < 8 * MiB  # hashed in 1 MiB chunks, parsed one block at a time


@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])
def test_cr_only_line_ends_are_lines_for_header_and_body_alike(tmp_path: Path, encoding: str) -> None:
    # Old Mac exports end lines with CR alone; Arrow reads CR as a line end, and so the header too.
    text = f'编号,姓名,备注\r1,{NAME},"甲\r乙"\r2,李四,\r\r3,王五,x'
    put(tmp_path / "mac.csv", text.encode(encoding))
    pulled = drain(files(tmp_path))
    assert pulled[0].batch.schema.names == ["编号", "姓名", "备注"]
    assert column(pulled, "编号") == ["1", "2", "3"]
    assert column(pulled, "备注") == ["甲\r乙", None, "x"]


def test_quoted_line_breaks_across_blocks_and_a_header_without_line_end_read(tmp_path: Path) -> None:
    # Blocks of 4 KiB: many a quoted break falls on a block boundary (Arrow failed "out of sync
    # with chunker" there before newlines_in_values).
    rows = "".join(f'{i},"第一行\n第二行 {i}"\n' for i in range(2000))
    put(tmp_path / "a.csv", ("编号,备注\n" + rows).encode("gbk"))
    assert column(drain(files(tmp_path, SMALL)), "备注")[1999] == "第一行\n第二行 1999"
    put(tmp_path / "a.csv", "编号,备注".encode("gbk"))  # a day without records, no line end
    assert drain(files(tmp_path, SMALL)) == []


def test_a_nul_byte_is_refused_with_its_line_before_any_row(tmp_path: Path) -> None:
    body = "".join(f"{i},{NAME}{i},{CITIZEN_ID}\n" for i in range(300_000)).encode()  # > one block
    put(tmp_path / "a.csv", b"no,name,id\n" + body + b"300000,x\x00y,z\n" + body, age=20)
    put(tmp_path / "b.csv", b"no,name,id\n1,ok,-\n", age=10)
    landed = []
    with pytest.raises(SourceDataMalformed) as info:
        for p in files(tmp_path).pull(None, 100_000):
            landed.append(p)
    message = str(info.value)
    assert "file a.csv: holds a NUL character (line 300002): not a text CSV" in message
    assert CITIZEN_ID not in message and NAME not in message
    assert column(landed, "name") == ["ok"]  # nothing of a.csv was yielded; b.csv still landed


def test_the_nul_of_utf16_is_no_nul_once_the_encoding_is_set(tmp_path: Path) -> None:
    put(tmp_path / "a.csv", "no,name\n1,x\n".encode("utf-16-le"))
    assert "holds a NUL character (line 1)" in refused(files(tmp_path))  # auto: valid UTF-8, with NULs
    assert column(drain(files(tmp_path, encoding="utf-16-le")), "name") == ["x"]


@pytest.mark.parametrize(
    ("content", "options", "expected"),
    [
        (
            f"a,b\n1,2\n3,{CITIZEN_ID},{NAME}\n".encode(),
            {},
            "CSV parse error: Row #3: Expected 2 columns, got 3",
        ),
        (b"a,b\n1,2\n", {"rename": {"a": "x", "b": "x"}}, "columns 1, 2 have the same name"),
        (b"", {}, "empty file, no header"),
        (b"\r\n\n\r", {}, "empty file, no header"),
        (f'a,b\n1,"{CITIZEN_ID}'.encode(), {}, "ends inside a quoted field (the file may be truncated)"),
        (f"a,b\n1,{NAME}\n".encode("gbk")[:-2], {"encoding": "gbk"}, "not valid gbk text (wrongly encoded)"),
        (f"a,b\n1,{NAME}\n".encode("utf-16-le"), {"encoding": "utf-8"}, "holds a NUL character"),
    ],
    ids=["ragged", "renamed-twice", "empty", "blank-lines", "truncated", "cut-gbk", "utf16-as-utf8"],
)
def test_known_breakages_keep_their_message(
    tmp_path: Path, content: bytes, options: dict[str, Any], expected: str
) -> None:
    put(tmp_path / "x.csv", content)
    assert f"file x.csv: {expected}" in refused(files(tmp_path, **options))


# -- JSON lines ---------------------------------------------------------------------------------

ROW = f'{{"id": "{CITIZEN_ID}", "name": "{NAME}"}}\n'.encode()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f'["{CITIZEN_ID}"]'.encode(), "line 2 is not a JSON object"),
        (
            b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "line 2: its nesting exceeds the limit json_depth = 32",
        ),
        (b'{"a": ' + b"[" * 32 + b"]" * 32 + b"}", "line 2: its nesting exceeds the limit json_depth = 32"),
        (b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "b": [[1]]}', None),
        (
            b'{"a": ' + b"9" * 5000 + b"}",
            "line 2: an integer of 5000 digits exceeds the limit json_int_digits = 40",
        ),
        (
            b'{"a": -' + b"9" * 41 + b"}",
            "line 2: an integer of 41 digits exceeds the limit json_int_digits = 40",
        ),
        (f'{{"a": {CITIZEN_ID}'.encode(), "line 2 is not JSON"),
    ],
    ids=["array", "deep-100000", "deep-33", "brackets-in-strings", "huge-int", "int-41", "not-json"],
)
def test_a_json_line_past_a_limit_names_its_line(tmp_path: Path, line: bytes, expected: str | None) -> None:
    put(tmp_path / "a.jsonl", ROW + line + b"\n" + ROW)
    source = files(tmp_path, pattern="*.jsonl")
    if expected is None:
        assert len(column(drain(source), "a")) == 3
        return
    assert f"file a.jsonl: {expected}" in refused(source)


def test_a_json_line_over_row_bytes_is_not_read_whole(tmp_path: Path) -> None:
    put(tmp_path / "a.jsonl", ROW + b'{"a": "' + b"x" * (64 * MiB) + b'"}\n' + ROW)
    source = files(tmp_path, SMALL, pattern="*.jsonl")
    assert "file a.jsonl: line 2 exceeds the limit row_bytes = 4 KiB (ONCEONLY_LIMIT_ROW_BYTES)" in refused(
        source
    )
    assert peak_bytes(source) < 8 * MiB


def test_a_json_value_over_field_bytes_names_its_line_and_column(tmp_path: Path) -> None:
    put(tmp_path / "a.jsonl", ROW * 3 + b'{"id": "x", "name": "' + b"y" * 2000 + b'"}\n')
    message = refused(files(tmp_path, SMALL, pattern="*.jsonl"))
    assert "file a.jsonl: the value in line 4, column 2 exceeds the limit field_bytes = 1 KiB" in message


# -- together -----------------------------------------------------------------------------------


def test_broken_files_among_good_ones_are_each_named_and_the_good_ones_land(tmp_path: Path) -> None:
    put(tmp_path / "1-good.csv", f"编号,姓名\n1,{NAME}\n".encode("gbk"), age=60)
    put(tmp_path / "2-bomb.xlsx", bomb(), age=50)
    put(tmp_path / "3-nul.csv", b"a,b\n1,\x00\n", age=40)
    put(tmp_path / "4-deep.jsonl", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}\n", age=30)
    put(tmp_path / "5-good.jsonl", ROW, age=20)
    put(tmp_path / "6-notzip.xlsx", b"<html>not a workbook</html>", age=10)
    source = files(tmp_path, pattern="*")
    landed = []
    started = time.monotonic()
    with pytest.raises(SourceDataMalformed) as info:
        for p in source.pull(None, 10):
            landed.append(p)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "4 file(s) refused, the others were read" in message
    for name in ("2-bomb.xlsx", "3-nul.csv", "4-deep.jsonl", "6-notzip.xlsx"):
        assert f"file {name}" in message
    assert [p.batch.num_rows for p in landed] == [1, 1]  # 1-good.csv and 5-good.jsonl
    assert len(landed[-1].cursor["done"]) == 2


def test_a_first_row_longer_than_the_header_block_is_read(tmp_path: Path) -> None:
    # The header is looked for in a first block of 64 KiB; a first data row of 200,000
    # characters straddles it and is read within the 4 MiB row_bytes.
    put(tmp_path / "a.csv", b"id,note\n1," + b"x" * 200_000 + b"\n2,short\n")
    pulled = drain(files(tmp_path))
    assert column(pulled, "id") == ["1", "2"] and len(column(pulled, "note")[0]) == 200_000


def test_a_picture_in_a_workbook_is_not_taken_for_a_worksheet(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["编号", "姓名"])
    book.active.append([1, "张三"])
    path = tmp_path / "with-picture.xlsx"
    book.save(path)
    noise = b"\x89PNG\r\n\x1a\n" + b"\x00 <x:c \x01:c>\xff" * 10_000  # bytes a worksheet scan would misread
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("xl/media/image1.png", noise)
    os.utime(path, (time.time() - 10, time.time() - 10))
    pulled = drain(files(tmp_path, pattern="*.xlsx"))
    assert column(pulled, "姓名") == ["张三"]
