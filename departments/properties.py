"""不动产登记 不动产权证书: the property register of 天津市武清区不动产登记中心 (a SQL table).

Example::

    batch = property_rows(rng, people, usable)       # from the synthesized population
    create_property_db(root / DEFAULT_PROPERTY_PATH, replace=True)
    insert_property_rows(root / DEFAULT_PROPERTY_PATH, batch.rows)

One row per 不动产权证书 issued since unified registration began in 武清 (1 March 2015): the
home of about seven in ten households with an adult 户主, in the household's township — a flat
(国有建设用地使用权/房屋所有权) in a sub-district, a house on 宅基地 in a town. A couple who
own their home jointly (共同共有) each hold a certificate of the same unit, as the register may
issue one to each co-owner. Some owners also hold the certificate of a home they sold since,
now 注销. A few rows carry an owner ID with a wrong check character, for the contract to
quarantine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from departments.population import (
    BASE_DATE,
    BadRow,
    Population,
    RowBatch,
    bad_rows_per_kind,
    clock,
    create_sqlite,
    day,
    draw_addresses,
    insert_sqlite,
    read_sqlite,
    spoil_check_char,
    township_codes,
    townships,
    uniform_days,
    years,
)

PROPERTY_TABLE = "property_right"
DEFAULT_PROPERTY_PATH = Path("budongchan") / "property.db"
UNIFIED_SINCE = dt.date(2015, 3, 1)  # 不动产登记暂行条例 in force
OWNER_AGE = 22  # the youngest owner of a home here
CURRENT, CANCELLED = "现势", "注销"
SOLE, JOINT = "单独所有", "共同共有"
PROPERTY_COLUMNS = (
    "id", "cert_no", "unit_no", "owner_name", "owner_id", "co_ownership", "location", "right_type",
    "land_use", "building_area", "registered_on", "status", "township_code", "updated_at",
)  # fmt: skip

_DDL = f"""
CREATE TABLE {PROPERTY_TABLE} (
    id INTEGER PRIMARY KEY,
    cert_no VARCHAR(40),
    unit_no CHAR(28),
    owner_name VARCHAR(50),
    owner_id VARCHAR(18),
    co_ownership VARCHAR(10),
    location VARCHAR(200),
    right_type VARCHAR(50),
    land_use VARCHAR(20),
    building_area DECIMAL(10, 2),
    registered_on CHAR(10),
    status VARCHAR(4),
    township_code VARCHAR(12),
    updated_at CHAR(19)
);
CREATE INDEX ix_{PROPERTY_TABLE}_updated_at_id ON {PROPERTY_TABLE} (updated_at, id);
"""

_FLAT = ("国有建设用地使用权/房屋所有权", "城镇住宅用地/住宅")
_HOUSE = ("宅基地使用权/房屋所有权", "宅基地/住宅")
_DAY = np.timedelta64(1, "D")

PropertyBatch = RowBatch


def property_rows(
    rng: np.random.Generator,
    people: Population,
    usable: np.ndarray,
    married_on: Mapping[str, dt.date] | None = None,
) -> RowBatch:
    """The 不动产权证书 of the registry's households (``usable``: the people whose registry row is
    clean): the current one of their home, at the household's address, held jointly with the
    配偶 about half the time — when the home was registered after both were 22 and after their
    marriage (``married_on``: the 民政 register's day by each spouse's ID, where it has one) — and
    for some owners the 注销 one of a home they bought as adults and sold before."""
    married_on = married_on or {}
    yesterday = day(BASE_DATE - dt.timedelta(days=1))
    unified = day(UNIFIED_SINCE)
    relation = np.asarray(people.relation)
    spouse_of = {int(people.household[i]): int(i) for i in np.flatnonzero(usable & (relation == "配偶"))}
    grown_up = people.birth + years(OWNER_AGE).astype("timedelta64[D]")  # each one's 22nd birthday, past
    heads = np.flatnonzero(usable & (grown_up <= yesterday) & (relation == "户主"))
    heads = heads[rng.random(len(heads)) < 0.72]
    n = len(heads)
    joint = rng.random(n) < 0.5
    sold_before = rng.random(n) < 0.06
    towns = people.township[heads]
    flat = np.array([townships()[t].kind == "街道" for t in towns.tolist()], dtype=bool)
    lo = np.maximum(unified, grown_up[heads])
    registered = uniform_days(rng, lo, np.full(n, yesterday))
    areas = np.round(
        np.where(flat, rng.normal(92, 22, n).clip(38, 180), rng.normal(135, 35, n).clip(60, 320)), 2
    )
    old_areas = np.round(rng.normal(75, 18, n).clip(35, 150), 2)
    old_addresses = draw_addresses(rng, towns, homes=True)
    parcels = rng.integers(1, 100_000, (n, 2))
    # A sold home: bought as an adult, sold before (or on) the day the current one was registered.
    can_sell = sold_before & (registered > lo + _DAY)
    bought = uniform_days(rng, lo, registered - _DAY)
    sold = uniform_days(rng, bought, registered)
    codes = township_codes(towns.tolist())

    # (registered day, holders, unit, location, rights, area, status, changed day, township code)
    found: list[tuple[Any, ...]] = []
    for k, head in enumerate(heads.tolist()):
        code = codes[k]
        rights = _FLAT if flat[k] else _HOUSE
        unit = f"{code[:6]}{code[6:9]}001GB{int(parcels[k, 0]):05d}F{k + 1:08d}"
        partner = spouse_of.get(int(people.household[head]), -1) if joint[k] else -1
        if partner >= 0:
            weds = [
                married_on[people.person_id[p]] for p in (head, partner) if people.person_id[p] in married_on
            ]
            if registered[k] < grown_up[partner] or (weds and registered[k] < day(max(weds))):
                partner = -1  # bought before they married, or before the 配偶 was of age: the 户主's alone
        holders = (head, partner) if partner >= 0 else (head,)
        home = people.address[head]
        found.append(
            (registered[k], holders, unit, home, rights, float(areas[k]), CURRENT, registered[k], code)
        )
        if can_sell[k]:
            old_unit = f"{code[:6]}{code[6:9]}001GB{int(parcels[k, 1]):05d}F{n + k + 1:08d}"
            old = (
                bought[k],
                (head,),
                old_unit,
                old_addresses[k],
                rights,
                float(old_areas[k]),
                CANCELLED,
                sold[k],
                code,
            )
            found.append(old)

    # One certificate per holder: a joint home gives the 户主 and the 配偶 one each.
    certs = [(*f[:1], holder, *f[2:], len(f[1]) > 1) for f in found for holder in f[1]]
    certs.sort(key=lambda c: (c[0], c[2], people.person_id[c[1]]))
    minutes = rng.integers(9 * 60, 17 * 60, len(certs))
    size = min(len(certs), bad_rows_per_kind(len(certs)))
    bad = set(rng.choice(len(certs), size=size, replace=False).tolist())
    serial_of_year: dict[int, int] = {}
    rows: list[tuple[Any, ...]] = []
    bad_rows: list[BadRow] = []
    for k, (reg_day, holder, unit, place, rights, area, status, changed, code, shared) in enumerate(certs):
        on = reg_day.astype(dt.date)
        serial_of_year[on.year] = serial_of_year.get(on.year, 0) + 1
        cert_no = f"津（{on.year}）武清区不动产权第{serial_of_year[on.year]:07d}号"
        owner_id = people.person_id[holder]
        if k in bad:
            owner_id = spoil_check_char(owner_id)
            bad_rows.append(BadRow("bad_check_char", cert_no, "owner_id"))
        share = JOINT if shared else SOLE
        stamp = clock(changed.astype(dt.date), int(minutes[k]))
        rows.append(
            (0, cert_no, unit, people.name[holder], owner_id, share, place, rights[0], rights[1],
             f"{area:.2f}", on.isoformat(), status, code, stamp)
        )  # fmt: skip
    rows.sort(key=lambda r: (r[13], r[1]))  # entered in the order they changed, ids in that order
    rows = [(i + 1, *r[1:]) for i, r in enumerate(rows)]
    return RowBatch(rows, bad_rows, max((r[13] for r in rows), default=None))


def create_property_db(path: Path, *, replace: bool = False) -> None:
    create_sqlite(path, _DDL, replace=replace)


def insert_property_rows(path: Path, rows: Sequence[tuple[Any, ...]]) -> None:
    insert_sqlite(path, PROPERTY_TABLE, PROPERTY_COLUMNS, rows)


def read_properties(path: Path) -> list[dict[str, Any]]:
    return read_sqlite(path, PROPERTY_TABLE)


__all__ = [
    "CANCELLED",
    "CURRENT",
    "DEFAULT_PROPERTY_PATH",
    "JOINT",
    "OWNER_AGE",
    "PROPERTY_COLUMNS",
    "PROPERTY_TABLE",
    "SOLE",
    "UNIFIED_SINCE",
    "PropertyBatch",
    "create_property_db",
    "insert_property_rows",
    "property_rows",
    "read_properties",
]
