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
by the block and batch sizes; XLSX and JSON lines are read a sheet / a batch of lines (at most
65,536 lines or 16 MiB) at a time.

Limits (``onceonly.limits``, each ``ONCEONLY_LIMIT_<NAME>``): a department's file is not trusted
to be small or well made, so each of these refuses the file in bounded time and memory, naming
the file, the line or row, and the limit — never quoting a value::

    CSV      one block of Arrow's reader is row_bytes: a row (the header too) over row_bytes,
             a value over field_bytes (both counted in UTF-8, as Arrow holds the text); a NUL
             character anywhere (found while hashing, with its line: no text export has one)
    JSONL    a line over row_bytes (read no further than that), nesting deeper than
             json_depth, an integer of more than json_int_digits digits, a value over
             field_bytes (a nested value as its JSON text)
    XLSX     checked before calamine reads it (it trusts the archive): the file over
             xlsx_bytes; not a zip archive, or a damaged one; the parts' declared sizes over
             unzipped_bytes, a part declared to inflate more than zip_ratio times its
             compressed size (64 KiB at least); then every part inflated once, streaming, in
             case a declared size lies; and each worksheet's cell grid (first to last cell,
             32 bytes a cell, however empty) over unzipped_bytes; after: a cell over field_bytes

CSV line ends may be LF, CRLF or CR alone (old Mac exports): Arrow ends a line at each, and the
header is read by the same reader as the body, so both agree.

A file still being written is not read: names matching ``ignore`` (temporary and Office lock
files) are skipped, and so is a file modified less than ``settle_seconds`` ago; on a file
system that reports no modification time the folder is listed twice, ``settle_seconds``
apart, and only files whose size did not change are read.

A broken file (wrong encoding, cut inside a quoted field, a NUL, not a workbook, past a
limit): when nothing of it has been yielded yet (an encoding error or a NUL is found while
hashing, before any row; a workbook is checked whole; a small file is parsed in one block), the
other files still go on — nothing of the broken file was landed, so
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
import contextlib
import copy
import datetime as dt
import fnmatch
import hashlib
import io
import json
import logging
import math
import os
import posixpath
import re
import shutil
import tempfile
import time
import xml.parsers.expat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import Field, field_validator, model_validator

from connectors.base import Connector, ConnectorOptions, Cursor, Pulled, json_text, rebatch
from onceonly.errors import ConfigurationError, ConnectorError, SourceDataMalformed, SourceUnavailable
from onceonly.files import private_dir
from onceonly.limits import MiB

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

    @field_validator("pattern")
    @classmethod
    def _inside_the_folder(cls, v: str) -> str:
        # Joined to the folder and globbed: '../../keys/*' or '/etc/*' would list elsewhere.
        if v.startswith(("/", "\\")) or ".." in v.replace("\\", "/").split("/") or "::" in v or "://" in v:
            raise ValueError(
                "a pattern matches names inside the drop folder: no '/' at its start, no '..', no URL"
            )
        return v

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
    # landed() moves files the pull has read to the end (a cursor's "done"); the pull lists
    # the files (``_found``) and archives an earlier run's before yielding its first batch,
    # so nothing it still reads is moved under it.
    landed_while_pulling = True

    def validate_options(self) -> None:
        self._fs, self._root = _filesystem(self.opts.path)
        # On a local disk, what the folders are now (connectors.paths checked these): a file
        # reached through a symbolic link out of the drop folder is not listed, and the archive
        # folder is not used once it resolves elsewhere (swapped for a link meanwhile).
        self._local = _is_local(self._fs)
        self._real_root = os.path.realpath(self._root) if self._local else ""
        self._real_archive = (
            os.path.realpath(_filesystem(self.opts.archive)[1])
            if self.opts.archive and _is_local(_filesystem(self.opts.archive)[0])
            else ""
        )
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
            if self._local and not _within(os.path.realpath(path), self._real_root):
                logger.warning(
                    "connector %r: %s leads out of the drop folder (a symbolic link): not read",
                    self.name,
                    posixpath.relpath(path, self._root),
                )
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

    def handover(self) -> dict[str, Any]:
        # The files the pull read, by content hash, and those it archived already (landed by a
        # run that died before moving them).
        return {"found": dict(self._found), "archived": sorted(self._archived)}

    def take_over(self, handover: dict[str, Any]) -> None:
        self._found.update(handover.get("found", {}))
        self._archived.update(handover.get("archived", []))

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
        if self._real_archive and os.path.realpath(target_root) != self._real_archive:
            logger.warning(
                "connector %r: the archive folder %s now leads elsewhere (a symbolic link?): %s not moved",
                self.name,
                self.opts.archive,
                posixpath.basename(path),
            )
            return
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
        encoding is checked the same way. A CSV that cannot be read comes back as ``"!"`` + why
        (no encoding decodes it, it ends inside a quoted field, it holds a NUL character):
        checking here, while hashing, refuses it before any of its rows is yielded.
        """
        if self._format(path) != "csv":
            candidates: list[str] = []
        elif self.opts.encoding == "auto":
            candidates = ["utf-8", "gb18030"]
        else:
            candidates = [self.opts.encoding]
        decoders = {c: codecs.getincrementaldecoder(c)() for c in candidates}
        nul: dict[str, tuple[int, int]] = {}  # encoding -> (chunk, line breaks in it) of the first NUL
        chunks = 0
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
                            text = decoders[label].decode(chunk)
                        except UnicodeDecodeError:
                            del decoders[label]
                            continue
                        at = -1 if label in nul else text.find("\x00")
                        if at >= 0:
                            nul[label] = chunks, _line_breaks(text[:at])
                    chunks += 1
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
            return h.hexdigest(), "!ends inside a quoted field (the file may be truncated)"
        for label in candidates:
            if label in decoders and label in nul:
                # Arrow would land the NUL inside a value, and no text export writes one: the
                # file is binary, damaged, or UTF-16 read as a one-byte encoding.
                chunk_at, within = nul[label]
                line = self._line_breaks(path, label, chunk_at) + within + 1
                return h.hexdigest(), (
                    f"!holds a NUL character (line {line}): not a text CSV "
                    "(damaged, binary, or UTF-16 that needs options.encoding)"
                )
            if label in decoders:
                return h.hexdigest(), "utf-8-sig" if label == "utf-8" and bom else label
        if self.opts.encoding == "auto":
            return (
                h.hexdigest(),
                "!not valid UTF-8 or GB18030/GBK text (wrongly encoded); set options.encoding",
            )
        return h.hexdigest(), f"!not valid {self.opts.encoding} text (wrongly encoded)"

    def _line_breaks(self, path: str, encoding: str, chunks: int) -> int:
        """Line ends in the first ``chunks`` MiB of the file: counted again only for a file
        refused, so that hashing a good file costs no count."""
        decoder = codecs.getincrementaldecoder(encoding)()
        breaks = 0
        with self._fs.open(path, "rb") as f:
            for _ in range(chunks):
                breaks += _line_breaks(decoder.decode(f.read(1 << 20)))
        return breaks

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
                with self._arrow_input(path) as f:
                    for batch in pq.ParquetFile(f).iter_batches(batch_size=65_536):
                        yield batch.rename_columns(self._names(name, batch.schema.names))
        except ConnectorError:
            raise
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as exc:
            raise SourceDataMalformed(self.name, f"file {name}: {_without_row(exc)}") from exc
        except Exception as exc:  # calamine and parquet raise their own types on a broken file
            if isinstance(exc, _PROGRAMMING_ERRORS):
                raise  # a bug here, not a bad file: its traceback must show
            if isinstance(exc, OSError) and not _is_format_error(exc):
                raise SourceUnavailable(self.name, f"file {name}: {type(exc).__name__}: {exc}") from exc
            raise SourceDataMalformed(
                self.name, f"file {name}: not a readable {fmt} file ({type(exc).__name__})"
            ) from exc

    def _names(self, file: str, header: list[str]) -> list[str]:
        names = [self.opts.rename.get(h, h) for h in header]
        if len(set(names)) < len(names):
            # By position, not by name: a file without its header row has data for names.
            alike = [str(i) for i, n in enumerate(names, start=1) if names.count(n) > 1]
            raise SourceDataMalformed(
                self.name,
                f"file {file}: columns {', '.join(alike)} have the same name (a header written twice, "
                "or no header row)",
            )
        for position, h in enumerate(header, start=1):
            if len(h.encode("utf-8", "surrogatepass")) > self.limits.field_bytes:
                raise self._over("field_bytes", f"file {file}: the name of column {position}")
        return names

    def _over(self, limit: str, what: str) -> SourceDataMalformed:
        """The error for ``what`` exceeding ``limit`` (``Limits.exceeded`` names its variable)."""
        return SourceDataMalformed(self.name, self.limits.exceeded(limit, what))

    def _check_sizes(
        self, file: str, batch: pa.RecordBatch, where: Callable[[int], str], *, rows: bool = False
    ) -> None:
        """Refuse a value longer than ``field_bytes`` and, with ``rows``, a row longer than
        ``row_bytes`` (its values and delimiters): lengths in UTF-8 bytes, computed per column
        by Arrow, never row by row in Python. ``where(i)`` names the batch's row ``i``."""
        limits = self.limits
        total = None
        for position, column in enumerate(batch.columns, start=1):
            lengths = pc.binary_length(column)
            if (pc.max(lengths).as_py() or 0) > limits.field_bytes:
                at = pc.index(pc.greater(lengths, limits.field_bytes), True).as_py()
                raise self._over("field_bytes", f"file {file}: the value in {where(at)}, column {position}")
            if rows:
                lengths = lengths.fill_null(0)
                total = lengths if total is None else pc.add(total, lengths)
        if total is not None:
            most = limits.row_bytes - (batch.num_columns - 1)  # what the delimiters leave
            if (pc.max(total).as_py() or 0) > most:
                at = pc.index(pc.greater(total, most), True).as_py()
                raise self._over("row_bytes", f"file {file}: {where(at)}")

    # -- CSV ------------------------------------------------------------------------------------

    def _read_csv(self, path: str, encoding: str) -> Iterator[pa.RecordBatch]:
        name = posixpath.basename(path)
        if encoding.startswith("!"):
            raise SourceDataMalformed(self.name, f"file {name}: {encoding[1:]}")
        header, alone = self._csv_header(path, encoding)
        names = self._names(name, header)
        if alone:
            return
        done = 0  # rows yielded

        def row(i: int) -> str:
            return f"row {done + i + 1}"

        with self._arrow_input(path) as f:
            try:
                for batch in self._open_csv(f, encoding, header):
                    self._check_sizes(name, batch, row, rows=True)
                    done += batch.num_rows
                    yield batch.rename_columns(names)
            except UnicodeDecodeError as exc:
                raise SourceDataMalformed(self.name, f"file {name}: not valid {encoding} text") from exc
            except pa.ArrowInvalid as exc:
                raise SourceDataMalformed(self.name, self._csv_cause(name, exc, done)) from exc

    def _csv_header(self, path: str, encoding: str) -> tuple[list[str], bool]:
        """The header as the body's own reader parses it, and whether it is the whole file.

        Arrow reads both, so they agree on quotes and on line ends (LF, CRLF, and CR alone as
        old Mac exports write them: Arrow ends a line there too), and the header is bounded by
        ``row_bytes`` like every row. Arrow's streaming reader finds no row in a file of one
        line without a line end (a header-only export of a day without records): that line
        is read as the header here, and the file has no rows.
        """
        name = posixpath.basename(path)
        # A first block of 64 KiB holds any usual header, and is parsed (types guessed) only to
        # find it; the block of row_bytes only when it does not.
        for block in sorted({min(_HEADER_BLOCK, self.limits.row_bytes), self.limits.row_bytes}):
            with self._arrow_input(path) as f:
                try:
                    return list(self._open_csv(f, encoding, None, block).schema.names), False
                except UnicodeDecodeError as exc:
                    cause = f"file {name}: the header is not {encoding} text"
                    raise SourceDataMalformed(self.name, cause) from exc
                except pa.ArrowInvalid as exc:
                    small = block < self.limits.row_bytes
                    if "Empty CSV" not in str(exc) and not (small and "straddl" in str(exc)):
                        raise SourceDataMalformed(self.name, self._csv_cause(name, exc, 0)) from exc
        # "Empty": the first block holds no whole row. A file of blank lines, one line without
        # a line end, or a header longer than the block.
        with self._fs.open(path, "rb") as f:
            start = f.read(self.limits.row_bytes + 1)
        if len(start) > self.limits.row_bytes:
            raise self._over("row_bytes", f"file {name}: the header")
        text = start.decode(encoding).lstrip("\ufeff")  # _digest found the file decodes
        if not text.strip():
            raise SourceDataMalformed(self.name, f"file {name}: empty file, no header")
        try:
            header = pa.BufferReader((text + "\n").encode())
            return list(self._open_csv(header, "utf-8", None).schema.names), True
        except pa.ArrowInvalid as exc:
            raise SourceDataMalformed(self.name, self._csv_cause(name, exc, 0)) from exc

    @contextlib.contextmanager
    def _arrow_input(self, path: str) -> Iterator[pa.NativeFile]:
        """``path`` as an Arrow-native stream, for Arrow's readers.

        Arrow's CSV reader reads ahead on its own I/O threads. Handed a Python file object, a
        read still pending there when the reader failed (a header longer than the block) or was
        dropped crashed the process at random (pyarrow 26: SIGSEGV, or "terminate called without
        an active exception" at exit; 3 runs in 12 of a plain script). A native file has no
        Python in those threads. A file on another file system (an object store) is first copied,
        1 MiB at a time, to a private temporary file (mode 600, in home/tmp), deleted when read.
        """
        if self._local:
            with pa.OSFile(path, "rb") as native:
                yield native
            return
        # Under the home (mode 700, the file 600) where there is one: it holds the department's rows.
        spool_dir = private_dir(self.home / "tmp") if self.home is not None and self.home.is_dir() else None
        with tempfile.NamedTemporaryFile(prefix="onceonly-drop-", dir=spool_dir) as spool:
            with self._fs.open(path, "rb") as src:
                shutil.copyfileobj(src, spool, 1 << 20)
            spool.flush()
            with pa.OSFile(spool.name, "rb") as native:
                yield native

    def _open_csv(
        self, f: Any, encoding: str, header: list[str] | None, block: int | None = None
    ) -> pacsv.CSVStreamingReader:
        """Arrow's reader, every column text (``header`` None: only to read the header).

        The block is ``row_bytes``: memory stays a few blocks, and a row that does not end
        within two blocks fails ("straddling object"; ``_check_sizes`` catches the rows
        between one and two blocks). ``newlines_in_values``: a quoted value may hold line
        breaks (a 备注 typed on several lines); without it a break at a block boundary
        makes Arrow fail with "parser got out of sync with chunker".
        """
        return pacsv.open_csv(
            f,
            read_options=pacsv.ReadOptions(
                encoding=encoding, block_size=block or self.limits.row_bytes, use_threads=header is not None
            ),
            parse_options=pacsv.ParseOptions(delimiter=self.opts.delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header or [], pa.string()), strings_can_be_null=True
            ),
        )

    def _csv_cause(self, name: str, exc: pa.ArrowInvalid, done: int) -> str:
        cause = _without_row(exc)
        if "straddl" in cause:  # Arrow found no row end within two blocks: a row over the limit
            return self.limits.exceeded("row_bytes", f"file {name}: row {done + 1}")
        if "quote" in cause.lower() or "Expected" in cause:
            cause += " (the file may be truncated)"
        return f"file {name}: {cause}"

    # -- XLSX -----------------------------------------------------------------------------------

    def _read_xlsx(self, path: str) -> pa.RecordBatch:
        from python_calamine import CalamineWorkbook

        name = posixpath.basename(path)
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(self._workbook(path)))
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
        batch = pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in columns], names=names)
        self._check_sizes(name, batch, lambda i: f"data row {i + 1}")
        return batch

    def _workbook(self, path: str) -> bytes:
        """The XLSX file's bytes, once it is a zip archive whose parts inflate within the limits.

        calamine trusts the archive: it inflates every part it reads in full and allocates the
        sheet's whole cell grid, so a zip bomb (a sheet of repeated rows inflating 1000-fold)
        or a far cell (A1 and XFD1048576: 17 billion cells) takes the process's memory, or
        aborts it, before any error can be raised. So first: the file's size (``xlsx_bytes``),
        the sizes its zip directory declares (``unzipped_bytes`` for all parts, ``zip_ratio``
        for each); then, since a declared size can lie, every part is inflated once here,
        streaming and counting the bytes it really gives against the same limits, and the
        worksheets' cell grids are measured on the way (``_CellGrid``).
        """
        name = posixpath.basename(path)
        limits = self.limits
        size = int(self._fs.size(path) or 0)
        if size > limits.xlsx_bytes:
            raise self._over("xlsx_bytes", f"file {name} ({size:,} bytes)")
        pieces, held = [], 0  # not read(xlsx_bytes + 1): that allocates the whole limit up front
        with self._fs.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                pieces.append(chunk)
                held += len(chunk)
                if held > limits.xlsx_bytes:  # grew since listed
                    raise self._over("xlsx_bytes", f"file {name}")
        data = b"".join(pieces)
        del pieces
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            parts = archive.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise SourceDataMalformed(
                self.name, f"file {name}: not an XLSX workbook: {_not_zip(data)}"
            ) from exc
        declared = sum(p.file_size for p in parts)
        if declared > limits.unzipped_bytes:
            raise self._over(
                "unzipped_bytes", f"file {name}: its parts unzipped ({declared:,} bytes declared)"
            )
        for part in parts:
            if part.file_size > _inflation_cap(part, limits.zip_ratio):
                fold = part.file_size / max(part.compress_size, 1)
                raise self._over("zip_ratio", f"file {name}: part {part.filename} inflating {fold:,.0f}-fold")
        left = limits.unzipped_bytes
        for part in parts:
            left -= self._inflate(name, archive, part, left)
        return data

    def _inflate(self, file: str, archive: zipfile.ZipFile, part: zipfile.ZipInfo, left: int) -> int:
        """Inflate ``part`` once, streaming, within ``left`` bytes and its ratio; its size."""
        limits = self.limits
        ratio_cap = _inflation_cap(part, limits.zip_ratio)
        cap = min(left, ratio_cap)
        grid: _CellGrid | None = None  # for a part that is XML: only XML can be a worksheet
        size = 0
        try:
            with self._part(archive, part) as stream:
                while chunk := stream.read(1 << 20):
                    if size == 0 and chunk.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
                        grid = _CellGrid()
                    size += len(chunk)
                    if size > cap:  # the declared size passed the checks above: it lied
                        if cap == left:
                            what = f"file {file}: its parts unzipped (more than their zip entries declare)"
                            raise self._over("unzipped_bytes", what)
                        what = f"file {file}: part {part.filename} inflating more than its zip entry declares"
                        raise self._over("zip_ratio", what)
                    if grid is not None:
                        grid.feed(chunk)
            if size != part.file_size:
                raise zipfile.BadZipFile("size differs from the declared size")
            extent: tuple[int, int] | None = (0, 0)  # a picture, a VBA project: no cells
            if grid is not None:
                grid.close()
                extent = grid.extent()
            if extent is None:  # cells without a position of their own: place them one by one
                with self._part(archive, part) as stream:
                    extent = _place_cells(stream)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
            what = f"file {file}: not an XLSX workbook: part {part.filename} is damaged or unreadable"
            raise SourceDataMalformed(self.name, what) from exc
        except xml.parsers.expat.ExpatError as exc:  # its message says where, never what
            raise SourceDataMalformed(
                self.name, f"file {file}: part {part.filename} is not a well-formed worksheet ({exc})"
            ) from exc
        rows, columns = extent
        if rows * columns * _CELL_BYTES > limits.unzipped_bytes:
            what = (
                f"file {file}: the cell grid of {part.filename} ({rows:,} rows × {columns:,} columns, "
                f"{rows * columns * _CELL_BYTES:,} bytes in memory)"
            )
            raise self._over("unzipped_bytes", what)
        return size

    @staticmethod
    def _part(archive: zipfile.ZipFile, part: zipfile.ZipInfo) -> IO[bytes]:
        # zipfile stops a part at its declared size and checks the CRC there, so a part that
        # inflates to more would be cut short here while calamine reads on: open it with no
        # size of its own, to count what it really gives (the CRC is checked at its real end).
        unbounded = copy.copy(part)
        unbounded.file_size = 1 << 62
        return archive.open(unbounded)

    # -- JSON lines -----------------------------------------------------------------------------

    def _read_jsonl(self, path: str) -> Iterator[pa.RecordBatch]:
        name = posixpath.basename(path)
        limits = self.limits
        names: dict[str, None] = {}  # every key seen, in order (a dict: looked up per key)
        chunk: list[dict[str, Any]] = []
        lines: list[int] = []  # the line of each record in chunk
        held = 0  # bytes of the lines in chunk
        number = 0

        def integer(text: str) -> int:
            # json.loads would build an int of any length (Python refuses above 4300 digits,
            # with a ValueError naming no line); the contract needs none this long.
            digits = len(text.lstrip("-"))
            if digits > limits.json_int_digits:
                what = f"file {name}: line {number}: an integer of {digits} digits"
                raise self._over("json_int_digits", what)
            return int(text)

        def flush() -> pa.RecordBatch:
            keys = list(names)
            batch = pa.RecordBatch.from_arrays(
                [pa.array([json_text(r.get(k)) for r in chunk], pa.string()) for k in keys],
                names=self._names(name, keys),
            )
            self._check_sizes(name, batch, lambda i: f"line {lines[i]}")
            return batch

        with self._fs.open(path, "rb") as f:
            for number, raw in enumerate(_lines(f, limits.row_bytes), start=1):
                if len(raw) > limits.row_bytes:
                    raise self._over("row_bytes", f"file {name}: line {number}")
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw, parse_int=integer)
                except RecursionError as exc:  # nested deeper than the interpreter's stack
                    raise self._over("json_depth", f"file {name}: line {number}: its nesting") from exc
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise SourceDataMalformed(self.name, f"file {name}: line {number} is not JSON") from exc
                if not isinstance(record, dict):
                    raise SourceDataMalformed(self.name, f"file {name}: line {number} is not a JSON object")
                # The brackets (strings' too) bound the depth from above: walk only a line that may be deep.
                brackets = raw.count(b"[") + raw.count(b"{")
                if brackets > limits.json_depth and _depth(record) > limits.json_depth:
                    raise self._over("json_depth", f"file {name}: line {number}: its nesting")
                names.update(dict.fromkeys(record))  # earlier rows lack a new field: null
                chunk.append(record)
                lines.append(number)
                held += len(raw)
                if len(chunk) >= 65_536 or held >= _JSONL_BATCH_BYTES:
                    yield flush()
                    chunk, lines, held = [], [], 0
        if chunk:
            yield flush()


def _filesystem(url: str) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/") or "/"


#: Errors of our own code, never of a department's file (which the readers' libraries report
#: with their own types, ValueError or OSError).
_PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, KeyError, IndexError, AssertionError)


def _is_local(fs: Any) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


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


def _line_breaks(text: str) -> int:
    """Line ends in ``text``: LF, CRLF or CR alone, as Arrow's CSV reader counts them."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _lines(f: Any, limit: int) -> Iterator[bytes]:
    """The LF-separated lines of ``f``, without their LF, none read further than ``limit`` bytes:
    a longer line comes as its first ``limit + 1`` or more bytes and ends the lines (the caller
    refuses it), so one endless line costs ``limit`` plus a read, not the file."""
    rest = b""
    while chunk := f.read(1 << 20):
        *lines, rest = (rest + chunk).split(b"\n")
        yield from lines
        if len(rest) > limit:
            yield rest
            return
    if rest:
        yield rest


def _depth(value: Any) -> int:
    """How deep ``value`` nests (a flat object: 1), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _not_zip(data: bytes) -> str:
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        return "an OLE2 file: a password-protected workbook, or a legacy .xls renamed .xlsx"
    if data.startswith(b"PK"):
        return "a damaged or truncated zip archive"
    return "not a zip archive"


def _inflation_cap(part: zipfile.ZipInfo, ratio: int) -> int:
    # A small part is let inflate to `ratio` × 64 KiB whatever its compressed size: a few hundred
    # KiB cost nothing, and tiny parts (a 1 KB printer setting of zeros) compress far better.
    return ratio * max(part.compress_size, _RATIO_FLOOR)


# calamine's cell (DataRef) is 32 bytes; a sheet's grid spans its first to its last cell.
_CELL_BYTES = 32
_RATIO_FLOOR = 64 * 1024
_HEADER_BLOCK = 64 * 1024
_JSONL_BATCH_BYTES = 16 * MiB  # the lines one JSON-lines batch holds, parsed, at most
# After each "<c" of a worksheet: a cell's start tag (the name ends there) and, when its first
# attribute is r="B7" (at most 3 letters and 7 digits: XFD1048576), its reference.
_CELL_HEAD = r'^[ \t\r\n/>](?:r="(?P<letters>[A-Za-z]{1,3})(?P<digits>[0-9]{1,7})")?'
_PREFIXED_CELL = re.compile(rb":c[ \t\r\n/>]")  # <x:c …>, or text that looks so
_OVERLAP = 64  # more than "<c" and a cell head: the bytes a tag split between chunks may need
_REF = re.compile(r"([A-Za-z]*)([0-9]*)")  # a cell or row reference, as calamine reads one


class _CellGrid:
    """How far calamine will place the cells of one part: fed the part's inflated bytes.

    calamine puts a cell where its ``r`` attribute says (``r="B7"``), else after the previous
    cell of its row (the row where ``<row r=…>`` says or after the previous row), reading
    cells from ``<sheetData>`` on; it then allocates the rectangle from the first cell to the
    last, 32 bytes a cell, filled or not (``Range::from_sparse``): a 5 KB sheet with cells at A1
    and XFD1048576 asks for 512 GiB and aborts the process (python-calamine 0.9.1, observed).

    This counts, with Arrow's kernels and without parsing, the cell start tags (``<c`` ending a
    name) and those whose first attribute is ``r`` with a plain reference, and keeps the largest
    row and column referenced. When the counts agree, every cell calamine reads is placed by
    such a reference (a look-alike in a comment or a string is in both counts, so it can only
    hide another look-alike), and the largest are the grid's extent; writers put ``r`` first
    on every cell (Excel, openpyxl). Otherwise, or when a cell's name has a prefix
    (``<x:c>``), ``extent()`` is None and the part is parsed to place each cell
    (``_place_cells``).
    """

    def __init__(self) -> None:
        self._carry = b""  # the last tag of the previous chunk, maybe incomplete
        self._edge = b""  # the previous chunk's last bytes, for a ":c" split between chunks
        self._started = self._prefixed = False
        self._tags = self._placed = 0
        self._rows = self._columns = 0

    def feed(self, chunk: bytes) -> None:
        if self._prefixed:
            return
        data = self._carry + chunk
        if not self._started:
            at = data.find(b"sheetData")
            if at < 0:
                self._carry = data[-_OVERLAP:]
                return
            self._started, data = True, data[at:]
            chunk, self._edge = data, b""  # prefixed cells are looked for from sheetData on
        edged = self._edge + chunk
        self._prefixed = _PREFIXED_CELL.search(edged) is not None
        self._edge = edged[-2:]
        if self._prefixed:
            return
        # Counted up to the last "<": a tag before it is whole (no tag holds a "<"), one after
        # it may not be, unless it already has _OVERLAP bytes.
        cut = data.rfind(b"<")
        if cut >= 0 and len(data) - cut <= _OVERLAP:
            data, self._carry = data[:cut], data[cut:]
        else:
            self._carry = b""
        self._count(data)

    def close(self) -> None:
        if self._started and not self._prefixed:
            self._count(self._carry)
        self._carry = b""

    def _count(self, data: bytes) -> None:
        after = pc.list_flatten(pc.split_pattern(pa.array([data], pa.binary()), pattern=b"<c")).slice(1)
        if not len(after):
            return
        heads = pc.extract_regex(pc.binary_slice(after, 0, 16), pattern=_CELL_HEAD)
        self._tags += len(heads) - heads.null_count
        letters, digits = heads.flatten()
        placed = pc.greater(pc.binary_length(digits), 0)
        self._placed += pc.sum(placed).as_py() or 0
        self._rows = max(self._rows, pc.max(pc.cast(digits.filter(placed), pa.int64())).as_py() or 0)
        self._columns = max([self._columns, *(_column(c) for c in pc.unique(letters).to_pylist() if c)])

    def extent(self) -> tuple[int, int] | None:
        """``(rows, columns)`` from A1 to the farthest cell, or None: some cells must be placed
        one by one."""
        if self._prefixed or self._tags > self._placed:
            return None
        return self._rows, self._columns


def _place_cells(stream: IO[bytes]) -> tuple[int, int]:
    """``(rows, columns)`` from A1 to the farthest cell, placing every cell of a worksheet part
    as calamine does (see ``_CellGrid``), and erring large where expat cannot tell what
    calamine would do (``<c/>`` from ``<c></c>``, which calamine skips, is placed too)."""
    parser = xml.parsers.expat.ParserCreate()
    extent = [0, 0]
    here = [1, 1]  # where a cell without a reference goes
    started = False

    def start(tag: str, attributes: dict[str, str]) -> None:
        nonlocal started
        local = tag.rpartition(":")[2]
        started = started or local == "sheetData"
        if not started or local not in ("row", "c"):
            return
        ref = _cell_ref(attributes.get("r"))
        if local == "row":
            here[0] = max(here[0], ref[0] if ref else 0)
            return
        row, column = ref if ref and ref[1] else here
        extent[0] = max(extent[0], row, here[0])
        extent[1] = max(extent[1], column, here[1])
        here[1] = max(here[1] + 1, column + 1)

    def end(tag: str) -> None:
        if started and tag.rpartition(":")[2] == "row":
            here[0] += 1
            here[1] = 1

    def doctype(*_: Any) -> None:
        raise xml.parsers.expat.ExpatError("a worksheet declares no DOCTYPE")  # entities, bombs

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = doctype
    while chunk := stream.read(1 << 20):
        parser.Parse(chunk, False)
    parser.Parse(b"", True)
    return extent[0], extent[1]


def _cell_ref(text: str | None) -> tuple[int, int] | None:
    """``(row, column)`` of a reference such as ``B7`` (column 0: none given), counted from 1;
    None where calamine refuses it. Past what calamine's 32-bit arithmetic holds (it wraps)
    the numbers are only said to be huge."""
    match = _REF.fullmatch(text or "")
    if match is None or not match[2].strip("0"):
        return None
    letters, digits = match.groups()
    huge = 1 << 40
    row = huge if len(digits) > 10 else int(digits)
    column = huge if len(letters) > 6 else _column(letters.encode())
    return row, column


def _column(letters: bytes) -> int:
    """The column number of ``B``, ``AA``, ``XFD`` (any case), counted from 1; 0 for none."""
    number = 0
    for letter in letters.upper():
        number = number * 26 + letter - 64
    return number


__all__ = ["FilesConnector", "FilesOptions"]
