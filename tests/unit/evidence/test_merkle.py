"""RFC 9162 Merkle tree: published vectors, an independent recursive reference, tampering."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evidence
from evidence import merkle
from evidence.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from onceonly.errors import EvidenceError, VerificationFailed

# --- published vectors: transparency-dev/merkle testonly/constants.go, proof/verify_test.go ---

CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
H = {
    name: bytes.fromhex(value)
    for name, value in {
        "l1": "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "l4": "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "l6": "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "n01": "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "n23": "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "n45": "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "n67": "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "n0123": "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "n4567": "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        "l0": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    }.items()
}
# (leaf index, tree size, proof); the Go file numbers leaves from 1.
CT_INCLUSION = [
    (0, 8, ["l1", "n23", "n4567"]),
    (5, 8, ["l4", "n67", "n0123"]),
    (2, 3, ["n01"]),
    (1, 5, ["l0", "n23", "l4"]),
]
CT_CONSISTENCY = [
    (1, 8, ["l1", "n23", "n4567"]),
    (6, 8, ["n45", "n67", "n0123"]),
    (2, 5, ["n23", "l4"]),
    (6, 7, ["n45", "l6", "n0123"]),
]


def test_exports() -> None:
    assert set(merkle.__all__) <= set(evidence.__all__)
    for name in merkle.__all__:
        assert getattr(evidence, name) is getattr(merkle, name)


def test_published_roots() -> None:
    hashes = [leaf_hash(entry) for entry in CT_LEAVES]
    assert CT_ROOTS[0] == EMPTY_ROOT
    for size in range(len(CT_LEAVES) + 1):
        assert root(hashes[:size]) == CT_ROOTS[size]
        frontier = CompactRange()
        frontier.extend(hashes[:size])
        assert frontier.root() == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "names"), CT_INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, names: list[str]) -> None:
    hashes = [leaf_hash(entry) for entry in CT_LEAVES[:size]]
    expected = [H[name] for name in names]
    assert inclusion_proof(index, hashes) == expected
    verify_inclusion(hashes[index], index, size, expected, CT_ROOTS[size])


@pytest.mark.parametrize(("old", "new", "names"), CT_CONSISTENCY)
def test_published_consistency_proofs(old: int, new: int, names: list[str]) -> None:
    hashes = [leaf_hash(entry) for entry in CT_LEAVES[:new]]
    expected = [H[name] for name in names]
    assert consistency_proof(old, hashes) == expected
    verify_consistency(old, new, expected, CT_ROOTS[old], CT_ROOTS[new])


def test_published_compact_ranges() -> None:
    # testonly/constants.go CompactTrees: the frontier hashes for sizes 0..8.
    hashes = [leaf_hash(entry) for entry in CT_LEAVES]
    n0123, n45 = H["n0123"], H["n45"]
    expected = [
        [],
        [hashes[0]],
        [H["n01"]],
        [H["n01"], hashes[2]],
        [n0123],
        [n0123, hashes[4]],
        [n0123, n45],
        [n0123, n45, hashes[6]],
        [CT_ROOTS[8]],
    ]
    frontier = CompactRange()
    for size, state in enumerate(expected):
        assert frontier.state() == state, size
        if size < len(hashes):
            frontier.append(hashes[size])


# --- an independent reference, straight from the RFC 9162 §2.1 recursive definitions ---


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(entries: list[bytes]) -> bytes:
    """MTH(D[n]) over the raw entries (RFC 9162 §2.1.1)."""
    if not entries:
        return _sha256(b"")
    if len(entries) == 1:
        return _sha256(b"\x00" + entries[0])
    k = _k(len(entries))
    return _sha256(b"\x01" + ref_mth(entries[:k]) + ref_mth(entries[k:]))


def ref_path(m: int, entries: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (RFC 9162 §2.1.3.1)."""
    n = len(entries)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, entries[:k]), ref_mth(entries[k:])]
    return [*ref_path(m - k, entries[k:]), ref_mth(entries[:k])]


def ref_subproof(m: int, entries: list[bytes], complete: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (RFC 9162 §2.1.4.1)."""
    n = len(entries)
    if m == n:
        return [] if complete else [ref_mth(entries)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, entries[:k], complete), ref_mth(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


ENTRIES = [f"certificate {i}".encode() for i in range(64)]
HASHES = [leaf_hash(entry) for entry in ENTRIES]
REF_ROOTS = [ref_mth(ENTRIES[:n]) for n in range(65)]


def test_leaf_and_node_hash_prefixes() -> None:
    assert leaf_hash(b"x") == _sha256(b"\x00x")
    assert node_hash(b"a" * 32, b"b" * 32) == _sha256(b"\x01" + b"a" * 32 + b"b" * 32)


def test_roots_match_the_reference_for_every_size() -> None:
    for n in range(65):
        assert root(HASHES[:n]) == REF_ROOTS[n], n


def test_every_inclusion_proof_matches_the_reference_and_verifies() -> None:
    for n in range(1, 65):
        for m in range(n):
            proof = inclusion_proof(m, HASHES[:n])
            assert proof == ref_path(m, ENTRIES[:n]), (m, n)
            verify_inclusion(HASHES[m], m, n, proof, REF_ROOTS[n])


def test_every_consistency_proof_matches_the_reference_and_verifies() -> None:
    for n in range(1, 65):
        for m in range(1, n + 1):
            proof = consistency_proof(m, HASHES[:n])
            assert proof == ref_subproof(m, ENTRIES[:n], True), (m, n)
            verify_consistency(m, n, proof, REF_ROOTS[m], REF_ROOTS[n])


def _flip(value: bytes, position: int = 0, bit: int = 1) -> bytes:
    return value[:position] + bytes([value[position] ^ bit]) + value[position + 1 :]


def _inclusion_tampers(m: int, n: int) -> list[tuple[str, tuple[object, ...]]]:
    proof = inclusion_proof(m, HASHES[:n])
    good = (HASHES[m], m, n, proof, REF_ROOTS[n])
    cases: list[tuple[str, tuple[object, ...]]] = [
        ("leaf first byte", (_flip(HASHES[m]), m, n, proof, REF_ROOTS[n])),
        ("leaf last byte", (_flip(HASHES[m], 31, 0x80), m, n, proof, REF_ROOTS[n])),
        ("root", (HASHES[m], m, n, proof, _flip(REF_ROOTS[n], 17))),
        ("empty root", (HASHES[m], m, n, proof, EMPTY_ROOT)),
        ("index = size", (HASHES[m], n, n, proof, REF_ROOTS[n])),
        ("size * 2", (HASHES[m], m, n * 2, proof, REF_ROOTS[n])),
        ("trailing root", (HASHES[m], m, n, [*proof, REF_ROOTS[n]], REF_ROOTS[n])),
        ("preceding root", (HASHES[m], m, n, [REF_ROOTS[n], *proof], REF_ROOTS[n])),
        ("short element", (HASHES[m], m, n, [*proof, b""], REF_ROOTS[n])),
        ("short leaf", (b"WrongLeaf", m, n, proof, REF_ROOTS[n])),
    ]
    for other in range(n):
        if other != m:
            cases.append((f"index {other}", (HASHES[m], other, n, proof, REF_ROOTS[n])))
    if n > 1:
        # A smaller size with the same proof length can still verify (leaf 0 of 63 and of 64 have
        # the same path shape): the size is bound by the signed checkpoint, not by the proof.
        cases.append(("size / 2", (HASHES[m], m, n // 2, proof, REF_ROOTS[n])))
    if proof:
        cases.append(("truncated", (HASHES[m], m, n, proof[:-1], REF_ROOTS[n])))
        cases.append(("first dropped", (HASHES[m], m, n, proof[1:], REF_ROOTS[n])))
    for i in range(len(proof)):
        for position in (0, 31):
            wrong = list(proof)
            wrong[i] = _flip(wrong[i], position)
            cases.append((f"proof[{i}] byte {position}", (HASHES[m], m, n, wrong, REF_ROOTS[n])))
    assert good  # the untampered tuple verifies (checked by the callers)
    return cases


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 16, 31, 64])
def test_tampered_inclusion_proofs_raise(n: int) -> None:
    for m in range(n):
        for what, args in _inclusion_tampers(m, n):
            with pytest.raises(VerificationFailed):
                verify_inclusion(*args)  # type: ignore[arg-type]
                pytest.fail(f"{what} verified for leaf {m} of {n}")


@pytest.mark.parametrize("n", [2, 3, 5, 7, 8, 13, 16, 31, 64])
def test_tampered_consistency_proofs_raise(n: int) -> None:
    for m in range(1, n):
        proof = consistency_proof(m, HASHES[:n])
        old, new = REF_ROOTS[m], REF_ROOTS[n]
        cases: list[tuple[str, tuple[object, ...]]] = [
            ("old root", (m, n, proof, _flip(old, 3), new)),
            ("new root", (m, n, proof, old, _flip(new, 30))),
            ("swapped roots", (m, n, proof, new, old)),
            ("empty proof", (m, n, [], old, new)),
            ("truncated", (m, n, proof[:-1], old, new)),
            ("trailing old root", (m, n, [*proof, old], old, new)),
            ("preceding new root", (m, n, [new, *proof], old, new)),
            ("new size * 2", (m, n * 2, proof, old, new)),
            ("old size > new size", (n + 1, n, proof, old, new)),
        ]
        if m > 1:
            cases.append(("old size - 1", (m - 1, n, proof, old, new)))
        if m + 1 < n:
            cases.append(("old size + 1", (m + 1, n, proof, old, new)))
        for i in range(len(proof)):
            wrong = list(proof)
            wrong[i] = _flip(wrong[i], 0, 16)
            cases.append((f"proof[{i}]", (m, n, wrong, old, new)))
        for what, args in cases:
            with pytest.raises(VerificationFailed):
                verify_consistency(*args)  # type: ignore[arg-type]
                pytest.fail(f"{what} verified for {m} -> {n}")


def test_trivial_consistency() -> None:
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 5, [], EMPTY_ROOT, REF_ROOTS[5])
    verify_consistency(5, 5, [], REF_ROOTS[5], REF_ROOTS[5])
    assert consistency_proof(0, HASHES[:5]) == []
    assert consistency_proof(5, HASHES[:5]) == []
    with pytest.raises(VerificationFailed, match="empty tree"):
        verify_consistency(0, 5, [], REF_ROOTS[1], REF_ROOTS[5])
    with pytest.raises(VerificationFailed, match="same tree size"):
        verify_consistency(5, 5, [], REF_ROOTS[4], REF_ROOTS[5])
    with pytest.raises(VerificationFailed, match="must be empty"):
        verify_consistency(5, 5, [EMPTY_ROOT], REF_ROOTS[5], REF_ROOTS[5])
    with pytest.raises(VerificationFailed, match="must be empty"):
        verify_consistency(0, 1, [EMPTY_ROOT], EMPTY_ROOT, REF_ROOTS[1])


def test_verification_messages_are_plain() -> None:
    proof = inclusion_proof(3, HASHES[:8])
    with pytest.raises(VerificationFailed, match="not inside a tree of size 8"):
        verify_inclusion(HASHES[3], 8, 8, proof, REF_ROOTS[8])
    with pytest.raises(VerificationFailed, match="too short"):
        verify_inclusion(HASHES[3], 3, 8, proof[:-1], REF_ROOTS[8])
    with pytest.raises(VerificationFailed, match="too long"):
        verify_inclusion(HASHES[3], 3, 8, [*proof, EMPTY_ROOT], REF_ROOTS[8])
    with pytest.raises(VerificationFailed, match="expected root hash"):
        verify_inclusion(HASHES[4], 3, 8, proof, REF_ROOTS[8])
    with pytest.raises(VerificationFailed, match="32-byte"):
        verify_inclusion(HASHES[3][:31], 3, 8, proof, REF_ROOTS[8])


def test_single_leaf_tree() -> None:
    verify_inclusion(HASHES[0], 0, 1, [], HASHES[0])
    with pytest.raises(VerificationFailed):
        verify_inclusion(HASHES[0], 0, 0, [], EMPTY_ROOT)


def test_proof_generation_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(5, HASHES[:5])
    with pytest.raises(ValueError):
        inclusion_proof(-1, HASHES[:5])
    with pytest.raises(ValueError):
        consistency_proof(6, HASHES[:5])


# --- the frontier ---


def test_compact_range_state_round_trip() -> None:
    frontier = CompactRange()
    for n, value in enumerate(HASHES):
        assert frontier.size == n
        assert len(frontier.state()) == n.bit_count()
        assert frontier.root() == REF_ROOTS[n]
        restored = CompactRange.from_state(frontier.size, frontier.state())
        assert restored.root() == REF_ROOTS[n]
        assert frontier.append(value) == n
    assert repr(frontier) == "CompactRange(size=64)"


def test_compact_range_rejects_inconsistent_state() -> None:
    with pytest.raises(EvidenceError, match="needs 2 subtree hashes"):
        CompactRange.from_state(3, [HASHES[0]])
    with pytest.raises(EvidenceError, match="32 bytes"):
        CompactRange.from_state(1, [b"short"])
    with pytest.raises(EvidenceError):
        CompactRange.from_state(-1, [])
    with pytest.raises(ValueError):
        CompactRange().append(b"short")


hash_lists = st.lists(st.binary(min_size=32, max_size=32), max_size=70)


@settings(max_examples=60, deadline=None)
@given(hash_lists, st.data())
def test_compact_range_matches_root_and_prefixes_are_consistent(
    hashes: list[bytes], data: st.DataObject
) -> None:
    frontier = CompactRange()
    roots = [EMPTY_ROOT]
    for value in hashes:
        frontier.append(value)
        roots.append(frontier.root())
    assert frontier.root() == root(hashes)
    new = data.draw(st.integers(0, len(hashes)))
    old = data.draw(st.integers(0, new))
    assert roots[new] == root(hashes[:new])
    verify_consistency(old, new, consistency_proof(old, hashes[:new]), roots[old], roots[new])


@settings(max_examples=60, deadline=None)
@given(hash_lists, st.data())
def test_compact_range_extended_in_slices_equals_one_leaf_at_a_time(
    hashes: list[bytes], data: st.DataObject
) -> None:
    one_by_one, sliced = CompactRange(), CompactRange()
    for value in hashes:
        one_by_one.append(value)
    start = 0
    while start < len(hashes):
        step = data.draw(st.integers(1, max(1, len(hashes) - start)))
        sliced.extend(hashes[start : start + step])
        assert sliced.size == start + min(step, len(hashes) - start)
        start += step
    sliced.extend([])
    assert sliced.state() == one_by_one.state() and sliced.root() == root(hashes)
    with pytest.raises(ValueError, match="32 bytes"):
        sliced.extend([HASHES[0], b"short"])
    assert sliced.state() == one_by_one.state()  # refused whole: nothing appended


def test_large_tree_iterative_and_fast_enough() -> None:
    # 2^17 + 3 leaves: no recursion, and each proof costs one pass over the leaves.
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range((1 << 17) + 3)]
    head = root(hashes)
    frontier = CompactRange()
    frontier.extend(hashes)
    assert frontier.root() == head
    index = len(hashes) - 2
    verify_inclusion(hashes[index], index, len(hashes), inclusion_proof(index, hashes), head)
    old = 99_999
    verify_consistency(old, len(hashes), consistency_proof(old, hashes), root(hashes[:old]), head)
