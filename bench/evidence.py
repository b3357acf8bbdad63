"""Issuance throughput and transparency-log proof cost, against signing every certificate.

Issuance (OnceOnly): certificates of ``rows`` records in batches of 10,000 — RFC 8785 JSON of
the whole batch with Arrow string kernels (``canonical_rows``), the leaf hashes in one pass,
the log's new interior nodes, ONE signed checkpoint per batch, and leaves, nodes, checkpoint
and certificate rows persisted in a SQLite catalog, one transaction per batch.

Baseline, in the same run: what a log replaces — every certificate canonicalised on its own
(``canonical_json`` of a dict) and signed on its own with the same Ed25519 key, persisted
with its signature (measured on up to 50,000 certificates; the rate is what counts).

Proofs: a log-only catalog grown to ``rows`` and then ``10 * rows`` leaves (1M and 10M at the
default size); at each size the storage per leaf (linear growth: constant per leaf), the time
to build an inclusion and a consistency proof from stored nodes, to append one entry with its
signed checkpoint, and to check one proof bundle offline (checkpoint signature, leaf hash,
inclusion proof) — logarithmic growth: barely changes between the two sizes.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from itertools import repeat
from pathlib import Path
from typing import Any

import pyarrow as pa

BATCH = 10_000
ORIGIN = "bench.example/evidence"
ISSUER = "11120114000019342N"
TYPE_CODE = "111000000000193420"


def _records(n: int) -> pa.Table:
    """The accepted records certificates are issued from (input data, not timed)."""
    serial = [f"{i:08d}" for i in range(n)]
    return pa.table(
        {
            "id": [f"1.2.156.3005.2.{TYPE_CODE}.{ISSUER}.{s}.001.A" for s in serial],
            "number": [f"HKB{s}" for s in serial],
            "holder_name": [f"张{'三四五六七'[i % 5]}{i % 97}" for i in range(n)],
            "holder_id": [f"12011419900307{i % 10000:04d}" for i in range(n)],
            "township": [f"120114{1 + i % 29:03d}000" for i in range(n)],
            "address": [f"天津市武清区杨村街道新华路{i % 500}号" for i in range(n)],
            "record_key": [f"R{s}" for s in serial],
            "serial": pa.array(range(n), pa.int64()),
        }
    )


def _shape() -> dict[str, Any]:
    from evidence.canonical import Column

    return {
        "schema": "onceonly-ecert/1",
        "id": Column("id"),
        "number": Column("number"),
        "type": {"code": TYPE_CODE, "name": "居民户口簿"},
        "issuer": {"name": "天津市公安局武清分局", "code": ISSUER},
        "holder": {"name": Column("holder_name"), "id_type": "111", "id": Column("holder_id")},
        "township": Column("township"),
        "status": "有效",
        "fields": {"address": Column("address")},
        "issue_date": "2026-11-21",
        "valid_from": "2026-11-21",
        "valid_to": None,
        "version": 1,
        "previous": None,
        "source": {"dataset": "household", "contract": "household@1.0.0", "batch": "bench"},
    }


_CERT_COLUMNS = (
    "cert_id",
    "dataset",
    "record_key",
    "holder_id",
    "holder_name",
    "type_code",
    "type_name",
    "issuer_code",
    "serial",
    "version",
    "status",
    "issue_date",
    "township",
    "content_sha256",
    "canonical",
    "leaf_index",
    "batch_id",
)


def _issue_onceonly(work: Path, records: pa.Table) -> dict[str, Any]:
    from evidence.canonical import canonical_rows
    from evidence.keys import SigningKey
    from evidence.log import KIND_CERTIFICATE, TransparencyLog
    from lake.catalog import Catalog

    catalog = Catalog.connect(f"sqlite:///{work / 'issue.db'}")
    log = TransparencyLog(SigningKey.generate(ORIGIN), ORIGIN)
    shape = _shape()
    marks = ", ".join("?" * len(_CERT_COLUMNS))
    insert = f"INSERT INTO certificates ({', '.join(_CERT_COLUMNS)}) VALUES ({marks})"
    stages = {"canonical": 0.0, "log_append": 0.0, "certificate_rows": 0.0}
    t0 = time.perf_counter()
    for start in range(0, records.num_rows, BATCH):
        batch = records.slice(start, BATCH)
        t = time.perf_counter()
        blobs: list[bytes] = canonical_rows(shape, batch).cast(pa.binary()).to_pylist()
        ids = batch.column("id").to_pylist()
        stages["canonical"] += time.perf_counter() - t
        with catalog.begin() as conn:
            t = time.perf_counter()
            appended = log.append(conn, list(zip(blobs, repeat(KIND_CERTIFICATE), ids, strict=False)))
            stages["log_append"] += time.perf_counter() - t
            t = time.perf_counter()
            first = appended.first_index
            c = batch.to_pydict()
            rows = list(
                zip(
                    ids,
                    repeat("household"),
                    c["record_key"],
                    c["holder_id"],
                    c["holder_name"],
                    repeat(TYPE_CODE),
                    repeat("居民户口簿"),
                    repeat(ISSUER),
                    c["serial"],
                    repeat(1),
                    repeat("有效"),
                    repeat("2026-11-21"),
                    c["township"],
                    [hashlib.sha256(blob).hexdigest() for blob in blobs],
                    blobs,
                    range(first, first + len(blobs)),
                    repeat("bench"),
                    strict=False,
                )
            )
            conn.exec_driver_sql(insert, rows)
            stages["certificate_rows"] += time.perf_counter() - t
    elapsed = time.perf_counter() - t0
    catalog.dispose()
    return {"seconds": elapsed, "stages_s": {k: round(v, 2) for k, v in stages.items()}}


def _issue_signing_each(work: Path, records: pa.Table) -> float:
    """Baseline: canonicalise and sign every certificate on its own, persist it with its signature."""
    from evidence.canonical import canonical_json
    from evidence.keys import SigningKey

    key = SigningKey.generate(ORIGIN)
    db = sqlite3.connect(work / "signed.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE signed (cert_id TEXT PRIMARY KEY, canonical BLOB NOT NULL, signature BLOB NOT NULL)"
    )
    base = _shape()
    t0 = time.perf_counter()
    for start in range(0, records.num_rows, BATCH):
        rows = []
        for r in records.slice(start, BATCH).to_pylist():
            cert = {
                **base,
                "id": r["id"],
                "number": r["number"],
                "holder": {"name": r["holder_name"], "id_type": "111", "id": r["holder_id"]},
                "township": r["township"],
                "fields": {"address": r["address"]},
            }
            blob = canonical_json(cert)
            rows.append((r["id"], blob, key.sign(blob)))
        db.execute("BEGIN")
        db.executemany("INSERT INTO signed VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    db.close()
    return elapsed


def _median_ms(fn: Callable[[], object], times: int) -> float:
    samples = []
    for _ in range(times):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return round(statistics.median(samples) * 1000, 4)


def _grow(catalog: Any, log: Any, start: int, stop: int) -> None:
    """Append synthetic leaves start..stop in chunks of 100,000, one checkpoint each."""
    for first in range(start, stop, 100_000):
        count = min(100_000, stop - first)
        entries = [(b"%d" % i, "certificate", "") for i in range(first, first + count)]
        with catalog.begin() as conn:
            log.append(conn, entries)


def _proof_costs(catalog: Any, log: Any, size: int, db: Path) -> dict[str, Any]:
    from evidence.log import checkpoint_at, latest_checkpoint, prove_consistency, prove_inclusion
    from evidence.merkle import leaf_hash, verify_inclusion
    from evidence.note import Checkpoint, open_note, parse_vkey

    rng = random.Random(size)
    verifier = parse_vkey(log.key.vkey)
    with catalog.read() as conn:
        assert latest_checkpoint(conn) is not None
        note = checkpoint_at(conn, size)
        assert note is not None, f"no checkpoint at {size}"
        inclusion_ms = _median_ms(lambda: prove_inclusion(conn, rng.randrange(size), size), 300)
        consistency_ms = _median_ms(lambda: prove_consistency(conn, rng.randrange(1, size), size), 200)
        index = size // 2 + 1  # an inner leaf: a full-length path
        proof = prove_inclusion(conn, index, size)
    entry = b"%d" % index

    def check_bundle() -> None:
        checkpoint = Checkpoint.parse(open_note(note, verifier))
        verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root_hash)

    verify_ms = _median_ms(check_bundle, 300)
    catalog.engine.dispose()  # no pooled connection left: the WAL can move into the database file
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    page = db.stat().st_size
    appends = []
    for _ in range(5):  # one entry and its signed checkpoint, committed
        t = time.perf_counter()
        with catalog.begin() as conn:
            log.append(conn, [(b"probe", "certificate", "")])
        appends.append(time.perf_counter() - t)
    return {
        "leaves": size,
        "bytes_per_leaf": round(page / size, 1),
        "inclusion_proof_hashes": len(proof),
        "inclusion_proof_ms": inclusion_ms,
        "consistency_proof_ms": consistency_ms,
        "bundle_check_ms": verify_ms,
        "append_with_checkpoint_ms": round(statistics.median(appends) * 1000, 3),
    }


def run(rows: int | None = None) -> dict[str, Any]:
    from evidence.keys import SigningKey
    from evidence.log import TransparencyLog
    from lake.catalog import Catalog

    n = rows or 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"building {n} records ...", flush=True)
        records = _records(n)

        print("issuing (OnceOnly: columnar canonical JSON, log, one checkpoint per batch) ...", flush=True)
        ours = _issue_onceonly(work, records)
        our_rate = n / ours["seconds"]

        sample = records.slice(0, min(n, 50_000))
        print(f"issuing (baseline: sign each certificate) {sample.num_rows} ...", flush=True)
        base_rate = sample.num_rows / _issue_signing_each(work, sample)

        db = work / "log.db"
        catalog = Catalog.connect(f"sqlite:///{db}")
        log = TransparencyLog(SigningKey.generate(ORIGIN), ORIGIN)
        sizes = [n, 10 * n]
        costs = []
        grown = 0
        for size in sizes:
            print(f"growing a log to {size} leaves ...", flush=True)
            _grow(catalog, log, grown, size)
            grown = size
            with catalog.begin() as conn:  # the probes of the previous size appended a few
                from evidence.log import tree_size

                grown = tree_size(conn)
            if grown != size:
                raise RuntimeError(f"log at {grown}, wanted {size}")
            costs.append(_proof_costs(catalog, log, size, db))
            grown += 5
        catalog.dispose()

    small, large = costs
    figures = {
        "certificates": n,
        "batch": BATCH,
        "onceonly_certificates_per_s": round(our_rate),
        "baseline_sign_each_per_s": round(base_rate),
        "onceonly_over_baseline": round(our_rate / base_rate, 2),
        "onceonly_stage_seconds": ours["stages_s"],
        "log": costs,
        "storage_per_leaf_ratio_10x": round(large["bytes_per_leaf"] / small["bytes_per_leaf"], 3),
        "inclusion_proof_ratio_10x": round(
            large["inclusion_proof_ms"] / max(small["inclusion_proof_ms"], 1e-9), 3
        ),
    }
    print(
        f"issuance: OnceOnly {our_rate:>10,.0f} certificates/s; signing each {base_rate:>10,.0f}/s "
        f"= {our_rate / base_rate:.1f}x  stages {ours['stages_s']}"
    )
    for c in costs:
        print(
            f"log at {c['leaves']:>11,}: {c['bytes_per_leaf']} B/leaf, inclusion proof "
            f"{c['inclusion_proof_ms']} ms ({c['inclusion_proof_hashes']} hashes), consistency "
            f"{c['consistency_proof_ms']} ms, bundle check {c['bundle_check_ms']} ms, "
            f"append+checkpoint {c['append_with_checkpoint_ms']} ms"
        )
    return figures
