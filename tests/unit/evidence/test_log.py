"""The transparency log in the catalog: append, checkpoints, proofs, and one writer at a time."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
import sqlalchemy as sa

from catalog import Catalog, checkpoints, log_bundles, log_head
from evidence.canonical import canonical_json
from evidence.keys import SigningKey
from evidence.log import (
    ENTRY_SCHEMA,
    Appended,
    TransparencyLog,
    latest_checkpoint,
    leaves,
    prove_inclusion,
    tree_size,
)
from evidence.merkle import leaf_hash, root, verify_inclusion
from evidence.note import Checkpoint, open_note, parse_vkey
from onceonly.errors import EvidenceError, VerificationFailed

ORIGIN = "onceonly.example/test/log"
KEY = SigningKey.generate(ORIGIN)


def entries(start: int, count: int) -> list[tuple[bytes, str, str]]:
    return [(f'{{"n":{i}}}'.encode(), "certificate", f"cert-{i}") for i in range(start, start + count)]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def log() -> TransparencyLog:
    return TransparencyLog(KEY, ORIGIN)


def stored_hashes(catalog: Catalog) -> list[bytes]:
    with catalog.begin() as conn:
        stored = list(leaves(conn))
    assert [leaf.index for leaf in stored] == list(range(len(stored)))
    return [leaf.leaf_hash for leaf in stored]


def test_an_empty_log(catalog: Catalog, log: TransparencyLog) -> None:
    with catalog.begin() as conn:
        assert latest_checkpoint(conn) is None and tree_size(conn) == 0
        with pytest.raises(EvidenceError, match="nothing to append"):
            log.append(conn, [])


def test_appends_continue_one_tree_under_signed_checkpoints(catalog: Catalog, log: TransparencyLog) -> None:
    with catalog.begin() as conn:
        first = log.append(conn, entries(0, 3))
    with catalog.begin() as conn:
        second = log.append(conn, entries(3, 4))

    # The second append begins with a leaf logging the checkpoint the log signed before it.
    logged = {"size": 3, "root": first.root_hash.hex(), "note_sha256": sha256(first.checkpoint)}
    checkpoint_leaf = canonical_json({"schema": ENTRY_SCHEMA, "kind": "checkpoint", **logged})
    data = [d for d, _, _ in entries(0, 3)] + [checkpoint_leaf] + [d for d, _, _ in entries(3, 4)]
    hashes = stored_hashes(catalog)
    assert hashes == [leaf_hash(d) for d in data]
    assert (first.first_index, first.tree_size, second.first_index, second.tree_size) == (0, 3, 4, 8)
    assert first.root_hash == root(hashes[:3]) and second.root_hash == root(hashes)
    verifier = parse_vkey(KEY.vkey)
    for appended in (first, second):
        checkpoint = Checkpoint.parse(open_note(appended.checkpoint, verifier))
        assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (
            ORIGIN,
            appended.tree_size,
            appended.root_hash,
        )
    with catalog.begin() as conn:
        assert latest_checkpoint(conn) == (8, second.checkpoint)
        assert tree_size(conn) == 8
        refs = [leaf.ref for leaf in leaves(conn)]
        assert refs == [f"cert-{i}" for i in range(3)] + ["3"] + [f"cert-{i}" for i in range(3, 7)]
        assert conn.execute(sa.select(checkpoints.c.tree_size)).scalars().all() == [3, 8]


def test_an_append_refuses_when_the_newest_checkpoint_is_missing(
    catalog: Catalog, log: TransparencyLog
) -> None:
    with catalog.begin() as conn:
        log.append(conn, entries(0, 2))
        conn.execute(sa.delete(checkpoints))
    with (
        pytest.raises(EvidenceError, match=r"newest checkpoint \(size 2\) is missing"),
        catalog.begin() as conn,
    ):
        log.append(conn, entries(2, 3))


def test_every_leaf_is_proven_in_every_tree_that_holds_it(catalog: Catalog, log: TransparencyLog) -> None:
    with catalog.begin() as conn:
        small = log.append(conn, entries(0, 5))
        large = log.append(conn, entries(5, 6))
    hashes = stored_hashes(catalog)
    with catalog.begin() as conn:
        for appended in (small, large):
            for index in range(appended.tree_size):
                proof = prove_inclusion(conn, index, appended.tree_size)
                verify_inclusion(hashes[index], index, appended.tree_size, proof, appended.root_hash)
        proof = prove_inclusion(conn, 2, large.tree_size)
    with pytest.raises(VerificationFailed):
        verify_inclusion(hashes[3], 2, large.tree_size, proof, large.root_hash)


def test_proofs_outside_the_tree_or_over_a_truncated_log_are_refused(
    catalog: Catalog, log: TransparencyLog
) -> None:
    with catalog.begin() as conn:
        log.append(conn, entries(0, 4))
    with catalog.begin() as conn:
        with pytest.raises(EvidenceError, match="not in a tree of size 4"):
            prove_inclusion(conn, 4, 4)
        with pytest.raises(EvidenceError, match="not in a tree of size 4"):
            prove_inclusion(conn, -1, 4)
        conn.execute(sa.delete(log_bundles))  # certificate leaves are stored in bundles
        with pytest.raises(EvidenceError, match="tampered with or truncated"):
            prove_inclusion(conn, 0, 4)


def test_an_append_rolled_back_with_its_transaction_leaves_no_trace(
    catalog: Catalog, log: TransparencyLog
) -> None:
    with catalog.begin() as conn:
        log.append(conn, entries(0, 2))
    with pytest.raises(RuntimeError, match="the certificates failed"), catalog.begin() as conn:
        log.append(conn, entries(2, 3))
        raise RuntimeError("the certificates failed")
    with catalog.begin() as conn:
        assert tree_size(conn) == 2
        head = latest_checkpoint(conn)
        assert head is not None and head[0] == 2
        assert len(list(leaves(conn))) == 2
        appended = log.append(conn, entries(2, 3))
    assert (appended.first_index, appended.tree_size) == (3, 6)  # after the checkpoint leaf
    assert appended.root_hash == root(stored_hashes(catalog))


def test_each_checkpoint_leaf_logs_the_root_before_it_whoever_appended_and_whatever_rolled_back(
    catalog: Catalog, log: TransparencyLog
) -> None:
    # A log keeps the root of the frontier it grew to last, for its next checkpoint leaf: it
    # must not log it when another writer (a process of `serve --workers 2`, a landing flow)
    # appended meanwhile, or its own last append was rolled back.
    other = TransparencyLog(KEY, ORIGIN)
    with catalog.begin() as conn:
        log.append(conn, entries(0, 3))
    with catalog.begin() as conn:
        other.append(conn, entries(3, 2))
    with pytest.raises(RuntimeError, match="rolled back"), catalog.begin() as conn:
        log.append(conn, entries(5, 4))
        raise RuntimeError("rolled back")
    with catalog.begin() as conn:
        log.append(conn, entries(5, 1))
    with catalog.begin() as conn:
        log.append(conn, entries(6, 2))
    with catalog.begin() as conn:
        other.append(conn, entries(8, 1))
        signed = dict(conn.execute(sa.select(checkpoints.c.tree_size, checkpoints.c.root_hash)).all())
        stored = list(leaves(conn))
    logged = [json.loads(leaf.entry or b"") for leaf in stored if leaf.kind == "checkpoint"]
    assert [entry["size"] for entry in logged] == [3, 6, 8, 11]
    hashes = [leaf.leaf_hash for leaf in stored]
    for entry in logged:
        assert entry["root"] == bytes(signed[entry["size"]]).hex() == root(hashes[: entry["size"]]).hex()


def test_a_second_writer_waits_for_the_first(catalog: Catalog, log: TransparencyLog) -> None:
    """The head is locked: an append started while another is uncommitted continues after it."""
    with catalog.begin() as conn:
        log.append(conn, entries(0, 1))  # the head row exists; now only the lock can serialise
    done: list[Appended] = []
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            with catalog.begin() as conn:
                done.append(log.append(conn, entries(100, 2)))
        except BaseException as exc:
            errors.append(exc)

    with catalog.begin() as conn:
        first = log.append(conn, entries(1, 3))
        writer = threading.Thread(target=second_writer)
        writer.start()
        time.sleep(0.5)
        assert writer.is_alive() and not done, "the second append must wait for the first to commit"
    writer.join(timeout=30)

    assert not errors, errors
    (second,) = done
    assert (first.first_index, first.tree_size) == (2, 5)  # each after its checkpoint leaf
    assert (second.first_index, second.tree_size) == (6, 8)
    hashes = stored_hashes(catalog)
    assert second.root_hash == root(hashes)
    with catalog.begin() as conn:
        head = conn.execute(sa.select(log_head.c.tree_size)).scalar_one()
    assert head == 8
