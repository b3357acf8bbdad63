"""民政 婚姻登记: the GBK CSV drop and how its spouses tie to the household registry."""

from __future__ import annotations

import collections
import datetime as dt
import re
from pathlib import Path

import pytest

from contracts.identifiers import is_valid_citizen_id
from departments import MARRIAGE_HEADER, Manifest, generate_all
from departments.household import household_engine, read_household_rows
from departments.marriages import read_marriage_csv, write_marriage_csv
from departments.population import UNKNOWN_TOWNSHIP_CODES, townships

ROWS = 2000
CODES = {t.code for t in townships()}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("departments")
    generate_all(root, rows=ROWS, seed=5)
    return root


@pytest.fixture(scope="module")
def csv_path(root: Path) -> Path:
    return root / "minzheng" / "drop" / "marriage_registrations_20261120.csv"


@pytest.fixture(scope="module")
def records(csv_path: Path) -> list[dict[str, str]]:
    return read_marriage_csv(csv_path)


def birth_of(pid: str) -> dt.date:
    return dt.date(int(pid[6:10]), int(pid[10:12]), int(pid[12:14]))


def years_between(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def test_file_is_gbk_crlf_with_the_exact_header(root: Path, csv_path: Path) -> None:
    assert sorted(p.name for p in (root / "minzheng" / "drop").iterdir()) == [csv_path.name]
    raw = csv_path.read_bytes()
    text = raw.decode("gbk")
    assert text.split("\r\n", 1)[0] == (
        "登记证字号,登记类型,男方姓名,男方公民身份号码,男方户籍地镇街代码,"
        "女方姓名,女方公民身份号码,女方户籍地镇街代码,登记日期,登记机关"
    )
    assert tuple(text.split("\r\n", 1)[0].split(",")) == MARRIAGE_HEADER
    assert raw.count(b"\r\n") == ROWS + 1 and raw.count(b"\n") == ROWS + 1 and raw.endswith(b"\r\n")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


def test_valid_records(root: Path, records: list[dict[str, str]]) -> None:
    manifest = Manifest.load(root)
    assert len(records) == ROWS == manifest.datasets["marriages"].rows
    bad = manifest.datasets["marriages"].bad_keys()
    numbers = collections.Counter(r["登记证字号"] for r in records)
    for r in records:
        assert re.fullmatch(r"J120114-\d{4}-\d{6}", r["登记证字号"])
        assert r["登记类型"] == "结婚" and r["登记机关"] == "天津市武清区民政局婚姻登记处"
        assert r["登记证字号"][8:12] == r["登记日期"][:4]
        if r["登记证字号"] in bad:
            continue
        assert numbers[r["登记证字号"]] == 1
        on = dt.date.fromisoformat(r["登记日期"])
        assert on < dt.date(2026, 11, 20)
        man, woman = r["男方公民身份号码"], r["女方公民身份号码"]
        assert is_valid_citizen_id(man) and is_valid_citizen_id(woman)
        assert int(man[16]) % 2 == 1 and int(woman[16]) % 2 == 0
        # 《民法典》第一千零四十七条: 男不得早于二十二周岁，女不得早于二十周岁.
        assert years_between(birth_of(man), on) >= 22
        assert years_between(birth_of(woman), on) >= 20
        assert r["男方户籍地镇街代码"] in CODES and r["女方户籍地镇街代码"] in CODES
        assert r["男方姓名"] and r["女方姓名"]


def test_numbers_count_up_by_date_within_each_year(records: list[dict[str, str]]) -> None:
    last: dict[str, tuple[str, int]] = {}
    seen: set[str] = set()
    for r in records:
        number = r["登记证字号"]
        if number in seen:
            continue  # the second row of a duplicate_key pair
        seen.add(number)
        year, serial = number[8:12], int(number[13:])
        previous_day, previous = last.get(year, ("", 0))
        assert serial == previous + 1 and r["登记日期"] >= previous_day
        last[year] = (r["登记日期"], serial)
    assert len(last) > 20


def test_spouses_are_mostly_registered_residents(root: Path, records: list[dict[str, str]]) -> None:
    engine = household_engine(f"sqlite:///{root / 'gongan' / 'household.db'}")
    people = {r[1]: (r[2], r[9]) for r in read_household_rows(engine)}
    engine.dispose()
    linked = 0
    couples_linked = 0
    for r in records:
        sides = [(r[f"{s}公民身份号码"], r[f"{s}姓名"], r[f"{s}户籍地镇街代码"]) for s in ("男方", "女方")]
        hits = [people.get(pid) == (name, code) for pid, name, code in sides]
        linked += sum(hits)
        couples_linked += all(hits)
    # Every registry couple married each other, most single adults married an outsider; with
    # as many marriages as residents that links about 37 % of spouses.
    assert linked / (2 * ROWS) > 0.3
    assert couples_linked / ROWS > 0.25


def test_bad_records_are_recorded_and_present(root: Path, records: list[dict[str, str]]) -> None:
    bad_rows = Manifest.load(root).datasets["marriages"].bad_rows
    assert collections.Counter(b.kind for b in bad_rows) == {
        "bad_check_char": 5, "missing_required": 5, "duplicate_key": 5, "unknown_township": 5,
    }  # fmt: skip
    positions = collections.defaultdict(list)
    for i, r in enumerate(records):
        positions[r["登记证字号"]].append(i)
    for b in bad_rows:
        where = positions[b.key]
        row = records[where[0]]
        if b.kind == "bad_check_char":
            assert b.column in ("男方公民身份号码", "女方公民身份号码")
            assert not is_valid_citizen_id(row[b.column])
        elif b.kind == "missing_required":
            assert b.column in ("男方姓名", "女方姓名") and row[b.column] == ""
        elif b.kind == "unknown_township":
            assert row[b.column] in UNKNOWN_TOWNSHIP_CODES
        else:
            assert b.column == "登记证字号"
            assert len(where) == 2 and where[1] == where[0] + 1
            assert records[where[0]] != records[where[1]]


def test_write_is_atomic_and_leaves_no_part_file(tmp_path: Path) -> None:
    rows = [("J120114-2026-000001", "结婚", "王伟", "1", "2", "李娜", "3", "4", "2026-11-19", "x")]
    path = write_marriage_csv(tmp_path / "drop", dt.date(2026, 11, 21), rows)
    assert path.name == "marriage_registrations_20261121.csv"
    assert [p.name for p in (tmp_path / "drop").iterdir()] == [path.name]
    assert read_marriage_csv(path)[0]["男方姓名"] == "王伟"
