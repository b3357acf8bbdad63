"""Quarantine and the error-rate gate through the daily flow, on fixture household sources.

A household table in SQLite is the department's system: rows are corrected there and the
next run must accept them and resolve their quarantine entries; a source sending mostly bad
rows must stop its dataset for the run, keep the rows in quarantine and emit the breach event.
"""

from __future__ import annotations

import csv
import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from cli.main import app
from contracts.identifiers import citizen_id_check_char

UNKNOWN_TOWNSHIP = "120114999000"


def household_row(seq: int, **over: Any) -> dict[str, Any]:
    body = f"120114{19900307}{seq:03d}"
    row: dict[str, Any] = {
        "person_id": body + citizen_id_check_char(body),
        "name": f"张{seq}",
        "gender": "男",
        "ethnicity": "汉族",
        "birth_date": "1990-03-07",
        "household_no": f"H{seq:06d}",
        "relation": "户主",
        "address": f"天津市武清区杨村街道泉州路{seq}号",
        "township_code": ("120114001000", "120114002000", "120114003000")[seq % 3],
        "registered_on": "2000-01-01",
        "updated_at": "2026-11-20 08:00:00",
    }
    row.update(over)
    return row


COLUMNS = tuple(household_row(0))


def _source(path: Path, rows: list[dict[str, Any]]) -> None:
    con = sqlite3.connect(path)
    cols = ", ".join(f'"{c}" TEXT' for c in COLUMNS)
    con.execute(f"CREATE TABLE household_member (id INTEGER PRIMARY KEY, {cols})")
    marks = ", ".join("?" * (len(COLUMNS) + 1))
    con.executemany(
        f"INSERT INTO household_member (id, {', '.join(COLUMNS)}) VALUES ({marks})",
        [(i + 1, *(r[c] for c in COLUMNS)) for i, r in enumerate(rows)],
    )
    con.commit()
    con.close()


def _register(home: Path, monkeypatch: pytest.MonkeyPatch, **sources: Path) -> None:
    regs = home / "registrations"
    regs.mkdir(parents=True, exist_ok=True)
    for name, db in sources.items():
        reg = {
            "name": name,
            "department": f"测试公安局{name}",
            "dataset": "household",
            "type": "sql",
            "options": {
                "url": f"sqlite:///{db}",
                "table": "household_member",
                "cursor": {"column": "updated_at", "tiebreak": "id"},
            },
        }
        (regs / f"{name}.yaml").write_text(yaml.safe_dump(reg, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("ONCEONLY_REGISTRATIONS_DIR", str(regs))


def _run() -> tuple[Any, Any]:
    from flows.daily_sharing import daily_sharing, summary_of

    state = daily_sharing(return_state=True)
    return state, summary_of(state)


def _catalog(home: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{home / 'catalog.db'}")


def _assert_reports_published(home: Path, citizen_id: str) -> None:
    """The run's table artifact of broken rules and its link to the GX Data Docs page."""
    from urllib.parse import unquote, urlparse

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:  # the session's server holds other tests' runs too
        found: dict[str, Any] = {}
        for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["contract-gongan", "datadocs-gongan"])
            ),
            sort=ArtifactSort.CREATED_DESC,
        ):
            found.setdefault(str(a.key), a)  # the newest: this run's
    table = found["contract-gongan"].data
    assert "township_code.region_code" in str(table) and "10.00%" in str(table)
    assert citizen_id not in str(table)
    link = str(found["datadocs-gongan"].data).split("](")[1].rstrip(")")  # [text](url)
    page = Path(unquote(urlparse(link).path))
    assert link.startswith("file://") and page.is_relative_to(home.resolve() / "datadocs") and page.is_file()
    html = page.read_text(encoding="utf-8")
    assert "gb11643_citizen_id" in html and "region_code" in html
    assert citizen_id not in html, "Data Docs show masked examples only"
    assert (home / "datadocs" / "index.html").is_file()


def test_a_corrected_source_row_is_accepted_next_run_and_its_entry_resolved(
    home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None, tmp_path: Path
) -> None:
    rows = [household_row(i) for i in range(1, 11)]
    rows[3]["township_code"] = UNKNOWN_TOWNSHIP  # fixed at the source later
    rows[6]["name"] = None  # never fixed
    db = tmp_path / "gongan.db"
    _source(db, rows)
    _register(home, monkeypatch, gongan=db)

    state, first = _run()
    assert state.is_completed(), state.message
    (c,) = first.connectors
    assert (c.pulled, c.accepted, c.quarantined, c.certificates) == (10, 8, 2, 8)

    _assert_reports_published(home, rows[3]["person_id"])

    runner = CliRunner()
    listed = runner.invoke(app, ["quarantine", "list", "--dataset", "household"])
    assert listed.exit_code == 0, listed.output
    assert "township_code.region_code" in listed.output and "name.required" in listed.output
    assert rows[3]["person_id"] not in listed.output, "citizen IDs are masked on screen"
    assert rows[3]["person_id"][:6] + "********" + rows[3]["person_id"][-4:] in listed.output

    report = runner.invoke(
        app, ["quarantine", "report", "--department", "测试公安局", "-o", str(tmp_path / "r.csv")]
    )
    assert report.exit_code == 0, report.output
    assert "测试公安局gongan: 2 row(s) to correct at the source" in report.output
    assert rows[3]["person_id"] not in report.output
    with (tmp_path / "r.csv").open(encoding="utf-8-sig") as f:
        keys = {(r["rule"], r["source_key"]) for r in csv.DictReader(f)}
    assert keys == {
        ("township_code.region_code", rows[3]["person_id"]),
        ("name.required", rows[6]["person_id"]),
    }, "the department's own keys, in clear, in the file for it"
    assert (tmp_path / "r.csv").stat().st_mode & 0o077 == 0

    with _catalog(home).connect() as conn:
        entry_id = conn.execute(
            sa.text("SELECT id FROM quarantine WHERE rule = 'township_code.region_code'")
        ).scalar_one()
    shown = runner.invoke(app, ["quarantine", "show", str(entry_id)])
    assert shown.exit_code == 0, shown.output
    assert "household version 1." in shown.output and "status          open" in shown.output
    assert UNKNOWN_TOWNSHIP in shown.output  # not personal: shown as sent

    # The department corrects the township at the source; its system stamps the change.
    con = sqlite3.connect(db)
    con.execute(
        "UPDATE household_member SET township_code = ?, updated_at = ? WHERE id = 4",
        ("120114001000", "2026-11-21 09:00:00"),
    )
    con.commit()
    con.close()

    state, second = _run()
    assert state.is_completed(), state.message
    (c,) = second.connectors
    assert (c.pulled, c.accepted, c.quarantined, c.certificates) == (1, 1, 0, 1)
    with _catalog(home).connect() as conn:
        status = dict(
            conn.execute(sa.text("SELECT rule, resolved_at IS NOT NULL FROM quarantine")).all()  # type: ignore[arg-type]
        )
        issued = conn.execute(
            sa.text("SELECT count(*) FROM certificates WHERE holder_id = :p"), {"p": rows[3]["person_id"]}
        ).scalar_one()
    assert status == {"township_code.region_code": 1, "name.required": 0}
    assert issued == 1
    resolved = runner.invoke(app, ["quarantine", "list", "--status", "resolved", "--json"])
    assert (
        '"rule": "township_code.region_code"' in resolved.output and '"status": "resolved"' in resolved.output
    )
    report = runner.invoke(app, ["quarantine", "report"])
    assert "1 row(s) to correct" in report.output and "region_code" not in report.output


def test_a_batch_above_the_error_rate_stops_the_dataset_and_emits_the_breach_event(
    home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    bad = [household_row(i, township_code=UNKNOWN_TOWNSHIP) for i in range(1, 61)]  # 60 of 150 bad: 40 %
    good = [household_row(i) for i in range(61, 151)]
    _source(tmp_path / "a.db", good[:45] + bad + good[45:])
    _source(tmp_path / "b.db", [household_row(i) for i in range(200, 220)])  # same dataset, clean
    _register(home, monkeypatch, **{"a-breaking": tmp_path / "a.db", "b-clean": tmp_path / "b.db"})

    state, summary = _run()
    assert state.is_failed()
    by_name = {c.connector: c for c in summary.connectors}
    a, b = by_name["a-breaking"], by_name["b-clean"]
    assert a.status == "breached" and a.breached and a.certificates == 0
    # What happened, not "pulled 0 / quarantined 0": the refused batch's rows and its rule.
    assert (a.pulled, a.accepted, a.quarantined) == (150, 0, 60)
    assert a.breach_rules == {"township_code.region_code": 60}
    assert "rules broken: township_code.region_code (60 rows)" in (a.error or "")
    assert "60 of 150 rows (40%) broke contract household" in (a.error or "")
    assert "above its maxErrorRate 20%" in (a.error or "")
    assert (
        b.status == "failed"
        and b.pulled == 0
        and "breached the contract of dataset household" in (b.error or "")
    )

    with _catalog(home).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM certificates")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM batches")).scalar_one() == 0
        breach = conn.execute(sa.text("SELECT connector, pulled, quarantined FROM breaches")).one()
        assert tuple(breach) == ("a-breaking", 150, 60)
        assert conn.execute(sa.text("SELECT count(*) FROM quarantine")).scalar_one() == 60
        cursor, status = conn.execute(
            sa.text("SELECT cursor, last_status FROM connector_state WHERE connector = 'a-breaking'")
        ).one()
        assert cursor is None and status == "failed"
    assert list((home / "lake" / "quarantine" / "dataset=household").glob("breach-*.parquet"))
    listed = CliRunner().invoke(app, ["quarantine", "show", "1"])
    assert "refused: error rate above the contract's maxErrorRate" in listed.output

    # Pulled again, the same batch breaches again: recorded once, announced again.
    state, _ = _run()
    assert state.is_failed()
    with _catalog(home).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM quarantine")).scalar_one() == 60

    events: list[Any] = []
    with get_client(sync_client=True) as client:
        for _ in range(60):  # events reach the API asynchronously
            page = client.read_events(
                EventFilter(
                    event=EventNameFilter(name=["onceonly.contract.breached"]),
                    occurred=EventOccurredFilter(since=started),
                ),
                limit=50,
            )
            events = [e for e in page.events if e.payload.get("connector") == "a-breaking"]
            if len(events) >= 2:
                break
            time.sleep(0.5)
    assert len(events) >= 2
    event = events[0]
    assert event.resource.id == "onceonly.dataset.household"
    assert event.payload["pulled"] == 150 and event.payload["quarantined"] == 60
    assert event.payload["error_rate"] == 0.4 and event.payload["max_error_rate"] == 0.2
    assert event.payload["rules"] == {"township_code.region_code": 60}
    assert any(r.id == "onceonly.connector.a-breaking" for r in event.related)
    assert any(r.id.startswith("prefect.flow-run.") for r in event.related), "the run that saw it"
    # The first refusal is labelled first; the same rows refused again are not (one notification).
    firsts = sorted(e.resource.get("onceonly.first") for e in events[:2])
    assert firsts == ["false", "true"]
    assert sorted(e.payload["first"] for e in events[:2]) == [False, True]
