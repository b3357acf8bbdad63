"""Two departments landing at the same moment on one catalog: one log, no gaps, no doubles."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from landing_harness import HOUSEHOLD, LICENCE, ORIGIN, household_row, licence_row, validate

from catalog import Catalog, batches, certificates, checkpoints
from contracts.compiler import CompiledContract
from contracts.validate import Validation
from evidence.keys import SigningKey
from evidence.log import TransparencyLog, leaves
from evidence.merkle import consistency_proof, leaf_hash, root, verify_consistency
from evidence.note import Checkpoint, open_note, parse_vkey
from lake.landing import Lander
from lake.parquet import ParquetLake

BATCHES = 6
ROWS = 4


def _batches(compiled: CompiledContract, rows: list[dict[str, object]]) -> list[Validation]:
    """One validation (Great Expectations is not for threads), cut into batches of ROWS."""
    v = validate(compiled, rows)
    assert v.quarantined.num_rows == 0 and v.accepted.num_rows == BATCHES * ROWS
    return [dataclasses.replace(v, accepted=v.accepted.slice(i * ROWS, ROWS)) for i in range(BATCHES)]


@pytest.fixture(scope="module")
def household_batches() -> list[Validation]:
    return _batches(HOUSEHOLD, [household_row(i) for i in range(BATCHES * ROWS)])


@pytest.fixture(scope="module")
def licence_batches() -> list[Validation]:
    # a company name of 150 characters: the contract allows 200, so the catalog must hold it
    return _batches(
        LICENCE, [licence_row(i, name=f"天津武清第{i:03d}号" + "商贸" * 70) for i in range(BATCHES * ROWS)]
    )


def _land_all(
    lander: Lander, connector: str, compiled: CompiledContract, validations: list[Validation]
) -> None:
    cursor: dict[str, object] | None = None
    for i, v in enumerate(validations):
        after = {"batch": i}
        lander.land(
            connector=connector,
            compiled=compiled,
            validation=v,
            cursor_before=cursor,
            cursor_after=after,
            content_sha256=f"{connector}-{i}",
        )
        cursor = after


def test_two_landings_at_once_append_one_contiguous_log(
    catalog_url: str,
    tmp_path: Path,
    log_key: SigningKey,
    household_batches: list[Validation],
    licence_batches: list[Validation],
) -> None:
    catalog = Catalog.connect(catalog_url)  # a fresh catalog: even the log head row is missing
    log = TransparencyLog(log_key, ORIGIN)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(connector: str, compiled: CompiledContract, validations: list[Validation]) -> None:
        lander = Lander(catalog, ParquetLake(tmp_path / "lake"), log, run_id=connector)
        try:
            start.wait()
            _land_all(lander, connector, compiled, validations)
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=("gongan-household", HOUSEHOLD, household_batches)),
        threading.Thread(target=worker, args=("scjg-licence", LICENCE, licence_batches)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors, errors
        with catalog.begin() as conn:
            stored = list(leaves(conn))
            certs = conn.execute(sa.select(certificates.c.leaf_index, certificates.c.cert_id)).all()
            heads = conn.execute(sa.select(checkpoints).order_by(checkpoints.c.tree_size)).all()
            sizes = conn.execute(sa.select(batches.c.tree_size)).scalars().all()
    finally:
        catalog.dispose()

    # Each batch: its certificates, then its receipt; each landing after the first begins with
    # a leaf logging the checkpoint before it.
    total = 2 * BATCHES * (ROWS + 1) + 2 * BATCHES - 1
    assert [leaf.index for leaf in stored] == list(range(total)), "no gap, no duplicate index"
    assert len(certs) == 2 * BATCHES * ROWS
    assert sum(leaf.kind == "batch-receipt" for leaf in stored) == 2 * BATCHES
    assert sum(leaf.kind == "checkpoint" for leaf in stored) == 2 * BATCHES - 1
    for c in certs:
        leaf = stored[c.leaf_index]
        assert leaf.ref == c.cert_id and leaf.entry is not None
        assert leaf.leaf_hash == leaf_hash(leaf.entry)
    hashes = [leaf.leaf_hash for leaf in stored]
    # one checkpoint per batch, each over all leaves before it, each extending the one before
    assert [h.tree_size for h in heads] == [(ROWS + 1) * (i + 1) + i for i in range(2 * BATCHES)]
    assert sorted(sizes) == [h.tree_size for h in heads]
    verifier = parse_vkey(log_key.vkey)
    previous: Checkpoint | None = None
    for h in heads:
        checkpoint = Checkpoint.parse(open_note(h.note, verifier))
        assert checkpoint.root_hash == root(hashes[: checkpoint.size])
        if previous is not None:
            proof = consistency_proof(previous.size, hashes[: checkpoint.size])
            verify_consistency(
                previous.size, checkpoint.size, proof, previous.root_hash, checkpoint.root_hash
            )
        previous = checkpoint


def test_two_landings_of_one_dataset_at_once_share_the_serials(
    catalog_url: str, tmp_path: Path, log_key: SigningKey, household_batches: list[Validation]
) -> None:
    catalog = Catalog.connect(catalog_url)
    log = TransparencyLog(log_key, ORIGIN)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(connector: str, validations: list[Validation]) -> None:
        lander = Lander(catalog, ParquetLake(tmp_path / "lake"), log, run_id=connector)
        try:
            start.wait()
            _land_all(lander, connector, HOUSEHOLD, validations)
        except BaseException as exc:
            errors.append(exc)

    half = BATCHES // 2
    threads = [
        threading.Thread(target=worker, args=("station-north", household_batches[:half])),
        threading.Thread(target=worker, args=("station-south", household_batches[half:])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors, errors
        with catalog.begin() as conn:
            rows = conn.execute(sa.select(certificates.c.serial, certificates.c.leaf_index)).all()
    finally:
        catalog.dispose()
    assert sorted(r.serial for r in rows) == list(range(1, BATCHES * ROWS + 1))
    assert len({r.leaf_index for r in rows}) == BATCHES * ROWS  # besides them: one receipt per batch
