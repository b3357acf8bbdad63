"""The ``sql`` connector on real SQLite files: keyset pulls, types, errors.

PostgreSQL and MariaDB run the same scenarios in ``tests/integration/test_sql_servers.py``.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from connector_sources import column, connector, drain, registration

from connectors import MissingSecret, load_registration
from departments import Manifest
from onceonly.errors import (
    ConfigurationError,
    SourceSchemaChanged,
    SourceUnavailable,
)
from onceonly.settings import Settings

BASE = dt.datetime(2026, 11, 20, 8, 0, 0)
CURSOR = {"column": "updated_at", "tiebreak": "id"}

metadata = sa.MetaData()
events = sa.Table(
    "event",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("updated_at", sa.DateTime),
    sa.Column("name", sa.String(50)),
    sa.Column("amount", sa.Numeric(10, 2)),
    sa.Column("born", sa.Date),
    sa.Column("note", sa.Text),
)


def event_rows(ids: range, stamps: int = 12, seed: int = 1) -> list[dict[str, Any]]:
    """Rows whose ids do not follow their timestamps, about eight rows per timestamp."""
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "updated_at": BASE + dt.timedelta(minutes=rng.randrange(stamps)),
            "name": f"名字{i}",
            "amount": Decimal(i) / 4,
            "born": dt.date(1990, 1, 1) + dt.timedelta(days=i),
            "note": None,
        }
        for i in ids
    ]


def keyset_order(rows: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in sorted(rows, key=lambda r: (r["updated_at"], r["id"]))]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[sa.Engine, str]]:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    yield engine, url
    engine.dispose()


def insert(engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(events), rows)


def test_rows_sharing_a_timestamp_across_batch_boundaries_come_exactly_once(
    db: tuple[sa.Engine, str],
) -> None:
    engine, url = db
    rows = event_rows(range(100))
    insert(engine, rows)
    source = connector(registration("sql", url=url, table="event", cursor=CURSOR))

    pulled = drain(source, None, batch_size=7)

    assert [p.batch.num_rows for p in pulled] == [7] * 14 + [2]
    assert column(pulled, "id") == keyset_order(rows)
    # Every boundary but one splits a group of rows with the same timestamp in this data.
    stamps = column(pulled, "updated_at")
    assert sum(stamps[i * 7 - 1] == stamps[i * 7] for i in range(1, 15)) >= 10


def test_resuming_from_every_cursor_yields_exactly_the_rest(db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    rows = event_rows(range(100))
    insert(engine, rows)
    source = connector(registration("sql", url=url, table="event", cursor=CURSOR))
    order = keyset_order(rows)

    pulled = drain(source, None, batch_size=7)
    for k, p in enumerate(pulled):
        rest = column(drain(source, p.cursor, batch_size=7), "id")
        assert rest == order[(k + 1) * 7 :], f"resuming after batch {k}"


def test_rows_added_later_are_picked_up_once_even_at_the_last_watermark(db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    rows = event_rows(range(1, 101))
    insert(engine, rows)
    source = connector(registration("sql", url=url, table="event", cursor=CURSOR))
    first = drain(source, None, batch_size=7)
    last_stamp = max(r["updated_at"] for r in rows)
    assert first[-1].cursor["watermark"] == {"type": "datetime", "value": last_stamp.isoformat()}

    later = event_rows(range(101, 104))
    later[0]["updated_at"] = last_stamp  # same timestamp as the watermark, higher id
    later[1]["updated_at"] = last_stamp + dt.timedelta(seconds=1)
    later[2]["updated_at"] = last_stamp - dt.timedelta(days=1)  # late-arriving old timestamp: not seen
    insert(engine, later)
    with engine.begin() as conn:  # an existing row changes: it comes again with its new timestamp
        conn.execute(
            sa.update(events).where(events.c.id == 5).values(updated_at=last_stamp + dt.timedelta(hours=1))
        )

    second = drain(source, first[-1].cursor, batch_size=7)
    assert column(second, "id") == [101, 102, 5]
    assert drain(source, second[-1].cursor, batch_size=7) == []


def test_columns_arrive_as_their_declared_types_even_when_all_null(db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    rows = event_rows(range(10))
    for r in rows[5:]:
        r.update(amount=None, born=None, name=None)
    rows[0]["note"] = "only one note"
    insert(engine, rows)
    source = connector(registration("sql", url=url, table="event", cursor=CURSOR))

    pulled = drain(source, None, batch_size=3)
    expected = pa.schema(
        [
            ("id", pa.int64()),
            ("updated_at", pa.timestamp("us", tz="Asia/Shanghai")),  # naive: the department's clock
            ("name", pa.string()),
            ("amount", pa.decimal128(10, 2)),
            ("born", pa.date32()),
            ("note", pa.string()),
        ]
    )
    assert all(p.batch.schema == expected for p in pulled), [p.batch.schema for p in pulled]
    by_id = {r["id"]: r for r in rows}
    assert column(pulled, "amount") == [by_id[i]["amount"] for i in column(pulled, "id")]
    assert column(pulled, "born") == [by_id[i]["born"] for i in column(pulled, "id")]


def test_a_value_its_column_type_cannot_hold_turns_that_batch_column_into_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loose.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE loose (id INTEGER PRIMARY KEY, ts TEXT, n INTEGER)")
        conn.exec_driver_sql("INSERT INTO loose VALUES (1, 'a', 10), (2, 'b', 'eleven')")
    engine.dispose()
    source = connector(registration("sql", url=url, table="loose", cursor={"column": "ts", "tiebreak": "id"}))

    (only,) = drain(source, None, batch_size=10)
    assert only.batch.column("n").to_pylist() == ["10", "eleven"]


def test_null_watermarks_come_first_and_do_not_hide_later_rows(db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    rows = event_rows(range(1, 21))
    for r in rows[:6]:
        r["updated_at"] = None
    insert(engine, rows)
    source = connector(registration("sql", url=url, table="event", cursor=CURSOR))
    order = [1, 2, 3, 4, 5, 6, *keyset_order(rows[6:])]

    pulled = drain(source, None, batch_size=4)
    assert column(pulled, "id") == order
    assert pulled[0].cursor["watermark"] == {"type": "NoneType", "value": None}
    for k, p in enumerate(pulled):  # cursors inside the NULL group and after it both resume
        assert column(drain(source, p.cursor, batch_size=4), "id") == order[(k + 1) * 4 :]

    later = event_rows(range(21, 23))
    for r in later:
        r["updated_at"] = BASE + dt.timedelta(days=1)
    insert(engine, later)
    assert sorted(column(drain(source, pulled[-1].cursor, batch_size=4), "id")) == [21, 22]


def test_the_demo_household_registry_is_pulled_whole_through_its_registration(
    departments: tuple[Path, Manifest],
) -> None:
    root, manifest = departments
    reg = load_registration(Path(Settings().registrations_dir) / "gongan-household.yaml")
    home = root.parent / "home"
    (home / "departments").mkdir(parents=True, exist_ok=True)
    link = home / "departments" / "gongan"
    if not link.exists():
        link.symlink_to(root / "gongan")
    source = connector(reg, home=home)

    pulled = drain(source, None, batch_size=64)
    assert sum(p.batch.num_rows for p in pulled) == manifest.datasets["household"].rows
    assert len(set(column(pulled, "id"))) == manifest.datasets["household"].rows
    assert pulled[0].batch.schema.field("birth_date").type == pa.date32()
    assert pulled[0].batch.schema.field("updated_at").type == pa.timestamp("us", tz="Asia/Shanghai")
    assert drain(source, pulled[-1].cursor) == []


def test_missing_table_is_a_schema_change(db: tuple[sa.Engine, str]) -> None:
    _, url = db
    source = connector(registration("sql", name="gongan-x", url=url, table="gone", cursor=CURSOR))
    with pytest.raises(SourceSchemaChanged, match="gone") as info:
        drain(source)
    assert info.value.connector == "gongan-x"


def test_missing_cursor_column_is_a_schema_change(db: tuple[sa.Engine, str]) -> None:
    _, url = db
    source = connector(
        registration("sql", url=url, table="event", cursor={"column": "changed_at", "tiebreak": "id"})
    )
    with pytest.raises(SourceSchemaChanged, match="changed_at"):
        drain(source)


def test_missing_sqlite_file_is_unavailable_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    source = connector(registration("sql", url=f"sqlite:///{path}", table="event", cursor=CURSOR))
    with pytest.raises(SourceUnavailable, match="does not exist"):
        drain(source)
    assert not path.exists()


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://reader@127.0.0.1:1/huji", "mysql+pymysql://reader@127.0.0.1:1/huji"],
    ids=["postgresql", "mysql"],
)
def test_unreachable_server_is_unavailable_and_the_password_stays_secret(url: str) -> None:
    password = "S3cret-Pw-4-gongan"
    reg = registration(
        "sql",
        name="gongan-huji",
        url=url,
        table="t",
        cursor=CURSOR,
        secrets={"password": "ONCEONLY_SECRET_GONGAN_HUJI_PASSWORD"},
    )
    source = connector(reg, env={"ONCEONLY_SECRET_GONGAN_HUJI_PASSWORD": password})
    with pytest.raises(SourceUnavailable) as info:
        drain(source)
    message = str(info.value)
    assert "gongan-huji" in message and "127.0.0.1" in message
    assert password not in message and password not in repr(info.value.args)


def test_declared_but_unset_password_names_the_secret(db: tuple[sa.Engine, str]) -> None:
    _, url = db
    reg = registration(
        "sql",
        url=url,
        table="event",
        cursor=CURSOR,
        secrets={"password": "ONCEONLY_SECRET_TEST_SOURCE_PASSWORD"},
    )
    with pytest.raises(MissingSecret, match="ONCEONLY_SECRET_TEST_SOURCE_PASSWORD"):
        drain(connector(reg, env={}))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"url": "sqlite:///x.db", "table": "t", "cursor": {"column": "ts"}}, "tiebreak"),
        ({"url": "sqlite:///x.db", "table": "t", "cursor": "updated_at"}, "cursor"),
        ({"url": "sqlite:///x.db", "cursor": CURSOR}, "table"),
    ],
)
def test_incomplete_options_fail_at_construction(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        connector(registration("sql", **options))


def test_unknown_driver_and_bad_url_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="nosuchdb"):
        drain(connector(registration("sql", url="nosuchdb://h/db", table="t", cursor=CURSOR)))
    with pytest.raises(ConfigurationError, match="not a database URL"):
        drain(connector(registration("sql", url="::not a url::", table="t", cursor=CURSOR)))


def test_batch_size_must_be_positive(db: tuple[sa.Engine, str]) -> None:
    _, url = db
    with pytest.raises(ConfigurationError, match="batch_size"):
        drain(connector(registration("sql", url=url, table="event", cursor=CURSOR)), None, batch_size=0)


def test_sample_returns_the_first_rows(db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    insert(engine, event_rows(range(30)))
    sample = connector(registration("sql", url=url, table="event", cursor=CURSOR)).sample(5)
    assert sample.num_rows == 5 and "updated_at" in sample.column_names


def test_the_rows_left_after_any_cursor_are_counted_for_progress(db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    rows = event_rows(range(1, 41))
    rows[5]["updated_at"] = None  # NULL watermarks come first and count too
    with engine.begin() as conn:
        conn.execute(events.insert(), rows)
    source = connector(registration("sql", url=url, table="event", cursor=CURSOR))
    pulled = drain(source, batch_size=7)
    assert source.remaining(None) == 40
    for done, p in enumerate(pulled, start=1):
        assert source.remaining(p.cursor) == 40 - sum(b.batch.num_rows for b in pulled[:done])
    snapshot = connector(registration("sql", url=url, table="event", change_detection="snapshot", key=["id"]))
    assert snapshot.remaining(None) is None  # a snapshot pull yields only what changed: unknown
    gone = connector(registration("sql", url="sqlite:////nonexistent/x.db", table="event", cursor=CURSOR))
    assert gone.remaining(None) is None  # an estimate never fails a pull; the pull reports errors
