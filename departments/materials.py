"""政务服务 电子材料库: materials citizens submitted in earlier applications, kept by
天津市武清区政务服务办公室 (a SQL table).

Example::

    batch = write_materials(root, rng, people, usable)          # the library's history
    batch = add_materials(root, rng, people, on=day)             # the day's submissions
    read_materials(root / DEFAULT_MATERIAL_PATH)[0]["material_code"]   # 'photo'

When a citizen applies for a matter at a 政务服务 counter, the materials they hand in are
scanned into the district's library (电子材料库), one row per material: whose it is, which kind
(:data:`KINDS`), the matter and case it was submitted for, the day, how long it stays valid,
and the SHA-256 of the stored file. A later matter asking for the same kind of material may
reuse it while it is valid (``sharing.skipcheck``, 历史材料免交): a 近期免冠照片 for six months,
a 劳动合同 or a 房屋租赁合同 to the end of its term, the copy of a 中华人民共和国残疾人证 to the
card's expiry (a 第二代残疾人证 runs ten years). Some held materials have expired; a few rows
carry a holder ID with a wrong check character, for the contract to quarantine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from departments.population import (
    BASE_DATE,
    BadRow,
    People,
    RowBatch,
    age_on,
    bad_rows_per_kind,
    clock,
    create_sqlite,
    day,
    insert_sqlite,
    read_sqlite,
    spoil_check_char,
    township_codes,
)

MATERIAL_TABLE = "submitted_material"
DEFAULT_MATERIAL_PATH = Path("zhengwu") / "materials.db"
LIBRARY = "天津市武清区政务服务办公室"
# Material kinds the library keeps (code → name, as the matters catalogue's reused_materials).
PHOTO, LABOUR_CONTRACT, LEASE, DISABILITY_CARD = "photo", "labour-contract", "lease", "disability-card"
KINDS = {
    PHOTO: "近期免冠照片",
    LABOUR_CONTRACT: "劳动合同",
    LEASE: "房屋租赁合同",
    DISABILITY_CARD: "中华人民共和国残疾人证",
}
# The matters each kind is handed in for (matter code, name); the first is the usual one.
SUBMITTED_FOR = {
    PHOTO: (
        ("senior-preferential-card", "老年人优待证办理"),
        ("residence-permit", "居住证申领"),
        ("social-security-card", "社会保障卡申领"),
    ),
    LABOUR_CONTRACT: (("employment-registration", "就业登记"),),
    LEASE: (
        ("residence-permit", "居住证申领"),
        ("sole-trader-registration", "个体工商户设立登记"),
        ("school-enrolment", "义务教育阶段子女入学"),
    ),
    DISABILITY_CARD: (("disability-allowances", "残疾人两项补贴申请"),),
}
PHOTO_MONTHS = 6  # a 近期免冠照片: taken within the last six months
CARD_YEARS = 10  # 第二代中华人民共和国残疾人证: valid ten years
MATERIAL_COLUMNS = (
    "id", "material_id", "holder_id", "holder_name", "material_code", "material_name", "matter_code",
    "matter_name", "case_number", "submitted_on", "valid_to", "content_sha256", "township_code",
    "updated_at",
)  # fmt: skip

_DDL = f"""
CREATE TABLE {MATERIAL_TABLE} (
    id INTEGER PRIMARY KEY,
    material_id CHAR(16),
    holder_id VARCHAR(18),
    holder_name VARCHAR(50),
    material_code VARCHAR(32),
    material_name VARCHAR(50),
    matter_code VARCHAR(64),
    matter_name VARCHAR(100),
    case_number CHAR(18),
    submitted_on CHAR(10),
    valid_to CHAR(10),
    content_sha256 CHAR(64),
    township_code VARCHAR(12),
    updated_at CHAR(19)
);
CREATE INDEX ix_{MATERIAL_TABLE}_updated_at_id ON {MATERIAL_TABLE} (updated_at, id);
"""

# Of the residents aged 16 or more, the share holding each kind in the library (history), and
# the kinds of a day's submissions (weights).
_SHARE = {PHOTO: 0.10, LABOUR_CONTRACT: 0.12, LEASE: 0.05, DISABILITY_CARD: 0.015}
_DAILY_SHARE = 0.004  # of the residents aged 16 or more hand in a material on a given day
_DAILY_WEIGHTS = {PHOTO: 0.45, LABOUR_CONTRACT: 0.3, LEASE: 0.2, DISABILITY_CARD: 0.05}
# (youngest, oldest) age at submission of who hands each kind in.
_AGES = {PHOTO: (16, 120), LABOUR_CONTRACT: (18, 59), LEASE: (20, 64), DISABILITY_CARD: (16, 120)}


def _add_months(on: dt.date, months: int) -> dt.date:
    """``on`` plus ``months`` calendar months (the 31st of a shorter month: its last day)."""
    total = on.month - 1 + months
    year, month = on.year + total // 12, total % 12 + 1
    for last in (31, 30, 29, 28):
        with contextlib.suppress(ValueError):
            return dt.date(year, month, min(on.day, last))
    raise AssertionError("unreachable")


def _term(rng: np.random.Generator, kind: str, start: dt.date) -> dt.date:
    """The last day a material of ``kind`` starting on ``start`` is valid."""
    if kind == PHOTO:
        months = PHOTO_MONTHS
    elif kind == LABOUR_CONTRACT:  # fixed terms: most often three years
        months = 12 * int(rng.choice((1, 2, 3), p=(0.3, 0.2, 0.5)))
    elif kind == LEASE:
        months = 12 * int(rng.choice((1, 2), p=(0.7, 0.3)))
    else:
        months = 12 * CARD_YEARS
    return _add_months(start, months) - dt.timedelta(days=1)


def _drawn(rng: np.random.Generator, kind: str, on: dt.date | None) -> tuple[dt.date, dt.date]:
    """(submitted on, valid to) of a material of ``kind``: handed in ``on`` or, for the history,
    on a day of the last years (its term started shortly before)."""
    yesterday = BASE_DATE - dt.timedelta(days=1)
    if kind == DISABILITY_CARD:  # the card issued in the last twelve years, a copy handed in since
        issued = on or yesterday - dt.timedelta(days=int(rng.integers(0, 12 * 365)))
        valid_to = _term(rng, kind, issued)
        if on is not None:
            return on, valid_to
        since = max(issued, yesterday - dt.timedelta(days=5 * 365))
        return since + dt.timedelta(days=int(rng.integers(0, (yesterday - since).days + 1))), valid_to
    back = {PHOTO: 2 * 365, LABOUR_CONTRACT: 4 * 365, LEASE: 3 * 365}[kind]
    start = on or yesterday - dt.timedelta(days=int(rng.integers(0, back)))
    valid_to = _term(rng, kind, start)
    if on is not None or kind == PHOTO:
        return start, valid_to
    # a contract is handed in within a month of its start (not after yesterday)
    return min(start + dt.timedelta(days=int(rng.integers(0, 30))), yesterday), valid_to


def material_rows(
    rng: np.random.Generator,
    people: People,
    usable: np.ndarray,
    *,
    on: dt.date | None = None,
    first_id: int = 1,
) -> RowBatch:
    """The library's rows for ``people`` (``usable``: those whose registry row is clean), in
    order of entry.

    Without ``on``: the history — each resident aged 16 or more holds each kind with its
    :data:`_SHARE`, some long expired; about 1 % of rows with a spoilt holder ID. With ``on``:
    that day's submissions, none spoilt.
    """
    today = on or BASE_DATE - dt.timedelta(days=1)
    ages = age_on(people.birth, day(today))
    grown = np.flatnonzero(usable & (ages >= 16))
    held: list[tuple[int, str]] = []  # (person, kind)
    if on is None:
        for kind, share in _SHARE.items():
            low, high = _AGES[kind]
            fits = grown[(ages[grown] >= low) & (ages[grown] <= high)]
            held += [(int(p), kind) for p in fits[rng.random(len(fits)) < share].tolist()]
    elif len(grown):
        n = max(1, round(len(grown) * _DAILY_SHARE))
        who = rng.choice(grown, size=min(n, len(grown)), replace=False).tolist()
        kinds = list(_DAILY_WEIGHTS)
        drawn = rng.choice(len(kinds), size=len(who), p=list(_DAILY_WEIGHTS.values())).tolist()
        for p, k in zip(who, drawn, strict=True):
            low, high = _AGES[kinds[k]]
            held.append((int(p), kinds[k] if low <= ages[p] <= high else PHOTO))
    codes = township_codes(people.township.tolist())
    minutes = rng.integers(9 * 60, 17 * 60, len(held)).tolist()
    found = []
    for (person, kind), minute in zip(held, minutes, strict=True):
        submitted, valid_to = _drawn(rng, kind, on)
        choices = SUBMITTED_FOR[kind]
        if kind == PHOTO:  # the 优待证 is for those of 60 or more; the others go elsewhere
            old = age_on(people.birth[person : person + 1], day(submitted))[0] >= 60
            matter = choices[0] if old else choices[1 + int(rng.integers(0, 2))]
        else:
            matter = choices[int(rng.integers(0, len(choices)))]
        found.append((clock(submitted, minute), person, kind, matter, submitted, valid_to))
    found.sort(key=lambda f: (f[0], people.person_id[f[1]], f[2]))
    size = min(len(found), bad_rows_per_kind(len(found))) if on is None else 0
    bad = set(rng.choice(len(found), size=size, replace=False).tolist()) if size else set()
    rows: list[tuple[Any, ...]] = []
    bad_rows: list[BadRow] = []
    for k, (stamp, person, kind, (matter_code, matter_name), submitted, valid_to) in enumerate(found):
        number = first_id + k
        material_id = f"WQCL{submitted.year}{number:08d}"
        holder = people.person_id[person]
        # Stands in for the SHA-256 of the scanned file (the files themselves are not simulated).
        digest = hashlib.sha256(f"onceonly-demo-material:{material_id}:{holder}:{kind}".encode()).hexdigest()
        if k in bad:
            holder = spoil_check_char(holder)
            bad_rows.append(BadRow("bad_check_char", material_id, "holder_id"))
        case_number = f"WQSL{submitted:%Y%m%d}{number % 10**6:06d}"
        rows.append(
            (number, material_id, holder, people.name[person], kind, KINDS[kind], matter_code, matter_name,
             case_number, submitted.isoformat(), valid_to.isoformat(), digest, codes[person], stamp)
        )  # fmt: skip
    return RowBatch(rows, bad_rows, max((r[13] for r in rows), default=None))


def create_material_db(path: Path, *, replace: bool = False) -> None:
    create_sqlite(path, _DDL, replace=replace)


def insert_material_rows(path: Path, rows: Sequence[tuple[Any, ...]]) -> None:
    insert_sqlite(path, MATERIAL_TABLE, MATERIAL_COLUMNS, rows)


def read_materials(path: Path) -> list[dict[str, Any]]:
    return read_sqlite(path, MATERIAL_TABLE)


def write_materials(root: Path, rng: np.random.Generator, people: People, usable: np.ndarray) -> RowBatch:
    """The library's history under ``root``."""
    batch = material_rows(rng, people, usable)
    create_material_db(root / DEFAULT_MATERIAL_PATH, replace=True)
    insert_material_rows(root / DEFAULT_MATERIAL_PATH, batch.rows)
    return batch


def add_materials(root: Path, rng: np.random.Generator, people: People, on: dt.date) -> RowBatch:
    """The materials handed in on ``on`` by ``people`` (the registry's clean rows), appended."""
    path = root / DEFAULT_MATERIAL_PATH
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (last,) = conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {MATERIAL_TABLE}").fetchone()
    batch = material_rows(rng, people, np.ones(len(people), dtype=bool), on=on, first_id=int(last) + 1)
    insert_material_rows(path, batch.rows)
    return batch


__all__ = [
    "CARD_YEARS",
    "DEFAULT_MATERIAL_PATH",
    "DISABILITY_CARD",
    "KINDS",
    "LABOUR_CONTRACT",
    "LEASE",
    "LIBRARY",
    "MATERIAL_COLUMNS",
    "MATERIAL_TABLE",
    "PHOTO",
    "PHOTO_MONTHS",
    "SUBMITTED_FOR",
    "add_materials",
    "create_material_db",
    "insert_material_rows",
    "material_rows",
    "read_materials",
    "write_materials",
]
