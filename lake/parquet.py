"""The Parquet lake: accepted rows by dataset and township, quarantined rows by dataset.

Example::

    lake = ParquetLake(Path("var/lake"))                  # or ParquetLake.of(settings)
    lake = ParquetLake.at("s3://bucket/district/lake")    # any fsspec URL (s3fs for s3://)
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

**Where the lake lies.** A local (or mounted) folder is written as every file OnceOnly keeps
(``onceonly.files``): a temporary file, fsync, rename, fsync of the folder, mode 600 in 700
folders; publishing renames. On an object store (an fsspec URL: ``s3://bucket/prefix``) there
is no rename and no fsync: a file is one object, which appears whole when its writer is done
(an S3 PUT, or a multipart upload completed at once) or not at all, and an object the store
acknowledged is as durable as the store. Files under their lake name are written from bytes in
memory; staged ones by Arrow's dataset writer straight to the store (a stage that fails is never
committed, so its staging area is discarded). Publishing copies each staged object to its
place (a server-side copy) and then deletes the staged ones, so a publish cut short is simply
done again (``settle_staged``). File modes do not exist there: who may read the lake is the
bucket's policy. Listings are not cached (another host may have written since).
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from onceonly.errors import ConfigurationError, LakeRefused, LakeUnavailable, OnceOnlyError
from onceonly.files import fsync_dir, fsync_file, move_durably, private_dir, write_atomic
from onceonly.privacy import scrub_exception_message

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from onceonly.settings import Settings


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _on_the_store(method: _Method) -> _Method:
    """On an object store, its failures as OnceOnly's errors (STYLE 7): a refusal (access
    denied, no such bucket) is terminal, anything else from the store (a connection refused or
    lost, a timeout, a 5xx) transient — the run retries the connector from its last landed batch.
    A file that is not Parquet stays Arrow's error (``audit`` reports it as edited)."""

    @functools.wraps(method)
    def on_the_store(self: ParquetLake, *args: Any, **kwargs: Any) -> Any:
        if self.fs is None:
            return method(self, *args, **kwargs)
        try:
            return method(self, *args, **kwargs)
        except (OnceOnlyError, pa.ArrowInvalid):
            raise
        except (PermissionError, FileNotFoundError) as exc:
            raise LakeRefused(f"the lake at {self.location}: {scrub_exception_message(exc)}") from exc
        except Exception as exc:
            raise LakeUnavailable(f"the lake at {self.location}: {scrub_exception_message(exc)}") from exc

    return cast(_Method, on_the_store)


class ParquetLake:
    """The lake under ``root``: a local folder (``fs`` None), or a prefix of an fsspec file system."""

    def __init__(self, root: PurePath, fs: AbstractFileSystem | None = None) -> None:
        self.root = root
        self.fs = fs

    @classmethod
    def of(cls, settings: Settings) -> ParquetLake:
        """The lake ``ONCEONLY_LAKE_URL`` names (default home/lake)."""
        if settings.lake_is_local:
            return cls(settings.lake_dir)
        return cls.at(settings.lake_location, settings.lake_storage_options)

    @classmethod
    def at(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> ParquetLake:
        """The lake at a folder or an fsspec URL; a URL's file system gets ``storage_options``."""
        if "://" not in url or url.split("://", 1)[0].lower() in ("file", "local"):
            return cls(Path(url.split("://", 1)[1] if "://" in url else url))
        import fsspec

        options = {"use_listings_cache": False, **(storage_options or {})}
        try:
            # A lake of its own, not fsspec's cached instance: the cache would outlive a change
            # of endpoint or credentials in the environment (botocore reads them at creation).
            fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
        except (ImportError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"ONCEONLY_LAKE_URL {url}: cannot open it ({exc})") from exc
        return cls(PurePosixPath(root), fs)

    @property
    def location(self) -> str:
        """The lake's folder (absolute) or URL, as shown to people."""
        if self.fs is None:
            return str(Path(self.root).resolve())
        return str(self.fs.unstrip_protocol(str(self.root)))

    def accepted_dir(self, dataset: str) -> PurePath:
        return self.root / "accepted" / f"dataset={dataset}"

    def quarantine_dir(self, dataset: str) -> PurePath:
        return self.root / "quarantine" / f"dataset={dataset}"

    @_on_the_store
    def write_accepted(
        self, dataset: str, batch_id: str, table: pa.Table, township_column: str | None
    ) -> None:
        if table.num_rows == 0:
            return
        base = self.accepted_dir(dataset)
        if township_column is None:
            self._write_parquet(table, base / f"{batch_id}.parquet")
            return
        if self.fs is None:
            private_dir(Path(base))
        ds.write_dataset(
            table,
            base_dir=str(base),
            format="parquet",
            partitioning=ds.partitioning(pa.schema([table.schema.field(township_column)]), flavor="hive"),
            basename_template=f"{batch_id}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            # On an object store each file is uploaded whole when the writer closes it.
            filesystem=self._arrow_fs(),
        )

    @_on_the_store
    def write_quarantine(self, dataset: str, batch_id: str, table: pa.Table) -> None:
        if table.num_rows:
            self._write_parquet(table, self.quarantine_dir(dataset) / f"{batch_id}.parquet")

    def staging_dir(self, connector: str, batch_id: str) -> PurePath:
        """Where a batch waits for its catalog commit: the lake's layout, under its own root."""
        return self.root / "staging" / f"connector={connector}" / batch_id

    @_on_the_store
    def stage(
        self,
        connector: str,
        dataset: str,
        batch_id: str,
        accepted: pa.Table,
        township_column: str | None,
        quarantined: pa.Table,
    ) -> None:
        if self.fs is not None:
            self.discard(connector, batch_id)  # an earlier attempt, perhaps cut off half-way
            area = ParquetLake(self.staging_dir(connector, batch_id), self.fs)
            area.write_accepted(dataset, batch_id, accepted, township_column)
            area.write_quarantine(dataset, batch_id, quarantined)
            return  # each object durable once the store acknowledged it
        staged = Path(self.staging_dir(connector, batch_id))
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

    @_on_the_store
    def publish(self, connector: str, batch_id: str) -> None:
        """Move a staged batch into the lake; repeatable if a crash cut it short."""
        if self.fs is not None:
            # No rename on an object store: copy every staged file to its place (each copy
            # appears whole), then delete the staging area. Cut short, it is done again: the
            # copies are of the same bytes, and nothing staged goes before all are copied.
            staged_at = self.staging_dir(connector, batch_id)
            for path in self.parquet_files(staged_at):
                self.fs.copy(str(path), str(self.root / path.relative_to(staged_at)))
            self.discard(connector, batch_id)
            return
        staged = Path(self.staging_dir(connector, batch_id))
        if not staged.exists():
            return
        for path in sorted(staged.rglob("*.parquet")):
            move_durably(path, Path(self.root) / path.relative_to(staged))
        shutil.rmtree(staged)

    @_on_the_store
    def discard(self, connector: str, batch_id: str) -> None:
        if self.fs is not None:
            objects = self._objects(self.staging_dir(connector, batch_id))
            if objects:
                self.fs.rm(objects)
            return
        shutil.rmtree(self.staging_dir(connector, batch_id), ignore_errors=True)

    @_on_the_store
    def staged(self, connector: str) -> list[str]:
        """Batch ids of the connector still in staging."""
        base = self.root / "staging" / f"connector={connector}"
        if self.fs is not None:
            return sorted(self._folders(base))
        local = Path(base)
        return sorted(p.name for p in local.iterdir() if p.is_dir()) if local.exists() else []

    @_on_the_store
    def staged_files(self, connector: str, batch_id: str) -> list[dict[str, object]]:
        """The files a staged batch will publish: their path in the lake, SHA-256 and rows (what
        the batch's log receipt records, so ``onceonly audit`` can tell an edited or lost file)."""
        staged = self.staging_dir(connector, batch_id)
        return [
            {"path": path.relative_to(staged).as_posix(), **self.file_facts(path)}
            for path in self.parquet_files(staged)
        ]

    @_on_the_store
    def staged_connectors(self) -> list[str]:
        """Connectors with anything in staging."""
        base = self.root / "staging"
        if self.fs is not None:
            return sorted(name.split("=", 1)[1] for name in self._folders(base) if "=" in name)
        local = Path(base)
        if not local.exists():
            return []
        return sorted(p.name.split("=", 1)[1] for p in local.iterdir() if p.is_dir() and "=" in p.name)

    @_on_the_store
    def read_accepted(self, dataset: str) -> pa.Table:
        base = self.accepted_dir(dataset)
        if self.fs is not None:
            if not self.parquet_files(base):
                return pa.table({})
            folders = self._folders(base)
        else:
            if not Path(base).exists():
                return pa.table({})
            folders = [p.name for p in Path(base).iterdir() if p.is_dir()]
        # Partition values are codes: read them as text. Discovery would guess integers for
        # 9-digit township codes (and not for 12-digit ones), changing the column's type.
        keys = sorted({name.split("=", 1)[0] for name in folders if "=" in name})
        partitioning = (
            ds.partitioning(pa.schema([(k, pa.string()) for k in keys]), flavor="hive") if keys else None
        )
        return ds.dataset(
            str(base), format="parquet", partitioning=partitioning, filesystem=self._arrow_fs()
        ).to_table()

    # ----------------------------------------------- files, on a local folder or an object store

    @_on_the_store
    def parquet_files(self, folder: PurePath) -> list[PurePath]:
        """The Parquet files under ``folder`` (at any depth), sorted; none if it does not exist."""
        if self.fs is None:
            local = Path(folder)
            return sorted(local.rglob("*.parquet")) if local.exists() else []
        return sorted(PurePosixPath(p) for p in self._objects(folder) if p.endswith(".parquet"))

    @_on_the_store
    def is_file(self, path: PurePath) -> bool:
        if self.fs is None:
            return Path(path).is_file()
        return bool(self.fs.isfile(str(path)))

    @_on_the_store
    def file_facts(self, path: PurePath) -> dict[str, object]:
        """:func:`file_facts` of a file of this lake."""
        if self.fs is None:
            return file_facts(Path(path))
        return file_facts(path, self.fs)

    def rows(self, path: PurePath) -> int | None:
        """Rows of a file of this lake (from its footer); None if it is not readable Parquet."""
        try:
            if self.fs is None:
                return int(pq.ParquetFile(Path(path)).metadata.num_rows)
            with self.fs.open(str(path), "rb") as handle:
                return int(pq.ParquetFile(handle).metadata.num_rows)
        except (OSError, pa.ArrowException):
            return None  # truncated, edited, gone

    def _write_parquet(self, table: pa.Table, path: PurePath) -> None:
        if self.fs is None:
            write_parquet_atomic(table, Path(path))
            return
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        # One PUT (or a multipart upload completed at once): the object appears whole or not at all.
        self.fs.pipe_file(str(path), sink.getvalue().to_pybytes())

    def _objects(self, folder: PurePath) -> list[str]:
        """Every object under ``folder`` on the object store (its keys, as the store names them)."""
        assert self.fs is not None
        try:
            return [str(p) for p in self.fs.find(str(folder))]
        except FileNotFoundError:
            return []

    def _folders(self, folder: PurePath) -> list[str]:
        """Names of the sub-folders (common prefixes) of ``folder`` on the object store."""
        assert self.fs is not None
        try:
            entries = self.fs.ls(str(folder), detail=True)
        except FileNotFoundError:
            return []
        return [PurePosixPath(e["name"]).name for e in entries if e.get("type") == "directory"]

    def _arrow_fs(self) -> Any:
        """The object store as a pyarrow file system (None: pyarrow's local one)."""
        if self.fs is None:
            return None
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        return PyFileSystem(FSSpecHandler(self.fs))


def file_facts(path: PurePath, fs: AbstractFileSystem | None = None) -> dict[str, object]:
    """A Parquet file's SHA-256 (hex) and row count (from its footer); on ``fs`` if given."""
    digest = hashlib.sha256()
    if fs is None:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return {"sha256": digest.hexdigest(), "rows": int(pq.ParquetFile(path).metadata.num_rows)}
    with fs.open(str(path), "rb") as remote:  # one object, read once, its footer again
        for block in iter(lambda: remote.read(1 << 20), b""):
            digest.update(block)
        remote.seek(0)
        return {"sha256": digest.hexdigest(), "rows": int(pq.ParquetFile(remote).metadata.num_rows)}


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` (mode 600) so that readers never see a half-written file."""
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


__all__ = ["ParquetLake", "file_facts", "write_parquet_atomic"]
