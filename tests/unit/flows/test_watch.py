"""The watch flow over a real home: a daily run lands a household source, then the watch sees the
dataset fresh, stale once its last landing is older than its contract allows, a key due for
rotation, and an audit that fails when a lake file goes missing — each as an event and in words."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from contracts.identifiers import citizen_id_check_char


def _source(path: Path, rows: int) -> None:
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE household_member (id INTEGER PRIMARY KEY, person_id TEXT, name TEXT, gender TEXT, "
        "ethnicity TEXT, birth_date TEXT, household_no TEXT, relation TEXT, address TEXT, "
        "township_code TEXT, registered_on TEXT, updated_at TEXT)"
    )
    for seq in range(1, rows + 1):
        body = f"12011419900307{seq:03d}"
        con.execute(
            "INSERT INTO household_member VALUES (?, ?, ?, '男', '汉族', '1990-03-07', ?, '户主', ?, ?, "
            "'2000-01-01', '2026-11-20 08:00:00')",
            (
                seq,
                body + citizen_id_check_char(body),
                f"张{seq}",
                f"H{seq:06d}",
                f"天津市武清区杨村街道泉州路{seq}号",
                ("120114001000", "120114002000")[seq % 2],
            ),
        )
    con.commit()
    con.close()


@pytest.fixture
def landed(home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None, tmp_path: Path) -> Path:
    _source(tmp_path / "gongan.db", 12)
    regs = tmp_path / "registrations"
    regs.mkdir()
    reg = {
        "name": "gongan",
        "department": "测试公安局",
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
    from flows.daily_sharing import daily_sharing

    state = daily_sharing(return_state=True)
    assert state.is_completed(), state.message
    return home


def _watch(**kwargs: Any) -> Any:
    from flows.watch import watch

    return watch(return_state=True, **kwargs)


def _events(name: str, since: dt.datetime) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    with get_client(sync_client=True) as client:
        for _ in range(60):  # events reach the API asynchronously
            page = client.read_events(
                EventFilter(event=EventNameFilter(name=[name]), occurred=EventOccurredFilter(since=since)),
                limit=50,
            )
            if page.events:
                return list(page.events)
            time.sleep(0.5)
    return []


def _artifact(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (latest,) = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1
        )
    return latest


def test_fresh_then_stale_after_the_window_each_stale_dataset_an_event(landed: Path) -> None:
    state = _watch()
    assert state.is_completed(), state.message
    assert state.message == "all datasets fresh, keys fit, audit consistent"

    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    engine = sa.create_engine(f"sqlite:///{landed / 'catalog.db'}")
    with engine.begin() as conn:  # the last landing three days ago: past 1 d + 1 d
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
        conn.execute(sa.text("UPDATE batches SET landed_at = :t"), {"t": old.replace(tzinfo=None)})
    engine.dispose()
    state = _watch(audit=False)
    assert state.is_completed(), "a stale dataset is a warning, not a failed watch"
    assert "1 freshness problem(s): dataset household: STALE — last landed" in state.message
    assert "3.0 d ago; its SLA allows frequency 1 d + latency 1 d" in state.message
    (event,) = _events("onceonly.dataset.stale", since)
    assert event.resource.id == "onceonly.dataset.household"
    assert event.payload["window_seconds"] == 2 * 86400
    table = str(_artifact("freshness").data)
    assert "household" in table and "stale" in table
    report = str(_artifact("watch-report").data)
    assert "## Freshness" in report and "STALE" in report and "## Audit" in report and "Not run." in report


def test_a_key_due_for_rotation_warns_and_a_missing_lake_file_fails_the_watch(
    landed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    monkeypatch.setenv("ONCEONLY_KEY_MAX_AGE_DAYS", "20")  # created today: due in 20 days, warned from 30
    state = _watch(audit=False)
    assert state.is_completed()
    assert "is due for rotation on" in state.message and "onceonly keys rotate" in state.message
    (event,) = _events("onceonly.key.expiring", since)
    assert event.resource.id.startswith("onceonly.key.")

    lake_file = sorted((landed / "lake").rglob("dataset=household/**/*.parquet"))[0]
    lake_file.unlink()
    state = _watch()
    assert state.is_failed()
    assert "the audit found 2 disagreement(s): accepted: batch" in state.message
    assert "the catalog says 12 accepted rows" in state.message
    (event,) = _events("onceonly.audit.failed", since)
    findings = event.payload["findings"]
    assert event.payload["count"] == 2 and any(f"{lake_file.name} is missing" in f for f in findings)
    assert not _events("onceonly.log.verify-failed", since)


def test_on_a_home_where_nothing_ran_yet_the_watch_still_checks_the_keys(
    home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    from evidence.keys import open_key_store
    from onceonly.settings import Settings

    settings = Settings()
    open_key_store(settings).load_or_create(settings.log_origin)  # keys exist, no catalog yet
    monkeypatch.setenv("ONCEONLY_KEY_MAX_AGE_DAYS", "20")
    state = _watch()
    assert state.is_completed(), state.message
    assert "is due for rotation on" in state.message
    assert not (home / "catalog.db").exists(), "the watch creates no catalog"
    monkeypatch.setenv("ONCEONLY_KEY_MAX_AGE_DAYS", "365")
    assert _watch().message == "no dataset registered yet, keys fit"
