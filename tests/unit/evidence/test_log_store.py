"""The stored tree: interior nodes, proofs from O(log n) rows, `verify_log` and tampering, SM3 logs."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog import Catalog, certificates, checkpoints, log_bundles, log_leaves, log_nodes
from evidence.keys import SigningKey
from evidence.log import (
    KIND_BATCH_RECEIPT,
    KIND_USE,
    NODE_MIN_LEVEL,
    TransparencyLog,
    batch_receipt,
    checkpoint_at,
    leaf_at,
    leaves,
    node_id,
    prove_consistency,
    prove_inclusion,
    read_head,
    record_use,
    root_at,
    tree_size,
    verify_log,
)
from evidence.merkle import (
    SHA256,
    SM3,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from evidence.note import Checkpoint, open_note, parse_vkey
from onceonly.errors import EvidenceError, VerificationFailed

ORIGIN = "onceonly.example/test/stored-log"
KEY = SigningKey.generate(ORIGIN)
VERIFIER = parse_vkey(KEY.vkey)
# Batch sizes that leave the tree ragged after most appends: every case of `extend`.
BATCHES = [1, 2, 1, 5, 8, 3, 13, 1, 16, 7]


def entries(start: int, count: int) -> list[tuple[bytes, str, str]]:
    return [(f'{{"n":{i}}}'.encode(), "lifecycle", f"entry-{i}") for i in range(start, start + count)]


def fill(catalog: Catalog, log: TransparencyLog, batches: list[int] = BATCHES) -> list[bytes]:
    """Append ``batches``; the leaf hashes of the whole log, recomputed from its stored entries
    (each append after the first begins with a ``checkpoint`` leaf logging the one before)."""
    written = 0
    with catalog.begin() as conn:
        for count in batches:
            log.append(conn, entries(written, count))
            written += count
        stored = list(leaves(conn))
    assert [leaf.kind for leaf in stored].count("checkpoint") == len(batches) - 1
    assert [leaf.ref for leaf in stored if leaf.kind == "lifecycle"] == [f"entry-{i}" for i in range(written)]
    return [log.hasher.leaf(leaf.entry or b"") for leaf in stored]


def test_stored_node_proofs_equal_recomputed_ones(catalog: Catalog) -> None:
    log = TransparencyLog(KEY, ORIGIN)
    hashes = fill(catalog, log)
    n = len(hashes)
    stored_nodes = sum(n >> level for level in range(NODE_MIN_LEVEL, n.bit_length()))  # levels 4 and up
    with catalog.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(log_nodes)).scalar_one() == stored_nodes
        for size in range(1, n + 1):
            head = root(hashes[:size])
            assert root_at(conn, size) == head
            for index in range(size):
                proof = prove_inclusion(conn, index, size)
                assert proof == inclusion_proof(index, hashes[:size]), (index, size)
                verify_inclusion(hashes[index], index, size, proof, head)
            for old in range(size + 1):
                proof = prove_consistency(conn, old, size)
                assert proof == consistency_proof(old, hashes[:size]), (old, size)
                verify_consistency(old, size, proof, root(hashes[:old]), head)
        report = verify_log(conn, VERIFIER, chunk=4)
    assert report.tree_size == n == sum(BATCHES) + len(BATCHES) - 1 and report.checkpoints == len(BATCHES)
    assert report.kinds == {"lifecycle": sum(BATCHES), "checkpoint": len(BATCHES) - 1}
    assert report.nodes == stored_nodes == 7


def test_proofs_refuse_sizes_beyond_the_log(catalog: Catalog) -> None:
    log = TransparencyLog(KEY, ORIGIN)
    fill(catalog, log, [3])
    with catalog.read() as conn:
        with pytest.raises(EvidenceError, match="fewer than the 4"):
            prove_inclusion(conn, 0, 4)
        with pytest.raises(EvidenceError, match="fewer than the 5"):
            prove_consistency(conn, 1, 5)
        with pytest.raises(EvidenceError):
            prove_consistency(conn, 3, 2)


def test_receipts_and_uses_are_logged_with_their_entries(catalog: Catalog) -> None:
    log = TransparencyLog(KEY, ORIGIN)
    with catalog.begin() as conn:
        receipt = batch_receipt(
            batch_id="b1",
            content_sha256="ab" * 32,
            contract="gongan-household@1.0.0",
            dataset="gongan-household",
            pulled=10,
            accepted=8,
            quarantined=2,
            certificates=8,
            landed_at="2026-11-21T00:00:00+00:00",
        )
        log.append(conn, [receipt])
        record_use(
            conn, log, matter="m1", certificate_id="1.2.156.x", township="120114001", material="户口簿"
        )
    with catalog.read() as conn:
        rows = conn.execute(sa.select(log_leaves).order_by(log_leaves.c.leaf_index)).all()
        assert [r.kind for r in rows] == [KIND_BATCH_RECEIPT, "checkpoint", KIND_USE]
        assert b'"contract":"gongan-household@1.0.0"' in rows[0].entry
        assert b'"counts":{"accepted":8,"certificates":8,"pulled":10,"quarantined":2}' in rows[0].entry
        assert b'"matter":"m1"' in rows[2].entry and rows[2].ref == "1.2.156.x"
        assert b'"kind":"checkpoint"' in rows[1].entry and b'"size":1' in rows[1].entry
        assert verify_log(conn, VERIFIER).kinds == {KIND_BATCH_RECEIPT: 1, KIND_USE: 1, "checkpoint": 1}


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (
            lambda conn: conn.execute(
                sa.update(log_leaves).where(log_leaves.c.leaf_index == 5).values(entry=b'{"n":500}')
            ),
            r"leaf 5 \(lifecycle entry-3\): its entry does not hash",  # after 2 checkpoint leaves
        ),
        (
            lambda conn: conn.execute(
                sa.update(log_leaves).where(log_leaves.c.leaf_index == 9).values(leaf_hash=b"\x00" * 32)
            ),
            r"leaf 9 .* does not hash to the stored leaf hash",
        ),
        (
            lambda conn: conn.execute(
                sa.update(log_nodes).where(log_nodes.c.node_id == node_id(4, 1)).values(hash=b"\x01" * 32)
            ),
            r"interior node \(4, 1\) differs",
        ),
        (
            lambda conn: conn.execute(sa.delete(log_nodes).where(log_nodes.c.node_id == node_id(4, 0))),
            r"interior node \(4, 0\) is missing",
        ),
        (
            lambda conn: conn.execute(
                sa.insert(log_nodes).values(node_id=node_id(4, 999), hash=b"\x02" * 32)
            ),
            "stores 8 interior nodes; a tree of 66 leaves has 7",
        ),
        (
            lambda conn: conn.execute(
                sa.update(checkpoints).where(checkpoints.c.tree_size == 12).values(root_hash=b"\x03" * 32)
            ),
            "checkpoint at size 12: its root differs",
        ),
        (
            lambda conn: conn.execute(
                sa.update(checkpoints)
                .where(checkpoints.c.tree_size == 21)
                .values(note=sa.func.replace(checkpoints.c.note, "\n21\n", "\n22\n"))
            ),
            "checkpoint at size 21: bad signature",
        ),
        (
            lambda conn: conn.execute(sa.delete(log_leaves).where(log_leaves.c.leaf_index == 30)),
            "leaf 30 is missing",
        ),
        (  # the kind beside an entry is not hashed: a relabelled entry is named
            lambda conn: conn.execute(
                sa.update(log_leaves).where(log_leaves.c.leaf_index == 1).values(kind="lifecycle")
            ),
            "leaf 1: the catalog labels it lifecycle 1, but its entry is checkpoint",
        ),
    ],
    ids=[
        "leaf entry",
        "leaf hash",
        "node",
        "missing node",
        "extra node",
        "checkpoint root",
        "checkpoint note",
        "gap",
        "relabelled",
    ],
)
def test_verify_reports_the_first_tampered_row(catalog: Catalog, tamper: object, message: str) -> None:
    log = TransparencyLog(KEY, ORIGIN)
    fill(catalog, log)
    with catalog.begin() as conn:
        verify_log(conn, VERIFIER)
        tamper(conn)  # type: ignore[operator]
    with catalog.read() as conn, pytest.raises(VerificationFailed, match=message):
        verify_log(conn, VERIFIER, chunk=8)


def test_verify_needs_the_log_key(catalog: Catalog) -> None:
    fill(catalog, TransparencyLog(KEY, ORIGIN), [4])
    other = parse_vkey(SigningKey.generate(ORIGIN).vkey)
    with (
        catalog.read() as conn,
        pytest.raises(VerificationFailed, match="checkpoint at size 4: note has no signature"),
    ):
        verify_log(conn, other)


def test_an_sm3_log_and_no_mixing(catalog: Catalog) -> None:
    log = TransparencyLog(KEY, ORIGIN, hasher=SM3)
    hashes = fill(catalog, log, [3, 4])
    assert hashes[0] == SM3.leaf(b'{"n":0}') != SHA256.leaf(b'{"n":0}')
    with catalog.read() as conn:
        head = read_head(conn)
        assert head.hasher is SM3 and head.root_hash == root(hashes, hasher=SM3) == root_at(conn, 8)
        verify_inclusion(hashes[5], 5, 8, prove_inclusion(conn, 5, 8), head.root_hash, hasher=SM3)
        assert checkpoint_at(conn, 8) is not None
        assert verify_log(conn, VERIFIER).hash_alg == "sm3"
    with catalog.begin() as conn, pytest.raises(EvidenceError, match=r"the log uses sm3.*never mixes"):
        TransparencyLog(KEY, ORIGIN, hasher=SHA256).append(conn, entries(8, 1))


def test_append_refuses_a_head_that_does_not_match_the_leaves(catalog: Catalog) -> None:
    log = TransparencyLog(KEY, ORIGIN)
    fill(catalog, log, [4])
    with catalog.begin() as conn:
        conn.execute(sa.delete(log_leaves).where(log_leaves.c.leaf_index == 3))
    with (
        catalog.begin() as conn,
        pytest.raises(EvidenceError, match=r"head says 4 leaves but the stored leaves from 3 on are \[\]"),
    ):
        log.append(conn, entries(4, 1))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=8), st.data())
def test_any_stored_checkpoint_is_consistent_with_any_later_one(
    batches: list[int], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog.connect(f"sqlite:///{tmp}/log.db")
        try:
            fill(catalog, TransparencyLog(KEY, ORIGIN), batches)
            with catalog.read() as conn:
                notes = (
                    conn.execute(sa.select(checkpoints.c.note).order_by(checkpoints.c.tree_size))
                    .scalars()
                    .all()
                )
                heads = [Checkpoint.parse(open_note(n, VERIFIER)) for n in notes]
                new = data.draw(st.integers(0, len(heads) - 1))
                old = data.draw(st.integers(0, new))
                a, b = heads[old], heads[new]
                proof = prove_consistency(conn, a.size, b.size)
                verify_consistency(a.size, b.size, proof, a.root_hash, b.root_hash)
        finally:
            catalog.dispose()


# ------------------------------------------------------------ certificate leaves, packed


def certificate_entries(start: int, count: int) -> list[tuple[bytes, str, str]]:
    return [
        (f'{{"id":"cert-{i}"}}'.encode(), "certificate", f"cert-{i}") for i in range(start, start + count)
    ]


def hold(conn: sa.Connection, first: int, batch: list[tuple[bytes, str, str]]) -> None:
    """The certificates rows that hold certificate leaves (verify_log checks they exist)."""
    conn.execute(
        sa.insert(certificates),
        [
            {
                "cert_id": ref,
                "dataset": "d",
                "record_key": ref,
                "holder_id": ref,
                "type_code": "t",
                "type_name": "t",
                "issuer_code": "i",
                "serial": first + offset,
                "version": 1,
                "status": "有效",
                "issue_date": dt.date(2026, 11, 21),
                "content_sha256": "0" * 64,
                "leaf_index": first + offset,
                "batch_id": "b",
            }
            for offset, (_, _, ref) in enumerate(batch)
        ],
    )


def fill_mixed(catalog: Catalog, log: TransparencyLog) -> list[tuple[bytes, str, str]]:
    """Lifecycle entries, then certificate runs that cross bundle boundaries, then a receipt-like
    entry: bundles that start anywhere, not at multiples of 256."""
    with catalog.begin() as conn:
        for make, count in ((entries, 5), (certificate_entries, 600), (entries, 1), (certificate_entries, 3)):
            size = tree_size(conn)
            # Named by the index each gets: after the first append, a checkpoint leaf comes first.
            batch = make(size + 1 if size else 0, count)
            appended = log.append(conn, batch)
            if batch[0][1] == "certificate":
                hold(conn, appended.first_index, batch)
        return [(leaf.entry or b"", leaf.kind, leaf.ref) for leaf in leaves(conn)]


def test_certificate_leaves_are_packed_and_read_back_in_order(catalog: Catalog) -> None:
    log = TransparencyLog(KEY, ORIGIN)
    written = fill_mixed(catalog, log)
    hashes = [leaf_hash(data) for data, _, _ in written]
    n = len(written)
    with catalog.read() as conn:
        bundles = conn.execute(
            sa.select(log_bundles.c.first_leaf, log_bundles.c.leaf_count).order_by(log_bundles.c.first_leaf)
        ).all()
        assert [tuple(b) for b in bundles] == [(6, 256), (262, 256), (518, 88), (609, 3)]
        assert conn.execute(sa.select(sa.func.count()).select_from(log_leaves)).scalar_one() == 9
        stored = list(leaves(conn))
        assert [(leaf.index, leaf.entry, leaf.kind, leaf.ref) for leaf in stored] == [
            (i, data, kind, ref) for i, (data, kind, ref) in enumerate(written)
        ]
        assert [leaf.leaf_hash for leaf in stored] == hashes
        for index in (0, 4, 5, 6, 261, 262, 517, 518, 605, 606, 607, 608, 609, 611):
            leaf = leaf_at(conn, index)
            assert (leaf.entry, leaf.kind, leaf.ref, leaf.leaf_hash) == (*written[index], hashes[index])
        with pytest.raises(EvidenceError, match=f"no leaf {n}"):
            leaf_at(conn, n)
        # every proof, rebuilt from packed leaf hashes and the stored nodes of level 4 and up
        for size in (1, 5, 6, 261, 262, 517, 600, n):
            head = root(hashes[:size])
            assert root_at(conn, size) == head
            for index in range(0, size, 7):
                assert prove_inclusion(conn, index, size) == inclusion_proof(index, hashes[:size])
            for old in range(0, size + 1, 11):
                assert prove_consistency(conn, old, size) == consistency_proof(old, hashes[:size])
        report = verify_log(conn, VERIFIER, chunk=100)  # chunks that cut bundles in two
    assert report.kinds == {"lifecycle": 6, "certificate": 603, "checkpoint": 3} and report.tree_size == n


def _bundle_at(first: int, **values: object) -> Callable[[sa.Connection], object]:
    return lambda conn: conn.execute(
        sa.update(log_bundles).where(log_bundles.c.first_leaf == first).values(**values)
    )


def _flip_hash(conn: sa.Connection) -> None:
    blob = bytearray(
        conn.execute(sa.select(log_bundles.c.leaf_hashes).where(log_bundles.c.first_leaf == 262)).scalar_one()
    )
    blob[32 * 10] ^= 1
    _bundle_at(262, leaf_hashes=bytes(blob))(conn)


def _packed(refs_and_entries: list[tuple[str, bytes]]) -> bytes:
    schema = pa.schema([("ref", pa.string()), ("entry", pa.binary())])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        refs = pa.array([ref for ref, _ in refs_and_entries], pa.string())
        entries = pa.array([entry for _, entry in refs_and_entries], pa.binary())
        writer.write_batch(pa.record_batch([refs, entries], schema=schema))
    return bytes(sink.getvalue())


def _swap_certificates(conn: sa.Connection) -> None:
    """Point certificate rows 300 and 301 at each other's leaves and swap the ids stored beside
    the (hashed, unchanged) entries: every hash, node and checkpoint stays right."""
    blob = conn.execute(sa.select(log_bundles.c.entries).where(log_bundles.c.first_leaf == 262)).scalar_one()
    table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
    refs, entries = table.column("ref").to_pylist(), table.column("entry").to_pylist()
    refs[38], refs[39] = refs[39], refs[38]  # leaves 300 and 301
    _bundle_at(262, entries=_packed(list(zip(refs, entries, strict=True))))(conn)
    for cert_id, index in (("cert-300", -1), ("cert-301", 300), ("cert-300", 301)):
        conn.execute(
            sa.update(certificates).where(certificates.c.cert_id == cert_id).values(leaf_index=index)
        )


def _hide_an_extra_leaf(conn: sa.Connection) -> None:
    """An extra leaf row, and a bundle claiming -1 leaves far beyond the head to cancel it out."""
    now = dt.datetime.now(dt.UTC)
    conn.execute(
        sa.insert(log_leaves).values(
            leaf_index=612,
            leaf_hash=leaf_hash(b"forged"),
            kind="use",
            ref="x",
            appended_at=now,
            entry=b"forged",
        )
    )
    conn.execute(
        sa.insert(log_bundles).values(
            first_leaf=10_000, leaf_count=-1, leaf_hashes=b"", entries=b"", appended_at=now
        )
    )


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_flip_hash, r"leaf 272 \(certificate cert-272\): its entry does not hash"),
        (
            _bundle_at(518, entries=b"not an arrow stream"),
            r"leaves 518..605: their stored entries are unreadable",
        ),
        (
            _bundle_at(262, leaf_hashes=b"\x00" * 64),
            r"leaves 262..517: 64 bytes of leaf hashes for 256 leaves",
        ),
        (
            lambda conn: conn.execute(sa.delete(log_bundles).where(log_bundles.c.first_leaf == 262)),
            "leaf 262 is missing",
        ),
        (
            lambda conn: conn.execute(
                sa.update(certificates).where(certificates.c.leaf_index == 300).values(cert_id="other")
            ),
            "leaf 300: no certificate cert-300 holds this leaf",
        ),
        (_swap_certificates, "leaf 300: its entry is not certificate cert-301"),
        (
            lambda conn: conn.execute(
                sa.insert(log_bundles).values(
                    first_leaf=300,
                    leaf_count=0,
                    leaf_hashes=b"",
                    entries=_packed([]),
                    appended_at=dt.datetime.now(dt.UTC),
                )
            ),
            "the bundle of leaves from 300 claims 0 leaves",
        ),
        (_hide_an_extra_leaf, "the bundle of leaves from 10000 claims -1 leaves"),
    ],
    ids=["hash", "entries", "hash blob", "gap", "certificate row", "swap", "empty bundle", "negative count"],
)
def test_verify_reports_a_tampered_bundle(catalog: Catalog, tamper: object, message: str) -> None:
    fill_mixed(catalog, TransparencyLog(KEY, ORIGIN))
    with catalog.begin() as conn:
        tamper(conn)  # type: ignore[operator]
    with catalog.read() as conn, pytest.raises(VerificationFailed, match=message):
        verify_log(conn, VERIFIER, chunk=100)


def test_append_refuses_a_head_past_the_last_bundle(catalog: Catalog) -> None:
    log = TransparencyLog(KEY, ORIGIN)
    with catalog.begin() as conn:
        log.append(conn, certificate_entries(0, 300))
        conn.execute(sa.delete(log_bundles).where(log_bundles.c.first_leaf == 256))
    with (
        catalog.begin() as conn,
        pytest.raises(
            EvidenceError, match=r"head says 300 leaves but the stored leaves from 299 on are \[\]"
        ),
    ):
        log.append(conn, certificate_entries(300, 1))


def test_certificates_given_column_wise_are_logged_as_append_logs_them(
    catalog: Catalog, tmp_path: Path
) -> None:
    batch = certificate_entries(0, 300)
    receipt = entries(300, 1)
    other = Catalog.connect(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with catalog.begin() as conn:
            by_rows = TransparencyLog(KEY, ORIGIN).append(conn, [*batch, *receipt])
        with other.begin() as conn:
            refs = pa.array([ref for _, _, ref in batch])
            data = pa.array([entry for entry, _, _ in batch], pa.binary())
            by_columns = TransparencyLog(KEY, ORIGIN).append_certificates(conn, refs, data, receipt)
            with pytest.raises(EvidenceError, match="2 certificate ids for 1 certificates"):
                TransparencyLog(KEY, ORIGIN).append_certificates(conn, refs[:2], data[:1])
        assert (
            (by_columns.tree_size, by_columns.root_hash)
            == (by_rows.tree_size, by_rows.root_hash)
            == (
                301,
                root([leaf_hash(entry) for entry, _, _ in [*batch, *receipt]]),
            )
        )
        with catalog.read() as a, other.read() as b:
            assert list(leaves(a)) == list(leaves(b))
    finally:
        other.dispose()


def test_many_subtrees_at_once_take_several_queries_and_agree(catalog: Catalog) -> None:
    """More leaves, nodes and separate spans than one query holds (a root over many ranges)."""
    from evidence.log import _subtree_hashes  # the proofs' reader, beyond what one proof asks

    log = TransparencyLog(KEY, ORIGIN)
    written = fill_mixed(catalog, log)
    hashes = [leaf_hash(data) for data, _, _ in written]
    low = {(level, index) for level in range(4) for index in range(0, len(written) >> level, 3)}
    high = {(level, index) for level in range(4, 10) for index in range(len(written) >> level)}
    with catalog.read() as conn:
        found = _subtree_hashes(conn, low | high, SHA256)
    assert len(low) > 32 and len(high) > 64
    assert found == {(lv, i): root(hashes[i << lv : (i + 1) << lv]) for lv, i in low | high}
