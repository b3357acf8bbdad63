"""``sql`` connector: any SQLAlchemy database, pulled incrementally by watermark.

Example registration options::

    url: postgresql+psycopg://onceonly_reader@db.gongan.local/huji   # password from secrets.password
    table: household_member
    schema: public                                # optional
    cursor: {column: updated_at, tiebreak: id}    # keyset: (updated_at, id) > (last, last)

Rows come in ``(cursor column, tiebreak)`` order and the next pull asks for rows strictly after
the last landed pair, so rows sharing one timestamp are neither lost nor doubled. Rows whose
watermark is NULL are read first, by tiebreak, in a query of their own: databases disagree on
where NULL sorts and ``w > NULL`` is never true, so a NULL in the cursor would otherwise hide
every later row. (A NULL-watermark row added after a pull has moved past them is not seen; a
watermark column should be NOT NULL.) The result is streamed (server-side cursor), so memory
is bounded by the batch size.

Columns arrive typed from the table's declared SQL types, not from the values of one batch:
DECIMAL(p,s) as ``decimal128(p,s)``, DATE as ``date32``, TIMESTAMP as ``timestamp[us]`` (with
time zone: UTC), so every batch of a table has the same schema, all-NULL batches included. A
value its column's type cannot hold (SQLite stores anything anywhere) turns that column of the
batch into text, and the dataset's contract decides.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from pydantic import Field, model_validator
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchTableError, SQLAlchemyError

from connectors.base import Connector, ConnectorOptions, Cursor, Pulled
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
    cursor: SqlCursor

    model_config = ConnectorOptions.model_config | {"populate_by_name": True}

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlOptions:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        return self


class SqlConnector(Connector):
    type_name = "sql"
    options_model = SqlOptions
    opts: SqlOptions

    def _url(self) -> sa.URL:
        try:
            url = sa.make_url(self.options["url"])
        except ArgumentError as exc:
            raise ConfigurationError(f"connector {self.name!r}: options.url is not a database URL") from exc
        password = self.secret("password")
        return url.set(password=password) if password else url

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
        watermark_col = self.options["cursor"]["column"]
        tiebreak_col = self.options["cursor"]["tiebreak"]
        url = self._url()
        engine = self._engine(url)
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
                table = self._reflect(conn)
                for col in (watermark_col, tiebreak_col):
                    if col not in table.c:
                        raise SourceSchemaChanged(
                            self.name, f"column {col!r} is missing from table {table.name!r}"
                        )
                w, t = table.c[watermark_col], table.c[tiebreak_col]
                types = [_arrow_type(c.type) for c in table.c]
                names = [c.name for c in table.c]
                wi, ti = names.index(w.name), names.index(t.name)
                pending: list[Sequence[Any]] = []
                for stmt in _statements(table, w, t, cursor):
                    result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(stmt)
                    for rows in result.partitions(batch_size):
                        pending.extend(rows)
                        while len(pending) >= batch_size:
                            chunk, pending = pending[:batch_size], pending[batch_size:]
                            yield _pulled(names, types, chunk, wi, ti)
                if pending:
                    yield _pulled(names, types, pending, wi, ti)
        except NoSuchTableError as exc:
            raise SourceSchemaChanged(
                self.name, f"table {exc.args[0]!r} does not exist at the source"
            ) from exc
        except DBAPIError as exc:
            raise self._translate(exc, url, connecting=False) from exc
        except SQLAlchemyError as exc:
            raise SourceUnavailable(self.name, f"database error: {type(exc).__name__}") from exc
        finally:
            engine.dispose()

    def _reflect(self, conn: sa.Connection) -> sa.Table:
        return sa.Table(
            self.options["table"], sa.MetaData(), schema=self.options.get("schema"), autoload_with=conn
        )

    def _translate(self, exc: DBAPIError, url: sa.URL, *, connecting: bool) -> ConnectorError:
        message = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
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
        if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError):
            return SourceUnavailable(self.name, f"lost the database ({where}): {message}")
        return SourceRejected(self.name, f"the database rejected the query: {message}")


def _statements(
    table: sa.Table, w: sa.Column[Any], t: sa.Column[Any], cursor: Cursor | None
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


def _arrow_type(sql_type: sa.types.TypeEngine[Any]) -> pa.DataType | None:
    """The Arrow type of a declared SQL type; None: infer from the values."""
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
    if isinstance(sql_type, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if sql_type.timezone else None)
    if isinstance(sql_type, sa.Date):
        return pa.date32()
    if isinstance(sql_type, sa.Time):
        return pa.time64("us")
    if isinstance(sql_type, sa.LargeBinary):
        return pa.binary()
    if isinstance(sql_type, sa.String):  # VARCHAR, TEXT, CHAR, ENUM
        return pa.string()
    return None


def _pulled(
    names: Sequence[str], types: Sequence[pa.DataType | None], rows: Sequence[Sequence[Any]], wi: int, ti: int
) -> Pulled:
    last = rows[-1]
    return Pulled(
        _to_batch(names, types, rows), {"watermark": _encode(last[wi]), "tiebreak": _encode(last[ti])}
    )


def _to_batch(
    names: Sequence[str], types: Sequence[pa.DataType | None], rows: Sequence[Sequence[Any]]
) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for values, arrow_type in zip(columns, types, strict=True):
        try:
            arrays.append(pa.array(values, arrow_type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # SQLite columns may hold any type; keep the text and let the contract decide.
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=list(names))


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


__all__ = ["SqlConnector"]
