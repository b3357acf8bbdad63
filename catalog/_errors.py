"""Database errors mapped to our tree: transient (try again) or terminal, by driver code.

Example::

    try:
        with engine.begin() as conn:
            ...
    except SQLAlchemyError as exc:
        raise catalog_error(exc, "catalog database error") from exc

A lost or refused connection, a server shutting down or failing over, a deadlock, a
serialization failure, a lock wait that timed out, SQLite's BUSY/LOCKED and too many
connections become :class:`~onceonly.errors.CatalogUnavailable` (a :class:`TransientError`:
the same work may succeed later). Everything else — a constraint violation, a missing table or
column, a syntax or permission error, bad data, anything we do not know — becomes
:class:`~onceonly.errors.CatalogRefused` (terminal).

The decision reads the driver's code, never the message: the SQLSTATE of psycopg (PostgreSQL
Appendix A), the error number of PyMySQL (MariaDB/MySQL server and client error codes), the
result code of sqlite3, and SQLAlchemy's own ``connection_invalidated`` (its dialect saw a
disconnect). The message keeps the driver's class and first line, scrubbed of citizen IDs;
never the SQL or its bound parameters.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc

from onceonly.errors import CatalogError, CatalogRefused, CatalogUnavailable
from onceonly.privacy import scrub_digits

# PostgreSQL SQLSTATEs (PostgreSQL docs, Appendix A) after which the same work may succeed.
_PG_TRANSIENT_CLASSES = frozenset({"08"})  # connection exception: refused, lost, failed
_PG_TRANSIENT = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "40003",  # statement_completion_unknown (the connection broke during COMMIT)
        "55P03",  # lock_not_available (lock_timeout, NOWAIT)
        "53300",  # too_many_connections
        "57P01",  # admin_shutdown (pg_terminate_backend, a fast shutdown)
        "57P02",  # crash_shutdown (another backend crashed; the server restarts)
        "57P03",  # cannot_connect_now (starting up, shutting down, in recovery)
        "57P05",  # idle_session_timeout
        "25006",  # read_only_sql_transaction: a write reached a standby (a failover in progress)
    }
)

# MariaDB / MySQL error numbers (server ER_*, client CR_*) after which the same work may succeed.
_MYSQL_TRANSIENT = frozenset(
    {
        2002,  # CR_CONNECTION_ERROR: cannot connect through the socket
        2003,  # CR_CONN_HOST_ERROR: cannot connect to the server (refused, unreachable)
        2006,  # CR_SERVER_GONE_ERROR: the server has gone away
        2013,  # CR_SERVER_LOST: lost connection during a query (KILL, restart, network)
        2055,  # CR_SERVER_LOST_EXTENDED
        1040,  # ER_CON_COUNT_ERROR: too many connections
        1203,  # ER_TOO_MANY_USER_CONNECTIONS
        1053,  # ER_SERVER_SHUTDOWN: the server is shutting down
        1205,  # ER_LOCK_WAIT_TIMEOUT
        1213,  # ER_LOCK_DEADLOCK
        1927,  # ER_CONNECTION_KILLED (MariaDB)
        4031,  # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8: disconnected while idle)
        1290,  # ER_OPTION_PREVENTS_STATEMENT: --read-only, a primary demoted by a failover
        1792,  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
    }
)

# sqlite3 primary result codes (sqlite.org/rescode.html) after which the same work may succeed.
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_SQLITE_TRANSIENT = frozenset({_SQLITE_BUSY, _SQLITE_LOCKED})


def is_transient(exc: BaseException) -> bool:
    """Whether the same work may succeed later, by SQLAlchemy class and the driver's code."""
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True  # a pool that could not hand out a live connection in time
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True  # the dialect saw the connection drop; the pool has discarded it
    orig = exc.orig
    if orig is None:
        return False
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_TRANSIENT
    driver = type(orig).__module__.split(".")[0]
    if driver in ("pymysql", "MySQLdb", "mysql", "mariadb"):
        # The error number, not the SQLSTATE these drivers may also carry: MySQL's SQLSTATEs are
        # coarse (a lock wait timeout is HY000, "general error").
        number = orig.args[0] if orig.args else None
        return isinstance(number, int) and number in _MYSQL_TRANSIENT
    if driver in ("psycopg", "psycopg2"):
        sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if sqlstate:
            return sqlstate[:2] in _PG_TRANSIENT_CLASSES or sqlstate in _PG_TRANSIENT
        # No SQLSTATE: libpq's own failure to connect or to keep the connection (refused,
        # reset, timed out, closed). libpq reports a login the server refused (no such
        # database or role, a wrong password) the same way, without a SQLSTATE, so those are
        # retried too before they are reported; the message then says which it was.
        return isinstance(exc, sa_exc.OperationalError)
    return False


def catalog_error(exc: BaseException, doing: str) -> CatalogError:
    """``exc`` as our error: :class:`CatalogUnavailable` if transient, else :class:`CatalogRefused`.

    ``doing`` opens the message ("cannot open the catalog database"); the driver's class and
    first line follow, scrubbed.
    """
    error = CatalogUnavailable if is_transient(exc) else CatalogRefused
    return error(f"{doing}: {plain(exc)}")


def plain(exc: BaseException) -> str:
    """The driver's error class and first line, citizen IDs masked; no SQL, no parameters."""
    # SQLAlchemy messages embed the SQL and bound parameters (which may hold personal data);
    # the driver's first line may still quote a value (MariaDB: "Duplicate entry '<id>'").
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).splitlines()
    return scrub_digits(f"{type(orig).__name__}: {lines[0] if lines else ''}")
