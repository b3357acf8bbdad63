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

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from departments.population import (
    BASE_DATE,
    BadRow,
    Population,
    age_on,
    bad_rows_per_kind,
    day,
    draw_addresses,
    spoil_check_char,
    township_codes,
    townships,
)

PROPERTY_TABLE = "property_right"
DEFAULT_PROPERTY_PATH = Path("budongchan") / "property.db"
UNIFIED_SINCE = dt.date(2015, 3, 1)  # 不动产登记暂行条例 in force
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


@dataclass
class PropertyBatch:
    rows: list[tuple[Any, ...]]
    bad_rows: list[BadRow]
    watermark: str | None


def _between(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A day in [lo, hi] for each pair (datetime64[D] arrays, lo <= hi)."""
    span = (hi - lo).astype(np.int64)
    return lo + np.floor(rng.random(len(lo)) * (span + 1)).astype(np.int64).astype("timedelta64[D]")


def property_rows(rng: np.random.Generator, people: Population, usable: np.ndarray) -> PropertyBatch:
    """The 不动产权证书 of the registry's households (``usable``: the people whose registry row is
    clean): the current one of their home, jointly held with a 配偶 about half the time, and for
    some owners the 注销 one of a home sold before."""
    yesterday = day(BASE_DATE - dt.timedelta(days=1))
    adult = usable & (age_on(people.birth, day(BASE_DATE)) >= 22)
    relation = np.asarray(people.relation)
    spouse_of: dict[int, int] = {}
    for i in np.flatnonzero(usable & (relation == "配偶")):
        spouse_of[int(people.household[i])] = int(i)
    heads = np.flatnonzero(adult & (relation == "户主"))
    heads = heads[rng.random(len(heads)) < 0.72]
    n = len(heads)
    joint = rng.random(n) < 0.5
    sold_before = rng.random(n) < 0.06
    towns = people.township[heads]
    flat = np.array([townships()[t].kind == "街道" for t in towns.tolist()], dtype=bool)
    lo = np.maximum(day(UNIFIED_SINCE), people.birth[heads] + np.timedelta64(22 * 365, "D"))
    registered = _between(rng, np.minimum(lo, yesterday), np.full(n, yesterday))
    areas = np.round(
        np.where(flat, rng.normal(92, 22, n).clip(38, 180), rng.normal(135, 35, n).clip(60, 320)), 2
    )
    old_areas = np.round(rng.normal(75, 18, n).clip(35, 150), 2)
    addresses = draw_addresses(rng, towns, homes=True)
    old_addresses = draw_addresses(rng, towns, homes=True)
    parcels = rng.integers(1, 100_000, (n, 2))
    codes = township_codes(towns.tolist())

    # (registered day, owner, joint co-owner or -1, unit, location, rights, area, status, cancelled
    # day, township code)
    found: list[tuple[Any, ...]] = []
    for k, head in enumerate(heads.tolist()):
        code = codes[k]
        rights = _FLAT if flat[k] else _HOUSE
        unit = f"{code[:6]}{code[6:9]}001GB{int(parcels[k, 0]):05d}F{k + 1:08d}"
        partner = spouse_of.get(int(people.household[head]), -1) if joint[k] else -1
        found.append(
            (
                registered[k],
                head,
                partner,
                unit,
                addresses[k],
                rights,
                float(areas[k]),
                CURRENT,
                yesterday,
                code,
            )
        )
        if sold_before[k] and registered[k] > day(UNIFIED_SINCE) + np.timedelta64(1, "D"):
            bought = _between(
                rng, np.array([day(UNIFIED_SINCE)]), np.array([registered[k] - np.timedelta64(1, "D")])
            )[0]
            sold = _between(rng, np.array([bought]), np.array([registered[k]]))[0]
            old_unit = f"{code[:6]}{code[6:9]}001GB{int(parcels[k, 1]):05d}F{n + k + 1:08d}"
            found.append(
                (
                    bought,
                    head,
                    -1,
                    old_unit,
                    old_addresses[k],
                    rights,
                    float(old_areas[k]),
                    CANCELLED,
                    sold,
                    code,
                )
            )

    # One certificate per holder: a joint home gives the 户主 and the 配偶 one each.
    certs: list[tuple[Any, ...]] = []
    for reg_day, owner, partner, unit, place, rights, area, status, cancelled, code in found:
        share = JOINT if partner >= 0 else SOLE
        for holder in (owner, partner) if partner >= 0 else (owner,):
            certs.append((reg_day, holder, unit, share, place, rights, area, status, cancelled, code))
    certs.sort(key=lambda c: (c[0], c[2], people.person_id[c[1]]))
    minutes = rng.integers(9 * 60, 17 * 60, len(certs))
    serial_of_year: dict[int, int] = {}
    bad = set(
        rng.choice(len(certs), size=min(len(certs), bad_rows_per_kind(len(certs))), replace=False).tolist()
    )
    rows: list[tuple[Any, ...]] = []
    bad_rows: list[BadRow] = []
    for k, (reg_day, holder, unit, share, place, rights, area, status, cancelled, code) in enumerate(certs):
        on = reg_day.astype(dt.date)
        serial_of_year[on.year] = serial_of_year.get(on.year, 0) + 1
        cert_no = f"津（{on.year}）武清区不动产权第{serial_of_year[on.year]:07d}号"
        owner_id = people.person_id[holder]
        if k in bad:
            owner_id = spoil_check_char(owner_id)
            bad_rows.append(BadRow("bad_check_char", cert_no, "owner_id"))
        changed = (cancelled if status == CANCELLED else reg_day).astype(dt.date)
        minute = int(minutes[k])
        rows.append(
            (
                0,
                cert_no,
                unit,
                people.name[holder],
                owner_id,
                share,
                place,
                rights[0],
                rights[1],
                f"{area:.2f}",
                on.isoformat(),
                status,
                code,
                f"{changed.isoformat()}T{minute // 60:02d}:{minute % 60:02d}:00",
            )
        )
    rows.sort(key=lambda r: (r[13], r[1]))  # entered in the order they changed, ids in that order
    rows = [(i + 1, *r[1:]) for i, r in enumerate(rows)]
    return PropertyBatch(rows, bad_rows, max((r[13] for r in rows), default=None))


def create_property_db(path: Path, *, replace: bool = False) -> None:
    path = Path(path)
    if replace:
        path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(_DDL)


def insert_property_rows(path: Path, rows: Sequence[tuple[Any, ...]]) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        marks = ", ".join("?" * len(PROPERTY_COLUMNS))
        conn.executemany(
            f"INSERT INTO {PROPERTY_TABLE} ({', '.join(PROPERTY_COLUMNS)}) VALUES ({marks})", rows
        )


def read_properties(path: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {PROPERTY_TABLE} ORDER BY id")]


__all__ = [
    "CANCELLED",
    "CURRENT",
    "DEFAULT_PROPERTY_PATH",
    "JOINT",
    "PROPERTY_COLUMNS",
    "PROPERTY_TABLE",
    "SOLE",
    "PropertyBatch",
    "create_property_db",
    "insert_property_rows",
    "property_rows",
    "read_properties",
]
