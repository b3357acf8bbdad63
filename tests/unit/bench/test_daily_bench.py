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
