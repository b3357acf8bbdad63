"""generate_all, generate_if_missing, add_updates and the manifest; the package's exports."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import departments
from departments import (
    BAD_ROW_KINDS,
    Manifest,
    add_updates,
    demo_token,
    generate_all,
    generate_if_missing,
)
from departments.approvals import read_approvals
from departments.births import read_births
from departments.household import household_engine, read_household_rows
from departments.insurance import read_insurance_export
from departments.licences import read_licence_rows
from departments.marriages import read_marriage_csv
from departments.materials import read_materials
from departments.properties import read_properties

# Drawn from the registry's people, so as many rows as those give (not ``rows``).
DERIVED = {
    "births": lambda root: len(read_births(root / "weijian" / "births.db")),
    "properties": lambda root: len(read_properties(root / "budongchan" / "property.db")),
    "insurance": lambda root: len(read_insurance_export(root / "renshe" / "export")),
    "approvals": lambda root: len(read_approvals(root / "shenpi" / "approvals.db")),
    "materials": lambda root: len(read_materials(root / "zhengwu" / "materials.db")),
}
# Of those, the registers that change day to day (add_updates writes to them).
DAILY = {"approvals", "materials"}


def snapshot(root: Path) -> dict[str, object]:
    """Everything the sources hold, in source order."""
    engine = household_engine(f"sqlite:///{root / 'gongan' / 'household.db'}")
    household = read_household_rows(engine)
    engine.dispose()
    drop = root / "minzheng" / "drop"
    return {
        "household": household,
        "licences": read_licence_rows(root / "scjg" / "licences.db"),
        "marriages": {p.name: p.read_bytes() for p in sorted(drop.iterdir())},
        "births": read_births(root / "weijian" / "births.db"),
        "properties": read_properties(root / "budongchan" / "property.db"),
        "insurance": (root / "renshe" / "export" / "insured_persons.csv").read_bytes(),
        "approvals": read_approvals(root / "shenpi" / "approvals.db"),
        "materials": read_materials(root / "zhengwu" / "materials.db"),
        "manifest": json.loads((root / "manifest.json").read_text(encoding="utf-8")),
    }


def test_exports() -> None:
    assert departments.__all__ == sorted(
        departments.__all__, key=lambda n: (not n.isupper(), n[0].islower(), n)
    )
    for name in departments.__all__:
        assert getattr(departments, name) is not None


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    a = generate_all(tmp_path / "a", rows=600, seed=1)
    b = generate_all(tmp_path / "b", rows=600, seed=1)
    c = generate_all(tmp_path / "c", rows=600, seed=2)
    assert a == b
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    sa, sc = snapshot(tmp_path / "a"), snapshot(tmp_path / "c")
    for name in ("household", "licences", "marriages", "births", "properties", "insurance", "approvals"):
        assert sa[name] != sc[name]
    assert sa["materials"] != sc["materials"]
    assert a != c


def test_regenerating_overwrites(tmp_path: Path) -> None:
    generate_all(tmp_path, rows=300, seed=1)
    add_updates(tmp_path, rows=50, seed=1)
    manifest = generate_all(tmp_path, rows=200, seed=1)
    assert manifest.datasets["household"].rows == 200 and len(manifest.batches) == 1
    assert len(list((tmp_path / "minzheng" / "drop").iterdir())) == 1
    assert len(read_licence_rows(tmp_path / "scjg" / "licences.db")) == 200


@pytest.mark.parametrize("rows", [1, 10, 99])
def test_tiny_datasets(tmp_path: Path, rows: int) -> None:
    manifest = generate_all(tmp_path, rows=rows, seed=4)
    for name, ds in manifest.datasets.items():
        if name in DERIVED:
            assert ds.rows <= 2 * rows and DERIVED[name](tmp_path) == ds.rows
        else:
            assert ds.rows == rows and ds.bad_rows == []
    assert (
        len(read_marriage_csv(tmp_path / "minzheng" / "drop" / "marriage_registrations_20261120.csv")) == rows
    )


def test_manifest_contents(tmp_path: Path) -> None:
    manifest = generate_all(tmp_path, rows=800, seed=9)
    data = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert data["seed"] == 9 and data["rows"] == 800
    assert set(data["datasets"]) == {
        "household",
        "licences",
        "marriages",
        "births",
        "properties",
        "insurance",
        "approvals",
        "materials",
    }
    keys = {
        "births": "cert_no",
        "properties": "cert_no",
        "insurance": "参保证明编号",
        "approvals": "approval_id",
        "materials": "material_id",
    }
    for name, key in keys.items():
        derived = data["datasets"].pop(name)
        assert derived["key"] == key and 0 < derived["rows"] == DERIVED[name](tmp_path)
        assert {b["kind"] for b in derived["bad_rows"]} == {"bad_check_char"}
        assert derived["watermark"] == data["batches"][0]["watermarks"][name]
    assert data["datasets"]["licences"]["api_token_env"] == "ONCEONLY_SECRET_SCJG_LICENCES_TOKEN"
    assert data["datasets"]["household"]["key"] == "person_id"
    assert data["datasets"]["marriages"]["key"] == "登记证字号"
    for ds in data["datasets"].values():
        assert ds["rows"] == 800
        assert {b["kind"] for b in ds["bad_rows"]} == set(BAD_ROW_KINDS)
        assert all(set(b) == {"kind", "key", "column"} for b in ds["bad_rows"])
        duplicates = [b["key"] for b in ds["bad_rows"] if b["kind"] == "duplicate_key"]
        assert len(duplicates) == len(set(duplicates))
    assert demo_token(9) not in (tmp_path / "manifest.json").read_text(encoding="utf-8")
    assert Manifest.load(tmp_path) == manifest
    assert data["batches"][0]["file"] == "marriage_registrations_20261120.csv"


def test_demo_token_is_deterministic() -> None:
    assert demo_token(1) == demo_token(1) != demo_token(2)
    assert len(demo_token(1)) > 20


def test_generate_if_missing(tmp_path: Path) -> None:
    first, created = generate_if_missing(tmp_path, rows=300, seed=3)
    assert created
    stamp = (tmp_path / "scjg" / "licences.db").stat().st_mtime_ns
    again, created = generate_if_missing(tmp_path, rows=300, seed=3)
    assert not created and again == first
    assert (tmp_path / "scjg" / "licences.db").stat().st_mtime_ns == stamp
    _, created = generate_if_missing(tmp_path, rows=301, seed=3)
    assert created
    (tmp_path / "gongan" / "household.db").unlink()
    _, created = generate_if_missing(tmp_path, rows=301, seed=3)
    assert created


def test_add_updates_appends_later_rows(tmp_path: Path) -> None:
    before = generate_all(tmp_path, rows=1000, seed=21)
    old = snapshot(tmp_path)
    marks = {k: v.watermark for k, v in before.datasets.items()}
    after = add_updates(tmp_path, rows=400, seed=1)
    new = snapshot(tmp_path)

    household = new["household"]
    assert isinstance(household, list) and isinstance(old["household"], list)
    assert household[:1000] == old["household"]
    added = household[1000:]
    assert len(added) == 400 and [r[0] for r in added] == list(range(1001, 1401))
    assert all(r[11].isoformat() > str(marks["household"]) for r in added)
    assert [r[11] for r in added] == sorted(r[11] for r in added)
    changed = after.batches[1].changed["household"]
    assert changed  # 分户: existing people with a second, later row as 户主 of a new household
    later = {r[1]: r for r in added}
    for pid in changed:
        assert later[pid][7] == "户主"
        assert any(r[1] == pid for r in household[:1000])

    licences = new["licences"]
    assert isinstance(licences, list)
    assert len(licences) == 1400
    fresh = [r for r in licences if r[14] > str(marks["licences"])]
    assert len(fresh) == 400 + len(after.batches[1].changed["licences"])
    assert all(r[6] == "2026-11-20" for r in licences[1000:])

    files = new["marriages"]
    assert isinstance(files, dict)
    assert sorted(files) == ["marriage_registrations_20261120.csv", "marriage_registrations_20261121.csv"]
    rows = read_marriage_csv(tmp_path / "minzheng" / "drop" / "marriage_registrations_20261121.csv")
    assert len(rows) == 400
    first = read_marriage_csv(tmp_path / "minzheng" / "drop" / "marriage_registrations_20261120.csv")
    assert not {r["登记证字号"] for r in rows} & {r["登记证字号"] for r in first}
    assert {r["登记日期"] for r in rows} <= {"2026-11-20", "2026-11-19"}  # duplicates are a day off
    engaged = {r[c] for r in first for c in ("男方公民身份号码", "女方公民身份号码")}
    assert not engaged & {r[c] for r in rows for c in ("男方公民身份号码", "女方公民身份号码")}

    assert [b.number for b in after.batches] == [0, 1]
    for name in DERIVED.keys() - DAILY:  # those registers are not updated daily
        assert after.datasets[name] == before.datasets[name] and after.batches[1].written[name] == 0
    # 食品经营许可: a decision for each new food business of the day, after the history's.
    approvals = new["approvals"]
    assert isinstance(approvals, list) and isinstance(old["approvals"], list)
    assert approvals[: len(old["approvals"])] == old["approvals"]
    added_approvals = approvals[len(old["approvals"]) :]
    assert len(added_approvals) == after.batches[1].written["approvals"] > 0
    assert after.datasets["approvals"].rows == len(approvals)
    assert all(a["decided_on"] == "2026-11-20" and a["decision_type"] == "准予许可" for a in added_approvals)
    new_usccs = {r[0] for r in licences[1000:]}
    assert {a["applicant_uscc"] for a in added_approvals} <= new_usccs
    assert all(a["updated_at"] > str(marks["approvals"]) for a in added_approvals)
    # 电子材料库: the materials handed in that day, after the history's, ids and numbers going on.
    materials = new["materials"]
    assert isinstance(materials, list) and isinstance(old["materials"], list)
    assert materials[: len(old["materials"])] == old["materials"]
    handed_in = materials[len(old["materials"]) :]
    assert len(handed_in) == after.batches[1].written["materials"] > 0
    assert after.datasets["materials"].rows == len(materials)
    assert [m["id"] for m in handed_in] == list(range(len(old["materials"]) + 1, len(materials) + 1))
    assert all(m["submitted_on"] == "2026-11-20" < m["valid_to"] for m in handed_in)
    assert all(m["updated_at"] > str(marks["materials"]) for m in handed_in)
    for name, ds in after.datasets.items():
        if name in DERIVED:
            continue
        assert ds.watermark is not None and ds.watermark > str(marks[name])
        assert len(ds.bad_rows) > len(before.datasets[name].bad_rows)
    assert after.datasets["household"].rows == 1400 and after.datasets["marriages"].rows == 1400
    assert Manifest.load(tmp_path) == after

    again = add_updates(tmp_path, rows=100, seed=2)
    assert again.batches[2].day == "2026-11-21"
    assert str(again.datasets["household"].watermark) > str(after.datasets["household"].watermark)
    assert (tmp_path / "minzheng" / "drop" / "marriage_registrations_20261122.csv").exists()


def test_add_updates_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_all(tmp_path / name, rows=500, seed=8)
        add_updates(tmp_path / name, rows=120, seed=3)
        add_updates(tmp_path / name, rows=80, seed=4)
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_add_updates_needs_a_generated_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        add_updates(tmp_path, rows=10, seed=1)


def test_sqlite_household_file_is_a_real_sqlite_database(tmp_path: Path) -> None:
    generate_all(tmp_path, rows=150, seed=1)
    with sqlite3.connect(tmp_path / "gongan" / "household.db") as conn:
        assert conn.execute("SELECT count(*) FROM household_member").fetchone() == (150,)


def test_licences_written_beside_equal_licences_written_inline(tmp_path: Path) -> None:
    from departments import generate as gen
    from departments.licences import eligible_representatives
    from departments.population import synthesize_population

    people = synthesize_population(np.random.default_rng(1), 400)
    reps = eligible_representatives(people, set())
    inline = gen._beside(10, gen._write_licences, tmp_path / "a.db", 300, np.random.default_rng(2), reps)()
    beside = gen._beside(
        gen.PARALLEL_FROM_ROWS, gen._write_licences, tmp_path / "b.db", 300, np.random.default_rng(2), reps
    )()
    assert inline == beside
    assert read_licence_rows(tmp_path / "a.db") == read_licence_rows(tmp_path / "b.db")
