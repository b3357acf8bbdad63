"""Township extracts (数据回流): each township gets the certificates of its own people.

Example::

    written = refresh_extracts(catalog, settings.extracts_dir)   # every township marked stale
    # var/extracts/township=120114001000/certificates.parquet

An extract holds only what a service counter needs to skip a proof — identifier, type, holder,
validity, status, and where the certificate sits in the transparency log — for the residents
and businesses of that township only. Landing a batch marks the townships whose certificates
were issued or superseded (in the same transaction); ``refresh_extracts`` rewrites exactly
those, each file replaced atomically, and clears only the mark it read — so a run that died
before writing extracts, or a connector that failed after landing some batches, still gets
its townships rewritten by the next refresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from catalog import Catalog, certificates, township_extracts, utcnow
from evidence.log import KIND_EXTRACT, TransparencyLog, log_entry
from lake.parquet import file_facts, write_parquet_atomic

EXTRACT_SCHEMA = pa.schema(
    [
        ("cert_id", pa.string()),
        ("type_code", pa.string()),
        ("type_name", pa.string()),
        ("holder_name", pa.string()),
        ("holder_id", pa.string()),
        ("issuer_code", pa.string()),
        ("version", pa.int32()),
        ("status", pa.string()),
        ("issue_date", pa.date32()),
        ("valid_from", pa.date32()),
        ("valid_to", pa.date32()),
        ("leaf_index", pa.int64()),
    ]
)


def extract_path(extracts_dir: Path, township: str) -> Path:
    return extracts_dir / f"township={township}" / "certificates.parquet"


def write_extracts(conn: Connection, extracts_dir: Path, townships: Iterable[str]) -> list[Path]:
    written = []
    columns = [certificates.c[name] for name in EXTRACT_SCHEMA.names]
    for township in sorted(set(townships)):
        rows = conn.execute(
            select(*columns).where(certificates.c.township == township).order_by(certificates.c.leaf_index)
        ).all()
        data = {name: [r[i] for r in rows] for i, name in enumerate(EXTRACT_SCHEMA.names)}
        path = extract_path(extracts_dir, township)
        write_parquet_atomic(pa.table(data, schema=EXTRACT_SCHEMA), path)
        written.append(path)
    return written


def refresh_extracts(catalog: Catalog, extracts_dir: Path, log: TransparencyLog | None = None) -> list[Path]:
    """Rewrite the extracts of every township marked stale; return the files written.

    With ``log``, each extract written is logged (kind ``extract``: township, generation, path,
    SHA-256 and rows) in the transaction that clears its mark, so ``onceonly audit`` can tell an
    extract changed since."""
    with catalog.read() as conn:
        stale = {
            r.township: r.generation
            for r in conn.execute(
                select(township_extracts.c.township, township_extracts.c.generation).where(
                    township_extracts.c.generation != township_extracts.c.written_generation
                )
            )
        }
    if not stale:
        return []
    with catalog.read() as conn:
        written = write_extracts(conn, extracts_dir, stale)
    with catalog.begin() as conn:
        if log is not None and written:
            log.append(
                conn,
                [
                    log_entry(
                        KIND_EXTRACT,
                        path.parent.name.removeprefix("township="),
                        {
                            "township": path.parent.name.removeprefix("township="),
                            "generation": stale[path.parent.name.removeprefix("township=")],
                            "path": path.relative_to(extracts_dir).as_posix(),
                            **file_facts(path),
                        },
                    )
                    for path in written
                ],
            )
        for township, generation in stale.items():
            conn.execute(
                update(township_extracts)
                .where(
                    and_(
                        township_extracts.c.township == township,
                        township_extracts.c.generation == generation,
                    )
                )
                .values(written_generation=generation, written_at=utcnow())
            )
    return written


__all__ = ["EXTRACT_SCHEMA", "extract_path", "refresh_extracts", "write_extracts"]
