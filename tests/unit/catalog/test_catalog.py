"""The catalog handle: opening, transactions, errors in plain words, insert-if-missing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from catalog import Catalog, connector_state, insert_missing, insert_rows, serials
from connectors.state import cursor_of, record_failure, save_cursor
from onceonly.errors import CatalogError, CatalogRefused, CatalogUnavailable


@pytest.fixture
def catalog(catalog_url: str) -> Catalog:
    return Catalog.connect(catalog_url)


def test_opening_twice_keeps_what_is_there(catalog_url: str) -> None:
    first = Catalog.connect(catalog_url)
    with first.begin() as conn:
        save_cursor(conn, "gongan-household", "household", {"updated_at": "2026-11-20"}, "run-1", rows=5)
    first.dispose()
    again = Catalog.connect(catalog_url)
    with again.read() as conn:
        assert cursor_of(conn, "gongan-household") == {"updated_at": "2026-11-20"}
        assert cursor_of(conn, "never-ran") is None
    again.dispose()


def test_a_cursor_and_a_failure_are_remembered_per_connector(catalog: Catalog) -> None:
    with catalog.begin() as conn:
        save_cursor(conn, "c", "household", {"id": 10}, "run-1", rows=10)
        save_cursor(conn, "c", "household", {"id": 15}, "run-2", rows=5)
        record_failure(conn, "c", "household", "run-3", "connector 'c': timed out")
        record_failure(conn, "never-landed", "marriage", "run-3", "connector 'never-landed': no such file")
    with catalog.read() as conn:
        rows = {r.connector: r for r in conn.execute(sa.select(connector_state))}
    c, other = rows["c"], rows["never-landed"]
    assert (c.cursor, c.rows_pulled, c.last_status, c.last_run_id) == ({"id": 15}, 15, "failed", "run-3")
    assert c.last_error == "connector 'c': timed out"
    assert (other.cursor, other.rows_pulled, other.last_status) == (None, 0, "failed")


def test_insert_rows_runs_in_the_transaction_and_fails_it_as_the_catalog_says(catalog: Catalog) -> None:
    # On SQLite inside a transaction the rows go to the driver's cursor (not SQLAlchemy's
    # execution): still in that transaction (rolled back with it), a driver error still the
    # catalog's error naming the cause, and the connection still usable after it.
    names = ("type_code", "issuer_code", "next_serial")
    with pytest.raises(CatalogError, match=r"(?i)unique|duplicate"), catalog.begin() as conn:
        insert_rows(conn, serials, names, [("A", "I", 1)])
        insert_rows(conn, serials, names, [("B", "I", 1), ("B", "I", 2)])
    with catalog.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(serials)).scalar() == 0
    with catalog.begin() as conn:
        insert_rows(conn, serials, names, [("A", "I", 1), ("B", "I", 2)])
    # Outside a transaction SQLAlchemy begins one (the driver alone would commit each row at once).
    with catalog.engine.connect() as conn:
        insert_rows(conn, serials, names, [("C", "I", 3)])
        assert conn.in_transaction()
        conn.rollback()
    with catalog.read() as conn:
        stored = conn.execute(sa.select(serials.c.type_code).order_by(serials.c.type_code)).scalars().all()
    assert stored == ["A", "B"]


def test_insert_rows_of_nothing_inserts_nothing_and_a_failed_batch_names_a_few_rows(catalog: Catalog) -> None:
    names = ("type_code", "issuer_code", "next_serial")
    with catalog.begin() as conn:
        insert_rows(conn, serials, names, [])
    with catalog.engine.connect() as conn:  # outside a transaction too (not one row of NULLs)
        insert_rows(conn, serials, names, [], {"issuer_code": "I"})
        conn.commit()
    rows = [(f"T{i}", "I", i) for i in range(2_000)] + [("T0", "I", 0)]
    with pytest.raises(CatalogError) as refused, catalog.begin() as conn:
        insert_rows(conn, serials, names, rows)
    # The driver's error as SQLAlchemy words it: a few of the rows, not 2,001 of them.
    assert isinstance(refused.value.__cause__, sa.exc.IntegrityError)
    assert len(str(refused.value.__cause__)) < 3000
    with catalog.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(serials)).scalar() == 0


def test_insert_missing_inserts_once(catalog: Catalog) -> None:
    with catalog.begin() as conn:
        insert_missing(conn, serials, {"type_code": "T", "issuer_code": "I", "next_serial": 1})
        conn.execute(sa.update(serials).values(next_serial=9))
        insert_missing(conn, serials, {"type_code": "T", "issuer_code": "I", "next_serial": 1})
    with catalog.read() as conn:
        assert conn.execute(sa.select(serials.c.next_serial)).scalars().all() == [9]


def test_insert_rows_with_constants_stores_them_as_given(catalog: Catalog) -> None:
    if catalog.engine.dialect.name == "sqlite":  # beyond 64 bits: bound (and refused), not a REAL literal
        with catalog.begin() as conn, pytest.raises(OverflowError):
            insert_rows(conn, serials, ("type_code", "issuer_code"), [("T0", "I")], {"next_serial": 2**63})
    rows = [("T1", 1), ("T2", 2)]
    for issuer in ("O'B'); DROP x; --", "a\x00b"):  # quoted as a literal on SQLite; bound (NUL)
        if issuer == "a\x00b" and catalog.engine.dialect.name != "sqlite":
            continue  # PostgreSQL text holds no NUL at all
        with catalog.begin() as conn:
            conn.execute(sa.delete(serials))
            insert_rows(conn, serials, ("type_code", "next_serial"), rows, {"issuer_code": issuer})
        with catalog.read() as conn:
            stored = conn.execute(sa.select(serials).order_by(serials.c.type_code)).all()
        assert [tuple(r) for r in stored] == [("T1", issuer, 1), ("T2", issuer, 2)]


def test_database_errors_become_catalog_errors_without_the_values(catalog: Catalog) -> None:
    secret = "120114199003070011"
    with catalog.begin() as conn:
        conn.execute(sa.insert(connector_state).values(connector=secret, dataset="d", rows_pulled=0))
    with pytest.raises(CatalogRefused) as caught, catalog.begin() as conn:  # terminal: no retry helps
        conn.execute(sa.insert(connector_state).values(connector=secret, dataset="d", rows_pulled=0))
    assert secret not in str(caught.value) and "INSERT" not in str(caught.value)
    assert "IntegrityError" in str(caught.value) or "UniqueViolation" in str(caught.value)


def test_an_unreachable_catalog_is_a_catalog_error_without_the_password(tmp_path: Path) -> None:
    with pytest.raises(CatalogUnavailable, match="cannot open the catalog") as caught:  # may come back
        Catalog.connect("postgresql+psycopg://onceonly:hunter2@127.0.0.1:1/catalog?connect_timeout=2")
    assert "hunter2" not in str(caught.value)
    missing = tmp_path / "no-such-folder" / "catalog.db"
    with pytest.raises(CatalogError, match=r"no catalog at .*nothing has run under this ONCEONLY_HOME"):
        Catalog.connect(f"sqlite:///{missing}", create=False)
    assert not missing.parent.exists()
    Catalog.connect(f"sqlite:///{missing}").dispose()  # a run creates it, folder and all
    assert missing.exists()


def test_on_sqlite_a_reader_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    catalog = Catalog.connect(f"sqlite:///{tmp_path / 'catalog.db'}")
    read: list[object] = []
    with catalog.begin() as conn:
        save_cursor(conn, "c", "household", {"id": 1}, "run-1", rows=1)
    with catalog.begin() as conn:
        save_cursor(conn, "c", "household", {"id": 2}, "run-2", rows=1)  # holds the write lock

        def reader() -> None:
            with catalog.read() as r:
                read.append(cursor_of(r, "c"))

        thread = threading.Thread(target=reader)
        started = time.monotonic()
        thread.start()
        thread.join(timeout=10)
        assert time.monotonic() - started < 5 and read == [{"id": 1}], "the reader sees the last commit"
    catalog.dispose()


def test_a_new_sqlite_catalog_has_the_settings_it_relies_on(tmp_path: Path) -> None:
    catalog = Catalog.connect(f"sqlite:///{tmp_path / 'catalog.db'}")  # made by the migrations
    with catalog.read() as conn:
        settings = [
            conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("page_size", "journal_mode", "wal_autocheckpoint", "journal_size_limit")
        ]
    assert settings == [4096, "wal", 65536, 64 << 20]
    catalog.dispose()


def test_a_prepared_query_answers_as_sqlalchemy_does(catalog: Catalog) -> None:
    """``Prepared`` runs a Core SELECT on the driver: the same rows, values converted by the column
    types (dates and timestamps come back as dates and datetimes on SQLite too), on every database."""
    import datetime as dt

    from catalog import Prepared, stations

    when = dt.datetime(2026, 12, 2, 8, 30, tzinfo=dt.UTC)
    with catalog.begin() as conn:
        conn.execute(
            sa.insert(stations),
            [
                {
                    "station_id": f"s{n}",
                    "name": f"站{n}",
                    "township": "120114001000",
                    "token_sha256": f"{n:064d}",
                    "matters": None,
                    "created_at": when,
                    "revoked_at": None,
                }
                for n in range(3)
            ],
        )
    query = Prepared(
        sa.select(stations.c.station_id, stations.c.name, stations.c.created_at)
        .where(stations.c.township == sa.bindparam("township"))
        .order_by(stations.c.station_id)
        .limit(2)
    )
    with catalog.read() as conn:
        rows = query.all(conn, township="120114001000")
        expected = conn.execute(query.statement, {"township": "120114001000"}).all()
        assert [tuple(r) for r in rows] == [tuple(r) for r in expected]
        assert rows[0].station_id == "s0" and rows[1].name == "站1"
        assert rows[0].created_at.replace(tzinfo=None) == when.replace(tzinfo=None)
        assert query.first(conn, township="nowhere") is None
        with pytest.raises(Exception, match="township"):
            query.all(conn)  # a parameter without a value is refused, not sent as NULL
        # A bind made unique is named apart from its key in the SQL (township_1): given by that
        # name, as SQLAlchemy takes it, on every placeholder style.
        named_apart = sa.bindparam("township", unique=True)
        unique = Prepared(sa.select(stations.c.station_id).where(stations.c.township == named_apart))
        assert len(unique.all(conn, township_1="120114001000")) == 3


def test_a_prepared_write_runs_in_the_connections_transaction(catalog: Catalog) -> None:
    """``Prepared.run`` executes an INSERT or UPDATE on the driver inside the caller's transaction:
    the rows it changed are counted, values bound by the column types, and a rollback undoes it."""
    import datetime as dt

    from catalog import Prepared, stations

    add = Prepared(
        sa.insert(stations).values(
            station_id=sa.bindparam("sid"),
            name=sa.bindparam("name"),
            township="120114001000",
            token_sha256=sa.bindparam("digest"),
            created_at=sa.bindparam("at", type_=stations.c.created_at.type),
        )
    )
    revoke = Prepared(
        sa.update(stations)
        .where(stations.c.station_id == sa.bindparam("sid"))
        .values(revoked_at=sa.bindparam("at", type_=stations.c.revoked_at.type))
    )
    when = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
    with catalog.begin() as conn:
        assert add.run(conn, sid="w1", name="站", digest="1" * 64, at=when) == 1
        assert revoke.run(conn, sid="w1", at=when) == 1 and revoke.run(conn, sid="nobody", at=when) == 0
    with pytest.raises(RuntimeError, match="undo"), catalog.begin() as conn:
        add.run(conn, sid="w2", name="站", digest="2" * 64, at=when)
        raise RuntimeError("undo")
    with catalog.engine.connect() as conn, pytest.raises(RuntimeError, match="inside a transaction"):
        add.run(conn, sid="w3", name="站", digest="3" * 64, at=when)  # SQLite would commit it at once
    with catalog.read() as conn:
        rows = conn.execute(sa.select(stations.c.station_id, stations.c.revoked_at)).all()
    assert [r.station_id for r in rows] == ["w1"]
    assert rows[0].revoked_at.replace(tzinfo=None) == when.replace(tzinfo=None)


def test_a_prepared_query_that_fails_is_a_catalog_error(catalog: Catalog) -> None:
    from catalog import Prepared

    query = Prepared(sa.select(sa.table("no_such_table", sa.column("x")).c.x))
    with (
        pytest.raises(CatalogError, match=r"no_such_table|does not exist|doesn't exist"),
        catalog.read() as conn,
    ):
        query.all(conn)


def test_a_thread_keeps_its_read_connection_and_each_transaction_sees_what_was_committed(
    catalog: Catalog,
) -> None:
    """read_kept: one connection per thread, kept across transactions (the counter's loop);
    each transaction still reads what others committed before it began, an error inside one
    leaves the connection usable, and dispose closes them all."""
    table = sa.Table("kept_probe", sa.MetaData(), sa.Column("n", sa.Integer))
    with catalog.begin() as conn:
        table.create(conn)
    seen: list[object] = []
    for n in range(3):
        with catalog.begin() as conn:
            conn.execute(table.insert().values(n=n))
        with catalog.read_kept() as conn:
            seen.append(conn)
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == n + 1
    assert seen[0] is seen[1] is seen[2]
    with pytest.raises(ZeroDivisionError), catalog.read_kept() as conn:
        raise ZeroDivisionError
    with catalog.read_kept() as again:
        assert again is seen[0] and again.execute(sa.select(sa.literal(1))).scalar_one() == 1
    elsewhere: list[object] = []

    def other_thread() -> None:
        with catalog.read_kept() as conn:
            elsewhere.append(conn)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert elsewhere and elsewhere[0] is not seen[0]
    catalog.dispose()
    assert seen[0].closed and elsewhere[0].closed  # type: ignore[attr-defined]


def test_a_thread_keeps_its_write_connection_commits_each_transaction_and_rolls_back_on_error(
    catalog: Catalog,
) -> None:
    """begin_kept: the writer thread's own connection, kept across its transactions apart from
    the one it reads on; each transaction commits, one that raises is rolled back, one a
    database error touched drops the connection, and dispose closes it."""
    table = sa.Table("kept_write_probe", sa.MetaData(), sa.Column("n", sa.Integer))
    with catalog.begin() as conn:
        table.create(conn)
    seen: list[object] = []
    for n in range(3):
        with catalog.begin_kept() as conn:
            seen.append(conn)
            conn.execute(table.insert().values(n=n))
    assert seen[0] is seen[1] is seen[2]
    with catalog.read_kept() as reader:
        assert reader is not seen[0]
        assert reader.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 3
    with pytest.raises(ZeroDivisionError), catalog.begin_kept() as conn:
        conn.execute(table.insert().values(n=99))
        raise ZeroDivisionError
    with catalog.read() as conn:  # rolled back
        assert conn.execute(sa.select(sa.func.max(table.c.n))).scalar_one() == 2
    with pytest.raises(CatalogError), catalog.begin_kept() as conn:
        conn.execute(sa.text("INSERT INTO no_such_table VALUES (1)"))
    with catalog.begin_kept() as conn:
        assert conn is not seen[0] and seen[0].closed  # type: ignore[attr-defined]
        conn.execute(table.insert().values(n=3))
        last = conn
    with catalog.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 4
    catalog.dispose()
    assert last.closed


def test_a_kept_read_connection_a_database_error_touched_is_dropped(catalog: Catalog) -> None:
    with catalog.read_kept() as conn:
        first = conn
    with pytest.raises(CatalogError), catalog.read_kept() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    with catalog.read_kept() as conn:
        assert conn is not first and conn.execute(sa.select(sa.literal(1))).scalar_one() == 1
    assert first.closed
    with catalog.read_kept(), pytest.raises(RuntimeError, match="already in a transaction"):  # noqa: SIM117
        with catalog.read_kept():
            pass
    catalog.dispose()
