"""卫健 出生医学证明: the birth-certificate register of 天津市武清区卫生健康委员会 (a SQL table).

Example::

    batch = birth_rows(rng, people, usable)          # from the synthesized population
    create_birth_db(root / DEFAULT_BIRTH_PATH, replace=True)
    insert_birth_rows(root / DEFAULT_BIRTH_PATH, batch.rows)

One row per 出生医学证明 issued by a hospital of the district since 1996 (when the certificate
began): the child, the hospital, the mother and the father. The children are the registry's own
(子/女 of a household's 户主 and 配偶, 孙子/孙女 of its 子 and 儿媳, 外孙子/外孙女 of its 女 and
女婿), so the parents named on a certificate are the registry's people: the counter finds a
parent's child, or a child's parents, through it. A few rows carry a child's ID with a wrong
check character, for the contract to quarantine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
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
    insert_sqlite,
    read_sqlite,
    spoil_check_char,
    township_codes,
)

BIRTH_TABLE = "birth_certificate"
DEFAULT_BIRTH_PATH = Path("weijian") / "births.db"
FIRST_YEAR = 1996  # 出生医学证明 since 1 January 1996
HOSPITALS = (
    "天津市武清区人民医院",
    "天津市武清区中医医院",
    "天津市武清区妇女儿童保健和计划生育服务中心",
    "天津市武清区第二人民医院",
)
BIRTH_COLUMNS = (
    "id", "cert_no", "child_name", "child_gender", "child_id", "birth_date", "birth_place",
    "mother_name", "mother_id", "father_name", "father_id", "issued_on", "township_code", "updated_at",
)  # fmt: skip

_DDL = f"""
CREATE TABLE {BIRTH_TABLE} (
    id INTEGER PRIMARY KEY,
    cert_no CHAR(10),
    child_name VARCHAR(50),
    child_gender VARCHAR(2),
    child_id VARCHAR(18),
    birth_date CHAR(10),
    birth_place VARCHAR(100),
    mother_name VARCHAR(50),
    mother_id VARCHAR(18),
    father_name VARCHAR(50),
    father_id VARCHAR(18),
    issued_on CHAR(10),
    township_code VARCHAR(12),
    updated_at CHAR(19)
);
CREATE INDEX ix_{BIRTH_TABLE}_updated_at_id ON {BIRTH_TABLE} (updated_at, id);
"""

# A child's relation to the 户主 → the relations of its parents in the same household.
_PARENTS = {
    "子": ("户主", "配偶"),
    "女": ("户主", "配偶"),
    "孙子": ("子", "儿媳"),
    "孙女": ("子", "儿媳"),
    "外孙子": ("女", "女婿"),
    "外孙女": ("女", "女婿"),
}


BirthBatch = RowBatch


def birth_rows(rng: np.random.Generator, people: Population, usable: np.ndarray) -> RowBatch:
    """A 出生医学证明 for every child of the registry born since 1996 whose two parents live in
    its household (``usable``: the people whose registry row is clean)."""
    first = day(dt.date(FIRST_YEAR, 1, 1))
    members: dict[int, dict[str, list[int]]] = {}
    for i in np.flatnonzero(usable):
        members.setdefault(int(people.household[i]), {}).setdefault(people.relation[i], []).append(int(i))
    found: list[tuple[int, int, int]] = []  # child, mother, father
    for i in np.flatnonzero(usable & (people.birth >= first)):
        relation = people.relation[i]
        if relation not in _PARENTS:
            continue
        household = members[int(people.household[i])]
        a, b = (household.get(r, []) for r in _PARENTS[relation])
        if len(a) != 1 or len(b) != 1 or bool(people.male[a[0]]) == bool(people.male[b[0]]):
            continue  # one parent only in this household, or not a couple: no certificate here
        mother, father = (b[0], a[0]) if people.male[a[0]] else (a[0], b[0])
        found.append((int(i), mother, father))
    found.sort(key=lambda f: (people.birth[f[0]], people.person_id[f[0]]))
    n = len(found)
    hospitals = rng.integers(0, len(HOSPITALS), n)
    delays = rng.integers(0, 4, n)
    minutes = rng.integers(8 * 60, 17 * 60, n)
    towns = township_codes(int(people.township[c]) for c, _, _ in found)
    bad = set(rng.choice(n, size=min(n, bad_rows_per_kind(n)), replace=False).tolist()) if n else set()
    rows: list[tuple[Any, ...]] = []
    bad_rows: list[BadRow] = []
    for k, (child, mother, father) in enumerate(found):
        born = people.birth[child].astype(dt.date)
        issued = min(born + dt.timedelta(days=int(delays[k])), BASE_DATE - dt.timedelta(days=1))
        cert_no = f"Q{120114000 + k + 1:09d}"
        child_id = people.person_id[child]
        if k in bad:
            child_id = spoil_check_char(child_id)
            bad_rows.append(BadRow("bad_check_char", cert_no, "child_id"))
        rows.append(
            (
                k + 1,
                cert_no,
                people.name[child],
                "男" if people.male[child] else "女",
                child_id,
                born.isoformat(),
                HOSPITALS[int(hospitals[k])],
                people.name[mother],
                people.person_id[mother],
                people.name[father],
                people.person_id[father],
                issued.isoformat(),
                towns[k],
                clock(issued, int(minutes[k])),
            )
        )
    rows.sort(key=lambda r: (r[13], r[0]))  # entered in the order they were issued, ids in that order
    rows = [(n + 1, *r[1:]) for n, r in enumerate(rows)]
    return RowBatch(rows, bad_rows, max((r[13] for r in rows), default=None))


def create_birth_db(path: Path, *, replace: bool = False) -> None:
    create_sqlite(path, _DDL, replace=replace)


def insert_birth_rows(path: Path, rows: Sequence[tuple[Any, ...]]) -> None:
    insert_sqlite(path, BIRTH_TABLE, BIRTH_COLUMNS, rows)


def read_births(path: Path) -> list[dict[str, Any]]:
    return read_sqlite(path, BIRTH_TABLE)


__all__ = [
    "BIRTH_COLUMNS",
    "BIRTH_TABLE",
    "DEFAULT_BIRTH_PATH",
    "HOSPITALS",
    "BirthBatch",
    "birth_rows",
    "create_birth_db",
    "insert_birth_rows",
    "read_births",
]
