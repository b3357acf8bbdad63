"""The catalog's errors as the real PostgreSQL and MariaDB raise them: a constraint is terminal; a
connection the server kills mid-transaction, a deadlock and a lock wait that timed out are
transient, and the same work then succeeds."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from catalog import Catalog, connector_state
from onceonly.errors import CatalogRefused, CatalogUnavailable, TransientError

pytestmark = pytest.mark.integration

SECRET_ID = "120114199003070011"


@pytest.fixture(params=["postgresql", "mariadb"])
def catalog(request: pytest.FixtureRequest) -> Iterator[Catalog]:
    """A fresh catalog on each server (a schema or database of its own)."""
    catalog = Catalog.connect(request.getfixturevalue(f"{request.param}_database"))
    with catalog.begin() as conn:
        for name in ("a", "b"):
            conn.execute(sa.insert(connector_state).values(connector=name, dataset="d", rows_pulled=0))
    try:
        yield catalog
    finally:
        catalog.dispose()


def _kill(catalog: Catalog, conn: sa.Connection) -> None:
    """The server ends ``conn``'s session, as an administrator (or a failover) would."""
    postgresql = catalog.engine.dialect.name == "postgresql"
    session = conn.exec_driver_sql(
        "SELECT pg_backend_pid()" if postgresql else "SELECT CONNECTION_ID()"
    ).scalar()
    admin = sa.create_engine(catalog.engine.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as other:
        other.exec_driver_sql(f"SELECT pg_terminate_backend({session})" if postgresql else f"KILL {session}")
    admin.dispose()


def _rows_pulled(catalog: Catalog, name: str) -> int:
    with catalog.read() as conn:
        return int(
            conn.execute(sa.select(connector_state.c.rows_pulled).filter_by(connector=name)).scalar_one()
        )


def test_a_constraint_violation_is_terminal_and_masked(catalog: Catalog) -> None:
    with catalog.begin() as conn:
        conn.execute(sa.insert(connector_state).values(connector=SECRET_ID, dataset="d", rows_pulled=0))
    with pytest.raises(CatalogRefused) as caught, catalog.begin() as conn:
        conn.execute(sa.insert(connector_state).values(connector=SECRET_ID, dataset="d", rows_pulled=0))
    assert not isinstance(caught.value, TransientError)
    message = str(caught.value)
    assert ("UniqueViolation" in message or "IntegrityError: (1062" in message) and SECRET_ID not in message


def test_a_connection_killed_mid_transaction_is_transient_and_the_retry_succeeds(catalog: Catalog) -> None:
    def work(kill: bool) -> None:
        with catalog.begin() as conn:
            conn.execute(sa.update(connector_state).filter_by(connector="a").values(rows_pulled=5))
            if kill:
                _kill(catalog, conn)
            conn.execute(sa.update(connector_state).filter_by(connector="b").values(rows_pulled=5))

    with pytest.raises(CatalogUnavailable, match="catalog database error"):
        work(kill=True)
    assert _rows_pulled(catalog, "a") == 0, "the killed transaction left nothing"
    work(kill=False)  # what a retry does: the pool has dropped the dead connection
    assert (_rows_pulled(catalog, "a"), _rows_pulled(catalog, "b")) == (5, 5)


def test_a_deadlock_is_transient_for_the_transaction_the_server_chose(catalog: Catalog) -> None:
    both_locked = threading.Barrier(2, timeout=30)
    failures: list[BaseException] = []

    def writer(first: str, second: str) -> None:
        try:
            with catalog.begin() as conn:
                conn.execute(sa.update(connector_state).filter_by(connector=first).values(rows_pulled=1))
                both_locked.wait()
                conn.execute(sa.update(connector_state).filter_by(connector=second).values(rows_pulled=2))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(failures) == 1 and isinstance(failures[0], CatalogUnavailable), failures
    assert "DeadlockDetected" in str(failures[0]) or "(1213" in str(failures[0])
    assert {_rows_pulled(catalog, "a"), _rows_pulled(catalog, "b")} <= {1, 2}, "the other one committed"


def test_a_lock_wait_that_times_out_is_transient(catalog: Catalog) -> None:
    postgresql = catalog.engine.dialect.name == "postgresql"
    failures: list[BaseException] = []

    def waiter() -> None:
        try:
            with catalog.begin() as conn:
                conn.exec_driver_sql(
                    "SET LOCAL lock_timeout = '200ms'"
                    if postgresql
                    else "SET SESSION innodb_lock_wait_timeout = 1"
                )
                conn.execute(sa.update(connector_state).filter_by(connector="a").values(rows_pulled=9))
        except BaseException as exc:
            failures.append(exc)

    with catalog.begin() as conn:  # holds the row's lock until the waiter gave up
        conn.execute(sa.update(connector_state).filter_by(connector="a").values(rows_pulled=1))
        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join(timeout=30)
    assert len(failures) == 1 and isinstance(failures[0], CatalogUnavailable), failures
    assert "LockNotAvailable" in str(failures[0]) or "(1205" in str(failures[0])
    assert _rows_pulled(catalog, "a") == 1


def test_opening_a_catalog_on_a_server_that_refuses_the_connection_is_transient() -> None:
    for url in (
        "postgresql+psycopg://onceonly@127.0.0.1:1/catalog",
        "mysql+pymysql://onceonly@127.0.0.1:1/catalog",
    ):
        with pytest.raises(CatalogUnavailable, match="cannot open the catalog database"):
            Catalog.connect(url)


def _session(catalog: Catalog, conn: sa.Connection) -> int:
    postgresql = catalog.engine.dialect.name == "postgresql"
    return int(
        conn.exec_driver_sql(
            "SELECT pg_backend_pid()" if postgresql else "SELECT CONNECTION_ID()"
        ).scalar_one()
    )


def _end_session(catalog: Catalog, session: int) -> None:
    admin = sa.create_engine(catalog.engine.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as other:
        postgresql = catalog.engine.dialect.name == "postgresql"
        other.exec_driver_sql(f"SELECT pg_terminate_backend({session})" if postgresql else f"KILL {session}")
    admin.dispose()


@pytest.mark.parametrize("pinged", [True, False])
def test_a_kept_connection_the_server_ended_while_idle_is_replaced_before_its_next_transaction(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch, pinged: bool
) -> None:
    """The counter's log writer keeps its connection (``Catalog.begin_kept``), which the pool's
    pre-ping never sees: one idle past KEPT_PING_AFTER is pinged first, and one the server ended
    meanwhile (a restart, a failover) is replaced — not the next request's error. Without the
    ping (``pinged`` False: the connection counts as just used) that transaction fails."""
    from catalog import _database

    with catalog.begin_kept() as conn:
        conn.execute(sa.update(connector_state).filter_by(connector="a").values(rows_pulled=1))
        ended = _session(catalog, conn)
    _end_session(catalog, ended)
    monkeypatch.setattr(_database, "KEPT_PING_AFTER", 0.0 if pinged else 1e9)

    def work() -> int:
        with catalog.begin_kept() as conn:
            conn.execute(sa.update(connector_state).filter_by(connector="b").values(rows_pulled=2))
            return _session(catalog, conn)

    if pinged:
        assert work() != ended
        assert (_rows_pulled(catalog, "a"), _rows_pulled(catalog, "b")) == (1, 2)
    else:
        with pytest.raises(CatalogUnavailable):
            work()
        assert _rows_pulled(catalog, "b") == 0


def test_a_kept_connection_that_answers_the_ping_is_kept(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinged and alive: the same session goes on (not a new connection every transaction)."""
    from catalog import _database

    monkeypatch.setattr(_database, "KEPT_PING_AFTER", 0.0)
    sessions = []
    for _ in range(3):
        with catalog.begin_kept() as conn:
            sessions.append(_session(catalog, conn))
    assert len(set(sessions)) == 1
