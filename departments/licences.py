"""市场监管 营业执照: the business-licence register of 天津市武清区市场监督管理局 and its HTTP API.

Example::

    token = demo_token(20261121)
    with LicenceApi(root / "scjg" / "licences.db", token) as api:
        httpx.get(f"{api.base_url}/business-licences", params={"page": 1, "size": 500},
                  headers={"Authorization": f"Bearer {token}"}).json()
        # {"data": [{"uscc": "931201143994019804", …}], "page": 1, "size": 500, "total": 5000}

The register is a SQLite table ``business_licence`` of text columns (dates as YYYY-MM-DD,
``registered_capital`` as a decimal string in 万元, ``updated_at`` as ISO 8601 with +08:00).
:class:`LicenceApi` serves it with the standard library's threading HTTP server; a
:class:`Faults` object makes chosen pages fail, for tests of a connector's error handling.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import hmac
import json
import logging
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import numpy as np

from contracts.identifiers import USCC_CHARSET, organization_code_check_char, uscc_check_char
from departments.population import (
    BASE_DATE,
    DISTRICT_CODE,
    DISTRICT_NAME,
    SHANGHAI,
    SYSTEM_MIGRATION,
    UNKNOWN_TOWNSHIP_CODES,
    BadRow,
    Ints,
    People,
    age_on,
    apply_bad_rows,
    change_order,
    day,
    draw_addresses,
    draw_names,
    draw_townships,
    last_change_days,
    plan_bad_rows,
    spoil_check_char,
    timestamps_in_order,
    township_codes,
    years,
)
from departments.serving import DemoServer

logger = logging.getLogger(__name__)

LICENCE_TABLE = "business_licence"
LICENCE_COLUMNS = (
    "uscc", "name", "entity_type", "legal_representative", "legal_representative_id",
    "registered_capital", "established_on", "valid_from", "valid_to", "address", "township_code",
    "business_scope", "registration_authority", "status", "updated_at",
)  # fmt: skip
DEFAULT_LICENCE_PATH = Path("scjg") / "licences.db"
REGISTRATION_AUTHORITY = "天津市武清区市场监督管理局"
API_PREFIX = "/api/v1"
LICENCES_PATH = "/business-licences"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100

_DDL = f"""
CREATE TABLE {LICENCE_TABLE} (
    uscc CHAR(18),
    name VARCHAR(200),
    entity_type VARCHAR(50),
    legal_representative VARCHAR(50),
    legal_representative_id VARCHAR(18),
    registered_capital VARCHAR(20),
    established_on CHAR(10),
    valid_from CHAR(10),
    valid_to CHAR(10),
    address VARCHAR(200),
    township_code VARCHAR(12),
    business_scope TEXT,
    registration_authority VARCHAR(100),
    status VARCHAR(10),
    updated_at CHAR(25)
);
CREATE INDEX ix_{LICENCE_TABLE}_updated_at_uscc ON {LICENCE_TABLE} (updated_at, uscc);
"""

LicenceRow = tuple[Any, ...]

# ---------------------------------------------------------------------------------------------
# What the register holds

# (类型, USCC 机构类别代码 (GB 32100 §4.2: 1 企业, 2 个体工商户, 3 农民专业合作社), share)
_ENTITY_TYPES = (
    ("有限责任公司(自然人投资或控股)", "1", 0.33),
    ("有限责任公司(自然人独资)", "1", 0.14),
    ("有限责任公司(法人独资)", "1", 0.03),
    ("股份有限公司", "1", 0.02),
    ("个人独资企业", "1", 0.05),
    ("合伙企业", "1", 0.03),
    ("个体工商户", "2", 0.37),
    ("农民专业合作社", "3", 0.03),
)
_BRAND_FIRST = "鑫宏恒津华永瑞金兴盛天润嘉东诚福汇佳顺安康德鼎鸿博泰和众广聚祥同联益通新绿丰海星"
_BRAND_SECOND = "泰达通发盛利丰诚旺世和泽禾源美宁润运远顺兴瑞创民锐川辰航德信辉成业隆昌荣嘉合鑫胜"
_SCOPE_TAIL = "（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"
_INDUSTRIES = (
    ("商贸", "日用百货销售；五金产品批发；五金产品零售；建筑材料销售；服装服饰批发；办公用品销售"),
    ("科技", "技术服务、技术开发、技术咨询、技术交流、技术转让、技术推广；软件开发；信息系统集成服务"),
    ("物流", "普通货物仓储服务（不含危险化学品等需许可审批的项目）；国内货物运输代理；装卸搬运"),
    ("建材", "建筑材料销售；轻质建筑材料销售；金属材料销售；砼结构构件销售"),
    ("机械设备", "通用设备制造（不含特种设备制造）；机械设备销售；机械零件、零部件加工"),
    ("食品", "食品销售（仅销售预包装食品）；农副产品销售；食用农产品批发"),
    ("餐饮管理", "餐饮管理；外卖递送服务；食品销售（仅销售预包装食品）"),
    ("汽车服务", "汽车零配件零售；机动车修理和维护；洗车服务；汽车装饰用品销售"),
    ("电子", "电子元器件制造；电子产品销售；电子专用材料研发"),
    ("家具", "家具制造；家具销售；家具零配件生产"),
    ("包装印刷", "包装装潢印刷品印刷；文件、资料等其他印刷品印刷；纸制品销售"),
    ("环保科技", "环保咨询服务；资源再生利用技术研发；固体废物治理"),
    ("建筑工程", "住宅室内装饰装修；园林绿化工程施工；土石方工程施工"),
    ("文化传媒", "组织文化艺术交流活动；广告设计、代理；会议及展览服务；平面设计"),
)
_SHOPS = (
    ("便利店", "日用百货销售；食品销售（仅销售预包装食品）；烟草制品零售"),
    ("小吃部", "小餐饮；食品销售（仅销售预包装食品）"),
    ("五金店", "五金产品零售；日用杂品销售"),
    ("理发店", "理发服务；美容服务"),
    ("汽车修理部", "机动车修理和维护；汽车零配件零售"),
    ("水果店", "新鲜水果零售；食用农产品零售"),
    ("服装店", "服装服饰零售；鞋帽零售"),
    ("建材经营部", "建筑材料销售；五金产品零售"),
    ("早点部", "小餐饮；食品小作坊经营"),
    ("手机店", "通讯设备销售；电子产品销售"),
)
_COOPERATIVES = (
    ("种植", "谷物种植；蔬菜种植；农产品的生产、销售、加工、运输、贮藏及其他相关服务"),
    ("养殖", "牲畜饲养；家禽饲养；农产品的生产、销售、加工、运输、贮藏及其他相关服务"),
    ("农机", "农业机械服务；农作物收割服务；农业专业及辅助性活动"),
)
# The current 营业执照 carries a 9-character 主体标识码 starting MA since the 2015 reform (GB 32100);
# older entities kept their GB 11714 organisation code.
_REFORM = dt.date(2015, 10, 1)


def default_licence_path(root: Path) -> Path:
    return Path(root) / DEFAULT_LICENCE_PATH


def create_licence_db(path: Path, *, replace: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if replace:
        path.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (LICENCE_TABLE,)).fetchone() is None:
            conn.executescript(_DDL)


def insert_licence_rows(path: Path, rows: Sequence[LicenceRow]) -> None:
    """Bulk insert in one transaction."""
    marks = ", ".join("?" * len(LICENCE_COLUMNS))
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(f"INSERT INTO {LICENCE_TABLE} ({', '.join(LICENCE_COLUMNS)}) VALUES ({marks})", rows)


def read_licence_rows(path: Path) -> list[LicenceRow]:
    """Every row in table order (rowid)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            f"SELECT {', '.join(LICENCE_COLUMNS)} FROM {LICENCE_TABLE} ORDER BY rowid"
        ).fetchall()


def read_usccs(path: Path) -> list[str]:
    """The ``uscc`` of every row (no other column: quick even on millions of rows)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute(f"SELECT uscc FROM {LICENCE_TABLE}")]


def in_business(path: Path, exclude: set[str]) -> list[tuple[str, str]]:
    """(uscc, name) of every licence 存续 or 在业 with a name, its code not in ``exclude`` (the
    deliberately bad rows), in code order."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        found = conn.execute(
            f"SELECT DISTINCT uscc, name FROM {LICENCE_TABLE} WHERE status IN ('存续', '在业') "
            "AND uscc IS NOT NULL AND name IS NOT NULL ORDER BY uscc"
        ).fetchall()
    return [(u, n) for u, n in found if u not in exclude]


def mint_usccs(
    rng: np.random.Generator, type_codes: Sequence[str], reformed: Sequence[bool], taken: set[str]
) -> list[str]:
    """Unique GB 32100 codes: 9 (工商), the entity category, 120114, a 9-character organisation
    code with its GB 11714 check character, and the MOD 31 check character.

    ``taken`` holds the 17-character bodies already used and is updated in place.
    """
    n = len(type_codes)
    new_style = rng.integers(0, len(USCC_CHARSET), (n, 6)).tolist()
    old_style = rng.integers(0, 10**8, n).tolist()
    retry = random.Random(int(rng.integers(2**62)))
    out = []
    for i, (category, new) in enumerate(zip(type_codes, reformed, strict=True)):
        org = "MA" + "".join(USCC_CHARSET[c] for c in new_style[i]) if new else f"{old_style[i]:08d}"
        body = f"9{category}{DISTRICT_CODE}{org}{organization_code_check_char(org)}"
        while body in taken:
            org = "MA" + "".join(retry.choices(USCC_CHARSET, k=6)) if new else f"{retry.randrange(10**8):08d}"
            body = f"9{category}{DISTRICT_CODE}{org}{organization_code_check_char(org)}"
        taken.add(body)
        # GB 32100 §5.2: the 18th character is the MOD 31 check character of the first 17.
        out.append(body + uscc_check_char(body))
    return out


def _iso(values: np.ndarray) -> list[str]:
    return [f"{v}+08:00" for v in np.datetime_as_string(values, unit="s").tolist()]


def _dates(values: np.ndarray) -> list[str]:
    return cast(list[str], np.datetime_as_string(values, unit="D").tolist())


@dataclass
class LicenceBatch:
    rows: list[LicenceRow]
    bad_rows: list[BadRow]

    @property
    def watermark(self) -> str | None:
        return max((r[-1] for r in self.rows), default=None)


def licence_rows(
    rng: np.random.Generator, rows: int, reps: People, taken: set[str], *, on: dt.date | None = None
) -> LicenceBatch:
    """``rows`` licences in order of their last change, about 1 % of them bad.

    Without ``on`` they span 1995 to the base day (the register's history); with ``on`` they are
    new registrations of that day. About 60 % have a legal representative from ``reps`` (adults
    of the household registry, with their citizen ID); the rest only a name.
    """
    plan = plan_bad_rows(rng, rows)
    n = plan.base_rows
    p = np.array([t[2] for t in _ENTITY_TYPES])
    kind = rng.choice(len(_ENTITY_TYPES), size=n, p=p / p.sum())
    entity = [_ENTITY_TYPES[k][0] for k in kind.tolist()]
    last = day(BASE_DATE) - np.timedelta64(1, "D")
    if on is None:
        start = day(dt.date(1995, 1, 1))
        established = start + (rng.random(n) ** 0.6 * (last - start).astype(np.int64)).astype(
            "timedelta64[D]"
        )
    else:
        established = np.full(n, day(on))

    from_registry = (rng.random(n) < 0.6) & (len(reps) > 0)
    rep_idx = rng.integers(0, max(len(reps), 1), n)
    rep_names = draw_names(rng, rng.random(n) < 0.7)
    if len(reps):
        # A representative is an adult on the day the entity was established.
        adult_on = reps.birth[rep_idx] + years(18).astype("timedelta64[D]")
        later = np.minimum(np.maximum(established, adult_on), np.maximum(last, established))
        established = np.where(from_registry, later, established)
    rep_name = [
        reps.name[r] if f else nm
        for f, r, nm in zip(from_registry.tolist(), rep_idx.tolist(), rep_names, strict=True)
    ]
    rep_id = [
        reps.person_id[r] if f else None
        for f, r in zip(from_registry.tolist(), rep_idx.tolist(), strict=True)
    ]

    usccs = mint_usccs(
        rng,
        [_ENTITY_TYPES[k][1] for k in kind.tolist()],
        (established >= day(_REFORM)).tolist(),
        taken,
    )
    first = rng.integers(0, len(_BRAND_FIRST), n).tolist()
    second = rng.integers(0, len(_BRAND_SECOND), n).tolist()
    trade = rng.integers(0, len(_INDUSTRIES), n).tolist()
    shop = rng.integers(0, len(_SHOPS), n).tolist()
    coop = rng.integers(0, len(_COOPERATIVES), n).tolist()
    long_prefix = (rng.random(n) < 0.7).tolist()
    names: list[str] = []
    scopes: list[str] = []
    for i, ent in enumerate(entity):
        b = _BRAND_FIRST[first[i]] + _BRAND_SECOND[second[i]]
        word, scope = _INDUSTRIES[trade[i]]
        if ent == "个体工商户":
            word, scope = _SHOPS[shop[i]]
            names.append(f"武清区{b}{word}")
        elif ent == "农民专业合作社":
            word, scope = _COOPERATIVES[coop[i]]
            names.append(f"{DISTRICT_NAME}{b}{word}专业合作社")
        elif ent == "股份有限公司":
            names.append(f"天津{b}{word}股份有限公司")
        elif ent == "个人独资企业":
            names.append(f"{DISTRICT_NAME}{b}{word}中心")
        elif ent == "合伙企业":
            names.append(f"天津{b}{word}合伙企业（有限合伙）")
        else:
            names.append(f"{DISTRICT_NAME if long_prefix[i] else '天津'}{b}{word}有限公司")
        scopes.append(f"一般项目：{scope}{_SCOPE_TAIL}")

    small = np.array([e == "个体工商户" for e in entity])
    shop_capital = np.array([1, 2, 3, 5, 10, 20, 30, 50])[rng.integers(0, 8, n)].astype(np.float64)
    round_capital = np.array([10, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000])[rng.integers(0, 10, n)]
    odd_capital = np.round(np.exp(rng.normal(4.5, 1.3, n)), 2)
    capital = np.where(small, shop_capital, np.where(rng.random(n) < 0.8, round_capital, odd_capital))

    renewed = rng.random(n) < 0.2
    valid_from = np.where(
        renewed & (on is None),
        established + (rng.random(n) * (last - established).astype(np.int64)).astype("timedelta64[D]"),
        established,
    )
    term = np.array([20, 30, 50])[rng.integers(0, 3, n)]
    valid_to = valid_from + years(term).astype("timedelta64[D]") - np.timedelta64(1, "D")
    long_term = small | (kind == 7) | (rng.random(n) < 0.6) | (valid_to <= day(BASE_DATE))
    if on is None:
        # 证照到期提醒 in the demo: about 3 % of the licences with a term end within 120 days of
        # the base day. Drawn from a stream of their own (spawning leaves rng's state as it is),
        # so nothing else in the generated world moves.
        soon_rng = rng.spawn(1)[0]
        soon = ~(small | (kind == 7)) & (soon_rng.random(n) < 0.03)
        valid_to = np.where(
            soon, day(BASE_DATE) + soon_rng.integers(1, 121, n).astype("timedelta64[D]"), valid_to
        )
        long_term &= ~soon

    town = draw_townships(rng, n)
    addresses = draw_addresses(rng, town, homes=False)
    codes = township_codes(town.tolist())
    status = np.where(rng.random(n) < 0.88, "存续", "在业").tolist()

    groups: Ints | None = None
    if on is None:
        yesterday = BASE_DATE - dt.timedelta(days=1)
        changed = last_change_days(rng, valid_from, yesterday)
        # Bulk jobs (e.g. the yearly 年报 status sync) touched many licences in one transaction.
        n_jobs = max(1, n // 400)
        job_day = last_change_days(rng, np.full(n_jobs, day(SYSTEM_MIGRATION)), yesterday)
        job = rng.integers(0, n_jobs, n)
        bulk = (rng.random(n) < 0.15) & (job_day[job] >= valid_from)
        changed = np.where(bulk, job_day[job], changed)
        groups = np.where(bulk, job, -1).astype(np.int64)
    else:
        changed = established
    order = change_order(rng, changed, groups)
    stamps = timestamps_in_order(rng, changed[order], None if groups is None else groups[order])
    est, vf, vt, iso = _dates(established), _dates(valid_from), _dates(valid_to), _iso(stamps)
    capital_text = [f"{c:.2f}" for c in capital.tolist()]
    no_end = long_term.tolist()
    clean: list[LicenceRow] = [
        (
            usccs[i],
            names[i],
            entity[i],
            rep_name[i],
            rep_id[i],
            capital_text[i],
            est[i],
            vf[i],
            None if no_end[i] else vt[i],
            addresses[i],
            codes[i],
            scopes[i],
            REGISTRATION_AUTHORITY,
            status[i],
            iso[k],
        )
        for k, i in enumerate(order.tolist())
    ]

    def spoil(kind: str, i: int, row: LicenceRow) -> tuple[LicenceRow, BadRow]:
        if kind == "bad_check_char":
            bad = spoil_check_char(row[0], USCC_CHARSET)
            return (bad, *row[1:]), BadRow(kind, bad, "uscc")
        if kind == "missing_required":
            return (row[0], None, *row[2:]), BadRow(kind, row[0], "name")
        code = UNKNOWN_TOWNSHIP_CODES[i % len(UNKNOWN_TOWNSHIP_CODES)]
        return (*row[:10], code, *row[11:]), BadRow(kind, row[0], "township_code")

    def duplicate(i: int, row: LicenceRow) -> tuple[LicenceRow, BadRow]:
        # Entered twice in the same second, the second time with another company name.
        return (row[0], f"{row[1]}（分）", *row[2:]), BadRow("duplicate_key", row[0], "uscc")

    out, bad, _origin = apply_bad_rows(clean, plan, spoil, duplicate)
    return LicenceBatch(out, bad)


def change_licences(
    rng: np.random.Generator, path: Path, n: int, excluded: set[str], on: dt.date
) -> list[str]:
    """Change ``n`` existing licences in place on day ``on`` (迁址 or 增资), as 变更登记 does.

    Returns the changed USCCs; ``excluded`` (bad rows) are never touched.
    """
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        rows = conn.execute(
            f"SELECT rowid, uscc, registered_capital FROM {LICENCE_TABLE} ORDER BY rowid"
        ).fetchall()
        pool = [r for r in rows if r[1] not in excluded]
        n = min(n, len(pool))
        if not n:
            return []
        pick = sorted(rng.choice(len(pool), size=n, replace=False).tolist())
        stamps = timestamps_in_order(rng, np.full(n, day(on)))
        iso = _iso(stamps[rng.permutation(n)])
        town = draw_townships(rng, n)
        addresses = draw_addresses(rng, town, homes=False)
        codes = township_codes(town.tolist())
        move = rng.random(n) < 0.5
        updates: list[tuple[str | None, str | None, str, str, int]] = []
        for k, j in enumerate(pick):
            rowid, _uscc, capital = pool[j]
            stamp = iso[k]
            if move[k]:
                updates.append((addresses[k], codes[k], capital, stamp, rowid))
            else:
                raised = f"{float(capital) * 2:.2f}"
                updates.append((None, None, raised, stamp, rowid))
        conn.executemany(
            f"UPDATE {LICENCE_TABLE} SET address = COALESCE(?, address),"
            " township_code = COALESCE(?, township_code), registered_capital = ?, updated_at = ?"
            " WHERE rowid = ?",
            updates,
        )
    return [pool[j][1] for j in pick]


def eligible_representatives(people: People, exclude: set[int]) -> People:
    """The adults among ``people`` (19 or older on the base day) not in ``exclude``."""
    adult = age_on(people.birth, day(BASE_DATE)) >= 19
    keep = np.array([a and i not in exclude for i, a in enumerate(adult.tolist())], dtype=bool)
    idx = np.flatnonzero(keep)
    return People(
        [people.person_id[i] for i in idx],
        [people.name[i] for i in idx],
        people.male[idx],
        people.birth[idx],
        people.township[idx],
    )


# ---------------------------------------------------------------------------------------------
# The HTTP API


@dataclass
class Faults:
    """Failures a :class:`LicenceApi` injects, for tests of a connector's error handling.

    Pages are counted as a client asks for them: page n is the n-th distinct request target
    (path and query) the API has seen since it started, so a retry asks for the same page
    again, and a client that re-anchors with ``updated_since`` instead of a page number counts
    the same as one that steps ``page``. A page in ``status_on_pages`` answers with that
    status, one in ``malformed_pages`` with invalid JSON (status 200); each fails
    ``fail_times`` times and then succeeds (0 = always).
    ``delay_seconds`` delays every API answer.
    """

    status_on_pages: dict[int, int] = field(default_factory=dict)
    fail_times: int = 0
    malformed_pages: set[int] = field(default_factory=set)
    delay_seconds: float = 0.0
    _failed: dict[int, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def trip(self, page: int) -> int | str | None:
        """The fault for this request of ``page``: an HTTP status, ``"malformed"`` or None."""
        if page not in self.status_on_pages and page not in self.malformed_pages:
            return None
        with self._lock:
            count = self._failed.get(page, 0)
            if self.fail_times and count >= self.fail_times:
                return None
            self._failed[page] = count + 1
        return self.status_on_pages.get(page, "malformed")

    def failures(self, page: int) -> int:
        """How many times ``page`` has failed so far."""
        with self._lock:
            return self._failed.get(page, 0)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_SPACED_OFFSET = re.compile(r"(.*:\d{2}(?:\.\d+)?) (\d{2}:?\d{2})")


def parse_updated_since(value: str) -> str:
    """The stored-format bound for ``updated_at >= value``; naive values are Beijing time.

    Stored stamps are whole seconds, so a fractional bound rounds up (inclusive stays exact).
    A ``+`` that arrived unescaped (decoded as a space) is put back.
    """
    text = value.strip()
    if m := _SPACED_OFFSET.fullmatch(text):
        text = f"{m[1]}+{m[2]}"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "updated_since must be an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SHANGHAI)
    moment = moment.astimezone(SHANGHAI)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + dt.timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S+08:00")


def _int_param(params: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = params.get(name)
    if not values:
        return default
    if len(values) > 1:
        raise ApiError(400, f"{name} given more than once")
    try:
        number = int(values[0])
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None
    if not low <= number <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}")
    return number


class LicenceApi(DemoServer):
    """The 营业执照 API of the demo department, on a real socket in a background thread."""

    name = "licence-api"
    server_version = "scjg-demo/1"

    def __init__(
        self, db_path: Path, token: str, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None
    ) -> None:
        super().__init__(host, port)
        self.db_path = Path(db_path)
        self.faults = faults or Faults()
        self._expected = f"Bearer {token}".encode()
        self._lock = threading.Lock()
        # Totals of `updated_at >= since` counted so far, for the register's current version: the
        # sinces sorted (None, the whole register, first) and their totals.
        self._totals_version: tuple[int, int] | None = None
        self._anchors: list[str] = []
        self._totals: dict[str | None, int] = {}
        self._page_ends: dict[tuple[Any, ...], tuple[str, str, int]] = {}
        self.requests = 0
        self._targets: dict[str, int] = {}  # request target -> its ordinal, for Faults

    @property
    def base_url(self) -> str:
        if not self.running:
            raise RuntimeError("LicenceApi is not started")
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    def _before_start(self) -> None:
        if not self.db_path.exists():
            raise FileNotFoundError(f"no licence register at {self.db_path}")

    # -- request handling -----------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.requests += 1
        url = urlsplit(request.path)
        try:
            if method != "GET":
                raise ApiError(405, f"{method} is not allowed: the API is read-only")
            if url.path == "/healthz":
                self._send(request, 200, {"status": "ok"})
                return
            if url.path.rstrip("/") != API_PREFIX + LICENCES_PATH:
                raise ApiError(404, "not found")
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, self._expected):
                raise ApiError(401, "invalid or missing token")
            params = parse_qs(url.query, keep_blank_values=True)
            page = _int_param(params, "page", 1, 1, 10**9)
            size = _int_param(params, "size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
            since_values = params.get("updated_since")
            if since_values and len(since_values) > 1:
                raise ApiError(400, "updated_since given more than once")
            since = parse_updated_since(since_values[0]) if since_values else None
            if self.faults.delay_seconds:
                time.sleep(self.faults.delay_seconds)
            with self._lock:
                ordinal = self._targets.setdefault(request.path, len(self._targets) + 1)
            fault = self.faults.trip(ordinal)
            if fault == "malformed":
                self._send_raw(request, 200, b'{"data": [{"uscc": "9112011', "application/json")
                return
            if isinstance(fault, int):
                self._send(request, fault, {"error": f"injected fault: HTTP {fault} on page {ordinal}"})
                return
            data, total = self._query(since, page, size)
            self._send(request, 200, {"data": data, "page": page, "size": size, "total": total})
        except ApiError as exc:
            self._send(request, exc.status, {"error": str(exc)})
        except sqlite3.Error:
            self._send(request, 503, {"error": "register unavailable"})
        except ConnectionError:
            raise
        except Exception:
            logger.exception("licence API: unexpected error")
            self._send(request, 500, {"error": "internal error"})

    def _send(self, request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._send_raw(request, status, payload, "application/json; charset=utf-8")

    def _send_raw(
        self, request: BaseHTTPRequestHandler, status: int, payload: bytes, content_type: str
    ) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(payload)))
        if status in (429, 503):
            request.send_header("Retry-After", "0")
        request.end_headers()
        request.wfile.write(payload)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(f"{self.db_path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            yield conn
        finally:
            conn.close()

    def _query(self, since: str | None, page: int, size: int) -> tuple[list[dict[str, Any]], int]:
        stat = self.db_path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        where, args = ("WHERE updated_at >= ?", [since]) if since else ("", [])
        columns = ", ".join(LICENCE_COLUMNS)
        with self._connect() as conn:
            total = self._total(conn, version, since)
            # Pages are read in order by clients, so the end of page p-1 seeds a keyset seek for
            # page p; OFFSET (linear in the page number) is the fallback.
            with self._lock:
                after = self._page_ends.get((version, since, size, page - 1))
            order = "ORDER BY updated_at, uscc, rowid"
            if page == 1:
                sql, params = (
                    f"SELECT rowid, {columns} FROM {LICENCE_TABLE} {where} {order} LIMIT ?",
                    [*args, size],
                )
            elif after is not None:
                cond = f"{where} AND" if where else "WHERE"
                sql = f"SELECT rowid, {columns} FROM {LICENCE_TABLE} {cond}"
                sql += f" (updated_at, uscc, rowid) > (?, ?, ?) {order} LIMIT ?"
                params = [*args, *after, size]
            else:
                sql = f"SELECT rowid, {columns} FROM {LICENCE_TABLE} {where} {order} LIMIT ? OFFSET ?"
                params = [*args, size, (page - 1) * size]
            rows = conn.execute(sql, params).fetchall()
        if rows:
            last = rows[-1]
            with self._lock:
                if len(self._page_ends) > 100_000:
                    self._page_ends.clear()
                self._page_ends[(version, since, size, page)] = (last[15], last[1], last[0])
        return [dict(zip(LICENCE_COLUMNS, r[1:], strict=True)) for r in rows], total

    def _total(self, conn: sqlite3.Connection, version: tuple[int, int], since: str | None) -> int:
        """How many licences have ``updated_at >= since`` (all of them for None).

        A client that re-anchors every page at the last ``updated_at`` it received asks a new
        ``since`` each time; counting the rest of the register for each (an index range scan)
        made a pull quadratic: 0.12 s a page at 4M rows left, ~1,000 s over a 5M-row pull. The
        total is instead the nearest total counted at or before ``since`` less the rows between
        the two: about a page's rows for a client moving forward (a row without ``updated_at``
        is in the whole register's total only, as ``updated_at >= since`` never holds for it)."""
        with self._lock:
            if self._totals_version != version:  # the register changed: nothing counted holds
                self._totals_version, self._anchors, self._totals = version, [], {}
            if since in self._totals:
                return self._totals[since]
            at = bisect.bisect_right(self._anchors, since) if since is not None else 0
            base = self._anchors[at - 1] if at else None
            known = self._totals.get(base) if base is not None else None
        table = LICENCE_TABLE
        if since is None:
            total = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        elif base is None or known is None:  # the first since of a sweep: counted whole
            total = conn.execute(f"SELECT count(*) FROM {table} WHERE updated_at >= ?", [since]).fetchone()[0]
        else:
            between = f"SELECT count(*) FROM {table} WHERE updated_at >= ? AND updated_at < ?"
            total = known - conn.execute(between, [base, since]).fetchone()[0]
        with self._lock:
            if self._totals_version == version:
                if len(self._anchors) > 100_000:
                    self._anchors, self._totals = [], {k: v for k, v in self._totals.items() if k is None}
                if since is not None and since not in self._totals:
                    bisect.insort(self._anchors, since)
                self._totals[since] = total
        return total


__all__ = [
    "API_PREFIX",
    "DEFAULT_LICENCE_PATH",
    "LICENCE_COLUMNS",
    "LICENCE_TABLE",
    "REGISTRATION_AUTHORITY",
    "ApiError",
    "Faults",
    "LicenceApi",
    "LicenceBatch",
    "LicenceRow",
    "change_licences",
    "create_licence_db",
    "default_licence_path",
    "eligible_representatives",
    "in_business",
    "insert_licence_rows",
    "licence_rows",
    "mint_usccs",
    "parse_updated_since",
    "read_licence_rows",
    "read_usccs",
]
