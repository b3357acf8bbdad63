"""The counter service under load: skip-check over HTTP (wrk, a second process), and in process.

A home with ``rows`` household certificates (default 1M) is issued through the pipeline's own
issuance (``draft_table`` + ``evidence.issuance.issue_certificates``, one checkpoint per 10,000,
the status lists published), a station of township 120114001000 is added, and ``onceonly serve``
runs in its own process. Then, on the same machine and in the same run:

- **HTTP, OnceOnly**: ``wrk`` POSTs ``/api/skip-check`` (城乡居民养老保险参保登记) for random
  residents of the station's township — each answer proven from the log (opening, inclusion
  proof, signed status list), its use appended to the log with a signed checkpoint, and a signed
  verification slip — reporting requests/s and the p50/p99 latency;
- **HTTP floor**: the same ``wrk`` against ``/healthz`` of the same server (uvicorn and FastAPI
  answering, nothing else): no answer over HTTP here can be faster;
- **in process, OnceOnly**: the read-only skip-check (``sharing.skipcheck.skip_check`` with the
  log's verifiers, no use logged) for random residents, answers per second;
- **in-process floor**: the one indexed catalog query a lookup needs (the subject's certificates of
  the accepted types), raw sqlite3, per second.

The targets (issue 12): p99 ≤ 5 ms at ≥ 1,000 requests/s over HTTP including the use entry, and
≥ 20,000 in-process lookups/s, with 1M certificates.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench import Unavailable

BATCH = 10_000
TOWNSHIP = "120114001000"
PASSPHRASE = "bench-counter-passphrase"
WRK_SECONDS = 10
WRK_CONNECTIONS = 8


def _citizen_ids(n: int) -> pa.Array:
    """``n`` distinct valid GB 11643 numbers of Wuqing residents (vectorised check characters)."""
    serial = np.arange(n, dtype=np.int64)
    day = np.datetime64("1950-01-01") + (serial // 1000).astype("timedelta64[D]")
    birth = np.datetime_as_string(day, unit="D")
    body = np.char.add(
        np.char.add("120114", np.char.replace(birth, "-", "")), np.char.zfill((serial % 1000).astype(str), 3)
    )
    digits = np.frombuffer(body.astype("S17").tobytes(), dtype=np.uint8).reshape(n, 17) - 48
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    check = np.array(list("10X98765432"))[(digits @ weights) % 11]
    return pa.array(np.char.add(body, check))


def _records(n: int) -> pa.Table:
    from bench.evidence import _records as evidence_records

    table = evidence_records(n)
    return table.set_column(table.schema.get_field_index("person_id"), "person_id", _citizen_ids(n))


def _build_home(home: Path, n: int) -> tuple[list[str], str]:
    """Issue ``n`` certificates into a new home; the residents of TOWNSHIP and a station's token."""
    from catalog import Catalog, utcnow
    from contracts.compiler import compile_contract
    from contracts.model import contract_by_id
    from evidence.certificate import draft_table
    from evidence.issuance import issue_certificates
    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog, batch_receipt
    from evidence.status_list import publish_status_lists
    from onceonly.settings import Settings
    from sharing.stations import add_station

    subprocess.run(
        [sys.executable, "-m", "cli.main", "keys", "init"],
        check=True,
        env=os.environ.copy(),
        capture_output=True,
    )
    settings = Settings()
    compiled = compile_contract(contract_by_id(settings.contracts_dir, "household"))
    catalog = Catalog.connect(settings.catalog_url)
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    records = _records(n)
    for number, start in enumerate(range(0, n, BATCH)):
        accepted = records.slice(start, BATCH)
        drafts = draft_table(accepted, compiled)
        with catalog.begin() as conn:
            now = utcnow()
            batch_id = f"bench{number:08d}"

            def receipt(
                count: int, batch_id: str = batch_id, pulled: int = accepted.num_rows, now: Any = now
            ) -> Any:
                return batch_receipt(
                    batch_id=batch_id,
                    content_sha256="0" * 64,
                    contract=compiled.ref,
                    dataset="household",
                    pulled=pulled,
                    accepted=pulled,
                    quarantined=0,
                    certificates=count,
                    landed_at=now.isoformat(timespec="seconds"),
                )

            issue_certificates(
                conn,
                log,
                compiled,
                drafts,
                batch_id=batch_id,
                issue_date=now.date(),
                now=now,
                receipt=receipt,
            )
    with catalog.begin() as conn:
        publish_status_lists(conn, log)
        _, token = add_station(conn, "压测服务站", TOWNSHIP, district=settings.district_code)
    catalog.dispose()
    mine = records.filter(pc.equal(records.column("township_code"), TOWNSHIP)).column("person_id").to_pylist()
    return mine, token


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(port: int) -> subprocess.Popen[bytes]:
    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("onceonly serve did not start")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _wrk(url: str, script: Path | None) -> dict[str, float]:
    """Requests/s and p50/p99 (ms) of ``wrk`` (one thread, WRK_CONNECTIONS connections)."""
    command = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{WRK_SECONDS}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout

    def latency(p: str) -> float:
        found = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if found is None:
            raise RuntimeError(f"wrk printed no {p}% latency:\n{out}")
        return round(float(found.group(1)) * _UNITS[found.group(2)], 3)

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return {
        "requests_per_s": round(float(rate.group(1)), 1),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def _lua(path: Path, token: str, subjects: list[str]) -> Path:
    ids = ",".join(f'"{s}"' for s in subjects)
    path.write_text(
        f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
local ids = {{{ids}}}
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format(nil, "/api/skip-check", nil,
    '{{"subject_id":"' .. id .. '","matter":"pension-enrolment","purpose":"压测","case_number":"BENCH-1"}}')
end
""",
        encoding="utf-8",
    )
    return path


def _in_process(subjects: list[str], seconds: float) -> tuple[float, float]:
    """Read-only skip-checks per second in process, and the raw indexed query's floor."""
    from catalog import Catalog
    from contracts.model import certificate_datasets
    from evidence.keys import log_verifiers
    from onceonly.settings import Settings
    from sharing.matters import load_matters
    from sharing.skipcheck import skip_check

    settings = Settings()
    issued_by = certificate_datasets(settings.contracts_dir)
    matter = load_matters(settings.matters_file).get("pension-enrolment")
    verifiers = log_verifiers(settings)
    catalog = Catalog.connect(settings.catalog_url, create=False)
    rng = random.Random(7)
    done, t0 = 0, time.perf_counter()
    with catalog.read() as conn:
        while time.perf_counter() - t0 < seconds:
            answer = skip_check(conn, matter, rng.choice(subjects), issued_by, verifiers=verifiers)
            assert answer.materials[0].verdict == "可免交", answer
            done += 1
    ours = done / (time.perf_counter() - t0)
    catalog.dispose()
    raw = sqlite3.connect(settings.home / "catalog.db")
    query = (
        "SELECT cert_id, status, valid_from, valid_to, leaf_index FROM certificates "
        "WHERE holder_id = ? AND type_code IN (?)"
    )
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        raw.execute(query, (rng.choice(subjects), "11100000000019342N001")).fetchall()
        done += 1
    floor = done / (time.perf_counter() - t0)
    raw.close()
    return ours, floor


def run(rows: int | None = None) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise Unavailable(
            "the counter benchmark needs wrk, a load tool run as a second process (apt-get install wrk)"
        )
    n = rows or 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        saved = {k: os.environ.get(k) for k in ("ONCEONLY_HOME", "ONCEONLY_KEY_PASSPHRASE")}
        os.environ["ONCEONLY_HOME"] = str(work / "home")
        os.environ["ONCEONLY_KEY_PASSPHRASE"] = PASSPHRASE
        try:
            print(f"issuing {n:,} certificates into a new home ...", flush=True)
            t0 = time.perf_counter()
            subjects, token = _build_home(work / "home", n)
            built = time.perf_counter() - t0
            print(f"  {built:.0f} s; {len(subjects):,} residents of {TOWNSHIP}", flush=True)
            print("in process: read-only skip-check, and the raw indexed query ...", flush=True)
            ours_in, floor_in = _in_process(subjects, 5.0)
            port = _free_port()
            server = _serve(port)
            try:
                base = f"http://127.0.0.1:{port}"
                print(f"HTTP: wrk -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s on /healthz (floor) ...", flush=True)
                floor_http = _wrk(f"{base}/healthz", None)
                print("HTTP: wrk on POST /api/skip-check (each answer logs its use) ...", flush=True)
                ours_http = _wrk(
                    base, _lua(work / "skip.lua", token, random.Random(1).sample(subjects, 2000))
                )
            finally:
                server.terminate()
                server.wait(timeout=30)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    figures = {
        "certificates": n,
        "home_build_s": round(built, 1),
        "http_skip_check": ours_http,
        "http_floor_healthz": floor_http,
        "http_skip_check_over_floor": round(ours_http["requests_per_s"] / floor_http["requests_per_s"], 3),
        "in_process_skip_checks_per_s": round(ours_in, 1),
        "in_process_floor_queries_per_s": round(floor_in, 1),
        "in_process_over_floor": round(ours_in / floor_in, 4),
        "targets": {"http_p99_ms": 5, "http_requests_per_s": 1000, "in_process_per_s": 20000},
    }
    print(
        f"HTTP skip-check: {ours_http['requests_per_s']:,.0f}/s, p50 {ours_http['p50_ms']} ms, p99 "
        f"{ours_http['p99_ms']} ms ({ours_http['non_2xx']} non-2xx); floor /healthz "
        f"{floor_http['requests_per_s']:,.0f}/s p99 {floor_http['p99_ms']} ms"
    )
    print(
        f"in process: {ours_in:,.0f} skip-checks/s against {floor_in:,.0f} raw indexed queries/s "
        f"({ours_in / floor_in:.3f}x)"
    )
    return figures


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else None), indent=2))
