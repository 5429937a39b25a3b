"""Data Banzhaf values with maximum sample reuse (MSR): a second, noise-robust semivalue.

Wang and Jia, "Data Banzhaf: A Robust Data Valuation Framework for Machine Learning"
(AISTATS 2023). The Banzhaf value weighs every coalition equally,

    βᵢ = E[U(S ∪ {i}) − U(S)]  over S uniform among the subsets of the others,

and, with S drawn uniformly among all 2^G subsets (each player in with probability ½),
equals E[U(S) | i ∈ S] − E[U(S) | i ∉ S]. So each sampled coalition updates every player:
members through the first mean, the others through the second (maximum sample reuse). The
paper shows this ranking is the most stable of all semivalues when utilities are noisy
(e.g. a model trained with a random seed); it is not efficient (values need not add up to
U(N) − U(∅)), so it ranks and audits contributors; payouts stay on Shapley values.

Determinism: every set comes from one seeded generator in the main process, utilities are
evaluated in fixed batches (in worker processes or on a Dask cluster,
`valuation.evaluation_pool`), and the stopping rule is checked only between batches:
results depend on the seed and the batch size, not on the workers or where they run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextlib import ExitStack

import numpy as np

from assets.valuation import (
    StoppingRule,
    Utility,
    ValuationResult,
    evaluate_many,
    evaluation_pool,
    every_utility,
    mask_of_flags,
    member_flags,
    running_mean_var,
)


def exact_banzhaf(utility: Utility, players: Sequence[str]) -> ValuationResult:
    """All 2^G coalitions: βᵢ = 2^{1−G} Σ_{S ∌ i} (U(S ∪ {i}) − U(S))."""
    g = len(players)
    values_of = every_utility(utility, g)
    masks = np.arange(1 << g)
    beta = np.array(
        [
            float(np.mean(values_of[without | (1 << i)] - values_of[without]))
            for i in range(g)
            for without in [masks[(masks >> i & 1) == 0]]
        ]
    )
    return ValuationResult(
        list(players),
        beta,
        np.zeros(g),
        np.full(g, 1 << max(g - 1, 0), dtype=np.int64),
        "banzhaf_exact",
        1 << g,
        True,
        float(values_of[-1] - values_of[0]),
    )


def msr_banzhaf(
    utility: Utility,
    players: Sequence[str],
    stopping: StoppingRule,
    *,
    seed: int = 0,
    sets_per_batch: int = 16,
    workers: int = 1,
    utility_factory: Callable[[], Utility] | None = None,
    pool: Executor | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> ValuationResult:
    """MSR Banzhaf: uniform random coalitions, each updating every player.

    A player's standard error is that of a difference of two independent means (sets with
    and without it). Stops between batches when every z·SE is within the half-width with at
    least `min_pairs` sets on each side of every player, or when the rule stops (budget of
    fits, deadline). `counts` holds, per player, the sets on its smaller side. Utilities are
    evaluated in `pool` when given, else in `workers` processes (`valuation.evaluation_pool`).
    """
    g = len(players)
    rng = np.random.default_rng(seed)
    total_in, square_in, count_in = np.zeros(g), np.zeros(g), np.zeros(g, dtype=np.int64)
    total_out, square_out, count_out = np.zeros(g), np.zeros(g), np.zeros(g, dtype=np.int64)
    calls, worker_fits = 0, 0
    stack = ExitStack()  # a local pool made here is shut down at the end
    pool = stack.enter_context(evaluation_pool(pool, workers, utility_factory))
    try:
        u_all, u_empty = utility((1 << g) - 1), utility(0)
        calls += 2
        # the budget counts distinct coalitions, whatever the workers' separate caches fit;
        # sets repeat, so sampling ends once every coalition has been seen
        seen = {0: u_empty, (1 << g) - 1: u_all}  # distinct coalitions and their utilities
        batch_size = min(sets_per_batch, stopping.max_evaluations - len(seen))
        estimate, std_errors, claimed = np.zeros(g), np.full(g, np.inf), False
        while batch_size > 0 and len(seen) < 1 << g:
            # each player in with probability ½: a uniform subset of the players
            batch = [mask_of_flags(rng.integers(0, 2, size=g) == 1) for _ in range(batch_size)]
            values, fits = evaluate_many(utility, batch, pool)
            worker_fits += fits
            calls += len(batch)
            seen.update(zip(batch, values, strict=True))
            for mask, value in zip(batch, values, strict=True):
                member = member_flags(mask, g)
                total_in[member] += value
                square_in[member] += value * value
                count_in[member] += 1
                total_out[~member] += value
                square_out[~member] += value * value
                count_out[~member] += 1
            mean_in, var_in = running_mean_var(total_in, square_in, count_in)
            mean_out, var_out = running_mean_var(total_out, square_out, count_out)
            estimate = mean_in - mean_out
            with np.errstate(divide="ignore", invalid="ignore"):
                std_errors = np.sqrt(
                    np.where(count_in > 0, var_in / np.maximum(count_in, 1), np.inf)
                    + np.where(count_out > 0, var_out / np.maximum(count_out, 1), np.inf)
                )
            least = int(np.minimum(count_in, count_out).min())
            stop, claimed = stopping.done(std_errors, least, len(seen))
            if progress:
                progress(least, calls, float(np.max(stopping.z * std_errors)))
            if claimed or stop:
                break
            # the last batch stops at the budget
            batch_size = min(sets_per_batch, stopping.max_evaluations - len(seen))
    finally:
        stack.close()
    if len(seen) == 1 << g:  # every coalition evaluated: the exact values, for free
        exact = exact_banzhaf(seen.__getitem__, players)
        estimate, std_errors, claimed = exact.values, exact.std_errors, True
    return ValuationResult(
        list(players),
        estimate,
        std_errors,
        np.minimum(count_in, count_out),
        "banzhaf_msr",
        calls,
        claimed,
        u_all - u_empty,
        {"worker_fits": worker_fits, "coalitions": len(seen), "efficient": 0.0},
    )
