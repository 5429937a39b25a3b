"""Exact KNN-Shapley values of training points (Jia et al., 2019), vectorized.

For one test point with label y_t and the N training points sorted by distance
(α_1 nearest, ties broken by training index), the exact Shapley values of the K-nearest-
neighbour utility U(S) = (1/K) Σ_{k ≤ min(K,|S|)} 1[y_{α_k(S)} = y_t] satisfy

    s_{α_N} = 1[y_{α_N} = y_t] · min(K, N) / (N·K)     (= 1[·]/N when K ≤ N)
    s_{α_i} = s_{α_{i+1}} + (1[y_{α_i} = y_t] − 1[y_{α_{i+1}} = y_t]) / K · min(K, i) / i

so every test point costs one sort over the M distinct training points, O(M log M):
identical points are grouped once (`Groups`) and expanded in index order, which breaks
their ties by training index without re-sorting, plus O(N) to expand and accumulate.
Values are averaged over test points. Test points are processed in chunks, so memory is
O(chunk × N), never N².
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale every matrix by the training set's mean and standard deviation."""
    mean = train.mean(axis=0) if train.size else 0.0
    std = train.std(axis=0) if train.size else 1.0
    std = np.where(std > 0, std, 1.0)
    return [(m - mean) / std for m in (train, *others)]


def nearest_first(distances: np.ndarray) -> np.ndarray:
    """Each row's indices by increasing distance, ties broken by index.

    numpy's default argsort is several times faster than its stable sort (vectorized
    where the CPU allows), but it orders equal keys arbitrarily; rows with a tie are
    sorted again stably, so the order (and every value) is the same on any machine.
    """
    order = np.argsort(distances, axis=1)
    ordered = np.take_along_axis(distances, order, axis=1)
    tied = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if tied.any():
        order[tied] = np.argsort(distances[tied], axis=1, kind="stable")
    return order


@dataclass(frozen=True)
class Groups:
    """Training points grouped by identical features: the `unique` feature rows, and the
    training indices of each group in index order (`members[start[g] : start[g] + size[g]]`).
    Identical points are at the same distance from every test point, so sorting the unique
    points and expanding each into its members in index order gives the order with ties
    broken by index, without a stable re-sort of every test point that has one."""

    unique: np.ndarray
    inverse: np.ndarray  # each training point's group
    members: np.ndarray
    start: np.ndarray
    size: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Groups:
        n = x.shape[0]
        if n < 2 or np.unique(x, axis=0).shape[0] == n:  # no two alike: the points themselves
            every = np.arange(n)
            return cls(x, every, every, every, np.ones(n, dtype=np.int64))
        unique, inverse, size = np.unique(x, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        members = np.argsort(inverse, kind="stable")  # by group, then by index
        start = np.concatenate([[0], np.cumsum(size)[:-1]])
        return cls(unique, inverse, members, start, size)

    def nearest_first(self, distances: np.ndarray) -> np.ndarray:
        """Every training point by increasing distance, ties broken by index, from the
        (chunk, M) distances of the unique points. Two distinct points at exactly the same
        distance (rare with continuous features) are the only ties left; a test point that
        has one is sorted again stably over all points."""
        order = np.argsort(distances, axis=1)
        ordered = np.take_along_axis(distances, order, axis=1)
        tied = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        expanded = self.expand(order)
        if tied.any():
            full = distances[tied][:, self.inverse]
            expanded[tied] = np.argsort(full, axis=1, kind="stable")
        return expanded

    def expand(self, unique_order: np.ndarray) -> np.ndarray:
        """(chunk, N) training order from a (chunk, M) order of the unique points."""
        if self.unique.shape[0] == self.members.size:  # no two points alike: the identity
            return unique_order
        chunk = unique_order.shape[0]
        sizes = self.size[unique_order]
        before = np.cumsum(sizes, axis=1) - sizes  # where each group's first member goes
        offset = np.repeat((self.start[unique_order] - before).ravel(), sizes.ravel())
        n = self.members.size
        return self.members[offset + np.tile(np.arange(n), chunk)].reshape(chunk, n)


def squared_distances(x_test: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(test, train) squared Euclidean distances."""
    return np.sum(x_test**2, axis=1)[:, None] - 2.0 * x_test @ x.T + np.sum(x**2, axis=1)[None, :]


def _chunk_values(
    groups: Groups, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, k: int
) -> np.ndarray:
    """Shapley values (chunk, N) of every training point for each test point of the chunk."""
    n = y.shape[0]
    order = groups.nearest_first(squared_distances(x_test, groups.unique))
    match = (y[order] == y_test[:, None]).astype(np.float64)
    ranks = np.arange(1, n, dtype=np.float64)  # i = 1 .. N-1 (1-based)
    coef = np.minimum(k, ranks) / ranks / k
    steps = (match[:, :-1] - match[:, 1:]) * coef  # s_i - s_{i+1} for i = 1 .. N-1
    sorted_values = np.empty_like(match)
    sorted_values[:, -1] = match[:, -1] * min(k, n) / (n * k)  # = 1/N when K ≤ N
    sorted_values[:, :-1] = sorted_values[:, -1:] + np.cumsum(steps[:, ::-1], axis=1)[:, ::-1]
    values = np.empty_like(sorted_values)
    np.put_along_axis(values, order, sorted_values, axis=1)
    return values


def knn_shapley(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    k: int = 10,
    chunk: int = 64,
) -> np.ndarray:
    """Mean exact KNN-Shapley value of each training point over the test points."""
    if x.shape[0] == 0:
        return np.zeros(0)
    total = np.zeros(x.shape[0])
    groups = Groups.of(x)
    for start in range(0, x_test.shape[0], chunk):
        part = _chunk_values(
            groups, y, x_test[start : start + chunk], y_test[start : start + chunk], k
        )
        total += part.sum(axis=0)
    return total / max(x_test.shape[0], 1)
