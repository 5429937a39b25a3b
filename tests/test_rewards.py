"""Reward arithmetic: every pool and fee sums exactly; weights, caps and flags behave."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from assets.rewards import FeePolicy, Standing, capped_shares, split_fee, split_pool

standings = st.lists(
    st.builds(
        Standing,
        contributor=st.text("abcdefgh", min_size=1, max_size=6),
        value=st.floats(-1, 1, allow_nan=False),
        std_error=st.floats(0, 0.5, allow_nan=False),
        quality=st.floats(0, 1, allow_nan=False),
    ),
    min_size=1,
    max_size=25,
    unique_by=lambda s: s.contributor,
)


@settings(max_examples=examples(200), deadline=None)
@given(st.integers(0, 10**24), standings, st.floats(0, 3), st.floats(0.01, 1))
def test_every_pool_sums_exactly(pool: int, people: list[Standing], z: float, cap: float) -> None:
    split = split_pool(pool, people, z, cap)
    assert sum(split.amounts.values()) + split.carried_over == pool
    assert all(a >= 0 for a in split.amounts.values())
    for s in people:
        if s.value <= 0 or s.quality <= 0 or s.value - z * s.std_error <= 0:
            assert split.amounts[s.contributor] == 0  # no lower-bound value, no reward
    if pool and split.carried_over == pool:
        assert all(w == 0 for w in split.weights.values()) or cap * len(people) < 1
    assert split == split_pool(pool, people, z, cap)  # deterministic


@settings(max_examples=examples(100), deadline=None)
@given(st.integers(1, 10**18), standings, st.floats(0.05, 1))
def test_caps_are_respected(pool: int, people: list[Standing], cap: float) -> None:
    split = split_pool(pool, people, 1.0, cap)
    for amount in split.amounts.values():
        assert Fraction(amount) <= Fraction(cap) * pool + 1  # +1: one unit of rounding


def test_single_contributor_takes_the_whole_pool() -> None:
    split = split_pool(1_000, [Standing("ann", 0.3, 0.01, 1.0)], z=2.0)
    assert split.amounts == {"ann": 1_000} and split.carried_over == 0


def test_nobody_positive_carries_the_pool_over_and_flags_why() -> None:
    people = [
        Standing("a", -0.1, 0.01, 1.0),
        Standing("b", 0.0, 0.0, 1.0),
        Standing("c", 0.01, 0.05, 1.0),
    ]
    split = split_pool(777, people, z=1.96)
    assert split.amounts == {"a": 0, "b": 0, "c": 0} and split.carried_over == 777
    assert split.flags == {
        "a": ["negative_value"],
        "b": ["zero_value"],
        "c": ["within_error_of_zero"],
    }


def test_weights_are_lower_bounds_times_quality() -> None:
    people = [Standing("a", 0.3, 0.05, 1.0), Standing("b", 0.3, 0.05, 0.5)]
    split = split_pool(3_000, people, z=2.0)
    assert split.weights["a"] == 2 * split.weights["b"]
    assert split.amounts == {"a": 2_000, "b": 1_000}


def test_water_filling_caps() -> None:
    shares = capped_shares({"a": Fraction(8), "b": Fraction(1), "c": Fraction(1)}, Fraction(1, 2))
    assert shares == {"a": Fraction(1, 2), "b": Fraction(1, 4), "c": Fraction(1, 4)}
    alone = capped_shares({"a": Fraction(1)}, Fraction(1, 3))
    assert alone == {"a": Fraction(1, 3)}


@settings(max_examples=examples(200), deadline=None)
@given(
    st.integers(0, 10**20),
    st.dictionaries(st.text("abcdef", min_size=1, max_size=4), st.integers(0, 10**9), max_size=12),
)
def test_every_fee_sums_exactly(fee: int, shares: dict[str, int]) -> None:
    amounts = split_fee(fee, shares, FeePolicy(), "model-co", "datanet-co")
    assert sum(amounts.values()) == fee
    assert all(a >= 0 for a in amounts.values())
    for name, ppb in shares.items():
        if ppb == 0:
            assert amounts.get(f"contributor:{name}", 0) == 0


def test_fee_policy_must_sum_to_one() -> None:
    with pytest.raises(ValueError):
        FeePolicy(Fraction(1, 2), Fraction(1, 2), Fraction(1, 2))
