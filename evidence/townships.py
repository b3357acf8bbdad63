"""The one place that marks township extracts stale.

Example::

    mark_stale(conn, {"120114001000", "120114002000"})    # in the transaction that changed them
    townships_of(conn, superseded_ids)                    # where those certificates belong

A township's extract carries its certificates and their status, so whatever issues, supersedes
or changes the status of a certificate marks its township in the same transaction: no crash
can lose the mark. ``township_extracts.generation`` is bumped; the extract writer clears only
the generation it wrote (``sharing.extracts``), so a township that changes while its extract is
being written stays marked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from catalog import certificates, chunks, insert_missing, township_extracts


def townships_of(conn: Connection, cert_ids: Sequence[str]) -> set[str | None]:
    found: set[str | None] = set()
    for chunk in chunks(cert_ids):
        found |= set(
            conn.execute(select(certificates.c.township).where(certificates.c.cert_id.in_(chunk))).scalars()
        )
    return found


def mark_stale(conn: Connection, townships: Iterable[str | None]) -> None:
    """Mark township extracts stale in the landing transaction, so no crash can lose the mark."""
    marked = sorted(t for t in townships if t)
    for chunk in chunks(marked):
        known = set(
            conn.execute(
                select(township_extracts.c.township).where(township_extracts.c.township.in_(chunk))
            ).scalars()
        )
        for township in chunk:
            if township not in known:
                insert_missing(
                    conn, township_extracts, {"township": township, "generation": 0, "written_generation": 0}
                )
        conn.execute(
            update(township_extracts)
            .where(township_extracts.c.township.in_(chunk))
            .values(generation=township_extracts.c.generation + 1)
        )


__all__ = ["mark_stale", "townships_of"]
