"""Reward arithmetic: every pool and fee sums exactly; weights, caps and flags behave."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from assets.rewards import FeePolicy, PoolSplit, Standing, capped_shares, split_fee, split_pool

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


def ceiling(pool: int, cap: float) -> int:
    """floor(cap × pool), the cap read as the decimal it is written as."""
    return int(Fraction(str(cap)) * pool)


def check_cap_law(split: PoolSplit, pool: int, cap: float) -> None:
    """No amount above the ceiling; with fewer eligible than 1/cap all are paid the ceiling
    and the rest carries; otherwise only rounding units blocked by the ceiling carry."""
    eligible = [k for k, w in split.weights.items() if w > 0]
    assert all(a <= ceiling(pool, cap) for a in split.amounts.values())
    if Fraction(str(cap)) * len(eligible) < 1:
        assert all(split.amounts[k] == ceiling(pool, cap) for k in eligible)
        assert split.carried_over == pool - len(eligible) * ceiling(pool, cap)
    elif eligible:
        assert split.carried_over < len(eligible)
    for k in split.capped:
        assert split.amounts[k] == ceiling(pool, cap)


@settings(max_examples=examples(200), deadline=None)
@given(st.integers(0, 10**24), standings, st.floats(0, 3), st.floats(0.01, 1))
@example(  # one eligible, cap 0.5, pool 1: the unit would break the cap, so it carries over
    pool=1,
    people=[Standing("a", 1.0, 0.0, 1.0), Standing("b", 0.0, 0.0, 0.0)],
    z=0.0,
    cap=0.5,
)
@example(  # two eligible at exactly the cap, pool 3: 1 each, the odd unit carries over
    pool=3, people=[Standing("a", 1.0, 0.0, 1.0), Standing("b", 1.0, 0.0, 1.0)], z=0.0, cap=0.5
)
def test_every_pool_sums_exactly(pool: int, people: list[Standing], z: float, cap: float) -> None:
    split = split_pool(pool, people, z, cap)
    assert sum(split.amounts.values()) + split.carried_over == pool
    assert all(a >= 0 for a in split.amounts.values())
    for s in people:
        if s.value <= 0 or s.quality <= 0 or s.value - max(z, 2) * s.std_error <= 0:
            assert split.amounts[s.contributor] == 0  # not clearly positive, no reward
        if split.weights[s.contributor] == 0:
            assert split.amounts[s.contributor] == 0  # the cap's remainder never goes here
    eligible = [k for k, w in split.weights.items() if w > 0]
    if pool:  # all of it carries exactly when nobody is eligible or the cap allows no unit
        assert (split.carried_over == pool) == (not eligible or ceiling(pool, cap) == 0)
    check_cap_law(split, pool, cap)
    assert split == split_pool(pool, people, z, cap)  # deterministic


@settings(max_examples=examples(100), deadline=None)
@given(st.integers(1, 10**18), standings, st.floats(0.05, 1))
@example(pool=10, people=[Standing("a", 0.8, 0.0, 1.0), Standing("b", 0.2, 0.0, 1.0)], cap=0.3)
def test_caps_are_respected(pool: int, people: list[Standing], cap: float) -> None:
    split = split_pool(pool, people, 1.0, cap)
    check_cap_law(split, pool, cap)


def test_a_capped_unit_that_would_break_the_cap_carries_over() -> None:
    alone = split_pool(1, [Standing("a", 1.0, 0.0, 1.0), Standing("b", 0.0, 0.0, 1.0)], 0.0, 0.5)
    assert alone.amounts == {"a": 0, "b": 0} and alone.carried_over == 1
    pair = [Standing("a", 1.0, 0.0, 1.0), Standing("b", 1.0, 0.0, 1.0)]
    assert split_pool(3, pair, 0.0, 0.5).amounts == {"a": 1, "b": 1}
    assert split_pool(4, pair, 0.0, 0.5).carried_over == 0


def test_cap_is_the_decimal_the_policy_states() -> None:
    people = [
        Standing("a", 0.8, 0.0, 1.0),
        Standing("b", 0.1, 0.0, 1.0),
        Standing("c", 0.1, 0.0, 1.0),
    ]
    split = split_pool(1_000, people, z=0.0, max_share=0.3)  # everyone capped: 0.9 paid
    assert split.amounts == {"a": 300, "b": 300, "c": 300} and split.carried_over == 100
    assert split.capped == ["a", "b", "c"]


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


def test_a_value_within_two_standard_errors_of_zero_is_paid_nothing_whatever_z() -> None:
    people = [Standing("a", 0.19, 0.1, 1.0), Standing("b", 0.21, 0.1, 1.0)]
    split = split_pool(1_000, people, z=0.0)
    assert split.amounts == {"a": 0, "b": 1_000}
    assert split.flags == {"a": ["within_error_of_zero"]}


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
