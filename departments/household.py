"""公安 户籍: the household registry of 天津市公安局武清分局, one SQL table ``household_member``.

Example::

    rng = np.random.default_rng(1)
    people = synthesize_population(rng, 1000 - bad_rows_per_kind(1000))   # duplicates add rows
    days, groups = household_change_days(rng, people, dt.date(2026, 11, 19))
    batch = household_rows(rng, people, days, groups, rows=1000, first_id=1)  # ~1 % bad rows
    engine = household_engine("sqlite:///var/departments/gongan/household.db")
    create_household_table(engine, replace=True)
    insert_household_rows(engine, batch.rows)

The same code runs on PostgreSQL (``postgresql+psycopg://…``): columns use SQLAlchemy's generic
types so the server gets real DATE and TIMESTAMP columns. ``person_id`` is not unique: the
registry keeps a person's earlier rows when they move (分户, 迁移), and it has data-entry
duplicates; ``updated_at`` is naive Beijing time and increases with ``id``, with ties.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
)

from departments.population import (
    BASE_DATE,
    HEAD_RELATION,
    UNKNOWN_TOWNSHIP_CODES,
    BadRow,
    Days,
    Ints,
    Population,
    age_on,
    apply_bad_rows,
    change_order,
    compose_names,
    day,
    draw_addresses,
    draw_surnames,
    draw_townships,
    household_number,
    last_change_days,
    mint_citizen_ids,
    plan_bad_rows,
    spoil_check_char,
    synthesize_population,
    timestamps_in_order,
    township_codes,
    townships,
)

metadata = MetaData()

household_member = Table(
    "household_member",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False, comment="源系统行号"),
    Column("person_id", String(18), nullable=True, comment="公民身份号码"),
    Column("name", String(50), comment="姓名"),
    Column("gender", String(2), comment="性别"),
    Column("ethnicity", String(20), comment="民族"),
    Column("birth_date", Date, comment="出生日期"),
    Column("household_no", String(12), comment="户号"),
    Column("relation", String(10), comment="与户主关系"),
    Column("address", String(200), comment="住址"),
    Column("township_code", String(12), comment="镇街代码"),
    Column("registered_on", Date, comment="户籍登记日期"),
    Column("updated_at", DateTime, comment="更新时间（北京时间）"),
    Index("ix_household_member_updated_at_id", "updated_at", "id"),
)

HOUSEHOLD_COLUMNS = tuple(c.name for c in household_member.columns)
DEFAULT_HOUSEHOLD_PATH = Path("gongan") / "household.db"

# (id, person_id, name, gender, ethnicity, birth_date, household_no, relation, address,
#  township_code, registered_on, updated_at)
HouseholdRow = tuple[Any, ...]


def default_household_url(root: Path) -> str:
    return f"sqlite:///{(Path(root) / DEFAULT_HOUSEHOLD_PATH).resolve()}"


def household_engine(url: str) -> Engine:
    """An engine for the registry; a SQLite file's folder is created."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    return engine


def create_household_table(engine: Engine, *, replace: bool = False) -> None:
    with engine.begin() as conn:
        if replace:
            household_member.drop(conn, checkfirst=True)
        metadata.create_all(conn, tables=[household_member])


def insert_household_rows(engine: Engine, rows: Sequence[HouseholdRow], chunk_size: int = 50_000) -> None:
    """Bulk insert in one transaction, ``executemany`` in chunks."""
    if not rows:
        return
    dialect = engine.dialect
    with engine.begin() as conn:
        if dialect.name == "sqlite":
            # The driver's executemany with the dialect's own bind processors (dates as ISO text):
            # about twice as fast as Core executemany, same stored values.
            stmt = str(insert(household_member).compile(dialect=dialect))
            procs = [
                (j, p)
                for j, c in enumerate(household_member.columns)
                if (p := c.type.dialect_impl(dialect).bind_processor(dialect)) is not None
            ]
            for start in range(0, len(rows), chunk_size):
                part: list[Any] = list(rows[start : start + chunk_size])
                columns = list(zip(*part, strict=True))
                for j, proc in procs:
                    columns[j] = tuple(map(proc, columns[j]))
                conn.exec_driver_sql(stmt, list(zip(*columns, strict=True)))
        else:
            for start in range(0, len(rows), chunk_size):
                chunk = rows[start : start + chunk_size]
                conn.execute(
                    insert(household_member), [dict(zip(HOUSEHOLD_COLUMNS, r, strict=True)) for r in chunk]
                )


def read_household_rows(engine: Engine) -> list[HouseholdRow]:
    """Every row in source order (by id)."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(household_member).order_by(household_member.c.id))]


@dataclass
class HouseholdBatch:
    """Rows ready to insert, the bad ones among them, and which people they spoilt."""

    rows: list[HouseholdRow]
    bad_rows: list[BadRow]
    spoilt: set[int] = field(default_factory=set)  # indices into the Population given

    @property
    def watermark(self) -> dt.datetime | None:
        return self.rows[-1][-1] if self.rows else None


def _next_house_number(address: str) -> str:
    return re.sub(r"(\d+)号", lambda m: f"{int(m.group(1)) + 1}号", address, count=1)


def household_change_days(rng: np.random.Generator, people: Population, until: dt.date) -> tuple[Days, Ints]:
    """Each member's last change, and its group: half the households changed together (迁址,
    户主变更), all members in one transaction; the others member by member (group -1)."""
    own = last_change_days(rng, people.registered_on, until)
    hh = people.household
    n_hh = int(hh.max()) + 1 if len(hh) else 0
    latest = np.zeros(n_hh, dtype=np.int64)
    np.maximum.at(latest, hh, people.registered_on.astype(np.int64))
    together = last_change_days(rng, latest.astype("datetime64[D]"), until)
    shared = rng.random(n_hh) < 0.5
    days = np.where(shared[hh], together[hh], own)
    return days, np.where(shared[hh], hh, -1).astype(np.int64)


def household_rows(
    rng: np.random.Generator,
    people: Population,
    change_days: Days,
    groups: Ints | None = None,
    *,
    rows: int,
    first_id: int,
) -> HouseholdBatch:
    """``rows`` registry rows: one per person, in order of their last change, plus bad rows.

    ``len(people)`` must be ``rows`` minus the planned duplicates; ``groups`` (see
    :func:`household_change_days`) marks people whose rows were saved together.
    """
    order = change_order(rng, change_days, groups)
    stamps = timestamps_in_order(rng, change_days[order], None if groups is None else groups[order]).tolist()
    birth = people.birth.tolist()
    registered = people.registered_on.tolist()
    codes = people.township_code
    gender = people.gender
    clean = [
        (
            people.person_id[i],
            people.name[i],
            gender[i],
            people.ethnicity[i],
            birth[i],
            people.household_no[i],
            people.relation[i],
            people.address[i],
            codes[i],
            min(registered[i], stamps[k].date()),
            stamps[k],
        )
        for k, i in enumerate(order.tolist())
    ]
    duplicable = np.array([r[6] != HEAD_RELATION for r in clean], dtype=bool)
    plan = plan_bad_rows(rng, rows, duplicable)
    if plan.base_rows != len(clean):
        raise ValueError(f"{rows} rows need {plan.base_rows} people, got {len(clean)}")

    def spoil(kind: str, i: int, row: HouseholdRow) -> tuple[HouseholdRow, BadRow]:
        if kind == "bad_check_char":
            bad_id = spoil_check_char(row[0])
            return (bad_id, *row[1:]), BadRow(kind, bad_id, "person_id")
        if kind == "missing_required":
            return (row[0], None, *row[2:]), BadRow(kind, row[0], "name")
        code = UNKNOWN_TOWNSHIP_CODES[i % len(UNKNOWN_TOWNSHIP_CODES)]
        return (*row[:8], code, *row[9:]), BadRow(kind, row[0], "township_code")

    def duplicate(i: int, row: HouseholdRow) -> tuple[HouseholdRow, BadRow]:
        # A second card for the same person with another house number, saved in the same second.
        return (*row[:7], _next_house_number(row[7]), *row[8:]), BadRow("duplicate_key", row[0], "person_id")

    out, bad, _origin = apply_bad_rows(clean, plan, spoil, duplicate)
    spoilt = {int(order[i]) for i in plan.kinds}
    return HouseholdBatch([(first_id + k, *r) for k, r in enumerate(out)], bad, spoilt)


# ---------------------------------------------------------------------------------------------
# The registry as it stands, for the updates a later day brings


@dataclass
class Registry:
    """The latest row of every person in the registry."""

    person_id: list[str]
    name: list[str | None]
    male: np.ndarray
    birth: Days
    ethnicity: list[str]
    household_no: list[str]
    relation: list[str]
    address: list[str]
    township_code: list[str]
    max_id: int
    max_household_serial: int

    def __len__(self) -> int:
        return len(self.person_id)


def read_registry(engine: Engine) -> Registry:
    latest: dict[str, HouseholdRow] = {}
    max_id = 0
    max_serial = 0
    for row in read_household_rows(engine):
        max_id = max(max_id, row[0])
        max_serial = max(max_serial, int(row[6][3:]))
        latest[row[1]] = row
    rows = list(latest.values())
    return Registry(
        person_id=[r[1] for r in rows],
        name=[r[2] for r in rows],
        male=np.array([r[3] == "男" for r in rows], dtype=bool),
        birth=np.array([r[5] for r in rows], dtype="datetime64[D]"),
        ethnicity=[r[4] for r in rows],
        household_no=[r[6] for r in rows],
        relation=[r[7] for r in rows],
        address=[r[8] for r in rows],
        township_code=[r[9] for r in rows],
        max_id=max_id,
        max_household_serial=max_serial,
    )


_COMPOUND_SURNAMES = ("欧阳", "司马", "上官")


def _surname(name: str) -> str:
    return name[:2] if name[:2] in _COMPOUND_SURNAMES else name[:1]


@dataclass
class RegistryUpdate:
    """The people a day's batch writes, which existing people it touched, and their change days."""

    people: Population
    change_days: Days
    groups: Ints  # newcomer households arrive in one transaction each
    changed: set[str]  # person_ids of existing people who got a new row


def registry_update(
    rng: np.random.Generator, registry: Registry, n: int, excluded: set[str], taken: set[str], on: dt.date
) -> RegistryUpdate:
    """``n`` people for the batch of day ``on``: some 分户 (an adult child founds a household), some
    newborns (子/女 of a young 户主), the rest households moving into the district.

    ``excluded`` are person_ids never to touch (bad rows); ``taken`` the ID bodies in use.
    """
    towns = {t.code: i for i, t in enumerate(townships())}
    ok = np.array(
        [pid not in excluded and code in towns and nm for pid, code, nm in
         zip(registry.person_id, registry.township_code, registry.name, strict=True)],
        dtype=bool,
    )  # fmt: skip
    age = age_on(registry.birth, day(on))
    relation = np.array(registry.relation)
    movers = np.flatnonzero(ok & np.isin(relation, ["子", "女"]) & (age >= 22))
    heads = np.flatnonzero(ok & (relation == HEAD_RELATION) & (age >= 24) & (age <= 45))
    n_moves = min(len(movers), round(n * 0.05))
    n_births = min(len(heads) * 2, round(n * 0.25))
    n_new = n - n_moves - n_births
    parts: list[Population] = []
    last_day = day(on)
    serial = registry.max_household_serial + 1

    if n_moves:
        pick = np.sort(rng.choice(movers, size=n_moves, replace=False))
        town = draw_townships(rng, n_moves)
        codes = township_codes(town.tolist())
        parts.append(
            Population(
                person_id=[registry.person_id[i] for i in pick],
                name=[str(registry.name[i]) for i in pick],
                male=registry.male[pick],
                birth=registry.birth[pick],
                township=town,
                ethnicity=[registry.ethnicity[i] for i in pick],
                address=draw_addresses(rng, town),
                household_no=[household_number(c, serial + k) for k, c in enumerate(codes)],
                relation=[HEAD_RELATION] * n_moves,
                registered_on=np.full(n_moves, last_day),
                household=np.arange(n_moves, dtype=np.int64),
                couples=np.zeros((0, 2), dtype=np.int64),
            )
        )
        serial += n_moves

    if n_births:
        parent = np.sort(rng.choice(heads, size=n_births, replace=True))
        male = rng.random(n_births) < 0.51
        # Born in the last four months, but never after the demo's base day (GB 11643 IDs of
        # people not yet born fail validation).
        newest = day(min(on, BASE_DATE)) - np.timedelta64(1, "D")
        birth = newest - rng.integers(0, 120, n_births).astype("timedelta64[D]")
        keep_line = registry.male[parent]
        own = draw_surnames(rng, n_births)
        names = compose_names(rng, own, male)
        names = [
            _surname(str(registry.name[p])) + nm[len(_surname(nm)) :] if k else nm
            for p, nm, k in zip(parent.tolist(), names, keep_line.tolist(), strict=True)
        ]
        ids = mint_citizen_ids(rng, ["120114"] * n_births, birth, male, taken)
        parts.append(
            Population(
                person_id=ids,
                name=names,
                male=male,
                birth=birth,
                township=np.array([towns[registry.township_code[p]] for p in parent], dtype=np.int64),
                ethnicity=[registry.ethnicity[p] for p in parent],
                address=[registry.address[p] for p in parent],
                household_no=[registry.household_no[p] for p in parent],
                relation=["子" if m else "女" for m in male.tolist()],
                registered_on=np.full(n_births, last_day),
                household=np.zeros(n_births, dtype=np.int64),
                couples=np.zeros((0, 2), dtype=np.int64),
            )
        )

    if n_new:
        newcomers = synthesize_population(rng, n_new, taken=taken, first_household=serial, native_share=0.3)
        newcomers.registered_on = np.full(n_new, last_day)
        parts.append(newcomers)

    people = concat_population(parts)
    changed = set(parts[0].person_id) if n_moves else set()
    groups = np.full(len(people), -1, dtype=np.int64)
    if n_new:
        groups[len(people) - n_new :] = parts[-1].household
    return RegistryUpdate(people, np.full(len(people), last_day), groups, changed)


def concat_population(parts: Sequence[Population]) -> Population:
    if not parts:
        return synthesize_population(np.random.default_rng(0), 0)
    offsets = np.cumsum([0] + [len(p) for p in parts])
    return Population(
        person_id=[x for p in parts for x in p.person_id],
        name=[x for p in parts for x in p.name],
        male=np.concatenate([p.male for p in parts]),
        birth=np.concatenate([p.birth for p in parts]),
        township=np.concatenate([p.township for p in parts]),
        ethnicity=[x for p in parts for x in p.ethnicity],
        address=[x for p in parts for x in p.address],
        household_no=[x for p in parts for x in p.household_no],
        relation=[x for p in parts for x in p.relation],
        registered_on=np.concatenate([p.registered_on for p in parts]),
        household=np.concatenate([p.household for p in parts]),
        couples=np.concatenate([p.couples + o for p, o in zip(parts, offsets, strict=False)]),
    )


__all__ = [
    "DEFAULT_HOUSEHOLD_PATH",
    "HOUSEHOLD_COLUMNS",
    "HouseholdBatch",
    "HouseholdRow",
    "Registry",
    "RegistryUpdate",
    "concat_population",
    "create_household_table",
    "default_household_url",
    "household_change_days",
    "household_engine",
    "household_member",
    "household_rows",
    "insert_household_rows",
    "read_household_rows",
    "read_registry",
    "registry_update",
]
