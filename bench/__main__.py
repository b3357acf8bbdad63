"""Run the benchmarks and write each one's figures to bench/results/<name>.json.

Example::

    make bench                                  # every benchmark at its default size
    .venv/bin/python -m bench pipeline --rows 20000

A benchmark is a module ``bench/<name>.py`` with ``run(rows: int | None) -> dict``: it measures
its own baseline in the same run and returns the figures (ratios included) to be written.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
from pathlib import Path

from bench import Unavailable

RESULTS = Path(__file__).resolve().parent / "results"

# name -> module; each module is imported only when its benchmark runs.
BENCHMARKS: dict[str, str] = {
    "pipeline": "bench.pipeline",
    "connectors": "bench.connectors",
    "contracts": "bench.contracts",
    "evidence": "bench.evidence",
    "counter": "bench.counter",
    "scaleout": "bench.scaleout",
    "daily": "bench.daily",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--rows", type=int, default=None, help="override each benchmark's default size")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    RESULTS.mkdir(exist_ok=True)
    for name in args.names or list(BENCHMARKS):
        print(f"== {name}", flush=True)
        try:
            figures = importlib.import_module(BENCHMARKS[name]).run(args.rows)
        except Unavailable as exc:
            print(f"{name}: not run: {exc}", flush=True)
            continue
        figures["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
        figures["when"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        out = RESULTS / f"{name}.json"
        out.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"figures written to {out}", flush=True)


if __name__ == "__main__":
    main()
