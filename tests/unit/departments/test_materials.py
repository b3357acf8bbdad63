"""政务服务 电子材料库: materials the registry's residents handed in before, each with its kind, the
matter it was handed in for and how long it stays valid — a photo six months, a contract to the
end of its term, a disability card's copy to the card's expiry — some long expired."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from pathlib import Path

from contracts.identifiers import is_valid_citizen_id
from departments.generate import add_updates, generate_all
from departments.household import household_engine, read_household_rows
from departments.materials import (
    CARD_YEARS,
    KINDS,
    LABOUR_CONTRACT,
    LEASE,
    PHOTO,
    SUBMITTED_FOR,
    read_materials,
)

YESTERDAY = dt.date(2026, 11, 19)


def _years_after(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)


def _months_after(day: dt.date, months: int) -> dt.date:
    total = day.month - 1 + months
    year, month = day.year + total // 12, total % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError


def test_each_material_is_a_registry_residents_with_its_validity(tmp_path: Path) -> None:
    manifest = generate_all(tmp_path, rows=2000, seed=11)
    rows = read_materials(tmp_path / "zhengwu" / "materials.db")
    engine = household_engine(f"sqlite:///{tmp_path / 'gongan' / 'household.db'}")
    registry = {r[1]: r for r in read_household_rows(engine)}  # person_id -> row
    engine.dispose()
    ds = manifest.datasets["materials"]
    assert rows and len(rows) == ds.rows and ds.key == "material_id"
    assert len({r["material_id"] for r in rows}) == len(rows) and ds.watermark == rows[-1]["updated_at"]
    assert [r["updated_at"] for r in rows] == sorted(r["updated_at"] for r in rows)
    spoilt = {b.key for b in ds.bad_rows}
    assert spoilt and all(b.kind == "bad_check_char" and b.column == "holder_id" for b in ds.bad_rows)
    kinds: Counter[tuple[str, bool]] = Counter()
    for r in rows:
        submitted, valid_to = dt.date.fromisoformat(r["submitted_on"]), dt.date.fromisoformat(r["valid_to"])
        kind = r["material_code"]
        assert r["material_name"] == KINDS[kind]
        assert (r["matter_code"], r["matter_name"]) in SUBMITTED_FOR[kind]
        assert submitted <= YESTERDAY and submitted < valid_to and r["updated_at"][:10] == r["submitted_on"]
        assert r["material_id"] == f"WQCL{submitted.year}{r['id']:08d}"
        assert len(r["content_sha256"]) == 64 and r["case_number"].startswith(f"WQSL{submitted:%Y%m%d}")
        if kind == PHOTO:
            assert valid_to == _months_after(submitted, 6) - dt.timedelta(days=1)
        elif kind in (LABOUR_CONTRACT, LEASE):  # handed in within a month of the term's start
            terms = {_years_after(valid_to + dt.timedelta(days=1), -n) for n in (1, 2, 3)}
            # (-1: a term from 29 February ends on 27 February)
            assert any(dt.timedelta(-1) <= submitted - start < dt.timedelta(days=30) for start in terms)
        else:  # the card's copy: valid to the card's expiry, handed in while the card was valid
            assert submitted <= valid_to <= _years_after(YESTERDAY, CARD_YEARS)
        kinds[kind, valid_to >= YESTERDAY] += 1
        if r["material_id"] in spoilt:
            assert not is_valid_citizen_id(r["holder_id"])
            continue
        person = registry[r["holder_id"]]
        assert r["holder_name"] == person[2] and r["township_code"] == person[9]
        if r["matter_code"] == "senior-preferential-card":  # for those of 60 or more
            assert _years_after(person[5], 60) <= submitted
    # every kind is held, some in force and some expired
    assert all(kinds[k, True] and kinds[k, False] for k in KINDS), kinds


def test_a_days_submissions_are_appended_in_force_and_clean(tmp_path: Path) -> None:
    before = generate_all(tmp_path, rows=1500, seed=5)
    after = add_updates(tmp_path, rows=100, seed=5)
    rows = read_materials(tmp_path / "zhengwu" / "materials.db")
    new = rows[before.datasets["materials"].rows :]
    assert new and len(new) == after.batches[1].written["materials"]
    assert not after.datasets["materials"].bad_rows[len(before.datasets["materials"].bad_rows) :]
    for r in new:
        assert r["submitted_on"] == "2026-11-20" and r["valid_to"] > "2026-11-20"
        assert is_valid_citizen_id(r["holder_id"])
        digest = f"onceonly-demo-material:{r['material_id']}:{r['holder_id']}:{r['material_code']}"
        assert r["content_sha256"] == hashlib.sha256(digest.encode()).hexdigest()
