"""The ``files`` connector through the daily flow (Prefect): a truncated file among good ones,
the archive folder filled only with landed files, and snapshot mode's counts in the summary."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from departments import generate_all
from onceonly.settings import Settings

pytestmark = pytest.mark.e2e

PASSPHRASE = "e2e-files-passphrase-0123456789-abcdef"
SHIPPED = Path(Settings().registrations_dir) / "minzheng-marriages.yaml"


@dataclass
class Home:
    root: Path
    drop: Path
    archive: Path
    regs: Path
    rows: list[bytes]  # the export's data lines (GBK), header first

    def register(self, **options: Any) -> None:
        data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
        data["options"].update({"path": str(self.drop), "settle_seconds": 0, **options})
        (self.regs / "minzheng-marriages.yaml").write_text(
            yaml.safe_dump(data, allow_unicode=True), encoding="utf-8"
        )

    def drop_file(self, name: str, lines: list[bytes], tail: bytes = b"", age: float = 10) -> Path:
        path = self.drop / name
        path.write_bytes(self.rows[0] + b"".join(lines) + tail)
        os.utime(path, (time.time() - age, time.time() - age))
        return path

    def run(self) -> tuple[Any, Any]:
        from flows.daily_sharing import daily_sharing, summary_of

        state = daily_sharing(return_state=True)
        return state, summary_of(state)

    def state_row(self) -> Any:
        engine = sa.create_engine(f"sqlite:///{self.root / 'var' / 'catalog.db'}")
        try:
            with engine.connect() as conn:
                return conn.execute(
                    sa.text("SELECT cursor, last_status, last_error FROM connector_state")
                ).one()
        finally:
            engine.dispose()


@pytest.fixture
def home(tmp_path: Path, prefect_harness: None) -> Iterator[Home]:
    var = tmp_path / "var"
    generate_all(var / "departments", rows=60, seed=11)
    (export,) = (var / "departments" / "minzheng" / "drop").glob("*.csv")
    rows = export.read_bytes().splitlines(keepends=True)
    drop, archive, regs = tmp_path / "drop", tmp_path / "archive", tmp_path / "regs"
    for d in (drop, regs):
        d.mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("ONCEONLY_HOME", str(var))
    mp.setenv("ONCEONLY_KEY_PASSPHRASE", PASSPHRASE)
    mp.setenv("ONCEONLY_REGISTRATIONS_DIR", str(regs))
    mp.setenv("ONCEONLY_SOURCE_ROOTS", str(tmp_path))  # the drop and archive beside the home
    mp.setenv("ONCEONLY_RETRY_WAIT_SECONDS", "0")
    mp.setenv("ONCEONLY_CONNECTOR_ATTEMPTS", "1")
    try:
        yield Home(tmp_path, drop, archive, regs, rows)
    finally:
        mp.undo()
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_truncated_file_fails_the_connector_by_name_while_good_files_land_and_are_archived(
    home: Home,
) -> None:
    home.register(archive=str(home.archive))
    data = home.rows[1:]
    home.drop_file("day1.csv", data[:20], age=30)
    home.drop_file("day2.csv", data[20:40], tail=b'2026,"cut inside a quoted field', age=20)
    home.drop_file("day3.csv", data[40:], age=10)

    state, summary = home.run()
    assert state.is_failed()
    (result,) = summary.connectors
    assert result.status == "failed" and result.pulled == len(data) - 20
    assert "minzheng-marriages" in result.error and "day2.csv" in result.error
    assert "truncated" in result.error
    assert sorted(p.name for p in home.drop.iterdir()) == ["day2.csv"]
    assert sorted(p.name.split("-", 1)[1] for p in home.archive.iterdir()) == ["day1.csv", "day3.csv"]
    row = home.state_row()
    assert row.last_status == "failed" and "day2.csv" in row.last_error

    state, summary = home.run()  # still broken: refused again, nothing doubled
    assert state.is_failed() and summary.connectors[0].pulled == 0

    home.drop_file("day2-corrected.csv", data[20:40])
    (home.drop / "day2.csv").unlink()
    state, summary = home.run()
    assert state.is_completed(), state.message
    assert summary.connectors[0].pulled == 20
    assert len(list(home.archive.iterdir())) == 3 and not list(home.drop.iterdir())


def test_snapshot_mode_reports_new_changed_and_deleted_in_the_summary(home: Home) -> None:
    home.register(change_detection="snapshot", key=["cert_no"])
    data = home.rows[1:]
    home.drop_file("full.csv", data)
    state, summary = home.run()
    assert state.is_completed(), state.message
    assert summary.connectors[0].changes == {"new": len(data), "changed": 0, "deleted": 0}

    changed = data[3].replace(b",", b"X,", 1)  # the first field (the key) differs: one new, one deleted
    home.drop_file("full.csv", [*data[:3], changed, *data[5:]])
    state, summary = home.run()
    assert state.is_completed(), state.message
    assert summary.connectors[0].changes == {"new": 1, "changed": 0, "deleted": 2}
    assert summary.rows()[0]["changes"] == "1 new, 0 changed, 2 deleted"
    assert set(json.loads(home.state_row().cursor)) == {"snapshot"}  # hashes live in Parquet

    state, summary = home.run()
    assert summary.connectors[0].pulled == 0 and summary.connectors[0].changes == {}
