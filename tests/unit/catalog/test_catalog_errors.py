"""Database errors become CatalogUnavailable (transient) or CatalogRefused (terminal) by driver code.

The DBAPI errors are built as each driver raises them (psycopg's class per SQLSTATE, PyMySQL's
error number, sqlite3's result code) and wrapped as SQLAlchemy wraps them; the servers' own
errors are provoked in tests/integration/test_catalog_errors_servers.py.
"""

from __future__ import annotations

import pickle
import sqlite3
import threading
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import sqlalchemy as sa

from catalog import Catalog, catalog_error, connector_state, is_transient
from onceonly.errors import CatalogRefused, CatalogUnavailable, TerminalError, TransientError

SECRET_ID = "120114199003070011"


def _wrapped(orig: Exception, base: type[Exception], *, invalidated: bool = False) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError.instance(
        "UPDATE t SET holder_id = %(h)s", {"h": SECRET_ID}, orig, base, connection_invalidated=invalidated
    )


def _psycopg(sqlstate: str) -> sa.exc.DBAPIError:
    return _wrapped(psycopg.errors.lookup(sqlstate)(f"server says {sqlstate}"), psycopg.Error)


def _pymysql(
    number: int, kind: type[pymysql.err.Error] = pymysql.err.OperationalError, sqlstate: str = "HY000"
) -> sa.exc.DBAPIError:
    # As pymysql.err.raise_mysql_exception builds it from the server's packet, SQLSTATE and all.
    return _wrapped(kind(number, f"server says {number}", sqlstate=sqlstate), pymysql.err.Error)


def _sqlite(code: int, kind: type[sqlite3.Error] = sqlite3.OperationalError) -> sa.exc.DBAPIError:
    orig = kind(f"sqlite says {code}")
    orig.sqlite_errorcode = code  # as the sqlite3 module sets it (Python 3.11+)
    return _wrapped(orig, sqlite3.Error)


@pytest.mark.parametrize(
    "sqlstate",
    [
        "08000",
        "08003",
        "08006",
        "08001",
        "08004",
        "40001",
        "40P01",
        "55P03",
        "53300",
        "57P01",
        "57P02",
        "57P03",
    ],
)
def test_postgresql_lost_connections_deadlocks_and_lock_timeouts_are_transient(sqlstate: str) -> None:
    error = catalog_error(_psycopg(sqlstate), "catalog database error")
    assert isinstance(error, CatalogUnavailable) and isinstance(error, TransientError)


@pytest.mark.parametrize(
    "sqlstate",
    ["23505", "23502", "23503", "42P01", "42703", "42601", "42501", "22001", "22P02", "XX000", "57014"],
)
def test_postgresql_constraints_missing_tables_syntax_permission_and_data_are_terminal(sqlstate: str) -> None:
    error = catalog_error(_psycopg(sqlstate), "catalog database error")
    assert isinstance(error, CatalogRefused) and isinstance(error, TerminalError)
    assert not isinstance(error, TransientError)


def test_psycopg_without_sqlstate_is_transient_only_for_a_connection_failure() -> None:
    # libpq's own failures carry no SQLSTATE: an OperationalError is a connection that failed.
    assert is_transient(_wrapped(psycopg.OperationalError("connection failed"), psycopg.Error))
    assert not is_transient(_wrapped(psycopg.DataError("NUL bytes in a string"), psycopg.Error))
    assert not is_transient(_wrapped(psycopg.InterfaceError("bad use"), psycopg.Error))


@pytest.mark.parametrize("number", [2002, 2003, 2006, 2013, 2055, 1040, 1053, 1205, 1213, 1927])
def test_mariadb_lost_connections_deadlocks_and_lock_timeouts_are_transient(number: int) -> None:
    # The number decides: MariaDB's SQLSTATE for a lock wait timeout is HY000, "general error".
    assert isinstance(catalog_error(_pymysql(number), "x"), CatalogUnavailable)
    assert isinstance(catalog_error(_pymysql(number, sqlstate="40001"), "x"), CatalogUnavailable)


@pytest.mark.parametrize(
    ("number", "kind"),
    [
        (1062, pymysql.err.IntegrityError),  # duplicate entry
        (1048, pymysql.err.IntegrityError),  # column cannot be null
        (1146, pymysql.err.ProgrammingError),  # no such table
        (1054, pymysql.err.OperationalError),  # unknown column
        (1064, pymysql.err.ProgrammingError),  # syntax
        (1142, pymysql.err.OperationalError),  # command denied (permission)
        (1045, pymysql.err.OperationalError),  # access denied: wrong password
        (1049, pymysql.err.OperationalError),  # unknown database
        (1406, pymysql.err.DataError),  # data too long
    ],
)
def test_mariadb_constraints_missing_tables_syntax_permission_and_data_are_terminal(
    number: int, kind: type[pymysql.err.Error]
) -> None:
    assert isinstance(catalog_error(_pymysql(number, kind, sqlstate="23000"), "x"), CatalogRefused)
    assert isinstance(catalog_error(_pymysql(number, kind, sqlstate="08S01"), "x"), CatalogRefused)


def test_sqlite_busy_and_locked_are_transient_and_the_rest_terminal() -> None:
    assert is_transient(_sqlite(5))  # SQLITE_BUSY
    assert is_transient(_sqlite(6))  # SQLITE_LOCKED
    assert is_transient(_sqlite(5 | (2 << 8)))  # SQLITE_BUSY_SNAPSHOT: the primary code decides
    assert not is_transient(_sqlite(2067, sqlite3.IntegrityError))  # SQLITE_CONSTRAINT_UNIQUE
    assert not is_transient(_sqlite(1))  # SQLITE_ERROR: no such table, syntax
    assert not is_transient(_sqlite(8))  # SQLITE_READONLY
    assert not is_transient(_sqlite(14))  # SQLITE_CANTOPEN
    assert not is_transient(_wrapped(sqlite3.OperationalError("no code"), sqlite3.Error))


def test_an_invalidated_connection_and_the_pools_own_failures_are_transient() -> None:
    # SQLAlchemy's dialect saw the connection drop, whatever the driver called it.
    unnamed = _wrapped(pymysql.err.InterfaceError(0, ""), pymysql.err.Error, invalidated=True)
    assert isinstance(catalog_error(unnamed, "x"), CatalogUnavailable)
    assert is_transient(sa.exc.DisconnectionError("connection is gone"))
    assert is_transient(sa.exc.TimeoutError("QueuePool limit reached"))
    assert not is_transient(sa.exc.ArgumentError("could not parse the URL"))
    assert not is_transient(sa.exc.NoSuchModuleError("no dialect"))
    assert isinstance(catalog_error(ValueError("not a database error"), "x"), CatalogRefused)


def test_the_message_names_the_driver_error_without_sql_parameters_or_ids() -> None:
    orig = pymysql.err.IntegrityError(1062, f"Duplicate entry '{SECRET_ID}' for key 'PRIMARY'")
    error = catalog_error(_wrapped(orig, pymysql.err.Error), "catalog database error")
    message = str(error)
    assert message.startswith("catalog database error: IntegrityError: (1062, \"Duplicate entry '")
    assert SECRET_ID not in message and "UPDATE" not in message
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is CatalogRefused and str(restored) == message
    # PostgreSQL quotes the statement from its second line on: only the first is kept.
    quoted = psycopg.errors.UndefinedTable(f"relation \"t\" does not exist\nLINE 1: SELECT '{SECRET_ID}'")
    message = str(catalog_error(_wrapped(quoted, psycopg.Error), "catalog database error"))
    assert message == 'catalog database error: UndefinedTable: relation "t" does not exist'


def test_a_real_sqlite_writer_holding_the_lock_makes_another_writer_transient(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    holder, waiter = Catalog.connect(url), Catalog.connect(url)

    @sa.event.listens_for(waiter.engine, "connect")
    def _short_wait(dbapi_conn: Any, _record: Any) -> None:  # after the catalog's own 30 s
        dbapi_conn.execute("PRAGMA busy_timeout=100")

    waiter.engine.dispose()  # its pooled connection still waits 30 s

    failed: list[BaseException] = []

    def second_writer() -> None:
        try:
            with waiter.begin() as conn:  # BEGIN IMMEDIATE waits 100 ms for the write lock
                conn.execute(sa.insert(connector_state).values(connector="b", dataset="d", rows_pulled=0))
        except BaseException as exc:
            failed.append(exc)

    with holder.begin() as conn:  # holds the write lock
        conn.execute(sa.insert(connector_state).values(connector="a", dataset="d", rows_pulled=0))
        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join(timeout=10)
    assert len(failed) == 1 and isinstance(failed[0], CatalogUnavailable), failed
    assert "OperationalError: database is locked" in str(failed[0])
    with waiter.begin() as conn:  # the lock is free again: the same work succeeds
        conn.execute(sa.insert(connector_state).values(connector="b", dataset="d", rows_pulled=0))
    holder.dispose()
    waiter.dispose()
