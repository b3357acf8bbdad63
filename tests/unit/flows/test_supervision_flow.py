"""The supervision flow over a real home: approvals land through the daily flow (the shipped
contract), are pushed to a real local supervisor, come back read and answered; the supervisor down
fails the run and the next run pushes them all; an overdue approval raises its event once."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import yaml

from contracts.identifiers import citizen_id_check_char, uscc_check_char
from departments.approvals import approval_rows, create_approval_db, insert_approval_rows
from departments.supervisor import SupervisorEndpoint

TOKEN = "supervision-flow-token-0123456789"
APPROVALS = 8


def _businesses(n: int) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for i in range(n):
        body = f"92120114MA{i:07d}"
        person = f"12011419800101{i:03d}"
        rep_id = person + citizen_id_check_char(person)
        town = ("120114001000", "120114002000")[i % 2]
        address = f"天津市武清区杨村街道测试路{i}号"
        rows.append(
            (body + uscc_check_char(body), f"测试{i}号小吃部", f"李{i}", rep_id, address, town, "小餐饮",
             "2020-01-01", "存续")
        )  # fmt: skip
    return rows


@pytest.fixture
def landed(home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None, tmp_path: Path) -> Path:
    source = tmp_path / "approvals.db"
    create_approval_db(source)
    insert_approval_rows(source, approval_rows(np.random.default_rng(5), _businesses(APPROVALS)).rows)
    regs = tmp_path / "registrations"
    regs.mkdir()
    shipped = yaml.safe_load(
        (Path(__file__).resolve().parents[3] / "connectors/registrations/shenpi-approvals.yaml").read_text(
            "utf-8"
        )
    )
    shipped["options"]["url"] = f"sqlite:///{source}"
    (regs / "shenpi-approvals.yaml").write_text(yaml.safe_dump(shipped, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("ONCEONLY_REGISTRATIONS_DIR", str(regs))
    from flows.daily_sharing import daily_sharing, summary_of

    state = daily_sharing(return_state=True)
    assert state.is_completed(), state.message
    (connector,) = summary_of(state).connectors
    assert connector.dataset == "approval" and connector.accepted == APPROVALS and connector.certificates == 0
    return home


@pytest.fixture
def supervisor(landed: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SupervisorEndpoint]:
    from evidence.keys import log_verifiers
    from evidence.note import open_note
    from onceonly.settings import Settings

    verifiers = log_verifiers(Settings())
    endpoint = SupervisorEndpoint(TOKEN, lambda note: open_note(note, verifiers)).start()
    monkeypatch.setenv("ONCEONLY_SUPERVISION_URL", endpoint.base_url)
    monkeypatch.setenv("ONCEONLY_SECRET_SUPERVISION_TOKEN", TOKEN)
    monkeypatch.setenv("ONCEONLY_SUPERVISION_ATTEMPTS", "2")
    try:
        yield endpoint
    finally:
        endpoint.close()


def _run() -> Any:
    from flows.supervision import supervision

    return supervision(return_state=True)


def _events(name: str, since: dt.datetime, wait: float = 30, at_least: int = 1) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    deadline = time.monotonic() + wait
    with get_client(sync_client=True) as client:
        while True:  # events reach the API asynchronously, and not all at once
            page = client.read_events(
                EventFilter(event=EventNameFilter(name=[name]), occurred=EventOccurredFilter(since=since)),
                limit=50,
            )
            if len(page.events) >= at_least or time.monotonic() > deadline:
                return list(page.events)
            time.sleep(0.5)


def _artifact(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (latest,) = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1
        )
    return latest


def _table(key: str) -> str:
    """The table artifact's cells as text (its data is JSON)."""
    return json.dumps(json.loads(_artifact(key).data), ensure_ascii=False)


def test_pushed_read_answered_down_then_up_and_overdue_once(
    supervisor: SupervisorEndpoint, landed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor.stop()
    state = _run()
    assert state.is_failed()
    assert "推送中断" in state.message and f"{APPROVALS} 项待下次推送" in state.message
    supervisor.start()

    state = _run()
    assert state.is_completed(), state.message
    assert state.message.startswith(f"推送 {APPROVALS} 项（其中 0 项监管部门已立案，为重试），待推送 0 项")
    assert len(supervisor.cases()) == APPROVALS
    table = _table("supervision")
    assert "已推送未签收" in table and "许可决定编号" in table and "19800101" not in table
    assert "推送 8 项" in str(_artifact("supervision-report").data)

    ids = sorted(c["approval_id"] for c in supervisor.cases())
    supervisor.feedback(ids[0], "现场检查符合要求")
    supervisor.read(ids[1])
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    monkeypatch.setenv("ONCEONLY_SUPERVISION_UNREAD_HOURS", "0.0001")  # 0.36 s
    time.sleep(0.5)
    state = _run()
    assert state.is_completed(), state.message
    assert "新签收 2 项，新反馈 1 项" in state.message and f"新逾期 {APPROVALS - 2} 项" in state.message
    events = _events("onceonly.approval.unread", since, at_least=len(ids[2:]))
    assert {e.resource.id for e in events} == {f"onceonly.approval.{a}" for a in ids[2:]}
    assert all("未签收" in e.payload["message"] for e in events)
    table = _table("supervision")
    assert "现场检查符合要求" in table and "逾期未签收" in table

    state = _run()  # still overdue: nothing announced again
    assert "新逾期 0 项" in state.message, state.message
    time.sleep(2)
    assert len(_events("onceonly.approval.unread", since)) == len(events)
    engine = sa.create_engine(f"sqlite:///{landed / 'catalog.db'}")
    with engine.connect() as conn:
        kinds = conn.execute(
            sa.text("SELECT COUNT(*) FROM log_leaves WHERE kind = 'supervision'")
        ).scalar_one()
    engine.dispose()
    assert kinds == APPROVALS + 3  # the pushes, two reads, one feedback
