"""Compact ranges: the O(log n) state from which an RFC 9162 tree grows by appends.

A tree of n leaves is the right fold of its perfect subtrees, whose sizes are the binary
digits of n, largest first (RFC 9162 §2.1.1 splits at the largest power of two). Their
roots are the tree's *compact range* [0, n) in transparency-dev's terms: with it alone,
k more leaves give the new root and the new range in O(k + log n) hashing, without the n
leaves before them. The ledger keeps each log table's range (and its own) in its entries,
so an append never re-reads what was committed before.

Serialized as the roots in hex, largest subtree first, joined by ","; the sizes follow
from n, which the ledger entry records beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ledger.hashing import EMPTY_ROOT, HASH_SIZE, perfect_subtree_root
from ledger.proofcheck import node_hash


def subtree_sizes(size: int) -> list[int]:
    """Sizes of the perfect subtrees of a tree of `size` leaves, largest first."""
    return [1 << bit for bit in reversed(range(size.bit_length())) if size >> bit & 1]


@dataclass(frozen=True)
class CompactRange:
    """The perfect-subtree roots of a tree of `size` leaves, largest subtree first."""

    size: int
    roots: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.roots) != len(subtree_sizes(self.size)):
            raise ValueError(
                f"a range of {self.size} leaves has {len(subtree_sizes(self.size))} "
                f"subtree roots, not {len(self.roots)}"
            )

    @classmethod
    def empty(cls) -> CompactRange:
        return cls(0, ())

    @classmethod
    def parse(cls, size: int, text: str) -> CompactRange:
        """The range stored in a ledger entry (hex roots joined by ",")."""
        roots = tuple(bytes.fromhex(h) for h in text.split(",") if h)
        return cls(size, roots)

    def text(self) -> str:
        return ",".join(r.hex() for r in self.roots)

    def root(self) -> bytes:
        """The tree's RFC 9162 root: the right fold of the subtree roots."""
        if not self.roots:
            return EMPTY_ROOT
        acc = self.roots[-1]
        for left in reversed(self.roots[:-1]):
            acc = node_hash(left, acc)
        return acc

    def extend(self, leaf_hashes: np.ndarray) -> CompactRange:
        """The range after appending leaves (an (k, 32) matrix of leaf hashes).

        Leaves are taken in the largest aligned perfect chunks (vectorized subtree roots),
        each merged into the right edge like a carry in binary addition."""
        if leaf_hashes.ndim != 2 or leaf_hashes.shape[1] != HASH_SIZE:
            raise ValueError("leaf hashes must be a (k, 32) matrix")
        stack = list(zip(subtree_sizes(self.size), self.roots, strict=True))
        size, start, k = self.size, 0, leaf_hashes.shape[0]
        while start < k:
            chunk = 1 << ((k - start).bit_length() - 1)  # largest power of two that fits
            if size:
                chunk = min(chunk, size & -size)  # ... and keeps the subtree aligned
            block = leaf_hashes[start : start + chunk]
            root = block[0].tobytes() if chunk == 1 else perfect_subtree_root(block)
            stack.append((chunk, root))
            while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
                (count, right), (_, left) = stack.pop(), stack.pop()
                stack.append((2 * count, node_hash(left, right)))
            size += chunk
            start += chunk
        return CompactRange(size, tuple(root for _, root in stack))
