"""Compact ranges: appends in any batches give the root of the whole tree, in O(log n)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from ledger.compact import CompactRange, subtree_sizes
from ledger.hashing import perfect_subtrees, root_of_leaf_hashes


def hashes(n: int, salt: int = 0) -> np.ndarray:
    raw = b"".join(hashlib.sha256(f"{salt}:{i}".encode()).digest() for i in range(n))
    return np.frombuffer(raw, dtype=np.uint8).reshape(n, 32)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.integers(0, 70), max_size=12), st.integers(0, 3))
def test_appends_in_any_batches_give_the_whole_trees_root(batches: list[int], salt: int) -> None:
    leaves = hashes(sum(batches), salt)
    compact, start = CompactRange.empty(), 0
    for size in batches:
        compact = compact.extend(leaves[start : start + size])
        start += size
        assert compact.root() == root_of_leaf_hashes(leaves[:start])
        assert list(compact.roots) == [r for _, r in perfect_subtrees(leaves[:start])]
        assert CompactRange.parse(compact.size, compact.text()) == compact


def test_large_aligned_and_unaligned_appends() -> None:
    leaves = hashes(5000)
    compact = CompactRange.empty().extend(leaves[:1]).extend(leaves[1:4097]).extend(leaves[4097:])
    assert compact.root() == root_of_leaf_hashes(leaves)
    assert [1 << b for b in range(13) if 5000 >> b & 1][::-1] == subtree_sizes(5000)


def test_a_range_with_the_wrong_number_of_roots_is_refused() -> None:
    with pytest.raises(ValueError, match="has 2 subtree roots"):
        CompactRange(3, (b"\0" * 32,))
    with pytest.raises(ValueError, match=r"\(k, 32\) matrix"):
        CompactRange.empty().extend(np.zeros((2, 31), dtype=np.uint8))
