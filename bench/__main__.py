"""Run every benchmark and write the figures to bench/results/<name>.json.

Example::

    make bench                       # or: .venv/bin/python -m bench [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from bench import pipeline

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--rows", type=int, default=100_000, help="household rows to push through")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    figures = pipeline.run(args.rows)
    figures["machine"] = {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}
    figures["when"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    out = RESULTS / "pipeline.json"
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"figures written to {out}")


if __name__ == "__main__":
    main()
