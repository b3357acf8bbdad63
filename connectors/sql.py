"""``sql`` connector: any SQLAlchemy database, pulled incrementally by watermark.

Example registration options::

    url: postgresql+psycopg://onceonly_reader@db.gongan.local/huji   # password from secrets.password
    table: household_member                       # or   query: SELECT ... FROM ... JOIN ...
    schema: public                                # optional
    cursor: {column: updated_at, tiebreak: id}    # keyset: (updated_at, id) > (last, last)
    source_timezone: Asia/Shanghai                # how naive DATETIME/TIMESTAMP values are read

A table without a usable change timestamp is pulled in snapshot mode instead of by cursor::

    table: business_licence
    change_detection: snapshot                    # no `cursor`
    key: [uscc]                                   # the columns that identify a row

Each run then reads the whole table (or query), hashes every row and yields only the new and
changed rows, reporting the deleted keys (``connectors.snapshot``; state under
``$ONCEONLY_HOME/snapshots/<connector>/``, the cursor names only the snapshot generation).

Rows come in ``(cursor column, tiebreak)`` order and the next pull asks for rows strictly after
the last landed pair (``w > last OR (w = last AND id > last_id)``: ``>=`` with the rows already
landed removed), so rows sharing one timestamp are neither lost nor doubled. Rows whose
watermark is NULL are read first, by tiebreak, in a query of their own: databases disagree on
where NULL sorts and ``w > NULL`` is never true, so a NULL in the cursor would otherwise hide
every later row. (A NULL-watermark row added after a pull has moved past them is not seen; a
watermark column should be NOT NULL.) The result is streamed (server-side cursor), so memory
is bounded by the batch size.

Two readers give the same batches: PostgreSQL is read through ADBC (``COPY`` in PostgreSQL's
binary format straight into Arrow, several times faster than building Python rows), every other
database through SQLAlchemy with ``stream_results``/``yield_per``. ``reader: sqlalchemy`` forces
the second one.

Columns arrive typed from the table's declared SQL types, not from the values of one batch, so
every batch of a table has the same schema, all-NULL batches included:

=============================  ==================================================================
SQL                            Arrow
=============================  ==================================================================
INTEGER/BIGINT/SMALLINT        ``int64``
DECIMAL/NUMERIC(p,s)           ``decimal128(p,s)`` (``decimal256`` above 38 digits)
REAL/DOUBLE                    ``float64``
DATE                           ``date32``
DATETIME/TIMESTAMP (naive)     ``timestamp[us, tz=<source_timezone>]``: the department's clock
                               (Asia/Shanghai unless the registration says otherwise); the
                               instant is exact, the wall time is what the source stored
TIMESTAMP WITH TIME ZONE       ``timestamp[us, tz=UTC]``; MySQL/MariaDB ``TIMESTAMP`` too (the
                               session's time zone is set to UTC to read it)
TIME                           ``time64[us]``
CHAR/VARCHAR/TEXT/ENUM         ``string``
BLOB/BYTEA/BINARY              ``binary``
NULL                           a null of the column's type
=============================  ==================================================================

A value its column's type cannot hold (SQLite stores anything anywhere) turns that column of the
batch into text, and the dataset's contract decides. With ``query`` the columns have no declared
types; they are typed from the values of the query's first row (a NUMERIC without declared
precision then arrives as text through ADBC, as decimals through SQLAlchemy; the contract
converts either).
"""

from __future__ import annotations

import datetime as dt
import decimal
import zoneinfo
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, quote_plus

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from pydantic import Field, field_validator, model_validator
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchTableError, SQLAlchemyError

from connectors.base import Connector, ConnectorOptions, Cursor, Pulled, rebatch
from onceonly.errors import (
    ConfigurationError,
    ConnectorError,
    SourceRejected,
    SourceSchemaChanged,
    SourceUnavailable,
)

# What a driver's message says when the server refused us rather than could not be reached
# (PostgreSQL: SQLSTATE 28P01/28000/3D000 texts; MySQL/MariaDB: 1044, 1045, 1049, 1142, 1698).
_REFUSED_HINTS = (
    "password authentication failed",
    "authentication failed",
    "denied",
    "no pg_hba.conf entry",
    "does not exist",  # PostgreSQL: role "x" / database "x" does not exist
    "unknown database",
)
_DENIED_HINTS = ("password authentication failed", "authentication failed", "denied")
_MISSING_HINTS = (
    "no such table",
    "does not exist",
    "doesn't exist",
    "(1146",
    "no such column",
    "unknown column",
)


class SqlCursor(ConnectorOptions):
    """The keyset a pull resumes from: rows strictly after the last (column, tiebreak) pair."""

    column: str = Field(min_length=1, description="The watermark column (e.g. updated_at).")
    tiebreak: str = Field(min_length=1, description="A unique key column (e.g. the primary key).")


#: The only query parameters a registration's database URL may carry (options.url).
_URL_PARAMETERS = frozenset({"charset", "sslmode", "service_name", "application_name", "connect_timeout"})


class SqlOptions(ConnectorOptions):
    """Options of the ``sql`` connector type."""

    url: str = Field(
        min_length=1,
        description="SQLAlchemy URL without the password, e.g. postgresql+psycopg://reader@host/db, "
        "mysql+pymysql://reader@host/db, oracle+oracledb://reader@host:1521/?service_name=SVC, "
        "sqlite:///{home}/x.db",
    )
    table: str | None = Field(None, min_length=1, description="The table to pull (or `query`).")
    query: str | None = Field(
        None, min_length=1, description="A SELECT to pull instead of a table (it returns the cursor columns)."
    )
    db_schema: str | None = Field(None, alias="schema", description="The table's schema (optional).")
    cursor: SqlCursor | None = Field(
        None, description="The watermark keyset (required unless change_detection is snapshot)."
    )
    change_detection: Literal["none", "snapshot"] = Field(
        "none",
        description="snapshot: read the whole table each run and yield only new and changed rows "
        "(and report deleted keys), for tables without a usable change timestamp.",
    )
    key: list[str] = Field(
        default_factory=list, description="Snapshot mode: the columns that identify a row."
    )
    source_timezone: str = Field(
        "Asia/Shanghai", description="The IANA time zone naive DATETIME/TIMESTAMP values are in."
    )
    reader: Literal["auto", "sqlalchemy"] = Field(
        "auto", description="auto: ADBC (binary COPY) for PostgreSQL, SQLAlchemy otherwise."
    )

    model_config = ConnectorOptions.model_config | {"populate_by_name": True}

    @field_validator("url")
    @classmethod
    def _plain_url(cls, value: str) -> str:
        # A driver option in the query string reaches the driver as it is: MySQL's local_infile
        # lets the department's server read any local file (the key passphrase), libpq's
        # passfile/sslkey/service name local files, read_default_file quotes one in its error.
        try:
            url = sa.make_url(value)
        except ArgumentError:
            raise ValueError("not a database URL (dialect+driver://user@host:port/database)") from None
        refused = sorted(set(url.query) - _URL_PARAMETERS)
        if refused:
            raise ValueError(
                f"the URL's query parameter(s) {', '.join(refused)} are not allowed (only "
                f"{', '.join(sorted(_URL_PARAMETERS))}): a driver option may read local files or "
                "another database"
            )
        if url.get_backend_name() == "sqlite" and (url.database or "").startswith("file:"):
            raise ValueError("a SQLite URI filename (file:…) is not allowed: give the database file's path")
        return value

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlOptions:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        if self.change_detection == "snapshot":
            if not self.key:
                raise ValueError("change_detection: snapshot needs key: [the columns that identify a row]")
            if self.cursor is not None:
                raise ValueError(
                    "give either cursor (watermark pulls) or change_detection: snapshot, not both"
                )
        else:
            if self.cursor is None:
                raise ValueError(
                    "give cursor: {column, tiebreak} (watermark pulls), or change_detection: snapshot "
                    "with key: [...] for a table without a usable change timestamp"
                )
            if self.key:
                raise ValueError("key is only used with change_detection: snapshot")
        try:
            zoneinfo.ZoneInfo(self.source_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"source_timezone {self.source_timezone!r} is not an IANA time zone") from None
        return self


@dataclass(frozen=True)
class _Columns:
    """The pulled columns: names, the Arrow types rows are read as, and the types delivered."""

    names: list[str]
    read_types: list[pa.DataType | None]  # None: infer from the values
    wi: int  # index of the watermark column (snapshot mode: of the first key column)
    ti: int  # index of the tiebreak column (snapshot mode: of the last key column)
    timezone: str

    def deliver(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Naive timestamps localised to the source's time zone; the rest as read."""
        arrays = []
        for array in batch.columns:
            if pa.types.is_timestamp(array.type) and array.type.tz is None:
                array = pc.assume_timezone(array, self.timezone, ambiguous="earliest", nonexistent="earliest")
            arrays.append(array)
        return pa.RecordBatch.from_arrays(arrays, names=self.names)


class SqlConnector(Connector):
    type_name = "sql"
    options_model = SqlOptions
    opts: SqlOptions
    database_options = ("url",)
    _sampling = False

    def sample(self, rows: int = 5) -> pa.Table:
        self._sampling = True  # snapshot mode: show rows, hash nothing, stage no generation
        try:
            return super().sample(rows)
        finally:
            self._sampling = False

    def _url(self) -> sa.URL:
        try:
            url = sa.make_url(self.opts.url)
        except ArgumentError as exc:
            raise ConfigurationError(f"connector {self.name!r}: options.url is not a database URL") from exc
        password = self.secret("password")
        if not password:
            return url
        # A driver quoting the URL it was given quotes the password URL-encoded: hide that too.
        self._revealed.update({quote(password, safe=""), quote_plus(password)} - {""})
        return url.set(password=password)

    def _engine(self, url: sa.URL) -> sa.Engine:
        database = url.database or ""
        on_disk = url.get_backend_name() == "sqlite" and database not in ("", ":memory:")
        if on_disk and not database.startswith("file:") and not Path(database).is_file():
            # SQLite would create an empty file at the wrong path and then report "no such table".
            raise SourceUnavailable(self.name, f"the SQLite database {database} does not exist")
        try:
            return sa.create_engine(url)
        except (ArgumentError, ImportError) as exc:
            raise ConfigurationError(
                f"connector {self.name!r}: cannot open a {url.drivername!r} database: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _pull(self, cursor: Cursor | None, batch_size: int) -> Iterator[Pulled]:
        url = self._url()
        engine = self._engine(url)
        # ADBC's connection (it reads PostgreSQL's type catalogue first) opens in a worker thread
        # while SQLAlchemy connects and reflects the table.
        adbc = _AdbcConnection(url) if self._reads_adbc(url.get_backend_name()) else None
        try:
            try:
                conn = engine.connect()
            except DBAPIError as exc:
                raise self._translate(exc, url, connecting=True) from exc
            except UnicodeEncodeError as exc:  # PyMySQL sends user and password as Latin-1
                raise ConfigurationError(
                    f"connector {self.name!r}: the {url.drivername} driver cannot send this user name "
                    f"or password ({exc.encoding} only)"
                ) from exc
            with conn:
                if conn.dialect.name in ("mysql", "mariadb"):
                    # TIMESTAMP values are converted to the session's zone: read them as UTC.
                    conn.exec_driver_sql("SET time_zone = '+00:00'")
                source = self._source(conn)
                if self.opts.change_detection == "snapshot":
                    yield from self._snapshot_pull(url, conn, adbc, source, cursor, batch_size)
                    return
                assert self.opts.cursor is not None  # SqlOptions: cursor unless snapshot mode
                columns = self._columns(source, cursor, [self.opts.cursor.column, self.opts.cursor.tiebreak])
                w, t = source.c[self.opts.cursor.column], source.c[self.opts.cursor.tiebreak]
                statements = _statements(source, w, t, cursor)
                for batch, last in self._read(url, conn, adbc, statements, columns, batch_size):
                    yield Pulled(
                        columns.deliver(batch),
                        {
                            "watermark": _encode(last[0]),
                            "tiebreak": _encode(last[1]),
                            "columns": columns.names,
                        },
                    )
        except NoSuchTableError as exc:
            raise SourceSchemaChanged(
                self.name, f"table {exc.args[0]!r} does not exist at the source"
            ) from exc
        except DBAPIError as exc:
            raise self._translate(exc, url, connecting=False) from exc
        except SQLAlchemyError as exc:
            raise SourceUnavailable(self.name, f"database error: {type(exc).__name__}") from exc
        finally:
            if adbc is not None:
                adbc.close()
            engine.dispose()

    def _remaining(self, cursor: Cursor | None) -> int | None:
        """The rows after ``cursor``: one COUNT per keyset statement (an index range scan given
        the recommended index on (watermark, tiebreak)); None in snapshot mode, where a pull
        yields only the rows that changed."""
        if self.opts.change_detection == "snapshot" or self.opts.cursor is None:
            return None
        engine = self._engine(self._url())
        try:
            with engine.connect() as conn:
                source = self._source(conn)
                w, t = source.c[self.opts.cursor.column], source.c[self.opts.cursor.tiebreak]
                return sum(
                    int(
                        conn.execute(
                            sa.select(sa.func.count()).select_from(s.order_by(None).subquery())
                        ).scalar_one()
                    )
                    for s in _statements(source, w, t, cursor)
                )
        finally:
            engine.dispose()

    def _reads_adbc(self, dialect_name: str) -> bool:
        return self.opts.reader == "auto" and dialect_name == "postgresql"

    def _read(
        self,
        url: sa.URL,
        conn: sa.Connection,
        adbc: _AdbcConnection | None,
        statements: Sequence[sa.Select[Any]],
        columns: _Columns,
        batch_size: int,
    ) -> Iterator[tuple[pa.RecordBatch, tuple[Any, Any]]]:
        if self._reads_adbc(conn.dialect.name):
            return self._read_adbc(
                adbc or _AdbcConnection(url), url, conn.dialect, statements, columns, batch_size
            )
        return _read_sqlalchemy(conn, statements, columns, batch_size)

    def _snapshot_pull(
        self,
        url: sa.URL,
        conn: sa.Connection,
        adbc: _AdbcConnection | None,
        source: sa.FromClause,
        cursor: Cursor | None,
        batch_size: int,
    ) -> Iterator[Pulled]:
        """The whole table (or query) each run, compared with the last snapshot by row hash."""
        from connectors.snapshot import SnapshotStore, snapshot_pull

        columns = self._columns(source, None, self.opts.key)

        def whole_source() -> Iterator[pa.RecordBatch]:
            read = self._read(url, conn, adbc, [sa.select(source)], columns, batch_size)
            return (columns.deliver(batch) for batch, _ in read)

        if self._sampling:
            for batch in whole_source():
                yield Pulled(batch, {})
            return
        yield from snapshot_pull(
            whole_source,
            cursor,
            key=self.opts.key,
            store=SnapshotStore((self.home or Path(".")) / "snapshots", self.name),
            batch_size=batch_size,
            connector=self.name,
        )

    def _source(self, conn: sa.Connection) -> sa.FromClause:
        """The table (reflected) or the query (as a subquery typed from its first row)."""
        if self.opts.table is not None:
            return sa.Table(self.opts.table, sa.MetaData(), schema=self.opts.db_schema, autoload_with=conn)
        assert self.opts.query is not None
        text = sa.text(self.opts.query.strip().rstrip(";"))
        probe = text.columns().subquery("oo_source")
        result = conn.execute(sa.select(sa.text("*")).select_from(probe).limit(1))
        names, first = list(result.keys()), result.first()
        values = first if first is not None else [None] * len(names)
        typed = [sa.column(n, _sql_type_of(v)) for n, v in zip(names, values, strict=True)]
        return text.columns(*typed).subquery("oo_source")

    def _columns(self, source: sa.FromClause, cursor: Cursor | None, needed: list[str]) -> _Columns:
        """The source's columns; a column the last pull had and the source lost is a schema change.

        ``needed``: the cursor's (watermark, tiebreak) columns, or the snapshot key.
        """
        what = f"table {self.opts.table!r}" if self.opts.table else "the query's result"
        names = [c.name for c in source.c]
        before = list(cursor.get("columns") or []) if cursor else []
        gone = [n for n in before if n not in names]
        if gone:
            new = [n for n in names if n not in before]
            renamed = f"; new since then: {', '.join(map(repr, new))} (renamed at the source?)" if new else ""
            raise SourceSchemaChanged(
                self.name,
                f"column {', '.join(map(repr, gone))} is no longer in {what} since the last pull{renamed}",
            )
        for col in needed:
            if col not in source.c:
                raise SourceSchemaChanged(self.name, f"column {col!r} is missing from {what}")
        return _Columns(
            names=names,
            read_types=[_arrow_type(c.type) for c in source.c],
            wi=names.index(needed[0]),
            ti=names.index(needed[-1]),
            timezone=self.opts.source_timezone,
        )

    def _read_adbc(
        self,
        adbc: _AdbcConnection,
        url: sa.URL,
        dialect: sa.Dialect,
        statements: Sequence[sa.Select[Any]],
        columns: _Columns,
        batch_size: int,
    ) -> Iterator[tuple[pa.RecordBatch, tuple[Any, Any]]]:
        """PostgreSQL through ADBC: each statement as one ``COPY ... TO STDOUT (FORMAT binary)``.

        ADBC streams the COPY in record batches of a few megabytes; they are read and cast one
        batch ahead in a worker thread (Arrow releases the GIL), so the server's COPY overlaps
        with whatever the caller does with the previous batch (writing Parquet, validating),
        and cut to ``batch_size`` rows here by zero-copy slices, so memory stays bounded by a
        couple of batches, as on the SQLAlchemy path.
        The statements' cursor values are rendered as SQL literals by SQLAlchemy's PostgreSQL
        dialect: ADBC only uses COPY for statements without bound parameters.
        """
        import adbc_driver_manager

        # The statements as SQL text with literal values: the same dialect, but a paramstyle that
        # leaves '%' in a `query` alone; string escaping as the server was found to need it.
        literal = postgresql.psycopg.dialect(paramstyle="named")
        literal._backslash_escapes = getattr(dialect, "_backslash_escapes", False)
        try:
            with adbc.take() as aconn, aconn.cursor() as cur:
                for stmt in statements:
                    stmt = _numeric_as_text(stmt)
                    sql = str(stmt.compile(dialect=literal, compile_kwargs={"literal_binds": True}))
                    cur.execute(sql)
                    reader = cur.fetch_record_batch()
                    reading = _read_ahead(reader, columns)
                    try:
                        for batch in rebatch(reading, batch_size):
                            yield batch, _last_key(batch, columns)
                    finally:
                        reading.close()  # the worker thread is done with the reader before it closes
                        reader.close()
        except adbc_driver_manager.Error as exc:
            message = str(exc).removeprefix("IO: ").removeprefix("[libpq] ").splitlines()[0]
            unavailable = isinstance(exc, adbc_driver_manager.OperationalError)
            raise self._classify(message, url, connecting=False, unavailable=unavailable) from exc

    def _translate(self, exc: DBAPIError, url: sa.URL, *, connecting: bool) -> ConnectorError:
        message = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
        unavailable = exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError)
        return self._classify(message, url, connecting=connecting, unavailable=unavailable)

    def _classify(self, message: str, url: sa.URL, *, connecting: bool, unavailable: bool) -> ConnectorError:
        lowered = message.lower()
        where = url.render_as_string(hide_password=True)
        if connecting:
            # Nothing is read yet, so "does not exist" names a role or a database, not a table.
            if any(h in lowered for h in _REFUSED_HINTS):
                return SourceRejected(self.name, f"the database refused the connection ({where}): {message}")
            return SourceUnavailable(self.name, f"cannot reach the database ({where}): {message}")
        if any(h in lowered for h in _DENIED_HINTS):
            return SourceRejected(self.name, f"the database refused our query ({where}): {message}")
        if any(h in lowered for h in _MISSING_HINTS):
            return SourceSchemaChanged(self.name, f"the source schema changed: {message}")
        if unavailable:
            return SourceUnavailable(self.name, f"lost the database ({where}): {message}")
        return SourceRejected(self.name, f"the database rejected the query: {message}")


class _AdbcConnection:
    """An ADBC PostgreSQL connection being opened in a worker thread.

    ``take`` waits for it (raising what connecting raised) and hands it over; a second ``take``
    opens another. ``close`` closes one nobody took, and swallows a failed attempt's error:
    the pull reports its own.
    """

    def __init__(self, url: sa.URL) -> None:
        self._uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oo-sql-connect")
        self._pending: Future[Any] | None = pool.submit(self._connect)
        pool.shutdown(wait=False)  # the thread ends when the connection is open (or failed)

    def _connect(self) -> Any:
        import adbc_driver_postgresql.dbapi

        return adbc_driver_postgresql.dbapi.connect(self._uri)

    def take(self) -> Any:
        pending, self._pending = self._pending, None
        return self._connect() if pending is None else pending.result()

    def close(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending.exception() is None:
            pending.result().close()


def _read_sqlalchemy(
    conn: sa.Connection, statements: Sequence[sa.Select[Any]], columns: _Columns, batch_size: int
) -> Iterator[tuple[pa.RecordBatch, tuple[Any, Any]]]:
    """Any database: a server-side cursor (``stream_results``), rows to Arrow column by column."""
    pending: list[Sequence[Any]] = []
    for stmt in statements:
        result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(stmt)
        for rows in result.partitions(batch_size):
            pending.extend(rows)
            while len(pending) >= batch_size:
                chunk, pending = pending[:batch_size], pending[batch_size:]
                yield _to_batch(columns, chunk), (chunk[-1][columns.wi], chunk[-1][columns.ti])
    if pending:
        yield _to_batch(columns, pending), (pending[-1][columns.wi], pending[-1][columns.ti])


def _cast(batch: pa.RecordBatch, columns: _Columns) -> pa.RecordBatch:
    """An ADBC batch in the types the SQLAlchemy reader produces."""
    arrays = []
    for array, target in zip(batch.columns, columns.read_types, strict=True):
        if isinstance(array.type, pa.ExtensionType):  # NUMERIC arrives as opaque text
            array = array.storage
        if target is not None and array.type != target:
            array = array.cast(target)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=columns.names)


def _read_ahead(reader: pa.RecordBatchReader, columns: _Columns) -> Generator[pa.RecordBatch, None, None]:
    """``reader``'s batches cast to ``columns``' types, the next one read in a worker thread.

    At most one batch is read ahead; closing the generator waits for that read to finish.
    """

    def read() -> pa.RecordBatch | None:
        try:
            return _cast(reader.read_next_batch(), columns)
        except StopIteration:
            return None

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="oo-sql-read") as pool:
        ahead = pool.submit(read)
        while (batch := ahead.result()) is not None:
            ahead = pool.submit(read)
            yield batch


def _numeric_as_text(stmt: sa.Select[Any]) -> sa.Select[Any]:
    """``stmt`` with its NUMERIC columns sent as text (``CAST(x AS TEXT) AS x``).

    ADBC turns binary NUMERIC into Arrow text itself, digit by digit: for a table of 11
    columns with one NUMERIC that was 0.2 s of ADBC's 0.7 s of CPU per million rows. The
    server's text output is exact too and costs the client a plain string copy; ``_cast``
    makes decimals of either.
    WHERE and ORDER BY still compare the columns themselves.
    """
    selected = list(stmt.selected_columns)
    numeric = [isinstance(c.type, sa.Numeric) and not isinstance(c.type, sa.Float) for c in selected]
    if not any(numeric):
        return stmt
    return stmt.with_only_columns(
        *(
            sa.cast(c, sa.Text()).label(c.name) if is_numeric else c
            for c, is_numeric in zip(selected, numeric, strict=True)
        )
    )


def _last_key(batch: pa.RecordBatch, columns: _Columns) -> tuple[Any, Any]:
    return batch.column(columns.wi)[-1].as_py(), batch.column(columns.ti)[-1].as_py()


def _statements(
    table: sa.FromClause, w: sa.ColumnElement[Any], t: sa.ColumnElement[Any], cursor: Cursor | None
) -> list[sa.Select[Any]]:
    """The queries after ``cursor``, in pull order: NULL watermarks (by tiebreak) first."""
    select = sa.select(table)
    nulls, values = select.where(w.is_(None)).order_by(t), select.where(w.is_not(None)).order_by(w, t)
    if not cursor:
        return [nulls, values]
    last_w, last_t = _decode(cursor["watermark"]), _decode(cursor["tiebreak"])
    if last_w is None:
        return [nulls.where(t > last_t), values]
    return [values.where(sa.or_(w > last_w, sa.and_(w == last_w, t > last_t)))]


def _sql_type_of(value: Any) -> sa.types.TypeEngine[Any]:
    """The SQL type of a query column, judged from one value (NullType: infer per batch)."""
    if isinstance(value, bool):
        return sa.Boolean()
    if isinstance(value, int):
        return sa.BigInteger()
    if isinstance(value, float):
        return sa.Float()
    if isinstance(value, decimal.Decimal):
        return sa.Numeric(asdecimal=True)
    if isinstance(value, dt.datetime):
        return sa.DateTime(timezone=value.tzinfo is not None)
    if isinstance(value, dt.date):
        return sa.Date()
    if isinstance(value, str):
        return sa.String()
    if isinstance(value, bytes | bytearray | memoryview):
        return sa.LargeBinary()
    return sa.types.NullType()


def _arrow_type(sql_type: sa.types.TypeEngine[Any]) -> pa.DataType | None:
    """The Arrow type rows of a declared SQL type are read as; None: infer from the values."""
    if isinstance(sql_type, sa.Boolean):
        return pa.bool_()
    if isinstance(sql_type, sa.Integer):
        return pa.int64()
    if isinstance(sql_type, sa.Float) or (isinstance(sql_type, sa.Numeric) and not sql_type.asdecimal):
        return pa.float64()
    if isinstance(sql_type, sa.Numeric):
        precision, scale = sql_type.precision, sql_type.scale
        if precision is None or scale is None or not 0 <= scale <= precision:
            return None  # NUMERIC without (p,s): no fixed Arrow type holds every value
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    if isinstance(sql_type, mysql.TIMESTAMP):
        return pa.timestamp("us", tz="UTC")  # read in a UTC session, see _pull
    if isinstance(sql_type, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if sql_type.timezone else None)
    if isinstance(sql_type, sa.Date):
        return pa.date32()
    if isinstance(sql_type, sa.Time):
        return pa.time64("us")
    if isinstance(sql_type, sa.LargeBinary | sa.types._Binary):
        return pa.binary()
    if isinstance(sql_type, sa.String):  # VARCHAR, TEXT, CHAR, ENUM
        return pa.string()
    return None


def _to_batch(columns: _Columns, rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    values_by_column = list(zip(*rows, strict=True)) if rows else [() for _ in columns.names]
    arrays = []
    for values, arrow_type in zip(values_by_column, columns.read_types, strict=True):
        try:
            arrays.append(pa.array(values, arrow_type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # SQLite columns may hold any type; keep the text and let the contract decide.
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=columns.names)


def _encode(value: Any) -> dict[str, Any]:
    """A JSON-able cursor value that round-trips to the same Python type."""
    if isinstance(value, dt.datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, int | float | str) or value is None:
        return {"type": type(value).__name__, "value": value}
    return {"type": "str", "value": str(value)}


def _decode(encoded: dict[str, Any]) -> Any:
    kind, value = encoded["type"], encoded["value"]
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "decimal":
        return decimal.Decimal(value)
    return value


__all__ = [
    "SqlConnector",
    "SqlCursor",
    "SqlOptions",
]
