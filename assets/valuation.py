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
the same whatever the number of worker processes, or the executor they run in (a local
process pool, or a Dask cluster through `assets.dask_pool`).
"""

from __future__ import annotations

import math
import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np

from assets.datanets import DatanetSpec
from assets.training import bounded_metric, lgb_params, n_classes, predict

Utility = Callable[[int], float]
DASK_SCHEDULER_ENV = "OPENLEDGER_DASK_SCHEDULER"  # set: fits run on that Dask cluster
JACKKNIFE_FOLDS = 10  # validation folds of the exact values' standard errors
MIN_FIT = 4  # degrees of freedom a control-variate slope needs (else pooled, else 0)
HOLD_RELEASE = 4  # held permutations join once later ones outnumber them this many times


# --- the Datanet utility ---------------------------------------------------------------------


class DatanetUtility:
    """U(S) = bounded metric on the validation set of LightGBM trained on S's rows.

    The full training matrix is binned once (`lgb.Dataset.construct`); a coalition trains
    on `subset` of it, so bins are shared by every fit. Values are cached by coalition.
    U(∅) is the metric of the best constant predictor, which needs no contributed data
    (`best_constant_metric`: the majority rate for accuracy, 1/k for balanced accuracy, 0.5
    for ROC AUC, 0 for clipped R²), so only data that beats it has positive value.
    A coalition whose rows have a single class predicts that class.
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
        jackknife: bool = False,
    ) -> None:
        self.spec, self.y, self.x_val, self.y_val = spec, y, x_val, y_val
        # with `jackknife`, U(S) is also scored without each of JACKKNIFE_FOLDS interleaved
        # validation folds (`fold_cache`): the spread of values computed from those tells
        # how much they owe to the draw of the validation set (`validation_std_errors`)
        self.kept = (
            [np.arange(len(y_val)) % JACKKNIFE_FOLDS != j for j in range(JACKKNIFE_FOLDS)]
            if jackknife
            else []
        )
        self.fold_cache: dict[int, np.ndarray] = {}
        self._folds = np.zeros(0)
        self.num_boost_round = num_boost_round
        self.player_of_row = player_of_row
        self.n_players = int(player_of_row.max()) + 1 if player_of_row.size else 0
        self.rows_of = [np.flatnonzero(player_of_row == p) for p in range(self.n_players)]
        self.params = {**lgb_params(spec), "max_bin": 255}  # the same for binning and fits
        self.full = lgb.Dataset(x, label=y, params=self.params, free_raw_data=False).construct()
        self.cache: dict[int, float] = {}
        self.fits = 0

    def _score(self, prediction: np.ndarray) -> float:
        """The metric of a prediction of the validation set (and without each fold)."""
        if self.kept:
            folds = [bounded_metric(self.spec, self.y_val[k], prediction[k]) for k in self.kept]
            self._folds = np.array(folds)
        return bounded_metric(self.spec, self.y_val, prediction)

    def _constant(self, mask: int) -> float:
        rows = self._rows(mask)
        if rows.size == 0:
            if self.kept:
                self._folds = np.array(
                    [best_constant_metric(self.spec, self.y_val[k]) for k in self.kept]
                )
            return best_constant_metric(self.spec, self.y_val)
        n, k = len(self.y_val), n_classes(self.spec)
        only = int(self.y[rows][0])  # a classification coalition with a single class
        return self._score(np.eye(k)[np.full(n, only)])

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
            value = self._score(predict(self.spec, booster, self.x_val))
            self.fits += 1
        self.cache[mask] = value
        if self.kept:
            self.fold_cache[mask] = self._folds
        return value


def best_constant_metric(spec: DatanetSpec, y_val: np.ndarray) -> float:
    """U(∅): the spec's metric of the best predictor that uses no contributed data, a
    constant. The candidates are every class with certainty and the uniform guess
    (classification; for accuracy the best is the majority class of the validation set,
    for balanced accuracy any class gives 1/k, for ROC AUC any constant gives 0.5), or the
    validation mean (regression: R² = 0). Scoring U(∅) lower, as a uniform guess, handed
    every contributor the same share of what any data beats, so harmful data looked
    useful (docs/attribution.md, "The game")."""
    n = len(y_val)
    if spec.task == "regression":
        mean = float(y_val.mean()) if n else 0.0
        return bounded_metric(spec, y_val, np.full(n, mean))
    k = n_classes(spec)
    candidates = [np.eye(k)[np.full(n, c)] for c in range(k)] + [np.full((n, k), 1.0 / k)]
    return max(bounded_metric(spec, y_val, p) for p in candidates)


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


def shapley_of_table(values_of: np.ndarray, g: int) -> np.ndarray:
    """Exact Shapley values from the utilities of all 2^g coalitions, indexed by bitmask
    (a column of values per game when `values_of` is 2-D: the result is then (g, games))."""
    sizes = np.array([bin(mask).count("1") for mask in range(1 << g)])
    weight = np.array(
        [
            math.factorial(s) * math.factorial(g - s - 1) / math.factorial(g) if s < g else 0.0
            for s in range(g + 1)
        ]
    )
    masks = np.arange(1 << g)
    phi = np.zeros((g, *values_of.shape[1:]))
    for i in range(g):
        without = masks[(masks >> i & 1) == 0]
        w = weight[sizes[without]].reshape(-1, *([1] * (values_of.ndim - 1)))
        phi[i] = np.sum(w * (values_of[without | (1 << i)] - values_of[without]), axis=0)
    return phi


def validation_std_errors(utility: DatanetUtility, g: int) -> np.ndarray:
    """Jackknife standard errors of exact values over the validation folds: the values are
    recomputed with each fold left out, and SE² = (J − 1)/J · Σ_j (φ₋ⱼ − mean φ₋)². They say
    how much of a value is the luck of the validation draw (a 54-row validation set moves
    accuracy by 0.019 per row), which an exact value otherwise hides behind an error of 0."""
    folds = np.array([utility.fold_cache[mask] for mask in range(1 << g)])
    per_fold = shapley_of_table(folds, g)  # (g, J)
    j = per_fold.shape[1]
    spread = per_fold - per_fold.mean(axis=1, keepdims=True)
    return np.sqrt((j - 1) / j * (spread**2).sum(axis=1))


def exact_shapley(utility: Utility, players: Sequence[str]) -> ValuationResult:
    """All 2^G coalitions; φ_i = Σ_S |S|!(G-|S|-1)!/G! (U(S∪i) - U(S)). With a
    `DatanetUtility` built with `jackknife=True`, the standard errors are the validation
    jackknife's (`validation_std_errors`); otherwise 0."""
    g = len(players)
    values_of = every_utility(utility, g)
    phi = shapley_of_table(values_of, g)
    jackknifed = isinstance(utility, DatanetUtility) and bool(utility.kept)
    return ValuationResult(
        list(players),
        phi,
        validation_std_errors(utility, g) if jackknifed else np.zeros(g),  # type: ignore[arg-type]
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
    `tolerance`·|U(all) − U(∅)| of U(all) (Ghorbani & Zou 2019).

    The players left unscanned share what remains, U(all) − U(prefix), evenly: their
    marginals sum to exactly that, and spread evenly is the best guess for each when no
    one of them was evaluated. So every scan's marginals sum to U(all) − U(∅) whatever
    the tolerance, where taking the rest as 0 would lose up to `tolerance` of the total.
    """
    marginal = np.zeros(len(permutation))
    mask, previous, evaluated = 0, u_empty, 0
    scale = abs(u_all - u_empty)
    for player in permutation:
        if tolerance > 0 and abs(u_all - previous) <= tolerance * scale:
            marginal[permutation[evaluated:]] = (u_all - previous) / (len(permutation) - evaluated)
            break
        mask |= 1 << int(player)
        current = utility(mask)
        evaluated += 1
        marginal[player] = current - previous
        previous = current
    return marginal, evaluated, evaluated  # (marginals, utility calls, players reached)


_WORKER_UTILITY: Utility | None = None  # a local worker process's own, set at its start
_BOUND = threading.local()  # a utility bound to this thread for one task (cluster workers)


def _init_worker(factory: Callable[[], Utility]) -> None:
    global _WORKER_UTILITY
    _WORKER_UTILITY = factory()


@contextmanager
def bound_utility(utility: Utility) -> Iterator[None]:
    """Make `utility` the one this thread's worker tasks use, for the duration: a cluster
    worker may serve several runs, so its utility goes with the task, not the process."""
    previous = getattr(_BOUND, "utility", None)
    _BOUND.utility = utility
    try:
        yield
    finally:
        _BOUND.utility = previous


def worker_utility() -> Utility:
    """The utility a worker task evaluates: bound to its thread (`bound_utility`), else the
    one its local worker process built at start."""
    utility = getattr(_BOUND, "utility", None)
    if utility is None:
        utility = _WORKER_UTILITY
    if utility is None:
        raise RuntimeError("no utility in this worker: not a pool from `worker_pool` or dask_pool")
    return utility


def process_pool(workers: int, utility_factory: Callable[[], Utility]) -> ProcessPoolExecutor:
    """`workers` local processes that each build their own utility once, at start."""
    return ProcessPoolExecutor(  # spawn: LightGBM's OpenMP state must not be forked
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(utility_factory,),
    )


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
    return process_pool(workers, utility_factory)


@contextmanager
def evaluation_pool(
    pool: Executor | None, workers: int, utility_factory: Callable[[], Utility] | None
) -> Iterator[Executor | None]:
    """The caller's executor as it is (the caller shuts it down), or else a local
    `worker_pool`, shut down here with the evaluations still queued cancelled.

    Any `concurrent.futures.Executor` whose tasks find their utility with
    `worker_utility` will do: the estimators only submit, map and read futures in the
    order they drew the work, so what runs the tasks cannot change the results."""
    if pool is not None:
        yield pool
        return
    local = worker_pool(workers, utility_factory)
    try:
        yield local
    finally:
        if local is not None:
            local.shutdown(cancel_futures=True)


def _evaluate_in_worker(mask: int) -> tuple[float, int]:
    """U(mask) in a worker, plus the model fits it cost there (counted in the result)."""
    utility = worker_utility()
    before = getattr(utility, "fits", 0)
    value = utility(mask)
    return value, getattr(utility, "fits", 0) - before


def evaluate_many(
    utility: Utility, masks: Sequence[int], pool: Executor | None
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
    utility = worker_utility()
    before = getattr(utility, "fits", 0)
    marginal, calls, reached = _scan(utility, *args)
    return marginal, calls, reached, getattr(utility, "fits", 0) - before


def scanned_batches(
    utility: Utility,
    pool: Executor | None,
    draw_batch: Callable[[], list[tuple]],
    lookahead: int,
) -> Iterator[tuple[list[tuple], list[tuple]]]:
    """(scan jobs, their outcomes) batch after batch, in the order drawn.

    With a pool, the scans of the next batches already run while this one is used (up to
    `lookahead` scans in flight): truncated scans differ in length, and waiting for the
    longest of each batch left a worker idle about a third of the time. Batches are drawn
    and returned in the same order with or without a pool, so results do not depend on
    it. Closing the generator (the caller stops) cancels the scans still queued; those
    already running finish and are discarded.
    """
    if pool is None:
        while True:
            jobs = draw_batch()
            yield jobs, [_scan(utility, *job) for job in jobs]
    pending: deque[tuple[list[tuple], list[Future]]] = deque()
    try:
        while True:
            while not pending or sum(len(jobs) for jobs, _ in pending) < lookahead:
                jobs = draw_batch()
                pending.append((jobs, [pool.submit(_scan_in_worker, job) for job in jobs]))
            jobs, futures = pending.popleft()
            yield jobs, [future.result() for future in futures]
    finally:
        for _, futures in pending:
            for future in futures:
                future.cancel()


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
    pool: Executor | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    exact_first: bool = False,
    position_model: bool = True,
) -> ValuationResult:
    """Antithetic truncated Monte Carlo permutation sampling.

    Each sample is a pair (π, reversed π); a player's estimate averages, over pairs, the
    mean of its two marginal contributions, and its standard error is the standard
    deviation of those pair means over √pairs. With `workers > 1`, permutations are scanned
    in worker processes that each build their own utility with `utility_factory`; or in
    `pool`, an executor whose workers hold the utility already (`evaluation_pool`; then
    `workers` only sizes how many scans run ahead).

    `exact_first` evaluates every player alone first (G utilities, small fits) and uses the
    first position as a control variate with a known mean (`first_position_control`): at
    large G a player's rare turn at the head of a permutation is by far its largest
    marginal, and removing that spike shrinks the standard errors several fold. Values stay
    unbiased; their sum equals U(N) − U(∅) in expectation rather than per permutation.
    With the alone values known, `position_model` (on by default) corrects every later
    position too (`PositionModel`): each marginal is used minus a model of it, from the
    position, the player's alone value and its prefix's alone values, plus the model's
    exact mean. The model is fitted on earlier batches only, so it is independent of the
    marginals it corrects and the values stay exactly unbiased (a cross-fitted control
    variate). The first batches, scanned before the model can be fitted, are held out of
    the estimate until the batches after them outnumber them HOLD_RELEASE times (or the
    run stops), and are then corrected with a model fitted on those later batches alone:
    uncorrected, their rare large marginals would stay in the estimate for good.
    """
    g = len(players)
    rng = np.random.default_rng(seed)
    u_all, u_empty = utility((1 << g) - 1), utility(0)
    evaluations = 2
    sums, squares = np.zeros(g), np.zeros(g)
    reached = np.zeros(g, dtype=np.int64)
    worker_fits = 0
    pairs = 0
    stack = ExitStack()  # closed last to first: queued scans cancelled, then a local pool
    pool = stack.enter_context(evaluation_pool(pool, workers, utility_factory))
    alone: np.ndarray | None = None
    model: PositionModel | None = None  # fitted on every batch so far
    after_hold: PositionModel | None = None  # fitted on the batches after the held ones
    held: list[tuple[list, list]] = []  # batches scanned before any slope could be fitted

    def pair_means(
        jobs: list, scanned: list, fitted: tuple[np.ndarray, np.ndarray] | None
    ) -> np.ndarray:
        """(pairs, G): each pair's mean marginal per player, with the controls applied."""
        rows = []
        for k in range(0, len(scanned), 2):
            halves = []
            for (permutation, *_), (marginal, *_) in zip(
                jobs[k : k + 2], scanned[k : k + 2], strict=True
            ):
                if alone is not None:
                    marginal = first_position_control(marginal, permutation, alone)
                if model is not None and fitted is not None:
                    marginal = marginal - model.correction(permutation, fitted)
                halves.append(marginal)
            rows.append((halves[0] + halves[1]) / 2)
        return np.array(rows)

    def include(values: np.ndarray) -> None:
        nonlocal sums, squares, pairs
        sums = sums + values.sum(axis=0)
        squares = squares + (values**2).sum(axis=0)
        pairs += len(values)

    def assess() -> tuple[np.ndarray, np.ndarray, bool, bool]:
        """(values, standard errors, stop, converged) of the pairs in the estimate."""
        mean, variance = running_mean_var(sums, squares, np.full(g, pairs))
        std_errors = np.sqrt(variance / pairs) if pairs else np.full(g, np.inf)
        stop, claimed = stopping.done(std_errors, pairs, evaluations)
        # truncation leaves late players unevaluated: no claim until each was reached,
        # nor while batches are held out of the estimate
        converged = claimed and int(reached.min()) >= stopping.min_pairs and not held
        # stop when converged, or when the rule stops for another reason (budget, time)
        return mean, std_errors, converged or (stop and not claimed), converged

    def release_held() -> None:
        """Held batches join the estimate, corrected with the model fitted on later batches
        only (independent of them), or uncorrected if it cannot be fitted yet."""
        assert after_hold is not None
        fitted = after_hold.fit() if after_hold.ready else None
        for jobs, scanned in held:
            include(pair_means(jobs, scanned, fitted))
        held.clear()

    try:
        if exact_first:
            singles, worker_fits = evaluate_many(utility, [1 << i for i in range(g)], pool)
            alone = np.asarray(singles) - u_empty
            if position_model:
                model, after_hold = PositionModel(alone), PositionModel(alone)
            evaluations += g

        def draw_batch() -> list[tuple]:
            perms = [rng.permutation(g) for _ in range(pairs_per_batch)]
            return [(p, u_all, u_empty, truncation) for q in perms for p in (q, q[::-1].copy())]

        batches = scanned_batches(utility, pool, draw_batch, lookahead=2 * workers)
        for jobs, scanned in stack.enter_context(closing(batches)):
            for job, outcome in zip(jobs, scanned, strict=True):
                reached[job[0][: outcome[2]]] += 1  # players actually evaluated
                evaluations += outcome[1]
                worker_fits += outcome[3] if len(outcome) > 3 else 0
            if model is not None and not model.ready:
                held.append((jobs, scanned))  # no slope yet: corrected later, from later data
            else:  # a model of earlier batches only: independent of this batch's marginals
                fitted = model.fit() if model is not None else None
                include(pair_means(jobs, scanned, fitted))
                if held:
                    assert after_hold is not None
                    after_hold.add_scans(jobs, scanned)
            if model is not None:
                model.add_scans(jobs, scanned)
            if (
                held
                and after_hold is not None
                and after_hold.count_per_position
                >= (HOLD_RELEASE * sum(len(jobs) for jobs, _ in held))
            ):
                release_held()
            mean, std_errors, stop, converged = assess()
            if stop and held:  # stopping: the held batches count, then look again
                release_held()
                mean, std_errors, stop, converged = assess()
            if progress and pairs:
                progress(pairs, evaluations, float(np.max(stopping.z * std_errors)))
            if stop:
                break
    finally:
        stack.close()
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
            "position_model": bool(exact_first and position_model),
        },
    )


def prefix_control_values(permutation: np.ndarray, alone: np.ndarray) -> np.ndarray:
    """Per player i at position k of π: cᵢ = Σ_{j before i} aⱼ − k·(A − aᵢ)/(G − 1), with
    aⱼ = U({j}) − U(∅) and A = Σ aⱼ.

    Over uniform permutations the k players before i are a uniform k-subset of the others,
    so cᵢ has mean 0 at every position k (0 itself at the first and last positions)."""
    g = len(alone)
    ordered = alone[permutation]
    before = np.cumsum(ordered) - ordered
    control = np.empty(g)
    control[permutation] = before - np.arange(g) * (alone.sum() - ordered) / max(g - 1, 1)
    control[permutation[0]] = 0.0  # exactly: nothing before the head
    return control


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


class PositionModel:
    """Cross-fitted model, per position k ≥ 1, of the marginal of the player i found there:

        m(i, k, π) = β_k·fᵢ + γ_k·fᵢ·cᵢ(π),   fᵢ = (1, aᵢ), cᵢ from `prefix_control_values`.

    The first term is what contributors like i (by their alone value) add at position k:
    with a steep learning curve, a rare turn near the head of a permutation is a large
    marginal, and whether a player got one is most of its variance. The second is how a
    strong or harmful prefix moves that (a contributor right after a label flipper gains
    far more). A marginal is used as Δ − m(i, k, π) + (1/G)·Σ_k β_k·fᵢ: over uniform
    permutations the subtracted model has exactly that mean (i is at each position with
    probability 1/G, and c has mean 0 at every position), so the estimate stays unbiased
    for any fitted β, γ that do not depend on the marginals they correct.

    Both are fitted as sample cross moments with the marginals seen at position k over the
    exact second moments of the regressors there (each player is equally likely at k; the
    controls' moments are `prefix_control_moments`), not the sample's: a few samples that
    happen to hold no flipper, or prefixes that barely differ, cannot make a fit wild or
    extrapolate it. Position 0 is left to `first_position_control`, which knows its
    marginal exactly."""

    def __init__(self, alone: np.ndarray) -> None:
        g = len(alone)
        self.alone = alone
        self.features = np.column_stack([np.ones(g), alone])
        m = self.features.shape[1]
        self.count, self.sum_d = np.zeros(g), np.zeros(g)
        self.sum_x, self.sum_xd = np.zeros((g, m)), np.zeros((g, m))  # prefix block
        self.sum_fd = np.zeros((g, m))  # mean block
        # exact second moments: of f over the player at a position (each equally likely),
        # and of the prefix controls (singular when all aᵢ are equal: pseudo-inverses)
        self.feature_inverse = np.linalg.pinv(self.features.T @ self.features / g, rcond=1e-10)
        moments = prefix_control_moments(alone, self.features)
        self.inverse = np.linalg.pinv(moments, rcond=1e-10)

    @property
    def count_per_position(self) -> int:
        return int(self.count[0])

    @property
    def ready(self) -> bool:
        """Whether the model can be fitted (more than MIN_FIT marginals at each position)."""
        return self.count_per_position > MIN_FIT

    def controls(self, permutation: np.ndarray) -> np.ndarray:
        """(position, control) matrix of one permutation: cᵢ·fᵢ of the player there."""
        c = prefix_control_values(permutation, self.alone)[permutation]
        return c[:, None] * self.features[permutation]

    def add(self, permutation: np.ndarray, marginal: np.ndarray) -> None:
        x, d, f = self.controls(permutation), marginal[permutation], self.features[permutation]
        self.count += 1
        self.sum_d += d
        self.sum_x += x
        self.sum_xd += x * d[:, None]
        self.sum_fd += f * d[:, None]

    def add_scans(self, jobs: Sequence[tuple], scanned: Sequence[tuple]) -> None:
        """`add` every scan of a batch (scan jobs and their outcomes, as `_scan` takes and
        returns them)."""
        for (permutation, *_), (marginal, *_) in zip(jobs, scanned, strict=True):
            self.add(permutation, marginal)

    def fit(self) -> tuple[np.ndarray, np.ndarray]:
        """(β, γ), each (position, feature); zero at position 0 (only once `ready`)."""
        n = np.maximum(self.count, 1)[:, None]
        covariance = (self.sum_xd - self.sum_x * self.sum_d[:, None] / n) / n
        gamma = np.einsum("kij,kj->ki", self.inverse, covariance)
        beta = self.sum_fd / n @ self.feature_inverse.T
        beta[0] = gamma[0] = 0.0
        return beta, gamma

    def correction(
        self, permutation: np.ndarray, fitted: tuple[np.ndarray, np.ndarray]
    ) -> np.ndarray:
        """Per player: m(i, k, π) − (1/G)·Σ_k β_k·fᵢ, to subtract from its marginal."""
        beta, gamma = fitted
        f = self.features[permutation]
        model = (beta * f).sum(axis=1) + (self.controls(permutation) * gamma).sum(axis=1)
        out = np.empty(len(permutation))
        out[permutation] = model
        return out - self.features @ beta.sum(axis=0) / len(permutation)


def prefix_control_moments(alone: np.ndarray, features: np.ndarray) -> np.ndarray:
    """E[xₘ·xₘ'] of the controls cᵢ·fₘ(i) at each position k, averaged over the player
    there: k·(G−1−k)/(G−2)·mean over i of fₘ(i)·fₘ'(i)·σᵢ², where σᵢ² is the population
    variance of the other players' alone values (a k-subset drawn without replacement)."""
    g, m = features.shape
    if g < 3:
        return np.zeros((g, m, m))
    others_mean = (alone.sum() - alone) / (g - 1)
    others_var = np.maximum(((alone**2).sum() - alone**2) / (g - 1) - others_mean**2, 0.0)
    per_player = features[:, :, None] * features[:, None, :] * others_var[:, None, None]
    k = np.arange(g)
    return (k * (g - 1 - k) / (g - 2))[:, None, None] * per_player.mean(axis=0)
