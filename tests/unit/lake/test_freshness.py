from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from catalog import batches, connector_registrations
from contracts.sla import FreshnessWindow
from lake.freshness import FRESH, NO_SLA, STALE, dataset_freshness

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def _batch(conn: Any, dataset: str, landed: dt.datetime, n: int) -> None:
    conn.execute(
        sa.insert(batches).values(
            batch_id=f"{dataset}-{n}",
            run_id="r",
            connector=f"c-{dataset}",
            dataset=dataset,
            contract_id=dataset,
            contract_version="1.0.0",
            pulled=1,
            accepted=1,
            quarantined=0,
            warnings=0,
            certificates=1,
            content_sha256="0" * 64,
            landed_at=landed,
        )
    )


def _registered(conn: Any, dataset: str, at: dt.datetime) -> None:
    conn.execute(
        sa.insert(connector_registrations).values(
            name=f"c-{dataset}", type="sql", dataset=dataset, department="d", yaml_text="x", registered_at=at
        )
    )


def test_the_newest_landing_against_frequency_plus_latency(catalog: Any) -> None:
    window = FreshnessWindow("household", DAY, DAY)
    with catalog.begin() as conn:
        _batch(conn, "household", NOW - 5 * DAY, 1)
        _batch(conn, "household", NOW - dt.timedelta(hours=47), 2)  # the newest counts
        _batch(conn, "marriage", NOW - dt.timedelta(hours=49), 1)
    with catalog.read() as conn:
        states = {
            s.dataset: s
            for s in dataset_freshness(
                conn, {"household": window, "marriage": FreshnessWindow("marriage", DAY, DAY)}, now=NOW
            )
        }
    assert states["household"].state == FRESH
    assert states["household"].age == dt.timedelta(hours=47)
    assert states["marriage"].state == STALE
    line = states["marriage"].describe()
    assert "dataset marriage: STALE" in line and "2.0 d ago" in line and "frequency 1 d + latency 1 d" in line


def test_a_dataset_that_never_landed_is_stale_once_registered_longer_than_its_window(catalog: Any) -> None:
    with catalog.begin() as conn:
        _registered(conn, "birth", NOW - 3 * DAY)
        _registered(conn, "property_right", NOW - dt.timedelta(hours=1))
    windows = {d: FreshnessWindow(d, DAY, DAY) for d in ("birth", "property_right", "unknown")}
    with catalog.read() as conn:
        states = {s.dataset: s for s in dataset_freshness(conn, windows, now=NOW)}
    assert states["birth"].state == STALE and states["birth"].last_landed is None
    assert "nothing landed since it was registered 3.0 d ago" in states["birth"].describe()
    assert states["property_right"].state == FRESH
    assert states["unknown"].state == FRESH and states["unknown"].age is None


def test_a_contract_without_frequency_is_not_checked(catalog: Any) -> None:
    with catalog.begin() as conn:
        _batch(conn, "household", NOW - 100 * DAY, 1)
    with catalog.read() as conn:
        (state,) = dataset_freshness(conn, {"household": None}, now=NOW)
    assert state.state == NO_SLA and not state.stale
    assert "sets no frequency" in state.describe()
