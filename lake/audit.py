"""Does what the district stores agree with what its transparency log commits to?

Example::

    report = audit(catalog, ParquetLake.of(settings), extracts_dir=settings.extracts_dir,
                   verifiers=keyring.verifiers())
    for finding in report.findings:
        print(finding)   # "certificates: leaf 7 (1.2.156…): holder_id is 120114********0015 in …"
    report.ok              # False when anything differs

The log (an append-only Merkle tree under signed checkpoints, ``evidence.log``) is the one
thing nobody can change unseen: ``log verify`` recomputes it. Everything else is checked
against it:

- **checkpoints**: the log records every checkpoint it signed before each append (kind
  ``checkpoint``), so a deleted checkpoint row is found; the newest sits at the head;
- **certificates**: each catalog row (holder, township, validity, version, …) must equal the
  certificate its leaf commits to (the opening in ``certificate_openings`` must open the leaf's
  commitment); its **status** must be the one the log's history gives — the status it was
  issued with, 失效 when a newer version superseded it while in force, then each lifecycle
  entry in order — so a status reset after a revocation, or a holder reassigned, is found;
- **status lists**: each published list must be the newest the log records for it (an older
  signed list put back is found);
- **uses**: each entry committed to a subject (a use, a refusal, a decision, a reminder, …) must
  have its opening in ``use_subjects`` — the subject and salt who-used finds it by — and the
  opening must open the entry's commitment, so a use hidden from its subject's list (the opening
  removed, or edited to name someone else) is found; an opening with no such entry too;
- **quarantine**: each batch's rows must hash to the digest its receipt (landed or refused)
  recorded, and the rows each batch resolved to the digest of the resolutions it recorded;
- **lake**: every file a batch's receipt lists must be in the lake with its SHA-256 and rows;
  every landed batch's rows must be there, no file of no batch, nothing left in staging;
- **extracts**: each township extract must be the folder its ``extract-manifest`` entry names:
  its manifest that SHA-256, signed, and every file and row as the manifest gives them
  (``sharing.extract_manifest.verify_extract``); an extract folder no entry names (a run died
  writing it, or is writing it now) is reported as not covered. Extracts from before manifests
  (one ``certificates.parquet`` per township): the file its newest ``extract`` entry names.

Batches, extracts and certificates written before their entries recorded these facts are
reported as not covered (``report.uncovered``), not as changed. Memory grows with the number
of certificates whose status ever changed, not with the log: everything else is streamed in
leaf order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.engine import Connection

from catalog import (
    Catalog,
    batches,
    breaches,
    certificates,
    checkpoints,
    quarantine,
    status_lists,
    use_subjects,
)
from evidence.canonical import canonical_json
from evidence.certificate import STATUS_SUPERSEDED, STATUS_VALID
from evidence.commitment import check_opening, is_commitment_entry, subject_commitment
from evidence.log import (
    KIND_BATCH_RECEIPT,
    KIND_BREACH_RECEIPT,
    KIND_CERTIFICATE,
    KIND_CHECKPOINT,
    KIND_EXTRACT,
    KIND_EXTRACT_MANIFEST,
    KIND_LIFECYCLE,
    Leaf,
    Opening,
    leaves,
    openings,
    read_head,
    verify_log,
)
from evidence.note import NoteVerifier
from evidence.status_list import LOG_KIND as KIND_STATUS_LIST
from evidence.status_list import list_id
from lake.landing import QUARANTINE_FACTS, RESOLUTION_FACTS, quarantine_digest, resolution_digest
from lake.parquet import ParquetLake, file_facts
from onceonly.errors import VerificationFailed
from onceonly.privacy import mask_citizen_id, scrub_text

_BREACH = "breach-"
_EXTRACT_MANIFEST = "manifest.txt"  # sharing.extract_manifest.MANIFEST_FILE (a floor above)


@dataclass(frozen=True)
class Finding:
    area: str  # log | checkpoints | certificates | status | quarantine | lake | staging | extracts | file
    batch_id: str
    dataset: str
    problem: str

    def __str__(self) -> str:
        if self.batch_id:
            return f"{self.area}: batch {self.batch_id[:12]} ({self.dataset}): {self.problem}"
        return f"{self.area}: {self.problem}"


@dataclass
class LakeReport:
    batches: int = 0
    accepted_rows: int = 0
    quarantined_rows: int = 0
    files: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass
class AuditReport(LakeReport):
    leaves: int = 0
    checkpoints: int = 0
    certificates: int = 0
    quarantine_rows: int = 0
    extracts: int = 0
    #: What the log does not cover (written before its entries recorded it): not a change.
    uncovered: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------- the lake


def _rows(path: Path) -> int | None:
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, pa.ArrowException):
        return None  # not a readable Parquet file (truncated, edited)


def _batch_of(path: PurePath) -> str:
    stem = path.name.removesuffix(".parquet")
    if stem.startswith(_BREACH):
        return stem
    return stem.split("-", 1)[0]


def _dataset_of(path: PurePath, root: PurePath) -> str:
    for part in path.relative_to(root).parts:
        if part.startswith("dataset="):
            return part.removeprefix("dataset=")
    return "?"


def audit_lake(catalog: Catalog, lake: ParquetLake, report: LakeReport | None = None) -> LakeReport:
    """The lake's files against the catalog's batches (row counts from the Parquet footers)."""
    report = report if report is not None else LakeReport()
    found: dict[tuple[str, str], int] = defaultdict(int)  # (area, batch) -> rows
    unreadable: set[tuple[str, str]] = set()
    datasets: dict[tuple[str, str], str] = {}
    for area in ("accepted", "quarantine"):
        for path in lake.parquet_files(lake.root / area):
            report.files += 1
            key = (area, _batch_of(path))
            datasets[key] = _dataset_of(path, lake.root)
            rows = lake.rows(path)
            if rows is None:
                unreadable.add(key)
            else:
                found[key] += rows
    with catalog.read() as conn:
        landed = conn.execute(
            select(batches.c.batch_id, batches.c.dataset, batches.c.accepted, batches.c.quarantined)
        ).all()
        refused = conn.execute(select(breaches.c.batch_id, breaches.c.dataset, breaches.c.quarantined)).all()
    expected: dict[tuple[str, str], tuple[str, int]] = {}
    for b in landed:
        expected[("accepted", b.batch_id)] = (b.dataset, int(b.accepted))
        expected[("quarantine", b.batch_id)] = (b.dataset, int(b.quarantined))
        report.batches += 1
        report.accepted_rows += int(b.accepted)
        report.quarantined_rows += int(b.quarantined)
    for r in refused:
        expected[("quarantine", _BREACH + r.batch_id)] = (r.dataset, int(r.quarantined))
    for key, (dataset, rows) in sorted(expected.items()):
        area, batch_id = key
        if key in unreadable:
            problem = "a file of this batch is not readable Parquet"
            report.findings.append(Finding(area, batch_id, dataset, problem))
        elif found.get(key, 0) != rows:
            held = found.get(key, 0)
            what = "its files are missing" if held == 0 else "rows missing" if held < rows else "rows added"
            report.findings.append(
                Finding(
                    area,
                    batch_id,
                    dataset,
                    f"the catalog says {rows:,} {area} rows, the lake holds {held:,} ({what})",
                )
            )
    for key in sorted(set(found) | unreadable):
        if key not in expected:
            area, batch_id = key
            problem = f"{area} file(s) of a batch the catalog never landed"
            report.findings.append(Finding("file", batch_id, datasets.get(key, "?"), problem))
    for connector in lake.staged_connectors():
        for batch_id in lake.staged(connector):
            report.findings.append(
                Finding(
                    "staging",
                    batch_id,
                    "?",
                    f"still in staging for connector {connector} (a run died; the next run finishes it)",
                )
            )
    return report


# ------------------------------------------------------------------------ everything else


def audit(
    catalog: Catalog,
    lake: ParquetLake,
    *,
    extracts_dir: Path,
    verifiers: Sequence[NoteVerifier],
) -> AuditReport:
    """Check everything the district stores against the log (see the module docstring)."""
    report = AuditReport()
    with catalog.read() as conn:
        try:
            verified = verify_log(conn, list(verifiers))
            report.leaves, report.checkpoints = verified.tree_size, verified.checkpoints
        except VerificationFailed as exc:
            report.findings.append(Finding("log", "", "", f"{exc} (`onceonly log verify`)"))
        walk = _Walk(conn, report)
        walk.run()
    audit_lake(catalog, lake, report)
    _check_files(lake, walk.receipts, report)
    _check_extracts(extracts_dir, walk.extracts, report)
    _check_extract_manifests(extracts_dir, walk.extract_manifests, report)
    return report


class _Walk:
    """One pass over the log's leaves in order, beside the openings and the certificate rows."""

    def __init__(self, conn: Connection, report: AuditReport) -> None:
        self.conn = conn
        self.report = report
        self.logged_checkpoints: dict[int, dict[str, Any]] = {}
        self.receipts: dict[str, dict[str, Any]] = {}  # batch id -> receipt (landed or refused)
        self.extracts: dict[str, dict[str, Any]] = {}  # township -> newest extract entry
        self.extract_manifests: dict[str, dict[str, Any]] = {}  # extract folder -> its entry
        self.status_lists: dict[str, tuple[int, bytes]] = {}  # list id -> newest leaf, its entry
        self.status: dict[str, str] = {}  # what the log's history gives, where not as issued
        self.issued_not_valid: dict[str, str] = {}  # certificates issued with another status
        self.row_differs: dict[str, str] = {}  # cert id -> the catalog's status, where not as issued

    def find(self, area: str, problem: str) -> None:
        self.report.findings.append(Finding(area, "", "", scrub_text(problem)))

    def run(self) -> None:
        rows = self._rows()
        opened = self._openings()
        # The tree's size first, and what is read beside its leaves bounded by it: at PostgreSQL's
        # READ COMMITTED each statement sees its own snapshot, and a use appended meanwhile (the
        # counter writes them all day) would be walked without the opening committed with it.
        size = read_head(self.conn).tree_size
        self._subjects = iter(
            self.conn.execute(
                select(use_subjects.c.leaf_index, use_subjects.c.subject_id, use_subjects.c.salt)
                .where(use_subjects.c.leaf_index < size)
                .order_by(use_subjects.c.leaf_index)
            )
        )
        self._subject: Any = next(self._subjects, None)
        row = next(rows, None)
        opening = next(opened, None)
        for leaf in leaves(self.conn, 0, size):
            while row is not None and row.leaf_index < leaf.index:
                self.find(
                    "certificates",
                    f"catalog row {row.cert_id} names leaf {row.leaf_index}, not a certificate",
                )
                row = next(rows, None)
            while opening is not None and opening.leaf_index < leaf.index:
                opening = next(opened, None)
            if leaf.kind == KIND_CERTIFICATE:
                this_row = row if row is not None and row.leaf_index == leaf.index else None
                this_opening = opening if opening is not None and opening.leaf_index == leaf.index else None
                self._certificate(leaf, this_opening, this_row)
                if this_row is not None:
                    row = next(rows, None)
            else:
                self._entry(leaf)
        for rest in [row, *rows]:
            if rest is not None:
                self.find(
                    "certificates", f"catalog row {rest.cert_id} names leaf {rest.leaf_index}, not in the log"
                )
        self._openings_before(None)
        self._status()
        self._status_lists()
        self._checkpoints()
        self._quarantine()

    def _rows(self) -> Iterator[Any]:
        c = certificates.c
        query = select(
            c.leaf_index,
            c.cert_id,
            c.holder_id,
            c.holder_name,
            c.township,
            c.valid_from,
            c.valid_to,
            c.issue_date,
            c.version,
            c.previous_id,
            c.type_code,
            c.issuer_code,
            c.list_no,
            c.status_index,
            c.status,
            c.batch_id,
        ).order_by(c.leaf_index)
        yield from self.conn.execute(query)

    def _openings(self) -> Iterator[Opening]:
        yield from openings(self.conn)

    def _certificate(self, leaf: Leaf, opening: Opening | None, row: Any) -> None:
        entry = leaf.entry or b""
        where = f"leaf {leaf.index} ({leaf.ref})"
        if opening is not None:
            try:
                body = json.loads(opening.body)
                check_opening(entry, body, opening.salt)
            except (ValueError, VerificationFailed) as exc:
                self.find(
                    "certificates", f"{where}: its stored certificate does not open the log's entry ({exc})"
                )
                return
        elif is_commitment_entry(entry):
            self.find("certificates", f"{where}: the certificate and salt the log commits to are missing")
            return
        else:  # written before commitments: the entry is the certificate
            self.report.uncovered.append(f"{where}: issued before commitments (its entry is the certificate)")
            body = json.loads(entry)
        self.report.certificates += 1
        cert_id = str(body.get("id"))
        if body.get("status") != STATUS_VALID:
            self.issued_not_valid[cert_id] = str(body.get("status"))
        previous = body.get("previous")
        if previous:  # supersedes the version before it, if that one was in force
            before = self.status.get(previous, self.issued_not_valid.get(previous, STATUS_VALID))
            if before == STATUS_VALID:
                self.status[previous] = STATUS_SUPERSEDED
        if row is None:
            self.find("certificates", f"{where}: no catalog row holds this certificate")
            return
        holder = body.get("holder") or {}
        credential = body.get("credential_status") or {}
        expected = {
            "cert_id": cert_id,
            "holder_id": holder.get("id"),
            "holder_name": holder.get("name"),
            "township": body.get("township"),
            "valid_from": _date(body.get("valid_from")),
            "valid_to": _date(body.get("valid_to")),
            "issue_date": _date(body.get("issue_date")),
            "version": body.get("version"),
            "previous_id": previous,
            "type_code": (body.get("type") or {}).get("code"),
            "issuer_code": (body.get("issuer") or {}).get("code"),
            "list_no": credential.get("list"),
            "status_index": credential.get("index"),
            "batch_id": (body.get("source") or {}).get("batch"),
        }
        for name, value in expected.items():
            stored = getattr(row, name)
            if isinstance(stored, dt.datetime):
                stored = stored.date()
            if stored != value:
                self.find(
                    "certificates",
                    f"{where}: {name} is {_shown(name, stored)} in the catalog, "
                    f"{_shown(name, value)} in the certificate the log commits to",
                )
        if row.status != body.get("status"):
            self.row_differs[cert_id] = str(row.status)

    def _openings_before(self, index: int | None) -> None:
        """Openings below leaf ``index`` (all that are left: None) that no committed entry took."""
        while self._subject is not None and (index is None or self._subject.leaf_index < index):
            self.find("uses", f"an opening names leaf {self._subject.leaf_index}, which commits to nobody")
            self._subject = next(self._subjects, None)

    def _subject_of(self, leaf: Leaf, document: dict[str, Any]) -> None:
        """The opening of an entry committed to a subject: there, and opening its commitment."""
        self._openings_before(leaf.index)
        opening = (
            self._subject if self._subject is not None and self._subject.leaf_index == leaf.index else None
        )
        where = f"leaf {leaf.index} ({leaf.kind})"
        if opening is None:
            self.find("uses", f"{where}: its subject's opening is missing — hidden from who-used")
            return
        self._subject = next(self._subjects, None)
        if subject_commitment(bytes(opening.salt), str(opening.subject_id)) != document["subject_commitment"]:
            self.find("uses", f"{where}: its opening names another subject than the entry commits to")

    def _entry(self, leaf: Leaf) -> None:
        if leaf.kind == KIND_STATUS_LIST:
            self.status_lists[leaf.ref] = (leaf.index, leaf.entry or b"")
            return
        try:
            document = json.loads(leaf.entry or b"")
        except ValueError:
            return  # log verify reports what does not hash; an entry of another format is opaque
        if not isinstance(document, dict):
            return
        if "subject_commitment" in document:
            self._subject_of(leaf, document)
        if leaf.kind == KIND_LIFECYCLE and document.get("certificate"):
            self.status[str(document["certificate"])] = str(document.get("status"))
        elif leaf.kind == KIND_CHECKPOINT:
            self.logged_checkpoints[int(document.get("size", -1))] = document
        elif leaf.kind in (KIND_BATCH_RECEIPT, KIND_BREACH_RECEIPT) and document.get("batch"):
            self.receipts[str(document["batch"])] = {**document, "kind": leaf.kind}
        elif leaf.kind == KIND_EXTRACT and document.get("township"):
            self.extracts[str(document["township"])] = document
        elif leaf.kind == KIND_EXTRACT_MANIFEST and document.get("path"):
            self.extract_manifests[str(document["path"])] = document

    def _status(self) -> None:
        """Each certificate's catalog status against the log's history of it."""
        rows: dict[str, Any] = {}
        ids = set(self.status) | set(self.row_differs)
        for chunk in _chunks(sorted(ids)):
            for r in self.conn.execute(
                select(certificates.c.cert_id, certificates.c.status, certificates.c.leaf_index).where(
                    certificates.c.cert_id.in_(chunk)
                )
            ):
                rows[r.cert_id] = r
        for cert_id in sorted(ids):
            found = rows.get(cert_id)
            if found is None:
                continue  # reported with the certificates
            r = found
            expected = self.status.get(cert_id, self.issued_not_valid.get(cert_id, STATUS_VALID))
            if r.status != expected:
                self.report.findings.append(
                    Finding(
                        "status",
                        "",
                        "",
                        f"leaf {r.leaf_index} ({cert_id}): the catalog says {r.status}, the log's "
                        f"history of the certificate gives {expected}",
                    )
                )

    def _status_lists(self) -> None:
        """Each published status list must be the newest one the log records for it: an older
        signed list put back (a revocation undone) is found here."""
        stored = {}
        for r in self.conn.execute(
            select(
                status_lists.c.issuer_code,
                status_lists.c.list_no,
                status_lists.c.document,
                status_lists.c.leaf_index,
            ).where(status_lists.c.document.is_not(None))
        ):
            stored[list_id(r.issuer_code, int(r.list_no))] = r
        for ref, (index, entry) in sorted(self.status_lists.items()):
            row = stored.pop(ref, None)
            if row is None:
                self.find(
                    "status", f"status list {ref}: the log records it (leaf {index}), the catalog has none"
                )
            elif int(row.leaf_index) != index or canonical_json(json.loads(row.document)) != entry:
                self.find(
                    "status",
                    f"status list {ref}: the catalog holds the list of leaf {row.leaf_index}, the log's "
                    f"newest is leaf {index}",
                )
        for ref in sorted(stored):
            self.find("status", f"status list {ref}: published in the catalog, never logged")

    def _checkpoints(self) -> None:
        stored = {
            int(r.tree_size): r
            for r in self.conn.execute(
                select(checkpoints.c.tree_size, checkpoints.c.root_hash, checkpoints.c.note)
            )
        }
        for size, logged in sorted(self.logged_checkpoints.items()):
            row = stored.get(size)
            if row is None:
                self.find(
                    "checkpoints",
                    f"the checkpoint of size {size} the log records is missing from the catalog",
                )
                continue
            if hashlib.sha256(str(row.note).encode()).hexdigest() != logged.get("note_sha256"):
                self.find("checkpoints", f"the checkpoint of size {size} is not the note the log records")
        head = read_head(self.conn).tree_size
        if head and head not in stored:
            self.find("checkpoints", f"the newest checkpoint (size {head}, the log's head) is missing")

    def _quarantine(self) -> None:
        by_batch: dict[str, list[dict[str, Any]]] = defaultdict(list)
        by_resolver: dict[str, list[dict[str, Any]]] = defaultdict(list)
        names = dict.fromkeys(
            ("batch_id", *QUARANTINE_FACTS, *RESOLUTION_FACTS, "resolved_at", "resolved_by_batch")
        )
        for r in self.conn.execute(select(*(quarantine.c[name] for name in names))):
            row = dict(r._mapping)
            by_batch[r.batch_id].append(row)
            self.report.quarantine_rows += 1
            if (r.resolved_at is None) != (r.resolved_by_batch is None):
                self.report.findings.append(
                    Finding(
                        "quarantine",
                        r.batch_id,
                        "?",
                        "a row is resolved with no resolving batch, or the reverse",
                    )
                )
            if r.resolved_by_batch is not None:
                by_resolver[r.resolved_by_batch].append(row)
        self._resolutions(by_resolver)
        for batch_id, receipt in sorted(self.receipts.items()):
            if "quarantine_sha256" not in receipt:
                self.report.uncovered.append(
                    f"batch {batch_id[:12]}: landed before receipts recorded quarantine"
                )
                continue
            rows = by_batch.get(batch_id, [])
            if quarantine_digest(rows) != receipt["quarantine_sha256"]:
                self.report.findings.append(
                    Finding(
                        "quarantine",
                        batch_id,
                        str(receipt.get("dataset", "?")),
                        f"its {len(rows)} quarantine row(s) are not the ones its receipt recorded "
                        f"({receipt['counts'].get('quarantined', '?')} rows quarantined): a row was "
                        "deleted or changed",
                    )
                )
        for batch_id in sorted(set(by_batch) - set(self.receipts)):
            self.report.findings.append(
                Finding("quarantine", batch_id, "?", "quarantine rows of a batch the log never recorded")
            )

    def _resolutions(self, by_resolver: dict[str, list[dict[str, Any]]]) -> None:
        """The quarantine rows each batch resolved against what its receipt recorded."""
        for batch_id in sorted(set(by_resolver) | set(self.receipts)):
            rows = by_resolver.get(batch_id, [])
            receipt = self.receipts.get(batch_id)
            if receipt is None:
                self.report.findings.append(
                    Finding(
                        "quarantine",
                        batch_id,
                        "?",
                        f"{len(rows)} quarantine row(s) resolved by a batch the log never recorded",
                    )
                )
                continue
            recorded = receipt.get("resolved")
            if not isinstance(recorded, dict):
                if rows:
                    self.report.uncovered.append(
                        f"batch {batch_id[:12]}: landed before receipts recorded what it resolved"
                    )
                continue
            if resolution_digest(rows) != recorded.get("sha256"):
                self.report.findings.append(
                    Finding(
                        "quarantine",
                        batch_id,
                        str(receipt.get("dataset", "?")),
                        f"{len(rows)} quarantine row(s) are resolved by it, its receipt recorded "
                        f"{recorded.get('rows', '?')}: a resolution was added, removed or changed",
                    )
                )


def _check_files(lake: ParquetLake, receipts: dict[str, dict[str, Any]], report: AuditReport) -> None:
    """Every file a receipt lists, in the lake, with its SHA-256 and rows."""
    for batch_id, receipt in sorted(receipts.items()):
        for listed in receipt.get("files") or []:
            path = lake.root / str(listed.get("path", ""))
            dataset = str(receipt.get("dataset", "?"))
            if not lake.is_file(path):
                report.findings.append(Finding("lake", batch_id, dataset, f"{listed.get('path')} is missing"))
                continue
            try:
                facts = lake.file_facts(path)
            except (OSError, pa.ArrowException):
                facts = {"sha256": "", "rows": None}
            if facts["sha256"] != listed.get("sha256"):
                changed = "rows" if facts["rows"] != listed.get("rows") else "bytes"
                report.findings.append(
                    Finding(
                        "lake",
                        batch_id,
                        dataset,
                        f"{listed.get('path')} was changed ({changed}: {facts['rows']} rows now, "
                        f"{listed.get('rows')} when its batch was logged)",
                    )
                )


def _check_extracts(extracts_dir: Path, logged: dict[str, dict[str, Any]], report: AuditReport) -> None:
    """Each township's extract against its newest ``extract`` entry."""
    present = sorted(extracts_dir.glob("township=*/*.parquet")) if extracts_dir.exists() else []
    report.extracts = len(present)
    for path in present:
        township = path.parent.name.removeprefix("township=")
        entry = logged.get(township)
        if entry is None:
            report.uncovered.append(f"extract of township {township}: written before extracts were logged")
            continue
        if path.relative_to(extracts_dir).as_posix() != entry.get("path"):
            continue  # another file of the township's folder
        facts = file_facts(path) if _rows(path) is not None else {"sha256": "", "rows": None}
        if facts["sha256"] != entry.get("sha256"):
            report.findings.append(
                Finding(
                    "extracts",
                    "",
                    "",
                    f"the extract of township {township} was changed since it was logged "
                    f"({facts['rows']} rows now, {entry.get('rows')} then)",
                )
            )
    for township, entry in sorted(logged.items()):
        if not (extracts_dir / str(entry.get("path", ""))).is_file():
            report.findings.append(
                Finding("extracts", "", "", f"the extract of township {township} the log records is missing")
            )


def _check_extract_manifests(
    extracts_dir: Path, logged: dict[str, dict[str, Any]], report: AuditReport
) -> None:
    """Each extract folder against its ``extract-manifest`` entry: the manifest the SHA-256 the
    log gives (so its text is the one signed then), each file the SHA-256 the manifest gives.
    Rows are named by ``onceonly verify-extract`` (``sharing.extract_manifest``)."""
    present = sorted(extracts_dir.glob("township=*/extract=*")) if extracts_dir.exists() else []
    report.extracts += len(present)
    placing: dict[str, Path] = {}  # logged path -> its temporary folder, recorded, not yet renamed
    for folder in present:
        if ".tmp-" in folder.name:
            final = folder.with_name(folder.name.split(".tmp-", 1)[0]).relative_to(extracts_dir).as_posix()
            entry = logged.get(final)
            manifest = folder / _EXTRACT_MANIFEST
            if (
                entry is not None
                and not (extracts_dir / final).exists()
                and manifest.is_file()
                and _sha256_of(manifest) == entry.get("manifest_sha256")
            ):
                placing[final] = folder
                report.uncovered.append(
                    f"extract folder {final}: recorded, not yet renamed into place (a run died between the "
                    "two; the next extract run renames it); checked in its temporary folder"
                )
            else:
                report.uncovered.append(
                    f"extract folder {folder.relative_to(extracts_dir).as_posix()}: a temporary folder in no "
                    "log entry (an extract being written, or a run that died writing it; the next extract "
                    "run removes it)"
                )
            continue
        if folder.relative_to(extracts_dir).as_posix() not in logged:
            report.uncovered.append(
                f"extract folder {folder.relative_to(extracts_dir).as_posix()}: in no log entry (a run died "
                "writing it, or is writing it now; the next run writes it again)"
            )
    for path, entry in sorted(logged.items()):
        folder = placing.get(path, extracts_dir / path)
        name = f"the extract {entry.get('extract_no')} of township {entry.get('township')}"
        manifest = folder / _EXTRACT_MANIFEST
        if not manifest.is_file():
            report.findings.append(Finding("extracts", "", "", f"{name} the log records is missing ({path})"))
            continue
        text = manifest.read_bytes()
        if hashlib.sha256(text).hexdigest() != entry.get("manifest_sha256"):
            report.findings.append(
                Finding("extracts", "", "", f"{name} was changed since it was logged: its manifest differs")
            )
            continue
        body = json.loads(text.decode("utf-8").split("\n\n", 1)[0])  # the text the log's hash covers
        problems = []
        for listed in body.get("files", []):
            file = folder / str(listed["name"])
            if not file.is_file():
                problems.append(f"{listed['name']} is missing")
            elif _sha256_of(file) != listed.get("sha256"):
                problems.append(
                    f"{listed['name']} was changed (`onceonly verify-extract {folder}` names the rows)"
                )
        if problems:
            report.findings.append(
                Finding("extracts", "", "", f"{name} was changed since it was logged: {'; '.join(problems)}")
            )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _date(value: Any) -> dt.date | None:
    if not value:
        return None
    return dt.date.fromisoformat(str(value)[:10])


def _shown(name: str, value: Any) -> str:
    if value is None:
        return "none"
    if name == "holder_id":
        return str(mask_citizen_id(str(value)))
    if name == "holder_name":
        return "(a name)"  # never a name in a report
    return str(value)


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = ["AuditReport", "Finding", "LakeReport", "audit", "audit_lake"]
