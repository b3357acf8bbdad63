"""The RFC 9162 §2.1 Merkle tree (SHA-256) of the transparency log, its proofs and its frontier.

Example::

    >>> leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")]
    >>> head = root(leaves)
    >>> verify_inclusion(leaves[2], 2, 3, inclusion_proof(2, leaves), head)  # raises if wrong
    >>> frontier = CompactRange()
    >>> frontier.extend(leaves)
    >>> frontier.root() == head
    True

Every function works on leaf *hashes* (``leaf_hash(entry)``), never on the entries, so that
the log can keep hashes without re-reading certificates. Proof generation is iterative and
hashes each leaf once (O(n)); ``CompactRange`` adds k leaves to a tree of size n in
O(k + log n) hashes and knows the root without any other leaf.

Verifiers raise :class:`~onceonly.errors.VerificationFailed`; they never return ``False``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from evidence.sm3 import openssl_has_sm3, sm3_pure
from onceonly.errors import ConfigurationError, EvidenceError, VerificationFailed

HASH_SIZE = 32
# RFC 9162 §2.1.1: the hash of an empty list is the hash of an empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

# RFC 9162 §2.1.1: domain separation between leaves (0x00) and interior nodes (0x01).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


@dataclass(frozen=True)
class TreeHash:
    """The hash function of a log: RFC 9162 fixes SHA-256; SM3 (GB/T 32905) is a deployment option.

    Both give 32-byte digests, so the tree, the proofs and the checkpoint format are unchanged;
    only the function differs, and a log records which one it uses (it never mixes them).
    """

    name: str
    new: Callable[[bytes], Any]

    def leaf(self, data: bytes) -> bytes:
        """MTH({d}) = HASH(0x00 || d) (RFC 9162 §2.1.1)."""
        return bytes(self.new(_LEAF_PREFIX + data).digest())

    def node(self, left: bytes, right: bytes) -> bytes:
        """HASH(0x01 || left || right), an interior node (RFC 9162 §2.1.1)."""
        return bytes(self.new(_NODE_PREFIX + left + right).digest())

    def leaves(self, entries: Iterable[bytes]) -> list[bytes]:
        """Leaf hashes of many entries in one pass."""
        new, prefix = self.new, _LEAF_PREFIX
        return [new(prefix + data).digest() for data in entries]

    @property
    def empty_root(self) -> bytes:
        """MTH({}) = HASH() (RFC 9162 §2.1.1)."""
        return bytes(self.new(b"").digest())

    def __repr__(self) -> str:
        return f"TreeHash({self.name!r})"


class _PureSM3:
    """hashlib-shaped wrapper of the pure-Python SM3, for an OpenSSL without SM3."""

    def __init__(self, data: bytes) -> None:
        self._digest = sm3_pure(data)

    def digest(self) -> bytes:
        return self._digest


SHA256 = TreeHash("sha256", hashlib.sha256)
# GB/T 32905 SM3 through OpenSSL when it has it (evidence.sm3 checks), else pure Python.
SM3 = TreeHash("sm3", functools.partial(hashlib.new, "sm3") if openssl_has_sm3() else _PureSM3)
TREE_HASHES = {"sha256": SHA256, "sm3": SM3}


def tree_hash(name: str) -> TreeHash:
    """The :class:`TreeHash` called ``name`` (``sha256`` or ``sm3``); ConfigurationError otherwise."""
    try:
        return TREE_HASHES[name]
    except KeyError:
        raise ConfigurationError(f"unknown log hash {name!r}; known: {', '.join(TREE_HASHES)}") from None


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), an interior node (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root(leaf_hashes: Sequence[bytes], *, hasher: TreeHash = SHA256) -> bytes:
    """MTH(D[n]) over already-hashed leaves (RFC 9162 §2.1.1), computed level by level.

    Pairing neighbours level by level and carrying an odd last node up unchanged builds the
    same tree as the RFC's recursive split at the largest power of two below n.
    """
    level = list(leaf_hashes)
    if not level:
        return hasher.empty_root
    return _reduce_level(level, hasher)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges ``[lo, hi)`` whose MTHs make up PATH(index, D[size]), deepest first.

    RFC 9162 §2.1.3.1, walked from the top: at each split the proof gains the root of the half
    that does not hold the leaf. The log answers each range from its stored subtree nodes.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split_point(hi - lo)
        if index - lo < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs make up PROOF(old_size, D[size]) (RFC 9162 §2.1.4.1).

    Empty when ``old_size`` is 0 or equals ``size``: there is nothing to prove.
    """
    if not 0 <= old_size <= size:
        raise ValueError(f"old size {old_size} is outside 0..{size}")
    if old_size in (0, size):
        return []
    ranges: list[tuple[int, int]] = []
    m, lo, hi, complete = old_size, 0, size, True
    while True:
        n = hi - lo
        if m == n:
            # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if not complete:
                ranges.append((lo, hi))
            break
        k = _split_point(n)
        if m <= k:
            # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.append((lo, lo + k))
            m, lo, complete = m - k, lo + k, False
    ranges.reverse()
    return ranges


def perfect_subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """``(level, index)`` of the perfect subtrees that make up ``[lo, hi)``, left to right.

    Node ``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``. Every
    range of an RFC 9162 proof starts at a multiple of a power of two at least as large as the
    range, so it splits into one perfect subtree per set bit of its size, largest first —
    exactly the RFC's left-heavy split.
    """
    if not 0 <= lo < hi:
        raise ValueError(f"empty or negative leaf range [{lo}, {hi})")
    nodes: list[tuple[int, int]] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        while lo & ((1 << level) - 1):
            level -= 1
        nodes.append((level, lo >> level))
        lo += 1 << level
    return nodes


def fold_subtrees(hashes: Sequence[bytes], *, hasher: TreeHash = SHA256) -> bytes:
    """MTH of a range from its perfect subtrees' roots (left to right, largest first)."""
    result = hashes[-1]
    for value in reversed(hashes[:-1]):
        result = hasher.node(value, result)
    return result


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes], *, hasher: TreeHash = SHA256) -> list[bytes]:
    """PATH(index, D[n]) (RFC 9162 §2.1.3.1): sibling subtree roots from the leaf upwards."""
    return [_range_root(leaf_hashes, lo, hi, hasher) for lo, hi in inclusion_ranges(index, len(leaf_hashes))]


def consistency_proof(
    old_size: int, leaf_hashes: Sequence[bytes], *, hasher: TreeHash = SHA256
) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (RFC 9162 §2.1.4.1).

    The proof is empty when ``old_size`` is 0 or equals the tree size: there is nothing to prove.
    """
    return [
        _range_root(leaf_hashes, lo, hi, hasher) for lo, hi in consistency_ranges(old_size, len(leaf_hashes))
    ]


def verify_inclusion(
    leaf_hash: bytes,
    index: int,
    tree_size: int,
    proof: Sequence[bytes],
    root: bytes,
    *,
    hasher: TreeHash = SHA256,
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` with ``root``.

    RFC 9162 §2.1.3.2, step by step; raises :class:`VerificationFailed` on any mismatch.
    """
    _require_hash(leaf_hash, "leaf hash")
    _require_hash(root, "root hash")
    for position, element in enumerate(proof):
        _require_hash(element, f"inclusion proof hash #{position}")
    # Step 1: the index must lie inside the tree.
    if not 0 <= index < tree_size:
        raise VerificationFailed(f"leaf index {index} is not inside a tree of size {tree_size}")
    # Steps 2-3.
    fn, sn = index, tree_size - 1
    result = leaf_hash
    node = hasher.node
    # Step 4.
    for element in proof:
        if sn == 0:  # 4a
            raise VerificationFailed(f"inclusion proof is too long for a tree of size {tree_size}")
        if fn & 1 or fn == sn:  # 4b
            result = node(element, result)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node(result, element)
        fn >>= 1  # 4c
        sn >>= 1
    # Step 5.
    if sn != 0:
        raise VerificationFailed(f"inclusion proof is too short for a tree of size {tree_size}")
    if result != root:
        raise VerificationFailed("inclusion proof does not lead to the expected root hash")


def verify_consistency(
    old_size: int,
    new_size: int,
    proof: Sequence[bytes],
    old_root: bytes,
    new_root: bytes,
    *,
    hasher: TreeHash = SHA256,
) -> None:
    """Check that the tree (``new_size``, ``new_root``) extends (``old_size``, ``old_root``).

    RFC 9162 §2.1.4.2 for 0 < old_size < new_size; an empty old tree and equal sizes need an
    empty proof. Raises :class:`VerificationFailed` on any mismatch.
    """
    _require_hash(old_root, "old root hash")
    _require_hash(new_root, "new root hash")
    for position, element in enumerate(proof):
        _require_hash(element, f"consistency proof hash #{position}")
    if not 0 <= old_size <= new_size:
        raise VerificationFailed(f"old tree size {old_size} is not between 0 and the new size {new_size}")
    if old_size == 0 or old_size == new_size:
        if proof:
            raise VerificationFailed(f"consistency proof from size {old_size} to {new_size} must be empty")
        if old_size == 0 and old_root != hasher.empty_root:
            raise VerificationFailed("old root hash is not the root of an empty tree")
        if old_size == new_size and old_root != new_root:
            raise VerificationFailed(f"two different root hashes for the same tree size {new_size}")
        return
    # Step 1.
    if not proof:
        raise VerificationFailed(f"consistency proof from size {old_size} to {new_size} is empty")
    # Step 2: a perfect old tree is its own first subtree, so the RFC omits it from the proof.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Steps 3-4.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    first = second = path[0]
    node = hasher.node
    # Step 6.
    for element in path[1:]:
        if sn == 0:  # 6a
            raise VerificationFailed(f"consistency proof is too long for sizes {old_size} and {new_size}")
        if fn & 1 or fn == sn:  # 6b
            first = node(element, first)
            second = node(element, second)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            second = node(second, element)
        fn >>= 1  # 6c
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise VerificationFailed(f"consistency proof is too short for sizes {old_size} and {new_size}")
    if first != old_root:
        raise VerificationFailed("consistency proof does not lead to the old root hash")
    if second != new_root:
        raise VerificationFailed("consistency proof does not lead to the new root hash")


@dataclass(frozen=True)
class Extension:
    """What appending leaves to a tree adds: every new perfect subtree, and the new frontier.

    ``levels[L - 1]`` is ``(first index, hashes)`` of the new complete nodes at level L >= 1,
    consecutive from ``first index``; the leaves themselves (level 0) are the caller's.
    """

    size: int
    frontier: list[bytes]
    levels: list[tuple[int, list[bytes]]]

    def nodes(self) -> Iterable[tuple[int, int, bytes]]:
        """``(level, index, hash)`` of every new interior node."""
        for level, (first, hashes) in enumerate(self.levels, start=1):
            for offset, value in enumerate(hashes):
                yield level, first + offset, value

    @property
    def node_count(self) -> int:
        return sum(len(hashes) for _, hashes in self.levels)


def extend(
    old_size: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes], *, hasher: TreeHash = SHA256
) -> Extension:
    """Append ``leaf_hashes`` to the tree of ``old_size`` whose frontier is ``frontier``.

    Level by level, one pass per level: the new nodes of level L+1 pair the new nodes of
    level L, led by the frontier's level-L subtree when the old tree ended inside a pair.
    Appending n leaves costs about n node hashes in total — the same as building the tree.
    """
    if len(frontier) != old_size.bit_count():
        raise EvidenceError(
            f"Merkle frontier of size {old_size} needs {old_size.bit_count()} subtree hashes, "
            f"got {len(frontier)}"
        )
    new_size = old_size + len(leaf_hashes)
    # The frontier lists subtrees largest first: one per set bit of old_size.
    old_by_level: dict[int, bytes] = {}
    remaining = list(frontier)
    for level in range(old_size.bit_length() - 1, -1, -1):
        if old_size >> level & 1:
            old_by_level[level] = remaining.pop(0)
    new, prefix = hasher.new, _NODE_PREFIX
    levels: list[tuple[int, list[bytes]]] = []
    new_by_level: dict[int, bytes] = {}
    # current: the new complete nodes of `level`, indices old_size >> level .. new_size >> level.
    current, start, level = list(leaf_hashes), old_size, 0
    while current:
        if new_size >> level & 1:
            new_by_level[level] = current[-1]  # the new tree's last subtree at this level
        if start & 1:  # the old tree ended inside a pair: its frontier node is the left child
            current = [old_by_level[level], *current]  # a copy: `levels` holds the list
            start -= 1
        parents = [new(prefix + current[i] + current[i + 1]).digest() for i in range(0, len(current) - 1, 2)]
        level, start = level + 1, start >> 1
        if parents:
            levels.append((start, parents))
        current = parents
    for lv in range(new_size.bit_length()):
        if new_size >> lv & 1 and lv not in new_by_level:
            new_by_level[lv] = old_by_level[lv]  # unchanged by the append
    top = new_size.bit_length() - 1
    new_frontier = [new_by_level[lv] for lv in range(top, -1, -1) if new_size >> lv & 1]
    return Extension(new_size, new_frontier, levels)


class CompactRange:
    """The Merkle frontier: roots of the perfect subtrees of the tree, left to right.

    A tree of size n is the concatenation of perfect subtrees, one per set bit of n, largest
    first; these roots are all the log must keep to append leaves and compute the new MTH.

    >>> frontier = CompactRange()
    >>> frontier.extend([leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")])
    >>> frontier.size, len(frontier.state())
    (3, 2)
    >>> CompactRange.from_state(3, frontier.state()).root() == frontier.root()
    True
    """

    __slots__ = ("_hasher", "_hashes", "_size")

    def __init__(self, *, hasher: TreeHash = SHA256) -> None:
        self._size = 0
        self._hashes: list[bytes] = []
        self._hasher = hasher

    @classmethod
    def from_state(cls, size: int, hashes: Sequence[bytes], *, hasher: TreeHash = SHA256) -> CompactRange:
        """Restore a frontier saved with :meth:`state`; raise ``EvidenceError`` if inconsistent."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise EvidenceError(f"Merkle frontier size {size!r} is not a non-negative integer")
        expected = size.bit_count()
        if len(hashes) != expected:
            raise EvidenceError(
                f"Merkle frontier of size {size} needs {expected} subtree hashes, got {len(hashes)}"
            )
        for position, value in enumerate(hashes):
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise EvidenceError(f"Merkle frontier hash #{position} is not {HASH_SIZE} bytes")
        frontier = cls(hasher=hasher)
        frontier._size = size
        frontier._hashes = list(hashes)
        return frontier

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash; return its leaf index."""
        if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
        index = self._size
        # Each trailing 1 bit of the old size is a perfect subtree of the new leaf's size:
        # merge them, right to left, like a binary carry.
        carry, bits = leaf_hash, index
        while bits & 1:
            carry = self._hasher.node(self._hashes.pop(), carry)
            bits >>= 1
        self._hashes.append(carry)
        self._size = index + 1
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order: level by level (:func:`extend`), about half the cost of
        appending them one by one."""
        leaves = list(leaf_hashes)
        if not all(isinstance(value, bytes) and len(value) == HASH_SIZE for value in leaves):
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
        if leaves:
            grown = extend(self._size, self._hashes, leaves, hasher=self._hasher)
            self._size, self._hashes = grown.size, grown.frontier

    def root(self) -> bytes:
        """MTH of the whole tree; the empty root when empty."""
        if not self._hashes:
            return self._hasher.empty_root
        # RFC 9162 §2.1.1: each split puts the largest perfect subtree on the left, so the
        # subtrees fold together from the right.
        return fold_subtrees(self._hashes, hasher=self._hasher)

    def state(self) -> list[bytes]:
        """The subtree roots, left to right (one per set bit of :attr:`size`)."""
        return list(self._hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size})"


def _split_point(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1) (RFC 9162 §2.1.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_root(leaf_hashes: Sequence[bytes], lo: int, hi: int, hasher: TreeHash = SHA256) -> bytes:
    """MTH(D[lo:hi]) for lo < hi."""
    return _reduce_level(list(leaf_hashes[lo:hi]), hasher)


def _reduce_level(level: list[bytes], hasher: TreeHash = SHA256) -> bytes:
    new = hasher.new
    while len(level) > 1:
        paired = [new(_NODE_PREFIX + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def _require_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise VerificationFailed(f"{what} is not a {HASH_SIZE}-byte hash")


__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "SHA256",
    "SM3",
    "TREE_HASHES",
    "CompactRange",
    "Extension",
    "TreeHash",
    "consistency_proof",
    "consistency_ranges",
    "extend",
    "fold_subtrees",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "perfect_subtrees",
    "root",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]
