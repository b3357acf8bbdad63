"""Is each dataset still landing as often as its contract says? Freshness from the catalog.

Example::

    with catalog.read() as conn:
        for f in dataset_freshness(conn, windows):      # {dataset: FreshnessWindow | None}
            print(f.dataset, f.state, f.last_landed, f.age)

A dataset's *last landing* is the newest ``batches.landed_at`` of any of its connectors (a
batch with rows: a pull that found nothing new lands nothing). It is ``stale`` when that is
older than its window (``contracts.sla``: frequency + latency), or when nothing ever landed and
the dataset has been registered longer than the window; ``fresh`` otherwise; ``no-sla`` when
its contract sets no frequency. "Now" is the database's clock, like every other time here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from catalog import aware, batches, connector_registrations, database_now
from contracts.sla import FreshnessWindow

FRESH, STALE, NO_SLA = "fresh", "stale", "no-sla"


@dataclass(frozen=True)
class Freshness:
    dataset: str
    state: str  # fresh | stale | no-sla
    last_landed: dt.datetime | None
    age: dt.timedelta | None  # since the last landing (or since registration, if none)
    window: FreshnessWindow | None

    @property
    def stale(self) -> bool:
        return self.state == STALE

    def describe(self) -> str:
        """One line in words for the operator."""
        if self.window is None:
            return f"dataset {self.dataset}: its contract sets no frequency; freshness not checked"
        since = (
            f"last landed {self.last_landed:%Y-%m-%d %H:%M} UTC, {_age(self.age)} ago"
            if self.last_landed is not None
            else f"nothing landed since it was registered {_age(self.age)} ago"
        )
        verdict = "STALE" if self.stale else "fresh"
        return f"dataset {self.dataset}: {verdict} — {since}; its SLA allows {self.window.describe()}"


def last_landings(conn: Connection) -> dict[str, dt.datetime]:
    """The newest landing time of each dataset that ever landed a batch."""
    rows = conn.execute(select(batches.c.dataset, func.max(batches.c.landed_at)).group_by(batches.c.dataset))
    return {dataset: aware(landed) for dataset, landed in rows if landed is not None}


def dataset_freshness(
    conn: Connection,
    windows: Mapping[str, FreshnessWindow | None],
    *,
    now: dt.datetime | None = None,
) -> list[Freshness]:
    """Freshness of each dataset in ``windows`` (those of the registered connectors), by name."""
    now = now or database_now(conn)
    landed = last_landings(conn)
    registered = _first_registrations(conn)
    out = []
    for dataset in sorted(windows):
        window = windows[dataset]
        last = landed.get(dataset)
        since = last or registered.get(dataset)
        age = now - since if since is not None else None
        if window is None:
            state = NO_SLA
        elif age is None:  # neither landed nor registered in the catalog: nothing to wait for yet
            state = FRESH
        else:
            state = STALE if age > window.within else FRESH
        out.append(Freshness(dataset, state, last, age, window))
    return out


def _first_registrations(conn: Connection) -> dict[str, dt.datetime]:
    """When each dataset's oldest active registration was made (the clock before any landing)."""
    table = connector_registrations
    rows = conn.execute(
        select(table.c.dataset, func.min(table.c.registered_at))
        .where(table.c.removed_at.is_(None))
        .group_by(table.c.dataset)
    )
    return {dataset: aware(at) for dataset, at in rows if at is not None}


def _age(delta: dt.timedelta | None) -> str:
    if delta is None:
        return "?"
    seconds = max(int(delta.total_seconds()), 0)
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


__all__ = ["FRESH", "NO_SLA", "STALE", "Freshness", "dataset_freshness", "last_landings"]
