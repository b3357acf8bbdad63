"""`make test`: the suite as two pytest processes at once, one per core, both required to pass.

Example::

    .venv/bin/python tests/groups.py             # what `make test` and CI run
    .venv/bin/python tests/groups.py -x -k faults  # extra arguments go to both processes
    .venv/bin/python -m pytest                   # the whole suite in one process, as before

The end-to-end tests (flows under Prefect, servers, workers) and the rest (unit, integration and
fuzz tests, with the fault-injection scenarios, the largest single e2e module) take about the same
time; run one after the other they took over half an hour on the 2-core CI machine. Each group
is its own pytest session: its own Prefect servers and temporary homes (the tests take free ports
and fresh schemas), so nothing one group does is seen by the other. Each group's output is
printed as it comes, every line prefixed with the group's name, and each group's summary again
at the end; the exit status is the first failing group's.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTS = "tests/e2e/test_faults.py"
GROUPS: dict[str, list[str]] = {
    "e2e": ["tests/e2e", f"--ignore={FAULTS}"],
    "rest": ["tests/unit", "tests/integration", "tests/fuzz", FAULTS],
}


def _pump(name: str, process: subprocess.Popen[str], tail: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        print(f"[{name}] {line}", end="", flush=True)
        tail.append(line)
        del tail[:-60]


def main(extra: list[str]) -> int:
    started = time.monotonic()
    running: dict[str, tuple[subprocess.Popen[str], list[str], threading.Thread]] = {}
    for name, paths in GROUPS.items():
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *paths, *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        tail: list[str] = []
        pump = threading.Thread(target=_pump, args=(name, process, tail), daemon=True)
        pump.start()
        running[name] = (process, tail, pump)
    codes = {}
    for name, (process, _, pump) in running.items():
        codes[name] = process.wait()
        pump.join()
    print(f"\n== both groups done in {time.monotonic() - started:.0f} s", flush=True)
    for name, (_, tail, _) in running.items():
        summary = next((line for line in reversed(tail) if line.startswith("=")), "(no summary)")
        print(f"[{name}] exit {codes[name]}: {summary.strip()}", flush=True)
    # Exit 5 (no test collected) is a failure, unless extra arguments filtered one group empty
    # while the other ran its tests.
    ran = any(code == 0 for code in codes.values())
    return next((code for code in codes.values() if code and not (code == 5 and extra and ran)), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
