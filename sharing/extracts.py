"""Township extracts (数据回流): each township gets the certificates of its own people.

Example::

    written = write_extracts(conn, settings.extracts_dir, townships={"120114001000"})
    # var/extracts/township=120114001000/certificates.parquet

An extract holds only what a service counter needs to skip a proof — identifier, type, holder,
validity, status, and where the certificate sits in the transparency log — for the residents
and businesses of that township only. Only townships whose certificates changed in this run
are rewritten; each file is replaced atomically.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.engine import Connection

from lake.catalog import certificates
from lake.parquet import write_parquet_atomic

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


__all__ = ["EXTRACT_SCHEMA", "extract_path", "write_extracts"]
