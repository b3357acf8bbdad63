"""Relatives found through shared data, on the demo home: a parent's child and a child's parents
through the 出生医学证明 (卫健, landed through its registration and contract like the others),
the spouse through the 结婚证 — each shown masked, only the fact needed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog import Catalog
from cli.main import app
from contracts.model import certificate_datasets
from evidence.keys import log_verifiers
from onceonly.privacy import mask_citizen_id
from onceonly.settings import Settings
from sharing.matters import Material, Matter, load_matters
from sharing.skipcheck import skip_check

pytestmark = pytest.mark.e2e
HOUSEHOLD_TYPE = "11100000000019342N001"


def _a_family(home: Path) -> tuple[str, str, str]:
    """Mother, father and only child of a 出生医学证明 whose three copies were issued and whose
    child holds a 居民户口簿 (read from the department's own table, then checked in the catalog)."""
    births = sqlite3.connect(home / "departments" / "weijian" / "births.db")
    catalog = sqlite3.connect(home / "catalog.db")
    try:
        for mother, father, child in births.execute(
            "SELECT mother_id, father_id, child_id FROM birth_certificate ORDER BY birth_date DESC"
        ):
            held = {
                (holder, name)
                for holder, name in catalog.execute(
                    "SELECT holder_id, type_name FROM certificates WHERE holder_id IN (?, ?, ?) "
                    "AND status = '有效'",
                    (mother, father, child),
                )
            }
            wanted = {(p, "出生医学证明") for p in (mother, father, child)} | {(child, "居民户口簿")}
            # her only child (with several, the clerk must say which: the test below)
            (others,) = births.execute(
                "SELECT count(*) FROM birth_certificate "
                "WHERE (mother_id = ? OR father_id = ?) AND child_id != ?",
                (mother, father, child),
            ).fetchone()
            if wanted <= held and others == 0:
                return mother, father, child
    finally:
        births.close()
        catalog.close()
    raise AssertionError("the demo has no family with every certificate issued")


def test_a_parent_skips_the_childs_certificates_shown_masked(home: Path) -> None:
    mother, _, child = _a_family(home)
    result = CliRunner().invoke(app, ["skip-check", "--subject", mother, "--matter", "school-enrolment"])
    assert result.exit_code == 0, result.output
    masked = mask_citizen_id(child)
    assert f"✔ 子女居民户口簿（子女 {masked}）: 可免交" in result.output
    assert f"✔ 子女出生医学证明（子女 {masked}）: 可免交" in result.output
    assert child not in result.output and mother not in result.output
    # only the fact needed of the child's certificates: in force, not their dates (a birth date)
    as_json = CliRunner().invoke(
        app, ["skip-check", "--subject", mother, "--matter", "school-enrolment", "--json"]
    )
    theirs = [m for m in json.loads(as_json.output)["materials"] if m["holder"] == "child"]
    assert theirs and all(
        (m["status"], m["valid_from"], m["valid_to"]) == ("有效", None, None)
        for m in theirs
        if m["skippable"]
    )
    assert any(m["skippable"] for m in theirs)


def test_a_childs_parents_are_found_through_their_own_birth_certificate(home: Path) -> None:
    mother, father, child = _a_family(home)
    settings = Settings()
    issued_by = certificate_datasets(settings.contracts_dir)
    catalogue = load_matters(settings.matters_file, known_types=issued_by)
    matter = Matter(
        code="minor-application",
        name="未成年人事项",
        department="测试",
        subject="person",
        materials=(Material(name="父母居民户口簿", certificate_types=(HOUSEHOLD_TYPE,), holder="parent"),),
    )
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.read() as conn:
            answer = skip_check(
                conn,
                matter,
                child,
                issued_by,
                verifiers=log_verifiers(settings),
                relatives=catalogue.relatives,
            )
            # the mother's own view of the same certificate names her as the mother, not a parent
            # of hers: she has no parent through it
            her = skip_check(
                conn,
                matter,
                mother,
                issued_by,
                verifiers=log_verifiers(settings),
                relatives=catalogue.relatives,
            )
    finally:
        catalog.dispose()
    (parent,) = answer.materials
    assert parent.holder == "parent" and parent.holder_shown in {
        mask_citizen_id(mother),
        mask_citizen_id(father),
    }
    assert parent.verdict in {"可免交", "未找到证照"}  # a parent born elsewhere holds no 户口簿 here
    assert child not in str(answer.to_json()) and mother not in str(answer.to_json())
    (hers,) = her.materials
    assert hers.holder_shown != mask_citizen_id(child)


def _a_mother_of_two(home: Path) -> tuple[str, list[str]]:
    """A mother with two children, both with every certificate issued (department table, then the
    catalog)."""
    births = sqlite3.connect(home / "departments" / "weijian" / "births.db")
    catalog = sqlite3.connect(home / "catalog.db")
    try:
        for (mother,) in births.execute(
            "SELECT mother_id FROM birth_certificate GROUP BY mother_id HAVING count(*) = 2 "
            "ORDER BY mother_id"
        ):
            children = [
                c
                for (c,) in births.execute(
                    "SELECT child_id FROM birth_certificate WHERE mother_id = ?", (mother,)
                )
            ]
            issued = catalog.execute(
                "SELECT count(*) FROM certificates "
                "WHERE type_name = '出生医学证明' AND holder_id IN (?, ?, ?)",
                (mother, *children),
            ).fetchone()[0]
            if issued == 4:
                return mother, children
    finally:
        births.close()
        catalog.close()
    raise AssertionError("the demo has no mother of two with every certificate issued")


def test_with_two_children_the_clerk_names_which_and_a_stranger_is_refused(home: Path) -> None:
    mother, children = _a_mother_of_two(home)
    runner = CliRunner()
    asked = runner.invoke(app, ["skip-check", "--subject", mother, "--matter", "school-enrolment"])
    assert asked.exit_code == 0, asked.output
    # not guessed: the clerk is asked which child, and no child's number appears
    assert "申请人有 2 名子女：请填写是哪一名子女的身份证号码" in asked.output
    assert "可免交" not in asked.output.split("父母结婚证")[0]
    assert not any(c in asked.output or mask_citizen_id(c) in asked.output for c in children)
    for child in children:
        named = runner.invoke(
            app, ["skip-check", "--subject", mother, "--matter", "school-enrolment", "--child", child]
        )
        assert named.exit_code == 0, named.output
        assert f"✔ 子女出生医学证明（子女 {mask_citizen_id(child)}）: 可免交" in named.output
        assert child not in named.output
    # a child the log does not link to her: refused, whoever it is
    stranger = _a_family(home)[2]
    if stranger not in children:
        other = runner.invoke(
            app, ["skip-check", "--subject", mother, "--matter", "school-enrolment", "--child", stranger]
        )
        assert "所填子女与申请人的关系未由有效证照确认" in other.output and stranger not in other.output
        assert mask_citizen_id(stranger) not in other.output
