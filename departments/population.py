"""A deterministic synthetic population of 天津市武清区, and the bad rows the demo plants in it.

Example::

    >>> import numpy as np
    >>> people = synthesize_population(np.random.default_rng(7), 100)
    >>> len(people), people.name[0], people.relation[0], people.person_id[0]
    (100, '吴语思', '户主', '120114197707151009')
    >>> people.address[0]
    '天津市武清区崔黄口镇振兴路157号'

Everything here is a pure function of a NumPy generator: the same seed gives the same people.
Identifiers are minted with :mod:`contracts.identifiers`, so every valid ID passes the checks
the pipeline runs. Dates are relative to :data:`BASE_TIME`, never to the wall clock.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import importlib.resources
import os
import random
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from contracts.identifiers import CITIZEN_ID_CHECK_CHARS, citizen_id_check_char

DISTRICT_CODE = "120114"
DISTRICT_NAME = "天津市武清区"
# The demo's "now": the moment of the first daily pull, Beijing time (UTC+8, no DST since 1991).
BASE_TIME = dt.datetime(2026, 11, 20, 8, 0, 0)
BASE_DATE = BASE_TIME.date()
SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
# Department systems were migrated to their current databases on these days; rows untouched
# since then carry an updated_at after the migration, not the registration date.
SYSTEM_MIGRATION = dt.date(2016, 3, 1)

BAD_ROW_KINDS = ("bad_check_char", "missing_required", "duplicate_key", "unknown_township")
# 12-digit codes shaped like 武清区 township codes that are not in contracts/regions/120114.csv.
UNKNOWN_TOWNSHIP_CODES = ("120114999000", "120114120000", "120114007000", "120114200000")

# Birth places of residents born outside 武清区 (GB/T 2260). 120222 is the code of 武清县
# before it became a district in 2000; older natives still carry it in their IDs.
ORIGIN_REGION_CODES = (
    "120222", "120101", "120102", "120103", "120104", "120105", "120106", "120110", "120111",
    "120113", "120115", "120116", "130181", "130223", "131002", "131003", "131022", "131081",
    "131082", "370102", "370202", "410102", "220102", "230102", "211402", "140105", "320102",
)  # fmt: skip

Days = npt.NDArray[np.datetime64]
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
Row = TypeVar("Row")

# ---------------------------------------------------------------------------------------------
# Townships and streets


@dataclass(frozen=True)
class Township:
    """One 镇街 of 武清区 with its 12-digit 统计用区划代码."""

    code: str
    name: str
    kind: str  # 街道 or 镇

    @property
    def stem(self) -> str:
        return self.name.removesuffix("街道").removesuffix("镇")


@functools.cache
def townships() -> tuple[Township, ...]:
    """The 25 townships of contracts/regions/120114.csv, in file order."""
    text = (
        importlib.resources.files("contracts")
        .joinpath("regions", f"{DISTRICT_CODE}.csv")
        .read_text(encoding="utf-8")
    )
    return tuple(Township(r["code"], r["name"], r["kind"]) for r in csv.DictReader(text.splitlines()))


# Roads of the urban sub-districts (the town roads are derived from the town's name).
_STREETS = {
    "杨村街道": ("泉州路", "雍阳西道", "雍阳中道", "光明道", "和平街", "振华东道", "前进道", "北斗星路"),
    "下朱庄街道": ("京津公路", "翠亨路", "福源道", "广贤路", "泉兴路", "下朱庄大街"),
    "东蒲洼街道": ("东蒲洼大街", "创业路", "祥园道", "新源道", "京滨路"),
    "黄庄街道": ("黄庄大街", "京滨大道", "永兴路", "兴华道"),
    "徐官屯街道": ("徐官屯大街", "泉发路", "兴业道", "丽园路"),
    "运河西街道": ("运河西路", "北运河路", "新华道", "京津路", "雍和道"),
}
_TOWN_ROADS = ("大街", "振兴路", "富民路", "建设路", "兴业道", "文化路")
_VILLAGES = (
    "王庄村", "李庄村", "东庄村", "西庄村", "前屯村", "后屯村", "大刘庄村", "小王庄村", "张家庄村",
    "马房村", "南里村", "北辛庄村", "于庄村", "韩村", "赵庄村", "高庄村", "新立村", "民主村",
)  # fmt: skip
# Share of the population living in each 街道 (the rest is spread over the 19 towns).
_SUBDISTRICT_WEIGHTS = {
    "杨村街道": 0.15, "下朱庄街道": 0.07, "东蒲洼街道": 0.06,
    "黄庄街道": 0.04, "徐官屯街道": 0.04, "运河西街道": 0.04,
}  # fmt: skip


@functools.cache
def _township_tables() -> tuple[tuple[str, ...], npt.NDArray[np.float64], tuple[tuple[str, ...], ...]]:
    towns = townships()
    urban = sum(_SUBDISTRICT_WEIGHTS.values())
    n_towns = sum(1 for t in towns if t.kind != "街道")
    weights = np.array([_SUBDISTRICT_WEIGHTS.get(t.name, (1 - urban) / n_towns) for t in towns])
    weights /= weights.sum()
    places = []
    for i, t in enumerate(towns):
        if t.name in _STREETS:
            places.append(_STREETS[t.name])
        else:
            roads = tuple(t.stem + r if r == "大街" else r for r in _TOWN_ROADS)
            places.append(roads + _VILLAGES[i % 6 :: 3])
    return tuple(t.code for t in towns), weights, tuple(places)


def draw_townships(rng: np.random.Generator, n: int) -> Ints:
    """Indices into :func:`townships`, weighted by population."""
    _, weights, _ = _township_tables()
    return rng.choice(len(weights), size=n, p=weights).astype(np.int64)


def township_codes(indices: Iterable[int]) -> list[str]:
    codes = _township_tables()[0]
    return [codes[i] for i in indices]


def draw_addresses(rng: np.random.Generator, township_idx: Ints, *, homes: bool = True) -> list[str]:
    """Addresses inside the given townships, e.g. 天津市武清区杨村街道泉州路32号3门501.

    ``homes=False`` gives business premises (no door or flat numbers).
    """
    towns = townships()
    _, _, places = _township_tables()
    n = len(township_idx)
    pick = rng.random(n)
    number = rng.integers(1, 300, n)
    door = rng.integers(1, 7, n)
    floor = rng.integers(1, 19, n)
    room = rng.integers(1, 5, n)
    flat = rng.random(n) < (0.8 if homes else 0.0)
    suite = rng.integers(101, 1200, n)
    out = []
    for i, t in enumerate(township_idx.tolist()):
        town = towns[t]
        options = places[t]
        place = options[int(pick[i] * len(options))]
        head = f"{DISTRICT_NAME}{town.name}{place}"
        if place.endswith("村"):
            out.append(f"{head}{number[i]}号")
        elif flat[i] and town.kind == "街道":
            out.append(f"{head}{number[i]}号{door[i]}门{floor[i]}{room[i]:02d}")
        elif not homes and pick[i] < 0.5:
            out.append(f"{head}{number[i]}号{suite[i]}室")
        else:
            out.append(f"{head}{number[i]}号")
    return out


# ---------------------------------------------------------------------------------------------
# Names

# Frequencies (per mille) of common surnames, roughly those of the 2020 census.
_SURNAMES = (
    ("王", 71), ("李", 70), ("张", 67), ("刘", 54), ("陈", 46), ("杨", 31), ("黄", 22), ("赵", 22),
    ("吴", 20), ("周", 19), ("徐", 15), ("孙", 15), ("马", 14), ("朱", 13), ("胡", 13), ("郭", 12),
    ("何", 12), ("高", 11), ("林", 11), ("罗", 10), ("郑", 9), ("梁", 9), ("谢", 8), ("宋", 8),
    ("唐", 8), ("许", 7), ("韩", 7), ("冯", 7), ("邓", 7), ("曹", 7), ("彭", 6), ("曾", 6),
    ("肖", 6), ("田", 6), ("董", 6), ("袁", 5), ("潘", 5), ("于", 5), ("蒋", 5), ("蔡", 5),
    ("余", 5), ("杜", 5), ("叶", 5), ("程", 5), ("苏", 4), ("魏", 4), ("吕", 4), ("丁", 4),
    ("任", 4), ("沈", 4), ("姚", 4), ("卢", 4), ("姜", 4), ("崔", 4), ("钟", 4), ("谭", 3),
    ("陆", 3), ("汪", 3), ("范", 3), ("金", 3), ("石", 3), ("廖", 3), ("贾", 3), ("夏", 3),
    ("付", 3), ("方", 3), ("白", 3), ("邹", 3), ("孟", 3), ("熊", 3), ("秦", 3), ("邱", 3),
    ("尹", 2), ("薛", 2), ("闫", 2), ("段", 2), ("雷", 2), ("侯", 2), ("史", 2), ("陶", 2),
    ("贺", 2), ("顾", 2), ("毛", 2), ("郝", 2), ("邵", 2), ("钱", 2), ("武", 2), ("孔", 2),
    ("常", 2), ("欧阳", 0.3), ("司马", 0.1), ("上官", 0.1),
)  # fmt: skip
_MALE_CHARS = (
    "伟强磊军勇杰涛明超斌鹏辉刚平建国华志宇浩俊峰博文海东亮林鑫昊晨旭天泽宏振永成凯帅健彬龙飞波"
    "晓子一轩睿然嘉毅德福庆春立新民忠金喜生"
)
_FEMALE_CHARS = (
    "秀英华玉兰芳丽敏静燕娟霞梅琳婷雪慧颖欣怡佳悦晶倩萍红艳丹璐淑桂凤洁莉雅琪涵梦思诗月晓子一语彤馨瑶"
    "妍娜翠荣爱珍春美"
)
_SURNAME_CHARS = tuple(s for s, _ in _SURNAMES)
_SURNAME_P = np.array([w for _, w in _SURNAMES], dtype=np.float64) / sum(w for _, w in _SURNAMES)


def draw_surnames(rng: np.random.Generator, n: int) -> Ints:
    return rng.choice(len(_SURNAME_CHARS), size=n, p=_SURNAME_P).astype(np.int64)


def compose_names(rng: np.random.Generator, surname_idx: Ints, male: Bools) -> list[str]:
    """Surname plus a one- or two-character given name fitting the gender."""
    n = len(surname_idx)
    first = rng.random(n)
    second = rng.random(n)
    two = rng.random(n) < 0.8
    out = []
    for s, m, a, b, t in zip(surname_idx.tolist(), male.tolist(), first, second, two.tolist(), strict=True):
        pool = _MALE_CHARS if m else _FEMALE_CHARS
        given = pool[int(a * len(pool))] + (pool[int(b * len(pool))] if t else "")
        out.append(_SURNAME_CHARS[s] + given)
    return out


def draw_names(rng: np.random.Generator, male: Bools) -> list[str]:
    return compose_names(rng, draw_surnames(rng, len(male)), male)


_ETHNICITIES = (
    ("汉族", 955), ("回族", 18), ("满族", 12), ("蒙古族", 5), ("朝鲜族", 3), ("土家族", 2), ("壮族", 2),
    ("苗族", 1), ("维吾尔族", 1), ("彝族", 1),
)  # fmt: skip


def draw_ethnicities(rng: np.random.Generator, n: int) -> list[str]:
    p = np.array([w for _, w in _ETHNICITIES], dtype=np.float64)
    idx = rng.choice(len(_ETHNICITIES), size=n, p=p / p.sum())
    return [_ETHNICITIES[i][0] for i in idx.tolist()]


# ---------------------------------------------------------------------------------------------
# Dates and identifiers


def day(value: dt.date) -> np.datetime64:
    return np.datetime64(value, "D")


def years(n: float | npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Whole days in ``n`` years, rounded so that ``birth + years(22)`` is past the 22nd birthday."""
    return np.ceil(np.asarray(n) * 366).astype(np.int64)


def uniform_days(rng: np.random.Generator, low: Days, high: Days) -> Days:
    """A day drawn uniformly from [low, high] for each pair (``low`` where ``high`` is earlier)."""
    span = np.maximum((high - low).astype(np.int64), 0)
    return low + (rng.random(len(low)) * (span + 1)).astype(np.int64).astype("timedelta64[D]")


def age_on(birth: Days, on: Days | np.datetime64) -> npt.NDArray[np.float64]:
    return np.asarray((on - birth).astype(np.int64) / 365.2425)


def bounded(
    values: npt.NDArray[np.float64], low: float, high: float, u: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Ages kept within [low, high], those outside spread over a few years inside the bound.

    Clipping would pile them on one birth day, and a day has only 500 ID sequences per gender.
    """
    out = np.where(values < low, low + u * 3, values)
    return np.where(out > high, high - u * 5, out)


def draw_birth_regions(rng: np.random.Generator, birth: Days, native_share: float) -> list[str]:
    """ID region codes: 120114 for natives (120222 for some born before 2000), else elsewhere."""
    n = len(birth)
    native = rng.random(n) < native_share
    old_county = (birth < day(dt.date(2000, 6, 1))) & (rng.random(n) < 0.1)
    other = rng.integers(1, len(ORIGIN_REGION_CODES), n)
    return [
        ("120222" if old else DISTRICT_CODE) if nat else ORIGIN_REGION_CODES[o]
        for nat, old, o in zip(native.tolist(), old_county.tolist(), other.tolist(), strict=True)
    ]


def mint_citizen_ids(
    rng: np.random.Generator, regions: Sequence[str], birth: Days, male: Bools, taken: set[str]
) -> list[str]:
    """Unique 18-character IDs: region, birth date, a sequence whose last digit is odd for men.

    ``taken`` holds the 17-character bodies already used and is updated in place.
    """
    dates = [d.replace("-", "") for d in np.datetime_as_string(birth, unit="D").tolist()]
    seq = 2 * rng.integers(0, 500, len(dates)) + male.astype(np.int64)
    retry = random.Random(int(rng.integers(2**62)))
    out = []
    for region, date, s, m in zip(regions, dates, seq.tolist(), male.tolist(), strict=True):
        body = f"{region}{date}{s:03d}"
        tries = 0
        while body in taken:
            tries += 1
            if tries > 2000:
                raise RuntimeError(f"no free citizen ID sequence for {region} {date}")
            body = f"{region}{date}{2 * retry.randrange(500) + int(m):03d}"
        taken.add(body)
        # GB 11643 §5.2: the 18th character is the MOD 11-2 check character of the first 17.
        out.append(body + citizen_id_check_char(body))
    return out


def spoil_check_char(identifier: str, alphabet: str = CITIZEN_ID_CHECK_CHARS) -> str:
    """The same identifier with another check character from ``alphabet`` (so a wrong one):
    citizen IDs by default, :data:`contracts.identifiers.USCC_CHARSET` for USCCs."""
    return identifier[:17] + alphabet[(alphabet.index(identifier[17]) + 1) % len(alphabet)]


def change_order(rng: np.random.Generator, days: Days, groups: Ints | None = None) -> Ints:
    """The order of rows by change day; rows of one group (>= 0) end up adjacent, groups and
    single rows are shuffled within a day."""
    key = rng.random(len(days))
    if groups is not None and len(groups) and groups.max() >= 0:
        group_key = rng.random(int(groups.max()) + 1)
        key = np.where(groups >= 0, group_key[np.maximum(groups, 0)], key)
    return np.lexsort((key, days)).astype(np.int64)


def timestamps_in_order(
    rng: np.random.Generator, days: Days, groups: Ints | None = None, tie_share: float = 0.25
) -> Days:
    """Sorted office-hour timestamps on the given (sorted) days. A row shares the second of the
    row before when both are of the same group (>= 0) and day (saved in one transaction), and
    about ``tie_share`` of the other rows do too.

    Several rows sharing a second is what incremental pulls must cope with (ties on the watermark).
    """
    n = len(days)
    seconds = rng.integers(8 * 3600 + 1800, 17 * 3600 + 1800, n)
    stamps = np.sort(days.astype("datetime64[s]") + seconds.astype("timedelta64[s]"))
    if n:
        tied = rng.random(n) < tie_share
        if groups is not None:
            tied[1:] |= (groups[1:] == groups[:-1]) & (groups[1:] >= 0)
        tied[0] = False
        tied[1:] &= days[1:] == days[:-1]
        keep = np.maximum.accumulate(np.where(tied, 0, np.arange(n)))
        stamps = stamps[keep]
    return stamps


def last_change_days(rng: np.random.Generator, earliest: Days, until: dt.date) -> Days:
    """Days of each record's last change: after its own event and the system migration."""
    start = day(SYSTEM_MIGRATION)
    span = (day(until) - start).astype(np.int64)
    drawn = start + (rng.random(len(earliest)) ** 0.7 * span).astype("timedelta64[D]")
    return np.minimum(np.maximum(earliest, drawn), day(until))


# ---------------------------------------------------------------------------------------------
# People and households


@dataclass
class People:
    """Column arrays of synthetic persons."""

    person_id: list[str]
    name: list[str]
    male: Bools
    birth: Days
    township: Ints  # index into townships()

    def __len__(self) -> int:
        return len(self.person_id)

    @property
    def gender(self) -> list[str]:
        return ["男" if m else "女" for m in self.male.tolist()]

    @property
    def township_code(self) -> list[str]:
        return township_codes(self.township.tolist())


def synthesize_people(
    rng: np.random.Generator, male: Bools, birth: Days, taken: set[str], *, native_share: float = 0.75
) -> People:
    """Persons of the given genders and birth days living in 武清区 (not in any household)."""
    regions = draw_birth_regions(rng, birth, native_share)
    ids = mint_citizen_ids(rng, regions, birth, male, taken)
    return People(ids, draw_names(rng, male), male, birth, draw_townships(rng, len(ids)))


HEAD, SPOUSE, CHILD, SON, DAUGHTER, DIL, SIL, GRANDCHILD, GRANDCHILD_D, FATHER, MOTHER = range(11)
# (roles, head's youngest and oldest age, share of households). Position 2 anchors the in-law
# and the grandchildren; a truncated template is still a valid household.
_TEMPLATES = (
    ((HEAD,), 18, 90, 0.14),
    ((HEAD, SPOUSE), 23, 88, 0.22),
    ((HEAD, CHILD), 40, 80, 0.04),
    ((HEAD, SPOUSE, CHILD), 25, 70, 0.24),
    ((HEAD, SPOUSE, CHILD, CHILD), 28, 65, 0.12),
    ((HEAD, SPOUSE, CHILD, MOTHER), 28, 60, 0.06),
    ((HEAD, SPOUSE, CHILD, FATHER, MOTHER), 28, 55, 0.03),
    ((HEAD, SPOUSE, SON, DIL, GRANDCHILD), 50, 85, 0.08),
    ((HEAD, SPOUSE, SON, DIL, GRANDCHILD, GRANDCHILD), 52, 85, 0.04),
    ((HEAD, SPOUSE, DAUGHTER, SIL, GRANDCHILD_D), 50, 85, 0.03),
)
# Married couples inside a household template: positions of the two spouses.
_COUPLES = ((HEAD, SPOUSE), (SON, DIL), (DAUGHTER, SIL), (FATHER, MOTHER))
_RELATIONS = {
    HEAD: ("户主", "户主"), SPOUSE: ("配偶", "配偶"), CHILD: ("子", "女"), SON: ("子", "子"),
    DAUGHTER: ("女", "女"), DIL: ("儿媳", "儿媳"), SIL: ("女婿", "女婿"), GRANDCHILD: ("孙子", "孙女"),
    GRANDCHILD_D: ("外孙子", "外孙女"), FATHER: ("父亲", "父亲"), MOTHER: ("母亲", "母亲"),
}  # fmt: skip
HEAD_RELATION = "户主"


@dataclass
class Population(People):
    """Registered residents grouped into households (户), one 户主 each."""

    ethnicity: list[str]
    address: list[str]
    household_no: list[str]
    relation: list[str]
    registered_on: Days
    household: Ints  # household index, 0-based within this population
    couples: Ints  # (k, 2) member indices of married couples: man, woman

    def adults(self, on: dt.date, min_age: float = 18.0) -> Ints:
        return np.flatnonzero(age_on(self.birth, day(on)) >= min_age)


def household_number(township_code: str, serial: int) -> str:
    """户号: the township's 3-digit part and a 9-digit serial (12 characters)."""
    return f"{township_code[6:9]}{serial:09d}"


def synthesize_population(
    rng: np.random.Generator,
    n: int,
    *,
    taken: set[str] | None = None,
    first_household: int = 1,
    as_of: dt.date = BASE_DATE,
    native_share: float = 0.85,
) -> Population:
    """``n`` residents in households of one to six, born before ``as_of``.

    ``taken`` (17-character ID bodies already in use) is updated in place; household numbers
    count up from ``first_household``.
    """
    taken = set() if taken is None else taken
    shares = np.array([t[3] for t in _TEMPLATES])
    sizes_of = np.array([len(t[0]) for t in _TEMPLATES])
    mean = float((shares * sizes_of).sum())
    template = rng.choice(len(_TEMPLATES), size=int(n / mean * 1.2) + 8, p=shares / shares.sum())
    sizes = sizes_of[template]
    ends = np.cumsum(sizes)
    h = int(np.searchsorted(ends, n)) + 1 if n else 0
    template, sizes = template[:h], sizes[:h].copy()
    if h:
        sizes[-1] -= int(ends[h - 1]) - n  # truncate the last household to fit exactly
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    member_hh = np.repeat(np.arange(h), sizes)
    pos = np.arange(n) - starts[member_hh]
    roles_table = np.full((len(_TEMPLATES), 6), -1)
    for i, (roles, *_rest) in enumerate(_TEMPLATES):
        roles_table[i, : len(roles)] = roles
    role = roles_table[template[member_hh], pos]

    # Ages at as_of, role by role; in-laws and grandchildren follow the member at position 2.
    lo = np.array([t[1] for t in _TEMPLATES])[template]
    hi = np.array([t[2] for t in _TEMPLATES])[template]
    head_age = lo + rng.random(h) * (hi - lo)
    head_male_p = np.where(template == 0, 0.5, np.where(template == 2, 0.35, 0.85))
    head_male = rng.random(h) < head_male_p
    u = rng.random(n)
    noise = rng.normal(0.0, 2.5, n)
    ha = head_age[member_hh]
    age = np.zeros(n)
    age[role == HEAD] = ha[role == HEAD]
    m = role == SPOUSE
    age[m] = bounded(ha[m] + np.where(head_male[member_hh[m]], -2.0, 2.0) + noise[m], 23, 100, u[m])
    m = role == CHILD
    span = np.minimum(40, ha[m] - 0.1)
    age[m] = ha[m] - (22 + u[m] * (span - 22))
    m = (role == SON) | (role == DAUGHTER)
    age[m] = ha[m] - (22 + u[m] * (np.minimum(35, ha[m] - 24) - 22))
    m = (role == FATHER) | (role == MOTHER)
    age[m] = bounded(ha[m] + 22 + u[m] * 13, 23, 100, u[m])
    anchor = age[starts[member_hh] + np.minimum(pos, 2)]
    m = role == DIL
    age[m] = bounded(anchor[m] - 1 + noise[m], 23, 100, u[m])
    m = role == SIL
    age[m] = bounded(anchor[m] + 1 + noise[m], 23, 100, u[m])
    m = (role == GRANDCHILD) | (role == GRANDCHILD_D)
    age[m] = anchor[m] - (22 + u[m] * (np.minimum(35, anchor[m] - 0.1) - 22))
    birth = day(as_of) - np.maximum(1, (age * 365.2425).astype(np.int64)).astype("timedelta64[D]")

    coin = rng.random(n) < 0.51
    male = np.select(
        [role == HEAD, role == SPOUSE, (role == CHILD) | (role == GRANDCHILD) | (role == GRANDCHILD_D)],
        [head_male[member_hh], ~head_male[member_hh], coin],
        default=np.isin(role, [SON, SIL, FATHER]),
    )
    relation = [_RELATIONS[r][0 if mm else 1] for r, mm in zip(role.tolist(), male.tolist(), strict=True)]

    # Surnames: the male line (S0), the head's wife's or the female head's own (S1), a daughter's
    # husband's (S2, also his children's); mothers and daughters-in-law bring their own.
    s = draw_surnames(rng, 3 * h).reshape(3, h) if h else np.zeros((3, 0), dtype=np.int64)
    own = draw_surnames(rng, n)
    s0, s1, s2 = s[0][member_hh], s[1][member_hh], s[2][member_hh]
    couple_member = (role == HEAD) | (role == SPOUSE)
    surname = np.select(
        [
            couple_member & male,
            couple_member & ~male,
            np.isin(role, [CHILD, SON, DAUGHTER, GRANDCHILD]),
            role == FATHER,
            np.isin(role, [SIL, GRANDCHILD_D]),
        ],
        [s0, s1, s0, np.where(head_male[member_hh], s0, s1), s2],
        default=own,
    )
    names = compose_names(rng, surname, male)

    regions = draw_birth_regions(rng, birth, native_share)
    ids = mint_citizen_ids(rng, regions, birth, male, taken)
    native = np.array([r in (DISTRICT_CODE, "120222") for r in regions], dtype=bool)
    # Natives were registered days after birth (not before the 1958 户口登记条例); others moved in.
    after_birth = birth + rng.integers(3, 60, n).astype("timedelta64[D]")
    lived = (day(as_of) - birth).astype(np.int64)
    moved_in = birth + (rng.random(n) * lived).astype(np.int64).astype("timedelta64[D]")
    registered = np.where(native, after_birth, moved_in)
    floor_day = day(dt.date(1958, 1, 9)) + rng.integers(0, 365, n).astype("timedelta64[D]")
    registered = np.minimum(np.maximum(registered, floor_day), day(as_of) - np.timedelta64(1, "D"))
    registered = np.maximum(registered, birth)

    hh_town = draw_townships(rng, h)
    hh_codes = township_codes(hh_town.tolist())
    hh_address = draw_addresses(rng, hh_town)
    hh_no = [household_number(c, first_household + i) for i, c in enumerate(hh_codes)]
    hh_eth = draw_ethnicities(rng, h)
    member = member_hh.tolist()

    couples = []
    for a, b in _COUPLES:
        for t, (roles, *_rest) in enumerate(_TEMPLATES):
            if a in roles and b in roles:
                ia, ib = roles.index(a), roles.index(b)
                sel = np.flatnonzero((template == t) & (sizes > max(ia, ib)))
                couples.append(np.stack([starts[sel] + ia, starts[sel] + ib], axis=1))
    pairs = np.concatenate(couples) if couples else np.zeros((0, 2), dtype=np.int64)
    flip = ~male[pairs[:, 0]]
    pairs[flip] = pairs[flip][:, ::-1]
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]

    return Population(
        person_id=ids,
        name=names,
        male=male,
        birth=birth,
        township=hh_town[member_hh],
        ethnicity=[hh_eth[i] for i in member],
        address=[hh_address[i] for i in member],
        household_no=[hh_no[i] for i in member],
        relation=relation,
        registered_on=registered,
        household=member_hh.astype(np.int64),
        couples=pairs.astype(np.int64),
    )


# ---------------------------------------------------------------------------------------------
# Deliberately bad rows


@dataclass(frozen=True)
class BadRow:
    """One deliberately bad source row, as recorded in the manifest."""

    kind: str
    key: str
    column: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "key": self.key, "column": self.column}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> BadRow:
        return cls(data["kind"], data["key"], data["column"])


@dataclass
class RowBatch:
    """A register's generated rows, the deliberately bad ones among them, its high watermark."""

    rows: list[tuple[Any, ...]]
    bad_rows: list[BadRow]
    watermark: str | None


def clock(on: dt.date, minute: int, sep: str = "T") -> str:
    """``on`` at ``minute`` past midnight, as a source system writes it (``2026-11-19T10:40:00``)."""
    return f"{on.isoformat()}{sep}{minute // 60:02d}:{minute % 60:02d}:00"


def create_sqlite(path: Path, ddl: str, *, replace: bool = False) -> None:
    """A department's SQLite database at ``path`` with the tables of ``ddl``."""
    path = Path(path)
    if replace:
        path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(ddl)


def insert_sqlite(path: Path, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        marks = ", ".join("?" * len(columns))
        conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]], encoding: str) -> Path:
    """A department's CSV export written atomically (``*.part`` first, then :func:`os.replace`),
    CRLF line ends as Windows tools write them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with part.open("w", encoding=encoding, newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
    return path


def read_sqlite(path: Path, table: str) -> list[dict[str, Any]]:
    """Every row of ``table`` by id, as dicts."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]


def bad_rows_per_kind(rows: int) -> int:
    """How many rows of each bad kind a dataset of ``rows`` gets: about 1 % in all, none below 100."""
    return 0 if rows < 100 else max(1, round(rows / 400))


@dataclass(frozen=True)
class BadRowPlan:
    """Which of the ``base_rows`` clean rows to spoil, and how; duplicates add rows after them."""

    base_rows: int
    kinds: dict[int, str]

    @property
    def duplicates(self) -> int:
        return sum(1 for k in self.kinds.values() if k == "duplicate_key")


def plan_bad_rows(rng: np.random.Generator, rows: int, duplicable: Bools | None = None) -> BadRowPlan:
    """Spread the bad rows of a ``rows``-row dataset evenly at random over it.

    ``duplicable`` marks the clean rows that may be duplicated (e.g. not a 户主).
    """
    per = bad_rows_per_kind(rows)
    base = rows - per
    if per == 0:
        return BadRowPlan(base, {})
    mask = np.ones(base, dtype=bool) if duplicable is None else duplicable[:base]
    dup_pool = np.flatnonzero(mask)
    dups = rng.choice(dup_pool, size=min(per, len(dup_pool)), replace=False)
    rest = np.setdiff1d(np.arange(base), dups)
    others = rng.choice(rest, size=3 * per, replace=False)
    kinds = [k for k in BAD_ROW_KINDS if k != "duplicate_key" for _ in range(per)]
    rng.shuffle(others)
    plan = {int(i): "duplicate_key" for i in dups}
    plan.update({int(i): k for i, k in zip(others.tolist(), kinds, strict=True)})
    return BadRowPlan(base, dict(sorted(plan.items())))


def apply_bad_rows(
    rows: Sequence[Row],
    plan: BadRowPlan,
    spoil: Callable[[str, int, Row], tuple[Row, BadRow]],
    duplicate: Callable[[int, Row], tuple[Row, BadRow]],
) -> tuple[list[Row], list[BadRow], list[int]]:
    """The rows with the plan applied; ``spoil(kind, index, row)`` and ``duplicate(index, row)``
    return the new row and its manifest entry. Also returns each output row's source index."""
    out: list[Row] = []
    origin: list[int] = []
    bad: list[BadRow] = []
    for i, row in enumerate(rows):
        kind = plan.kinds.get(i)
        if kind is None:
            out.append(row)
            origin.append(i)
        elif kind == "duplicate_key":
            copy, entry = duplicate(i, row)
            out.extend((row, copy))
            origin.extend((i, i))
            bad.append(entry)
        else:
            spoilt, entry = spoil(kind, i, row)
            out.append(spoilt)
            origin.append(i)
            bad.append(entry)
    return out, bad, origin


__all__ = [
    "BAD_ROW_KINDS",
    "BASE_DATE",
    "BASE_TIME",
    "DISTRICT_CODE",
    "DISTRICT_NAME",
    "HEAD_RELATION",
    "ORIGIN_REGION_CODES",
    "SHANGHAI",
    "SYSTEM_MIGRATION",
    "UNKNOWN_TOWNSHIP_CODES",
    "BadRow",
    "BadRowPlan",
    "People",
    "Population",
    "RowBatch",
    "Township",
    "age_on",
    "apply_bad_rows",
    "bad_rows_per_kind",
    "bounded",
    "change_order",
    "clock",
    "compose_names",
    "create_sqlite",
    "day",
    "draw_addresses",
    "draw_birth_regions",
    "draw_ethnicities",
    "draw_names",
    "draw_surnames",
    "draw_townships",
    "household_number",
    "insert_sqlite",
    "last_change_days",
    "mint_citizen_ids",
    "plan_bad_rows",
    "read_sqlite",
    "spoil_check_char",
    "synthesize_people",
    "synthesize_population",
    "timestamps_in_order",
    "township_codes",
    "townships",
    "uniform_days",
    "write_csv",
    "years",
]
