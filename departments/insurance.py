"""人社 社会保险参保: the insured-persons export of 天津市武清区人力资源和社会保障局 (a CSV drop).

Example::

    batch = insurance_rows(rng, people, usable, employers)   # employers: (uscc, name) in business
    write_insurance_export(root / DEFAULT_INSURANCE_DIR, batch.rows)

The bureau's social-insurance system exports its whole register of insured persons every day
as one UTF-8 CSV with Chinese headers (``INSURANCE_HEADER``), replacing the previous export: the
connector compares it with the last one it read (snapshot change detection). One row per
insured resident aged 16 or more: about half of those of working age are employees of a
business in the licence register (企业职工基本养老保险 and 职工基本医疗保险, the employer named
by its 统一社会信用代码), the others are insured as residents (城乡居民基本养老保险 and
城乡居民基本医疗保险). A few rows carry an ID with a wrong check character, for the contract
to quarantine.
"""

from __future__ import annotations

import csv
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
    age_on,
    bad_rows_per_kind,
    clock,
    day,
    spoil_check_char,
    township_codes,
    uniform_days,
    write_csv,
    years,
)

DEFAULT_INSURANCE_DIR = Path("renshe") / "export"
INSURANCE_FILE = "insured_persons.csv"
ENCODING = "utf-8-sig"  # with a BOM, so that Excel and WPS open it as UTF-8
EMPLOYEE = ("企业职工基本养老保险", "职工基本医疗保险")
RESIDENT = ("城乡居民基本养老保险", "城乡居民基本医疗保险")
STATUSES = ("正常参保", "暂停缴费", "终止参保")
SINCE = dt.date(1998, 1, 1)  # the register's earliest enrolment (the 1998 system)
INSURANCE_HEADER = (
    "参保证明编号", "姓名", "公民身份号码", "养老保险险种", "医疗保险险种", "参保单位名称",
    "参保单位统一社会信用代码", "参保日期", "参保状态", "参保地镇街代码", "更新时间",
)  # fmt: skip


InsuranceBatch = RowBatch


def insurance_rows(
    rng: np.random.Generator,
    people: Population,
    usable: np.ndarray,
    employers: Sequence[tuple[str, str]],
) -> RowBatch:
    """The insured persons among the registry's clean rows (``usable``); ``employers``: the
    (统一社会信用代码, 名称) of businesses in the licence register that may employ them."""
    yesterday = day(BASE_DATE - dt.timedelta(days=1))
    age = age_on(people.birth, day(BASE_DATE))
    # Of age (16; an employee 18) by yesterday, counted from the birthday itself.
    sixteen, eighteen = (people.birth + years(a).astype("timedelta64[D]") for a in (16, 18))
    insured = np.flatnonzero(usable & (sixteen <= yesterday))
    insured = insured[rng.random(len(insured)) < 0.85]
    n = len(insured)
    working = (eighteen[insured] <= yesterday) & (age[insured] < 60)
    employed = working & (rng.random(n) < 0.55) & (len(employers) > 0)
    employer = rng.integers(0, max(1, len(employers)), n)
    of_age = np.where(employed, eighteen[insured], sixteen[insured])
    lo = np.maximum(day(SINCE), of_age)
    since = uniform_days(rng, lo, np.full(n, yesterday))
    changed = uniform_days(rng, since, np.full(n, yesterday))
    status = rng.choice(len(STATUSES), size=n, p=[0.9, 0.07, 0.03])
    minutes = rng.integers(8 * 60, 18 * 60, n)
    codes = township_codes(people.township[insured].tolist())
    bad = set(rng.choice(n, size=min(n, bad_rows_per_kind(n)), replace=False).tolist()) if n else set()

    # Numbered in the order people enrolled (a stable key: a change to one row renumbers none),
    # exported in the order they last changed.
    ids = np.array(people.person_id, dtype=object)[insured].astype(str)
    serial = np.empty(n, dtype=np.int64)
    serial[np.lexsort((ids, since))] = np.arange(1, n + 1)
    rows: list[tuple[Any, ...]] = []
    bad_rows: list[BadRow] = []
    for k in np.lexsort((ids, minutes, changed)).tolist():
        person = int(insured[k])
        cert_no = f"SB120114{int(serial[k]):010d}"
        person_id = people.person_id[person]
        if k in bad:
            person_id = spoil_check_char(person_id)
            bad_rows.append(BadRow("bad_check_char", cert_no, "person_id"))
        schemes = EMPLOYEE if employed[k] else RESIDENT
        uscc, firm = employers[int(employer[k])] if employed[k] else ("", "")
        rows.append(
            (cert_no, people.name[person], person_id, schemes[0], schemes[1], firm, uscc,
             since[k].astype(dt.date).isoformat(), STATUSES[int(status[k])], codes[k],
             clock(changed[k].astype(dt.date), int(minutes[k]), sep=" "))
        )  # fmt: skip
    return RowBatch(rows, bad_rows, max((r[10] for r in rows), default=None))


def write_insurance_export(export_dir: Path, rows: Sequence[Sequence[Any]]) -> Path:
    """Replace the day's full export atomically."""
    return write_csv(Path(export_dir) / INSURANCE_FILE, INSURANCE_HEADER, rows, ENCODING)


def read_insurance_export(export_dir: Path) -> list[dict[str, str]]:
    with (export_dir / INSURANCE_FILE).open(encoding=ENCODING, newline="") as f:
        return list(csv.DictReader(f))


__all__ = [
    "DEFAULT_INSURANCE_DIR",
    "EMPLOYEE",
    "INSURANCE_FILE",
    "INSURANCE_HEADER",
    "RESIDENT",
    "SINCE",
    "STATUSES",
    "InsuranceBatch",
    "insurance_rows",
    "read_insurance_export",
    "write_insurance_export",
]
