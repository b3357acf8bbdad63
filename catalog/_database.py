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

A catalog is opened only at this version's schema revision (``catalog._migrations``): an empty
database gets every migration; an older catalog is refused, untouched, until ``onceonly catalog
upgrade`` (:meth:`Catalog.upgrade`) brings it there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from catalog import _migrations
from catalog._errors import catalog_error
from catalog._migrations import SchemaRevision
from onceonly.errors import CatalogError, CatalogRefused

# Seconds a kept connection to a database server may sit idle before it is pinged (Catalog._alive).
KEPT_PING_AFTER = 1.0


class Catalog:
    """A thin handle on the catalog engine; queries live next to the stage that needs them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._mine = threading.local()  # read_kept: each thread's own connection
        self._kept: list[Connection] = []
        self._kept_guard = threading.Lock()

    @classmethod
    def connect(cls, url: str, *, create: bool = True, pool_size: int | None = None) -> Catalog:
        """Open the catalog at ``url``; with ``create`` make it (and a SQLite file's folder) if missing.

        Read-only commands pass ``create=False``: a missing SQLite catalog then means a wrong
        ``ONCEONLY_HOME`` or no run yet, and says so instead of answering from an empty catalog.
        A database without the catalog's tables gets them (every migration, up to the newest);
        a catalog at another schema revision is refused, untouched (:class:`CatalogOutdated`:
        ``onceonly catalog upgrade``).

        ``pool_size``: connections kept open, for a long-running service with that many threads
        (SQLAlchemy keeps 5 and closes the ones opened beyond them: on SQLite each new one starts
        with an empty page cache).
        """
        engine = _engine(url, create=create, pool_size=pool_size)
        try:
            migrations = _migrations.MIGRATIONS
            with _reading(engine) as conn:  # most often at the revision: no lock to wait for
                current = migrations.recorded(conn) == migrations.head
            if not current:
                migrations.check(migrations.create_missing(engine))
        except SQLAlchemyError as exc:
            engine.dispose()
            raise catalog_error(exc, "cannot open the catalog database") from exc
        except CatalogError:
            engine.dispose()
            raise
        return cls(engine)

    @classmethod
    def upgrade(cls, url: str) -> SchemaRevision:
        """Bring the catalog at ``url`` to this version's schema revision; returns what it was.

        One transaction under the database's lock (see ``catalog._migrations``); a catalog
        already at the revision is left alone. A missing catalog is reported, not created.
        """
        engine = _engine(url, create=False)
        try:
            return _migrations.MIGRATIONS.upgrade(engine)
        except SQLAlchemyError as exc:
            raise catalog_error(exc, "cannot upgrade the catalog") from exc
        finally:
            engine.dispose()

    @classmethod
    def revision(cls, url: str) -> SchemaRevision:
        """The schema revision of the catalog at ``url`` and the one this version needs (reads only)."""
        engine = _engine(url, create=False)
        try:
            with _reading(engine) as conn:
                return _migrations.MIGRATIONS.read(conn)
        except SQLAlchemyError as exc:
            raise catalog_error(exc, "cannot read the catalog database") from exc
        finally:
            engine.dispose()

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
            with _reading(self.engine) as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise catalog_error(exc, "catalog database error") from exc

    @contextmanager
    def read_kept(self) -> Iterator[Connection]:
        """:meth:`read` on a connection this thread checked out once and keeps: for a thread
        that reads in many small transactions (the counter's event loop answering): BEGIN and
        COMMIT on the driver cost ~40 µs, a checkout from the pool and back twice that. A
        connection a database error touched is closed and dropped (whatever state it was left
        in), the next transaction takes a new one. Not re-entrant: one transaction at a time
        per thread."""
        with self._kept_transaction("read_kept", read_only=True) as conn:
            yield conn

    @contextmanager
    def begin_kept(self) -> Iterator[Connection]:
        """:meth:`begin` on a connection this thread keeps, as :meth:`read_kept` reads: for the
        one thread that writes many small transactions (the counter's log writer; the pool's
        checkout and check-in were a quarter of its interpreter time). Rolled back on any
        exception; a connection a database error touched is dropped."""
        with self._kept_transaction("begin_kept", read_only=False) as conn:
            yield conn

    @contextmanager
    def _kept_transaction(self, name: str, *, read_only: bool) -> Iterator[Connection]:
        conn: Connection | None = getattr(self._mine, name, None)
        if conn is not None and conn.in_transaction():
            raise RuntimeError(f"{name}: this thread's kept connection is already in a transaction")
        try:
            if conn is not None and not self._alive(conn, name):
                self._drop_kept(conn, name)  # the server ended it while it sat idle: a new one
                conn = None
            if conn is None or conn.closed or conn.invalidated:
                conn = self.engine.connect()
                if read_only:
                    conn.execution_options(**{_READ_ONLY: True})
                setattr(self._mine, name, conn)
                with self._kept_guard:
                    self._kept.append(conn)
            with conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            self._drop_kept(conn, name)
            raise catalog_error(exc, "catalog database error") from exc
        finally:
            setattr(self._mine, f"{name}_at", time.monotonic())

    def _alive(self, conn: Connection, name: str) -> bool:
        """False if a server's connection kept idle for over :data:`KEPT_PING_AFTER` seconds no
        longer answers (a server restarted, a failover, an idle timeout): as the pool's
        pre-ping does at checkout, which a kept connection skips. A local SQLite file is not
        asked; nor is a connection used within the last second (its next error is the caller's)."""
        if conn.closed or conn.invalidated or self.engine.dialect.name == "sqlite":
            return True
        if time.monotonic() - getattr(self._mine, f"{name}_at", 0.0) <= KEPT_PING_AFTER:
            return True
        raw = conn.connection.dbapi_connection
        if raw is None:
            return False
        try:
            return bool(self.engine.dialect.do_ping(raw))
        except Exception:  # the driver's own error for a connection gone: any means "gone"
            return False

    def _drop_kept(self, conn: Connection | None, name: str) -> None:
        setattr(self._mine, name, None)
        if conn is None:
            return
        with self._kept_guard:
            if conn in self._kept:
                self._kept.remove(conn)
        with suppress(SQLAlchemyError):
            conn.invalidate()  # not back to the pool: a new DBAPI connection next time
        with suppress(SQLAlchemyError):
            conn.close()

    def dispose(self) -> None:
        """Close the connections threads kept (:meth:`read_kept`, :meth:`begin_kept`) and the pool's."""
        with self._kept_guard:
            kept, self._kept = self._kept, []
        for conn in kept:
            with suppress(SQLAlchemyError):
                conn.close()
        self.engine.dispose()


def _engine(url: str, *, create: bool, pool_size: int | None = None) -> Engine:
    """The engine for ``url``, with the SQLite settings below; a missing SQLite file is refused
    unless ``create`` (then its folder is made)."""
    pooled = {} if pool_size is None else {"pool_size": pool_size, "max_overflow": pool_size}
    try:
        engine = create_engine(url, future=True, **pooled)
    except SQLAlchemyError as exc:
        raise catalog_error(exc, "cannot open the catalog database") from exc
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
    return engine


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        conn.execution_options(**{_READ_ONLY: True})
        with conn.begin():
            yield conn


_READ_ONLY = "onceonly_read_only"


WAL_AUTOCHECKPOINT_PAGES = 65_536  # SQLite's own checkpoint, in pages of WAL (256 MiB of 4 KiB)
WAL_SIZE_LIMIT = 64 << 20  # bytes the WAL file is cut back to once checkpointed


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling starts a transaction only at the first INSERT or
    # UPDATE, so a SELECT before it reads outside any transaction; we emit BEGIN ourselves
    # (SQLAlchemy, pysqlite dialect: "Serializable isolation / Savepoints / Transactional DDL").
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # 4 KiB pages for a NEW catalog (an existing one keeps its size). A large catalog's randomly
    # keyed certificate indexes (holder; record and holder) outgrow the page cache, and each row
    # landed then dirties an index page of its own, written whole to the WAL and again by the
    # checkpoint: 16 KiB pages made landing grow ~1.6x faster than the records at 5M rows per
    # department (README, Performance). 16 KiB pages had cut issuance CPU ~10 % on small catalogs.
    cur.execute("PRAGMA page_size=4096")
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
    # SQLite's own WAL checkpoint every 256 MiB of WAL (WAL_AUTOCHECKPOINT_PAGES; its default is
    # 1,000 pages, 4 MiB), the file then cut back to 64 MiB: a landed batch's index pages are
    # copied back once for many batches, not once or twice a batch. (The counter's log writer
    # turns it off for its own transactions and checkpoints itself.)
    cur.execute(f"PRAGMA wal_autocheckpoint={int(WAL_AUTOCHECKPOINT_PAGES)}")
    cur.execute(f"PRAGMA journal_size_limit={int(WAL_SIZE_LIMIT)}")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE: take the write lock now, so a read-then-write (log head, serials) is never
    # overtaken by another writer. A deferred transaction that read first would instead fail
    # with SQLITE_BUSY when it tries to write after someone else has.
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    statement = "BEGIN" if read_only else "BEGIN IMMEDIATE"
    # On the driver: SQLAlchemy's statement execution cost ~4x the BEGIN itself, paid by every
    # transaction (the counter's service opens one per request).
    try:
        conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    except conn.dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy would raise it (busy, locked)
        raise DBAPIError.instance(statement, (), exc, conn.dialect.loaded_dbapi.Error) from exc
