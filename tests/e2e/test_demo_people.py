"""``onceonly demo people``: generated people to try at the counter, one per different answer,
each answered as ``skip-check`` answers them; the person of another township is refused by a
station without the citizen's consent; a home without the generated demo lists nobody."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app

pytestmark = pytest.mark.e2e


def _registry(home: Path) -> dict[str, str]:
    with sqlite3.connect(home / "departments" / "gongan" / "household.db") as db:
        return dict(db.execute("SELECT person_id, township_code FROM household_member"))


def test_people_to_try_each_answered_as_skip_check_answers_them(home: Path) -> None:
    listed = CliRunner().invoke(app, ["demo", "people", "--matter", "marriage-household", "--json"])
    assert listed.exit_code == 0, listed.output
    found = json.loads(listed.output)
    registry = _registry(home)
    people = found["people"]
    assert len(people) >= 3
    assert len({tuple((v["material"], v["verdict"]) for v in p["verdicts"]) for p in people}) == len(people)
    assert [p["skippable"] for p in people] == sorted((p["skippable"] for p in people), reverse=True)
    assert people[0]["skippable"] > people[-1]["skippable"]
    for p in people:
        assert registry[p["subject_id"]] == found["township"] == p["township"]  # generated people only
        asked = CliRunner().invoke(
            app, ["skip-check", "--subject", p["subject_id"], "--matter", "marriage-household", "--json"]
        )
        assert asked.exit_code == 0, asked.output
        answer = json.loads(asked.output)
        assert [(m["material"], m["verdict"]) for m in answer["materials"]] == [
            (v["material"], v["verdict"]) for v in p["verdicts"]
        ]
    other = found["another_township"]
    assert registry[other["subject_id"]] == other["township"] != found["township"]

    text = CliRunner().invoke(app, ["demo", "people", "--matter", "marriage-household"])
    assert text.exit_code == 0, text.output
    assert (
        f"try: onceonly skip-check --subject {people[0]['subject_id']} --matter marriage-household"
        in text.output
    )


def test_the_demo_ends_pointing_at_the_counter(home: Path) -> None:
    said = (home.parent / "demo-output.txt").read_text(encoding="utf-8").splitlines()
    start = said.index("The counter (镇街/村服务站), next:")
    assert [line.split("#")[0].split() for line in said[start + 1 :]] == [
        ["onceonly", "stations", "add", "--name", "杨村街道便民服务中心", "--township", "120114001000"],
        ["onceonly", "demo", "people", "--township", "120114001000"],
        ["onceonly", "serve", "--port", "8080"],
    ]


def test_the_other_township_person_needs_consent_at_a_station(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    var = tmp_path / "var"  # a station is added and uses logged: not in the shared home
    shutil.copytree(home, var, symlinks=True)
    monkeypatch.setenv("ONCEONLY_HOME", str(var))
    found = json.loads(CliRunner().invoke(app, ["demo", "people", "--json"]).output)
    from catalog import Catalog
    from onceonly.settings import Settings
    from sharing.service import create_app
    from sharing.stations import add_station

    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    with catalog.begin() as conn:
        _, token = add_station(conn, "便民服务中心", found["township"], district=settings.district_code)
    catalog.dispose()
    ask = {"matter": found["matter"], "purpose": "婚育户一件事", "case_number": "WQ-2026-0601"}
    with TestClient(create_app(settings)) as client:
        for subject, status in (
            (found["people"][0]["subject_id"], 200),
            (found["another_township"]["subject_id"], 403),
        ):
            reply = client.post(
                "/api/skip-check",
                json={**ask, "subject_id": subject},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert reply.status_code == status, reply.text
        assert "需本人授权" in reply.json()["detail"] and subject not in reply.text


def test_a_home_without_the_generated_demo_lists_nobody(home: Path, tmp_path: Path) -> None:
    var = tmp_path / "var"
    shutil.copytree(home, var, symlinks=True)
    (var / "departments" / "manifest.json").unlink()  # the catalog stays: real people, say
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")} | {"ONCEONLY_HOME": str(var)}
    onceonly = Path(sys.executable).with_name("onceonly")
    refused = subprocess.run(
        [str(onceonly), "demo", "people"], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "no generated demo systems" in said and "real citizens are never listed" in said
    assert re.search(r"\d{17}[\dX]", said) is None
