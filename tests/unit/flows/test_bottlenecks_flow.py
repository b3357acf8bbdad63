"""The bottlenecks flow over a real home: the daily flow quarantines two bad household records, a
counter's skip-check is stopped by them (数据待部门更正), the flow opens a work order per record
with files and artifacts; the department corrects one record at the source, the next daily run
lands it, and the next bottlenecks run closes its work order — the trend shows both runs."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from contracts.identifiers import citizen_id_check_char

DEPARTMENT = "测试公安局"
BAD = {3: "120114999000", 4: "120114888000"}  # rows whose township code is no township


def _id(seq: int) -> str:
    body = f"12011419900307{seq:03d}"
    return body + citizen_id_check_char(body)


def _source(path: Path, rows: int) -> None:
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE household_member (id INTEGER PRIMARY KEY, person_id TEXT, name TEXT, gender TEXT, "
        "ethnicity TEXT, birth_date TEXT, household_no TEXT, relation TEXT, address TEXT, "
        "township_code TEXT, registered_on TEXT, updated_at TEXT)"
    )
    for seq in range(1, rows + 1):
        con.execute(
            "INSERT INTO household_member VALUES (?, ?, ?, '男', '汉族', '1990-03-07', ?, '户主', ?, ?, "
            "'2000-01-01', '2026-11-20 08:00:00')",
            (
                seq,
                _id(seq),
                f"张{seq}",
                f"H{seq:06d}",
                f"天津市武清区杨村街道泉州路{seq}号",
                BAD.get(seq, "120114001000"),
            ),
        )
    con.commit()
    con.close()


@pytest.fixture
def landed(home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None, tmp_path: Path) -> Path:
    _source(tmp_path / "gongan.db", 8)
    regs = tmp_path / "registrations"
    regs.mkdir()
    reg = {
        "name": "gongan",
        "department": DEPARTMENT,
        "dataset": "household",
        "type": "sql",
        "options": {
            "url": f"sqlite:///{tmp_path / 'gongan.db'}",
            "table": "household_member",
            "cursor": {"column": "updated_at", "tiebreak": "id"},
        },
    }
    (regs / "gongan.yaml").write_text(yaml.safe_dump(reg, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("ONCEONLY_REGISTRATIONS_DIR", str(regs))
    _daily()
    return home


def _daily() -> None:
    from flows.daily_sharing import daily_sharing

    state = daily_sharing(return_state=True)
    assert state.is_completed(), state.message


def _artifact(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (latest,) = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1
        )
    return latest


def _table(key: str) -> list[dict[str, Any]]:
    data = _artifact(key).data
    return json.loads(data) if isinstance(data, str) else list(data)


def _ask(subject: str) -> dict[str, Any]:
    from cli.main import app

    out = CliRunner().invoke(
        app,
        [
            "skip-check",
            "--subject",
            subject,
            "--matter",
            "pension-enrolment",
            "--record-use",
            "120114001000",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    return {m["material"]: m for m in json.loads(out.output)["materials"]}


def test_work_orders_open_then_close_when_the_corrected_record_lands(landed: Path, tmp_path: Path) -> None:
    from flows.bottlenecks import bottlenecks, today_in_shanghai

    assert _ask(_id(3))["居民户口簿"]["verdict"] == "数据待部门更正"
    _ask(_id(3))  # the same citizen again: one citizen, two stops
    assert _ask(_id(4))["居民户口簿"]["verdict"] == "数据待部门更正"
    assert _ask(_id(1))["居民户口簿"]["skippable"]

    state = bottlenecks(return_state=True)
    assert state.is_completed(), state.message
    assert state.message == "2 work order(s) open (2 new), 0 closed, 2 citizen(s) stopped, 1 department(s)"
    (row,) = _table("bottlenecks")
    assert row["部门"] == DEPARTMENT and row["待更正工单"] == 2 and row["受阻群众（人）"] == 2
    orders = _table("bottleneck-work-orders")
    assert sorted((o["受阻群众（人）"], o["受阻次数"]) for o in orders) == [(1, 1), (1, 2)]
    assert all(o["未通过的校验规则"] == "township_code.region_code" for o in orders)
    assert all("城乡居民养老保险参保登记·居民户口簿" in o["受阻事项与材料"] for o in orders)
    folder = landed / "workorders" / DEPARTMENT / today_in_shanghai().isoformat()
    files = [folder / "办事堵点工单.csv", folder / "办事堵点工单.xlsx"]
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    text = files[0].read_text(encoding="utf-8-sig")
    with zipfile.ZipFile(files[1]) as book:
        text += "".join(book.read(n).decode("utf-8") for n in book.namelist() if n.endswith(".xml"))
    report = str(_artifact("bottleneck-report").data)
    for seen in (text, report, json.dumps(orders, ensure_ascii=False)):
        assert _id(3) not in seen and _id(4) not in seen  # masked keys, committed citizens
    assert f"{_id(3)[:6]}********{_id(3)[-4:]}" in text

    # The department corrects record 3 at its source; the next daily run lands it.
    con = sqlite3.connect(tmp_path / "gongan.db")
    con.execute(
        "UPDATE household_member SET township_code = '120114001000', updated_at = '2026-11-21 08:00:00' "
        "WHERE id = 3"
    )
    con.commit()
    con.close()
    _daily()
    assert _ask(_id(3))["居民户口簿"]["skippable"]

    state = bottlenecks(return_state=True)
    assert state.is_completed(), state.message
    assert state.message == "1 work order(s) open (0 new), 1 closed, 1 citizen(s) stopped, 1 department(s)"
    by_state = {o["状态"]: o for o in _table("bottleneck-work-orders")}
    assert set(by_state) == {"待更正", "已更正"}
    assert by_state["已更正"]["记录主键（脱敏）"].endswith(_id(3)[-4:])
    trend = _table("bottleneck-trend")
    assert [(t["待更正"], t["新增"], t["关闭"], t["受阻群众"]) for t in trend] == [(2, 2, 0, 2), (1, 0, 1, 1)]
    report = str(_artifact("bottleneck-report").data)
    assert "## 趋势" in report and "已更正" in report and "更正批次" in report

    from cli.bottlenecks import app

    closed = CliRunner().invoke(app, ["list", "--closed", "--json"])
    (item,) = json.loads(closed.output)
    assert item["closed_by_batch"] and item["closed_by_certificate"].startswith("1.2.156.")
