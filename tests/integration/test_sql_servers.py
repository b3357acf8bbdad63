"""The ``sql`` connector against the real PostgreSQL and MariaDB servers on this machine.

Each test creates its own uniquely named table (and, on PostgreSQL, schema) and drops it.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from connectors import EnvironmentSecrets, Pulled, Registration, SourcePaths, create_connector
from connectors.base import Connector, Cursor
from onceonly.errors import ConfigurationError, SourceRejected, SourceSchemaChanged, SourceUnavailable

pytestmark = pytest.mark.integration

BASE = dt.datetime(2026, 11, 20, 8, 0, 0)
CURSOR = {"column": "updated_at", "tiebreak": "id"}
UTC = dt.UTC
SHANGHAI = pa.timestamp("us", tz="Asia/Shanghai")  # naive DATETIME/TIMESTAMP: the department's clock


def _source(
    url: str,
    table: str | None,
    *,
    schema: str | None = None,
    cursor: dict[str, str] = CURSOR,
    options: dict[str, Any] | None = None,
    **reg: Any,
) -> Connector:
    options = {"url": url, "cursor": cursor, **({"table": table} if table else {}), **(options or {})}
    if schema:
        options["schema"] = schema
    registration = Registration(
        name=reg.get("name", "gongan-test"),
        department="测试",
        dataset="household",
        type="sql",
        options=options,
        secrets=reg.get("secrets", {}),
    )
    return create_connector(
        registration,
        home=Path("/nonexistent"),
        secrets=EnvironmentSecrets(reg.get("env", {})),
        paths=SourcePaths.build(["/"]),
    )


def _drain(source: Connector, cursor: Cursor | None = None, batch_size: int = 7) -> list[Pulled]:
    out = []
    for p in source.pull(cursor, batch_size):
        assert isinstance(p.batch, pa.RecordBatch) and 0 < p.batch.num_rows <= batch_size
        out.append(Pulled(p.batch, json.loads(json.dumps(p.cursor))))
    return out


def _ids(pulled: list[Pulled]) -> list[int]:
    return [v for p in pulled for v in p.batch.column("id").to_pylist()]


@pytest.fixture
def table(server: str) -> Iterator[tuple[sa.Engine, sa.Table]]:
    """A fresh table ``oo_conn_<random>`` on the server, dropped afterwards."""
    engine = sa.create_engine(server)
    metadata = sa.MetaData()
    tbl = sa.Table(
        f"oo_conn_{uuid.uuid4().hex[:10]}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("changed_tz", sa.DateTime(timezone=True)),  # TIMESTAMPTZ on PostgreSQL
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("born", sa.Date),
        sa.Column("name", sa.String(50)),
        sa.Column("note", sa.Text),
    )
    metadata.create_all(engine)
    try:
        yield engine, tbl
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def _rows(ids: range, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "updated_at": BASE + dt.timedelta(minutes=rng.randrange(12)),
            "changed_tz": dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))),
            "amount": Decimal("1234567890.25") if i % 2 else Decimal("0.50"),
            "born": dt.date(1990, 1, 1) + dt.timedelta(days=i),
            "name": f"名字{i}",
            "note": None,
        }
        for i in ids
    ]


def _order(rows: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in sorted(rows, key=lambda r: (r["updated_at"], r["id"]))]


def test_keyset_pulls_are_exactly_once_across_batches_resumes_and_later_rows(
    server: str, table: tuple[sa.Engine, sa.Table]
) -> None:
    engine, tbl = table
    rows = _rows(range(1, 101))
    with engine.begin() as conn:
        conn.execute(sa.insert(tbl), rows)
    source = _source(server, tbl.name)
    order = _order(rows)

    pulled = _drain(source, None, batch_size=7)
    assert [p.batch.num_rows for p in pulled] == [7] * 14 + [2]
    assert _ids(pulled) == order
    for k, p in enumerate(pulled):
        assert _ids(_drain(source, p.cursor)) == order[(k + 1) * 7 :], f"resuming after batch {k}"

    last = max(r["updated_at"] for r in rows)
    later = _rows(range(101, 103))
    later[0]["updated_at"] = last  # the same timestamp as the watermark, a higher id
    later[1]["updated_at"] = last + dt.timedelta(seconds=1)
    with engine.begin() as conn:
        conn.execute(sa.insert(tbl), later)
    again = _drain(source, pulled[-1].cursor)
    assert _ids(again) == [101, 102]
    assert _drain(source, again[-1].cursor) == []


def test_columns_arrive_as_their_declared_arrow_types(server: str, table: tuple[sa.Engine, sa.Table]) -> None:
    engine, tbl = table
    rows = _rows(range(1, 7))
    for r in rows[3:]:  # the second batch holds only NULLs in these columns
        r.update(changed_tz=None, amount=None, born=None, name=None)
    for i, r in enumerate(rows):
        r["updated_at"] = BASE + dt.timedelta(minutes=i)
    with engine.begin() as conn:
        conn.execute(sa.insert(tbl), rows)

    pulled = _drain(_source(server, tbl.name), None, batch_size=3)
    postgres = engine.dialect.name == "postgresql"
    expected = pa.schema(
        [
            ("id", pa.int64()),
            ("updated_at", SHANGHAI),
            ("changed_tz", pa.timestamp("us", tz="UTC") if postgres else SHANGHAI),  # MariaDB: DATETIME
            ("amount", pa.decimal128(12, 2)),
            ("born", pa.date32()),
            ("name", pa.string()),
            ("note", pa.string()),
        ]
    )
    assert [p.batch.schema for p in pulled] == [expected, expected]
    first = pulled[0].batch.to_pylist()[0]
    assert first["amount"] == Decimal("1234567890.25")
    assert first["born"] == dt.date(1990, 1, 2)
    assert first["name"] == "名字1"
    if postgres:  # the same instant, whatever the session's time zone
        assert first["changed_tz"] == dt.datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    assert pulled[1].batch.column("amount").null_count == 3


def test_missing_table_and_missing_cursor_column_are_schema_changes(
    server: str, table: tuple[sa.Engine, sa.Table]
) -> None:
    _, tbl = table
    with pytest.raises(SourceSchemaChanged, match="oo_conn_missing"):
        _drain(_source(server, "oo_conn_missing"))
    with pytest.raises(SourceSchemaChanged, match="changed_at"):
        _drain(_source(server, tbl.name, cursor={"column": "changed_at", "tiebreak": "id"}))


def test_a_table_in_a_named_postgresql_schema(postgres_url: str) -> None:
    schema = f"oo_schema_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            conn.exec_driver_sql(f'CREATE TABLE "{schema}".member (id int PRIMARY KEY, updated_at timestamp)')
            conn.exec_driver_sql(f"INSERT INTO \"{schema}\".member VALUES (1, '2026-11-20 08:00'), (2, NULL)")
        pulled = _drain(_source(postgres_url, "member", schema=schema))
        assert _ids(pulled) == [2, 1]  # NULL watermarks first, on PostgreSQL too
        with pytest.raises(SourceSchemaChanged):
            _drain(_source(postgres_url, "member"))  # not in the default schema
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


def _maria_stranger(mariadb_url: str, password: str) -> Connector:
    url = sa.make_url(mariadb_url).set(username=f"nobody_{uuid.uuid4().hex[:6]}", password=None)
    return _source(
        url.render_as_string(hide_password=False),
        "household_member",
        name="gongan-maria",
        secrets={"password": "ONCEONLY_SECRET_GONGAN_MARIA_PASSWORD"},
        env={"ONCEONLY_SECRET_GONGAN_MARIA_PASSWORD": password},
    )


def test_unknown_mariadb_user_is_rejected_without_the_password(mariadb_url: str) -> None:
    password = "Wr0ng-Pass-4-gongan"
    with pytest.raises(SourceRejected) as info:
        _drain(_maria_stranger(mariadb_url, password))
    assert "gongan-maria" in str(info.value) and "denied" in str(info.value).lower()
    assert password not in str(info.value)


def test_a_password_pymysql_cannot_send_is_a_configuration_error(mariadb_url: str) -> None:
    password = "Пароль-不是-latin1"
    with pytest.raises(ConfigurationError, match="latin-1") as info:
        _drain(_maria_stranger(mariadb_url, password))
    assert password not in str(info.value)


def test_unknown_postgresql_role_is_rejected_not_a_schema_change(postgres_url: str) -> None:
    password = "pg-secret-9876"
    url = sa.make_url(postgres_url).set(username=f"nobody_{uuid.uuid4().hex[:6]}")
    source = _source(
        url.render_as_string(hide_password=False),
        "household_member",
        secrets={"password": "ONCEONLY_SECRET_GONGAN_TEST_PASSWORD"},
        env={"ONCEONLY_SECRET_GONGAN_TEST_PASSWORD": password},
    )
    with pytest.raises(SourceRejected, match="refused the connection") as info:
        _drain(source)
    assert password not in str(info.value)


def test_unknown_database_is_rejected(server: str) -> None:
    url = sa.make_url(server).set(database=f"oo_nodb_{uuid.uuid4().hex[:6]}")
    with pytest.raises(SourceRejected, match="refused the connection"):
        _drain(_source(url.render_as_string(hide_password=False), "household_member"))


def test_no_error_message_carries_a_secret_value_even_when_the_server_quotes_it(postgres_url: str) -> None:
    # The server quotes the role name; here the role name is also the password.
    stranger = f"nobody_{uuid.uuid4().hex[:6]}"
    url = sa.make_url(postgres_url).set(username=stranger).render_as_string(hide_password=False)
    source = _source(
        url,
        "t",
        secrets={"password": "ONCEONLY_SECRET_GONGAN_TEST_PASSWORD"},
        env={"ONCEONLY_SECRET_GONGAN_TEST_PASSWORD": stranger},
    )
    with pytest.raises(SourceRejected) as info:
        _drain(source)
    assert stranger not in str(info.value) and 'role "***" does not exist' in str(info.value)


@pytest.fixture
def typed(server: str) -> Iterator[tuple[sa.Engine, sa.Table]]:
    """A table with one column of each type the type mapping promises, dropped afterwards."""
    engine = sa.create_engine(server)
    postgres = engine.dialect.name == "postgresql"
    metadata = sa.MetaData()
    tbl = sa.Table(
        f"oo_types_{uuid.uuid4().hex[:10]}",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("updated_at", sa.DateTime),  # naive: Asia/Shanghai wall time
        # An instant: TIMESTAMPTZ on PostgreSQL, TIMESTAMP (stored as UTC) on MariaDB.
        sa.Column("stamped", sa.DateTime(timezone=True) if postgres else sa.dialects.mysql.TIMESTAMP(fsp=6)),
        sa.Column("amount", sa.Numeric(18, 4)),
        sa.Column("born", sa.Date),
        sa.Column("id_number", sa.CHAR(18)),
        sa.Column("name", sa.String(50)),
        sa.Column("photo", sa.LargeBinary),  # BYTEA / BLOB
        sa.Column("score", sa.Float),
    )
    metadata.create_all(engine)
    try:
        yield engine, tbl
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_each_sql_type_maps_to_its_documented_arrow_type(
    server: str, typed: tuple[sa.Engine, sa.Table]
) -> None:
    engine, tbl = typed
    beijing = dt.timezone(dt.timedelta(hours=8))
    with engine.begin() as conn:
        if engine.dialect.name != "postgresql":
            conn.exec_driver_sql("SET time_zone = '+08:00'")  # a writer on the department's clock
        conn.execute(
            sa.insert(tbl),
            [
                {
                    "id": 1,
                    "updated_at": dt.datetime(2026, 11, 20, 8, 30, 0),
                    "stamped": dt.datetime(2026, 11, 20, 8, 0, tzinfo=beijing)
                    if engine.dialect.name == "postgresql"
                    else dt.datetime(2026, 11, 20, 8, 0),  # MariaDB TIMESTAMP: session time, +08:00
                    "amount": Decimal("12345678901234.5678"),
                    "born": dt.date(1990, 2, 28),
                    "id_number": "12010419900228001X",
                    "name": "张三",
                    "photo": b"\x00\xff\x89PNG",
                    "score": 0.5,
                },
            ],
        )
        conn.execute(sa.insert(tbl), [{"id": 2, "updated_at": dt.datetime(2026, 11, 20, 9, 0)}])  # NULLs
    (pulled,) = _drain(_source(server, tbl.name), batch_size=10)
    assert pulled.batch.schema == pa.schema(
        [
            ("id", pa.int64()),
            ("updated_at", SHANGHAI),
            ("stamped", pa.timestamp("us", tz="UTC")),
            ("amount", pa.decimal128(18, 4)),
            ("born", pa.date32()),
            ("id_number", pa.string()),
            ("name", pa.string()),
            ("photo", pa.binary()),
            ("score", pa.float64()),
        ]
    )
    first, second = pulled.batch.to_pylist()
    # 08:30 on the department's clock is 00:30 UTC.
    assert first["updated_at"] == dt.datetime(2026, 11, 20, 0, 30, 0, tzinfo=UTC)
    assert first["stamped"] == dt.datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    assert first["amount"] == Decimal("12345678901234.5678")
    assert first["born"] == dt.date(1990, 2, 28)
    assert first["id_number"] == "12010419900228001X" and first["name"] == "张三"
    assert first["photo"] == b"\x00\xff\x89PNG" and first["score"] == 0.5
    assert all(second[k] is None for k in second if k not in ("id", "updated_at"))
    # The cursor keeps the source's own (naive) value, so the next pull compares like with like.
    assert pulled.cursor["watermark"] == {"type": "datetime", "value": "2026-11-20T09:00:00"}


def test_hundreds_of_rows_sharing_one_timestamp_across_batch_boundaries(
    server: str, table: tuple[sa.Engine, sa.Table]
) -> None:
    engine, tbl = table
    rows = _rows(range(1, 301))
    for r in rows:
        r["updated_at"] = BASE  # every row: the same timestamp
    rng = random.Random(5)
    rng.shuffle(rows)
    with engine.begin() as conn:
        conn.execute(sa.insert(tbl), rows)
    source = _source(server, tbl.name)

    pulled = _drain(source, None, batch_size=7)
    assert _ids(pulled) == list(range(1, 301))
    for k in (0, 1, 20, 41):  # resuming inside the group neither loses nor repeats a row
        assert _ids(_drain(source, pulled[k].cursor)) == list(range((k + 1) * 7 + 1, 301))
    with engine.begin() as conn:  # a late row with the same timestamp and a higher id is still seen
        conn.execute(sa.insert(tbl), [{**_rows(range(301, 302))[0], "updated_at": BASE}])
    assert _ids(_drain(source, pulled[-1].cursor)) == [301]


def test_a_query_instead_of_a_table(server: str, table: tuple[sa.Engine, sa.Table]) -> None:
    engine, tbl = table
    rows = _rows(range(1, 31))
    with engine.begin() as conn:
        conn.execute(sa.insert(tbl), rows)
    query = f"SELECT id, updated_at, name, amount FROM {tbl.name} WHERE id % 2 = 0"
    source = _source(server, None, options={"query": query})

    pulled = _drain(source, None, batch_size=4)
    even = [r for r in rows if r["id"] % 2 == 0]
    assert _ids(pulled) == _order(even)
    assert pulled[0].batch.schema.names == ["id", "updated_at", "name", "amount"]
    assert pulled[0].batch.schema.field("updated_at").type == SHANGHAI
    assert _ids(_drain(source, pulled[1].cursor, batch_size=4)) == _order(even)[8:]


def test_adbc_and_sqlalchemy_readers_give_equal_tables_and_cursors(
    postgres_url: str, typed_pg: tuple[sa.Engine, sa.Table]
) -> None:
    engine, tbl = typed_pg
    rng = random.Random(11)
    rows = [
        {
            "id": i,
            "updated_at": BASE + dt.timedelta(seconds=rng.randrange(40)),  # ~25 rows per timestamp
            "stamped": None if i % 7 == 0 else dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(hours=i),
            "amount": None if i % 5 == 0 else Decimal(i) / 8,
            "born": dt.date(1950, 1, 1) + dt.timedelta(days=i),
            "id_number": f"{i:018d}",
            "name": None if i % 3 == 0 else f"名字{i}",
            "photo": bytes([i % 256, 0, 255]),
            "score": i / 3,
        }
        for i in range(1, 1001)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(tbl), rows)
    fast = _source(postgres_url, tbl.name)
    slow = _source(postgres_url, tbl.name, options={"reader": "sqlalchemy"})

    fast_pulled, slow_pulled = _drain(fast, None, batch_size=97), _drain(slow, None, batch_size=97)
    assert [p.cursor for p in fast_pulled] == [p.cursor for p in slow_pulled]
    assert [p.batch for p in fast_pulled] == [p.batch for p in slow_pulled]
    middle = fast_pulled[4].cursor
    assert pa.Table.from_batches([p.batch for p in _drain(fast, middle, 50)]) == pa.Table.from_batches(
        [p.batch for p in _drain(slow, middle, 50)]
    )


@pytest.fixture
def typed_pg(postgres_url: str) -> Iterator[tuple[sa.Engine, sa.Table]]:
    engine = sa.create_engine(postgres_url)
    metadata = sa.MetaData()
    tbl = sa.Table(
        f"oo_fast_{uuid.uuid4().hex[:10]}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("stamped", sa.DateTime(timezone=True)),
        sa.Column("amount", sa.Numeric(12, 3)),
        sa.Column("born", sa.Date),
        sa.Column("id_number", sa.CHAR(18)),
        sa.Column("name", sa.Text),
        sa.Column("photo", sa.LargeBinary),
        sa.Column("score", sa.Float),
    )
    metadata.create_all(engine)
    try:
        yield engine, tbl
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_numeric_columns_keep_exact_values_as_key_and_payload_through_adbc(postgres_url: str) -> None:
    """ADBC reads NUMERIC as the server's text (connectors.sql._numeric_as_text): the values,
    a NUMERIC tiebreak's ORDER BY and resume, and NUMERIC without precision stay as before."""
    engine = sa.create_engine(postgres_url)
    name = f"oo_num_{uuid.uuid4().hex[:10]}"
    metadata = sa.MetaData()
    tbl = sa.Table(
        name,
        metadata,
        sa.Column("code", sa.Numeric(20, 3), primary_key=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("big", sa.Numeric(40, 5)),
        sa.Column("loose", sa.Numeric),
    )
    metadata.create_all(engine)
    try:
        # Text order of the codes differs from numeric order: -10 < -9 < 2 < 10 < 1e16.
        codes = [Decimal(c) for c in ("10.000", "-9.500", "2.125", "-10.001", "12345678901234567.891")]
        with engine.begin() as conn:
            conn.execute(
                sa.insert(tbl),
                [
                    {"code": c, "updated_at": BASE, "big": c * 10**20 if i % 2 else None, "loose": c / 7}
                    for i, c in enumerate(codes)
                ],
            )
        cursor = {"column": "updated_at", "tiebreak": "code"}
        fast = _source(postgres_url, name, cursor=cursor)
        slow = _source(postgres_url, name, cursor=cursor, options={"reader": "sqlalchemy"})
        pulled = _drain(fast, None, batch_size=2)
        got = pa.Table.from_batches([p.batch for p in pulled])
        assert got.column("code").to_pylist() == sorted(codes)
        assert got.schema.field("big").type == pa.decimal256(40, 5)
        assert got.column("big").to_pylist() == [
            None if codes.index(c) % 2 == 0 else c * 10**20 for c in sorted(codes)
        ]
        assert [p.cursor for p in pulled] == [p.cursor for p in _drain(slow, None, batch_size=2)]
        assert _drain(fast, pulled[-1].cursor) == []
        rest = _drain(fast, pulled[0].cursor, batch_size=10)
        assert [v for p in rest for v in p.batch.column("code").to_pylist()] == sorted(codes)[2:]
        query = f'SELECT code, updated_at, loose FROM "{name}"'
        (loose,) = _drain(_source(postgres_url, None, cursor=cursor, options={"query": query}), batch_size=10)
        assert loose.batch.schema.field("loose").type == pa.string()
        assert [Decimal(v) for v in loose.batch.column("loose").to_pylist()] == [c / 7 for c in sorted(codes)]
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_an_unreachable_host_is_unavailable_and_names_the_connector(server: str) -> None:
    url = sa.make_url(server).set(host="127.0.0.1", port=1).render_as_string(hide_password=False)
    with pytest.raises(SourceUnavailable, match="cannot reach the database") as info:
        _drain(_source(url, "household_member", name="gongan-down"))
    assert "'gongan-down'" in str(info.value)


def test_a_wrong_password_is_rejected_and_never_shown(mariadb_url: str) -> None:
    password = "Not-The-Root-Pw-42"
    source = _source(
        mariadb_url,
        "household_member",
        name="gongan-maria",
        secrets={"password": "ONCEONLY_SECRET_GONGAN_MARIA_PASSWORD"},
        env={"ONCEONLY_SECRET_GONGAN_MARIA_PASSWORD": password},
    )
    with pytest.raises(SourceRejected, match="refused the connection") as info:
        _drain(source)
    assert "'gongan-maria'" in str(info.value) and "denied" in str(info.value).lower()
    assert password not in str(info.value) and password not in repr(info.value.__cause__ or "")


def test_a_column_renamed_at_the_source_between_pulls_is_a_schema_change(
    server: str, table: tuple[sa.Engine, sa.Table]
) -> None:
    engine, tbl = table
    with engine.begin() as conn:
        conn.execute(sa.insert(tbl), _rows(range(1, 11)))
    source = _source(server, tbl.name, name="gongan-renamed")
    pulled = _drain(source)
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {quote(tbl.name)} RENAME COLUMN name TO full_name")

    with pytest.raises(SourceSchemaChanged) as info:
        _drain(source, pulled[-1].cursor)
    message = str(info.value)
    assert "'gongan-renamed'" in message and "'name'" in message and "'full_name'" in message


def test_the_adbc_connection_opened_ahead_is_handed_over_once_and_failures_stay_quiet(
    postgres_url: str,
) -> None:
    import adbc_driver_manager

    from connectors.sql import _AdbcConnection

    ahead = _AdbcConnection(sa.make_url(postgres_url))
    first, second = ahead.take(), ahead.take()  # the second take opens a connection of its own
    try:
        assert first is not second
        for conn in (first, second):
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
    finally:
        first.close()
        second.close()
    ahead.close()  # nothing left to close
    unreachable = _AdbcConnection(sa.make_url(postgres_url).set(host="127.0.0.1", port=1))
    unreachable.close()  # the failed attempt's error is not raised here: the pull reports its own
    with pytest.raises(adbc_driver_manager.Error):
        _AdbcConnection(sa.make_url(postgres_url).set(host="127.0.0.1", port=1)).take()
