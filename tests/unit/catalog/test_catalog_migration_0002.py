"""Migration 0002: one run id (the Prefect flow-run id) everywhere, and dead-run detection."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import command

from catalog import SCHEMA_REVISION, Catalog
from catalog._migrations import alembic_config

AT = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
FLOW_RUN = "5f1c2a9e-0000-4000-8000-000000000001"


def test_runs_take_their_flow_run_id_everywhere_and_old_running_rows_can_be_reaped(catalog_url: str) -> None:
    engine = sa.create_engine(catalog_url)
    with engine.begin() as conn:  # a catalog at revision 0001, as the previous release left it
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(
            sa.text(
                "INSERT INTO runs (run_id, flow_run_id, started_at, status) VALUES "
                "('old-run', :fr, :at, 'ok'), ('no-flow-run', NULL, :at, 'running'), ('blank', '', :at, 'ok')"
            ),
            {"fr": FLOW_RUN, "at": AT},
        )
        conn.execute(
            sa.text(
                "INSERT INTO connector_state (connector, dataset, rows_pulled, last_run_id, lease_run_id) "
                "VALUES ('c', 'household', 1, 'old-run', 'old-run'), ('d', 'household', 1, 'blank', NULL)"
            )
        )
        for table in ("batches", "breaches"):
            columns = {
                "batches": "batch_id, run_id, connector, dataset, contract_id, contract_version, pulled, "
                "accepted, quarantined, warnings, certificates, content_sha256, landed_at",
                "breaches": "batch_id, run_id, connector, dataset, contract_id, contract_version, pulled, "
                "quarantined, error_rate, max_error_rate, detected_at",
            }[table]
            values = {
                "batches": "'b1', 'old-run', 'c', 'household', 'household', '1.0.0', 1, 1, 0, 0, 1, 'x', :at",
                "breaches": "'b2', 'old-run', 'c', 'household', 'household', '1.0.0', 1, 1, 1.0, 0.2, :at",
            }[table]
            conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), {"at": AT})
    engine.dispose()

    upgraded = Catalog.upgrade(catalog_url)
    assert (upgraded.found, upgraded.needed) == ("0001", SCHEMA_REVISION)

    engine = sa.create_engine(catalog_url)
    with engine.connect() as conn:
        runs = {
            r.run_id: r for r in conn.execute(sa.text("SELECT run_id, status, heartbeat_at, host FROM runs"))
        }
        assert set(runs) == {FLOW_RUN, "no-flow-run", "blank"}
        assert conn.execute(sa.text("SELECT run_id FROM batches")).scalar_one() == FLOW_RUN
        assert conn.execute(sa.text("SELECT run_id FROM breaches")).scalar_one() == FLOW_RUN
        state = {r.connector: r for r in conn.execute(sa.text("SELECT * FROM connector_state"))}
        assert (state["c"].last_run_id, state["c"].lease_run_id) == (FLOW_RUN, FLOW_RUN)
        assert (state["d"].last_run_id, state["d"].lease_run_id) == ("blank", None)
        assert "flow_run_id" not in {c["name"] for c in sa.inspect(conn).get_columns("runs")}
    engine.dispose()
    # A run the old version left running has its start as its heartbeat: reaped once stale.
    assert runs["no-flow-run"].heartbeat_at is not None and runs["no-flow-run"].host is None
    assert runs[FLOW_RUN].heartbeat_at is None
    catalog = Catalog.connect(catalog_url)
    from lake.runs import reap_dead_runs

    with catalog.begin() as conn:
        assert reap_dead_runs(conn, heartbeat_seconds=30) == ["no-flow-run"]
    catalog.dispose()


def test_a_flow_run_prefect_ran_twice_gives_its_id_to_its_newest_run_only(catalog_url: str) -> None:
    retried = "5f1c2a9e-0000-4000-8000-000000000002"
    engine = sa.create_engine(catalog_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(
            sa.text(
                "INSERT INTO runs (run_id, flow_run_id, started_at, status) VALUES "
                "('first-try', :fr, :early, 'failed'), ('retry', :fr, :at, 'ok')"
            ),
            {"fr": retried, "early": AT - dt.timedelta(hours=1), "at": AT},
        )
        conn.execute(
            sa.text(
                "INSERT INTO connector_state (connector, dataset, rows_pulled, last_run_id) VALUES "
                "('c', 'household', 1, 'first-try'), ('d', 'household', 1, 'retry')"
            )
        )
    engine.dispose()

    Catalog.upgrade(catalog_url)

    engine = sa.create_engine(catalog_url)
    with engine.connect() as conn:
        assert set(conn.execute(sa.text("SELECT run_id FROM runs")).scalars()) == {"first-try", retried}
        state = dict(conn.execute(sa.text("SELECT connector, last_run_id FROM connector_state")).all())
        assert state == {"c": "first-try", "d": retried}
    engine.dispose()
