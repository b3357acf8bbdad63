"""The Parquet lake: files named after their batch, partitioned by township, read back as written."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake.parquet import ParquetLake, write_parquet_atomic
from onceonly.errors import ConfigurationError


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_accepted_rows_are_partitioned_by_township_and_rewritten_in_place(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    table = pa.table({"id": ["a", "b", "c"], "township": ["120114001", "120114002", "120114001"]})

    lake.write_accepted("household", "batch1", table, "township")
    lake.write_accepted("household", "batch1", table, "township")  # a retry of the same batch

    assert _files(tmp_path) == [
        "accepted/dataset=household/township=120114001/batch1-0.parquet",
        "accepted/dataset=household/township=120114002/batch1-0.parquet",
    ]
    back = lake.read_accepted("household").sort_by("id")
    # a 9-digit code is still text, not a guessed integer
    assert back.schema.field("township").type == pa.string()
    assert back.to_pylist() == table.to_pylist()


def test_without_a_township_column_one_file_per_batch(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    lake.write_accepted("licences", "b1", pa.table({"id": [1, 2]}), None)
    lake.write_accepted("licences", "b2", pa.table({"id": [3]}), None)
    lake.write_accepted("licences", "b3", pa.table({"id": pa.array([], pa.int64())}), None)

    assert _files(tmp_path) == [
        "accepted/dataset=licences/b1.parquet",
        "accepted/dataset=licences/b2.parquet",
    ]
    assert sorted(lake.read_accepted("licences").column("id").to_pylist()) == [1, 2, 3]
    assert lake.read_accepted("nothing-yet").num_rows == 0


def test_quarantine_files_are_written_whole(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    rows = pa.table({"person_id": ["bad"], "__rules": [["person_id.gb11643_citizen_id"]]})
    lake.write_quarantine("household", "b1", rows)
    lake.write_quarantine("household", "b2", rows.slice(0, 0))

    assert _files(tmp_path) == ["quarantine/dataset=household/b1.parquet"]
    assert pq.read_table(lake.quarantine_dir("household") / "b1.parquet").equals(rows)


def test_an_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "x.parquet"
    write_parquet_atomic(pa.table({"v": [1]}), path)
    write_parquet_atomic(pa.table({"v": [2, 3]}), path)
    assert pq.read_table(path).column("v").to_pylist() == [2, 3]
    assert _files(tmp_path) == ["deep/x.parquet"]


def test_a_folder_or_a_file_url_opens_the_local_lake(tmp_path: Path) -> None:
    for url in (str(tmp_path / "lake"), f"file://{tmp_path}/lake"):
        lake = ParquetLake.at(url)
        assert lake.fs is None and lake.root == tmp_path / "lake"  # fsync and rename, as ever
        assert lake.location == str((tmp_path / "lake").resolve())


def test_a_url_no_file_system_knows_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"ONCEONLY_LAKE_URL nosuch://bucket/lake: cannot open it"):
        ParquetLake.at("nosuch://bucket/lake")
