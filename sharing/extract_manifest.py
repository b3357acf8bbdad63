"""A township extract as a station receives it: its files, its signed manifest, checked offline.

Example::

    report = verify_extract(Path("township=120114001000/extract=000003"), verifiers)
    report.summary          # "镇街 120114001000 第 3 号增量回流 …"; VerificationFailed if not
    state = apply_extract(state, folder)     # a station's copy, brought up to date in order

An extract folder holds ``certificates.parquet`` (for systems), ``certificates.xlsx`` (for
staff, Chinese headers), ``rows.sha256`` (one line per row: its RFC 9162 leaf hash and
certificate id) and ``manifest.txt``: a C2SP signed note, signed with the district's log key,
whose text is one line of RFC 8785 JSON (``"schema": "onceonly-extract/1"``) — township, number,
full or incremental, the extract it follows (number and manifest SHA-256), the signed checkpoint
it reflects, each file's SHA-256, bytes and rows, the Merkle root over the rows (RFC 9162, in file
order), the changes it carries, and which personal fields are masked and which are in clear
(with the matter that needs them). The log records each manifest's SHA-256 (kind
``extract-manifest``), so ``onceonly audit`` finds an extract changed after it was written.

:func:`verify_extract` needs only the folder and the district's verifier keys: the signatures,
every file's hash and every row — a changed file is named, and a changed row by its number and
certificate id (its hash differs from the one ``rows.sha256`` and the signed root give).
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from evidence.canonical import canonical_json
from evidence.merkle import CompactRange, root, tree_hash
from evidence.note import Checkpoint, NoteVerifier, open_note
from onceonly.cells import spreadsheet_text
from onceonly.errors import VerificationFailed

MANIFEST_SCHEMA = "onceonly-extract/1"
PARQUET_FILE = "certificates.parquet"
XLSX_FILE = "certificates.xlsx"
ROWS_FILE = "rows.sha256"
MANIFEST_FILE = "manifest.txt"
SHEET = "证照"

FULL, INCREMENTAL = "full", "incremental"

# (column, XLSX header): the fields a counter needs to skip a proof — which certificate, whose,
# in force or not, until when — and where it sits in the transparency log; ``change`` says what
# the row is in an incremental extract.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("change", "变动"),
    ("cert_id", "证照标识"),
    ("type_code", "证照类型代码"),
    ("type_name", "证照类型"),
    ("holder_name", "持证人"),
    ("holder_id", "持证人证件号码"),
    ("issuer_code", "颁证单位代码"),
    ("version", "版本"),
    ("status", "状态"),
    ("issue_date", "颁证日期"),
    ("valid_from", "有效期起"),
    ("valid_to", "有效期至"),
    ("leaf_index", "日志序号"),
)
NAMES = tuple(name for name, _ in COLUMNS)
HEADERS = dict(COLUMNS)
DATE_COLUMNS = frozenset({"issue_date", "valid_from", "valid_to"})

# The change a row carries (the ``change`` column), in an incremental extract or a snapshot.
CHANGE_LABELS = {
    "snapshot": "全量",
    "new": "新增",
    "changed": "变更",
    "revoked": "撤销",
    "suspended": "暂扣",
    "expired": "失效",
    "superseded": "换发",
    "removed": "移出",
}
REMOVED = CHANGE_LABELS["removed"]
CHANGES = ("new", "changed", "revoked", "suspended", "expired", "superseded", "removed")
# Rows a station applies and then forgets: a certificate no longer in force as a version — revoked
# (撤销/吊销/注销), replaced by a newer version (换发) or no longer the township's (移出). Each is sent
# once, in the increment after the change; a later full snapshot no longer lists it.
DROPPED = frozenset({CHANGE_LABELS["revoked"], CHANGE_LABELS["superseded"], REMOVED})

_HASHER = tree_hash("sha256")


def row_bytes(row: Mapping[str, Any]) -> bytes:
    """A row's RFC 8785 bytes: the columns in order, dates as ISO 8601 text."""
    return canonical_json({name: _plain(row.get(name)) for name in NAMES})


def row_leaf(row: Mapping[str, Any]) -> bytes:
    """A row's RFC 9162 leaf hash (what ``rows.sha256`` lists and the manifest's root covers)."""
    return _HASHER.leaf(row_bytes(row))


def table_leaves(table: pa.Table) -> list[bytes]:
    """:func:`row_leaf` of every row of an extract table (its columns :data:`NAMES`), built
    column-wise: the same bytes, without a dict per row."""
    from evidence.canonical import sha256_each

    return [leaf for text in canonical_texts(table, NAMES) for leaf in sha256_each(text, prefix=b"\x00")]


def canonical_texts(table: pa.Table, names: Sequence[str]) -> Iterator[pa.Array]:
    """RFC 8785 JSON of each row's ``names`` (dates as ISO text), built column-wise a slice of
    rows at a time (a big township's texts at once were ~300 bytes a row)."""
    import pyarrow.compute as pc

    from evidence.canonical import Column, canonical_rows

    shape = {name: Column(name) for name in names}
    for start in range(0, table.num_rows, _SLICE_ROWS):
        part = table.slice(start, _SLICE_ROWS)
        yield canonical_rows(
            shape,
            pa.table({n: pc.strftime(part[n], "%Y-%m-%d") if n in DATE_COLUMNS else part[n] for n in names}),
        )


_SLICE_ROWS = 65_536


def table_rows_file(table: pa.Table, leaves: Sequence[bytes]) -> str:
    """:func:`rows_file` of an extract table whose leaves are ``leaves``."""
    return "".join(table_rows_texts(table, leaves))


def table_rows_texts(table: pa.Table, leaves: Sequence[bytes]) -> Iterator[str]:
    """:func:`table_rows_file` in pieces of a slice of rows each (a big township's file whole,
    with its ids and hashes as Python strings, was ~300 bytes a row)."""
    for start in range(0, table.num_rows, _SLICE_ROWS):
        ids = table["cert_id"].slice(start, _SLICE_ROWS).to_pylist()
        hexed = binascii.hexlify(b"".join(leaves[start : start + len(ids)])).decode("ascii")
        yield "".join(f"{hexed[64 * i : 64 * i + 64]}  {cert_id}\n" for i, cert_id in enumerate(ids))


def rows_root(leaves: Sequence[bytes]) -> str:
    return root(list(leaves), hasher=_HASHER).hex()


def rows_frontier() -> CompactRange:
    """:func:`rows_root` folded as the leaves come (``extend``, then ``root().hex()``): a big
    extract's leaves are never all held at once."""
    return CompactRange(hasher=_HASHER)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def rows_file(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows.sha256``: per row, its leaf hash (hex) and certificate id, in file order."""
    return "".join(f"{row_leaf(r).hex()}  {r['cert_id']}\n" for r in rows)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if tuple(table.column_names) != NAMES:
        raise VerificationFailed(
            f"{path.name}: its columns are not an extract's ({', '.join(table.column_names)})"
        )
    return list(table.to_pylist())


def read_xlsx_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of the ``证照`` sheet, as written: the formula escape undone, dates as dates."""
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True)
    try:
        if SHEET not in book.sheetnames:
            raise VerificationFailed(f"{path.name}: no sheet {SHEET}")
        rows = []
        # Past a sheet's 1,048,576 rows the extract goes on in 证照2, 证照3, … (each with the header).
        for number in range(1, len(book.sheetnames) + 1):
            name = SHEET if number == 1 else f"{SHEET}{number}"
            if name not in book.sheetnames:
                break
            values = book[name].iter_rows(values_only=True)
            header = next(values, None)
            if header is None or tuple(header) != tuple(HEADERS[n] for n in NAMES):
                raise VerificationFailed(f"{path.name}: the header of sheet {name} is not an extract's")
            rows += [
                {column: _cell(column, value) for column, value in zip(NAMES, line, strict=False)}
                for line in values
                if any(v is not None for v in line)
            ]
        return rows
    finally:
        book.close()


def _cell(name: str, value: Any) -> Any:
    if name in DATE_COLUMNS and isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str) and value.startswith("'") and spreadsheet_text(value[1:]) == value:
        return value[1:]  # onceonly.cells escaped it: the spreadsheet shows the text
    return value


def _read_rows_file(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, cert_id = line.partition("  ")
        out.append((digest, cert_id))
    return out


@dataclass(frozen=True)
class ExtractReport:
    manifest: dict[str, Any]
    checkpoint_size: int
    follows_checked: bool
    warnings: tuple[str, ...] = field(default=())

    @property
    def summary(self) -> str:
        m = self.manifest
        kind = "全量快照" if m["kind"] == FULL else "增量"
        changes = "，".join(f"{CHANGE_LABELS[k]} {v}" for k, v in m["changes"].items() if v)
        follows = f"，接续第 {m['previous']['extract_no']} 号" if m.get("previous") else ""
        return (
            f"镇街 {m.get('township_name') or ''}（{m['township']}）"
            f"第 {m['extract_no']} 号{kind}回流{follows}："
            f"{m['rows']} 行（{changes or '无变动'}），截至日志检查点 {self.checkpoint_size}"
        )


def open_manifest(text: str, verifiers: Sequence[NoteVerifier]) -> dict[str, Any]:
    """The manifest's body, its signature checked; :class:`VerificationFailed` if not."""
    try:
        body = json.loads(open_note(text, list(verifiers)))
    except VerificationFailed as exc:
        raise VerificationFailed(f"the manifest is not signed by the district's key: {exc}") from None
    except ValueError as exc:
        raise VerificationFailed(f"the manifest's text is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("schema") != MANIFEST_SCHEMA:
        raise VerificationFailed(f"not a {MANIFEST_SCHEMA} manifest")
    return body


def verify_extract(folder: Path, verifiers: Sequence[NoteVerifier]) -> ExtractReport:
    """Check an extract folder offline; :class:`VerificationFailed` naming every changed file
    and row (see the module docstring). When the folder of the extract it follows is beside it,
    the chain is checked too (its manifest's SHA-256)."""
    manifest_path = folder / MANIFEST_FILE
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VerificationFailed(f"{folder}: no readable {MANIFEST_FILE}: {exc}") from None
    body = open_manifest(text, verifiers)
    try:
        checkpoint = Checkpoint.parse(open_note(str(body["checkpoint"]["note"]), list(verifiers)))
    except (VerificationFailed, KeyError, TypeError) as exc:
        raise VerificationFailed(
            f"the manifest's checkpoint is not signed by the district's key: {exc}"
        ) from None
    if checkpoint.size != body["checkpoint"].get("size"):
        raise VerificationFailed("the manifest's checkpoint is not of the size it states")
    problems: list[str] = []
    listed = {str(f["name"]): f for f in body.get("files", [])}
    intact: set[str] = set()
    for name, facts in listed.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif file_sha256(path) != facts.get("sha256"):
            problems.append(f"{name} was changed (SHA-256 differs from the manifest)")
        else:
            intact.add(name)
    for path in sorted(folder.iterdir()):
        if path.name != MANIFEST_FILE and path.name not in listed:
            what = "folder" if path.is_dir() else "file"
            problems.append(f"{what} {path.name} is not in the manifest")
    problems += _check_place(folder, body)
    problems += _check_rows(folder, body, intact)
    follows = False
    previous = body.get("previous")
    if previous:
        before = folder.parent / f"extract={int(previous['extract_no']):06d}" / MANIFEST_FILE
        if before.is_file():
            follows = True
            if file_sha256(before) != previous.get("manifest_sha256"):
                problems.append(
                    f"the extract it follows (number {previous['extract_no']}) is not the one "
                    "its manifest names"
                )
    if problems:
        shown = "; ".join(problems[:12]) + (f"; and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise VerificationFailed(
            f"extract {body.get('extract_no')} of township {body.get('township')}: {shown}"
        )
    return ExtractReport(body, checkpoint.size, follows)


_EXTRACT_FOLDER = re.compile(r"extract=(\d+)")
_TOWNSHIP_FOLDER = re.compile(r"township=(\d{12})")


def _check_place(folder: Path, body: Mapping[str, Any]) -> list[str]:
    """Where the folder says it is (``township=T/extract=N``, as written or copied), the manifest
    must be that extract: a genuine older extract put in another's folder is refused."""
    problems = []
    named = _EXTRACT_FOLDER.fullmatch(folder.resolve().name)
    if named and int(named.group(1)) != body.get("extract_no"):
        problems.append(
            f"the folder is extract {int(named.group(1))}, its manifest is extract {body.get('extract_no')}"
        )
    township = _TOWNSHIP_FOLDER.fullmatch(folder.resolve().parent.name)
    if township and township.group(1) != body.get("township"):
        problems.append(
            f"the folder is township {township.group(1)}'s, its manifest is township {body.get('township')}'s"
        )
    return problems


def _check_rows(folder: Path, body: Mapping[str, Any], intact: set[str]) -> list[str]:
    """Each row of the Parquet and XLSX files against the signed root and ``rows.sha256``."""
    problems: list[str] = []
    expected: list[tuple[str, str]] | None = None
    if ROWS_FILE in intact:
        expected = _read_rows_file(folder / ROWS_FILE)
        if rows_root([bytes.fromhex(d) for d, _ in expected]) != body.get("rows_root"):
            problems.append(f"{ROWS_FILE} does not give the manifest's root over the rows")
            expected = None
    for name, reader, first_line in ((PARQUET_FILE, read_parquet_rows, 0), (XLSX_FILE, read_xlsx_rows, 2)):
        if name in intact or not (folder / name).is_file():
            continue  # unchanged, or already reported missing
        try:
            rows = reader(folder / name)
        except VerificationFailed as exc:
            problems.append(str(exc))
            continue
        except Exception as exc:  # a file damaged beyond reading: the file is named already
            problems.append(f"{name} cannot be read: {type(exc).__name__}")
            continue
        leaves = [row_leaf(r) for r in rows]
        if expected is None:
            if rows_root(leaves) != body.get("rows_root"):
                problems.append(f"{name}: its rows differ from the manifest's root ({ROWS_FILE} unusable)")
            continue
        problems += _name_rows(name, rows, leaves, expected, first_line)
    return problems


def _name_rows(
    name: str,
    rows: Sequence[Mapping[str, Any]],
    leaves: Sequence[bytes],
    expected: Sequence[tuple[str, str]],
    first: int,
) -> list[str]:
    """The rows that differ from ``rows.sha256``, matched by certificate id (not by position): a
    changed row, a row no manifest lists (added), a listed certificate missing (deleted)."""
    where = "row" if first == 0 else "sheet row"
    listed: dict[str, list[tuple[int, str]]] = {}
    for index, (digest, cert_id) in enumerate(expected):
        listed.setdefault(cert_id, []).append((index, digest))
    out = []
    found: dict[str, int] = {}
    for index, (row, leaf) in enumerate(zip(rows, leaves, strict=True)):
        number = index + (first or 1)
        cert_id = str(row.get("cert_id"))
        places = listed.get(cert_id, [])
        seen = found.get(cert_id, 0)
        found[cert_id] = seen + 1
        if seen >= len(places):
            out.append(f"{name}: {where} {number} (certificate {cert_id}) was added (not in the manifest)")
        elif leaf.hex() != places[seen][1]:
            out.append(f"{name}: {where} {number} (certificate {cert_id}) was changed")
    for cert_id, places in listed.items():
        for index, _ in places[found.get(cert_id, 0) :]:
            out.append(f"{name}: certificate {cert_id} (row {index + 1} of {ROWS_FILE}) was deleted")
    if len(rows) != len(expected):
        out.append(f"{name}: {len(rows)} rows, the manifest has {len(expected)}")
    elif not out and [leaf.hex() for leaf in leaves] != [d for d, _ in expected]:
        out.append(f"{name}: its rows are in another order than {ROWS_FILE}'s")
    return out


def apply_extract(state: Mapping[str, Mapping[str, Any]], folder: Path) -> dict[str, dict[str, Any]]:
    """A station's copy (certificate id → row, without ``change``) after applying the extract in
    ``folder``: a full snapshot replaces it, an incremental one updates it (撤销, 换发 and 移出
    remove: a version no longer in force is told once, and no later snapshot lists it)."""
    manifest = json.loads(_note_text(folder / MANIFEST_FILE))
    return apply_rows(state, str(manifest["kind"]), read_parquet_rows(folder / PARQUET_FILE))


def apply_rows(
    state: Mapping[str, Mapping[str, Any]], kind: str, rows: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {} if kind == FULL else {k: dict(v) for k, v in state.items()}
    for row in rows:
        if row["change"] in DROPPED:
            out.pop(str(row["cert_id"]), None)
        else:
            out[str(row["cert_id"])] = {k: v for k, v in row.items() if k != "change"}
    return out


def _note_text(path: Path) -> str:
    """The text of a signed note (its first paragraph), signature not checked."""
    return path.read_text(encoding="utf-8").split("\n\n", 1)[0]


__all__ = [
    "CHANGES",
    "CHANGE_LABELS",
    "COLUMNS",
    "DROPPED",
    "FULL",
    "HEADERS",
    "INCREMENTAL",
    "MANIFEST_FILE",
    "MANIFEST_SCHEMA",
    "PARQUET_FILE",
    "ROWS_FILE",
    "XLSX_FILE",
    "ExtractReport",
    "apply_extract",
    "apply_rows",
    "canonical_texts",
    "file_sha256",
    "open_manifest",
    "read_parquet_rows",
    "read_xlsx_rows",
    "row_bytes",
    "row_leaf",
    "rows_file",
    "rows_frontier",
    "rows_root",
    "table_leaves",
    "table_rows_file",
    "table_rows_texts",
    "verify_extract",
]
