"""The whole daily run, Prefect included, with the thread runner and with Dask, on one machine.

Baseline: ``onceonly run`` with the default thread runner (connectors one after another).
Measured: the same command with ``ONCEONLY_TASK_RUNNER=dask`` (a LocalCluster of one
single-threaded worker process per core pulling and validating every connector at once, the
flow landing them in order). Each run gets a fresh home holding a copy of the same generated
department systems (``departments.generate_all``; ``--rows`` per system, default 240,000: about
a million records over the six), its own Prefect temporary server and a fresh catalog; the 市场监管
licence API is served from this process. Reported: records pulled, wall seconds, records/s, the
ratio Dask / threads, and the peak RSS of the largest process of each run (the flow's; a Dask
worker's is reported by Dask, not here).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROWS = 240_000
SEED = 20261203


def _run(work: Path, sources: Path, registrations: Path, token: str, runner: str) -> dict[str, Any]:
    from bench.daily import run_onceonly

    home = work / runner / "var"
    shutil.copytree(sources, home / "departments")
    env = {
        "ONCEONLY_REGISTRATIONS_DIR": str(registrations),
        "ONCEONLY_SECRET_SCJG_LICENCES_TOKEN": token,
        "ONCEONLY_TASK_RUNNER": runner,
    }
    done = run_onceonly(home, env, work / f"{runner}.log")
    return {
        "records": done["pulled"],
        "seconds": round(done["seconds"], 1),
        "records_per_s": round(done["pulled"] / done["seconds"]),
        "peak_rss_mb": done["peak_rss_mb"],
    }


def run(rows: int | None) -> dict[str, Any]:
    from departments import LicenceApi, demo_token, generate_all, local_registrations

    rows = rows or ROWS
    with tempfile.TemporaryDirectory(prefix="onceonly-bench-scaleout-") as tmp:
        work = Path(tmp)
        sources = work / "departments"
        started = time.perf_counter()
        generate_all(sources, rows=rows, seed=SEED)
        print(f"generated {rows:,} rows per department system in {time.perf_counter() - started:.0f} s")
        token = demo_token(SEED)
        api = LicenceApi(sources / "scjg" / "licences.db", token=token)
        api.start()
        try:
            registrations = local_registrations(work / "registrations", api.base_url)
            threads = _run(work, sources, registrations, token, "thread")
            print(f"thread runner: {threads}", flush=True)
            dask = _run(work, sources, registrations, token, "dask")
            print(f"dask runner:   {dask}", flush=True)
        finally:
            api.stop()
    ratio = dask["records_per_s"] / threads["records_per_s"]
    print(f"{'runner':<8} {'records':>10} {'seconds':>8} {'records/s':>10} {'peak RSS MB':>12}")
    for name, figures in (("thread", threads), ("dask", dask)):
        print(
            f"{name:<8} {figures['records']:>10,} {figures['seconds']:>8} "
            f"{figures['records_per_s']:>10,} {figures['peak_rss_mb'] or '-':>12}"
        )
    print(f"dask / thread: {ratio:.2f}× on {os.cpu_count()} cores")
    return {
        "rows_per_department": rows,
        "thread": threads,
        "dask": dask,
        "ratio_dask_to_thread": round(ratio, 3),
        "cores": os.cpu_count(),
    }
