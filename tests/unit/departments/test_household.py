"""公安 户籍: the household_member table on SQLite and on PostgreSQL."""

from __future__ import annotations

import collections
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from contracts.identifiers import is_valid_citizen_id
from departments import Manifest, add_updates, generate_all
from departments.household import HOUSEHOLD_COLUMNS, household_engine, read_household_rows
from departments.population import BASE_TIME, HEAD_RELATION, UNKNOWN_TOWNSHIP_CODES, townships

ROWS = 2000
CODES = {t.code for t in townships()}
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("departments")
    manifest = generate_all(root, rows=ROWS, seed=7)
    engine = household_engine(f"sqlite:///{root / 'gongan' / 'household.db'}")
    rows = [dict(zip(HOUSEHOLD_COLUMNS, r, strict=True)) for r in read_household_rows(engine)]
    engine.dispose()
    return manifest, rows


def test_row_count_and_columns(generated: tuple[Manifest, list[dict[str, Any]]]) -> None:
    manifest, rows = generated
    assert len(rows) == ROWS == manifest.datasets["household"].rows
    assert HOUSEHOLD_COLUMNS == (
        "id", "person_id", "name", "gender", "ethnicity", "birth_date", "household_no", "relation",
        "address", "township_code", "registered_on", "updated_at",
    )  # fmt: skip
    assert [r["id"] for r in rows] == list(range(1, ROWS + 1))
    assert isinstance(rows[0]["birth_date"], dt.date) and isinstance(rows[0]["updated_at"], dt.datetime)


def test_valid_rows_are_consistent(generated: tuple[Manifest, list[dict[str, Any]]]) -> None:
    manifest, rows = generated
    bad = manifest.datasets["household"].bad_keys()
    checked = 0
    for r in rows:
        pid = str(r["person_id"])
        if pid in bad:
            continue
        checked += 1
        assert is_valid_citizen_id(pid)
        assert r["gender"] == ("男" if int(pid[16]) % 2 else "女")
        assert r["birth_date"] == dt.date(int(pid[6:10]), int(pid[10:12]), int(pid[12:14]))
        assert r["township_code"] in CODES
        assert r["name"]
        assert r["ethnicity"]
        assert str(r["address"]).startswith("天津市武清区")
        assert r["birth_date"] <= r["registered_on"] <= r["updated_at"].date()
    assert checked > ROWS * 0.97


def test_one_head_per_household(generated: tuple[Manifest, list[dict[str, Any]]]) -> None:
    _, rows = generated
    heads: dict[object, set[object]] = collections.defaultdict(set)
    members: set[object] = set()
    for r in rows:
        members.add(r["household_no"])
        if r["relation"] == HEAD_RELATION:
            heads[r["household_no"]].add(r["person_id"])
    assert set(heads) == members
    assert all(len(v) == 1 for v in heads.values())
    relations = collections.Counter(r["relation"] for r in rows)
    assert {"户主", "配偶", "子", "女"} <= set(relations)


def test_updated_at_increases_with_id_and_has_ties(
    generated: tuple[Manifest, list[dict[str, Any]]],
) -> None:
    manifest, rows = generated
    stamps = [r["updated_at"] for r in rows]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) < len(stamps) * 0.9
    assert max(stamps) < BASE_TIME
    assert manifest.datasets["household"].watermark == max(stamps).isoformat()


def test_bad_rows_are_recorded_and_present(generated: tuple[Manifest, list[dict[str, Any]]]) -> None:
    manifest, rows = generated
    bad_rows = manifest.datasets["household"].bad_rows
    kinds = collections.Counter(b.kind for b in bad_rows)
    assert kinds == {"bad_check_char": 5, "missing_required": 5, "duplicate_key": 5, "unknown_township": 5}
    by_key: dict[Any, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in rows:
        by_key[r["person_id"]].append(r)
    for b in bad_rows:
        found = by_key[b.key]
        assert found, b
        if b.kind == "bad_check_char":
            assert not is_valid_citizen_id(b.key) and b.column == "person_id"
        elif b.kind == "missing_required":
            assert found[0][b.column] is None
        elif b.kind == "unknown_township":
            assert found[0]["township_code"] in UNKNOWN_TOWNSHIP_CODES
            assert found[0]["township_code"] not in CODES
        else:
            first, second = found
            assert second["id"] == first["id"] + 1  # adjacent in source order
            assert second["updated_at"] == first["updated_at"]  # same pull batch
            assert first != second
            assert second["relation"] != HEAD_RELATION
    # Spread over the data, not bunched at one end.
    positions = sorted(by_key[b.key][0]["id"] for b in bad_rows)
    assert positions[0] < ROWS / 3 and positions[-1] > ROWS * 2 / 3


def test_index_on_updated_at_and_id(tmp_path: Path) -> None:
    generate_all(tmp_path, rows=120, seed=1)
    engine = create_engine(f"sqlite:///{tmp_path / 'gongan' / 'household.db'}")
    indexes = inspect(engine).get_indexes("household_member")
    assert any(ix["column_names"] == ["updated_at", "id"] for ix in indexes)
    engine.dispose()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    admin = create_engine(PG_URL)
    schema = f"departments_{uuid.uuid4().hex[:10]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # pragma: no cover - only without a local server
        admin.dispose()
        pytest.skip(f"no PostgreSQL at {PG_URL}: {type(exc).__name__}")
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.integration
def test_household_on_postgresql(tmp_path: Path, pg_schema: str) -> None:
    url = f"{PG_URL}?options=-csearch_path%3D{pg_schema}"
    manifest = generate_all(tmp_path, rows=400, seed=3, household_url=url)
    assert manifest.household_url == url
    assert not (tmp_path / "gongan" / "household.db").exists()
    engine = create_engine(url)
    try:
        columns = {
            c["name"]: c["type"] for c in inspect(engine).get_columns("household_member", schema=pg_schema)
        }
        assert str(columns["birth_date"]) == "DATE"
        assert str(columns["updated_at"]).startswith("TIMESTAMP")
        assert str(columns["person_id"]) == "VARCHAR(18)"
        with engine.connect() as conn:
            count, last = conn.execute(text("SELECT count(*), max(updated_at) FROM household_member")).one()
        assert count == 400
        # The same rows as on SQLite for the same seed.
        sqlite_root = tmp_path / "sqlite"
        generate_all(sqlite_root, rows=400, seed=3)
        lite = household_engine(f"sqlite:///{sqlite_root / 'gongan' / 'household.db'}")
        assert read_household_rows(engine) == read_household_rows(lite)
        lite.dispose()

        add_updates(tmp_path, rows=100, seed=9)
        with engine.connect() as conn:
            count2, min_new = conn.execute(
                text("SELECT count(*), min(updated_at) FILTER (WHERE id > 400) FROM household_member")
            ).one()
        assert count2 == 500 and min_new > last
    finally:
        engine.dispose()
