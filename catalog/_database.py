"""The catalog database handle: one engine, transactions, and the SQLite settings we rely on.

Example::

    catalog = Catalog.connect(settings.catalog_url)     # SQLite file by default, any SQLAlchemy URL
    with catalog.begin() as conn:                        # one read-write transaction
        ...
    with catalog.read() as conn:                         # queries only; never waits for a writer
        ...

On SQLite a transaction from :meth:`Catalog.begin` takes the database's write lock when it
starts (``BEGIN IMMEDIATE``), so what it reads (the log head, the next serial) cannot be
changed by another writer before it writes; :meth:`Catalog.read` starts a plain transaction
for queries that write nothing. On PostgreSQL those rows are locked ``FOR UPDATE``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from catalog._errors import catalog_error
from catalog._schema import metadata
from onceonly.errors import CatalogRefused


def _check_columns(engine: Engine) -> None:
    """Refuse, by name, a catalog whose tables another version of OnceOnly made.

    ``create_all`` adds missing tables but never changes existing ones; without this check an
    older catalog would fail at its first insert with a bare database error.
    """
    inspector = inspect(engine)
    existing = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing:
            continue  # created next
        stored = {column["name"] for column in inspector.get_columns(table.name)}
        expected = {column.name for column in table.columns}
        if stored != expected:
            differences = [f"+{name}" for name in sorted(stored - expected)]
            differences += [f"-{name}" for name in sorted(expected - stored)]
            raise CatalogRefused(
                f"the catalog's table {table.name} was made by another version of OnceOnly "
                f"(columns {' '.join(differences)} against this version): there are no schema "
                "migrations yet; keep the old catalog and start a new one (the demo: make demo RESET=1)"
            )


class Catalog:
    """A thin handle on the catalog engine; queries live next to the stage that needs them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def connect(cls, url: str, *, create: bool = True) -> Catalog:
        """Open the catalog at ``url``; with ``create`` make it (and a SQLite file's folder) if missing.

        Read-only commands pass ``create=False``: a missing SQLite catalog then means a wrong
        ``ONCEONLY_HOME`` or no run yet, and says so instead of answering from an empty catalog.
        """
        try:
            engine = create_engine(url, future=True)
            if engine.dialect.name == "sqlite":
                database = engine.url.database
                if database and database != ":memory:" and not database.startswith("file:"):
                    if not create and not Path(database).exists():
                        raise CatalogRefused(
                            f"no catalog at {database}: nothing has run under this ONCEONLY_HOME yet "
                            "(run `make demo` or `onceonly run`, or set ONCEONLY_HOME)"
                        )
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                event.listen(engine, "connect", _sqlite_connect)
                event.listen(engine, "begin", _sqlite_begin)
            _check_columns(engine)  # before create_all: another version's catalog stays untouched
            metadata.create_all(engine)
        except SQLAlchemyError as exc:
            raise catalog_error(exc, "cannot open the catalog database") from exc
        return cls(engine)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One read-write transaction; rolled back on any exception."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise catalog_error(exc, "catalog database error") from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One transaction for queries only: on SQLite it does not wait for a writer."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{_READ_ONLY: True})
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise catalog_error(exc, "catalog database error") from exc

    def dispose(self) -> None:
        self.engine.dispose()


_READ_ONLY = "onceonly_read_only"


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling starts a transaction only at the first INSERT or
    # UPDATE, so a SELECT before it reads outside any transaction; we emit BEGIN ourselves
    # (SQLAlchemy, pysqlite dialect: "Serializable isolation / Savepoints / Transactional DDL").
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # 16 KiB pages for a NEW catalog (an existing one keeps its size): a certificate row is
    # ~1 KiB, so 4 KiB pages split and write B-tree pages far more often (issuance CPU -10%).
    cur.execute("PRAGMA page_size=16384")
    # WAL lets the CLI read while a flow writes; busy_timeout waits instead of failing at once.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    # FULL, not NORMAL: under WAL, NORMAL may lose the last commits on power loss, and a log that
    # loses a signed checkpoint it already handed out would sign different leaves at that size
    # again (a split view). One fsync per landed batch is cheap next to the batch itself.
    cur.execute("PRAGMA synchronous=FULL")
    # 64 MiB of page cache (the default is 2 MiB): the certificate indexes of a large catalog
    # stay in memory while a batch is inserted, instead of being re-read page by page.
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE: take the write lock now, so a read-then-write (log head, serials) is never
    # overtaken by another writer. A deferred transaction that read first would instead fail
    # with SQLITE_BUSY when it tries to write after someone else has.
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
