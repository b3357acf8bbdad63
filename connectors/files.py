"""``files`` connector: a drop folder where a department leaves CSV exports.

Example registration options::

    path: "{home}/departments/minzheng/drop"
    pattern: "*.csv"
    encoding: gbk             # or utf-8, utf-8-sig, gb18030, auto
    delimiter: ","            # the default
    rename: {登记证字号: cert_no, 男方姓名: husband_name, ...}
    settle_seconds: 2         # a file modified more recently may still be being written

Each file is processed exactly once, recognised by the SHA-256 of its content (a re-dropped
copy under another name is not read again). The cursor records finished files and, inside
the file being read, how many rows have landed, so a run that dies mid-file resumes there
(that file is finished first on the next run). Files are streamed in blocks, so memory is
bounded by the block and batch sizes, not the file size.
Files ending in ``.part``/``.tmp`` are never read. Every column is read as text; the
dataset's contract converts it.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from connectors.base import Connector, Cursor, Pulled
from onceonly.errors import ConfigurationError, SourceDataMalformed, SourceUnavailable

_IN_PROGRESS = (".part", ".tmp", ".partial", ".filepart")
# "CSV parse error: Expected 10 columns, got 3: <the row's text>"
_QUOTED_ROW = re.compile(r"(Expected \d+ columns?, got \d+).*")


class FilesConnector(Connector):
    type_name = "files"

    def validate_options(self) -> None:
        self.require("path")
        encoding = self.options.get("encoding", "auto")
        if encoding != "auto":
            try:
                codecs.lookup(encoding)
            except LookupError as exc:
                raise ConfigurationError(f"connector {self.name!r}: unknown encoding {encoding!r}") from exc
        if self.options.get("format", "csv") != "csv":
            raise ConfigurationError(f"connector {self.name!r}: only format 'csv' is supported yet")

    def _files(self) -> list[Path]:
        folder = Path(self.options["path"])
        if not folder.is_dir():
            raise SourceUnavailable(self.name, f"drop folder {folder} does not exist")
        settle = float(self.options.get("settle_seconds", 2))
        now = time.time()
        files = [
            p
            for p in folder.glob(self.options.get("pattern", "*.csv"))
            if p.is_file() and not p.name.endswith(_IN_PROGRESS) and now - p.stat().st_mtime >= settle
        ]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def _pull(self, cursor: Cursor | None, batch_size: int) -> Iterator[Pulled]:
        done: list[str] = list((cursor or {}).get("done", []))
        current = (cursor or {}).get("current") or {}
        files = [(path, _sha256(path)) for path in self._files()]
        # The file a previous run stopped inside goes first: its row count is only in `current`,
        # and a copied-in file with an older mtime must not push it out of the cursor.
        files.sort(key=lambda f: f[1] != current.get("sha256"))
        for path, digest in files:
            if digest in done:
                continue  # read before, maybe under another name
            skip = int(current.get("rows", 0)) if current.get("sha256") == digest else 0
            rows_done = skip
            batches = self._read(path, batch_size, skip)
            batch = next(batches, None)
            while batch is not None:
                following = next(batches, None)  # one batch of lookahead tells us which is last
                rows_done += batch.num_rows
                finished = following is None
                new_cursor: Cursor = {
                    "done": [*done, digest] if finished else list(done),
                    "current": None if finished else {"sha256": digest, "file": path.name, "rows": rows_done},
                }
                yield Pulled(batch, new_cursor)
                batch = following
            done.append(digest)

    def _read(self, path: Path, batch_size: int, skip: int) -> Iterator[pa.RecordBatch]:
        """Batches of ``batch_size`` rows after the first ``skip`` data rows, streamed block by block."""
        encoding = self._encoding(path)
        delimiter = str(self.options.get("delimiter", ","))
        header = self._header(path, encoding, delimiter)
        rename: dict[str, str] = dict(self.options.get("rename") or {})
        names = [rename.get(h, h) for h in header]
        if len(set(names)) < len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise SourceDataMalformed(
                self.name, f"file {path.name}: column(s) {', '.join(twice)} appear twice"
            )
        try:
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(
                    encoding=encoding, column_names=names, skip_rows=1, block_size=1 << 22
                ),
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True
                ),
            )
            pending: list[pa.RecordBatch] = []
            rows = 0
            for batch in reader:
                if skip:
                    # Skipped here, after parsing, and not with ReadOptions.skip_rows: that counts
                    # physical lines, so blank lines and quoted line breaks would shift the resume.
                    if batch.num_rows <= skip:
                        skip -= batch.num_rows
                        continue
                    batch, skip = batch.slice(skip), 0
                pending.append(batch)
                rows += batch.num_rows
                while rows >= batch_size:
                    table = pa.Table.from_batches(pending)
                    yield table.slice(0, batch_size).combine_chunks().to_batches()[0]
                    rest = table.slice(batch_size)
                    pending, rows = rest.to_batches(), rest.num_rows
            if rows:
                yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise SourceDataMalformed(self.name, f"file {path.name}: {_without_row(exc)}") from exc

    def _header(self, path: Path, encoding: str, delimiter: str) -> list[str]:
        with path.open("rb") as f:
            first = f.readline()
        try:
            line = first.decode(encoding).lstrip("\ufeff")
        except UnicodeDecodeError as exc:
            raise SourceDataMalformed(self.name, f"file {path.name}: the header is not {encoding}") from exc
        header = next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
        if not header:
            raise SourceDataMalformed(self.name, f"file {path.name}: empty file, no header")
        return header

    def _encoding(self, path: Path) -> str:
        encoding = str(self.options.get("encoding", "auto"))
        if encoding != "auto":
            return encoding
        with path.open("rb") as f:
            head = f.read(1 << 16)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        try:
            head.decode("utf-8")
            return "utf-8"
        except UnicodeDecodeError as exc:
            # A multi-byte character cut at the 64 KiB boundary is still UTF-8.
            return "utf-8" if exc.start >= len(head) - 3 else "gb18030"


def _without_row(exc: Exception) -> str:
    """Arrow's message without the offending row it quotes (names, ID numbers)."""
    message = str(exc).splitlines()[0]
    return _QUOTED_ROW.sub(r"\1", message)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


__all__ = ["FilesConnector"]
