"""bench daily's peak-memory probe: the child's own peak, not this (larger) process's."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.daily import PeakRss


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
