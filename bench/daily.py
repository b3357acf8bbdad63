"""The full daily run, Prefect included, against the raw floor over the same department systems.

Example::

    make bench                                     # every benchmark; this one at 1M rows/department
    .venv/bin/python -m bench daily --rows 100000  # a smaller world
    ONCEONLY_BENCH_DAILY_SCALE=5 .venv/bin/python -m bench daily   # also 5x the rows: time, memory

The department systems are generated once (``departments.generate_all``: ``--rows`` per system,
eight systems — SQLite registers, an HTTP API, CSV drops). Then, in this order:

1. **The floor**: the raw work over every system's records, done the fastest plain way, no
   contract, catalog, signing or orchestration: each SQLite table read straight into Arrow
   (ADBC; the licence API's own table too — stricter than any HTTP client), each CSV by
   ``pyarrow.csv``; every citizen-ID column the contract checks validated as a NumPy byte matrix
   (GB 11643); SHA-256 of each row's canonical bytes; the Merkle root; a township-partitioned
   Parquet dataset. Best of two.
2. **A full run**: ``onceonly run`` in a process of its own, on a fresh home holding a copy of the
   systems, its own Prefect temporary server, SQLite catalog and local lake (the embedded
   defaults), the licence API served from this process. Records/s over the records pulled, the
   ratio to the floor, the run's stage times (from the run summary: pull, validate and land summed
   over the connectors; recover, status lists, extracts, witnesses; the rest is Prefect's start
   and bookkeeping) and the peak RSS of the largest process of the run (sampled from /proc:
   ``PeakRss``). Then the floor of the
   township workbooks (XLSX) the run wrote: their rows written again by XlsxWriter alone in one
   process (``workbook_floor``) — the maintained library's cost, which bounds the extracts stage.
3. **A re-run with no source change**, and 4. **a re-run after 1 % of the rows changed** (the
   departments' next day: ``departments.add_updates`` with 1 % of ``--rows``), on the same home;
   each one's time as a share of the full run's (goals ≤ 10 % and ≤ 15 %).

With ``ONCEONLY_BENCH_DAILY_SCALE=K`` the full run is repeated at K times the rows (fresh systems,
no workbook floor or re-runs) and the time and peak-memory ratios reported, its stage seconds
beside the base runs' (goals: time near-linear, memory ≤ 1.2×).

With ``ONCEONLY_BENCH_DAILY_FULL_ONLY=1`` only the floor and the full run are measured (no
workbook floor, no re-runs): a large size in ~2 hours instead of ~3 at 5M, its time judged against
its own floor measured in the same run (the floor is linear in the rows by construction, so a full
run near-linear in the rows keeps its ratio to the floor) and its peak memory against an earlier
base run's (memory does not drift with the machine's speed as time does)::

    ONCEONLY_BENCH_DAILY_FULL_ONLY=1 .venv/bin/python -m bench daily --rows 5000000
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench import process_tree

ROWS = 1_000_000
SEED = 20261203
PASSPHRASE = "bench-daily-passphrase-0123456789abcdef"
# The figures issue 15 was filed with (this machine, 2026-11): what "today" meant then.
AS_FILED = {
    "raw floor (vectorised), records/s": 220_000,
    "OnceOnly pull+validate+land without Prefect, records/s": 10_300,
    "make demo with Prefect, records/s": "3,000-7,000",
    "no-change re-run on the demo, s": "13-20",
}


def run_onceonly(home: Path, env_extra: dict[str, str], log: Path) -> dict[str, Any]:
    """``onceonly run`` in a process of its own on ``home``; wall seconds, peak RSS, summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONCEONLY_", "PREFECT_"))}
    env |= {
        "ONCEONLY_HOME": str(home),
        "ONCEONLY_KEY_PASSPHRASE": PASSPHRASE,
        "PREFECT_HOME": str(home.parent / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        **env_extra,
    }
    onceonly = Path(sys.executable).with_name("onceonly")
    started = time.perf_counter()
    with open(log, "ab") as out:
        child = subprocess.Popen([str(onceonly), "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
        peak = PeakRss(child.pid)
        _, status, _ = os.wait4(child.pid, 0)
        peak_mb = peak.stop()
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"onceonly run failed:\n{log.read_text(errors='replace')[-4000:]}")
    summary = _latest_summary(home)
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": peak_mb,
        "pulled": sum(c["pulled"] for c in summary["connectors"]),
        "certificates": sum(c["certificates"] for c in summary["connectors"]),
        "stages": _stages(summary, seconds),
    }


class PeakRss:
    """The peak resident set (VmHWM) of the largest process among ``pid`` and its descendants
    (the run, its workbook writers, its temporary Prefect server), sampled every 0.2 s.

    Not ``wait4``'s ``ru_maxrss``: Linux carries the parent's high-water mark over fork and
    exec, so a child of this (multi-GB) benchmark process reported the benchmark's memory."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[int, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Megabytes; call once the process has exited (its last sample was taken before)."""
        self._done.set()
        self._thread.join()
        return round(max(self.peaks.values(), default=0) / 1024)

    def _sample(self) -> None:
        while not self._done.is_set():
            for pid in process_tree(self.pid):
                kb = _vm_hwm_kb(pid)
                if kb:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), kb)
            self._done.wait(0.2)


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _latest_summary(home: Path) -> dict[str, Any]:
    import json

    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{home / 'catalog.db'}")
    try:
        with engine.connect() as conn:
            text = conn.exec_driver_sql(
                "SELECT summary FROM runs WHERE summary IS NOT NULL ORDER BY started_at DESC LIMIT 1"
            ).scalar()
    finally:
        engine.dispose()
    summary: dict[str, Any] = json.loads(text) if isinstance(text, str) else dict(text or {})
    return summary


def _stages(summary: dict[str, Any], wall: float) -> dict[str, float]:
    """Wall seconds per stage; ``prefect and start`` is what the stages do not account for."""
    stages: dict[str, float] = {}
    for connector in summary["connectors"]:
        for stage, seconds in (connector.get("stage_seconds") or {}).items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    run = summary.get("stage_seconds") or {}
    for stage in ("recover", "status", "extracts", "witnesses"):
        stages[stage] = run.get(stage, 0.0)
    if "connectors" in run:  # subflows, leases, events, Data Docs: the connectors' own overhead
        # pull and validate run alongside land; wait is what landing waited for them (the
        # Dask runner, and runs before the overlap, count that wait as pull instead)
        serial = ("land", "wait") if "wait" in stages else ("pull", "validate", "land")
        stages["connector overhead"] = run["connectors"] - sum(stages.get(s, 0.0) for s in serial)
    counted = sum(run.values()) if run else sum(stages.values())
    stages["prefect and start"] = wall - counted
    return {stage: round(seconds, 2) for stage, seconds in stages.items()}


# -- the floor ------------------------------------------------------------------------------


def _sources(home: Path) -> list[tuple[str, Any]]:
    """(dataset, reader) of every shipped department system; a reader returns an Arrow table."""
    from connectors import load_registrations
    from departments.registrations import SHIPPED

    readers: list[tuple[str, Any]] = []
    for reg in load_registrations(SHIPPED).values():
        options = reg.expanded_options(home)
        if reg.type == "sql":
            readers.append((reg.dataset, _sqlite_reader(options["url"], options["table"])))
        elif reg.type == "http":  # the API's own table: stricter than any HTTP client could be
            readers.append(
                (
                    reg.dataset,
                    _sqlite_reader(f"sqlite:///{home}/departments/scjg/licences.db", "business_licence"),
                )
            )
        elif reg.type == "files":
            readers.append((reg.dataset, _csv_reader(Path(options["path"]), options)))
        else:
            raise ValueError(f"no floor reader for connector type {reg.type!r} ({reg.name})")
    return readers


def _sqlite_reader(url: str, table: str) -> Any:
    path = url.removeprefix("sqlite:///")

    def read() -> pa.Table:
        import adbc_driver_sqlite.dbapi as adbc

        with adbc.connect(path) as con, con.cursor() as cur:
            cur.execute(f'SELECT * FROM "{table}"')
            return cur.fetch_arrow_table()

    return read


def _csv_reader(folder: Path, options: dict[str, Any]) -> Any:
    import pyarrow.csv as csv

    def read() -> pa.Table:
        files = sorted(folder.glob(options.get("pattern", "*.csv")))
        tables = []
        for path in files:
            read_options = csv.ReadOptions(encoding=options.get("encoding", "utf-8"))
            table = csv.read_csv(path, read_options=read_options)
            tables.append(
                table.rename_columns([options.get("rename", {}).get(n, n) for n in table.column_names])
            )
        return pa.concat_tables(tables, promote_options="permissive")

    return read


def floor(home: Path, out: Path) -> dict[str, Any]:
    """The raw work over every system, best of two; records and seconds per dataset."""
    from bench.pipeline import _merkle_root, _row_hashes, _valid_citizen_ids
    from contracts.compiler import compile_contract
    from contracts.model import contract_by_id
    from onceonly.settings import Settings

    contracts = Settings(home=home).contracts_dir
    per: dict[str, dict[str, float]] = {}
    for dataset, read in _sources(home):
        compiled = compile_contract(contract_by_id(contracts, dataset))
        ids = sorted({r.column for r in compiled.rules if r.check == "gb11643_citizen_id"})
        best = float("inf")
        rows = 0
        for attempt in range(2):
            started = time.perf_counter()
            table = read().combine_chunks()
            rows = table.num_rows
            for column in ids:  # a NULL is the contract's "required" rule's, not this check's
                values = table.column(column).cast(pa.string()).combine_chunks()
                keep = _valid_citizen_ids(values) | values.is_null().to_numpy(zero_copy_only=False)
                table = table.filter(pa.array(keep))
            root = _merkle_root(_row_hashes(table))
            assert len(root) == 32
            import pyarrow.dataset as ds

            township = compiled.township_column if compiled.township_column in table.column_names else None
            ds.write_dataset(
                table,
                out / f"{dataset}-{attempt}",
                format="parquet",
                partitioning=[township] if township else None,
                existing_data_behavior="overwrite_or_ignore",
            )
            best = min(best, time.perf_counter() - started)
        per[dataset] = {"records": rows, "seconds": round(best, 3)}
    records = sum(int(d["records"]) for d in per.values())
    seconds = sum(d["seconds"] for d in per.values())
    return {
        "records": records,
        "seconds": round(seconds, 2),
        "records_per_s": round(records / seconds),
        "datasets": per,
    }


def workbook_floor(extracts: Path, out: Path) -> dict[str, Any]:
    """What the full run's township workbooks cost by themselves: every extract's rows (read from
    its Parquet) written again by XlsxWriter, constant-memory, row by row, in one process — the
    library's own floor for files the stations need, which no vectorising removes."""
    import pyarrow.parquet as pq
    import xlsxwriter

    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    started = time.perf_counter()
    for number, path in enumerate(sorted(extracts.glob("township=*/extract=*/certificates.parquet"))):
        table = pq.read_table(path)
        rows += table.num_rows
        book = xlsxwriter.Workbook(str(out / f"{number}.xlsx"), {"constant_memory": True})
        columns = [table[name].to_pylist() for name in table.column_names]
        for index, values in enumerate(zip(*columns, strict=True)):
            if index % 1_048_576 == 0:  # a sheet's rows
                sheet = book.add_worksheet()
            sheet.write_row(index % 1_048_576, 0, values)
        book.close()
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds) if seconds else 0}


# -- the runs -------------------------------------------------------------------------------


def _world(work: Path, rows: int) -> Path:
    from departments import generate_all

    sources = work / f"departments-{rows}"
    started = time.perf_counter()
    generate_all(sources, rows=rows, seed=SEED)
    print(
        f"generated {rows:,} rows per department system in {time.perf_counter() - started:.0f} s", flush=True
    )
    return sources


def _home(work: Path, name: str, sources: Path) -> Path:
    home = work / name / "var"
    shutil.copytree(sources, home / "departments")
    return home


def _runs(work: Path, rows: int, sources: Path, *, base: bool) -> dict[str, Any]:
    """The full run; at the base size also the workbook floor and the two re-runs (a scaled run
    is there for its time and memory only: its workbook floor would add ~40 minutes at 5M)."""
    from departments import LicenceApi, add_updates, demo_token, local_registrations

    token = demo_token(SEED)
    home = _home(work, f"run-{rows}", sources)
    api = LicenceApi(home / "departments" / "scjg" / "licences.db", token=token)
    api.start()
    try:
        env = {
            "ONCEONLY_REGISTRATIONS_DIR": str(
                local_registrations(work / f"registrations-{rows}", api.base_url)
            ),
            "ONCEONLY_SECRET_SCJG_LICENCES_TOKEN": token,
        }
        log = work / f"run-{rows}.log"
        runs = {"full": run_onceonly(home, env, log)}
        print(f"full run at {rows:,} rows/department: {_line(runs['full'])}", flush=True)
        if base:
            runs["full"]["workbooks alone"] = workbook_floor(home / "extracts", work / "workbooks")
            print(f"the workbooks by XlsxWriter alone: {runs['full']['workbooks alone']}", flush=True)
            runs["no change"] = run_onceonly(home, env, log)
            print(f"re-run, no change: {_line(runs['no change'])}", flush=True)
            add_updates(home / "departments", rows=max(1, rows // 100), seed=SEED)
            runs["1% changed"] = run_onceonly(home, env, log)
            print(f"re-run, 1% changed: {_line(runs['1% changed'])}", flush=True)
    finally:
        api.stop()
    return runs


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['pulled']:,} records in {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB; stages {r['stages']}"
    )


# Disk a run takes per row of each department system, all eight together: the generated systems
# and the run's copy of them, the catalog, the lake, the snapshots and the extracts (a 5M run
# had filled 28 GB after 46 minutes of landing; ~60 GB by its end).
DISK_PER_ROW = 12_000


def check_disk(directory: Path, rows: int) -> None:
    """Refuse, before generating anything, a run the disk under ``directory`` cannot hold."""
    free = shutil.disk_usage(directory).free
    need = rows * DISK_PER_ROW
    if free < need:
        raise SystemExit(
            f"bench daily at {rows:,} rows per department needs ~{need / 1e9:.0f} GB of free disk under "
            f"{directory}, which has {free / 1e9:.1f} GB: free some, or set TMPDIR to a larger disk"
        )


def run(rows: int | None = None) -> dict[str, Any]:
    rows = rows or ROWS
    scale = int(os.environ.get("ONCEONLY_BENCH_DAILY_SCALE", "1"))
    full_only = os.environ.get("ONCEONLY_BENCH_DAILY_FULL_ONLY") == "1"
    check_disk(Path(tempfile.gettempdir()), rows * scale)
    with tempfile.TemporaryDirectory(prefix="onceonly-bench-daily-") as tmp:
        work = Path(tmp)
        sources = _world(work, rows)
        base = floor(_home(work, "floor", sources), work / "floor-out")
        shutil.rmtree(work / "floor", ignore_errors=True)
        shutil.rmtree(work / "floor-out", ignore_errors=True)
        print(
            f"floor: {base['records']:,} records in {base['seconds']} s = {base['records_per_s']:,}/s",
            flush=True,
        )
        runs = _runs(work, rows, sources, base=not full_only)
        scaled = None
        if scale > 1:
            shutil.rmtree(work / f"run-{rows}", ignore_errors=True)
            shutil.rmtree(sources, ignore_errors=True)
            big = _world(work, rows * scale)
            scaled = _runs(work, rows * scale, big, base=False)["full"]
    full = runs["full"]
    rate = full["pulled"] / full["seconds"]
    figures: dict[str, Any] = {
        "rows_per_department": rows,
        "floor": base,
        "runs": runs,
        "full_records_per_s": round(rate),
        "full_over_floor": round(rate / base["records_per_s"], 3),
        "as_filed": AS_FILED,
    }
    for name, key in (("no change", "no_change_share_of_full"), ("1% changed", "one_percent_share_of_full")):
        if name in runs:  # not with ONCEONLY_BENCH_DAILY_FULL_ONLY
            figures[key] = round(runs[name]["seconds"] / full["seconds"], 3)
    if scaled is not None:
        figures["scaled"] = {
            "factor": scale,
            "full": scaled,
            "time_ratio": round(scaled["seconds"] / full["seconds"], 2),
            "records_ratio": round(scaled["pulled"] / full["pulled"], 2),
            "peak_rss_ratio": round(scaled["peak_rss_mb"] / full["peak_rss_mb"], 2),
        }
    _print(figures)
    return figures


def _print(f: dict[str, Any]) -> None:
    print()
    print("as filed (issue 15, 200,000 household rows):")
    for what, value in AS_FILED.items():
        print(f"  {what:<58} {value:>12}")
    print(f"this run ({f['rows_per_department']:,} rows per department, {os.cpu_count()} cores):")
    full = f["runs"]["full"]
    print(f"  {'raw floor over every system, records/s':<58} {f['floor']['records_per_s']:>12,}")
    print(
        f"  {'full daily run with Prefect, records/s':<58} {f['full_records_per_s']:>12,}"
        f"  = {f['full_over_floor']:.2f}x the floor (goal >= 0.33)"
    )
    label = "full run: records, seconds, peak RSS MB"
    print(f"  {label:<58} {full['pulled']:>12,} {full['seconds']:>8} {full['peak_rss_mb']:>6}")
    for name, key, goal in (
        ("no change", "no_change_share_of_full", 0.10),
        ("1% changed", "one_percent_share_of_full", 0.15),
    ):
        if key not in f:
            continue  # the full run only
        share = f[key]
        label = f"re-run, {name}: seconds, share of full"
        print(f"  {label:<58} {f['runs'][name]['seconds']:>12} {share:>7.1%} (goal <= {goal:.0%})")
    books = full.get("workbooks alone")
    if books:
        label = "township workbooks by XlsxWriter alone: rows, seconds"
        print(
            f"  {label:<58} {books['rows']:>12,} {books['seconds']:>8}"
            f"  ({books['seconds'] / f['floor']['seconds']:.1f}x the floor's time, one core)"
        )
    columns = dict(f["runs"])
    if "scaled" in f:
        columns[f"{f['scaled']['factor']}x rows"] = f["scaled"]["full"]
    stages = list(dict.fromkeys(stage for r in columns.values() for stage in r["stages"]))
    print(f"  {'stage seconds':<22}" + "".join(f"{name:>14}" for name in columns))
    for stage in stages:
        print(f"  {stage:<22}" + "".join(f"{r['stages'].get(stage, 0):>14}" for r in columns.values()))
    if "scaled" in f:
        s = f["scaled"]
        big = s["full"]
        print(
            f"  {s['factor']}x rows: {big['pulled']:,} records in {big['seconds']} s: "
            f"time {s['time_ratio']}x for {s['records_ratio']}x the records; "
            f"peak RSS {s['peak_rss_ratio']}x (goal <= 1.2)"
        )
