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

import hashlib
from collections.abc import Iterable, Sequence

from onceonly.errors import EvidenceError, VerificationFailed

HASH_SIZE = 32
# RFC 9162 §2.1.1: the hash of an empty list is the hash of an empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

# RFC 9162 §2.1.1: domain separation between leaves (0x00) and interior nodes (0x01).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), an interior node (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves (RFC 9162 §2.1.1), computed level by level.

    Pairing neighbours level by level and carrying an odd last node up unchanged builds the
    same tree as the RFC's recursive split at the largest power of two below n.
    """
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    return _reduce_level(level)


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) (RFC 9162 §2.1.3.1): sibling subtree roots from the leaf upwards."""
    size = len(leaf_hashes)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    # Walk the RFC's recursion from the top: at each split the proof gains the root of the
    # half that does not hold the leaf. The RFC lists the deepest sibling first.
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split_point(hi - lo)
        if index - lo < k:
            path.append(_range_root(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            path.append(_range_root(leaf_hashes, lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (RFC 9162 §2.1.4.1).

    The proof is empty when ``old_size`` is 0 or equals the tree size: there is nothing to prove.
    """
    size = len(leaf_hashes)
    if not 0 <= old_size <= size:
        raise ValueError(f"old size {old_size} is outside 0..{size}")
    if old_size in (0, size):
        return []
    proof: list[bytes] = []
    m, lo, hi, complete = old_size, 0, size, True
    while True:
        n = hi - lo
        if m == n:
            # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if not complete:
                proof.append(_range_root(leaf_hashes, lo, hi))
            break
        k = _split_point(n)
        if m <= k:
            # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            proof.append(_range_root(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            proof.append(_range_root(leaf_hashes, lo, lo + k))
            m, lo, complete = m - k, lo + k, False
    proof.reverse()
    return proof


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
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
    # Step 4.
    for element in proof:
        if sn == 0:  # 4a
            raise VerificationFailed(f"inclusion proof is too long for a tree of size {tree_size}")
        if fn & 1 or fn == sn:  # 4b
            result = node_hash(element, result)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, element)
        fn >>= 1  # 4c
        sn >>= 1
    # Step 5.
    if sn != 0:
        raise VerificationFailed(f"inclusion proof is too short for a tree of size {tree_size}")
    if result != root:
        raise VerificationFailed("inclusion proof does not lead to the expected root hash")


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
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
        if old_size == 0 and old_root != EMPTY_ROOT:
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
    # Step 6.
    for element in path[1:]:
        if sn == 0:  # 6a
            raise VerificationFailed(f"consistency proof is too long for sizes {old_size} and {new_size}")
        if fn & 1 or fn == sn:  # 6b
            first = node_hash(element, first)
            second = node_hash(element, second)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            second = node_hash(second, element)
        fn >>= 1  # 6c
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise VerificationFailed(f"consistency proof is too short for sizes {old_size} and {new_size}")
    if first != old_root:
        raise VerificationFailed("consistency proof does not lead to the old root hash")
    if second != new_root:
        raise VerificationFailed("consistency proof does not lead to the new root hash")


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

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_state(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
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
        frontier = cls()
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
            carry = node_hash(self._hashes.pop(), carry)
            bits >>= 1
        self._hashes.append(carry)
        self._size = index + 1
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order."""
        for value in leaf_hashes:
            self.append(value)

    def root(self) -> bytes:
        """MTH of the whole tree; ``EMPTY_ROOT`` when empty."""
        if not self._hashes:
            return EMPTY_ROOT
        # RFC 9162 §2.1.1: each split puts the largest perfect subtree on the left, so the
        # subtrees fold together from the right.
        result = self._hashes[-1]
        for value in reversed(self._hashes[:-1]):
            result = node_hash(value, result)
        return result

    def state(self) -> list[bytes]:
        """The subtree roots, left to right (one per set bit of :attr:`size`)."""
        return list(self._hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size})"


def _split_point(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1) (RFC 9162 §2.1.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_root(leaf_hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for lo < hi."""
    return _reduce_level(list(leaf_hashes[lo:hi]))


def _reduce_level(level: list[bytes]) -> bytes:
    sha256 = hashlib.sha256
    while len(level) > 1:
        paired = [
            sha256(_NODE_PREFIX + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)
        ]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def _require_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise VerificationFailed(f"{what} is not a {HASH_SIZE}-byte SHA-256 hash")


__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]
