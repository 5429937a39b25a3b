"""RFC 9162 Merkle Tree Hash, inclusion and consistency proofs over raw leaf data.

Leaves are raw bytes `d`; they are hashed inside as SHA-256(0x00 || d), interior nodes
as SHA-256(0x01 || left || right); a tree of n leaves splits at the largest power of two
below n; the empty tree's root is SHA-256(""). Odd nodes are never duplicated or
promoted, so the classic second-preimage tricks of naive trees do not apply.

The verifiers live in `ledger.proofcheck` (standard library only) and are re-exported
here; the functions that build trees and proofs use the vectorized hashing of
`ledger.hashing` and also accept precomputed leaf hashes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ledger.hashing import (
    EMPTY_ROOT,
    prefixed_leaves,
    root_of_leaf_hashes,
    sha256_binary,
)
from ledger.proofcheck import (
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "consistency_proof",
    "consistency_proof_from_hashes",
    "inclusion_proof",
    "inclusion_proof_from_hashes",
    "leaf_hash",
    "leaf_hashes",
    "node_hash",
    "root",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]


def leaf_hashes(leaves: Sequence[bytes]) -> np.ndarray:
    """Leaf hashes of raw leaf data, as an (n, 32) uint8 matrix."""
    return sha256_binary(prefixed_leaves(list(leaves)))


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of the raw leaves (RFC 9162 §2.1.1)."""
    if not leaves:
        return EMPTY_ROOT
    return root_of_leaf_hashes(leaf_hashes(leaves))


def inclusion_proof_from_hashes(hashes: np.ndarray, index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1 over precomputed leaf hashes."""
    n = hashes.shape[0]
    if not 0 <= index < n:
        raise IndexError(f"leaf index {index} outside a tree of {n} leaves")
    path: list[bytes] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index - lo < k:
            path.append(root_of_leaf_hashes(hashes[lo + k : hi]))
            hi = lo + k
        else:
            path.append(root_of_leaf_hashes(hashes[lo : lo + k]))
            lo = lo + k
    path.reverse()
    return path


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Inclusion proof for raw leaf `index` (RFC 9162 §2.1.3.1)."""
    return inclusion_proof_from_hashes(leaf_hashes(leaves), index)


def consistency_proof_from_hashes(hashes: np.ndarray, old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]) of RFC 9162 §2.1.4.1 over precomputed leaf hashes."""
    n = hashes.shape[0]
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} outside 0..{n}")
    if old_size in (0, n):
        return []
    proof: list[bytes] = []
    lo, hi, m, complete = 0, n, old_size, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            proof.append(root_of_leaf_hashes(hashes[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(root_of_leaf_hashes(hashes[lo : lo + k]))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        proof.append(root_of_leaf_hashes(hashes[lo:hi]))
    proof.reverse()
    return proof


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Proof that the first `old_size` leaves' tree is a prefix of the whole tree."""
    return consistency_proof_from_hashes(leaf_hashes(leaves), old_size)
