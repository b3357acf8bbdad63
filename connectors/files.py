"""``files`` connector: a drop folder where a department leaves CSV, Excel, JSON-lines or Parquet.

Example registration options::

    path: "{home}/departments/minzheng/drop"   # a local folder or any fsspec URL (file://, memory://, s3://…)
    pattern: "*.csv"
    format: auto              # csv | xlsx | jsonl | parquet; auto: by extension
    encoding: auto            # CSV only: auto (UTF-8, UTF-8 with BOM, else GB18030) or utf-8, gbk, gb18030…
    delimiter: ","            # CSV only
    sheet: 0                  # XLSX only: the sheet's index or name
    rename: {登记证字号: cert_no, 男方姓名: husband_name, ...}
    settle_seconds: 2         # a file changed more recently may still be being written
    ignore: ["*.part", "*.tmp", "*.partial", "*.filepart", "~$*", ".*"]
    archive: "{home}/departments/minzheng/archive"   # optional: landed files are moved here

Formats, chosen by extension (``.csv``/``.txt``, ``.xlsx``/``.xlsm``, ``.jsonl``/``.ndjson``,
``.parquet``/``.pq``) or forced with ``format``. CSV, XLSX and JSON-lines columns arrive as text
(Excel numbers that are whole as integers, dates as ISO 8601) and the dataset's contract
converts them; Parquet keeps its own types. CSV encodings: ``auto`` reads a UTF-8 BOM as
UTF-8, else tries strict UTF-8 over the whole file, else strict GB18030 (a superset of GBK and
GB2312); a file neither decodes is refused, naming the file. Any ``encoding`` overrides this.

Exactly once: each file is recognised by the SHA-256 of its content (a re-dropped copy under
another name is not read again). The cursor records finished files and, inside the file being
read, how many rows have landed, so a run that dies mid-file resumes there (that file is
finished first on the next run). CSV and Parquet are streamed in blocks, so memory is bounded
by the block and batch sizes; XLSX and JSON lines are read a sheet / a batch of lines at a time.

A file still being written is not read: names matching ``ignore`` (temporary and Office lock
files) are skipped, and so is a file modified less than ``settle_seconds`` ago; on a file
system that reports no modification time the folder is listed twice, ``settle_seconds``
apart, and only files whose size did not change are read.

A broken file (wrong encoding, cut inside a quoted field, not a workbook): when nothing of it
has been yielded yet (an encoding error is found while hashing, before any row; a small file is
parsed in one block), the other files still go on — nothing of the broken file was landed, so
skipping it neither loses nor doubles anything — and the pull then fails naming every broken
file and the cause. The broken file is not marked finished: it is refused again on the next
run until the department replaces it (a corrected file has another hash and is read in full).
When a file breaks after some of its rows were yielded (a large CSV cut near its end), the pull
stops there: the landed rows stay landed and the cursor points inside that file, so skipping it
would leave half a file; the connector keeps failing on that file until an operator removes or
fixes it (a fixed file with a new hash is read from its first row, so remove the landed
batches first or keep the broken file's rows out of the replacement).

Archive: with ``archive`` set, a finished file is moved there (under its name prefixed with
the first 12 hex digits of its hash) only after the batch that finished it has landed —
``landed(cursor)`` is called by the flow after the landing transaction commits. A file whose
move did not happen (a run that died in between) is moved on the next pull.

Snapshot mode (``change_detection: snapshot`` with ``key: [...]``): every file matching the
pattern together is the department's complete current table (a full export each day); each run
compares it row by row with the previous run's (``connectors.snapshot``) and yields only new
and changed rows, reporting deleted keys.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import fnmatch
import hashlib
import io
import json
import logging
import math
import posixpath
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import Field, field_validator, model_validator

from connectors.base import Connector, ConnectorOptions, Cursor, Pulled, json_text, rebatch
from onceonly.errors import ConfigurationError, ConnectorError, SourceDataMalformed, SourceUnavailable

logger = logging.getLogger(__name__)

Format = Literal["csv", "xlsx", "jsonl", "parquet"]
_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".txt": "csv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# "CSV parse error: Expected 10 columns, got 3: <the row's text>"
_QUOTED_ROW = re.compile(r"(Expected \d+ columns?, got \d+).*")


class FilesOptions(ConnectorOptions):
    """The options of a ``files`` registration (unknown keys are refused)."""

    path: str
    pattern: str = "*.csv"
    format: Literal["auto", "csv", "xlsx", "jsonl", "parquet"] = "auto"
    encoding: str = "auto"
    delimiter: str = Field(",", min_length=1, max_length=1)
    sheet: int | str = 0
    rename: dict[str, str] = Field(default_factory=dict)
    settle_seconds: float = Field(2, ge=0)
    ignore: list[str] = Field(
        default_factory=lambda: ["*.part", "*.tmp", "*.partial", "*.filepart", "~$*", ".*"]
    )
    archive: str | None = None
    change_detection: Literal["none", "snapshot"] = "none"
    key: list[str] = Field(default_factory=list)
    snapshot_dir: str | None = None  # default: $ONCEONLY_HOME/snapshots

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        if v != "auto":
            try:
                codecs.lookup(v)
            except LookupError:
                raise ValueError(f"unknown encoding {v!r}") from None
        return v

    @model_validator(mode="after")
    def _snapshot_needs_key(self) -> FilesOptions:
        if self.change_detection == "snapshot" and not self.key:
            raise ValueError("change_detection: snapshot needs key: [the columns that identify a row]")
        if self.change_detection == "snapshot" and self.archive:
            # The folder is the whole table each run: archiving its files would delete every row.
            raise ValueError("archive cannot be used with change_detection: snapshot")
        return self


class FilesConnector(Connector):
    type_name = "files"
    options_model = FilesOptions
    opts: FilesOptions
    path_options = ("path", "archive", "snapshot_dir")

    def validate_options(self) -> None:
        self._fs, self._root = _filesystem(self.opts.path)
        self._found: dict[str, str] = {}  # content hash -> path, of the files seen by the last pull
        self._archived: set[str] = set()
        self._sampling = False

    # -- listing ------------------------------------------------------------------------------

    def _files(self) -> list[tuple[str, float]]:
        """``(path, mtime)`` of the settled files matching the pattern, oldest first."""
        listed = self._list()
        settle = self.opts.settle_seconds
        now = time.time()
        settled = {p: m for p, (size, m) in listed.items() if m is not None and now - m >= settle}
        undated = {p: size for p, (size, m) in listed.items() if m is None}
        if undated:
            if settle:
                time.sleep(settle)
            again = self._list()
            for p, size in undated.items():
                if p in again and again[p][0] == size:
                    settled[p] = 0.0
        return sorted(settled.items(), key=lambda f: (f[1], posixpath.basename(f[0])))

    def _list(self) -> dict[str, tuple[int, float | None]]:
        try:
            if not self._fs.isdir(self._root):
                raise SourceUnavailable(self.name, f"drop folder {self.opts.path} does not exist")
            found = self._fs.glob(posixpath.join(self._root, self.opts.pattern), detail=True)
        except OSError as exc:
            raise SourceUnavailable(self.name, f"cannot list drop folder {self.opts.path}: {exc}") from exc
        out: dict[str, tuple[int, float | None]] = {}
        for path, info in found.items():
            name = posixpath.basename(path)
            if info.get("type") != "file" or any(fnmatch.fnmatch(name, p) for p in self.opts.ignore):
                continue
            out[path] = (int(info.get("size") or 0), _mtime(info))
        return out

    # -- pulling ------------------------------------------------------------------------------

    def _pull(self, cursor: Cursor | None, batch_size: int) -> Iterator[Pulled]:
        if self.opts.change_detection == "snapshot":
            yield from self._snapshot_pull(cursor, batch_size)
            return
        done: list[str] = list((cursor or {}).get("done", []))
        current = (cursor or {}).get("current") or {}
        files = [(path, *self._digest(path)) for path, _ in self._files()]
        self._found = {digest: path for path, digest, _ in files}
        for digest in done:
            if digest in self._found:
                self._archive(digest)  # landed by an earlier run that died before moving it
        # The file a previous run stopped inside goes first: its row count is only in `current`,
        # and a copied-in file with an older mtime must not push it out of the cursor.
        files.sort(key=lambda f: f[1] != current.get("sha256"))
        broken: list[str] = []
        for path, digest, encoding in files:
            if digest in done:
                continue  # read before, maybe under another name
            name = posixpath.basename(path)
            skip = int(current.get("rows", 0)) if current.get("sha256") == digest else 0
            rows_done = skip
            batches = rebatch(self._read(path, encoding), batch_size, skip)
            yielded = False
            try:
                batch = next(batches, None)
                while batch is not None:
                    following = next(batches, None)  # one batch of lookahead tells us which is last
                    rows_done += batch.num_rows
                    finished = following is None
                    new_cursor: Cursor = {
                        "done": [*done, digest] if finished else list(done),
                        "current": None if finished else {"sha256": digest, "file": name, "rows": rows_done},
                    }
                    yielded = True
                    yield Pulled(batch, new_cursor)
                    batch = following
            except SourceDataMalformed as exc:
                if yielded or skip:
                    raise  # part of this file has landed: stop inside it (see the module docstring)
                broken.append(exc.cause)
                logger.warning("connector %r: %s; going on with the other files", self.name, exc.cause)
                continue
            done.append(digest)
        if broken:
            raise SourceDataMalformed(
                self.name, f"{len(broken)} file(s) refused, the others were read: " + "; ".join(broken)
            )

    def _snapshot_pull(self, cursor: Cursor | None, batch_size: int) -> Iterator[Pulled]:
        from connectors.snapshot import SnapshotStore, snapshot_pull

        directory = self.opts.snapshot_dir or str(self.home / "snapshots" if self.home else "")
        if not directory:
            raise ConfigurationError(f"connector {self.name!r}: snapshot mode needs options.snapshot_dir")

        def source() -> Iterator[pa.RecordBatch]:
            for path, _ in self._files():
                _, encoding = self._digest(path)
                yield from self._read(path, encoding)

        if self._sampling:  # `connectors test`: show rows, stage no snapshot generation
            for batch in rebatch(source(), batch_size, 0):
                yield Pulled(batch, {})
            return
        yield from snapshot_pull(
            source,
            cursor,
            key=self.opts.key,
            store=SnapshotStore(Path(directory), self.name),
            batch_size=batch_size,
            connector=self.name,
        )

    def sample(self, rows: int = 5) -> pa.Table:
        self._sampling = True
        try:
            return super().sample(rows)
        finally:
            self._sampling = False

    def landed(self, cursor: Cursor) -> None:
        """The batch ending at ``cursor`` has landed: archive the files it finished."""
        for digest in cursor.get("done", []) if self.opts.archive else []:
            self._archive(digest)

    def _archive(self, digest: str) -> None:
        path = self._found.get(digest)
        if not self.opts.archive or path is None or digest in self._archived:
            return
        target_fs, target_root = _filesystem(self.opts.archive)
        target = posixpath.join(target_root, f"{digest[:12]}-{posixpath.basename(path)}")
        try:
            target_fs.makedirs(target_root, exist_ok=True)
            if target_fs is self._fs or type(target_fs) is type(self._fs):
                self._fs.mv(path, target)
            else:
                with self._fs.open(path, "rb") as src, target_fs.open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                self._fs.rm(path)
        except OSError as exc:  # the file is landed; the next pull moves it
            logger.warning("connector %r: could not archive %s: %s", self.name, posixpath.basename(path), exc)
            return
        self._archived.add(digest)

    # -- reading ------------------------------------------------------------------------------

    def _format(self, path: str) -> Format:
        if self.opts.format != "auto":
            return self.opts.format
        ext = posixpath.splitext(path)[1].lower()
        if ext not in _EXTENSIONS:
            raise SourceDataMalformed(
                self.name,
                f"file {posixpath.basename(path)}: cannot tell the format from {ext or 'no extension'!r}; "
                "set options.format",
            )
        return _EXTENSIONS[ext]

    def _digest(self, path: str) -> tuple[str, str | None]:
        """SHA-256 of the file and, for a CSV, the encoding it decodes in (strictly, whole file).

        ``encoding: auto`` tries UTF-8 (``utf-8-sig`` with a BOM) and then GB18030; an explicit
        encoding is checked the same way. ``"!"`` + the encodings tried: none decodes the file.
        Checking here, while hashing, finds a wrongly encoded file before any row is yielded.
        """
        if self._format(path) != "csv":
            candidates: list[str] = []
        elif self.opts.encoding == "auto":
            candidates = ["utf-8", "gb18030"]
        else:
            candidates = [self.opts.encoding]
        decoders = {c: codecs.getincrementaldecoder(c)() for c in candidates}
        h = hashlib.sha256()
        bom = None
        quotes = 0
        try:
            with self._fs.open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    if bom is None:
                        bom = chunk.startswith(codecs.BOM_UTF8)
                    h.update(chunk)
                    quotes += chunk.count(b'"') if candidates else 0
                    for label in list(decoders):
                        try:
                            decoders[label].decode(chunk)
                        except UnicodeDecodeError:
                            del decoders[label]
        except FileNotFoundError as exc:
            raise SourceUnavailable(
                self.name, f"file {posixpath.basename(path)} vanished while read"
            ) from exc
        for label in list(decoders):
            try:
                decoders[label].decode(b"", final=True)
            except UnicodeDecodeError:
                del decoders[label]
        if not candidates:
            return h.hexdigest(), None
        if quotes % 2:
            # RFC 4180 §2: quotes pair up ("" escapes one), and in UTF-8 and GB18030 the byte 0x22
            # is never part of a multi-byte character, so an odd count means the file ends inside a
            # quoted field. Arrow's reader would silently take the rest of the file as its value.
            return h.hexdigest(), "!truncated"
        for label in candidates:
            if label in decoders:
                return h.hexdigest(), "utf-8-sig" if label == "utf-8" and bom else label
        return h.hexdigest(), "!" + "/".join(candidates)

    def _read(self, path: str, encoding: str | None) -> Iterator[pa.RecordBatch]:
        """The file's rows in blocks of any size, columns renamed; errors name the file."""
        name = posixpath.basename(path)
        try:
            fmt = self._format(path)
            if fmt == "csv":
                yield from self._read_csv(path, encoding or self.opts.encoding)
            elif fmt == "xlsx":
                yield self._read_xlsx(path)
            elif fmt == "jsonl":
                yield from self._read_jsonl(path)
            else:
                with self._fs.open(path, "rb") as f:
                    for batch in pq.ParquetFile(f).iter_batches(batch_size=65_536):
                        yield batch.rename_columns(self._names(name, batch.schema.names))
        except ConnectorError:
            raise
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as exc:
            raise SourceDataMalformed(self.name, f"file {name}: {_without_row(exc)}") from exc
        except Exception as exc:  # calamine and parquet raise their own types on a broken file
            if isinstance(exc, OSError) and not _is_format_error(exc):
                raise SourceUnavailable(self.name, f"file {name}: {type(exc).__name__}: {exc}") from exc
            raise SourceDataMalformed(
                self.name, f"file {name}: not a readable {fmt} file ({type(exc).__name__})"
            ) from exc

    def _names(self, file: str, header: list[str]) -> list[str]:
        names = [self.opts.rename.get(h, h) for h in header]
        if len(set(names)) < len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise SourceDataMalformed(self.name, f"file {file}: column(s) {', '.join(twice)} appear twice")
        return names

    def _read_csv(self, path: str, encoding: str) -> Iterator[pa.RecordBatch]:
        name = posixpath.basename(path)
        if encoding == "!truncated":
            raise SourceDataMalformed(
                self.name, f"file {name}: ends inside a quoted field (the file may be truncated)"
            )
        if encoding.startswith("!"):
            tried = "UTF-8 or GB18030/GBK" if self.opts.encoding == "auto" else encoding[1:]
            hint = "; set options.encoding" if self.opts.encoding == "auto" else ""
            raise SourceDataMalformed(
                self.name, f"file {name}: not valid {tried} text (wrongly encoded){hint}"
            )
        delimiter = self.opts.delimiter
        with self._fs.open(path, "rb") as f:
            first = f.readline()
        try:
            line = first.decode(encoding).lstrip("\ufeff")
        except UnicodeDecodeError as exc:
            raise SourceDataMalformed(self.name, f"file {name}: the header is not {encoding} text") from exc
        header = next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
        if not header:
            raise SourceDataMalformed(self.name, f"file {name}: empty file, no header")
        names = self._names(name, header)
        with self._fs.open(path, "rb") as f:
            reader = pacsv.open_csv(
                f,
                read_options=pacsv.ReadOptions(
                    encoding=encoding, column_names=names, skip_rows=1, block_size=1 << 22
                ),
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True
                ),
            )
            try:
                yield from reader
            except UnicodeDecodeError as exc:
                raise SourceDataMalformed(self.name, f"file {name}: not valid {encoding} text") from exc
            except pa.ArrowInvalid as exc:
                cause = _without_row(exc)
                if "quote" in cause.lower() or "Expected" in cause:
                    cause += " (the file may be truncated)"
                raise SourceDataMalformed(self.name, f"file {name}: {cause}") from exc

    def _read_xlsx(self, path: str) -> pa.RecordBatch:
        from python_calamine import CalamineWorkbook

        name = posixpath.basename(path)
        with self._fs.open(path, "rb") as f:
            workbook = CalamineWorkbook.from_filelike(io.BytesIO(f.read()))
        sheet = self.opts.sheet
        try:
            table = (
                workbook.get_sheet_by_index(sheet)
                if isinstance(sheet, int)
                else workbook.get_sheet_by_name(sheet)
            )
        except (IndexError, KeyError, ValueError) as exc:
            raise SourceDataMalformed(self.name, f"file {name}: no sheet {sheet!r}") from exc
        rows = table.to_python(skip_empty_area=True)
        if not rows:
            raise SourceDataMalformed(self.name, f"file {name}: empty sheet, no header")
        header = [str(h).strip() for h in rows[0]]
        names = self._names(name, header)
        body = [r for r in rows[1:] if any(v not in ("", None) for v in r)]
        width = len(names)
        columns = [[_cell(r[i]) if i < len(r) else None for r in body] for i in range(width)]
        return pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in columns], names=names)

    def _read_jsonl(self, path: str) -> Iterator[pa.RecordBatch]:
        name = posixpath.basename(path)
        names: list[str] = []
        chunk: list[dict[str, Any]] = []

        def flush() -> pa.RecordBatch:
            renamed = self._names(name, names)
            return pa.RecordBatch.from_arrays(
                [pa.array([json_text(r.get(n)) for r in chunk], pa.string()) for n in names], names=renamed
            )

        with self._fs.open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise SourceDataMalformed(self.name, f"file {name}: line {number} is not JSON") from exc
                if not isinstance(record, dict):
                    raise SourceDataMalformed(self.name, f"file {name}: line {number} is not a JSON object")
                names.extend(k for k in record if k not in names)  # earlier rows lack a new field: null
                chunk.append(record)
                if len(chunk) >= 65_536:
                    yield flush()
                    chunk = []
        if chunk:
            yield flush()


def _filesystem(url: str) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/") or "/"


def _mtime(info: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return None


def _is_format_error(exc: OSError) -> bool:
    return not isinstance(exc, FileNotFoundError | PermissionError | ConnectionError | TimeoutError)


def _cell(value: Any) -> str | None:
    """An Excel cell as text: whole numbers without ``.0``, dates ISO 8601, blanks as null."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and math.isfinite(value) else repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _without_row(exc: Exception) -> str:
    """Arrow's message without the offending row it quotes (names, ID numbers)."""
    message = str(exc).splitlines()[0]
    return _QUOTED_ROW.sub(r"\1", message)


__all__ = ["FilesConnector", "FilesOptions"]
