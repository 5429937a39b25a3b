"""Who made the model good: contributor values, point values and per-inference shares.

Framework-free glue between the Datanet tables and the estimators in `assets.valuation`
and `assets.knn_shapley` (docs/attribution.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from assets.allocation import split_integer
from assets.banzhaf import exact_banzhaf, msr_banzhaf
from assets.datanets import DatanetSpec
from assets.knn_shapley import knn_shapley, standardize
from assets.svarm import fits_to_converge, svarm_shapley
from assets.training import feature_matrix, label_vector
from assets.valuation import (
    DASK_SCHEDULER_ENV,
    DatanetUtility,
    StoppingRule,
    Utility,
    ValuationResult,
    evaluation_pool,
    exact_shapley,
    permutation_shapley,
)

VALUES_SCHEMA = {
    "datanet": pl.String,
    "contributor": pl.String,
    "value": pl.Float64,
    "std_error": pl.Float64,
    "evaluations": pl.Int64,
    "method": pl.String,
    "rank": pl.Int64,
    "training_root": pl.String,
    "converged": pl.Boolean,
}
POINT_VALUES_SCHEMA = {
    "datanet": pl.String,
    "row_hash": pl.String,
    "contributor": pl.String,
    "value": pl.Float64,
    "low_value_flag": pl.Boolean,
}
SHARES_PPB = 1_000_000_000  # an inference's contributor shares, in parts per billion


def build_utility(
    spec: DatanetSpec,
    rows: pl.DataFrame,
    validation: pl.DataFrame,
    players: list[str],
    jackknife: bool = False,
) -> DatanetUtility:
    index = {p: i for i, p in enumerate(players)}
    player_of_row = rows["contributor"].replace_strict(index, return_dtype=pl.Int64).to_numpy()
    return DatanetUtility(
        spec,
        feature_matrix(spec, rows),
        label_vector(spec, rows),
        player_of_row,
        feature_matrix(spec, validation),
        label_vector(spec, validation),
        spec.valuation.num_boost_round,
        jackknife,
    )


def scheduler_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The Dask scheduler valuation fits go to (`OPENLEDGER_DASK_SCHEDULER`), or None for
    local processes: the one setting that moves them, read here and passed down."""
    address = (os.environ if environ is None else environ).get(DASK_SCHEDULER_ENV, "")
    return address.strip() or None


@contextmanager
def valuation_pool(
    workers: int, factory: Callable[[], Utility], scheduler: str | None
) -> Iterator[tuple[Executor | None, int]]:
    """(executor, fits at once) for one run: the Dask cluster at `scheduler`, else
    `workers` local processes (no executor for one: fits run in this process)."""
    if scheduler is None:
        with evaluation_pool(None, workers, factory) as pool:
            yield pool, workers
        return
    from assets.dask_pool import dask_pool  # imports `distributed` (a second) only if used

    with dask_pool(scheduler, factory) as cluster:
        yield cluster, cluster.max_workers


def value_contributors(
    spec: DatanetSpec,
    rows: pl.DataFrame,
    validation: pl.DataFrame,
    progress: Callable[[int, int, float], None] | None = None,
) -> ValuationResult:
    """Shapley value of each contributor of the training rows.

    Exact when few enough; otherwise the policy's Monte Carlo method (`sampled_values`),
    its fits on local processes or on the Dask cluster `scheduler_address` names.
    Method "banzhaf" gives Banzhaf values instead (exact, then MSR sampling): not Shapley
    values.
    """
    players = sorted(set(rows["contributor"]))
    policy = spec.valuation
    # exact Shapley values get the validation jackknife's standard errors (2^G coalitions)
    exact = len(players) <= policy.exact_max_players
    jackknife = exact and policy.method != "banzhaf"
    utility = build_utility(spec, rows, validation, players, jackknife=jackknife)
    if exact:
        result = (exact_banzhaf if policy.method == "banzhaf" else exact_shapley)(utility, players)
    else:
        factory = partial(build_utility, spec, rows, validation, players)
        with valuation_pool(policy.workers, factory, scheduler_address()) as (pool, workers):
            sampling = {"seed": policy.seed, "workers": workers, "pool": pool, "progress": progress}
            result = sampled_values(spec, utility, players, sampling)
    result.notes["fits"] = utility.fits + result.notes.get("worker_fits", 0)
    return result


def sampled_values(
    spec: DatanetSpec, utility: Utility, players: list[str], sampling: dict[str, Any]
) -> ValuationResult:
    """The policy's Monte Carlo estimate; `sampling` (seed, workers, pool, progress) goes
    to every estimator alike.

    Stratified SVARM needs its start (∅, all, every contributor alone) and then enough
    sets of every size before it can converge (`fits_to_converge`, ~2G ln G); when the
    budget is smaller, permutations are used instead (their truncated scans train on small
    coalitions only, and at 1,000 contributors they shrink the errors where SVARM's stay
    flat), and `result.method` says so.
    """
    policy = spec.valuation
    rule = StoppingRule(policy.half_width, policy.z, policy.max_evaluations)
    if policy.method == "banzhaf":
        return msr_banzhaf(utility, players, rule, sets_per_batch=policy.sets_per_batch, **sampling)
    if policy.method == "svarm" and fits_to_converge(len(players)) <= policy.max_evaluations:
        return svarm_shapley(
            utility, players, rule, sets_per_batch=policy.sets_per_batch, **sampling
        )
    return permutation_shapley(
        utility,
        players,
        rule,
        truncation=policy.truncation,
        pairs_per_batch=policy.pairs_per_batch,
        exact_first=policy.exact_first,
        **sampling,
    )


def values_table(
    spec: DatanetSpec, result: ValuationResult, everyone: list[str], training_root: str
) -> pl.DataFrame:
    """One row per contributor; those without training rows are valued 0 exactly."""
    known = dict(zip(result.players, range(len(result.players)), strict=True))
    rows = []
    for contributor in sorted(set(everyone) | set(result.players)):
        i = known.get(contributor)
        rows.append(
            {
                "datanet": spec.name,
                "contributor": contributor,
                "value": float(result.values[i]) if i is not None else 0.0,
                "std_error": float(result.std_errors[i]) if i is not None else 0.0,
                "evaluations": int(result.counts[i]) if i is not None else 0,
                "method": result.method if i is not None else "no_training_rows",
                "rank": 0,
                "training_root": training_root,
                "converged": result.converged if i is not None else True,
            }
        )
    frame = pl.DataFrame(rows, schema=VALUES_SCHEMA)
    return frame.with_columns(
        pl.col("value").rank("ordinal", descending=True).cast(pl.Int64).alias("rank")
    )


def point_values(
    spec: DatanetSpec, rows: pl.DataFrame, validation: pl.DataFrame, low_quantile: float = 0.05
) -> pl.DataFrame:
    """Exact KNN-Shapley value of every training row on the validation set."""
    if rows.height == 0:
        return pl.DataFrame(schema=POINT_VALUES_SCHEMA)
    x, xv = standardize(feature_matrix(spec, rows), feature_matrix(spec, validation))
    yv_labels = label_vector(spec, validation)
    if spec.task == "regression":  # KNN-Shapley needs classes: bucket the target in deciles
        edges = np.quantile(label_vector(spec, rows), np.linspace(0, 1, 11)[1:-1])
        y, yv = np.digitize(label_vector(spec, rows), edges), np.digitize(yv_labels, edges)
    else:
        y, yv = label_vector(spec, rows), yv_labels
    values = knn_shapley(x, y, xv, yv, k=spec.valuation.knn_k)
    threshold = min(float(np.quantile(values, low_quantile)), 0.0)
    return (
        rows.select("datanet", "row_hash", "contributor")
        .with_columns(
            pl.Series("value", values, dtype=pl.Float64),
            pl.Series("low_value_flag", (values <= threshold) | (values < 0), dtype=pl.Boolean),
        )
        .cast(POINT_VALUES_SCHEMA)
    )  # type: ignore[arg-type]


def inference_shares(
    spec: DatanetSpec, rows: pl.DataFrame, queries: pl.DataFrame, predicted: np.ndarray
) -> list[dict[str, int]]:
    """Per query: contributor → share in parts per billion, summing to exactly 1e9.

    KNN-Shapley with the query as the only test point and the model's prediction as its
    label; values are summed per contributor, negative parts clipped to 0. If nothing is
    positive (no neighbour agrees with the prediction), the contributors of the K nearest
    rows share equally. Splits use the largest-remainder rule, ties by contributor id.
    """
    x, xq = standardize(feature_matrix(spec, rows), feature_matrix(spec, queries))
    y = label_vector(spec, rows)
    if spec.task == "regression":  # no class to match: the K nearest rows share equally
        predicted = np.zeros(len(xq), dtype=np.int64)
        y = np.zeros(len(y), dtype=np.int64)
    contributors = rows["contributor"].to_numpy()
    names = sorted(set(contributors))
    k = spec.valuation.knn_k
    shares = []
    for i in range(xq.shape[0]):
        values = knn_shapley(x, y, xq[i : i + 1], np.array([predicted[i]]), k=k)
        per = {n: 0.0 for n in names}
        for contributor, value in zip(contributors, values, strict=True):
            per[contributor] += value
        weights = [max(per[n], 0.0) for n in names]
        if sum(weights) <= 0:
            nearest = np.argsort(np.sum((x - xq[i]) ** 2, axis=1), kind="stable")[:k]
            near = set(contributors[nearest])
            weights = [1.0 if n in near else 0.0 for n in names]
        parts = split_integer(SHARES_PPB, weights, names)
        shares.append({n: p for n, p in zip(names, parts, strict=True) if p})
    return shares
