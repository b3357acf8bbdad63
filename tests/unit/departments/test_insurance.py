"""人社 社会保险参保: a full daily export of the registry's insured residents (16 and over), the
employees named with a business of the licence register that is in business."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

from contracts.identifiers import is_valid_citizen_id
from departments.generate import generate_all
from departments.household import household_engine, read_household_rows
from departments.insurance import EMPLOYEE, INSURANCE_HEADER, RESIDENT, SINCE, STATUSES, read_insurance_export
from departments.licences import read_licence_rows


def _birthday(born: dt.date, age: int) -> dt.date:
    try:
        return born.replace(year=born.year + age)
    except ValueError:  # 29 February
        return dt.date(born.year + age, 3, 1)


def test_each_insured_person_is_a_resident_and_each_employer_a_business_in_the_register(
    tmp_path: Path,
) -> None:
    manifest = generate_all(tmp_path, rows=2000, seed=12)
    path = tmp_path / "renshe" / "export" / "insured_persons.csv"
    assert path.read_bytes().startswith(
        b"\xef\xbb\xbf" + INSURANCE_HEADER[0].encode()
    )  # BOM: Excel reads UTF-8
    rows = read_insurance_export(tmp_path / "renshe" / "export")
    engine = household_engine(f"sqlite:///{tmp_path / 'gongan' / 'household.db'}")
    registry = {r[1]: r for r in read_household_rows(engine)}
    engine.dispose()
    in_business = {
        r[0]: r[1] for r in read_licence_rows(tmp_path / "scjg" / "licences.db") if r[13] in ("存续", "在业")
    }
    ds = manifest.datasets["insurance"]
    assert rows and len(rows) == ds.rows and list(rows[0]) == list(INSURANCE_HEADER)
    assert len({r["参保证明编号"] for r in rows}) == len(rows)
    spoilt = {b.key for b in ds.bad_rows}
    assert spoilt and all(b.kind == "bad_check_char" and b.column == "person_id" for b in ds.bad_rows)
    on = dt.date(2026, 11, 20)
    for r in rows:
        since = dt.date.fromisoformat(r["参保日期"])
        assert SINCE <= since < on and r["更新时间"][:10] >= r["参保日期"] and r["参保状态"] in STATUSES
        if r["养老保险险种"] == EMPLOYEE[0]:
            assert (
                r["医疗保险险种"] == EMPLOYEE[1]
                and in_business[r["参保单位统一社会信用代码"]] == r["参保单位名称"]
            )
        else:
            assert (r["养老保险险种"], r["医疗保险险种"]) == RESIDENT and r["参保单位名称"] == ""
        if r["参保证明编号"] in spoilt:
            assert not is_valid_citizen_id(r["公民身份号码"])
            continue
        person = registry[r["公民身份号码"]]
        assert r["姓名"] == person[2] and r["参保地镇街代码"] == person[9]
        born = dt.date.fromisoformat(str(person[5]))
        of_age = 18 if r["养老保险险种"] == EMPLOYEE[0] else 16  # employees from 18, residents from 16
        assert since >= _birthday(born, of_age) and on >= _birthday(born, 16)
    assert len({r["公民身份号码"] for r in rows}) == len(rows)  # one row per person
    schemes = Counter(r["养老保险险种"] for r in rows)
    assert schemes[EMPLOYEE[0]] > 0 and schemes[RESIDENT[0]] > 0
    stamps = [r["更新时间"] for r in rows]
    assert stamps == sorted(stamps) and ds.watermark == stamps[-1]
    # numbered in the order people enrolled, whatever order the export lists them in: a change
    # to one row renumbers nobody (the number is the key the daily snapshots are compared by)
    enrolled = sorted(
        rows, key=lambda r: (r["参保日期"], r["公民身份号码"] if r["参保证明编号"] not in spoilt else "")
    )
    numbers = [int(r["参保证明编号"][8:]) for r in enrolled]
    assert sorted(numbers) == list(range(1, len(rows) + 1))
    assert [r["参保日期"] for r in sorted(rows, key=lambda r: r["参保证明编号"])] == sorted(
        r["参保日期"] for r in rows
    )
