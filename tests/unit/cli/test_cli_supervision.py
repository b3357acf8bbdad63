"""``onceonly supervision``: status over a home, the demo supervisor it serves, a light import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow as pa
from typer.testing import CliRunner

from cli.supervision import app, demo_supervisor
from departments.supervisor import demo_supervision_token
from onceonly.settings import Settings

ROW = {
    "approval_id": "WQSP2026000001",
    "licence_no": "JY21201140000019",
    "matter": "食品经营许可",
    "applicant_name": "武清区德丰早点部",
    "applicant_uscc": "92120114MAW5MXFG6P",
    "legal_representative": "张睿成",
    "legal_representative_id": "120114197512124959",
    "township_code": "120114112000",
    "decided_on": "2026-11-12",
    "supervising_authority": "天津市武清区市场监督管理局",
    "updated_at": "2026-11-12 16:29:00",
}


def test_status_lists_landed_approvals_waiting_with_no_personal_data(home: Path) -> None:
    from catalog import Catalog
    from lake.parquet import ParquetLake

    settings = Settings()
    Catalog.connect(settings.catalog_url).dispose()
    ParquetLake.of(settings).write_accepted("approval", "b1", pa.Table.from_pylist([ROW]), "township_code")
    done = CliRunner().invoke(app, ["status", "--json"])
    assert done.exit_code == 0, done.output
    shown = json.loads(done.output)
    assert shown["summary"].startswith("1 项许可决定：1 项待推送")
    (row,) = shown["approvals"]
    assert row["许可决定编号"] == "WQSP2026000001" and row["状态"] == "待推送"
    assert "120114197512124959" not in done.output
    text = CliRunner().invoke(app, ["status"])
    assert text.exit_code == 0 and "WQSP2026000001" in text.output


def test_the_demo_supervisor_checks_pushes_with_the_districts_keys(home: Path) -> None:
    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog
    from sharing.supervision import push_document, sign_push

    settings = Settings(supervision_url="http://127.0.0.1:0/api/v1")
    key, _ = open_key_store(settings).load_or_create(settings.log_origin)
    endpoint = demo_supervisor(settings, seed=1, feedback_after=0.0).start()
    try:
        note = sign_push(TransparencyLog(key, settings.log_origin), push_document(ROW, "120114"))
        headers = {
            "Authorization": f"Bearer {demo_supervision_token(1)}",
            "Idempotency-Key": ROW["approval_id"],
        }
        answer = httpx.post(endpoint.base_url + "/approvals", content=note.encode(), headers=headers)
        assert answer.status_code == 201 and answer.json()["case_id"] == "JG00000001"
        receipts = httpx.get(endpoint.base_url + "/receipts", headers=headers).json()["receipts"]
        assert {r["kind"] for r in receipts} <= {"read", "feedback"}
    finally:
        endpoint.close()
    assert (settings.departments_dir / "scjg" / "supervision.db").exists()


def test_importing_the_command_module_loads_no_stage() -> None:
    stages = ("prefect", "sqlalchemy", "pyarrow", "httpx", "evidence", "sharing")
    code = f"import sys, cli.supervision; print(sorted(m for m in {stages!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
