"""The expiry-reminders flow and its command line over a small home: find → send → record, its
artifacts in Chinese with counts only, once per reminder across runs; ``reminders list`` masked."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from catalog import Catalog
from onceonly.settings import Settings

SHARING_TESTS = Path(__file__).resolve().parents[1] / "sharing"
DAY = dt.date(2026, 12, 3)
COMPANIES = ["91120114MA05K1234X", "91120114MA05K2222X", "91120114MA05K3333X"]


@pytest.fixture
def small_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with a signing key and three 营业执照: two expiring within 60 days (two townships),
    one in 20 years."""
    monkeypatch.syspath_prepend(str(SHARING_TESTS))
    from catalog_records import LICENCE_TYPE, Records

    from cli.main import app as cli

    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    catalog = Catalog.connect(Settings().catalog_url)
    records = Records(catalog)
    for holder, days, township in zip(
        COMPANIES, (50, 5, 7300), ("120114001000", "120114002000", "120114001000"), strict=True
    ):
        records.certificate(
            holder,
            LICENCE_TYPE,
            valid_to=DAY + dt.timedelta(days=days),
            township=township,
            record_key=holder,
        )
    catalog.dispose()
    return home


def _artifact(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (latest,) = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1
        )
    return latest


def test_the_flow_reminds_once_and_reports_per_township(small_home: Path, prefect_harness: None) -> None:
    from flows.reminders import expiry_reminders

    state = expiry_reminders(day=DAY.isoformat(), return_state=True)
    assert state.is_completed(), state.message
    assert state.message == "2026-12-03: 2 reminder(s) sent in 2 notice(s), 0 closed, 2 township list(s)"
    folder = small_home / "reminders" / "2026-12-03"
    assert sorted(p.parent.name for p in folder.glob("*/到期提醒.xlsx")) == [
        "township=120114001000",
        "township=120114002000",
    ]
    assert len((folder / "notices.jsonl").read_text(encoding="utf-8").splitlines()) == 2
    table = json.loads(_artifact("expiry-reminders").data)
    assert {(r["镇街"], r["新发提醒"], r["通知"], r["清单行数"]) for r in table} == {
        ("杨村街道", 1, 1, 1),
        ("下朱庄街道", 1, 1, 1),
    }
    report = str(_artifact("expiry-reminders-report").data)
    assert "# 证照到期提醒 2026-12-03" in report and "本次新发提醒 **2** 条" in report
    assert "营业执照 7、60 天" in report and "| 营业执照 | 2 |" in report
    for company in COMPANIES:
        assert company not in report and company not in str(table)

    again = expiry_reminders(day=DAY.isoformat(), return_state=True)
    assert again.message == "2026-12-03: 0 reminder(s) sent in 0 notice(s), 0 closed, 2 township list(s)"
    next_day = expiry_reminders(day="2026-12-04", return_state=True)
    assert next_day.message.startswith("2026-12-04: 0 reminder(s) sent")
    wider = expiry_reminders(day="2026-12-04", days=10_000, return_state=True)
    assert wider.is_failed() and "--days must be between 0 and 3660" in wider.message


def test_a_bad_policy_fails_the_run_with_its_line(
    small_home: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows.reminders import expiry_reminders

    bad = tmp_path / "reminders.yaml"
    bad.write_text("default: 30\ntypes:\n  驾驶证: 30\n", encoding="utf-8")
    monkeypatch.setenv("ONCEONLY_REMINDERS_FILE", str(bad))
    state = expiry_reminders(day=DAY.isoformat(), return_state=True)
    assert state.is_failed() and f"{bad}:3: unknown certificate type '驾驶证'" in state.message


def test_reminders_run_and_list_on_the_command_line(small_home: Path, prefect_harness: None) -> None:
    from cli.reminders import app

    runner = CliRunner()
    done = runner.invoke(app, ["run", "--date", "2026-12-03", "--days", "10"])
    assert done.exit_code == 0, done.output
    assert "2026-12-03: 1 reminder(s) sent in 1 notice(s)" in done.output
    listed = runner.invoke(app, ["list", "--date", "2026-12-03"])
    assert listed.exit_code == 0, listed.output
    assert "911201********222X" in listed.output  # the USCC masked
    assert "有效期至 2026-12-08（5 天）" in listed.output and "待换证" in listed.output
    assert all(company not in listed.output for company in COMPANIES)
    assert listed.output.strip().endswith("1 reminder(s)")
    other = runner.invoke(app, ["list", "--township", "120114001000", "--date", "2026-12-03"])
    assert other.exit_code == 0 and "no reminder in township 120114001000" in other.output
    bad = runner.invoke(app, ["run", "--date", "12/03/2026"])
    assert bad.exit_code == 2 and "an ISO date such as 2026-12-03" in bad.output
