"""bench daily's peak-memory probe: the child's own peak, not this (larger) process's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.daily import DISK_PER_ROW, PeakRss, check_disk


def test_peak_rss_is_the_largest_process_of_the_tree_not_the_parents_high_water() -> None:
    held = bytearray(400 * 1024 * 1024)  # this process is big; a child inherits its ru_maxrss
    held[::4096] = b"x" * len(held[::4096])
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'b = bytearray(120 * 1024 * 1024); b[::4096] = bytes(len(b[::4096])); "
        "import time; time.sleep(1.5)'])\n"
        "child.wait()\n"
    )
    run = subprocess.Popen([sys.executable, "-c", script])
    peak = PeakRss(run.pid)
    _, status, usage = os.wait4(run.pid, 0)
    measured = peak.stop()
    assert os.waitstatus_to_exitcode(status) == 0
    assert 100 <= measured < 300  # the grandchild's 120 MB, sampled from /proc
    assert usage.ru_maxrss / 1024 > 400  # what wait4 would have said: this process's memory
    del held


def test_a_run_the_disk_cannot_hold_is_refused_before_anything_is_generated(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    check_disk(tmp_path, free // DISK_PER_ROW // 2)  # half the disk: goes on
    with pytest.raises(SystemExit, match=r"needs ~\d+ GB of free disk under .* which has"):
        check_disk(tmp_path, free // DISK_PER_ROW * 2)


def test_the_scaled_runs_stages_are_printed_beside_the_base_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.daily import _print

    def run(seconds: float, land: float) -> dict[str, object]:
        return {"pulled": 10, "seconds": seconds, "peak_rss_mb": 100, "stages": {"land": land}}

    runs = {"full": run(100.0, 60.0), "no change": run(5.0, 1.0), "1% changed": run(9.0, 2.0)}
    figures = {
        "rows_per_department": 10,
        "floor": {"records_per_s": 1000, "seconds": 1.0},
        "runs": runs,
        "full_records_per_s": 1,
        "full_over_floor": 0.001,
        "no_change_share_of_full": 0.05,
        "one_percent_share_of_full": 0.09,
        "scaled": {
            "factor": 5,
            "full": run(520.0, 301.5),
            "time_ratio": 5.2,
            "records_ratio": 5.0,
            "peak_rss_ratio": 1.04,
        },
    }
    _print(figures)
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "stage seconds" in line)
    assert header.split()[-2:] == ["5x", "rows"]
    assert next(line for line in lines if line.strip().startswith("land")).split() == [
        "land",
        "60.0",
        "1.0",
        "2.0",
        "301.5",
    ]
    assert any("time 5.2x for 5.0x the records; peak RSS 1.04x (goal <= 1.2)" in line for line in lines)


def test_the_full_run_alone_is_printed_without_re_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.daily import _print

    figures = {
        "rows_per_department": 10,
        "floor": {"records_per_s": 1000, "seconds": 1.0},
        "runs": {"full": {"pulled": 10, "seconds": 50.0, "peak_rss_mb": 100, "stages": {"land": 30.0}}},
        "full_records_per_s": 200,
        "full_over_floor": 0.2,
    }
    _print(figures)
    out = capsys.readouterr().out
    assert "re-run, no change" not in out and "re-run, 1% changed" not in out
    assert "= 0.20x the floor" in out
    land = next(line for line in out.splitlines() if line.strip().startswith("land"))
    assert land.split() == ["land", "30.0"]
