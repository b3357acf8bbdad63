"""行政审批 食品经营许可: the permit decisions of 天津市武清区行政审批局 (a SQL table).

Example::

    batch = approval_rows(rng, root / DEFAULT_LICENCE_PATH, exclude=bad_usccs)   # the history
    create_approval_db(root / DEFAULT_APPROVAL_PATH, replace=True)
    insert_approval_rows(root / DEFAULT_APPROVAL_PATH, batch.rows)
    batch = approval_rows(rng, licences, on=day, first_id=n + 1, licence_rows=new)  # a day's

One row per 食品经营许可 decision in force (a permit runs five years, so the newest decision of
each food business of the licence register decided in the last five years): the applicant (by
its 统一社会信用代码, with the legal representative the licence register names), the permit
number (JY…), what it allows, and the two departments of 审管联动 — the approving 行政审批局
and the supervising 市场监督管理局, which is told of each decision (``sharing.supervision``)
and supervises the business from then on. A few rows carry a USCC with a wrong check
character, for the contract to quarantine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contracts.identifiers import USCC_CHARSET
from departments.licences import LICENCE_COLUMNS, LICENCE_TABLE
from departments.population import (
    BASE_DATE,
    BadRow,
    RowBatch,
    bad_rows_per_kind,
    clock,
    create_sqlite,
    insert_sqlite,
    read_sqlite,
    spoil_check_char,
)

APPROVAL_TABLE = "food_permit_decision"
DEFAULT_APPROVAL_PATH = Path("shenpi") / "approvals.db"
MATTER = "食品经营许可"
APPROVING_AUTHORITY = "天津市武清区行政审批局"
SUPERVISING_AUTHORITY = "天津市武清区市场监督管理局"
PERMIT_YEARS = 5  # 《食品经营许可和备案管理办法》第二十八条: 食品经营许可证有效期为五年
DECISION_TYPES = ("准予许可", "延续许可", "变更许可")
# 主体业态 (the first digit of the permit number after JY) and what each is allowed to do.
BUSINESS_FORMS = (
    ("食品销售经营者", "1", ("预包装食品销售（含冷藏冷冻食品）", "散装食品销售（不含冷藏冷冻食品）")),
    ("餐饮服务经营者", "2", ("热食类食品制售", "冷食类食品制售", "自制饮品制售")),
)
APPROVAL_COLUMNS = (
    "id", "approval_id", "licence_no", "matter", "decision_type", "applicant_name", "applicant_uscc",
    "legal_representative", "legal_representative_id", "business_address", "township_code",
    "business_form", "business_items", "decided_on", "valid_from", "valid_to",
    "approving_authority", "supervising_authority", "updated_at",
)  # fmt: skip

_DDL = f"""
CREATE TABLE {APPROVAL_TABLE} (
    id INTEGER PRIMARY KEY,
    approval_id CHAR(14),
    licence_no CHAR(16),
    matter VARCHAR(50),
    decision_type VARCHAR(10),
    applicant_name VARCHAR(200),
    applicant_uscc CHAR(18),
    legal_representative VARCHAR(50),
    legal_representative_id VARCHAR(18),
    business_address VARCHAR(200),
    township_code VARCHAR(12),
    business_form VARCHAR(20),
    business_items VARCHAR(200),
    decided_on CHAR(10),
    valid_from CHAR(10),
    valid_to CHAR(10),
    approving_authority VARCHAR(100),
    supervising_authority VARCHAR(100),
    updated_at CHAR(19)
);
CREATE INDEX ix_{APPROVAL_TABLE}_updated_at_id ON {APPROVAL_TABLE} (updated_at, id);
"""

_FOOD = ("食品", "餐饮")  # a business whose scope names either needs a 食品经营许可
_FIELDS = ("uscc", "name", "legal_representative", "legal_representative_id", "address",
           "township_code", "business_scope", "established_on", "status")  # fmt: skip


def food_businesses(licence_path: Path, exclude: set[str]) -> list[tuple[Any, ...]]:
    """The food businesses in business in the licence register (:data:`_FIELDS` of each), in
    code order, their code not in ``exclude`` (the register's deliberately bad rows)."""
    scope = " OR ".join(f"business_scope LIKE '%{word}%'" for word in _FOOD)
    with contextlib.closing(sqlite3.connect(licence_path)) as conn:
        found = conn.execute(
            f"SELECT {', '.join(_FIELDS)} FROM {LICENCE_TABLE} WHERE status IN ('存续', '在业') "
            f"AND uscc IS NOT NULL AND name IS NOT NULL AND ({scope}) ORDER BY uscc"
        ).fetchall()
    return [r for r in found if r[0] not in exclude]


def _new_food_businesses(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """:func:`food_businesses` of licence rows just written (a day's new registrations)."""
    at = [LICENCE_COLUMNS.index(f) for f in _FIELDS]
    picked = [tuple(r[i] for i in at) for r in rows]
    food = [p for p in picked if p[0] and p[1] and any(word in (p[6] or "") for word in _FOOD)]
    return sorted((p for p in food if p[8] in ("存续", "在业")), key=lambda p: p[0])


def approval_rows(
    rng: np.random.Generator,
    businesses: Sequence[tuple[Any, ...]],
    *,
    on: dt.date | None = None,
    first_id: int = 1,
) -> RowBatch:
    """A decision for each of ``businesses`` (:func:`food_businesses`), in order of entry.

    Without ``on``: the register's history, each decided on a day of the last five years (not
    before the business was established), about 1 % with a spoilt USCC. With ``on``: that day's
    decisions (new businesses: 准予许可), none spoilt.
    """
    n = len(businesses)
    yesterday = BASE_DATE - dt.timedelta(days=1)
    if on is None:
        window = yesterday - dt.timedelta(days=365 * PERMIT_YEARS - 1)
        earliest = [max(dt.date.fromisoformat(str(b[7])), window) if b[7] else yesterday for b in businesses]
        spans = np.array([(yesterday - e).days + 1 for e in earliest], dtype=np.int64)
        offsets = (rng.random(n) * spans).astype(np.int64) if n else np.zeros(0, np.int64)
        decided = [e + dt.timedelta(days=int(o)) for e, o in zip(earliest, offsets.tolist(), strict=True)]
        kinds = rng.choice(len(DECISION_TYPES), size=n, p=[0.7, 0.2, 0.1]).tolist()
        bad = set(rng.choice(n, size=min(n, bad_rows_per_kind(n)), replace=False).tolist()) if n else set()
    else:
        decided = [on] * n
        kinds = [0] * n
        bad = set()
    forms = [1 if "餐饮" in (b[6] or "") else 0 for b in businesses]
    items = rng.integers(1, 3, n).tolist()
    minutes = rng.integers(9 * 60, 17 * 60, n).tolist()
    serials = rng.permutation(n).tolist()
    order = sorted(range(n), key=lambda k: (decided[k], minutes[k], businesses[k][0]))
    rows: list[tuple[Any, ...]] = []
    bad_rows: list[BadRow] = []
    for at, k in enumerate(order):
        b = businesses[k]
        number = first_id + at
        approval_id = f"WQSP{decided[k].year}{number:06d}"
        form, digit, allowed = BUSINESS_FORMS[forms[k]]
        body = f"JY{digit}{b[5][:6]}{(first_id + serials[k]) % 10**6:06d}"
        licence_no = body + str(sum(int(c) for c in body[2:]) % 10)
        uscc = b[0]
        if k in bad:
            uscc = spoil_check_char(uscc, USCC_CHARSET)
            bad_rows.append(BadRow("bad_check_char", approval_id, "applicant_uscc"))
        until = _years_after(decided[k], PERMIT_YEARS) - dt.timedelta(days=1)
        on_day = decided[k].isoformat()
        rows.append(
            (number, approval_id, licence_no, MATTER, DECISION_TYPES[kinds[k]], b[1], uscc, b[2], b[3], b[4],
             b[5], form, "；".join(allowed[: items[k]]), on_day, on_day, until.isoformat(),
             APPROVING_AUTHORITY, SUPERVISING_AUTHORITY, clock(decided[k], minutes[k], sep=" "))
        )  # fmt: skip
    return RowBatch(rows, bad_rows, max((r[-1] for r in rows), default=None))


def _years_after(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February: the permit runs to the end of February
        return day.replace(year=day.year + years, day=28) + dt.timedelta(days=1)


def create_approval_db(path: Path, *, replace: bool = False) -> None:
    create_sqlite(path, _DDL, replace=replace)


def insert_approval_rows(path: Path, rows: Sequence[tuple[Any, ...]]) -> None:
    insert_sqlite(path, APPROVAL_TABLE, APPROVAL_COLUMNS, rows)


def read_approvals(path: Path) -> list[dict[str, Any]]:
    return read_sqlite(path, APPROVAL_TABLE)


def write_approvals(root: Path, rng: np.random.Generator, licence_path: Path, exclude: set[str]) -> RowBatch:
    """The register's history under ``root``: a decision for each food business in business."""
    batch = approval_rows(rng, food_businesses(licence_path, exclude))
    create_approval_db(root / DEFAULT_APPROVAL_PATH, replace=True)
    insert_approval_rows(root / DEFAULT_APPROVAL_PATH, batch.rows)
    return batch


def add_approvals(
    root: Path, rng: np.random.Generator, new_licences: Sequence[tuple[Any, ...]], on: dt.date
) -> RowBatch:
    """The day's decisions: a 准予许可 for each food business registered that day."""
    path = root / DEFAULT_APPROVAL_PATH
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (last,) = conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {APPROVAL_TABLE}").fetchone()
    batch = approval_rows(rng, _new_food_businesses(new_licences), on=on, first_id=int(last) + 1)
    insert_approval_rows(path, batch.rows)
    return batch


__all__ = [
    "APPROVAL_COLUMNS",
    "APPROVAL_TABLE",
    "APPROVING_AUTHORITY",
    "BUSINESS_FORMS",
    "DECISION_TYPES",
    "DEFAULT_APPROVAL_PATH",
    "MATTER",
    "PERMIT_YEARS",
    "SUPERVISING_AUTHORITY",
    "add_approvals",
    "approval_rows",
    "create_approval_db",
    "food_businesses",
    "insert_approval_rows",
    "read_approvals",
    "write_approvals",
]
