"""RFC 9162 Merkle tree: reference vectors, proofs, corruption and second-preimage tests.

Reference vectors: the leaf inputs, node hashes and roots below are copied from
transparency-dev/merkle `testonly/constants.go` (LeafInputs, NodeHashes, RootHashes) and the
proof vectors from `proof/verify_test.go` (inclusionProofs, consistencyProofs; there the
leaf index is 1-based, here it is converted to 0-based). They were looked up, not computed
here; they are additionally cross-checked against the naive recursive implementation of
RFC 9162 §2.1 in this file (`ref_*`), which is written from the RFC text only.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from ledger import merkle
from ledger.hashing import EMPTY_ROOT, TreeBuilder, perfect_subtree_root, sha256_binary
from ledger.proofcheck import leaf_hash, node_hash, root_from_inclusion_proof

FAST = settings(max_examples=examples(60), deadline=None)

# --- transparency-dev/merkle testonly/constants.go ----------------------------------------
LEAVES: list[bytes] = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
EMPTY = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
# ROOTS[n] is the root of the tree over LEAVES[:n]
ROOTS: list[bytes] = [EMPTY] + [
    bytes.fromhex(h)
    for h in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]
# NODE_HASHES[level][i]: perfect subtree of 2**level leaves starting at leaf i * 2**level
NODE_HASHES: list[list[bytes]] = [
    [
        bytes.fromhex(h)
        for h in [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ]
    ],
    [
        bytes.fromhex(h)
        for h in [
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ]
    ],
    [
        bytes.fromhex(h)
        for h in [
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ]
    ],
    [bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# --- transparency-dev/merkle proof/verify_test.go (leaf index made 0-based) ---------------
INCLUSION_VECTORS: list[tuple[int, int, list[str]]] = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
CONSISTENCY_VECTORS: list[tuple[int, int, list[str]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


# --- naive recursive reference, written from the text of RFC 9162 §2.1 ---------------------
def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_leaf(d: bytes) -> bytes:
    return _sha(b"\x00" + d)


def ref_node(left: bytes, right: bytes) -> bytes:
    return _sha(b"\x01" + left + right)


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while 2 * k < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return ref_leaf(d[0])
    k = _split(n)
    return ref_node(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def _ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _split(n)
    if m <= k:
        return [*_ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*_ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_consistency(m: int, d: Sequence[bytes]) -> list[bytes]:
    if m == 0 or m == len(d):
        return []
    return _ref_subproof(m, d, True)


def path_shape(index: int, size: int) -> tuple[str, ...]:
    """Sides ('L'/'R') of the siblings on the audit path, bottom-up (from RFC 9162 PATH)."""
    if size <= 1:
        return ()
    k = _split(size)
    if index < k:
        return (*path_shape(index, k), "R")
    return (*path_shape(index - k, size - k), "L")


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def every_bit_flip(data: bytes) -> list[bytes]:
    return [flip(data, b) for b in range(8 * len(data))]


# --- reference vectors ---------------------------------------------------------------------
def test_empty_tree_root() -> None:
    assert merkle.root([]) == EMPTY == EMPTY_ROOT == ref_mth([])
    assert hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    assert TreeBuilder().root() == EMPTY


@pytest.mark.parametrize("n", range(0, 9))
def test_known_roots(n: int) -> None:
    assert merkle.root(LEAVES[:n]) == ROOTS[n]
    assert ref_mth(LEAVES[:n]) == ROOTS[n]


def test_known_node_hashes() -> None:
    hashes = merkle.leaf_hashes(LEAVES)
    assert [bytes(h) for h in hashes] == NODE_HASHES[0]
    assert [leaf_hash(d) for d in LEAVES] == NODE_HASHES[0]
    for level, expected in enumerate(NODE_HASHES):
        width = 1 << level
        for i, want in enumerate(expected):
            assert perfect_subtree_root(hashes[i * width : (i + 1) * width]) == want
            assert ref_mth(LEAVES[i * width : (i + 1) * width]) == want
    assert node_hash(NODE_HASHES[0][0], NODE_HASHES[0][1]) == NODE_HASHES[1][0]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_known_inclusion_vectors(index: int, size: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert merkle.inclusion_proof(LEAVES[:size], index) == expected
    assert ref_path(index, LEAVES[:size]) == expected
    assert merkle.verify_inclusion(LEAVES[index], index, size, expected, ROOTS[size])
    assert (
        root_from_inclusion_proof(leaf_hash(LEAVES[index]), index, size, expected) == (ROOTS[size])
    )


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_known_consistency_vectors(old: int, new: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert merkle.consistency_proof(LEAVES[:new], old) == expected
    assert ref_consistency(old, LEAVES[:new]) == expected
    assert merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], expected)


# --- every proof of every tree up to 8 leaves, and its corruptions ------------------------
INCLUSION_CASES = [(i, n) for n in range(1, 9) for i in range(n)]
CONSISTENCY_CASES = [(m, n) for n in range(1, 9) for m in range(1, n + 1)]
OTHER_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _inclusion_probes(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> list[tuple[str, tuple[Any, ...]]]:
    """(description, verify_inclusion arguments) that must all fail."""
    probes: list[tuple[str, tuple[Any, ...]]] = []
    wrong_leaves = every_bit_flip(leaf) or [b"\x00", b"\x80"]
    probes += [("leaf bit flip", (w, index, size, proof, root)) for w in wrong_leaves]
    probes += [("leaf + byte", (leaf + b"\x00", index, size, proof, root))]
    if leaf:
        probes += [("leaf truncated", (leaf[:-1], index, size, proof, root))]
    probes += [(f"index bit {b}", (leaf, index ^ (1 << b), size, proof, root)) for b in range(8)]
    probes += [
        ("index - 1", (leaf, index - 1, size, proof, root)),
        ("index + 1", (leaf, index + 1, size, proof, root)),
        ("index = size", (leaf, size, size, proof, root)),
        ("size * 2", (leaf, index, size * 2, proof, root)),
        ("size // 2", (leaf, index, size // 2, proof, root)),
        ("size 0", (leaf, index, 0, proof, root)),
    ]
    for j, element in enumerate(proof):
        for wrong in every_bit_flip(element):
            probes.append(
                (f"proof[{j}] bit flip", (leaf, index, size, _replace(proof, j, wrong), root))
            )
        probes.append(
            (f"proof[{j}] short", (leaf, index, size, _replace(proof, j, element[:31]), root))
        )
        probes.append(
            (f"proof[{j}] long", (leaf, index, size, _replace(proof, j, element + b"\0"), root))
        )
        probes.append(
            (f"proof[{j}] removed", (leaf, index, size, proof[:j] + proof[j + 1 :], root))
        )
        probes.append(
            (f"proof[{j}] hex str", (leaf, index, size, _replace(proof, j, element.hex()), root))
        )
    probes += [
        (f"root bit flip {b}", (leaf, index, size, proof, flip(root, b))) for b in range(256)
    ]
    probes += [
        ("empty root", (leaf, index, size, proof, EMPTY)),
        ("root truncated", (leaf, index, size, proof, root[:31])),
        ("proof truncated", (leaf, index, size, proof[:-1], root)) if proof else ("-", (1,)),
        ("trailing root", (leaf, index, size, [*proof, root], root)),
        ("trailing hash", (leaf, index, size, [*proof, OTHER_HASH], root)),
        ("trailing empty", (leaf, index, size, [*proof, b""], root)),
        ("preceding root", (leaf, index, size, [root, *proof], root)),
        ("preceding hash", (leaf, index, size, [OTHER_HASH, *proof], root)),
        ("inserted hash", (leaf, index, size, [*proof[:1], OTHER_HASH, *proof[1:]], root)),
        ("proof reversed", (leaf, index, size, proof[::-1], root))
        if len(proof) > 1 and proof != proof[::-1]
        else ("-", (1,)),
        ("leaf hash as leaf", (leaf_hash(leaf), index, size, proof, root)),
        ("str leaf", (leaf.hex(), index, size, proof, root)),
        ("bool index", (leaf, bool(index), size, proof, root)) if index > 1 else ("-", (1,)),
        ("float size", (leaf, index, float(size), proof, root)),
        ("None proof", (leaf, index, size, None, root)),
        ("str proof", (leaf, index, size, "".join(p.hex() for p in proof) or "00", root)),
        ("hex root", (leaf, index, size, proof, root.hex())),
        ("negative index", (leaf, -1, size, proof, root)),
        ("negative size", (leaf, index, -size, proof, root)),
    ]
    return [p for p in probes if p[0] != "-"]


def _replace(proof: list[Any], j: int, value: Any) -> list[Any]:
    out = list(proof)
    out[j] = value
    return out


def _must_fail(fn: Callable[..., bool], probes: list[tuple[str, tuple[Any, ...]]]) -> None:
    accepted = []
    for desc, args in probes:
        result = fn(*args)  # must never raise
        assert result is False or result is True, desc
        if result:
            accepted.append(desc)
    assert not accepted, f"corrupted proofs verified: {accepted}"


@pytest.mark.parametrize(("index", "size"), INCLUSION_CASES)
def test_every_inclusion_proof_verifies_and_any_corruption_fails(index: int, size: int) -> None:
    leaves = LEAVES[:size]
    proof = merkle.inclusion_proof(leaves, index)
    assert proof == ref_path(index, leaves)
    assert merkle.verify_inclusion(leaves[index], index, size, proof, ROOTS[size])
    assert merkle.verify_inclusion(bytearray(leaves[index]), index, size, proof, ROOTS[size])
    _must_fail(
        merkle.verify_inclusion, _inclusion_probes(leaves[index], index, size, proof, ROOTS[size])
    )
    # any other leaf of the tree at this position fails too
    for j, other in enumerate(leaves):
        if other != leaves[index]:
            assert not merkle.verify_inclusion(other, index, size, proof, ROOTS[size]), j


@pytest.mark.parametrize(("index", "size"), INCLUSION_CASES)
def test_inclusion_size_bit_flips(index: int, size: int) -> None:
    """A one-bit change of the tree size fails unless both sizes give the same audit path.

    RFC 9162 §2.1.3.2 does not authenticate the tree size: for index < 4 the paths in trees
    of 5, 6 and 7 leaves have the same shape (two siblings inside the first perfect subtree
    of 4, then one right sibling), so the same hashes combine to the same root. The size
    is authenticated separately (the ledger entry's row_count, the checkpoint's size).
    """
    proof = merkle.inclusion_proof(LEAVES[:size], index)
    for bit in range(8):
        other = size ^ (1 << bit)
        same_shape = index < other and path_shape(index, other) == path_shape(index, size)
        got = merkle.verify_inclusion(LEAVES[index], index, other, proof, ROOTS[size])
        assert got is same_shape, (index, size, other)


@pytest.mark.parametrize(("old", "new"), CONSISTENCY_CASES)
def test_every_consistency_proof_verifies_and_any_corruption_fails(old: int, new: int) -> None:
    leaves = LEAVES[:new]
    proof = merkle.consistency_proof(leaves, old)
    assert proof == ref_consistency(old, leaves)
    r1, r2 = ROOTS[old], ROOTS[new]
    assert merkle.verify_consistency(old, new, r1, r2, proof)
    probes: list[tuple[str, tuple[Any, ...]]] = []
    probes += [(f"old root bit {b}", (old, new, flip(r1, b), r2, proof)) for b in range(256)]
    probes += [(f"new root bit {b}", (old, new, r1, flip(r2, b), proof)) for b in range(256)]
    probes += [
        ("old - 1", (old - 1, new, r1, r2, proof)) if old > 1 or proof else ("-", ()),
        ("old + 1", (old + 1, new, r1, r2, proof)),
        *[
            (f"new size {other}", (old, other, r1, r2, proof))
            for other in (new + 1, new * 2, new - 1, new + 2)
            if other < old or old == new or path_shape(old - 1, other) != path_shape(old - 1, new)
        ],
        ("sizes swapped", (new, old, r1, r2, proof)) if old < new else ("-", ()),
        ("roots swapped", (old, new, r2, r1, proof)) if r1 != r2 else ("-", ()),
        ("other old root", (old, new, OTHER_HASH, r2, proof)),
        ("trailing old root", (old, new, r1, r2, [*proof, r1])),
        ("trailing new root", (old, new, r1, r2, [*proof, r2])),
        ("trailing empty", (old, new, r1, r2, [*proof, b""])),
        ("preceding old root", (old, new, r1, r2, [r1, *proof])),
        ("preceding new root", (old, new, r1, r2, [r2, *proof])),
        ("preceding hash", (old, new, r1, r2, [OTHER_HASH, *proof])),
        ("str root", (old, new, r1.hex(), r2, proof)),
        ("None proof", (old, new, r1, r2, None)),
        ("float size", (float(old), new, r1, r2, proof)),
        ("negative", (-old, new, r1, r2, proof)),
    ]
    if proof:
        probes.append(("empty proof", (old, new, r1, r2, [])))
        probes.append(("truncated", (old, new, r1, r2, proof[:-1])))
        probes.append(("first removed", (old, new, r1, r2, proof[1:])))
        probes.append(("preceding proof[0]", (old, new, r1, r2, [proof[0], *proof])))
    for j, element in enumerate(proof):
        for wrong in every_bit_flip(element):
            probes.append((f"proof[{j}] bit flip", (old, new, r1, r2, _replace(proof, j, wrong))))
        probes.append((f"proof[{j}] short", (old, new, r1, r2, _replace(proof, j, element[:31]))))
        probes.append(
            (
                f"proof[{j}] inserted",
                (old, new, r1, r2, [*proof[: j + 1], OTHER_HASH, *proof[j + 1 :]]),
            )
        )
    _must_fail(merkle.verify_consistency, [p for p in probes if p[0] != "-"])


@pytest.mark.parametrize(("old", "new"), CONSISTENCY_CASES)
def test_consistency_size_bit_flips(old: int, new: int) -> None:
    """Flipped sizes fail, except where RFC 9162 cannot tell them apart (see inclusion).

    The consistency verifier walks the audit path of leaf old-1, so a new size with the same
    path shape for that leaf is accepted with the same hashes; an old size of 0 is
    consistent with anything, but only with an empty proof.
    """
    proof = merkle.consistency_proof(LEAVES[:new], old)
    r1, r2 = ROOTS[old], ROOTS[new]
    for bit in range(8):
        other_old = old ^ (1 << bit)
        got = merkle.verify_consistency(other_old, new, r1, r2, proof)
        assert got is (other_old == 0 and not proof), (old, new, other_old)
        other_new = new ^ (1 << bit)
        same_shape = (
            old < new
            and old < other_new
            and path_shape(old - 1, other_new) == path_shape(old - 1, new)
        )
        got = merkle.verify_consistency(old, other_new, r1, r2, proof)
        assert got is same_shape, (old, new, other_new)


def test_consistency_edge_cases() -> None:
    for n in range(0, 9):
        assert merkle.consistency_proof(LEAVES[:n], 0) == []
        assert merkle.consistency_proof(LEAVES[:n], n) == []
        # the empty tree is a prefix of every tree, with an empty proof only
        assert merkle.verify_consistency(0, n, EMPTY, ROOTS[n], [])
        assert not merkle.verify_consistency(0, n, EMPTY, ROOTS[n], [ROOTS[n]])
        # equal sizes need equal roots and an empty proof
        assert merkle.verify_consistency(n, n, ROOTS[n], ROOTS[n], [])
        assert not merkle.verify_consistency(n, n, ROOTS[n], ROOTS[n], [ROOTS[n]])
        if n:
            assert not merkle.verify_consistency(n, n, ROOTS[n], ROOTS[n - 1], [])
            assert not merkle.verify_consistency(n, n - 1, ROOTS[n], ROOTS[n - 1], [])
    with pytest.raises(ValueError):
        merkle.consistency_proof(LEAVES[:3], 4)
    with pytest.raises(IndexError):
        merkle.inclusion_proof(LEAVES[:3], 3)
    with pytest.raises(IndexError):
        merkle.inclusion_proof([], 0)


def test_single_leaf_tree() -> None:
    data = b"data"
    assert merkle.root([data]) == leaf_hash(data)
    assert merkle.inclusion_proof([data], 0) == []
    assert merkle.verify_inclusion(data, 0, 1, [], leaf_hash(data))
    assert not merkle.verify_inclusion(data, 0, 1, [], b"")
    assert not merkle.verify_inclusion(data, 0, 0, [], leaf_hash(data))
    assert not merkle.verify_inclusion(data, 1, 1, [], leaf_hash(data))
    assert not merkle.verify_inclusion(data, 0, 1, [leaf_hash(data)], leaf_hash(data))


# --- the second preimages of naive trees do not apply -------------------------------------
def naive_root(leaves: Sequence[bytes], odd: str) -> bytes:
    """Bottom-up tree WITHOUT domain separation: leaf H(d), node H(l || r).

    odd="duplicate" pairs a lone last node with itself (Bitcoin); odd="promote" carries it
    up unchanged (merkletools and many others).
    """
    level = [_sha(d) for d in leaves]
    while len(level) > 1:
        if len(level) % 2 and odd == "duplicate":
            level.append(level[-1])
        nxt = [_sha(level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def prefixed_promote_root(leaves: Sequence[bytes]) -> bytes:
    """Bottom-up pairing with RFC 9162 prefixes, a lone node promoted unchanged."""
    level = [ref_leaf(d) for d in leaves]
    while len(level) > 1:
        nxt = [ref_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


A, B, C, D, E = (b"alpha", b"bravo", b"charlie", b"delta", b"echo")


def test_second_preimage_a_no_domain_separation() -> None:
    """Interior nodes presented as leaves of a shorter tree do not reproduce the root."""
    leaves = [A, B, C, D]
    # the attack works on the naive tree: 2 leaves (concatenated child hashes) = 4 leaves
    forged_naive = [_sha(A) + _sha(B), _sha(C) + _sha(D)]
    assert naive_root(forged_naive, "promote") == naive_root(leaves, "promote")
    # ours: neither the raw concatenation of child hashes nor any prefixed variant works
    real = merkle.root(leaves)
    n01 = node_hash(leaf_hash(A), leaf_hash(B))
    n23 = node_hash(leaf_hash(C), leaf_hash(D))
    assert real == node_hash(n01, n23)
    candidates = [
        [leaf_hash(A) + leaf_hash(B), leaf_hash(C) + leaf_hash(D)],
        [b"\x01" + leaf_hash(A) + leaf_hash(B), b"\x01" + leaf_hash(C) + leaf_hash(D)],
        [n01, n23],
        [_sha(A) + _sha(B), _sha(C) + _sha(D)],
    ]
    for forged in candidates:
        assert merkle.root(forged) != real
        # and the forged "leaf" with the real sibling as its proof does not verify
        assert not merkle.verify_inclusion(forged[0], 0, 2, [n23], real)
        assert not merkle.verify_inclusion(forged[1], 1, 2, [n01], real)
        assert not merkle.verify_inclusion(forged[0], 0, 4, [n23], real)
    # a single leaf equal to the two root children concatenated is not the root either
    assert merkle.root([n01 + n23]) != real
    assert merkle.root([b"\x01" + n01 + n23]) != real


def test_second_preimage_b_duplicated_last_leaf() -> None:
    assert naive_root([A, B, C], "duplicate") == naive_root([A, B, C, C], "duplicate")
    assert merkle.root([A, B, C]) != merkle.root([A, B, C, C])
    for n in range(1, 9):
        leaves = LEAVES[:n]
        assert merkle.root(leaves) != merkle.root([*leaves, leaves[-1]])
    # the 4-leaf proof of the duplicate does not prove anything about the 3-leaf tree
    proof = merkle.inclusion_proof([A, B, C, C], 3)
    assert not merkle.verify_inclusion(C, 3, 4, proof, merkle.root([A, B, C]))
    assert not merkle.verify_inclusion(C, 3, 3, proof, merkle.root([A, B, C]))


def test_second_preimage_c_promoted_odd_node() -> None:
    """Promotion: ours differs from the naive promoted tree; its forgeries do not verify.

    With RFC 9162 prefixes, bottom-up pairing that promotes a lone node gives exactly the
    RFC 9162 tree (asserted below), so promotion itself is harmless; what makes naive
    promoted trees forgeable is that a promoted node is indistinguishable from a leaf.
    """
    for n in range(1, 33):
        leaves = [bytes([i]) * i for i in range(n)]
        assert prefixed_promote_root(leaves) == merkle.root(leaves) == ref_mth(leaves)
    for n in range(1, 9):
        assert merkle.root(LEAVES[:n]) != naive_root(LEAVES[:n], "promote")
    leaves = [A, B, C, D, E]  # E is promoted twice in the naive tree
    naive = naive_root(leaves, "promote")
    n0123_naive = _sha(_sha(_sha(A) + _sha(B)) + _sha(_sha(C) + _sha(D)))
    x_naive = _sha(_sha(A) + _sha(B)) + _sha(_sha(C) + _sha(D))
    # naive: the 2-leaf tree [x, E] has the 5-leaf root, and [H(E)] proves x at index 0
    assert naive_root([x_naive, E], "promote") == naive
    assert _sha(_sha(x_naive) + _sha(E)) == naive == _sha(n0123_naive + _sha(E))
    # ours: the same construction with our hashes
    real = merkle.root(leaves)
    n0123 = merkle.root(leaves[:4])
    n01, n23 = merkle.root(leaves[:2]), merkle.root(leaves[2:4])
    assert real == node_hash(n0123, leaf_hash(E))
    for x in (n01 + n23, b"\x01" + n01 + n23, x_naive):
        assert merkle.root([x, E]) != real
        for size in range(1, 6):
            for index in range(size):
                for proof in ([leaf_hash(E)], [_sha(E)], [leaf_hash(E), n0123]):
                    assert not merkle.verify_inclusion(x, index, size, proof, real)
    # E's promotion-shaped proof ([n0123]) at the true size proves index 4 only
    assert merkle.verify_inclusion(E, 4, 5, [n0123], real)
    for index in range(4):
        assert not merkle.verify_inclusion(E, index, 5, [n0123], real)
    # a naive promotion proof for E (its naive sibling) does not verify in ours
    assert not merkle.verify_inclusion(E, 4, 5, [n0123_naive], real)


# --- properties over random trees ----------------------------------------------------------
leaf_lists = st.lists(st.binary(max_size=24), max_size=40)


@FAST
@given(leaf_lists)
def test_root_equals_reference(leaves: list[bytes]) -> None:
    assert merkle.root(leaves) == ref_mth(leaves)


@FAST
@given(leaf_lists.filter(bool), st.data())
def test_random_inclusion_proofs_verify(leaves: list[bytes], data: st.DataObject) -> None:
    root = merkle.root(leaves)
    n = len(leaves)
    hashes = merkle.leaf_hashes(leaves)
    indices = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6))
    for index in indices:
        proof = merkle.inclusion_proof_from_hashes(hashes, index)
        assert proof == ref_path(index, leaves)
        assert merkle.verify_inclusion(leaves[index], index, n, proof, root)
        assert not merkle.verify_inclusion(leaves[index] + b"x", index, n, proof, root)
        if proof:
            j = data.draw(st.integers(0, len(proof) - 1))
            bit = data.draw(st.integers(0, 255))
            assert not merkle.verify_inclusion(
                leaves[index], index, n, _replace(proof, j, flip(proof[j], bit)), root
            )


@FAST
@given(leaf_lists.filter(bool), st.data())
def test_random_consistency_proofs_verify(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    old = data.draw(st.integers(0, n))
    proof = merkle.consistency_proof(leaves, old)
    assert proof == ref_consistency(old, leaves)
    old_root, new_root = merkle.root(leaves[:old]), merkle.root(leaves)
    assert merkle.verify_consistency(old, n, old_root, new_root, proof)
    if old > 0:
        bit = data.draw(st.integers(0, 255))
        assert not merkle.verify_consistency(old, n, flip(old_root, bit), new_root, proof)
        other_prefix = [*leaves[: old - 1], leaves[old - 1] + b"!"]
        assert not merkle.verify_consistency(old, n, merkle.root(other_prefix), new_root, proof)
    if 0 < old < n:
        changed = [*leaves[:-1], leaves[-1] + b"!"]
        assert not merkle.verify_consistency(old, n, old_root, merkle.root(changed), proof)


def _random_splits(n: int, draw: st.DataObject) -> list[int]:
    cuts = sorted(draw.draw(st.lists(st.integers(0, n), max_size=6)))
    bounds = [0, *cuts, n]
    return [b - a for a, b in itertools.pairwise(bounds)]


@FAST
@given(
    st.integers(0, 300),
    st.sampled_from([1, 2, 4, 8]),
    st.integers(0, 2**32 - 1),
    st.data(),
)
def test_tree_builder_any_block_and_batches(
    n: int, block: int, seed: int, data: st.DataObject
) -> None:
    rng = random.Random(seed)
    leaves = [rng.randbytes(rng.randrange(0, 20)) for _ in range(n)]
    hashes = merkle.leaf_hashes(leaves)
    builder = TreeBuilder(block=block)
    start = 0
    for size in _random_splits(n, data):
        builder.add_leaf_hashes(hashes[start : start + size])
        start += size
        assert builder.size == start
        # root() does not consume the builder and is right at every prefix
        assert builder.root() == merkle.root(leaves[:start])
    assert builder.root() == merkle.root(leaves) == ref_mth(leaves)


def test_tree_builder_vectorized_levels() -> None:
    """Blocks large enough that interior levels go through the vectorized hashing path."""
    rng = random.Random(7)
    leaves = [rng.randbytes(rng.randrange(0, 40)) for _ in range(3000)]
    expected = ref_mth(leaves)
    hashes = merkle.leaf_hashes(leaves)
    for block in (1024, 2048, 1 << 17):
        builder = TreeBuilder(block=block)
        for start in range(0, 3000, 700):
            builder.add_leaf_hashes(hashes[start : start + 700])
        assert builder.root() == expected
    messages = pa.array([b"\x00" + d for d in leaves], pa.large_binary())
    builder = TreeBuilder(block=2048)
    builder.add_leaves(messages)
    assert builder.root() == expected == merkle.root(leaves)
    with pytest.raises(ValueError):
        TreeBuilder(block=3)
    with pytest.raises(ValueError):
        TreeBuilder().add_leaf_hashes(np.zeros((2, 31), dtype=np.uint8))


def _hashlib_matrix(messages: Sequence[bytes]) -> list[bytes]:
    return [hashlib.sha256(m).digest() for m in messages]


@FAST
@given(
    st.sampled_from([0, 1, 2, 511, 512, 513, 600, 1500]),
    st.integers(0, 2**32 - 1),
    st.sampled_from([pa.binary(), pa.large_binary()]),
    st.integers(0, 5),
    st.booleans(),
)
def test_sha256_binary_matches_hashlib(
    count: int, seed: int, arrow_type: pa.DataType, offset: int, chunked: bool
) -> None:
    """Counts above 512 take the vectorized (SIMD) path, below it hashlib."""
    rng = random.Random(seed)
    lengths = [0, 1, 31, 32, 55, 56, 63, 64, 65, 119, 120, 128, 200, 1000]
    messages = [rng.randbytes(rng.choice(lengths)) for _ in range(count)]
    array = pa.array([b"pad"] * offset + messages, arrow_type).slice(offset)
    if chunked and count:
        cut = rng.randrange(0, count + 1)
        array = pa.chunked_array([array.slice(0, cut), array.slice(cut)], arrow_type)
    got = sha256_binary(array)
    assert got.shape == (count, 32)
    assert got.dtype == np.uint8
    assert [bytes(h) for h in got] == _hashlib_matrix(messages)


def test_sha256_binary_every_length_on_the_vectorized_path() -> None:
    """Every message length 0..299 (all padding cases up to 5 blocks), > 512 messages."""
    rng = random.Random(11)
    messages = [rng.randbytes(n) for n in range(300)] * 2
    messages += [bytes([n % 256]) * n for n in range(299, -1, -1)]
    rng.shuffle(messages)
    array = pa.array(messages, pa.large_binary())
    assert len(array) > 512
    assert [bytes(h) for h in sha256_binary(array)] == _hashlib_matrix(messages)
    # sliced so that the Arrow offsets do not start at zero
    sliced = pa.array([b"x" * 70, *messages], pa.binary()).slice(1)
    assert [bytes(h) for h in sha256_binary(sliced)] == _hashlib_matrix(messages)


@pytest.mark.parametrize("count", [1, 2, 15, 16, 17, 31, 33, 100, 3000, 5000])  # 3000+: threads
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_sha256_many_partial_lane_groups(count: int, threads: int) -> None:
    """The multi-message kernel directly: groups of 16 lanes, partly filled, mixed lengths;
    from 3000 messages the work is split across threads (MIN_GROUPS_PER_THREAD)."""
    from ledger.sha256_simd import sha256_many

    rng = random.Random(count * 10 + threads)
    messages = [rng.randbytes(rng.choice([0, 3, 55, 56, 64, 129, 300])) for _ in range(count)]
    offsets = np.cumsum([0, *map(len, messages)], dtype=np.int64)
    buf = np.frombuffer(b"".join(messages) or b"\0", dtype=np.uint8)
    got = sha256_many(buf, offsets, threads=threads)
    assert [bytes(h) for h in got] == _hashlib_matrix(messages)
    assert sha256_many(buf, np.zeros(1, dtype=np.int64)).shape == (0, 32)
    with pytest.raises(ValueError):
        sha256_many(buf, offsets[::-1].copy())


@pytest.mark.parametrize("pairs", [1, 7, 16, 513, 2000])
@pytest.mark.parametrize("threads", [1, 2])
def test_sha256_pairs_is_one_level_up(pairs: int, threads: int) -> None:
    """The interior-level kernel: SHA-256(prefix ‖ left ‖ right) of each adjacent pair."""
    from ledger.sha256_simd import sha256_pairs

    rng = np.random.default_rng(pairs)
    level = rng.integers(0, 256, (2 * pairs, 32), dtype=np.uint8)
    got = sha256_pairs(level, 0x01, threads=threads)
    data = level.tobytes()
    want = [node_hash(data[i : i + 32], data[i + 32 : i + 64]) for i in range(0, len(data), 64)]
    assert [bytes(h) for h in got] == want
    assert bytes(sha256_pairs(level[-2:], 0x01)[0]) == want[-1]  # a row slice
    for width in (1, 2):  # threads passed down: the same root
        sub = level[: 1 << (2 * pairs).bit_length() - 1]
        assert perfect_subtree_root(sub, threads=width) == perfect_subtree_root(sub)
    with pytest.raises(ValueError):
        sha256_pairs(np.zeros((3, 32), np.uint8), 0x01)
