"""The synthetic population: names, IDs consistent with gender and birth date, households."""

from __future__ import annotations

import collections
import datetime as dt

import numpy as np
import pytest

from contracts.identifiers import is_valid_citizen_id, is_valid_uscc
from departments import population as pop
from departments.population import (
    BAD_ROW_KINDS,
    BASE_DATE,
    HEAD_RELATION,
    bad_rows_per_kind,
    plan_bad_rows,
    spoil_check_char,
    synthesize_population,
    timestamps_in_order,
    townships,
)


@pytest.fixture(scope="module")
def people() -> pop.Population:
    return synthesize_population(np.random.default_rng(11), 3000)


def test_townships_are_the_25_of_the_region_list() -> None:
    towns = townships()
    assert len(towns) == 25
    assert all(len(t.code) == 12 and t.code.startswith("120114") for t in towns)
    assert towns[0].name == "杨村街道"


def test_same_seed_same_people_other_seed_other_people() -> None:
    a = synthesize_population(np.random.default_rng(5), 500)
    b = synthesize_population(np.random.default_rng(5), 500)
    c = synthesize_population(np.random.default_rng(6), 500)
    assert a.person_id == b.person_id and a.name == b.name and a.address == b.address
    assert a.person_id != c.person_id


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10])
def test_exact_size_even_when_tiny(n: int) -> None:
    people = synthesize_population(np.random.default_rng(n), n)
    assert len(people) == len(people.name) == len(people.household_no) == n


def test_ids_are_valid_unique_and_match_gender_and_birth(people: pop.Population) -> None:
    assert len(set(people.person_id)) == len(people)
    births = np.datetime_as_string(people.birth, unit="D").tolist()
    for pid, male, birth in zip(people.person_id, people.male.tolist(), births, strict=True):
        assert is_valid_citizen_id(pid), pid
        assert pid[6:14] == birth.replace("-", "")
        # GB 11643 §4.3: the 17th digit is odd for men, even for women.
        assert (int(pid[16]) % 2 == 1) == male
    natives = sum(pid.startswith("120114") for pid in people.person_id)
    assert natives / len(people) > 0.6
    assert any(not pid.startswith(("120114", "120222")) for pid in people.person_id)


def test_names_are_chinese_surname_plus_one_or_two_characters(people: pop.Population) -> None:
    lengths = collections.Counter(len(n) for n in people.name)
    assert set(lengths) <= {2, 3, 4}
    assert lengths[3] > lengths[2] > 0
    surnames = collections.Counter(n[0] for n in people.name)
    assert {s for s, _ in surnames.most_common(5)} & {"王", "李", "张", "刘", "陈"}


def test_each_household_has_one_head_and_one_address(people: pop.Population) -> None:
    heads: collections.Counter[str] = collections.Counter()
    addresses: dict[str, set[str]] = collections.defaultdict(set)
    for no, rel, addr in zip(people.household_no, people.relation, people.address, strict=True):
        heads[no] += rel == HEAD_RELATION
        addresses[no].add(addr)
        assert len(no) == 12 and no.isdigit()
    assert set(heads.values()) == {1}
    assert all(len(a) == 1 for a in addresses.values())
    assert 2.0 < len(people) / len(heads) < 4.0


def test_addresses_lie_in_their_township(people: pop.Population) -> None:
    names = {t.code: t.name for t in townships()}
    for addr, code in zip(people.address, people.township_code, strict=True):
        assert addr.startswith(f"天津市武清区{names[code]}")
        assert "号" in addr


def test_relations_fit_gender_and_age(people: pop.Population) -> None:
    age = pop.age_on(people.birth, pop.day(BASE_DATE))
    male_only = {"子", "孙子", "外孙子", "父亲", "女婿"}
    female_only = {"女", "孙女", "外孙女", "母亲", "儿媳"}
    for rel, male, a in zip(people.relation, people.male.tolist(), age.tolist(), strict=True):
        assert not (rel in male_only and not male)
        assert not (rel in female_only and male)
        assert 0 < a <= 101
    # Couples: a man and a woman, both old enough to have married.
    for man, woman in people.couples.tolist():
        assert people.male[man] and not people.male[woman]
        assert people.household_no[man] == people.household_no[woman]
        assert age[man] >= 22 and age[woman] >= 20
    assert len(people.couples) > len(people) / 5


def test_registered_on_is_after_birth_and_before_the_base_day(people: pop.Population) -> None:
    assert (people.registered_on >= people.birth).all()
    assert (people.registered_on < pop.day(BASE_DATE)).all()
    assert (people.birth < pop.day(BASE_DATE)).all()


def test_spoilt_check_chars_fail_validation() -> None:
    assert not is_valid_citizen_id(spoil_check_char("11010519491231002X"))
    assert spoil_check_char("11010519491231002X") != "11010519491231002X"
    uscc = "91350100M000100Y43"
    assert is_valid_uscc(uscc)
    from contracts.identifiers import USCC_CHARSET

    assert not is_valid_uscc(spoil_check_char(uscc, USCC_CHARSET))


def test_bad_row_plan_is_about_one_percent_spread_and_balanced() -> None:
    assert bad_rows_per_kind(50) == 0
    assert bad_rows_per_kind(100) == 1
    assert bad_rows_per_kind(1_000_000) == 2500
    plan = plan_bad_rows(np.random.default_rng(3), 40_000)
    counts = collections.Counter(plan.kinds.values())
    assert counts == {k: 100 for k in BAD_ROW_KINDS}
    assert plan.base_rows + plan.duplicates == 40_000
    positions = sorted(plan.kinds)
    assert positions[0] < 2000 and positions[-1] > 38_000  # spread over the whole dataset


def test_duplicates_only_where_allowed() -> None:
    allowed = np.zeros(10_000, dtype=bool)
    allowed[::3] = True
    plan = plan_bad_rows(np.random.default_rng(4), 10_025, allowed)
    assert all(allowed[i] for i, k in plan.kinds.items() if k == "duplicate_key")


def test_timestamps_increase_within_office_hours_with_ties() -> None:
    days = np.sort(pop.day(dt.date(2026, 1, 5)) + np.random.default_rng(1).integers(0, 30, 2000)).astype(
        "datetime64[D]"
    )
    stamps = timestamps_in_order(np.random.default_rng(2), days)
    assert (np.diff(stamps.astype(np.int64)) >= 0).all()
    assert (stamps.astype("datetime64[D]") == days).all()
    assert (np.diff(stamps.astype(np.int64)) == 0).sum() > 100
    hours = [t.hour for t in stamps.tolist()]
    assert min(hours) >= 8 and max(hours) <= 17
