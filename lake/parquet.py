"""The Parquet lake: accepted rows by dataset and township, quarantined rows by dataset.

Example::

    lake = ParquetLake(Path("var/lake"))
    lake.write_accepted("household", batch_id, table, township_column="township_code")
    # var/lake/accepted/dataset=household/township_code=120114001000/<batch_id>-0.parquet
    lake.write_quarantine("household", batch_id, quarantined)
    # var/lake/quarantine/dataset=household/<batch_id>.parquet

File names derive from the batch id, which derives from the connector's cursor and the batch
content, so a batch re-landed after a crash overwrites its own files instead of doubling rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


class ParquetLake:
    def __init__(self, root: Path) -> None:
        self.root = root

    def accepted_dir(self, dataset: str) -> Path:
        return self.root / "accepted" / f"dataset={dataset}"

    def quarantine_dir(self, dataset: str) -> Path:
        return self.root / "quarantine" / f"dataset={dataset}"

    def write_accepted(self, dataset: str, batch_id: str, table: pa.Table, township_column: str | None) -> None:
        if table.num_rows == 0:
            return
        base = self.accepted_dir(dataset)
        if township_column is None:
            _write_atomic(table, base / f"{batch_id}.parquet")
            return
        ds.write_dataset(
            table,
            base_dir=str(base),
            format="parquet",
            partitioning=ds.partitioning(pa.schema([table.schema.field(township_column)]), flavor="hive"),
            basename_template=f"{batch_id}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
        )

    def write_quarantine(self, dataset: str, batch_id: str, table: pa.Table) -> None:
        if table.num_rows:
            _write_atomic(table, self.quarantine_dir(dataset) / f"{batch_id}.parquet")

    def read_accepted(self, dataset: str) -> pa.Table:
        base = self.accepted_dir(dataset)
        if not base.exists():
            return pa.table({})
        return ds.dataset(str(base), format="parquet", partitioning="hive").to_table()


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that readers never see a half-written file."""
    _write_atomic(table, path)


__all__ = ["ParquetLake", "write_parquet_atomic"]
