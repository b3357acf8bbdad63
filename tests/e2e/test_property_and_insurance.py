"""不动产登记 and 人社 on the demo home, landed through their registrations and contracts like the
others: a home owner skips the 不动产权证书 (each spouse of a jointly owned home their own), a
sold home's certificate is 注销 and not skipped, an insured person skips the 社会保险参保证明 and
one whose insurance ended does not; the daily full export is read again without a change."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

pytestmark = pytest.mark.e2e


def _answers(subject: str, matter: str) -> dict[str, dict[str, object]]:
    result = CliRunner().invoke(app, ["skip-check", "--subject", subject, "--matter", matter, "--json"])
    assert result.exit_code == 0, result.output
    return {m["material"]: m for m in json.loads(result.output)["materials"]}


def _issued(home: Path, holder: str, type_name: str) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "catalog.db") as catalog:
        return catalog.execute(
            "SELECT cert_id, status FROM certificates WHERE holder_id = ? AND type_name = ?",
            (holder, type_name),
        ).fetchall()


def test_each_owner_of_a_joint_home_skips_their_own_property_certificate(home: Path) -> None:
    with sqlite3.connect(home / "departments" / "budongchan" / "property.db") as register:
        pairs = register.execute(
            "SELECT a.owner_id, b.owner_id, a.unit_no FROM property_right a JOIN property_right b "
            "ON a.unit_no = b.unit_no AND a.id < b.id WHERE a.co_ownership = '共同共有' AND a.status = '现势'"
        ).fetchall()
    assert pairs
    for first, second, _unit in pairs:
        if _issued(home, first, "不动产权证书") and _issued(home, second, "不动产权证书"):
            break
    else:
        raise AssertionError("no jointly owned home with both certificates issued")
    ids = set()
    for owner in (first, second):
        answer = _answers(owner, "real-estate-transfer")["不动产权证书"]
        assert answer["skippable"] is True and answer["verdict"] == "可免交", answer
        ids.add(answer["certificate_id"])
        assert "11100000MB0H30096N001.12120114MB1R203153" in str(answer["certificate_id"])
    assert len(ids) == 2  # one certificate each, not the spouse's


def test_a_sold_homes_certificate_is_cancelled_and_the_current_one_answers(home: Path) -> None:
    with sqlite3.connect(home / "departments" / "budongchan" / "property.db") as register:
        moved_on = [
            r[0]
            for r in register.execute(
                "SELECT owner_id FROM property_right WHERE status = '注销' AND owner_id IN "
                "(SELECT owner_id FROM property_right WHERE status = '现势')"
            )
        ]
    owner = next(o for o in moved_on if len(_issued(home, o, "不动产权证书")) == 2)
    by_status = {status: cert_id for cert_id, status in _issued(home, owner, "不动产权证书")}
    assert set(by_status) == {"有效", "注销"}
    answer = _answers(owner, "housing-fund-withdrawal")["购房人不动产权证书"]
    assert answer["skippable"] is True and answer["certificate_id"] == by_status["有效"], answer


def test_insured_and_ended_insurance(home: Path) -> None:
    export = home / "departments" / "renshe" / "export" / "insured_persons.csv"
    with export.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    by_status: dict[str, str] = {}
    for r in rows:
        if _issued(home, r["公民身份号码"], "社会保险参保证明"):
            by_status.setdefault(r["参保状态"], r["公民身份号码"])
    assert {"正常参保", "暂停缴费", "终止参保"} <= set(by_status)
    for status in ("正常参保", "暂停缴费"):  # insured, payments paused or not
        answer = _answers(by_status[status], "medical-care-elsewhere-filing")["医疗保险参保证明"]
        assert answer["skippable"] is True and answer["verdict"] == "可免交", (status, answer)
    ended = _answers(by_status["终止参保"], "medical-care-elsewhere-filing")["医疗保险参保证明"]
    assert ended["skippable"] is False and ended["verdict"] != "可免交"
