"""Pipeline throughput against the raw floor, on the same generated household table.

Baseline (DESIGN.md's "raw limit"): read the rows into Arrow, check every citizen ID's
checksum with NumPy, SHA-256 each row, build the Merkle root, write a township-partitioned
Parquet dataset — pyarrow and hashlib only, no contract, catalog, signing or orchestration.

OnceOnly: the ``sql`` connector, contract validation through Great Expectations, landing
(Parquet, quarantine, certificates, log leaves, signed checkpoint, cursor) in the SQLite
catalog — everything the flow does per batch except Prefect's own bookkeeping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from contracts.identifiers import CITIZEN_ID_WEIGHTS


def _baseline(db: Path, out: Path) -> int:
    con = sqlite3.connect(db)
    cur = con.execute("SELECT * FROM household_member ORDER BY updated_at, id")
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    table = pa.table({n: pa.array([r[i] for r in rows]) for i, n in enumerate(names)})
    ids = table.column("person_id").fill_null("").to_pylist()
    ok = [len(s) == 18 for s in ids]
    digits = np.array(
        [[ord(c) - 48 for c in s[:17]] if good else [0] * 17 for s, good in zip(ids, ok, strict=True)]
    )
    check = "10X98765432"
    sums = digits @ np.array(CITIZEN_ID_WEIGHTS)
    valid = np.array([good and check[t % 11] == s[17] for s, good, t in zip(ids, ok, sums, strict=True)])
    table = table.filter(pa.array(valid))
    leaves = [
        hashlib.sha256(b"\x00" + repr(r).encode()).digest()
        for r in zip(*table.to_pydict().values(), strict=True)
    ]
    while len(leaves) > 1:
        leaves = [
            hashlib.sha256(b"\x01" + leaves[i] + leaves[i + 1]).digest() if i + 1 < len(leaves) else leaves[i]
            for i in range(0, len(leaves), 2)
        ]
    ds.write_dataset(
        table,
        out,
        format="parquet",
        partitioning=["township_code"],
        existing_data_behavior="overwrite_or_ignore",
    )
    return len(rows)


def _onceonly(work: Path, db: Path) -> dict[str, Any]:
    from catalog import Catalog
    from connectors import EnvironmentSecrets, SourcePaths, create_connector, load_registrations
    from contracts.checks import CheckContext, load_region_codes
    from contracts.compiler import compile_contract
    from contracts.model import contract_by_id
    from contracts.validate import Validator
    from evidence.keys import KeyStore
    from evidence.log import TransparencyLog
    from lake.landing import Lander, content_digest
    from lake.parquet import ParquetLake
    from onceonly.settings import Settings

    settings = Settings(home=work)
    reg = load_registrations(settings.registrations_dir)["gongan-household"]
    connector = create_connector(
        reg.model_copy(update={"options": {**reg.options, "url": f"sqlite:///{db}"}}),
        work,
        EnvironmentSecrets({}),
        paths=SourcePaths.build([str(Path(db).parent)]),
    )
    compiled = compile_contract(contract_by_id(settings.contracts_dir, "household"))
    validator = Validator(compiled, CheckContext(dt.date.today(), frozenset(load_region_codes("120114"))))
    validator.validate(
        pa.table({f.name: pa.array([], pa.string()) for f in compiled.arrow_schema}), connector="warm-up"
    )  # GX import and context: once per process, not per batch
    key, _ = KeyStore(work / "keys", b"bench-passphrase-0123456789abcdef").load_or_create("bench.example/log")
    lander = Lander(
        Catalog.connect(f"sqlite:///{work / 'catalog.db'}"),
        ParquetLake(work / "lake"),
        TransparencyLog(key, "bench.example/log"),
        run_id="bench",
    )
    stages = {"pull": 0.0, "validate": 0.0, "land": 0.0}
    rows = certs = 0
    cursor = None
    t = time.perf_counter()
    for pulled in connector.pull(None, 10_000):
        stages["pull"] += time.perf_counter() - t
        t = time.perf_counter()
        v = validator.validate(pulled.batch, connector=reg.name)
        stages["validate"] += time.perf_counter() - t
        t = time.perf_counter()
        landed = lander.land(
            connector=reg.name,
            compiled=compiled,
            validation=v,
            cursor_before=cursor,
            cursor_after=pulled.cursor,
            content_sha256=content_digest(pulled.batch),
        )
        stages["land"] += time.perf_counter() - t
        cursor, rows, certs = pulled.cursor, rows + landed.pulled, certs + landed.certificates
        t = time.perf_counter()
    return {"rows": rows, "certificates": certs, "stages_s": stages}


def run(rows: int | None = None) -> dict[str, Any]:
    from departments import generate_all

    rows = rows or 100_000

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"generating {rows} rows per department ...")
        generate_all(work / "departments", rows=rows, seed=1)
        db = work / "departments" / "gongan" / "household.db"

        t = time.perf_counter()
        n = _baseline(db, work / "baseline")
        baseline_s = time.perf_counter() - t

        t = time.perf_counter()
        ours = _onceonly(work, db)
        ours_s = time.perf_counter() - t

    base_rate, our_rate = n / baseline_s, ours["rows"] / ours_s
    figures = {
        "rows": n,
        "baseline_records_per_s": round(base_rate),
        "onceonly_records_per_s": round(our_rate),
        "onceonly_over_baseline": round(our_rate / base_rate, 3),
        "onceonly_certificates": ours["certificates"],
        "onceonly_stage_seconds": {k: round(v, 2) for k, v in ours["stages_s"].items()},
    }
    print(f"raw floor (pyarrow+hashlib):  {base_rate:>10,.0f} records/s")
    print(
        f"OnceOnly pull+validate+land:  {our_rate:>10,.0f} records/s  "
        f"= {our_rate / base_rate:.2f}x the floor  stages {figures['onceonly_stage_seconds']}"
    )
    return figures
