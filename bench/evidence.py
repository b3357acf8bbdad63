"""Issuance throughput and transparency-log proof cost, against signing every certificate.

Issuance (OnceOnly): certificates of ``rows`` accepted household records (the real household
contract) in batches of 10,000, through the pipeline's OWN issuance code: ``draft_table``
(drafts column-wise, content hashes) and ``evidence.issuance.issue_certificates`` — the function
``Lander.land`` calls in its landing transaction: serials, status-list positions, RFC 8785
JSON of the whole batch with Arrow string kernels, leaf hashes, the log's new interior nodes,
ONE signed checkpoint per batch (with the batch's receipt leaf), and the certificate rows, log
bundles (leaf hashes and compressed entries), nodes and checkpoint in a SQLite catalog
(``synchronous=FULL``), one transaction per batch. Also reported: the catalog's bytes per
certificate, and the issuance transactions alone (without drafting).

Floor, in the same run: the certificate rows that issuance stored, read back and inserted alone
(pre-built tuples, same table, indexes and pragmas, 10,000 per transaction): the rate no
issuance that writes them can beat on this machine.

Two more floors, in the same run, answer what the landing transaction must hold: the same
issuance with NO certificate row (``_insert_certificates`` replaced by nothing: the log's leaves,
tree, bundles, openings and checkpoint, committed — what a design keeping certificates only in
the log would spend), and the slimmest skip-check and renewal index, (holder, leaf) and (record,
leaf) keys, pre-built, inserted alone; ``log_only_then_index_per_s`` combines the two.

Baseline, in the same run: what a log replaces — every certificate built (``drafts_from``,
``issue``), canonicalised and signed on its own with an Ed25519 key, and persisted with its
signature (measured on up to 50,000 certificates; the rate is what counts).

Proofs: a log-only catalog grown to ``rows`` and then ``10 * rows`` leaves (1M and 10M at the
default size); at each size the storage per leaf (linear growth: constant per leaf), the time
to build an inclusion and a consistency proof from stored nodes (medians of 300 and 200 after
300 proofs warm the connection's page cache; those first 300 are reported too), to append one
entry with its signed checkpoint, and to check one proof bundle offline (checkpoint signature,
leaf hash, inclusion proof) — logarithmic growth: barely changes between the two sizes.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BATCH = 10_000
ISSUE_DATE = dt.date(2026, 11, 21)
ORIGIN = "bench.example/evidence"


def _records(n: int) -> pa.Table:
    """Accepted household records, in the contract's Arrow types (input data, not timed)."""
    serial = np.arange(n)
    text = pa.array(serial).cast(pa.string())
    day = np.datetime64("1950-01-01") + (serial % 20_000).astype("timedelta64[D]")
    return pa.table(
        {
            "person_id": pc.binary_join_element_wise("120114", pc.utf8_lpad(text, 12, "0"), ""),
            "name": pc.binary_join_element_wise(
                pa.array(np.array(list("张王李赵钱孙周吴"))[serial % 8]), text, ""
            ),
            "gender": pa.array(np.where(serial % 2 == 0, "男", "女")),
            "ethnicity": pa.repeat("汉族", n),
            "birth_date": pa.array(day, pa.date32()),
            "household_no": pc.binary_join_element_wise("H", pc.utf8_lpad(text, 9, "0"), ""),
            "relation": pa.repeat("户主", n),
            "address": pc.binary_join_element_wise(
                "天津市武清区杨村街道新华路", pa.array(serial % 500).cast(pa.string()), "号", ""
            ),
            "township_code": pc.binary_join_element_wise(
                "120114", pc.utf8_lpad(pa.array(1 + serial % 29).cast(pa.string()), 3, "0"), "000", ""
            ),
            "registered_on": pa.array(day, pa.date32()),
            "updated_at": pa.array(
                np.full(n, np.datetime64("2026-11-20T00:00:00", "us")), pa.timestamp("us", tz="Asia/Shanghai")
            ),
        }
    )


def _household() -> Any:
    from contracts.compiler import compile_contract
    from contracts.model import contract_by_id
    from onceonly.settings import Settings

    return compile_contract(contract_by_id(Settings().contracts_dir, "household"))


def _issue_onceonly(work: Path, records: pa.Table, batch: int) -> dict[str, Any]:
    """The pipeline's own issuance: ``draft_table`` then ``evidence.issuance.issue_certificates``
    (what ``Lander.land`` calls), one catalog transaction and one checkpoint per batch."""
    from catalog import Catalog, utcnow
    from evidence.certificate import draft_table
    from evidence.issuance import issue_certificates
    from evidence.keys import SigningKey
    from evidence.log import TransparencyLog, batch_receipt

    compiled = _household()
    catalog = Catalog.connect(f"sqlite:///{work / 'issue.db'}")
    log = TransparencyLog(SigningKey.generate(ORIGIN), ORIGIN)
    stages = {"drafts": 0.0, "issue_in_transaction": 0.0}
    issued = 0
    t0 = time.perf_counter()
    for number, start in enumerate(range(0, records.num_rows, batch)):
        accepted = records.slice(start, batch)
        t = time.perf_counter()
        drafts = draft_table(accepted, compiled)
        stages["drafts"] += time.perf_counter() - t
        t = time.perf_counter()
        batch_id = f"bench{number:08d}"
        with catalog.begin() as conn:
            now = utcnow()

            def receipt(
                count: int, batch_id: str = batch_id, now: Any = now, pulled: int = accepted.num_rows
            ) -> tuple[bytes, str, str]:
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

            issued += issue_certificates(
                conn,
                log,
                compiled,
                drafts,
                batch_id=batch_id,
                issue_date=ISSUE_DATE,
                now=now,
                receipt=receipt,
            ).certificates
        stages["issue_in_transaction"] += time.perf_counter() - t
    elapsed = time.perf_counter() - t0
    catalog.dispose()
    if issued != records.num_rows:
        raise RuntimeError(f"issued {issued} certificates for {records.num_rows} records")
    raw = sqlite3.connect(work / "issue.db")
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    return {
        "seconds": elapsed,
        "stages_s": {k: round(v, 2) for k, v in stages.items()},
        "catalog_bytes_per_certificate": round((work / "issue.db").stat().st_size / issued),
    }


def _issue_signing_each(work: Path, records: pa.Table, batch: int) -> float:
    """Baseline: every certificate built, canonicalised and signed on its own, stored with its signature."""
    from evidence.canonical import canonical_json
    from evidence.certificate import drafts_from, issue
    from evidence.identifier import CertificateId
    from evidence.keys import SigningKey

    compiled = _household()
    spec = compiled.certificate
    key = SigningKey.generate(ORIGIN)
    db = sqlite3.connect(work / "signed.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE signed (cert_id TEXT PRIMARY KEY, canonical BLOB NOT NULL, signature BLOB NOT NULL)"
    )
    serial = 0
    t0 = time.perf_counter()
    for start in range(0, records.num_rows, batch):
        rows = []
        for draft in drafts_from(records.slice(start, batch), compiled):
            serial += 1
            cid = CertificateId.build(spec.type_code, spec.issuer_code, serial)
            cert = issue(draft, cid, issue_date=ISSUE_DATE, batch_id="baseline", contract=compiled.ref)
            blob = canonical_json(cert)
            rows.append((str(cid), blob, key.sign(blob)))
        db.execute("BEGIN")
        db.executemany("INSERT INTO signed VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    db.close()
    return elapsed


@contextmanager
def _timed(owner: Any, name: str, into: dict[str, float], label: str) -> Iterator[None]:
    """Add the wall time of every call of ``owner.name`` to ``into[label]`` (measurement only)."""
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into[label] = into.get(label, 0.0) + time.perf_counter() - t

    setattr(owner, name, timed)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _where_the_time_goes(work: Path, records: pa.Table) -> dict[str, float]:
    """Microseconds per certificate of each step of issuance, on its own catalog: the same run
    as :func:`_issue_onceonly` with the steps' functions timed (``other``: everything else)."""
    import sqlalchemy.engine.base

    import evidence.issuance
    import evidence.log

    spent: dict[str, float] = {}
    steps = [
        (evidence.issuance, "canonical_rows", "certificate and entry JSON (Arrow)"),
        (evidence.issuance, "commitments", "commitments (salted SHA-256)"),
        (evidence.issuance, "_new_or_changed", "new or changed? (catalog lookup)"),
        (evidence.issuance, "allocate_positions", "status-list positions"),
        (
            evidence.log.TransparencyLog,
            "append_certificates",
            "log: leaf hashes, tree, bundles, openings, checkpoint",
        ),
        (evidence.issuance, "_insert_certificates", "certificate rows (executemany)"),
        (sqlalchemy.engine.base.Transaction, "commit", "commit (fsync)"),
    ]
    (work / "steps").mkdir()
    with ExitStack() as stack:
        for owner, name, label in steps:
            stack.enter_context(_timed(owner, name, spent, label))
        stages = _issue_onceonly(work / "steps", records, BATCH)["stages_s"]
    total = stages["drafts"] + stages["issue_in_transaction"]
    per = {"drafts (content JSON and digests)": stages["drafts"], **spent}
    per["other"] = total - sum(per.values())
    return {label: round(seconds / records.num_rows * 1e6, 2) for label, seconds in per.items()}


def _catalog_row_floor(work: Path, rows: int, batch: int) -> float:
    """Certificates per second that inserting the catalog's certificate rows ALONE allows.

    The rows the issuance above stored (the first ``rows``), read back as Python tuples before
    the clock starts, are inserted into a fresh catalog table with the same columns, indexes
    and pragmas, ``batch`` rows per transaction with ``executemany``: no JSON, hashing, log or
    Python work is timed. Any issuance that writes one such row per certificate in the landing
    transaction is bounded by this rate on this machine.
    """
    source = sqlite3.connect(work / "issue.db")
    ddl = (
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'certificates' AND sql IS NOT NULL ORDER BY type DESC"
    )
    schema = [sql for (sql,) in source.execute(ddl)]
    names = [r[1] for r in source.execute("PRAGMA table_info(certificates)")]
    stored = source.execute(f"SELECT * FROM certificates ORDER BY leaf_index LIMIT {int(rows)}").fetchall()
    source.close()
    target = sqlite3.connect(work / "floor.db", isolation_level=None)
    for pragma in ("page_size=4096", "journal_mode=WAL", "synchronous=FULL", "cache_size=-65536"):
        target.execute(f"PRAGMA {pragma}")
    for sql in schema:
        target.execute(sql)
    insert = f"INSERT INTO certificates ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    t0 = time.perf_counter()
    for start in range(0, len(stored), batch):
        target.execute("BEGIN IMMEDIATE")
        target.executemany(insert, stored[start : start + batch])
        target.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    target.close()
    return len(stored) / elapsed


def _issue_log_only(work: Path, records: pa.Table) -> float:
    """Seconds for the same issuance with NO certificate rows in the landing transaction (the
    pipeline's code, ``_insert_certificates`` replaced by nothing): drafts, JSON, commitments,
    the log's leaves, tree, bundles, openings and checkpoint, committed. What a design keeping
    the certificates only column-wise in the log (rows or an index built after the commit)
    would spend in the transaction: the floor of any design that logs and keeps openings."""
    import evidence.issuance

    original = evidence.issuance._insert_certificates
    evidence.issuance._insert_certificates = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        (work / "log-only").mkdir()
        ours = _issue_onceonly(work / "log-only", records, BATCH)
    finally:
        evidence.issuance._insert_certificates = original  # type: ignore[assignment]
    return float(ours["seconds"])


def _skip_index_floor(work: Path, rows: int, batch: int) -> float:
    """Certificates per second that the slimmest skip-check and renewal index allows: for each
    certificate a (holder_id, leaf) and a (record_key, leaf) key in two WITHOUT ROWID tables —
    what skip-check (holder -> leaves, then the opening) and renewal (record -> latest version)
    need at the least — pre-built, inserted alone, same pragmas, ``batch`` per transaction."""
    source = sqlite3.connect(work / "issue.db")
    stored = source.execute(
        f"SELECT holder_id, record_key, leaf_index FROM certificates ORDER BY leaf_index LIMIT {int(rows)}"
    ).fetchall()
    source.close()
    target = sqlite3.connect(work / "index.db", isolation_level=None)
    for pragma in ("page_size=4096", "journal_mode=WAL", "synchronous=FULL", "cache_size=-65536"):
        target.execute(f"PRAGMA {pragma}")
    target.execute(
        "CREATE TABLE by_holder (holder_id TEXT, leaf INTEGER, PRIMARY KEY (holder_id, leaf)) WITHOUT ROWID"
    )
    target.execute(
        "CREATE TABLE by_record (record_key TEXT, leaf INTEGER, PRIMARY KEY (record_key, leaf)) WITHOUT ROWID"
    )
    holders = [(h, leaf) for h, _, leaf in stored]
    records = [(r, leaf) for _, r, leaf in stored]
    t0 = time.perf_counter()
    for start in range(0, len(stored), batch):
        target.execute("BEGIN IMMEDIATE")
        target.executemany("INSERT INTO by_holder VALUES (?, ?)", holders[start : start + batch])
        target.executemany("INSERT INTO by_record VALUES (?, ?)", records[start : start + batch])
        target.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    target.close()
    return len(stored) / elapsed


def _median_ms(fn: Callable[[], object], times: int) -> float:
    samples = []
    for _ in range(times):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return round(statistics.median(samples) * 1000, 4)


def _grow(catalog: Any, log: Any, stop: int) -> None:
    """Append synthetic leaves until the log holds ``stop``, up to 100,000 per append (each with
    its checkpoint; every append after the first also logs the previous checkpoint first)."""
    from evidence.log import tree_size

    while True:
        with catalog.begin() as conn:
            size = tree_size(conn)
            room = stop - size - (1 if size else 0)
            if room <= 0:
                break
            entries = [(b"%d" % i, "certificate", "") for i in range(size, size + min(100_000, room))]
            log.append(conn, entries)
    if size != stop:
        raise RuntimeError(f"log at {size}, wanted {stop}")


def _proof_costs(catalog: Any, log: Any, size: int, db: Path) -> dict[str, Any]:
    from evidence.log import checkpoint_at, latest_checkpoint, leaf_at, prove_consistency, prove_inclusion
    from evidence.merkle import leaf_hash, verify_inclusion
    from evidence.note import Checkpoint, open_note, parse_vkey

    rng = random.Random(size)
    verifier = parse_vkey(log.key.vkey)
    with catalog.read() as conn:
        assert latest_checkpoint(conn) is not None
        note = checkpoint_at(conn, size)
        assert note is not None, f"no checkpoint at {size}"
        # Steady state, as a proof service runs: the connection's page cache is warmed by 300
        # untimed proofs first (right after growing the log, the first proofs read cold pages).
        cold_ms = _median_ms(lambda: prove_inclusion(conn, rng.randrange(size), size), 300)
        inclusion_ms = _median_ms(lambda: prove_inclusion(conn, rng.randrange(size), size), 300)
        consistency_ms = _median_ms(lambda: prove_consistency(conn, rng.randrange(1, size), size), 200)
        index = size // 2 + 1  # an inner leaf: a full-length path
        proof = prove_inclusion(conn, index, size)
        entry = leaf_at(conn, index).entry

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
        "inclusion_proof_first_300_ms": cold_ms,
        "consistency_proof_ms": consistency_ms,
        "bundle_check_ms": verify_ms,
        "append_with_checkpoint_ms": round(statistics.median(appends) * 1000, 3),
    }


def run(rows: int | None = None) -> dict[str, Any]:
    from catalog import Catalog
    from evidence.keys import SigningKey
    from evidence.log import TransparencyLog

    n = rows or 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"building {n} records ...", flush=True)
        records = _records(n)

        print("issuing (OnceOnly: columnar canonical JSON, log, one checkpoint per batch) ...", flush=True)
        ours = _issue_onceonly(work, records, BATCH)
        our_rate = n / ours["seconds"]

        print("issuing again, timing each step ...", flush=True)
        steps = _where_the_time_goes(work, records.slice(0, min(n, 200_000)))

        print("inserting the same certificate rows, pre-built, alone (the catalog's floor) ...", flush=True)
        floor_rate = _catalog_row_floor(work, min(n, 300_000), BATCH)

        print("issuing with no certificate rows in the transaction (the log's floor) ...", flush=True)
        log_only_rate = n / _issue_log_only(work, records)

        print("inserting the slimmest skip-check index, pre-built, alone ...", flush=True)
        index_rate = _skip_index_floor(work, min(n, 300_000), BATCH)
        print(
            f"issuance {our_rate:,.0f}/s; catalog rows alone {floor_rate:,.0f}/s; with no rows "
            f"{log_only_rate:,.0f}/s; slimmest index alone {index_rate:,.0f}/s",
            flush=True,
        )

        sample = records.slice(0, min(n, 50_000))
        print(f"issuing (baseline: sign each certificate) {sample.num_rows} ...", flush=True)
        base_rate = sample.num_rows / _issue_signing_each(work, sample, BATCH)

        db = work / "log.db"
        catalog = Catalog.connect(f"sqlite:///{db}")
        log = TransparencyLog(SigningKey.generate(ORIGIN), ORIGIN)
        costs = []
        for size in (n, 10 * n):
            print(f"growing a log to {size} leaves ...", flush=True)
            _grow(catalog, log, size)
            costs.append(_proof_costs(catalog, log, size, db))
        catalog.dispose()

    small, large = costs
    figures = {
        "certificates": n,
        "batch": BATCH,
        "onceonly_certificates_per_s": round(our_rate),
        "onceonly_issuance_transactions_per_s": round(n / ours["stages_s"]["issue_in_transaction"]),
        "catalog_bytes_per_certificate": ours["catalog_bytes_per_certificate"],
        "catalog_row_floor_per_s": round(floor_rate),
        "issuance_us_per_certificate_by_step": steps,
        "onceonly_over_catalog_row_floor": round(our_rate / floor_rate, 2),
        "log_only_certificates_per_s": round(log_only_rate),
        "skip_index_floor_per_s": round(index_rate),
        "log_only_then_index_per_s": round(1 / (1 / log_only_rate + 1 / index_rate)),
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
        f"= {our_rate / base_rate:.1f}x  stages {ours['stages_s']}; issuance transactions alone "
        f"{figures['onceonly_issuance_transactions_per_s']:,}/s; catalog "
        f"{ours['catalog_bytes_per_certificate']} bytes per certificate"
    )
    print("where the time goes (us per certificate, first 200,000):")
    for label, micros in steps.items():
        print(f"  {label:<46} {micros:>6.2f}")
    print(
        f"catalog floor: the same certificate rows inserted alone, pre-built, {floor_rate:,.0f}/s "
        f"(OnceOnly = {our_rate / floor_rate:.2f}x of it)"
    )
    for c in costs:
        print(
            f"log at {c['leaves']:>11,}: {c['bytes_per_leaf']} B/leaf, inclusion proof "
            f"{c['inclusion_proof_ms']} ms ({c['inclusion_proof_hashes']} hashes; first 300: "
            f"{c['inclusion_proof_first_300_ms']} ms), consistency "
            f"{c['consistency_proof_ms']} ms, bundle check {c['bundle_check_ms']} ms, "
            f"append+checkpoint {c['append_with_checkpoint_ms']} ms"
        )
    return figures
