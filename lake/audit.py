"""Does the lake hold exactly what the catalog says was landed?

Example::

    report = audit_lake(catalog, ParquetLake(settings.lake_dir))
    for finding in report.findings:
        print(finding)   # "accepted: batch 1a2b… (household): the catalog says 1,502 accepted rows, …"
    report.ok                     # False when anything disagrees

Every landed batch (``batches``) must have exactly its ``accepted`` rows in
``accepted/dataset=<id>/…/<batch>-*.parquet`` and its ``quarantined`` rows in
``quarantine/dataset=<id>/<batch>.parquet``; every batch refused for its error rate
(``breaches``) its rows in ``quarantine/dataset=<id>/breach-<batch>.parquet``. A file of no
known batch, a missing or deleted file, a file with rows added or removed, and batches still in
staging are reported. Row counts come from the Parquet footers, so the audit reads no data.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from catalog import Catalog, batches, breaches
from lake.parquet import ParquetLake

_BREACH = "breach-"


@dataclass(frozen=True)
class Finding:
    area: str  # accepted | quarantine | staging | file
    batch_id: str
    dataset: str
    problem: str

    def __str__(self) -> str:
        return f"{self.area}: batch {self.batch_id[:12]} ({self.dataset}): {self.problem}"


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


def _rows(path: Path) -> int | None:
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, pa.ArrowException):
        return None  # not a readable Parquet file (truncated, edited)


def _batch_of(path: Path) -> str:
    stem = path.name.removesuffix(".parquet")
    if stem.startswith(_BREACH):
        return stem
    return stem.split("-", 1)[0]


def _dataset_of(path: Path, root: Path) -> str:
    for part in path.relative_to(root).parts:
        if part.startswith("dataset="):
            return part.removeprefix("dataset=")
    return "?"


def audit_lake(catalog: Catalog, lake: ParquetLake) -> LakeReport:
    """Compare the lake's files with the catalog's batches; see the module docstring."""
    report = LakeReport()
    found: dict[tuple[str, str], int] = defaultdict(int)  # (area, batch) -> rows
    unreadable: set[tuple[str, str]] = set()
    datasets: dict[tuple[str, str], str] = {}
    for area in ("accepted", "quarantine"):
        base = lake.root / area
        if not base.exists():
            continue
        for path in sorted(base.rglob("*.parquet")):
            report.files += 1
            key = (area, _batch_of(path))
            datasets[key] = _dataset_of(path, lake.root)
            rows = _rows(path)
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
            report.findings.append(
                Finding(area, batch_id, dataset, "a file of this batch is not readable Parquet")
            )
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
            report.findings.append(
                Finding(
                    "file",
                    batch_id,
                    datasets.get(key, "?"),
                    f"{area} file(s) of a batch the catalog never landed",
                )
            )
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


__all__ = ["Finding", "LakeReport", "audit_lake"]
