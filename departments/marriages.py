"""民政 婚姻登记: the marriage-registration office's daily CSV export, dropped in a folder.

Example::

    batch = marriage_rows(rng, 5000, registry, couples, singles, taken)
    path = write_marriage_csv(root / "minzheng" / "drop", dt.date(2026, 11, 20), batch.rows)
    # → marriage_registrations_20261120.csv, GBK, CRLF, header 登记证字号,登记类型,…

The file is written under a ``.part`` name and renamed with :func:`os.replace`, so a reader of
the drop folder never sees half a file. Couples of the household registry appear with the
same ID, name and township as there; other residents mostly married someone from outside it.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from departments.population import (
    BASE_DATE,
    DISTRICT_CODE,
    UNKNOWN_TOWNSHIP_CODES,
    BadRow,
    Ints,
    People,
    age_on,
    apply_bad_rows,
    day,
    plan_bad_rows,
    spoil_check_char,
    synthesize_people,
    uniform_days,
    write_csv,
    years,
)

MARRIAGE_HEADER = (
    "登记证字号", "登记类型", "男方姓名", "男方公民身份号码", "男方户籍地镇街代码",
    "女方姓名", "女方公民身份号码", "女方户籍地镇街代码", "登记日期", "登记机关",
)  # fmt: skip
REGISTRY_OFFICE = "天津市武清区民政局婚姻登记处"
REGISTRATION_TYPE = "结婚"
DEFAULT_DROP_DIR = Path("minzheng") / "drop"
ENCODING = "gbk"
MIN_AGE = {True: 22, False: 20}  # 《民法典》第一千零四十七条: 男不得早于二十二周岁，女不得早于二十周岁
_CERT_NO = re.compile(rf"^J{DISTRICT_CODE}-(\d{{4}})-(\d{{6}})$")

MarriageRow = tuple[str, ...]


def marriage_file_name(on: dt.date) -> str:
    return f"marriage_registrations_{on:%Y%m%d}.csv"


def default_drop_dir(root: Path) -> Path:
    return Path(root) / DEFAULT_DROP_DIR


def write_marriage_csv(drop_dir: Path, on: dt.date, rows: Iterable[Sequence[str]]) -> Path:
    """Write the day's export atomically."""
    return write_csv(Path(drop_dir) / marriage_file_name(on), MARRIAGE_HEADER, rows, ENCODING)


def read_marriage_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding=ENCODING, newline="") as f:
        return list(csv.DictReader(f))


def marriage_files(drop_dir: Path) -> list[Path]:
    return sorted(drop_dir.glob("marriage_registrations_*.csv"))


@dataclass
class MarriageIndex:
    """What later batches need to know of the files already dropped."""

    spouses: set[str]  # every 公民身份号码 in a record
    serials: dict[int, int]  # year → highest 登记证字号 serial


def index_marriages(drop_dir: Path) -> MarriageIndex:
    spouses: set[str] = set()
    rows: list[dict[str, str]] = []
    for path in marriage_files(drop_dir):
        with path.open(encoding=ENCODING, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            cert, man, woman = (
                header.index(c) for c in ("登记证字号", "男方公民身份号码", "女方公民身份号码")
            )
            for row in reader:
                spouses.update((row[man], row[woman]))
                rows.append({"登记证字号": row[cert]})
    spouses.discard("")
    return MarriageIndex(spouses, last_serials(rows))


@dataclass
class MarriageBatch:
    rows: list[MarriageRow]
    bad_rows: list[BadRow]
    serials: dict[int, int] = field(default_factory=dict)  # year → last 登记证字号 serial used


def last_serials(rows: Iterable[dict[str, str]]) -> dict[int, int]:
    """The highest serial of each year among existing 登记证字号."""
    out: dict[int, int] = {}
    for row in rows:
        if m := _CERT_NO.match(row.get("登记证字号") or ""):
            year, serial = int(m[1]), int(m[2])
            out[year] = max(out.get(year, 0), serial)
    return out


def marriage_rows(
    rng: np.random.Generator,
    rows: int,
    registry: People,
    couples: Ints,
    singles: Ints,
    taken: set[str],
    *,
    on: dt.date | None = None,
    serials: dict[int, int] | None = None,
) -> MarriageBatch:
    """``rows`` 结婚 registrations, about 1 % of them bad.

    ``couples`` (k×2 indices into ``registry``: man, woman) marry each other; each of ``singles``
    marries someone outside the registry; the remaining records are between two outsiders (new
    persons, their ID bodies added to ``taken``). Without ``on`` the dates span the couples'
    lives up to the base day; with ``on`` every registration is of that day. ``serials`` continues
    the 登记证字号 numbering of each year.
    """
    plan = plan_bad_rows(rng, rows)
    n = plan.base_rows
    last = day(BASE_DATE) - np.timedelta64(1, "D")
    couples = couples[:n]
    singles = singles[: max(0, n - len(couples))]
    n_out = n - len(couples) - len(singles)

    # Both registry spouses: married once both were of age, within eight years of that.
    man, woman = couples[:, 0], couples[:, 1]
    if on is None:
        low = np.maximum(registry.birth[man] + years(22).astype("timedelta64[D]"),
                         registry.birth[woman] + years(20).astype("timedelta64[D]"))  # fmt: skip
        couple_day = uniform_days(rng, low, np.minimum(low + years(8).astype("timedelta64[D]"), last))
    else:
        couple_day = np.full(len(couples), day(on))

    # One registry spouse, one from elsewhere of about the same age.
    single_male = registry.male[singles]
    min_age = np.where(single_male, 22.0, 20.0)
    if on is None:
        low = registry.birth[singles] + years(min_age).astype("timedelta64[D]")
        single_day = uniform_days(rng, low, np.minimum(low + years(15).astype("timedelta64[D]"), last))
    else:
        single_day = np.full(len(singles), day(on))
    own_age = age_on(registry.birth[singles], single_day)
    partner_age = own_age + np.where(single_male, -2.0, 2.0) + rng.normal(0, 3, len(singles))
    partner_min = np.where(single_male, 20.2, 22.2)
    # Spread those under age over three years, not onto one birth day.
    partner_age = np.where(partner_age < partner_min, partner_min + rng.random(len(singles)) * 3, partner_age)

    # Two outsiders.
    if on is None:
        start = day(dt.date(1985, 1, 1))
        pair_day = start + (rng.random(n_out) ** 0.8 * (last - start).astype(np.int64)).astype(
            "timedelta64[D]"
        )
    else:
        pair_day = np.full(n_out, day(on))
    groom_age = 22.2 + rng.gamma(2.0, 2.5, n_out)
    bride_age = 20.2 + rng.gamma(2.0, 2.5, n_out)

    out_male = np.concatenate([~single_male, np.ones(n_out, bool), np.zeros(n_out, bool)])
    out_day = np.concatenate([single_day, pair_day, pair_day])
    out_age = np.concatenate([partner_age, groom_age, bride_age])
    out_birth = out_day - (out_age * 365.2425).astype(np.int64).astype("timedelta64[D]")
    others = synthesize_people(rng, out_male, out_birth, taken)
    # Each record: (man's name, ID, township), (woman's name, ID, township).
    reg = list(zip(registry.name, registry.person_id, registry.township_code, strict=True))
    ext = list(zip(others.name, others.person_id, others.township_code, strict=True))
    records = [(reg[a], reg[b]) for a, b in couples.tolist()]
    records += [
        (reg[s], ext[k]) if m else (ext[k], reg[s])
        for k, (s, m) in enumerate(zip(singles.tolist(), single_male.tolist(), strict=True))
    ]
    base = len(singles)
    records += list(zip(ext[base : base + n_out], ext[base + n_out :], strict=True))
    days = np.concatenate([couple_day, single_day, pair_day])

    # Numbered in date order within each year (登记证字号 J120114-YYYY-NNNNNN).
    order = np.lexsort((rng.random(n), days))
    day_text = np.datetime_as_string(days, unit="D").tolist()
    used = dict(serials or {})
    clean: list[MarriageRow] = []
    for i in order.tolist():
        year = int(day_text[i][:4])
        used[year] = used.get(year, 0) + 1
        if used[year] > 999_999:
            raise ValueError(f"more than 999999 marriage registrations in {year}")
        (m_name, m_id, m_code), (w_name, w_id, w_code) = records[i]
        clean.append((f"J{DISTRICT_CODE}-{year}-{used[year]:06d}", REGISTRATION_TYPE,
                      m_name, m_id, m_code, w_name, w_id, w_code, day_text[i], REGISTRY_OFFICE))  # fmt: skip

    def spoil(kind: str, i: int, row: MarriageRow) -> tuple[MarriageRow, BadRow]:
        values = list(row)
        side = i % 2  # alternate between the husband's and the wife's columns
        if kind == "bad_check_char":
            column = 3 + 3 * side
            values[column] = spoil_check_char(values[column])
        elif kind == "missing_required":
            column = 2 + 3 * side
            values[column] = ""
        else:
            column = 4 + 3 * side
            values[column] = UNKNOWN_TOWNSHIP_CODES[i % len(UNKNOWN_TOWNSHIP_CODES)]
        return tuple(values), BadRow(kind, row[0], MARRIAGE_HEADER[column])

    def duplicate(i: int, row: MarriageRow) -> tuple[MarriageRow, BadRow]:
        # Keyed in twice, the second time with the registration date one day off.
        earlier = (dt.date.fromisoformat(row[8]) - dt.timedelta(days=1)).isoformat()
        return (*row[:8], earlier, row[9]), BadRow("duplicate_key", row[0], "登记证字号")

    out, bad, _origin = apply_bad_rows(clean, plan, spoil, duplicate)
    return MarriageBatch(out, bad, used)


def registry_singles(
    rng: np.random.Generator, registry: People, eligible: np.ndarray, on: dt.date, share: float
) -> Ints:
    """A ``share`` of the ``eligible`` registry people old enough to marry on ``on``."""
    age = age_on(registry.birth, day(on))
    old_enough = age >= np.where(registry.male, 22.1, 20.1)
    pool = np.flatnonzero(eligible & old_enough)
    return np.sort(pool[rng.random(len(pool)) < share])


def pair_registry_people(
    rng: np.random.Generator, registry: People, pool: Ints, households: Sequence[str], limit: int
) -> Ints:
    """Up to ``limit`` couples (man, woman) among ``pool``, never two of the same household."""
    men = rng.permutation(pool[registry.male[pool]])
    women = rng.permutation(pool[~registry.male[pool]])
    k = min(len(men), len(women), limit)
    pairs = [
        (a, b)
        for a, b in zip(men[:k].tolist(), women[:k].tolist(), strict=True)
        if households[a] != households[b]
    ]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


__all__ = [
    "DEFAULT_DROP_DIR",
    "ENCODING",
    "MARRIAGE_HEADER",
    "MIN_AGE",
    "REGISTRATION_TYPE",
    "REGISTRY_OFFICE",
    "MarriageBatch",
    "MarriageIndex",
    "MarriageRow",
    "default_drop_dir",
    "index_marriages",
    "last_serials",
    "marriage_file_name",
    "marriage_files",
    "marriage_rows",
    "pair_registry_people",
    "read_marriage_csv",
    "registry_singles",
    "write_marriage_csv",
]
