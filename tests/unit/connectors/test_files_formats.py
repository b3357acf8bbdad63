"""The ``files`` connector: encodings, formats, fsspec URLs, files still being written, broken
files and the archive folder, on real files."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from connector_sources import column, connector, drain, registration
from fsspec.implementations.memory import MemoryFileSystem

from connectors.base import Connector
from onceonly.errors import SourceDataMalformed

TEXT = "编号,姓名,地址\n" + "".join(f'{i},名{i},"天津市武清区, {i}号"\n' for i in range(40))


def files(path: str, **options: Any) -> Connector:
    return connector(
        registration("files", name="minzheng-test", path=path, **{"settle_seconds": 0, **options})
    )


def put(path: Path, data: bytes, age: float = 10.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"], ids=["utf8", "utf8-bom", "gbk", "gb18030"]
)
def test_each_encoding_is_detected(tmp_path: Path, encoding: str) -> None:
    put(tmp_path / "a.csv", TEXT.encode(encoding))
    pulled = drain(files(str(tmp_path)), None, batch_size=16)
    assert pulled[0].batch.schema.names == ["编号", "姓名", "地址"]
    assert column(pulled, "姓名") == [f"名{i}" for i in range(40)]
    assert column(pulled, "地址")[3] == "天津市武清区, 3号"


def test_a_gbk_file_whose_first_megabytes_are_ascii_is_still_detected(tmp_path: Path) -> None:
    ascii_rows = "".join(f"{i},name{i},x\n" for i in range(200_000))  # > 1 MiB before any Chinese
    put(tmp_path / "a.csv", ("no,name,addr\n" + ascii_rows + "9,王五,武清\n").encode("gbk"))
    pulled = drain(files(str(tmp_path)), None, batch_size=100_000)
    assert column(pulled, "name")[-1] == "王五"


def test_the_encoding_option_overrides_detection_and_a_wrong_one_is_refused_before_any_row(
    tmp_path: Path,
) -> None:
    put(tmp_path / "a.csv", TEXT.encode("gbk"))
    assert column(drain(files(str(tmp_path), encoding="gb18030")), "姓名")[0] == "名0"
    with pytest.raises(
        SourceDataMalformed, match=r"'minzheng-test': .*file a\.csv: not valid utf-8 text"
    ) as info:
        drain(files(str(tmp_path), encoding="utf-8"))
    assert "wrongly encoded" in str(info.value)


def test_a_file_in_no_known_encoding_names_the_file(tmp_path: Path) -> None:
    put(tmp_path / "b.csv", b"no,name\n1,\xff\xfe\x80\x80\n")
    with pytest.raises(SourceDataMalformed, match=r"file b\.csv: not valid UTF-8 or GB18030/GBK text"):
        drain(files(str(tmp_path)))


@pytest.fixture
def memory_folder() -> Iterator[str]:
    url = f"memory://drop-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    fs.makedirs(url.removeprefix("memory://"), exist_ok=True)
    yield url
    fs.rm(url.removeprefix("memory://"), recursive=True)


def test_a_local_path_a_file_url_and_a_memory_url_read_alike(tmp_path: Path, memory_folder: str) -> None:
    put(tmp_path / "a.csv", TEXT.encode("gbk"))
    with fsspec.open(f"{memory_folder}/a.csv", "wb") as f:
        f.write(TEXT.encode("gbk"))
    pulls = [drain(files(u), None, 7) for u in (str(tmp_path), tmp_path.as_uri(), memory_folder)]
    assert column(pulls[0], "姓名") == column(pulls[1], "姓名") == column(pulls[2], "姓名")
    assert pulls[0][-1].cursor == pulls[1][-1].cursor == pulls[2][-1].cursor  # by content hash
    assert drain(files(memory_folder), pulls[2][-1].cursor) == []


def test_xlsx_jsonl_and_parquet_by_extension(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")  # a dev dependency: only to write the workbook
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "登记"
    ws.append(["编号", "姓名", "登记日期", "金额"])
    ws.append([1, "张三", dt.date(2026, 11, 20), 12.5])
    ws.append(["0002", "李四", dt.datetime(2026, 11, 21, 8, 30), None])
    wb.save(tmp_path / "a.xlsx")
    put(
        tmp_path / "b.jsonl",
        '{"编号": 3, "姓名": "王五", "ok": true}\n\n{"编号": "4", "姓名": null}\n'.encode(),
    )
    pq.write_table(pa.table({"编号": pa.array([5], pa.int64()), "姓名": ["赵六"]}), tmp_path / "c.parquet")
    for p in tmp_path.iterdir():
        os.utime(p, (time.time() - 30, time.time() - 30))

    xlsx = drain(files(str(tmp_path), pattern="*.xlsx", sheet="登记"))
    assert xlsx[0].batch.to_pylist() == [
        {"编号": "1", "姓名": "张三", "登记日期": "2026-11-20", "金额": "12.5"},
        {"编号": "0002", "姓名": "李四", "登记日期": "2026-11-21T08:30:00", "金额": None},
    ]
    jsonl = drain(files(str(tmp_path), pattern="*.jsonl"))
    assert jsonl[0].batch.to_pylist() == [
        {"编号": "3", "姓名": "王五", "ok": "true"},
        {"编号": "4", "姓名": None, "ok": None},
    ]
    parquet = drain(files(str(tmp_path), pattern="*.parquet", rename={"编号": "no"}))
    assert parquet[0].batch.schema.field("no").type == pa.int64()  # Parquet keeps its types


def test_files_still_being_written_are_not_read(tmp_path: Path) -> None:
    put(tmp_path / "done.csv", TEXT.encode())
    for name in ("a.csv.part", "b.tmp", "~$c.csv", ".d.csv", "e.csv.filepart"):
        put(tmp_path / name, TEXT.encode())
    put(tmp_path / "fresh.csv", "编号,姓名,地址\n99,新,x\n".encode(), age=0)
    source = files(str(tmp_path), pattern="*", settle_seconds=5)
    first = drain(source)
    assert len(column(first, "编号")) == 40  # done.csv only
    os.utime(tmp_path / "fresh.csv", (time.time() - 10, time.time() - 10))
    assert column(drain(source, first[-1].cursor), "编号") == ["99"]


class UndatedMemory(MemoryFileSystem):
    """A memory file system that, like some object stores, reports no modification time."""

    protocol = "undated"

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return str(MemoryFileSystem._strip_protocol(path.replace("undated://", "memory://", 1)))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        entries = super().ls(path, detail=detail, **kwargs)
        return [{k: v for k, v in e.items() if k != "created"} for e in entries] if detail else entries

    def find(self, path: str, *args: Any, detail: bool = False, **kwargs: Any) -> Any:
        found = super().find(path, *args, detail=detail, **kwargs)
        return (
            {p: {k: v for k, v in i.items() if k != "created"} for p, i in found.items()} if detail else found
        )

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in super().info(path, **kwargs).items() if k != "created"}


def test_an_undated_file_system_waits_for_the_size_to_settle(memory_folder: str) -> None:
    fsspec.register_implementation("undated", UndatedMemory, clobber=True)
    with fsspec.open(f"{memory_folder}/a.csv", "wb") as f:
        f.write(TEXT.encode())
    undated = memory_folder.replace("memory://", "undated://")
    started = time.monotonic()
    assert len(column(drain(files(undated, settle_seconds=0.3)), "编号")) == 40
    assert time.monotonic() - started >= 0.3


def test_a_truncated_file_is_refused_by_name_and_the_other_files_still_land(tmp_path: Path) -> None:
    put(tmp_path / "a.csv", TEXT.encode(), age=30)
    put(tmp_path / "b.csv", TEXT.encode()[: TEXT.encode().rindex(b'"') - 3], age=20)  # cut in a quoted field
    put(
        tmp_path / "c.csv", ("编号,姓名,地址\n" + "".join(f"{i},c{i},x\n" for i in range(5))).encode(), age=10
    )
    source = files(str(tmp_path))
    landed = []
    with pytest.raises(SourceDataMalformed) as info:
        for p in source.pull(None, 16):
            landed.append(p)
    message = str(info.value)
    assert "'minzheng-test'" in message and "file b.csv" in message and "truncated" in message
    assert len(column(landed, "编号")) == 45  # a.csv and c.csv, nothing of b.csv
    assert len(landed[-1].cursor["done"]) == 2 and landed[-1].cursor["current"] is None

    with pytest.raises(SourceDataMalformed, match=r"file b\.csv"):  # still refused, nothing doubled
        assert list(source.pull(json.loads(json.dumps(landed[-1].cursor)), 16)) == []
    put(tmp_path / "b.csv", TEXT.replace("名", "姓").encode())  # the department drops a corrected file
    assert len(column(drain(source, landed[-1].cursor), "编号")) == 40


def test_a_file_broken_after_some_of_it_was_yielded_stops_the_pull_there(tmp_path: Path) -> None:
    body = "".join(f'{i},名{i},"地址{i}"\n' for i in range(300_000))  # > one 4 MiB parse block
    put(tmp_path / "big.csv", ("编号,姓名,地址\n" + body + "300000,cut").encode(), age=20)  # cut mid-row
    put(tmp_path / "z.csv", TEXT.encode(), age=10)
    landed = []
    with pytest.raises(SourceDataMalformed, match=r"file big\.csv"):
        for p in files(str(tmp_path)).pull(None, 50_000):
            landed.append(p)
    assert landed and all(p.cursor["current"]["file"] == "big.csv" for p in landed)
    assert all("z.csv" not in str(p.cursor) for p in landed)  # z.csv waits behind the broken file


def test_landed_files_move_to_the_archive_only_after_landing(tmp_path: Path) -> None:
    drop, archive = tmp_path / "drop", tmp_path / "archive"
    put(drop / "a.csv", TEXT.encode(), age=20)
    put(drop / "b.csv", "编号,姓名,地址\n1,王,武清\n".encode("gbk"), age=10)
    source = files(str(drop), archive=str(archive))
    pulled = drain(source, None, batch_size=30)
    assert sorted(p.name for p in drop.iterdir()) == ["a.csv", "b.csv"]  # nothing landed yet
    source.landed(pulled[0].cursor)  # a.csv not finished by this batch
    assert not archive.exists() or not any(archive.iterdir())
    source.landed(pulled[1].cursor)  # finishes a.csv
    assert [p.name for p in drop.iterdir()] == ["b.csv"]
    (moved,) = archive.iterdir()
    assert moved.name.endswith("-a.csv") and moved.read_bytes() == TEXT.encode()

    # A run that died between landing b.csv and moving it: the next pull moves it.
    again = files(str(drop), archive=str(archive))
    assert drain(again, pulled[-1].cursor) == []
    assert list(drop.iterdir()) == [] and len(list(archive.iterdir())) == 2


def test_batches_pulled_in_another_process_are_archived_by_the_one_that_lands_them(tmp_path: Path) -> None:
    drop, archive = tmp_path / "drop", tmp_path / "archive"
    put(drop / "a.csv", TEXT.encode(), age=20)
    puller = files(str(drop), archive=str(archive))  # a Dask worker (flows.ahead)
    pulled = drain(puller, None, batch_size=1000)
    lander = files(str(drop), archive=str(archive))  # the flow: it never pulled
    lander.take_over(puller.handover())
    lander.landed(pulled[-1].cursor)
    assert list(drop.iterdir()) == [] and len(list(archive.iterdir())) == 1
    # What the puller archived itself (landed by a run that died) is not archived again.
    put(drop / "b.csv", "编号,姓名,地址\n1,王,武清\n".encode("gbk"), age=10)
    first = files(str(drop), archive=str(archive))
    done = drain(first, None, batch_size=1000)[-1].cursor
    again = files(str(drop), archive=str(archive))
    drain(again, done)  # moves b.csv: the cursor says it landed
    flow_side = files(str(drop), archive=str(archive))
    flow_side.take_over(again.handover())
    assert set(again.handover()["archived"]) and flow_side._archived == set(again.handover()["archived"])
