"""The Parquet lake: accepted rows by dataset and township, quarantined rows by dataset.

Example::

    lake = ParquetLake(Path("var/lake"))
    lake.write_accepted("household", batch_id, table, township_column="township_code")
    # var/lake/accepted/dataset=household/township_code=120114001000/<batch_id>-0.parquet
    lake.write_quarantine("household", batch_id, quarantined)
    # var/lake/quarantine/dataset=household/<batch_id>.parquet

File names derive from the batch id, which derives from the connector's cursor and the batch
content, so a batch re-landed after a crash overwrites its own files instead of doubling rows.

Landing goes through a staging area (``stage`` → catalog commit → ``publish``): a batch whose
catalog transaction never committed must leave no rows in the lake, even when the retry pulls
different rows (the source changed meanwhile) and so gets another batch id. What is left in
staging after a crash is published or discarded by the next landing of that connector,
according to the catalog (``lake.landing``).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from onceonly.files import fsync_dir, fsync_file, move_durably, private_dir, write_atomic


class ParquetLake:
    def __init__(self, root: Path) -> None:
        self.root = root

    def accepted_dir(self, dataset: str) -> Path:
        return self.root / "accepted" / f"dataset={dataset}"

    def quarantine_dir(self, dataset: str) -> Path:
        return self.root / "quarantine" / f"dataset={dataset}"

    def write_accepted(
        self, dataset: str, batch_id: str, table: pa.Table, township_column: str | None
    ) -> None:
        if table.num_rows == 0:
            return
        base = self.accepted_dir(dataset)
        if township_column is None:
            write_parquet_atomic(table, base / f"{batch_id}.parquet")
            return
        private_dir(base)
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
            write_parquet_atomic(table, self.quarantine_dir(dataset) / f"{batch_id}.parquet")

    def staging_dir(self, connector: str, batch_id: str) -> Path:
        """Where a batch waits for its catalog commit: the lake's layout, under its own root."""
        return self.root / "staging" / f"connector={connector}" / batch_id

    def stage(
        self,
        connector: str,
        dataset: str,
        batch_id: str,
        accepted: pa.Table,
        township_column: str | None,
        quarantined: pa.Table,
    ) -> None:
        staged = self.staging_dir(connector, batch_id)
        if staged.exists():  # an earlier attempt, perhaps cut off half-way
            shutil.rmtree(staged)
        area = ParquetLake(staged)
        area.write_accepted(dataset, batch_id, accepted, township_column)
        area.write_quarantine(dataset, batch_id, quarantined)
        # Durable before the catalog commits the batch: after that commit the staged files are
        # the only copy of its rows (the cursor has moved past them).
        if not staged.exists():
            return  # nothing to land in the lake (a batch that only reports deletions)
        for path in staged.rglob("*.parquet"):
            fsync_file(path)
        for folder in [staged, *(p for p in staged.rglob("*") if p.is_dir())]:
            fsync_dir(folder)

    def publish(self, connector: str, batch_id: str) -> None:
        """Move a staged batch into the lake; repeatable if a crash cut it short."""
        staged = self.staging_dir(connector, batch_id)
        if not staged.exists():
            return
        for path in sorted(staged.rglob("*.parquet")):
            move_durably(path, self.root / path.relative_to(staged))
        shutil.rmtree(staged)

    def discard(self, connector: str, batch_id: str) -> None:
        shutil.rmtree(self.staging_dir(connector, batch_id), ignore_errors=True)

    def staged(self, connector: str) -> list[str]:
        """Batch ids of the connector still in staging."""
        base = self.root / "staging" / f"connector={connector}"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []

    def staged_files(self, connector: str, batch_id: str) -> list[dict[str, object]]:
        """The files a staged batch will publish: their path in the lake, SHA-256 and rows (what
        the batch's log receipt records, so ``onceonly audit`` can tell an edited or lost file)."""
        staged = self.staging_dir(connector, batch_id)
        if not staged.exists():
            return []
        return [
            {"path": path.relative_to(staged).as_posix(), **file_facts(path)}
            for path in sorted(staged.rglob("*.parquet"))
        ]

    def staged_connectors(self) -> list[str]:
        """Connectors with anything in staging."""
        base = self.root / "staging"
        if not base.exists():
            return []
        return sorted(p.name.split("=", 1)[1] for p in base.iterdir() if p.is_dir() and "=" in p.name)

    def read_accepted(self, dataset: str) -> pa.Table:
        base = self.accepted_dir(dataset)
        if not base.exists():
            return pa.table({})
        # Partition values are codes: read them as text. Discovery would guess integers for
        # 9-digit township codes (and not for 12-digit ones), changing the column's type.
        keys = sorted({p.name.split("=", 1)[0] for p in base.iterdir() if p.is_dir() and "=" in p.name})
        partitioning = (
            ds.partitioning(pa.schema([(k, pa.string()) for k in keys]), flavor="hive") if keys else None
        )
        return ds.dataset(str(base), format="parquet", partitioning=partitioning).to_table()


def file_facts(path: Path) -> dict[str, object]:
    """A Parquet file's SHA-256 (hex) and row count (from its footer)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "rows": int(pq.ParquetFile(path).metadata.num_rows)}


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` (mode 600) so that readers never see a half-written file."""
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


__all__ = ["ParquetLake", "file_facts", "write_parquet_atomic"]
