"""Statements every stage needs, with the database-specific branches in one place.

Example::

    insert_missing(conn, serials, {"type_code": t, "issuer_code": i, "next_serial": 1})
    insert_rows(conn, certificates, names, rows, constants={"dataset": "household"})
    for chunk in chunks(keys):                    # IN lists well under every driver's limit
        conn.execute(select(...).where(column.in_(chunk)))
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import namedtuple
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Table, insert, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InvalidRequestError

IN_CHUNK = 500  # keys per IN (...) list: well under SQLite's bound-parameter limit


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def insert_missing(conn: Connection, table: Table, values: dict[str, Any]) -> None:
    """Insert ``values`` unless a row with the same key exists, without failing on a race.

    Two transactions that both find a row missing and both insert it would otherwise make one
    of them fail on the key (the first append to an empty log, the first serial of a type).
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(postgresql.insert(table).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        conn.execute(sqlite.insert(table).values(values).on_conflict_do_nothing())
    elif dialect in ("mysql", "mariadb"):
        # Not INSERT IGNORE: on an existing row InnoDB takes a shared lock, and two writers
        # that both hold it and then lock the row FOR UPDATE deadlock. A no-op update takes
        # the exclusive lock at once, as the FOR UPDATE that follows would.
        first = next(iter(table.primary_key.columns))
        conn.execute(mysql.insert(table).values(values).on_duplicate_key_update({first.name: first}))
    else:
        key = [c == values[c.name] for c in table.primary_key.columns]
        if conn.execute(select(*table.primary_key.columns).where(*key)).first() is None:
            conn.execute(insert(table).values(values))


def insert_rows(
    conn: Connection,
    table: Table,
    names: Sequence[str],
    rows: list[tuple[Any, ...]],
    constants: Mapping[str, Any] | None = None,
) -> None:
    """INSERT many rows given as tuples; on SQLite straight to the driver's executemany.

    SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself; the
    values must need none there (integers, bytes, text, and dates or timestamps already bound
    with :func:`bind_value`). ``constants`` are the same in every row: SQLite gets those it can
    take as literals (integers, NULL, text without NUL) in the statement, as binding them again
    for every row cost ~1 us per certificate. Elsewhere SQLAlchemy binds everything (batched
    "insertmanyvalues").
    """
    if not rows:  # (SQLAlchemy would run the statement once, with no parameters)
        return
    fixed = dict(constants or {})
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), [dict(zip(names, row, strict=True)) | fixed for row in rows])
        return
    literals = {name: _sqlite_literal(value) for name, value in fixed.items()}
    bound = [name for name, literal in literals.items() if literal is None]
    if bound:  # not expressible as a literal: bound with every row after all
        names = [*names, *bound]
        rows = [(*row, *(fixed[name] for name in bound)) for row in rows]
    inline = {name: literal for name, literal in literals.items() if literal is not None}
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(n) for n in [*names, *inline])
    values = ", ".join(["?"] * len(names) + list(inline.values()))
    sql = f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({values})"
    if conn.in_transaction():  # on the driver's cursor, as Prepared: SQLAlchemy's execution
        _on_driver(conn, sql, rows, many=True)  # context cost more than two rows' insert
    else:  # SQLAlchemy begins the transaction (the driver alone would commit at once)
        conn.exec_driver_sql(sql, rows)


class Prepared:
    """A Core ``SELECT`` (or ``INSERT``/``UPDATE``) compiled once per dialect and run on the
    driver's own cursor.

    For the few queries a service runs on every request: SQLAlchemy's execution machinery
    (statement cache key, parameter processing, result set wrapping) costs ten times what
    SQLite's indexed lookup does. Parameters are bound by name, values converted by the column
    types as SQLAlchemy would (dates on SQLite); ``IN`` lists are fixed slots (pad them), since
    an expanding parameter changes the SQL text. Rows come back as named tuples.

    Example::

        NEWEST = Prepared(select(checkpoints.c.tree_size).order_by(...).limit(1))
        row = NEWEST.first(conn)                    # or NEWEST.all(conn, holder="...")
        MOVE = Prepared(update(log_head).where(...).values(tree_size=bindparam("size")))
        MOVE.run(conn, size=8)                      # the rows it changed

    A write runs in the connection's transaction (the same driver connection), so it commits
    or rolls back with it.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._selected = list(getattr(statement, "selected_columns", ()))
        self.row: Any = namedtuple("Row", [c.key for c in self._selected])  # type: ignore[misc]
        self._compiled: dict[str, _Plan] = {}
        self._last: tuple[Any, _Plan] | None = None  # the dialect asked last, and its plan

    def _compile(self, conn: Connection) -> _Plan:
        dialect = conn.dialect
        last = self._last
        if last is not None and last[0] is dialect:
            return last[1]
        # The SQL text depends on the driver's placeholder style, not only on the database.
        key = f"{dialect.name}/{dialect.driver}/{dialect.paramstyle}"
        found = self._compiled.get(key)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            if any(b.expanding for b in compiled.binds.values()):
                raise ValueError("Prepared takes no expanding IN parameter: use fixed slots")
            if any(b.callable is not None for b in compiled.binds.values()) or getattr(
                compiled, "escaped_bind_names", None
            ):
                raise ValueError("Prepared takes no callable or escaped bind parameter")
            positional = list(compiled.positiontup or []) if compiled.positional else None
            results = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in self._selected]
            # Each placeholder's bind: in order for a positional driver, else one per bind by
            # the name the SQL uses (``binds`` lists a bind under its key as well).
            named = (
                [(name, compiled.binds[name]) for name in positional]
                if positional is not None
                else [(name, bind) for bind, name in compiled.bind_names.items()]
            )
            binds = [
                _Bind(
                    name,
                    bind.key,
                    bind.value,
                    bind.required,
                    bind.type.dialect_impl(dialect).bind_processor(dialect),
                )
                for name, bind in named
            ]
            found = self._compiled[key] = _Plan(str(compiled), binds, positional is not None, results)
        self._last = (dialect, found)
        return found

    def all(self, conn: Connection, **params: Any) -> list[Any]:
        fetched, results = self._execute(conn, params, fetch=True)
        if any(results):
            fetched = [[p(v) if p else v for p, v in zip(results, row, strict=True)] for row in fetched]
        make = self.row._make
        return [make(row) for row in fetched]

    def first(self, conn: Connection, **params: Any) -> Any:
        rows = self.all(conn, **params)
        return rows[0] if rows else None

    def run(self, conn: Connection, **params: Any) -> int:
        """Execute a write; the number of rows it changed. Only inside a transaction (``begin()``):
        the driver's connection is used directly, so outside one SQLite would commit at once."""
        if not conn.in_transaction():
            raise RuntimeError("Prepared.run writes only inside a transaction (catalog.begin())")
        count, _ = self._execute(conn, params, fetch=False)
        return int(count)

    def _execute(self, conn: Connection, params: dict[str, Any], *, fetch: bool) -> tuple[Any, list[Any]]:
        sql, binds, positional, results = self._compile(conn)
        # What SQLAlchemy's construct_params would bind (a given value, else the statement's
        # own, e.g. a LIMIT), each converted by its column type, without its per-call machinery.
        values = []
        for name, key, default, required, process in binds:
            if name in params:
                value = params[name]
            elif key in params:  # as construct_params: a bind given by its key (bindparam("x"))
                value = params[key]
            elif required:
                raise InvalidRequestError(f"A value is required for bind parameter {name!r}")
            else:
                value = default
            values.append(process(value) if process is not None else value)
        args: Any = values if positional else {b.name: v for b, v in zip(binds, values, strict=True)}
        return _on_driver(conn, sql, args, fetch=fetch), results


def _on_driver(conn: Connection, sql: str, args: Any, *, fetch: bool = False, many: bool = False) -> Any:
    """``sql`` run on the driver's own cursor of ``conn`` (``many``: for each of ``args``): its
    rows (``fetch``), else the rows it changed. A driver error is raised as SQLAlchemy would
    raise it (``catalog_error`` maps it; its message shows a few of many rows, not all), a lost
    connection invalidated, so that the pool does not hand it out again. Unlike SQLAlchemy's
    own execution, the pool's other connections are not invalidated with it, and an interrupt
    (Ctrl-C) during the statement leaves the connection to the transaction's rollback."""
    raw = conn.connection
    cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(sql, args)
        else:
            cursor.execute(sql, args)
        return cursor.fetchall() if fetch else cursor.rowcount
    except conn.dialect.loaded_dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, raw.dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            args,
            exc,
            conn.dialect.loaded_dbapi.Error,
            hide_parameters=conn.engine.hide_parameters,
            connection_invalidated=lost,
            dialect=conn.dialect,
            ismulti=many,
        ) from exc
    finally:
        with contextlib.suppress(conn.dialect.loaded_dbapi.Error):  # closed with its connection
            cursor.close()


class _Bind(NamedTuple):
    name: str  # as the SQL names it
    key: str  # as the statement's bindparam() was given it (the same unless made unique)
    default: Any  # the statement's own value (a LIMIT), bound when none is given
    required: bool  # a bindparam() with no value: a call must give it
    process: Any  # the column type's bind processor (None: bound as it is)


class _Plan(NamedTuple):
    sql: str
    binds: list[_Bind]  # in placeholder order (a positional driver), else every one by name
    positional: bool
    results: list[Any]  # per selected column, its result processor (None: as it comes)


def _sqlite_literal(value: Any) -> str | None:
    """``value`` as a SQLite literal, or None if it has none here."""
    if value is None:
        return "NULL"
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return str(value)  # beyond 64 bits SQLite would read the literal as a REAL
    if isinstance(value, str) and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def bind_value(conn: Connection, column: Any, value: Any) -> Any:
    """``value`` as SQLAlchemy would bind it to ``column`` on SQLite (done once, not per row)."""
    if conn.dialect.name != "sqlite":
        return value
    processor = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return processor(value) if processor else value


def database_now(conn: Connection) -> dt.datetime:
    """The database server's current time (UTC, aware): one clock for every host's runs."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return utcnow()  # an embedded file: this process's clock is the only one
    if dialect in ("mysql", "mariadb"):
        value = conn.exec_driver_sql("SELECT UTC_TIMESTAMP(6)").scalar_one()
    else:
        value = conn.exec_driver_sql("SELECT CURRENT_TIMESTAMP").scalar_one()
    return aware(value) if value.tzinfo is None else value.astimezone(dt.UTC)


def aware(value: dt.datetime) -> dt.datetime:
    """A timestamp read back from the catalog, as an aware UTC datetime.

    SQLite returns naive datetimes for timezone-aware columns; they were written in UTC.
    """
    # PostgreSQL hands aware values back in the session's time zone: turned to UTC here too.
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def chunks(items: Iterable[Any], size: int = IN_CHUNK) -> Iterator[list[Any]]:
    """``items`` in lists of at most ``size`` (for ``IN (...)`` lists)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
