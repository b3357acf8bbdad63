"""证照到期提醒 on the demo world (``onceonly demo``): the generated 营业执照 that end soon are
reminded the day after the base day, each once; the lists and the log name nobody in clear."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.e2e

DAY = "2026-11-21"  # the day after the demo's base day (departments.population.BASE_DATE)


@pytest.fixture
def demo_copy(demo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo home's catalog, keys and passphrase, copied: this test writes reminders."""
    home = tmp_path / "var"
    home.mkdir(mode=0o700)
    for name in ("keys", "secrets"):
        shutil.copytree(demo_home / name, home / name)
    with sqlite3.connect(demo_home / "catalog.db") as source, sqlite3.connect(home / "catalog.db") as target:
        source.backup(target)
        # `onceonly demo` ran the reminders for its own day: start from a home where none were sent
        # (their log leaves stay; the test counts only the leaves its runs append).
        target.execute("DELETE FROM expiry_reminders")
        target.execute("DELETE FROM expiry_notices")
    for name in [n for n in os.environ if n.startswith("ONCEONLY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ONCEONLY_HOME", str(home))
    return home


def test_the_demo_world_is_reminded_once(demo_copy: Path, prefect_harness: None) -> None:
    from openpyxl import load_workbook

    from flows.reminders import expiry_reminders
    from onceonly.settings import Settings
    from sharing.reminders import load_policy

    settings = Settings()

    engine = sa.create_engine(f"sqlite:///{demo_copy / 'catalog.db'}")
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT COALESCE(MAX(leaf_index), -1) FROM log_leaves")).scalar_one()
    state = expiry_reminders(day=DAY, return_state=True)
    assert state.is_completed(), state.message
    with engine.connect() as conn:
        sent = conn.execute(
            sa.text("SELECT cert_id, holder_id, township, type_code, window_days FROM expiry_reminders")
        ).all()
    assert len(sent) >= 10, "the demo generates 营业执照 ending within 60 days of its base day"
    policy = load_policy(settings.reminders_file, settings.contracts_dir)
    assert all(r.window_days in policy.types[r.type_code].windows for r in sent)
    licences = [r for r in sent if policy.types[r.type_code].type_name == "营业执照"]
    assert len(licences) >= 10 and {r.window_days for r in licences} <= {7, 60}
    assert state.message.startswith(f"{DAY}: {len(sent)} reminder(s) sent")

    folder = demo_copy / "reminders" / DAY
    lists = sorted(folder.glob("township=*/到期提醒.xlsx"))
    assert {p.parent.name.removeprefix("township=") for p in lists} == {r.township for r in sent}
    holders = {r.holder_id for r in sent}
    for path in lists:
        rows = list(load_workbook(path).active.iter_rows(values_only=True))  # type: ignore[union-attr]
        assert rows[0][:5] == ("序号", "镇街代码", "镇街", "证照类型", "证照标识")
        assert not holders & {str(v) for row in rows for v in row}
    assert len((folder / "notices.jsonl").read_text(encoding="utf-8").splitlines()) == len(holders)

    again = expiry_reminders(day=DAY, return_state=True)
    assert again.message.startswith(f"{DAY}: 0 reminder(s) sent")
    later = expiry_reminders(day="2026-11-22", return_state=True)
    assert later.is_completed(), later.message
    with engine.connect() as conn:
        pairs = conn.execute(sa.text("SELECT cert_id, window_days FROM expiry_reminders")).all()
        entries = conn.execute(
            sa.text("SELECT entry FROM log_leaves WHERE kind = 'expiry-reminder' AND leaf_index > :before"),
            {"before": before},
        ).scalars()
        everything = [json.loads(e) for e in entries]
        logged = [e for e in everything if e["event"] == "sent"]  # closings (已再次提醒) are logged too
    engine.dispose()
    assert len(pairs) == len(set(pairs)), "a certificate reminded twice for one window"
    assert len(logged) == len(pairs) and all("subject_commitment" in e for e in logged)
    text = json.dumps(everything, ensure_ascii=False)
    assert not [h for h in holders if h in text]
    assert {dt.date.fromisoformat(e["day"]) for e in logged} <= {dt.date(2026, 11, 21), dt.date(2026, 11, 22)}
