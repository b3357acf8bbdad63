"""The ``files`` connector on real CSV files in a drop folder under tmp_path."""

from __future__ import annotations

import codecs
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from connector_sources import column, connector, drain, registration, rows

from connectors import Registration, load_registration
from departments import MARRIAGE_HEADER, Manifest
from departments.marriages import read_marriage_csv
from onceonly.errors import ConfigurationError, SourceDataMalformed, SourceUnavailable
from onceonly.settings import Settings

SHIPPED = load_registration(Path(Settings().registrations_dir) / "minzheng-marriages.yaml")
CITIZEN_ID = "12011419870312461X"


def drop(folder: Path, **options: Any) -> Registration:
    return registration("files", name="minzheng-test", path=str(folder), **{"settle_seconds": 0, **options})


def write(path: Path, text: str, encoding: str = "utf-8", age: float = 10.0) -> Path:
    """Write ``text`` and date the file ``age`` seconds back (older than any settle time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def numbered(n: int, start: int = 0) -> str:
    return "no,name\n" + "".join(f"{i},名{i}\n" for i in range(start, start + n))


def test_the_gbk_marriage_export_is_read_with_its_header_renamed(
    departments: tuple[Path, Manifest], tmp_path: Path
) -> None:
    root, manifest = departments
    folder = tmp_path / "drop"
    shutil.copytree(root / "minzheng" / "drop", folder)
    reg = Registration.model_validate(
        {**SHIPPED.model_dump(), "options": {**SHIPPED.options, "path": str(folder), "settle_seconds": 0}}
    )
    pulled = drain(connector(reg), None, batch_size=128)

    renamed = [SHIPPED.options["rename"][h] for h in MARRIAGE_HEADER]
    assert all(p.batch.schema.names == renamed for p in pulled)
    (csv_file,) = folder.glob("*.csv")
    source_rows = read_marriage_csv(csv_file)
    assert len(source_rows) == manifest.datasets["marriages"].rows
    expected = [tuple(r[h] or None for h in MARRIAGE_HEADER) for r in source_rows]
    assert rows(pulled, renamed) == expected
    assert drain(connector(reg), pulled[-1].cursor) == []


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_encoding_auto_reads_utf8_with_or_without_bom_and_gbk(tmp_path: Path, encoding: str) -> None:
    write(tmp_path / "in" / "a.csv", "姓名,公民身份号码\n张三,110105194912310021\n李四,\n", encoding)
    (only,) = drain(connector(drop(tmp_path / "in", encoding="auto")))
    assert only.batch.schema.names == ["姓名", "公民身份号码"]  # no BOM glued to the first name
    assert only.batch.to_pylist() == [
        {"姓名": "张三", "公民身份号码": "110105194912310021"},
        {"姓名": "李四", "公民身份号码": None},
    ]


def test_a_file_is_read_once_by_content_whatever_its_name(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write(folder / "day1.csv", numbered(5))
    write(folder / "day1-copy.csv", numbered(5), age=5)  # the same bytes under another name
    source = connector(drop(folder))

    first = drain(source, None)
    assert column(first, "no") == ["0", "1", "2", "3", "4"]

    shutil.copy(folder / "day1.csv", folder / "day1-again.csv")  # re-dropped later
    write(folder / "day2.csv", numbered(2, start=5), age=1)
    second = drain(source, first[-1].cursor)
    assert column(second, "no") == ["5", "6"]
    assert drain(source, second[-1].cursor) == []


def test_files_being_written_are_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write(folder / "a.csv.part", numbered(3))
    write(folder / "b.csv", numbered(3, start=3), age=0)  # younger than settle_seconds
    source = connector(drop(folder, settle_seconds=60, pattern="*"))
    assert drain(source) == []

    (folder / "a.csv.part").rename(folder / "a.csv")
    old = time.time() - 120
    for p in folder.iterdir():
        os.utime(p, (old, old))
    assert sorted(column(drain(source), "no")) == [str(i) for i in range(6)]


def test_resuming_mid_file_yields_exactly_the_rest_despite_blank_lines_and_quoted_breaks(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    lines = ["no,remark"]
    for i in range(50):
        lines.append(f'{i},"line one\nline two"' if i % 9 == 4 else f"{i},r{i}")
        if i % 11 == 3:
            lines.append("")  # a blank line: not a row
    write(folder / "a.csv", "\r\n".join(lines) + "\r\n")
    source = connector(drop(folder))

    pulled = drain(source, None, batch_size=7)
    everything = column(pulled, "no")
    assert everything == [str(i) for i in range(50)]
    assert pulled[0].cursor["current"]["rows"] == 7
    for k, p in enumerate(pulled):
        assert column(drain(source, p.cursor, batch_size=7), "no") == everything[(k + 1) * 7 :]


def test_the_file_being_read_is_finished_before_an_older_newcomer(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write(folder / "b.csv", numbered(10), age=10)
    source = connector(drop(folder))
    first = next(iter(source.pull(None, 4)))  # the run dies after its first batch landed

    # A file copied in with its original, older modification time (rsync -t, unzip).
    write(folder / "a.csv", numbered(3, start=100), age=1000)
    rest = drain(source, first.cursor, batch_size=4)
    assert sorted(column(rest, "no"), key=int) == [str(i) for i in range(4, 10)] + ["100", "101", "102"]
    assert drain(source, rest[-1].cursor) == []


def test_a_large_file_streams_in_batches(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write(folder / "big.csv", "no,name\n" + "".join(f"{i},n{i}\n" for i in range(50_000)))
    pulled = drain(connector(drop(folder)), None, batch_size=1000)
    assert [p.batch.num_rows for p in pulled] == [1000] * 50
    assert pulled[-1].batch.column("no")[-1].as_py() == "49999"


def test_another_delimiter_applies_to_the_header_too(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.csv", "no;name\n1;甲\n2;乙\n")
    (only,) = drain(connector(drop(tmp_path / "in", delimiter=";")))
    assert only.batch.to_pylist() == [{"no": "1", "name": "甲"}, {"no": "2", "name": "乙"}]


def test_a_header_only_file_yields_nothing(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.csv", "no,name\n")
    assert drain(connector(drop(tmp_path / "in"))) == []


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (codecs.encode("姓名,值\n张三,1\n李四,2\n", "gbk")[:-4], "gbk"),  # cut inside a character
        (codecs.encode("姓名,值\n张三,1\n", "gbk") + b"\xff\xfe,2\n", "gbk"),  # not GBK at all
        (f"姓名,值\n张三,{CITIZEN_ID},extra\n".encode("gbk"), "Expected 2 columns, got 3"),
        (b"", "empty file"),
        ("a,b,a\n1,2,3\n".encode("gbk"), "columns 1, 3 have the same name"),
    ],
    ids=["truncated", "invalid-bytes", "extra-column", "empty", "duplicate-header"],
)
def test_a_broken_file_is_malformed_data_naming_the_file(tmp_path: Path, content: bytes, match: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "export_20261120.csv").write_bytes(content)
    os.utime(folder / "export_20261120.csv", (0, 0))
    with pytest.raises(SourceDataMalformed, match=match) as info:
        drain(connector(drop(folder, encoding="gbk")))
    message = str(info.value)
    assert "minzheng-test" in message and "export_20261120.csv" in message
    assert CITIZEN_ID not in message and "张三" not in message  # the offending row is not quoted


def test_a_missing_drop_folder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="does not exist"):
        drain(connector(drop(tmp_path / "not-mounted")))


def test_an_unknown_encoding_or_format_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="latin-99"):
        connector(drop(tmp_path, encoding="latin-99"))
    with pytest.raises(ConfigurationError, match=r"options\.format: Input should be 'auto', 'csv'"):
        connector(drop(tmp_path, format="xls"))
    with pytest.raises(ConfigurationError, match=r"options\.archve: Extra inputs are not permitted"):
        connector(drop(tmp_path, archve=str(tmp_path)))
