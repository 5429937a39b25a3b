"""Contributor Shapley values: utility, sampler, stopping rule and result (docs/attribution.md).

In the spirit of pyDVL, the pieces are separate objects:

- a **utility** maps a coalition of players (a bitmask over contributors) to a number; the
  Datanet utility is the spec's bounded metric, on the fixed validation set, of a LightGBM
  model with fixed parameters trained on the coalition's accepted rows (`DatanetUtility`).
  Any callable `int -> float` works, which is how the tests use games with known values;
- an **estimator**: `exact_shapley` enumerates all 2^G coalitions; `permutation_shapley`
  samples antithetic permutation pairs with truncation; `svarm_shapley` (assets/svarm.py)
  samples coalitions that inform every player; `msr_banzhaf` (assets/banzhaf.py) estimates
  the Banzhaf value, a noise-robust ranking that is not a Shapley value;
- a **stopping rule** (`StoppingRule`): every player's confidence half-width below a target,
  or a budget of utility evaluations;
- a **result** (`ValuationResult`) with values, standard errors and counts per player.

Determinism: permutations come from a seeded generator in fixed-size batches, the stopping
rule is checked only between batches, and each utility is deterministic, so the result is
the same whatever the number of worker processes.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np

from assets.datanets import DatanetSpec
from assets.training import bounded_metric, lgb_params, n_classes, predict

Utility = Callable[[int], float]


# --- the Datanet utility ---------------------------------------------------------------------


class DatanetUtility:
    """U(S) = bounded metric on the validation set of LightGBM trained on S's rows.

    The full training matrix is binned once (`lgb.Dataset.construct`); a coalition trains
    on `subset` of it, so bins are shared by every fit. Values are cached by coalition.
    U(∅) and single-class coalitions use a constant predictor: uniform class probabilities
    for ∅ (the metric of knowing nothing), the one class seen otherwise (regression: the
    mean target, or 0 for ∅).
    """

    def __init__(
        self,
        spec: DatanetSpec,
        x: np.ndarray,
        y: np.ndarray,
        player_of_row: np.ndarray,
        x_val: np.ndarray,
        y_val: np.ndarray,
        num_boost_round: int,
    ) -> None:
        self.spec, self.y, self.x_val, self.y_val = spec, y, x_val, y_val
        self.num_boost_round = num_boost_round
        self.player_of_row = player_of_row
        self.n_players = int(player_of_row.max()) + 1 if player_of_row.size else 0
        self.rows_of = [np.flatnonzero(player_of_row == p) for p in range(self.n_players)]
        self.params = {**lgb_params(spec), "max_bin": 255}  # the same for binning and fits
        self.full = lgb.Dataset(x, label=y, params=self.params, free_raw_data=False).construct()
        self.cache: dict[int, float] = {}
        self.fits = 0

    def _constant(self, mask: int) -> float:
        n = len(self.y_val)
        if self.spec.task == "regression":
            rows = self._rows(mask)
            mean = float(self.y[rows].mean()) if rows.size else 0.0
            return bounded_metric(self.spec, self.y_val, np.full(n, mean))
        k = n_classes(self.spec)
        if mask == 0:  # knowing nothing: a uniform guess (argmax would favour class 0)
            if self.spec.metric in ("accuracy", "balanced_accuracy"):
                return 1.0 / k
            return bounded_metric(self.spec, self.y_val, np.full((n, k), 1.0 / k))
        only = int(self.y[self._rows(mask)][0])
        return bounded_metric(self.spec, self.y_val, np.eye(k)[np.full(n, only)])

    def _rows(self, mask: int) -> np.ndarray:
        parts = [self.rows_of[p] for p in range(self.n_players) if mask >> p & 1]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def __call__(self, mask: int) -> float:
        if mask in self.cache:
            return self.cache[mask]
        rows = self._rows(mask)
        if rows.size == 0 or (self.spec.task != "regression" and np.unique(self.y[rows]).size < 2):
            value = self._constant(mask)
        else:
            booster = lgb.train(
                self.params, self.full.subset(rows.tolist()), num_boost_round=self.num_boost_round
            )
            value = bounded_metric(self.spec, self.y_val, predict(self.spec, booster, self.x_val))
            self.fits += 1
        self.cache[mask] = value
        return value


def member_flags(mask: int, n: int) -> np.ndarray:
    """Which of n players a coalition bitmask holds (bit i = player i), as a bool array."""
    raw = np.frombuffer(mask.to_bytes((n + 7) // 8 or 1, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


def mask_of_flags(flags: np.ndarray) -> int:
    """The bitmask of a bool array of players (the inverse of `member_flags`)."""
    return int.from_bytes(
        np.packbits(flags.astype(np.uint8), bitorder="little").tobytes(), "little"
    )


def running_mean_var(
    total: np.ndarray, square: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased variance from running sums of values and squares (0 if count ≤ 1)."""
    safe = np.maximum(count, 1)
    mean = total / safe
    var = np.maximum(square / safe - mean**2, 0.0) * safe / np.maximum(safe - 1, 1)
    return mean, var


# --- results and stopping --------------------------------------------------------------------


@dataclass
class ValuationResult:
    players: list[str]
    values: np.ndarray
    std_errors: np.ndarray
    counts: np.ndarray  # marginal contributions evaluated per player
    method: str
    utility_evaluations: int
    converged: bool
    total_utility: float  # U(all) - U(∅): what the values should add up to
    notes: dict[str, float] = field(default_factory=dict)

    def efficiency_gap(self) -> float:
        return float(self.values.sum() - self.total_utility)


@dataclass(frozen=True)
class StoppingRule:
    """Stop when every player's z·SE ≤ half_width, or after max_evaluations utilities.

    Permutation scans count every utility call (a cached coalition re-asked included: a
    fit count would differ with the workers' separate caches, and with truncation the
    reachable coalitions can run out before a fit budget does). SVARM never asks a
    coalition twice and MSR Banzhaf counts the distinct coalitions it drew (it ends once it
    has drawn them all): for both the count is the fits."""

    half_width: float = 0.01
    z: float = 1.96
    max_evaluations: int = 2000
    min_pairs: int = 4

    def done(self, std_errors: np.ndarray, pairs: int, evaluations: int) -> tuple[bool, bool]:
        """(stop, converged)."""
        converged = pairs >= self.min_pairs and bool(np.all(self.z * std_errors <= self.half_width))
        return converged or evaluations >= self.max_evaluations, converged


# --- exact -----------------------------------------------------------------------------------


def every_utility(utility: Utility, g: int) -> np.ndarray:
    """U of all 2^g coalitions, indexed by bitmask (exact values; refused beyond 20)."""
    if g > 20:
        raise ValueError(f"exact values over {g} players would need 2^{g} utilities")
    return np.array([utility(mask) for mask in range(1 << g)])


def exact_shapley(utility: Utility, players: Sequence[str]) -> ValuationResult:
    """All 2^G coalitions; φ_i = Σ_S |S|!(G-|S|-1)!/G! (U(S∪i) - U(S))."""
    g = len(players)
    values_of = every_utility(utility, g)
    sizes = np.array([bin(mask).count("1") for mask in range(1 << g)])
    weight = np.array(
        [
            math.factorial(s) * math.factorial(g - s - 1) / math.factorial(g) if s < g else 0.0
            for s in range(g + 1)
        ]
    )
    phi = np.zeros(g)
    masks = np.arange(1 << g)
    for i in range(g):
        without = masks[(masks >> i & 1) == 0]
        phi[i] = float(
            np.sum(weight[sizes[without]] * (values_of[without | (1 << i)] - values_of[without]))
        )
    return ValuationResult(
        list(players),
        phi,
        np.zeros(g),
        np.full(g, 1 << (g - 1)),
        "exact",
        1 << g,
        True,
        float(values_of[-1] - values_of[0]),
    )


# --- Monte Carlo permutations ---------------------------------------------------------------


def _scan(
    utility: Utility, permutation: np.ndarray, u_all: float, u_empty: float, tolerance: float
) -> tuple[np.ndarray, int, int]:
    """Marginal contributions along one permutation, truncated once the prefix is within
    `tolerance`·|U(all) − U(∅)| of U(all) (the rest are taken as 0, Ghorbani & Zou 2019)."""
    marginal = np.zeros(len(permutation))
    mask, previous, evaluated = 0, u_empty, 0
    scale = abs(u_all - u_empty)
    for player in permutation:
        if tolerance > 0 and abs(u_all - previous) <= tolerance * scale:
            break
        mask |= 1 << int(player)
        current = utility(mask)
        evaluated += 1
        marginal[player] = current - previous
        previous = current
    return marginal, evaluated, evaluated  # (marginals, utility calls, players reached)


_WORKER_UTILITY: Utility | None = None


def _init_worker(factory: Callable[[], Utility]) -> None:
    global _WORKER_UTILITY
    _WORKER_UTILITY = factory()


def worker_pool(
    workers: int, utility_factory: Callable[[], Utility] | None
) -> ProcessPoolExecutor | None:
    """Worker processes that each build their own utility once (None for one worker).

    Shared by every Monte Carlo estimator: the main process draws all randomness, the
    workers only evaluate, so results do not depend on the number of workers.
    """
    if workers <= 1:
        return None
    if utility_factory is None:
        raise ValueError("workers > 1 needs a utility_factory to build utilities in workers")
    return ProcessPoolExecutor(  # spawn: LightGBM's OpenMP state must not be forked
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(utility_factory,),
    )


def _evaluate_in_worker(mask: int) -> tuple[float, int]:
    """U(mask) in a worker, plus the model fits it cost there (counted in the result)."""
    assert _WORKER_UTILITY is not None
    before = getattr(_WORKER_UTILITY, "fits", 0)
    value = _WORKER_UTILITY(mask)
    return value, getattr(_WORKER_UTILITY, "fits", 0) - before


def evaluate_many(
    utility: Utility, masks: Sequence[int], pool: ProcessPoolExecutor | None
) -> tuple[list[float], int]:
    """Utilities of `masks` in order, in the pool when there is one; (values, worker fits)."""
    if pool is None:
        return [utility(mask) for mask in masks], 0
    outcomes = list(pool.map(_evaluate_in_worker, masks))
    return [value for value, _ in outcomes], sum(fits for _, fits in outcomes)


def _scan_in_worker(
    args: tuple[np.ndarray, float, float, float],
) -> tuple[np.ndarray, int, int, int]:
    """`_scan` in a worker, plus the model fits it cost there (counted in the result)."""
    assert _WORKER_UTILITY is not None
    before = getattr(_WORKER_UTILITY, "fits", 0)
    marginal, calls, reached = _scan(_WORKER_UTILITY, *args)
    return marginal, calls, reached, getattr(_WORKER_UTILITY, "fits", 0) - before


def permutation_shapley(
    utility: Utility,
    players: Sequence[str],
    stopping: StoppingRule,
    *,
    seed: int = 0,
    truncation: float = 0.0,
    pairs_per_batch: int = 8,
    workers: int = 1,
    utility_factory: Callable[[], Utility] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    exact_first: bool = False,
) -> ValuationResult:
    """Antithetic truncated Monte Carlo permutation sampling.

    Each sample is a pair (π, reversed π); a player's estimate averages, over pairs, the
    mean of its two marginal contributions, and its standard error is the standard
    deviation of those pair means over √pairs. With `workers > 1`, permutations are scanned
    in worker processes that each build their own utility with `utility_factory`.

    `exact_first` evaluates every player alone first (G utilities, small fits) and uses the
    first position as a control variate with a known mean (`first_position_control`): at
    large G a player's rare turn at the head of a permutation is by far its largest
    marginal, and removing that spike shrinks the standard errors several fold. Values stay
    unbiased; their sum equals U(N) − U(∅) in expectation rather than per permutation.
    """
    g = len(players)
    rng = np.random.default_rng(seed)
    u_all, u_empty = utility((1 << g) - 1), utility(0)
    evaluations = 2
    sums, squares = np.zeros(g), np.zeros(g)
    reached = np.zeros(g, dtype=np.int64)
    worker_fits = 0
    pairs = 0
    pool = worker_pool(workers, utility_factory)
    alone: np.ndarray | None = None
    try:
        if exact_first:
            singles, worker_fits = evaluate_many(utility, [1 << i for i in range(g)], pool)
            alone = np.asarray(singles) - u_empty
            evaluations += g
        while True:
            perms = [rng.permutation(g) for _ in range(pairs_per_batch)]
            jobs = [(p, u_all, u_empty, truncation) for q in perms for p in (q, q[::-1].copy())]
            scanned = (
                list(pool.map(_scan_in_worker, jobs))
                if pool is not None
                else [_scan(utility, *job) for job in jobs]
            )
            for k in range(0, len(scanned), 2):
                for job, outcome in zip(jobs[k : k + 2], scanned[k : k + 2], strict=True):
                    reached[job[0][: outcome[2]]] += 1  # players actually evaluated
                    worker_fits += outcome[3] if len(outcome) > 3 else 0
                first, n1 = scanned[k][0], scanned[k][1]
                second, n2 = scanned[k + 1][0], scanned[k + 1][1]
                if alone is not None:
                    first = first_position_control(first, jobs[k][0], alone)
                    second = first_position_control(second, jobs[k + 1][0], alone)
                pair_mean = (first + second) / 2
                sums += pair_mean
                squares += pair_mean**2
                evaluations += n1 + n2
                pairs += 1
            mean, variance = running_mean_var(sums, squares, np.full(g, pairs))
            std_errors = np.sqrt(variance / pairs)
            stop, claimed = stopping.done(std_errors, pairs, evaluations)
            # truncation leaves late players unevaluated: no claim until each was reached
            converged = claimed and int(reached.min()) >= stopping.min_pairs
            # stop when converged, or when the rule stops for another reason (budget, time)
            stop = converged or (stop and not claimed)
            if progress:
                progress(pairs, evaluations, float(np.max(stopping.z * std_errors)))
            if stop:
                break
    finally:
        if pool is not None:
            pool.shutdown()
    return ValuationResult(
        list(players),
        mean,
        std_errors,
        reached,  # marginal contributions actually evaluated (truncated ones excluded)
        "tmc_antithetic",
        evaluations,
        converged,
        u_all - u_empty,
        {
            "pairs": pairs,
            "truncation": truncation,
            "worker_fits": worker_fits,
            "least_reached": int(reached.min()),
            "exact_first": exact_first,
        },
    )


def first_position_control(
    marginal: np.ndarray, permutation: np.ndarray, alone: np.ndarray
) -> np.ndarray:
    """Δᵢ(π) − 1[i first in π]·aᵢ + aᵢ/G, with aᵢ = U({i}) − U(∅).

    The subtracted term has mean aᵢ/G over uniform permutations (i is first with
    probability 1/G), so the estimate of φᵢ keeps its expectation while the head-of-order
    marginal, which is aᵢ itself, no longer varies.
    """
    corrected = marginal + alone / len(alone)
    corrected[permutation[0]] -= alone[permutation[0]]
    return corrected
