"""Stratified SVARM: Shapley values from coalition values, every fit reused for every player.

Kolpaczki, Bengs, Muschalik and Hüllermeier, "Approximating the Shapley Value without
Marginal Contributions" (AAAI 2024). Grouping the Shapley formula by coalition size s,

    φᵢ = (U(N) − U(∅))/n + (1/n) Σ_{s=1}^{n−1} (E[U(S) | i ∈ S, |S|=s] − E[U(S) | i ∉ S, |S|=s]),

so one coalition S of size s informs every player at once: members through the first mean
of size s, non-members through the second. A permutation scan instead spends each fit on one
marginal contribution of one player. Sizes 0, 1 and n are enumerated up front (n + 2
utilities; `start="full"` adds size n−1 as in the paper's "exact calculation", 2n + 2);
then each sample is a uniform set of a sampled size (2..n−1, or 2..n−2 with the full
start). The size is chosen where one more set removes the most variance (Neyman allocation,
from the spread of U, or of the control variate's residual, seen per size; the default
because small coalitions vary much more than large ones here) or drawn from the paper's
distribution (∝ 1/min(s, n−s)). Because utilities are cached by coalition, a set is never
drawn twice (sampling without replacement within a size); a size whose sets are all
evaluated is exact. If the stopping rule is met except that some player has no set with
(or without) it at some size, sizes with such empty cells are sampled first.

Control variate (`control=True`, the default): the singletons give every player a feature
xⱼ = U({j}) − U(∅), and within a sampled size s, U(S) is regressed on X(S) = Σ_{j∈S} xⱼ
(slope b_s from that size's sets, or pooled over sizes while it has few, or 0 early on). Each
cell's mean of U is replaced by its mean of U − b_s·X plus the exact mean of b_s·X over the
cell, which is known in closed form (the regression estimator of survey sampling). It is
exact on additive games, costs nothing when X explains nothing (b_s → 0), and stays exact
once a size is enumerated; a size with no set yet takes b·X's contrast instead of none.

Determinism: all sets come from one seeded generator in the main process; the adaptive
size choice reads only finished batches; utilities are evaluated in fixed-size batches (in
worker processes or on a Dask cluster, `valuation.evaluation_pool`) and the stopping rule is
only checked between batches. So results depend on the seed and the batch size, not on the
workers or where they run.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import ExitStack
from typing import Literal

import numpy as np

from assets.valuation import (
    MIN_FIT,
    StoppingRule,
    Utility,
    ValuationResult,
    evaluate_many,
    evaluation_pool,
    member_flags,
    running_mean_var,
)

ENUMERATE_UP_TO = 20_000
SHRINK_DF = 4  # pseudo degrees of freedom of a size's variance in a cell's variance


def size_distribution(n: int) -> dict[int, float]:
    """The paper's distribution over the sampled sizes 2..n−2 (Stratified SVARM, sec. 4).

    n even: P(s) = (n log n − 1) / (2 s n log n (H − 1)) for s < n/2, 1/(n log n) at s = n/2,
    symmetric above, with H = Σ_{k=1}^{n/2−1} 1/k. n odd: P(s) = 1 / (2 s (H − 1)) for
    s ≤ (n−1)/2, symmetric above, with H = Σ_{k=1}^{(n−1)/2} 1/k. (n = 4 has one size.)
    """
    sizes = list(range(2, n - 1))
    if not sizes:
        return {}
    if n == 4:
        return {2: 1.0}
    if n % 2 == 0:
        h = sum(1 / k for k in range(1, n // 2))
        nl = n * math.log(n)
        weights = [
            1 / nl if s == n // 2 else (nl - 1) / (2 * min(s, n - s) * nl * (h - 1)) for s in sizes
        ]
    else:
        h = sum(1 / k for k in range(1, (n - 1) // 2 + 1))
        weights = [1 / (2 * min(s, n - s) * (h - 1)) for s in sizes]
    total = sum(weights)  # 1 up to rounding
    return {s: w / total for s, w in zip(sizes, weights, strict=True)}


def sampled_size_weights(n: int, full_start: bool) -> dict[int, float]:
    """Weights of the sampled sizes: the paper's over 2..n−2, and with the small start size
    n−1 too, weighted like size n−2 (it has the fewest sets of the large sizes)."""
    weights = size_distribution(n)
    if full_start or n < 3:
        return weights
    weights[n - 1] = weights.get(n - 2, 1.0)
    total = sum(weights.values())
    return {s: w / total for s, w in weights.items()}


def start_size(n: int, start: Literal["small", "full"] = "small") -> int:
    """Utilities evaluated before any sampling: ∅, N, the singletons (and the (n−1)-sets)."""
    return 2 * n + 2 if start == "full" else n + 2


def fits_to_converge(n: int) -> int:
    """The fewest utilities after which SVARM can claim convergence: its start plus, for
    every sampled size s, enough sets that each player is in one and out of another
    (max(⌈n/s⌉, ⌈n/(n−s)⌉) sets, n for s = n − 1). Grows like 2n ln n: 48 for 10 players,
    948 for 100, 14,108 for 1,000, where permutations do better (docs/benchmarks.md)."""
    return start_size(n) + sum(max(-(-n // s), -(-n // (n - s))) for s in range(2, n))


class _SetSampler:
    """Distinct coalitions: the exact strata, an optional warm-up, then paper-distributed sizes.

    Draws depend only on the generator and on which sets were drawn before, never on
    utilities, so the stream is the same whatever the batching or the number of workers.
    """

    def __init__(
        self, n: int, rng: np.random.Generator, paired: bool, warm_up: bool, full_start: bool
    ) -> None:
        self.n, self.rng, self.paired, self.warm_up = n, rng, paired, warm_up
        self.full_start = full_start
        self.full = (1 << n) - 1
        self.seen: set[int] = {0}  # ∅ is evaluated by the caller
        self.drawn = [1] + [0] * n  # distinct sets drawn per size
        self.unseen: dict[int, list[int]] = {}  # explicit lists for small sizes
        self.weights = sampled_size_weights(n, full_start)
        self.priority: dict[int, float] | None = None  # set by the caller for "neyman"
        self.urgent: set[int] = set()  # sizes with empty cells once the rule is otherwise met

    def _gain(self, s: int) -> tuple[float, float]:
        """Variance removed by one more set of size s: a_s/(m(m+1)); two sets per size
        first (to see its variance), in the order of the paper's weights, finishing a
        size's pair before opening the next size: one set of a size teaches nothing (its
        "with i" and "without i" means are the same number), so round-robin first sets
        would leave the values unchanged for G − 2 fits."""
        m = self.drawn[s]
        if m < 2:
            return (math.inf, m + self.weights[s])
        assert self.priority is not None
        return (self.priority[s] / (m * (m + 1)), 0.0)

    def complete(self) -> bool:
        """Every coalition drawn: the estimate is exact."""
        return all(self.drawn[s] == math.comb(self.n, s) for s in range(self.n + 1))

    def _take(self, mask: int) -> bool:
        if mask in self.seen:
            return False
        self.seen.add(mask)
        self.drawn[mask.bit_count()] += 1
        return True

    def exact_strata(self) -> list[int]:
        """N and every singleton, plus every (n−1)-set with the full start (∅ is evaluated
        separately)."""
        masks = [self.full]
        masks += [1 << i for i in range(self.n)]
        if self.full_start:
            masks += [self.full ^ (1 << i) for i in range(self.n)]
        return [m for m in masks if self._take(m)]

    def _warm_up(self) -> Iterator[int]:
        """Per middle size s, a random permutation cut into blocks of s (the last one padded
        with random others), so that every player is in at least one set of every size."""
        for s in self.weights:
            order = self.rng.permutation(self.n)
            for start in range(0, self.n, s):
                block = [int(p) for p in order[start : start + s]]
                if len(block) < s:
                    rest = np.setdiff1d(np.arange(self.n), block)
                    block += [int(p) for p in self.rng.choice(rest, s - len(block), False)]
                mask = sum(1 << p for p in block)
                if self._take(mask):
                    yield mask

    def _draw_of_size(self, s: int) -> int:
        if math.comb(self.n, s) <= ENUMERATE_UP_TO:
            if s not in self.unseen:
                self.unseen[s] = [
                    m
                    for m in (
                        sum(1 << p for p in c) for c in itertools.combinations(range(self.n), s)
                    )
                    if m not in self.seen
                ]
            pool = self.unseen[s]
            while True:  # sets drawn since the list was built are dropped when met
                k = int(self.rng.integers(len(pool)))
                mask = pool[k]
                pool[k] = pool[-1]
                pool.pop()
                if mask not in self.seen:
                    return mask
        while True:  # rejection: collisions are rare when the size has this many sets
            mask = sum(1 << int(p) for p in self.rng.choice(self.n, s, replace=False))
            if mask not in self.seen:
                return mask

    def stream(self) -> Iterator[int]:
        if self.warm_up:
            yield from self._warm_up()
        while True:
            open_sizes = [s for s in self.weights if self.drawn[s] < math.comb(self.n, s)]
            if not open_sizes:
                return  # every coalition has been evaluated: the estimate is exact
            open_sizes = [s for s in open_sizes if s in self.urgent] or open_sizes
            if self.priority is None:
                p = np.array([self.weights[s] for s in open_sizes])
                s = open_sizes[int(self.rng.choice(len(open_sizes), p=p / p.sum()))]
            else:
                s = max(open_sizes, key=self._gain)
            mask = self._draw_of_size(s)
            self._take(mask)
            yield mask
            if self.paired and self._take(self.full ^ mask):
                yield self.full ^ mask


class _Strata:
    """Running sums per (player, size), for members (plus) and non-members (minus): of U,
    and, once the feature is set, of X(S) = Σ_{j∈S} xⱼ, X², U·X for the control variate."""

    def __init__(self, n: int, sampled: Sequence[int]) -> None:
        self.n, self.sampled = n, list(sampled)
        self.x: np.ndarray | None = None
        shape = (n, n + 1)
        # per cell: Σu, Σu², count, ΣX, ΣX², ΣuX
        self.plus = [np.zeros(shape) for _ in range(6)]
        self.minus = [np.zeros(shape) for _ in range(6)]
        self.size = [np.zeros(n + 1) for _ in range(6)]
        big = 1e300  # populations beyond this are "infinite" for the correction

        def population(k: int) -> float:  # float: exact integers would make object arrays
            return float(min(math.comb(n - 1, k), big)) if k >= 0 else 0.0

        self.pop_plus = np.array([population(s - 1) for s in range(n + 1)])
        self.pop_minus = np.array([population(s) for s in range(n + 1)])

    def set_feature(self, x: np.ndarray) -> None:
        """xⱼ for the control variate; only sets added afterwards carry X (the caller sets
        it after the exact strata, so every sampled set does)."""
        self.x = np.asarray(x, dtype=float)

    def add(self, mask: int, value: float) -> None:
        member = member_flags(mask, self.n)
        s = int(member.sum())
        x = float(self.x[member].sum()) if self.x is not None else 0.0
        terms = (value, value * value, 1.0, x, x * x, value * x)
        for stats, rows in ((self.plus, member), (self.minus, ~member), (self.size, None)):
            for total, term in zip(stats, terms, strict=True):
                if rows is None:
                    total[s] += term
                else:
                    total[rows, s] += term

    def slopes(self) -> np.ndarray:
        """b_s per size: the least-squares slope of U on X over the size's sets when it has
        more than MIN_FIT (and X varies), else the slope pooled over the sampled sizes (when
        they have MIN_FIT centred points: a slope through 2 sets can be wild), else 0; 0
        for a size with no set (no extrapolated contrast) and off the sampled sizes."""
        b = np.zeros(self.n + 1)
        if self.x is None:
            return b
        su, _, m, sx, sxx, sux = self.size
        safe = np.maximum(m, 1)
        cov = sux - su * sx / safe  # centred sums of cross products and squares
        var = sxx - sx * sx / safe
        sizes = np.array(self.sampled, dtype=int)
        if sizes.size == 0:
            return b
        scale = max(float(np.max(np.abs(self.x))), 1e-300) ** 2
        spread = var[sizes] > 1e-12 * scale * np.maximum(m[sizes], 1)
        den = float(var[sizes][spread].sum())
        df = float((m[sizes][spread] - 1).sum())  # centred points behind the pooled slope
        pooled = float(cov[sizes][spread].sum()) / den if den > 0 and df >= MIN_FIT else 0.0
        own = spread & (m[sizes] > MIN_FIT)
        b[sizes] = np.where(own, cov[sizes] / np.where(spread, var[sizes], 1.0), pooled)
        b[sizes[m[sizes] == 0]] = 0.0  # no set of the size yet: no extrapolated contrast
        return b

    @staticmethod
    def _residual(stats: list[np.ndarray], b: np.ndarray) -> tuple[np.ndarray, ...]:
        """(Σr, Σr², count) of r = U − b·X, from the running sums."""
        su, suu, m, sx, sxx, sux = stats
        return su - b * sx, suu - 2 * b * sux + b * b * sxx, m

    def _size_variances(self, b: np.ndarray) -> np.ndarray:
        """Variance of the residual U − b·X over the sets drawn of each size, shrunk towards
        the mean variance of the sizes with ≥ 2 sets (which a size with fewer sets takes).
        That mean includes the exact sizes' variance of U (size 1 with the small start): a
        deliberately wide prior while few sets are sampled, which keeps early intervals
        honest; it fades as the sampled sizes' own degrees of freedom grow."""
        _, size_var = running_mean_var(*self._residual(self.size, b))
        counts = self.size[2]
        spread = size_var[counts >= 2]
        fallback = float(spread.mean()) if spread.size else 0.0
        df = np.maximum(counts - 1, 0)
        return (df * size_var + SHRINK_DF * fallback) / (df + SHRINK_DF)

    def empty_sizes(self) -> set[int]:
        """Sampled sizes where some player has no set with it, or none without it."""
        counts = (self.plus[2] == 0) & (self.pop_plus > 0)
        counts |= (self.minus[2] == 0) & (self.pop_minus > 0)
        return {s for s in self.sampled if counts[:, s].any()}

    def priorities(self) -> dict[int, float]:
        """a_s = σ_s² / (s (n − s)): every player's size-s contrast has variance
        ≈ σ_s² n² / (m s (n − s)) after m sets of size s (Neyman allocation over sizes),
        with σ_s² the variance left after the control variate."""
        var = self._size_variances(self.slopes())
        return {s: float(var[s]) / (s * (self.n - s)) for s in range(2, self.n)}

    def _feature_means(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact E[X | i ∈ S, |S| = s] and E[X | i ∉ S, |S| = s] per (player, size)."""
        n = self.n
        shape = (n, n + 1)
        if self.x is None or n < 2:
            return np.zeros(shape), np.zeros(shape)
        rest = (self.x.sum() - self.x)[:, None] / (n - 1)  # mean xⱼ over the others
        s = np.arange(n + 1)[None, :]
        return self.x[:, None] + (s - 1) * rest, s * rest

    def estimate(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(values, standard errors, empty cells among the sampled sizes).

        A player's value is (1/n) Σ_s (plus mean − minus mean); per size the contrasts are
        centred to sum to 0 over players (they do in the population), which makes the values
        add up to U(N) − U(∅) exactly. A cell's mean is its mean of r = U − b_s·X plus the
        exact mean of b_s·X over the cell; an empty cell takes the mean r of its size. Standard
        error: the strata are treated as independent simple random samples without
        replacement, Var φᵢ ≈ (1/n²) Σ_s Σ_± σ²/m · (M − m)/(M − 1), σ² the variance of r.
        σ² is the cell's sample variance shrunk towards the variance of all sets of its size
        (weights: the cell's degrees of freedom against SHRINK_DF), because a cell of 2 or 3
        sets can show a variance near 0 by chance and claim far too much; a size with < 2
        sets uses the mean variance of the others. The centring, the randomness of m and the
        estimation of b_s are ignored.
        """
        n = self.n
        b = self.slopes()
        size_mean, _ = running_mean_var(*self._residual(self.size, b))
        size_var = self._size_variances(b)
        feature = self._feature_means()
        contrasts = np.zeros((n, n + 1))
        variance = np.zeros(n)
        empty = 0
        for stats, population, exact_x, sign in (
            (self.plus, self.pop_plus, feature[0], 1.0),
            (self.minus, self.pop_minus, feature[1], -1.0),
        ):
            mean, var = running_mean_var(*self._residual(stats, b[None, :]))
            count = stats[2]
            mean = np.where(count > 0, mean, size_mean[None, :]) + b[None, :] * exact_x
            df = np.maximum(count - 1, 0)  # shrink few-set cells towards their size's variance
            var = (df * var + SHRINK_DF * size_var[None, :]) / (df + SHRINK_DF)
            m = np.maximum(count, 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                fpc = np.where(population > 1, (population - m) / (population - 1), 0.0)
            fpc = np.clip(np.nan_to_num(fpc), 0.0, 1.0)
            live = population[None, :] > 0
            contrasts += sign * np.where(live, mean, 0.0)
            variance += np.where(live, var / m * fpc, 0.0).sum(axis=1)
            empty += int(np.sum(live & (count == 0)))
        middle = contrasts[:, 1:n]  # sizes 1..n−1: Σᵢ contrast is 0 in the population
        contrasts[:, 1:n] = middle - middle.mean(axis=0, keepdims=True)
        return contrasts.sum(axis=1) / n, np.sqrt(variance) / n, empty


def svarm_shapley(
    utility: Utility,
    players: Sequence[str],
    stopping: StoppingRule,
    *,
    seed: int = 0,
    paired: bool = False,
    warm_up: bool = False,
    allocation: Literal["paper", "neyman"] = "neyman",
    start: Literal["small", "full"] = "small",
    control: bool = True,
    sets_per_batch: int = 16,
    workers: int = 1,
    utility_factory: Callable[[], Utility] | None = None,
    pool: Executor | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> ValuationResult:
    """Stratified SVARM with exact strata, sampling without replacement, a control variate
    and a stopping rule.

    The exact strata (N and the singletons, n + 1 utilities besides U(∅); with
    `start="full"` also the (n−1)-sets, 2n + 1) are evaluated first whatever the budget; then
    batches of `sets_per_batch` distinct sets (the last one cut to the budget), until
    every player's z·SE is within the half-width (with at least `min_pairs` sampled sets and
    every stratum sampled) or `max_evaluations` utilities were evaluated. `paired` adds
    each set's complement; `warm_up` starts with the paper's block warm-up (every stratum
    gets a set); `allocation` picks sizes adaptively ("neyman") or from the paper's
    distribution ("paper"); `control` regresses U on the singletons' feature within each
    size (module docstring). `counts` is the number of sets evaluated: each one updates
    every player. Utilities are evaluated in `pool` when given (an executor whose workers
    hold the utility), else in `workers` local processes built from `utility_factory`.
    """
    n = len(players)
    rng = np.random.default_rng(seed)
    u_empty = utility(0)
    sampler = _SetSampler(n, rng, paired, warm_up, start == "full")
    strata = _Strata(n, sampler.weights)
    strata.add(0, u_empty)
    stream = sampler.stream()
    batch = sampler.exact_strata()
    evaluations, sampled, worker_fits, first = 1, 0, 0, True
    stack = ExitStack()  # a local pool made here is shut down at the end
    pool = stack.enter_context(evaluation_pool(pool, workers, utility_factory))
    u_all = float("nan")
    try:
        while True:
            values, fits = evaluate_many(utility, batch, pool)
            worker_fits += fits
            for mask, value in zip(batch, values, strict=True):
                strata.add(mask, value)
                if mask == sampler.full:
                    u_all = value
            if first and control:  # the first batch holds every singleton
                single = dict(zip(batch, values, strict=True)) | {sampler.full: u_all}
                strata.set_feature(np.array([single[1 << i] - u_empty for i in range(n)]))
            evaluations += len(batch)
            sampled += 0 if first else len(batch)
            first = False
            estimate, std_errors, empty = strata.estimate()
            exhausted = sampler.complete()
            stop, claimed = stopping.done(std_errors, sampled, evaluations)
            converged = exhausted or (claimed and empty == 0)
            if progress:
                progress(sampled, evaluations, float(np.max(stopping.z * std_errors)))
            room = stopping.max_evaluations - evaluations  # the last batch stops at the budget
            if converged or room <= 0 or (stop and not claimed):  # budget, time, ...
                break
            if allocation == "neyman":
                sampler.priority = strata.priorities()
            # the rule is met but some cell is empty: sample the sizes that have one first
            sampler.urgent = strata.empty_sizes() if claimed else set()
            batch = list(itertools.islice(stream, min(sets_per_batch, room)))
    finally:
        stack.close()
    return ValuationResult(
        list(players),
        estimate,
        std_errors,
        np.full(n, evaluations, dtype=np.int64),  # every set evaluated updates every player
        "svarm",
        evaluations,
        converged,
        u_all - u_empty,
        {
            "sets_sampled": sampled,
            "empty_strata": empty,
            "exact": float(exhausted),
            "worker_fits": worker_fits,
            "control_variate": float(control),
        },
    )
