"""The bottleneck loop on the generated demo world, through Prefect: the 公安 system's deliberately
bad rows (the manifest's ``bad_keys``) are quarantined by the daily flow, the counter is stopped
by them, the bottlenecks flow opens the 公安's work orders; the department corrects one row at its
source, the next day's run lands it and the next bottlenecks run closes that work order."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from contracts.identifiers import is_valid_citizen_id
from departments import Manifest, generate_all, local_registrations

pytestmark = pytest.mark.e2e

ROWS, SEED = 400, 7
PASSPHRASE = "e2e-passphrase-0123456789-abcdefghij"
GONGAN = "天津市公安局武清分局"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[tuple[Path, Manifest]]:
    root = tmp_path_factory.mktemp("bottlenecks")
    home = root / "var"
    manifest = generate_all(home / "departments", rows=ROWS, seed=SEED)
    regs = local_registrations(root / "registrations", "http://127.0.0.1:9", backoff_seconds=0.01)
    mp = pytest.MonkeyPatch()
    for name, value in {
        "ONCEONLY_HOME": str(home),
        "ONCEONLY_KEY_PASSPHRASE": PASSPHRASE,
        "ONCEONLY_REGISTRATIONS_DIR": str(regs),
        "ONCEONLY_RETRY_WAIT_SECONDS": "0",
    }.items():
        mp.setenv(name, value)
    mp.delenv("ONCEONLY_DATABASE_URL", raising=False)
    try:
        yield home, manifest
    finally:
        mp.undo()
        shutil.rmtree(root, ignore_errors=True)


def _daily() -> None:
    from flows.daily_sharing import daily_sharing

    state = daily_sharing(connectors=["gongan-household"], return_state=True)
    assert state.is_completed(), state.message


def _ask(subject: str) -> str:
    from cli.main import app

    args = ["skip-check", "--json", "--subject", subject, "--matter", "pension-enrolment"]
    out = CliRunner().invoke(app, [*args, "--record-use", "120114001000"])
    assert out.exit_code == 0, out.output
    return str({m["material"]: m for m in json.loads(out.output)["materials"]}["居民户口簿"]["verdict"])


def test_the_demo_worlds_bad_rows_open_work_orders_and_a_correction_closes_one(
    world: tuple[Path, Manifest],
) -> None:
    from cli.bottlenecks import app
    from flows.bottlenecks import bottlenecks

    home, manifest = world
    _daily()
    bad = sorted(
        k for k in manifest.datasets["household"].bad_keys("unknown_township") if is_valid_citizen_id(k)
    )
    assert bad
    for subject in bad:
        assert _ask(subject) == "数据待部门更正"

    state = bottlenecks(return_state=True)
    assert state.is_completed(), state.message
    runner = CliRunner()
    listed = json.loads(runner.invoke(app, ["list", "--department", "公安", "--open", "--json"]).output)
    assert len(listed) == len(bad) and all(o["citizens"] == 1 for o in listed)
    assert all(
        o["department"] == GONGAN and o["rules"][0]["rule"] == "township_code.region_code" for o in listed
    )
    files = sorted((home / "workorders" / GONGAN).rglob("办事堵点工单.*"))
    assert [f.suffix for f in files] == [".csv", ".xlsx"]
    text = files[0].read_text(encoding="utf-8-sig")
    assert all(subject not in text for subject in bad) and files[0].stat().st_mode & 0o777 == 0o600

    # The 公安 corrects the first bad row at its source; the next day's run lands it.
    fixed = bad[0]
    source = sa.create_engine(f"sqlite:///{home / 'departments' / 'gongan' / 'household.db'}")
    with source.begin() as conn:
        latest = conn.execute(sa.text("SELECT MAX(updated_at) FROM household_member")).scalar_one()
        later = dt.datetime.fromisoformat(str(latest)) + dt.timedelta(days=1)
        conn.execute(
            sa.text(
                "UPDATE household_member SET township_code = '120114001000', updated_at = :t "
                "WHERE person_id = :p"
            ),
            {"t": later, "p": fixed},
        )
    source.dispose()
    _daily()
    assert _ask(fixed) == "可免交"

    state = bottlenecks(return_state=True)
    assert state.is_completed(), state.message
    closed = json.loads(runner.invoke(app, ["list", "--closed", "--json"]).output)
    assert len(closed) == 1 and closed[0]["source_key"].endswith(fixed[-4:])
    assert closed[0]["closed_by_certificate"]
    still = json.loads(runner.invoke(app, ["list", "--open", "--json"]).output)
    assert len(still) == len(bad) - 1
