"""不动产登记 不动产权证书: the homes of the registry's households, held by the 户主 (and the 配偶
of a jointly owned home, bought after both were of age and after they married), at the
household's address, with homes sold since 注销."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

from contracts.identifiers import is_valid_citizen_id
from departments.generate import generate_all
from departments.household import household_engine, read_household_rows
from departments.marriages import read_marriage_csv
from departments.population import townships
from departments.properties import CANCELLED, CURRENT, JOINT, OWNER_AGE, SOLE, UNIFIED_SINCE, read_properties


def _birthday(born: dt.date, age: int) -> dt.date:
    """The day one born on ``born`` turns ``age`` (29 February: 1 March in a common year)."""
    try:
        return born.replace(year=born.year + age)
    except ValueError:
        return dt.date(born.year + age, 3, 1)


def test_each_certificate_names_a_registry_owner_of_a_home_in_their_township(tmp_path: Path) -> None:
    manifest = generate_all(tmp_path, rows=2000, seed=11)
    rows = read_properties(tmp_path / "budongchan" / "property.db")
    engine = household_engine(f"sqlite:///{tmp_path / 'gongan' / 'household.db'}")
    registry = {r[1]: r for r in read_household_rows(engine)}  # person_id -> row
    engine.dispose()
    ds = manifest.datasets["properties"]
    assert rows and len(rows) == ds.rows and len({r["cert_no"] for r in rows}) == len(rows)
    spoilt = {b.key for b in ds.bad_rows}
    assert spoilt and all(b.kind == "bad_check_char" and b.column == "owner_id" for b in ds.bad_rows)
    yesterday = dt.date(2026, 11, 19)
    kind = {t.code: t.kind for t in townships()}
    married: dict[str, dt.date] = {}
    for m in read_marriage_csv(tmp_path / "minzheng" / "drop" / "marriage_registrations_20261120.csv"):
        for person in (m["男方公民身份号码"], m["女方公民身份号码"]):
            married[person] = dt.date.fromisoformat(m["登记日期"])
    holders_of: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        holders_of.setdefault(str(r["unit_no"]), []).append(r)
        registered = dt.date.fromisoformat(r["registered_on"])
        assert UNIFIED_SINCE <= registered <= yesterday and r["updated_at"][:10] >= r["registered_on"]
        assert r["cert_no"].startswith(f"津（{registered.year}）武清区不动产权第")
        assert r["status"] in (CURRENT, CANCELLED) and float(r["building_area"]) > 0
        if r["cert_no"] in spoilt:
            assert not is_valid_citizen_id(r["owner_id"])
            continue
        owner = registry[r["owner_id"]]
        assert r["owner_name"] == owner[2] and owner[7] in ("户主", "配偶")
        assert r["township_code"] == owner[9] and r["unit_no"][6:9] == owner[9][6:9]
        assert registered >= _birthday(owner[5], OWNER_AGE)  # every owner was of age when registered
        if r["status"] == CURRENT:  # the home the household lives in
            assert r["location"] == owner[8]
        if r["co_ownership"] == JOINT and r["owner_id"] in married:  # bought as a married couple
            assert registered >= married[r["owner_id"]]
        # a flat in a sub-district (街道), a house on 宅基地 in a town (镇)
        assert r["right_type"].startswith("宅基地") == (kind[r["township_code"]] == "镇")
    for unit, held in holders_of.items():
        shares = {h["co_ownership"] for h in held}
        assert len(shares) == 1, unit
        if shares == {JOINT}:  # one certificate to each spouse, the 户主 and the 配偶 of one 户
            assert len(held) == 2 and all(h["status"] == CURRENT for h in held)
            clean = [registry[h["owner_id"]] for h in held if h["cert_no"] not in spoilt]
            assert len({c[6] for c in clean}) == 1 and len({c[3] for c in clean}) == len(clean)
        else:
            assert shares == {SOLE} and len(held) == 1
    counts = Counter(r["status"] for r in rows)
    assert counts[CURRENT] > 10 * counts[CANCELLED] > 0
    shares = Counter(r["co_ownership"] for r in rows)
    assert shares[SOLE] > 0 and shares[JOINT] > 0
    assert sum(1 for r in rows if r["co_ownership"] == JOINT and r["owner_id"] in married) > 0
    # a sold home was registered before, and cancelled no later than, the owner's current one
    current = {r["owner_id"]: r for r in rows if r["status"] == CURRENT}
    for r in rows:
        if r["status"] == CANCELLED and r["owner_id"] in current:
            assert r["registered_on"] < current[r["owner_id"]]["registered_on"]
            assert r["updated_at"][:10] <= current[r["owner_id"]]["registered_on"]
    stamps = [(r["updated_at"], r["id"]) for r in rows]
    assert stamps == sorted(stamps) and [r["id"] for r in rows] == list(range(1, len(rows) + 1))
    assert ds.watermark == stamps[-1][0]
