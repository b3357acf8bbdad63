"""历史材料免交 on the demo home: the 政务服务 电子材料库 landed through its registration and
contract like the other departments (one 历史申请材料 certificate per material), and a demo
citizen's disability card (the copy handed in before) is answered 可免交 at the counter — on the command
line and through the service, the use logged and its bundle verifying offline — while an expired
photo says when it expired."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app

pytestmark = pytest.mark.e2e
LIBRARY_TYPE = "11120114MB1Q52740K001"
CARD = "中华人民共和国残疾人证"


@pytest.fixture
def own_home(demo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the demo home (this test adds a station and logs uses: not in the shared one)."""
    var = tmp_path / "var"
    shutil.copytree(demo_home, var, symlinks=True)
    for name in list(os.environ):
        if name.startswith("ONCEONLY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ONCEONLY_HOME", str(var))
    yield var


def _only_material(home: Path, kind: str, in_force: bool) -> dict[str, Any]:
    """A library row of ``kind``, its holder's only one of that kind, in force today (or
    expired), whose 历史申请材料 certificate was issued (library first, then the catalog)."""
    today = dt.date.today().isoformat()
    with sqlite3.connect(home / "departments" / "zhengwu" / "materials.db") as library:
        library.row_factory = sqlite3.Row
        rows = library.execute(
            "SELECT * FROM submitted_material WHERE material_code = ? AND holder_id IN "
            "(SELECT holder_id FROM submitted_material WHERE material_code = ? GROUP BY holder_id "
            "HAVING count(*) = 1) ORDER BY id",
            (kind, kind),
        ).fetchall()
    with sqlite3.connect(home / "catalog.db") as catalog:
        for row in rows:
            if (row["valid_to"] >= today) != in_force:
                continue
            issued = catalog.execute(
                "SELECT cert_id FROM certificates WHERE type_code = ? AND record_key = ? AND holder_id = ?",
                (LIBRARY_TYPE, row["material_id"], row["holder_id"]),
            ).fetchall()
            if issued:
                return {**dict(row), "cert_id": issued[0][0]}
    raise AssertionError(f"the demo library has no issued {kind} ({'in force' if in_force else 'expired'})")


def _answers(subject: str, matter: str, *extra: str) -> dict[str, dict[str, Any]]:
    result = CliRunner().invoke(
        app, ["skip-check", "--subject", subject, "--matter", matter, "--json", *extra]
    )
    assert result.exit_code == 0, result.output
    assert subject not in result.output
    return {m["material"]: m for m in json.loads(result.output)["materials"]}


def test_a_disability_card_handed_in_before_is_answered_from_the_library(
    own_home: Path, tmp_path: Path
) -> None:
    # a card's copy: in force for years (a contract or a photo in force today may not be, later)
    contract = _only_material(own_home, "disability-card", in_force=True)
    answer = _answers(contract["holder_id"], "disability-allowances")[CARD]
    assert answer["skippable"] is True and answer["verdict"] == "可免交", answer
    assert answer["certificate_id"] == contract["cert_id"]
    assert answer["reason"] == (
        f"可复用历史材料：{contract['submitted_on']} 办理《{contract['matter_name']}》时提交，"
        f"有效至 {contract['valid_to']}"
    )

    # recorded as a use, and its bundle verifies offline like any certificate's
    used = _answers(contract["holder_id"], "disability-allowances", "--record-use", contract["township_code"])
    assert used[CARD]["skippable"]
    runner = CliRunner()
    who = runner.invoke(app, ["who-used", "--subject", contract["holder_id"], "--json"])
    assert who.exit_code == 0, who.output
    assert contract["cert_id"] in who.output and contract["holder_id"] not in who.output
    bundle = tmp_path / "material.json"
    exported = runner.invoke(app, ["certificates", "export", contract["cert_id"], "-o", str(bundle)])
    assert exported.exit_code == 0, exported.output
    verified = runner.invoke(app, ["verify", str(bundle)])
    assert verified.exit_code == 0 and "VALID" in verified.output, verified.output
    fields = json.loads(bundle.read_text(encoding="utf-8"))["certificate"]["fields"]
    assert fields["material_code"] == "disability-card"
    assert fields["content_sha256"] == contract["content_sha256"]


def test_an_expired_photo_says_when_and_the_counter_answers_the_reuse(own_home: Path) -> None:
    photo = _only_material(own_home, "photo", in_force=False)
    answer = _answers(photo["holder_id"], "senior-preferential-card")["近期免冠照片"]
    assert (answer["skippable"], answer["verdict"]) == (False, "证照已过期")
    assert answer["reason"].startswith(
        f"历史材料已于 {photo['valid_to']} 到期（{photo['submitted_on']} 办理《"
    )

    # the service answers the reuse like any material: certificate, bundle link, slip
    from catalog import Catalog
    from onceonly.settings import Settings
    from sharing.service import create_app
    from sharing.stations import add_station

    contract = _only_material(own_home, "disability-card", in_force=True)
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    with catalog.begin() as conn:
        _, token = add_station(conn, "便民服务中心", contract["township_code"], district="120114")
    catalog.dispose()
    with TestClient(create_app(settings)) as client:
        reply = client.post(
            "/api/skip-check",
            json={
                "subject_id": contract["holder_id"],
                "matter": "disability-allowances",
                "purpose": "残疾人两项补贴申请",
                "case_number": "WQ-2026-0420",
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        material = {m["material"]: m for m in body["materials"]}[CARD]
        assert material["verdict"] == "可免交" and material["certificate_id"] == contract["cert_id"]
        assert material["bundle_url"] == f"/api/certificates/{contract['cert_id']}/bundle"
        assert contract["cert_id"] in body["slip"] and contract["holder_id"] not in reply.text
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
