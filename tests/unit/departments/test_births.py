"""卫健 出生医学证明: every child of the registry born since 1996 with both parents in its household,
the parents being that household's couple, in the order the certificates were issued."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from contracts.identifiers import is_valid_citizen_id
from departments.births import FIRST_YEAR, HOSPITALS, read_births
from departments.generate import generate_all
from departments.household import household_engine, read_household_rows


def test_each_birth_names_a_child_and_the_couple_of_its_household(tmp_path: Path) -> None:
    manifest = generate_all(tmp_path, rows=2000, seed=11)
    births = read_births(tmp_path / "weijian" / "births.db")
    engine = household_engine(f"sqlite:///{tmp_path / 'gongan' / 'household.db'}")
    registry = {r[1]: r for r in read_household_rows(engine)}  # person_id -> row
    engine.dispose()
    assert births and len(births) == manifest.datasets["births"].rows
    spoilt = {b.key for b in manifest.datasets["births"].bad_rows}
    assert spoilt and all(
        b.kind == "bad_check_char" and b.column == "child_id" for b in manifest.datasets["births"].bad_rows
    )
    parents_of = {
        "子": ("户主", "配偶"), "女": ("户主", "配偶"), "孙子": ("子", "儿媳"), "孙女": ("子", "儿媳"),
        "外孙子": ("女", "女婿"), "外孙女": ("女", "女婿"),
    }  # fmt: skip
    for b in births:
        assert dt.date.fromisoformat(b["birth_date"]) >= dt.date(FIRST_YEAR, 1, 1)
        assert b["birth_place"] in HOSPITALS and b["issued_on"] >= b["birth_date"]
        mother, father = registry[b["mother_id"]], registry[b["father_id"]]
        assert mother[3] == "女" and father[3] == "男" and mother[6] == father[6]  # gender, same 户
        if b["cert_no"] in spoilt:
            assert not is_valid_citizen_id(b["child_id"])
            continue
        child = registry[b["child_id"]]
        assert child[6] == mother[6] and str(child[5]) == b["birth_date"] and b["child_name"] == child[2]
        assert {mother[7], father[7]} == set(parents_of[child[7]])
    # entered in the order they were issued; the watermark is the last of them
    stamps = [(b["updated_at"], b["id"]) for b in births]
    assert stamps == sorted(stamps) and [b["id"] for b in births] == list(range(1, len(births) + 1))
    assert manifest.datasets["births"].watermark == stamps[-1][0]
