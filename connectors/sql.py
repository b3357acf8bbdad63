"""``sql`` connector: any SQLAlchemy database, pulled incrementally by watermark.

Example registration options::

    url: postgresql+psycopg://onceonly_reader@db.gongan.local/huji   # password from secrets.password
    table: household_member
    schema: public                                # optional
    cursor: {column: updated_at, tiebreak: id}    # keyset: (updated_at, id) > (last, last)

Rows come in ``(cursor column, tiebreak)`` order and the next pull asks for rows strictly after
the last landed pair, so rows sharing one timestamp are neither lost nor doubled. The result
is streamed (server-side cursor), so memory is bounded by the batch size.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchTableError, SQLAlchemyError

from connectors.base import Connector, Cursor, Pulled
from onceonly.errors import (
    ConfigurationError,
    SourceRejected,
    SourceSchemaChanged,
    SourceUnavailable,
)

_AUTH_HINTS = ("password authentication failed", "access denied", "authentication failed", "(1045")
_MISSING_HINTS = ("no such table", "does not exist", "doesn't exist", "(1146", "no such column", "unknown column")


class SqlConnector(Connector):
    type_name = "sql"

    def validate_options(self) -> None:
        self.require("url", "table")
        cursor = self.options.get("cursor") or {}
        if not cursor.get("column") or not cursor.get("tiebreak"):
            raise ConfigurationError(
                f"connector {self.name!r}: options.cursor needs `column` (watermark) and `tiebreak` (a unique key)"
            )

    def _url(self) -> sa.URL:
        try:
            url = sa.make_url(self.options["url"])
        except ArgumentError as exc:
            raise ConfigurationError(f"connector {self.name!r}: options.url is not a database URL") from exc
        password = self.secret("password")
        return url.set(password=password) if password else url

    def _pull(self, cursor: Cursor | None, batch_size: int) -> Iterator[Pulled]:
        watermark_col = self.options["cursor"]["column"]
        tiebreak_col = self.options["cursor"]["tiebreak"]
        engine = sa.create_engine(self._url())
        try:
            with engine.connect() as conn:
                table = self._reflect(conn)
                for col in (watermark_col, tiebreak_col):
                    if col not in table.c:
                        raise SourceSchemaChanged(self.name, f"column {col!r} is missing from table {table.name!r}")
                w, t = table.c[watermark_col], table.c[tiebreak_col]
                stmt = sa.select(table).order_by(w, t)
                if cursor:
                    last_w = _decode(cursor["watermark"])
                    last_t = _decode(cursor["tiebreak"])
                    stmt = stmt.where(sa.or_(w > last_w, sa.and_(w == last_w, t > last_t)))
                result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(stmt)
                names = list(result.keys())
                wi, ti = names.index(watermark_col), names.index(tiebreak_col)
                for rows in result.partitions(batch_size):
                    batch = _to_batch(names, rows)
                    last = rows[-1]
                    yield Pulled(batch, {"watermark": _encode(last[wi]), "tiebreak": _encode(last[ti])})
        except NoSuchTableError as exc:
            raise SourceSchemaChanged(self.name, f"table {exc.args[0]!r} does not exist at the source") from exc
        except DBAPIError as exc:
            raise self._translate(exc) from exc
        except SQLAlchemyError as exc:
            raise SourceUnavailable(self.name, f"database error: {type(exc).__name__}") from exc
        finally:
            engine.dispose()

    def _reflect(self, conn: sa.Connection) -> sa.Table:
        return sa.Table(self.options["table"], sa.MetaData(), schema=self.options.get("schema"), autoload_with=conn)

    def _translate(self, exc: DBAPIError) -> Exception:
        message = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
        lowered = message.lower()
        host = self._url().render_as_string(hide_password=True)
        if any(h in lowered for h in _AUTH_HINTS):
            return SourceRejected(self.name, f"the database refused our credentials ({host}): {message}")
        if any(h in lowered for h in _MISSING_HINTS):
            return SourceSchemaChanged(self.name, f"the source schema changed: {message}")
        if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError):
            return SourceUnavailable(self.name, f"cannot reach the database ({host}): {message}")
        return SourceRejected(self.name, f"the database rejected the query: {message}")


def _to_batch(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for values in columns:
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # SQLite columns may mix types; keep the text and let the contract decide.
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
