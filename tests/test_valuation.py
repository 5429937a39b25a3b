"""Shapley estimators against known games, KNN-Shapley against brute force, and the
planted behaviours of the demo ranked as they should be."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from demo_pipeline import build_demo_lake, wine_utility_factory
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from assets.allocation import split_integer
from assets.attribution import SHARES_PPB, build_utility, value_contributors
from assets.banzhaf import exact_banzhaf, msr_banzhaf
from assets.demo_data import DEMO_DATANETS, demo_spec
from assets.knn_shapley import Groups, knn_shapley, nearest_first, squared_distances
from assets.svarm import fits_to_converge, size_distribution, start_size, svarm_shapley
from assets.training import bounded_metric
from assets.validation import validation_set
from assets.valuation import (
    StoppingRule,
    ValuationResult,
    best_constant_metric,
    exact_shapley,
    permutation_shapley,
    prefix_control_moments,
    prefix_control_values,
)
from ledger.lake import Lake

# --- games with known Shapley values ----------------------------------------------------------


def additive(weights: list[float], mask: int) -> float:
    return float(sum(w for i, w in enumerate(weights) if mask >> i & 1))


def symmetric(n: int, mask: int) -> float:
    return bin(mask).count("1") ** 2 / n**2


def table_game(values: np.ndarray, mask: int) -> float:
    return float(values[mask])


def brute_force_shapley(utility, n: int) -> np.ndarray:
    """The permutation definition, over all n! orders."""
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        mask = 0
        for player in order:
            phi[player] += utility(mask | 1 << player) - utility(mask)
            mask |= 1 << player
    return phi / math.factorial(n)


@settings(max_examples=examples(25), deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=1, max_size=8))
def test_exact_equals_the_weights_of_an_additive_game(weights: list[float]) -> None:
    result = exact_shapley(partial(additive, weights), [f"p{i}" for i in range(len(weights))])
    assert np.allclose(result.values, weights, atol=1e-12)
    assert result.efficiency_gap() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_exact_splits_a_symmetric_game_equally(n: int) -> None:
    result = exact_shapley(partial(symmetric, n), [f"p{i}" for i in range(n)])
    assert np.allclose(result.values, 1.0 / n)


@pytest.mark.parametrize("seed", range(5))
def test_exact_equals_the_permutation_definition_on_random_games(seed: int) -> None:
    n = 5
    values = np.random.default_rng(seed).normal(size=1 << n)
    game = partial(table_game, values)
    exact = exact_shapley(game, [str(i) for i in range(n)]).values
    assert np.allclose(exact, brute_force_shapley(game, n), atol=1e-12)


@pytest.mark.parametrize(
    ("exact_first", "position_model"), [(False, False), (True, False), (True, True)]
)
def test_monte_carlo_intervals_cover_the_exact_values_at_the_stated_rate(
    exact_first: bool, position_model: bool
) -> None:
    """Over 40 seeds and 6 players of a random game, z·SE intervals (z = 1.96) must cover
    the exact value about 95 % of the time; allow for the estimated SE: at least 85 %. The
    first-position and prefix control variates keep this, and the estimates unbiased."""
    n = 6
    values = np.random.default_rng(123).normal(size=1 << n)
    values[0] = 0.0
    game = partial(table_game, values)
    exact = exact_shapley(game, [str(i) for i in range(n)]).values
    rule = StoppingRule(half_width=0.15, z=1.96, max_evaluations=100_000, min_pairs=20)
    covered = trials = 0
    means = np.zeros(n)
    for seed in range(40):
        result = permutation_shapley(
            game, [str(i) for i in range(n)], rule, seed=seed, pairs_per_batch=4,
            exact_first=exact_first, position_model=position_model,
        )  # fmt: skip
        assert result.converged and result.notes["exact_first"] == exact_first
        assert result.notes["position_model"] == position_model
        assert np.all(1.96 * result.std_errors <= 0.15 + 1e-12)
        covered += int(np.sum(np.abs(result.values - exact) <= 1.96 * result.std_errors))
        trials += n
        means += result.values / 40
        if not exact_first:  # untruncated permutations are efficient exactly, order by order
            assert result.values.sum() == pytest.approx(values[-1] - values[0], abs=1e-9)
    assert covered / trials >= 0.85, covered / trials
    assert np.allclose(means, exact, atol=0.05)  # the average over seeds homes in


def test_monte_carlo_is_exact_on_a_symmetric_game_with_antithetic_pairs() -> None:
    n = 7
    result = permutation_shapley(
        partial(symmetric, n),
        [str(i) for i in range(n)],
        StoppingRule(half_width=1e-6, max_evaluations=10_000),
        seed=3,
    )
    assert result.converged and np.allclose(result.values, 1 / n)


def test_budget_stops_an_unconverged_run_and_says_so() -> None:
    values = np.random.default_rng(0).normal(size=1 << 8)
    result = permutation_shapley(
        partial(table_game, values),
        [str(i) for i in range(8)],
        StoppingRule(half_width=1e-6, max_evaluations=200),
        seed=0,
    )
    assert not result.converged
    assert result.utility_evaluations >= 200
    assert np.all(result.counts > 0)


@dataclass(frozen=True)
class StopAfterBatches(StoppingRule):
    """A rule that also stops for its own reason (like a wall-clock deadline)."""

    batches: list[int] = field(default_factory=lambda: [0])
    limit: int = 3

    def done(self, std_errors: np.ndarray, pairs: int, evaluations: int) -> tuple[bool, bool]:
        stop, converged = super().done(std_errors, pairs, evaluations)
        self.batches[0] += 1
        return stop or self.batches[0] >= self.limit, converged


@pytest.mark.parametrize("estimator", ["permutation", "svarm"])
def test_both_estimators_honour_a_stop_the_rule_asks_for(estimator: str) -> None:
    """A rule may stop unconverged for a reason of its own; the estimators must obey."""
    values = np.random.default_rng(1).normal(size=1 << 8)
    rule = StopAfterBatches(half_width=1e-9, max_evaluations=10**6)
    players = [str(i) for i in range(8)]
    if estimator == "permutation":
        result = permutation_shapley(
            partial(table_game, values), players, rule, seed=0, pairs_per_batch=1
        )
    else:
        result = svarm_shapley(partial(table_game, values), players, rule, seed=0, sets_per_batch=4)
    assert rule.batches[0] == 3 and not result.converged
    assert result.utility_evaluations < 100


def test_truncation_saves_evaluations_on_a_saturating_game() -> None:
    n = 10
    game = partial(lambda n, m: min(1.0, bin(m).count("1") / 3), n)
    rule = StoppingRule(half_width=1e-9, max_evaluations=400)
    full = permutation_shapley(game, [str(i) for i in range(n)], rule, seed=1)
    cut = permutation_shapley(game, [str(i) for i in range(n)], rule, seed=1, truncation=0.01)
    assert cut.notes["pairs"] > full.notes["pairs"]  # more permutations for the same budget


@settings(max_examples=examples(40), deadline=None)
@given(
    st.integers(2, 8),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.0, 0.01, 0.1, 0.3, 0.9]),
    st.integers(1, 3),
)
def test_truncated_values_still_sum_to_the_total(
    n: int, seed: int, truncation: float, batches: int
) -> None:
    """The unscanned tail of a permutation shares what is left of U(all) evenly, so values
    sum to U(all) − U(∅) exactly at any tolerance (taking the tail as 0 loses up to the
    tolerance of the total). A saturating game truncates early; a random one at random."""
    if seed % 2:
        game = partial(table_game, np.random.default_rng(seed).normal(size=1 << n))
    else:
        game = partial(lambda n, m: min(1.0, m.bit_count() / max(1, n // 3)), n)
    result = permutation_shapley(
        game,
        [str(i) for i in range(n)],
        StopAfterBatches(half_width=1e-9, max_evaluations=10**6, limit=batches),
        seed=seed,
        truncation=truncation,
        pairs_per_batch=2,
    )
    assert result.values.sum() == pytest.approx(game((1 << n) - 1) - game(0), abs=1e-12)
    assert result.efficiency_gap() == pytest.approx(0.0, abs=1e-12)


def concave_game(n: int, mask: int) -> float:
    """A steep learning curve: one player alone gets most of the total, as with real data
    (a few thousand rows already give most of the AUC); every fifth player hurts."""
    members = [i for i in range(n) if mask >> i & 1]
    good = sum(1.8 for i in members if i % 5 != 4)
    bad = sum(1.8 for i in members if i % 5 == 4)
    return 0.3 * (1 - math.exp(-good)) - 0.1 * (1 - math.exp(-bad)) * math.exp(-good)


def on_same_permutations(
    game, n: int, batches: int, seed: int, variants: list[dict]
) -> list[ValuationResult]:
    """One truncated run per variant (keyword arguments) over the same permutations: same
    seed, 4 pairs per batch, stopped after the same number of batches."""
    return [
        permutation_shapley(
            game,
            [str(i) for i in range(n)],
            StopAfterBatches(half_width=1e-9, max_evaluations=10**9, limit=batches),
            seed=seed,
            truncation=0.01,
            pairs_per_batch=4,
            **variant,
        )
        for variant in variants
    ]


def test_first_position_control_shrinks_the_errors_on_a_steep_learning_curve() -> None:
    """The same permutations (same seed and pairs) give much smaller standard errors once
    the head-of-order marginal, which is U({i}) − U(∅) exactly, stops varying."""
    n = 60
    plain, controlled = on_same_permutations(
        partial(concave_game, n), n, 25, 2, [{"exact_first": False}, {"exact_first": True}]
    )
    assert plain.notes["pairs"] == controlled.notes["pairs"] == 100
    assert np.median(controlled.std_errors) < 0.5 * np.median(plain.std_errors)
    assert controlled.utility_evaluations == plain.utility_evaluations + n


@settings(max_examples=examples(40), deadline=None)
@given(
    alone=st.lists(
        st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False), min_size=3, max_size=6
    )
)
def test_prefix_control_has_mean_zero_and_the_stated_moments_at_every_position(
    alone: list[float],
) -> None:
    """Over all G! orders, each player's control at each position averages to 0 (so the
    correction cannot bias a value), and the controls c·(1, aᵢ) have, averaged over
    players, the second moments the slopes divide by."""
    a = np.array(alone)
    g = len(a)
    features = np.column_stack([np.ones(g), a])
    by_position = np.zeros((g, g))  # [player, position]: Σc
    moments = np.zeros((g, 2, 2))  # per position: Σ x xᵀ over players and orders
    orders = list(itertools.permutations(range(g)))
    for order in orders:
        permutation = np.array(order)
        control = prefix_control_values(permutation, a)[permutation]
        by_position[permutation, np.arange(g)] += control
        x = control[:, None] * features[permutation]
        moments += x[:, :, None] * x[:, None, :]
    per_player_orders = len(orders) / g  # orders that put a given player at a given position
    assert np.allclose(by_position / per_player_orders, 0.0, atol=1e-12)
    assert np.allclose(moments / len(orders), prefix_control_moments(a, features), atol=1e-12)


def flipper_game(quality: np.ndarray, size: np.ndarray, mask: int) -> float:
    """A bounded score of the coalition's net label quality: label flippers (quality < 0)
    score below knowing nothing alone, and a contributor right after one gains far more
    than after an honest one."""
    members = (mask >> np.arange(len(quality))) & 1 == 1
    if not members.any():
        return 0.5
    net = float((quality * size)[members].sum())
    return 0.5 + 0.3 * math.tanh(net / math.sqrt(size[members].sum()))


def test_position_model_shrinks_the_errors_of_a_steep_game_with_flippers() -> None:
    """On the same permutations, modelling each position's marginal (from the player's and
    its prefix's alone values) shrinks the errors: the median by more than half, the
    largest by more than a third."""
    n = 40
    quality = np.where(np.arange(n) % 5 == 4, -0.6, 1.0)  # every fifth flips most labels
    first, modelled = on_same_permutations(
        partial(flipper_game, quality, np.ones(n)),
        n,
        40,
        4,
        [{"exact_first": True, "position_model": model} for model in (False, True)],
    )
    assert first.notes["pairs"] == modelled.notes["pairs"] == 160
    assert np.median(modelled.std_errors) < 0.5 * np.median(first.std_errors)
    assert np.max(modelled.std_errors) < 0.67 * np.max(first.std_errors)


def test_position_model_intervals_cover_the_exact_values_of_a_flipper_game() -> None:
    """12 contributors of different sizes, a quarter of them flippers: over 60 seeds of 30
    pairs, the modelled estimates centre on the exact values (mean z-score near 0) and
    their 95 % intervals cover them at least 85 % of the time."""
    n = 12
    quality = np.where(np.arange(n) % 4 == 3, -0.6, 1.0)
    size = np.random.default_rng(0).integers(1, 4, n).astype(float)
    game = partial(flipper_game, quality, size)
    players = [str(i) for i in range(n)]
    exact = exact_shapley(game, players).values
    rule = StoppingRule(half_width=1e-9, max_evaluations=2 + n + 30 * 2 * n)
    scores = []
    for seed in range(60):
        result = permutation_shapley(
            game, players, rule, seed=seed, pairs_per_batch=2, exact_first=True
        )
        assert result.notes["pairs"] == 30 and result.notes["position_model"]
        scores.append((result.values - exact) / result.std_errors)
    z = np.array(scores)
    assert np.mean(np.abs(z) <= 1.96) >= 0.85, np.mean(np.abs(z) <= 1.96)
    assert abs(float(z.mean())) < 0.15, z.mean()


# --- Stratified SVARM ---------------------------------------------------------------------------


def random_game(n: int, seed: int) -> tuple[partial, np.ndarray]:
    values = np.random.default_rng(seed).normal(size=1 << n)
    values[0] = 0.0
    game = partial(table_game, values)
    return game, exact_shapley(game, [str(i) for i in range(n)]).values


@pytest.mark.parametrize("n", range(1, 8))
@pytest.mark.parametrize(("start", "control"), [("small", True), ("full", False)])
def test_svarm_is_exact_once_every_coalition_is_evaluated(n: int, start, control) -> None:
    game, exact = random_game(n, seed=n)
    rule = StoppingRule(1e-9, 10**6)
    players = [str(i) for i in range(n)]
    result = svarm_shapley(game, players, rule, seed=0, start=start, control=control)
    assert result.converged and result.notes["exact"] == 1.0
    assert result.utility_evaluations == 1 << n  # each coalition once: never drawn twice
    assert np.allclose(result.values, exact, atol=1e-12)
    assert np.allclose(result.std_errors, 0.0, atol=1e-12)  # finite-population correction


def test_svarm_size_distribution_is_the_papers() -> None:
    p = size_distribution(10)  # n even: H = 1 + 1/2 + 1/3 + 1/4
    nl, h = 10 * math.log(10), 25 / 12
    assert p[2] == pytest.approx((nl - 1) / (2 * 2 * nl * (h - 1)))
    assert p[5] == pytest.approx(1 / nl) and p[3] == pytest.approx(p[7])
    p = size_distribution(9)  # n odd: H = 1 + 1/2 + 1/3 + 1/4
    assert p[3] == pytest.approx(1 / (2 * 3 * (h - 1))) and p[6] == pytest.approx(p[3])
    for n in (4, 5, 6, 11, 100):
        assert sum(size_distribution(n).values()) == pytest.approx(1.0)
        assert sorted(size_distribution(n)) == list(range(2, n - 1))


def test_svarm_splits_a_symmetric_game_equally_with_zero_error() -> None:
    """Every set of one size has the same value, so each within-size contrast is 0."""
    n = 8
    result = svarm_shapley(partial(symmetric, n), [str(i) for i in range(n)], StoppingRule())
    assert np.allclose(result.values, 1 / n) and np.allclose(result.std_errors, 0.0)
    assert result.converged and result.utility_evaluations < 1 << n


@pytest.mark.parametrize("game_kind", ["random", "additive"])
def test_svarm_intervals_cover_the_exact_values_at_the_stated_rate(game_kind: str) -> None:
    """Over 40 seeds and 8 players, z·SE intervals (z = 1.96) must cover the exact value
    about 95 % of the time; allow for the estimated SE: at least 85 %. The values add up
    to U(N) − U(∅) exactly (per-size contrasts are centred)."""
    n = 8
    if game_kind == "random":
        game, exact = random_game(n, seed=123)
    else:
        weights = list(np.random.default_rng(7).normal(size=n))
        game, exact = partial(additive, weights), np.array(weights)
    rule = StoppingRule(half_width=1e-9, max_evaluations=120, min_pairs=10**9)
    covered = trials = 0
    for seed in range(40):
        result = svarm_shapley(game, [str(i) for i in range(n)], rule, seed=seed)
        assert not result.converged and result.utility_evaluations >= 120
        covered += int(np.sum(np.abs(result.values - exact) <= 1.96 * result.std_errors))
        trials += n
        assert result.values.sum() == pytest.approx(game((1 << n) - 1) - game(0), abs=1e-9)
    assert covered / trials >= 0.85, covered / trials


def test_svarm_control_variate_makes_additive_games_exact_after_a_few_sets() -> None:
    """X(S) = Σ_{j∈S} (U({j}) − U(∅)) is U(S) − U(∅) itself: zero residuals, exact values."""
    n = 10
    weights = list(np.random.default_rng(3).normal(size=n))
    game, players = partial(additive, weights), [str(i) for i in range(n)]
    rule = StoppingRule(half_width=1e-9, max_evaluations=start_size(n) + 3 * (n - 2))
    for seed in range(3):
        result = svarm_shapley(game, players, rule, seed=seed)
        assert np.allclose(result.values, weights, atol=1e-9)
        assert np.all(np.isfinite(result.std_errors))
    plain = svarm_shapley(game, players, rule, seed=0, control=False)
    assert np.max(np.abs(plain.values - weights)) > 1e-3  # without it, sampling error


def saturating_game(n: int, bad: set[int], mask: int) -> float:
    """Like the benchmark's Datanet: a few players suffice, flippers (`bad`) pull down."""
    good = sum(1 for i in range(n) if mask >> i & 1 and i not in bad)
    flipped = sum(1 for i in bad if mask >> i & 1)
    if good + flipped == 0:
        return 0.5
    return float(0.5 + 0.3 * np.tanh(good) * (good - 1.5 * flipped) / (good + flipped))


def test_svarm_control_variate_lowers_the_error_at_small_budgets() -> None:
    n = 10
    game = partial(saturating_game, n, {4, 9})
    players = [str(i) for i in range(n)]
    exact = exact_shapley(game, players).values
    rule = StoppingRule(half_width=1e-9, max_evaluations=40)

    def rmse(**options) -> float:
        runs = [svarm_shapley(game, players, rule, seed=s, **options) for s in range(8)]
        return float(np.mean([np.sqrt(np.mean((r.values - exact) ** 2)) for r in runs]))

    with_cv, without = rmse(), rmse(control=False)
    assert with_cv < 0.5 * without, (with_cv, without)
    assert with_cv < rmse(start="full", control=False)


def test_svarm_small_start_gives_values_from_the_singletons_alone() -> None:
    """Budget = the start (∅, N, singletons): no set sampled, values still sum exactly."""
    n = 9
    game, _ = random_game(n, seed=2)
    rule = StoppingRule(half_width=1e-9, max_evaluations=start_size(n))
    result = svarm_shapley(game, [str(i) for i in range(n)], rule)
    assert result.utility_evaluations == n + 2 and result.notes["sets_sampled"] == 0
    assert not result.converged and np.all(np.isfinite(result.std_errors))
    assert result.values.sum() == pytest.approx(game((1 << n) - 1) - game(0), abs=1e-12)


def test_svarm_error_falls_with_the_budget_and_the_stopping_rule_holds() -> None:
    n = 8
    game, exact = random_game(n, seed=5)
    players = [str(i) for i in range(n)]

    def rmse(budget: int) -> float:
        rule = StoppingRule(half_width=1e-9, max_evaluations=budget)
        runs = [svarm_shapley(game, players, rule, seed=s, sets_per_batch=4) for s in range(10)]
        return float(np.mean([np.sqrt(np.mean((r.values - exact) ** 2)) for r in runs]))

    assert rmse(200) < 0.7 * rmse(60)
    result = svarm_shapley(game, players, StoppingRule(half_width=0.2, max_evaluations=10**6))
    assert result.converged and result.notes["empty_strata"] == 0
    assert np.all(1.96 * result.std_errors <= 0.2)
    assert np.all(np.abs(result.values - exact) <= 3 * result.std_errors + 1e-12)


def test_svarm_handles_many_players() -> None:
    """C(n−1, s) beyond int64 (n = 80); values of an additive game sum exactly."""
    n = 80
    weights = list(np.random.default_rng(1).uniform(size=n))
    rule = StoppingRule(half_width=1e-9, max_evaluations=300)
    result = svarm_shapley(partial(additive, weights), [str(i) for i in range(n)], rule)
    assert result.utility_evaluations >= 300 and np.all(np.isfinite(result.std_errors))
    assert result.values.sum() == pytest.approx(sum(weights), abs=1e-9)
    assert np.mean(np.abs(result.values - weights)) < 0.5 * np.mean(weights)


def test_svarm_is_deterministic_for_a_seed_and_batching_only_moves_the_stop() -> None:
    n = 8
    game, _ = random_game(n, seed=9)
    players = [str(i) for i in range(n)]
    rule = StoppingRule(half_width=1e-9, max_evaluations=97)
    paper = {"paired": True, "warm_up": True, "allocation": "paper"}
    one = svarm_shapley(game, players, rule, seed=4, **paper)
    two = svarm_shapley(game, players, rule, seed=4, **paper)
    assert np.array_equal(one.values, two.values)
    assert np.array_equal(one.std_errors, two.std_errors)
    other = svarm_shapley(game, players, rule, seed=5, **paper)
    assert not np.array_equal(one.values, other.values)
    assert one.utility_evaluations == 97  # the last batch of 16 is cut to the budget
    single = svarm_shapley(game, players, rule, seed=4, sets_per_batch=1, **paper)
    assert np.array_equal(single.values, one.values)  # the paper's sizes: batching is neutral
    adaptive = [svarm_shapley(game, players, rule, seed=4).values for _ in range(2)]
    assert np.array_equal(*adaptive)  # the default (sizes chosen from finished batches)


# --- KNN-Shapley -------------------------------------------------------------------------------


def knn_utility(x, y, x_test, y_test, k, subset) -> float:
    if not subset:
        return 0.0
    total = 0.0
    for t in range(len(x_test)):
        d = np.sum((x[list(subset)] - x_test[t]) ** 2, axis=1)
        order = np.argsort(d, kind="stable")[:k]
        total += sum(y[list(subset)[i]] == y_test[t] for i in order) / k
    return total / len(x_test)


@pytest.mark.parametrize(("n", "k"), [(4, 1), (5, 2), (6, 3), (7, 10), (8, 4)])
def test_knn_shapley_equals_brute_force_enumeration(n: int, k: int) -> None:
    rng = np.random.default_rng(n * 10 + k)
    x, y = rng.normal(size=(n, 3)), rng.integers(0, 2, n)
    x_test, y_test = rng.normal(size=(3, 3)), rng.integers(0, 2, 3)
    utility = partial(knn_utility, x, y, x_test, y_test, k)
    brute = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                brute[i] += weight * (utility([*subset, i]) - utility(list(subset)))
    assert np.max(np.abs(knn_shapley(x, y, x_test, y_test, k) - brute)) < 1e-12


@settings(max_examples=examples(60), deadline=None)
@given(
    st.integers(1, 300),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(0, 2**32 - 1),
)
def test_grouped_identical_points_give_the_stable_order(
    n: int, dims: int, levels: int, seed: int
) -> None:
    """Sorting the distinct points and expanding each into its copies in index order is the
    stable sort of all points, also where distinct points tie (integer grids tie a lot)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, size=(n, dims)).astype(float)
    x_test = rng.integers(0, levels + 1, size=(9, dims)).astype(float)
    groups = Groups.of(x)
    expected = np.argsort(squared_distances(x_test, x), axis=1, kind="stable")
    assert np.array_equal(groups.nearest_first(squared_distances(x_test, groups.unique)), expected)


@pytest.mark.parametrize(("n", "k"), [(6, 2), (8, 3)])
def test_knn_shapley_with_identical_points_equals_brute_force(n: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    x = rng.normal(size=(n // 2, 2))[rng.integers(0, n // 2, n)]  # every point a few times
    y = rng.integers(0, 2, n)
    x_test, y_test = rng.normal(size=(3, 2)), rng.integers(0, 2, 3)
    # (ties among copies go by index, so the brute force lists every coalition in order)
    utility = partial(knn_utility, x, y, x_test, y_test, k)
    brute = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                brute[i] += weight * (utility(sorted([*subset, i])) - utility(list(subset)))
    assert np.max(np.abs(knn_shapley(x, y, x_test, y_test, k) - brute)) < 1e-12


def test_knn_shapley_does_not_depend_on_the_chunk_size() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 4)), rng.integers(0, 3, 300)
    xt, yt = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    reference = knn_shapley(x, y, xt, yt, k=5, chunk=50)
    for chunk in (1, 7, 64):
        assert np.allclose(knn_shapley(x, y, xt, yt, k=5, chunk=chunk), reference, atol=1e-15)


@settings(max_examples=examples(60), deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 200),
    st.integers(1, 5),
    st.integers(0, 2**32 - 1),
)
def test_nearest_first_breaks_ties_by_index(rows: int, n: int, levels: int, seed: int) -> None:
    """The fast sort gives exactly the stable order, however many distances tie."""
    distances = np.random.default_rng(seed).integers(0, levels, size=(rows, n)).astype(float)
    expected = np.argsort(distances, axis=1, kind="stable")
    assert np.array_equal(nearest_first(distances), expected)


@settings(max_examples=examples(30), deadline=None)
@given(st.integers(0, 10**12), st.lists(st.floats(0, 1e6), min_size=1, max_size=30))
def test_split_integer_sums_exactly(total: int, weights: list[float]) -> None:
    if sum(weights) == 0:
        with pytest.raises(ValueError):
            split_integer(total, weights)
        return
    parts = split_integer(total, weights)
    assert sum(parts) == total and all(p >= 0 for p in parts)
    assert parts == split_integer(total, weights)


# --- the demo --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return build_demo_lake(tmp_path_factory.mktemp("values") / "lake", queries=5)


@pytest.mark.parametrize("datanet", DEMO_DATANETS)
def test_planted_behaviours_rank_as_expected(demo: Lake, datanet: str) -> None:
    values = pl.from_arrow(demo.read("contributor_values", partition=("datanet", datanet)))
    value = dict(zip(values["contributor"], values["value"], strict=True))
    ranked = values.sort("rank")["contributor"].to_list()
    assert ranked[-1] == "dave"  # flipped labels: the lowest value
    honest = [value[c] for c in ("alice", "bob", "carol")]
    planted = [value[c] for c in ("dave", "erin", "frank", "gina")]
    assert min(honest) > max(planted)  # honest contributors above every planted behaviour
    assert min(value["alice"], value["bob"]) > value["carol"]  # larger honest sets worth more
    assert value["frank"] < 0.5 * min(honest)  # junk earns little
    total = float(values["value"].sum())
    utility = build_utility(
        demo_spec(datanet),
        pl.from_arrow(demo.read(f"contributions_{datanet}")),
        validation_set(demo_spec(datanet), Path(demo.root) / "specs"),
        sorted(value),
    )
    assert total == pytest.approx(utility((1 << len(value)) - 1) - utility(0), abs=1e-9)


@settings(max_examples=examples(60), deadline=None)
@given(
    labels=st.lists(st.integers(0, 2), min_size=3, max_size=60).filter(lambda y: len(set(y)) == 3),
    metric=st.sampled_from(["accuracy", "balanced_accuracy", "roc_auc"]),
)
def test_the_empty_coalition_scores_the_best_constant_predictor(
    labels: list[int], metric: str
) -> None:
    """U(∅) is no worse than any constant prediction (every class with certainty, any
    probability vector), and for accuracy it is the majority rate."""
    spec = demo_spec("wine").model_copy(update={"metric": metric})
    y = np.array(labels)
    best = best_constant_metric(spec, y)
    rng = np.random.default_rng(len(labels))
    constants = [np.eye(3)[c] for c in range(3)] + list(rng.dirichlet(np.ones(3), 10))
    for p in constants:
        assert best >= bounded_metric(spec, y, np.tile(p, (len(y), 1))) - 1e-12
    if metric == "accuracy":
        assert best == np.bincount(y).max() / len(y)


@pytest.mark.parametrize("datanet", DEMO_DATANETS)
def test_exact_values_carry_the_validation_jackknife_error(demo: Lake, datanet: str) -> None:
    """The jackknife leaves the values alone and gives each a positive standard error; a
    contributor valued at 0 exactly by a game with no validation noise has none."""
    spec = demo_spec(datanet)
    rows = pl.from_arrow(demo.read(f"contributions_{datanet}"))
    valid = validation_set(spec, Path(demo.root) / "specs")
    players = sorted(set(rows["contributor"]))
    plain = exact_shapley(build_utility(spec, rows, valid, players), players)
    result = value_contributors(spec, rows, valid)
    assert np.array_equal(result.values, plain.values) and not plain.std_errors.any()
    assert (result.std_errors > 0).all()
    assert (result.std_errors < np.abs(result.values).max()).all()


@pytest.mark.parametrize("exact_first", [False, True])
def test_values_are_identical_whatever_the_number_of_workers(demo: Lake, exact_first: bool) -> None:
    players, factory = wine_utility_factory(demo)
    rule = StoppingRule(half_width=1e-6, max_evaluations=60)
    one = permutation_shapley(
        factory(), players, rule, seed=5, truncation=0.01, pairs_per_batch=2,
        exact_first=exact_first,
    )  # fmt: skip
    two = permutation_shapley(
        factory(),
        players,
        rule,
        seed=5,
        truncation=0.01,
        pairs_per_batch=2,
        workers=2,
        utility_factory=factory,
        exact_first=exact_first,
    )
    assert np.array_equal(one.values, two.values)
    assert np.array_equal(one.std_errors, two.std_errors)
    assert one.utility_evaluations == two.utility_evaluations


@pytest.mark.parametrize("estimator", [svarm_shapley, msr_banzhaf])
def test_sampled_values_are_identical_whatever_the_number_of_workers(demo: Lake, estimator) -> None:
    players, factory = wine_utility_factory(demo)
    rule = StoppingRule(half_width=1e-6, max_evaluations=40)
    one = estimator(factory(), players, rule, seed=5, sets_per_batch=6)
    two = estimator(
        factory(), players, rule, seed=5, sets_per_batch=6, workers=2, utility_factory=factory
    )
    assert np.array_equal(one.values, two.values)
    assert np.array_equal(one.std_errors, two.std_errors)
    assert one.utility_evaluations == two.utility_evaluations
    assert two.notes["worker_fits"] > 0


def test_fits_to_converge_covers_every_player_at_every_size() -> None:
    """Below this many sets of a size, some player cannot be both in one and out of one."""
    assert fits_to_converge(3) == 8  # every coalition of 3 players
    for n in (4, 7, 30):
        sampled = fits_to_converge(n) - start_size(n)
        assert sampled == sum(max(math.ceil(n / s), math.ceil(n / (n - s))) for s in range(2, n))
    assert fits_to_converge(1000) > 10 * fits_to_converge(100) > 10 * 2 * 100


def test_the_policy_picks_svarm_only_when_the_budget_lets_it_converge(demo: Lake) -> None:
    spec = demo_spec("wine")
    rows = pl.from_arrow(demo.read("contributions_wine"))
    valid = validation_set(spec, Path(demo.root) / "specs")
    g = len(set(rows["contributor"]))
    assert start_size(g) == g + 2 and start_size(g, "full") == 2 * g + 2
    need = fits_to_converge(g)
    for budget, method in ((need, "svarm"), (need - 1, "tmc_antithetic")):
        policy = spec.valuation.model_copy(
            update={"exact_max_players": 1, "max_evaluations": budget}
        )
        result = value_contributors(spec.model_copy(update={"valuation": policy}), rows, valid)
        assert result.method == method
        assert result.values.sum() == pytest.approx(result.total_utility, abs=0.05)


def test_a_banzhaf_policy_values_the_demo_with_banzhaf(demo: Lake) -> None:
    """Exact Banzhaf within the exact limit, MSR above it; dave (flipped labels) is last."""
    spec = demo_spec("breast_cancer")
    rows = pl.from_arrow(demo.read("contributions_breast_cancer"))
    valid = validation_set(spec, Path(demo.root) / "specs")
    players = sorted(set(rows["contributor"]))
    exact = exact_banzhaf(build_utility(spec, rows, valid, players), players)
    for limit, method in ((12, "banzhaf_exact"), (1, "banzhaf_msr")):
        policy = spec.valuation.model_copy(
            update={"method": "banzhaf", "exact_max_players": limit, "max_evaluations": 60}
        )
        result = value_contributors(spec.model_copy(update={"valuation": policy}), rows, valid)
        assert result.method == method and result.players == players
        assert players[int(np.argmin(result.values))] == "dave"
        if method == "banzhaf_exact":
            assert np.array_equal(result.values, exact.values)
        else:  # 60 of the 128 coalitions: sampled, within the stated error, mostly
            assert result.notes["coalitions"] == 60 and np.all(result.std_errors > 0)
            inside = np.abs(result.values - exact.values) <= 3 * result.std_errors
            assert inside.mean() >= 0.8


def test_point_values_flag_the_flipped_rows(demo: Lake) -> None:
    points = pl.from_arrow(demo.read("point_values", partition=("datanet", "breast_cancer")))
    mean = points.group_by("contributor").agg(pl.col("value").mean()).sort("value")
    assert mean["contributor"][0] == "dave"
    rows = pl.from_arrow(demo.read("contributions_breast_cancer"))
    assert sorted(points["row_hash"]) == sorted(rows["row_hash"])
    assert points.filter(pl.col("low_value_flag"))["contributor"].to_list().count("dave") > 0


def test_every_inference_is_split_exactly(demo: Lake) -> None:
    inferences = pl.from_arrow(demo.read("inferences"))
    shares = pl.from_arrow(demo.read("inference_attributions"))
    assert inferences.height == 2 * 5
    totals = shares.group_by("inference_id").agg(pl.col("share_ppb").sum())
    assert sorted(totals["inference_id"]) == sorted(inferences["inference_id"])
    assert set(totals["share_ppb"]) == {SHARES_PPB}
    assert (shares["share_ppb"] > 0).all()


# --- Banzhaf (maximum sample reuse) -----------------------------------------------------------


def brute_force_banzhaf(utility, n: int) -> np.ndarray:
    """The definition: mean marginal contribution over all subsets of the others."""
    beta = np.zeros(n)
    for i in range(n):
        others = [p for p in range(n) if p != i]
        for size in range(n):
            for subset in itertools.combinations(others, size):
                mask = sum(1 << p for p in subset)
                beta[i] += utility(mask | 1 << i) - utility(mask)
    return beta / 2 ** (n - 1)


@pytest.mark.parametrize("seed", range(3))
def test_exact_banzhaf_equals_the_definition(seed: int) -> None:
    game, _ = random_game(6, seed)
    exact = exact_banzhaf(game, [str(i) for i in range(6)])
    assert np.allclose(exact.values, brute_force_banzhaf(game, 6), atol=1e-12)


@settings(max_examples=examples(20), deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=1, max_size=8))
def test_banzhaf_of_an_additive_game_is_each_weight(weights: list[float]) -> None:
    result = exact_banzhaf(partial(additive, weights), [f"p{i}" for i in range(len(weights))])
    assert np.allclose(result.values, weights, atol=1e-12)


def test_msr_banzhaf_intervals_cover_the_exact_values_at_the_stated_rate() -> None:
    """40 seeds × 6 players of a random game: z·SE intervals cover the exact Banzhaf values
    about 95 % of the time (at least 85 % allowing for the estimated SE)."""
    n = 6
    game, _ = random_game(n, 7)
    exact = exact_banzhaf(game, [str(i) for i in range(n)]).values
    rule = StoppingRule(half_width=0.4, z=1.96, max_evaluations=100_000, min_pairs=20)
    covered = trials = 0
    for seed in range(40):
        result = msr_banzhaf(game, [str(i) for i in range(n)], rule, seed=seed, sets_per_batch=8)
        assert result.converged and result.method == "banzhaf_msr"
        assert np.all(1.96 * result.std_errors <= 0.4 + 1e-12)
        assert np.all(result.counts >= 20)
        covered += int(np.sum(np.abs(result.values - exact) <= 1.96 * result.std_errors))
        trials += n
    assert covered / trials >= 0.85, covered / trials


def test_msr_banzhaf_is_exact_once_every_coalition_was_drawn() -> None:
    game, _ = random_game(5, 11)
    players = [str(i) for i in range(5)]
    result = msr_banzhaf(game, players, StoppingRule(half_width=1e-12, max_evaluations=10**6))
    assert result.converged and np.all(result.std_errors == 0)
    assert np.allclose(result.values, exact_banzhaf(game, players).values, atol=1e-12)


def test_msr_banzhaf_stops_at_the_budget_and_obeys_the_rule() -> None:
    game, _ = random_game(8, 3)
    players = [str(i) for i in range(8)]
    result = msr_banzhaf(game, players, StoppingRule(half_width=1e-9, max_evaluations=45))
    assert not result.converged and result.notes["coalitions"] == 45  # distinct: the fits
    assert result.utility_evaluations >= 45  # uniform draws repeat a few of the 256 sets
    rule = StopAfterBatches(half_width=1e-9, max_evaluations=10**6)
    stopped = msr_banzhaf(game, players, rule, sets_per_batch=4)
    assert rule.batches[0] == 3 and stopped.utility_evaluations == 2 + 3 * 4
