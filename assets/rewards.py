"""Splitting an epoch's reward pool and inference fees into integer amounts.

Pure functions over exact fractions (weights may come from floats; they are converted
exactly before any arithmetic), so every pool and every fee sums exactly and the same
inputs always give the same amounts:

- a contributor's pool weight is max(value − z·SE, 0) × quality multiplier (a lower
  confidence bound of their Shapley value, so a value inside its error bar of zero earns
  nothing; a value within 2 SE of zero earns nothing whatever z is), with an optional
  cap on any one contributor's share: no amount ever exceeds
  floor(cap × pool), and what the cap leaves unpaid carries over (never to anyone with
  zero weight);
- negative or zero values earn nothing and are flagged; a value within its error bar of
  zero is reported as such;
- if nobody has positive weight, the whole pool carries over to the next epoch;
- an inference fee is split between the contributors, the model owner and the Datanet
  owner by policy shares, and the contributors' part by the inference's attribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from assets.allocation import split_integer


@dataclass(frozen=True)
class Standing:
    """What a contributor brings to an epoch's split."""

    contributor: str
    value: float
    std_error: float
    quality: float  # multiplier in [0, 1]


@dataclass
class PoolSplit:
    amounts: dict[str, int]
    carried_over: int
    weights: dict[str, Fraction]
    flags: dict[str, list[str]] = field(default_factory=dict)
    capped: list[str] = field(default_factory=list)  # paid at the cap, sorted


# A value not above 0 by more than this many standard errors is paid nothing, whatever the
# policy's z: it cannot be told from no value at all (docs/attribution.md, "The game").
SIGNIFICANCE_Z = 2


def significant(standing: Standing) -> bool:
    """Whether the value is above 0 by more than SIGNIFICANCE_Z standard errors."""
    return Fraction(standing.value) > SIGNIFICANCE_Z * Fraction(standing.std_error)


def pool_weight(standing: Standing, z: float) -> Fraction:
    """max(value − z·SE, 0) × quality, exactly; 0 for a value within SIGNIFICANCE_Z
    standard errors of 0."""
    if not significant(standing):
        return Fraction(0)
    lower = Fraction(standing.value) - Fraction(z) * Fraction(standing.std_error)
    quality = min(max(Fraction(standing.quality), Fraction(0)), Fraction(1))
    return max(lower, Fraction(0)) * quality


def share_cap(max_share: float) -> Fraction:
    """The cap as the decimal the policy states: 0.3 is 3/10, not the float just below it,
    so a capped contributor is paid floor(0.3 × pool), not one unit less."""
    cap = Fraction(str(max_share))
    if not 0 < cap <= 1:
        raise ValueError("max_share must be in (0, 1]")
    return cap


def capped_shares(weights: Mapping[str, Fraction], cap: Fraction) -> dict[str, Fraction]:
    """Shares proportional to weights, none above `cap` (water-filling: the excess of capped
    contributors goes to the others in proportion). Shares may sum to less than 1 when
    everyone with weight is capped; the rest is carried over."""
    total = sum(weights.values(), Fraction(0))
    if total == 0:
        return dict.fromkeys(weights, Fraction(0))
    shares: dict[str, Fraction] = {}
    free = {k: w for k, w in weights.items() if w > 0}
    budget = Fraction(1)
    while free:
        mass = sum(free.values(), Fraction(0))
        over = {k for k, w in free.items() if budget * w / mass > cap}
        if not over:
            shares.update({k: budget * w / mass for k, w in free.items()})
            break
        for k in over:
            shares[k] = cap
            budget -= cap
            del free[k]
        if budget <= 0:
            break
    return {k: shares.get(k, Fraction(0)) for k in weights}


def capped_amounts(pool: int, shares: Mapping[str, Fraction], ceiling: int) -> dict[str, int]:
    """Largest remainder over the paid part, floor(pool × Σ shares), with no amount above
    `ceiling` (floor(cap × pool)): a cap is a hard limit in base units, so a unit of rounding
    that would lift someone over it is left to the carry-over instead."""
    exact = {k: pool * s for k, s in shares.items()}
    amounts = {k: int(x) for k, x in exact.items()}  # floor: at most ceiling, as s ≤ cap
    left = int(pool * sum(shares.values(), Fraction(0))) - sum(amounts.values())
    by_remainder = sorted(exact, key=lambda k: (-(exact[k] - amounts[k]), k))
    room = [k for k in by_remainder if exact[k] > amounts[k] and amounts[k] < ceiling]
    for k in room[:left]:
        amounts[k] += 1
    return amounts


def pool_flags(standings: Sequence[Standing], z: float) -> dict[str, list[str]]:
    """Why a contributor earns nothing (or may), for their statement."""
    flags: dict[str, list[str]] = {}
    for s in standings:
        marks = []
        if s.value < 0:
            marks.append("negative_value")
        elif s.value == 0:
            marks.append("zero_value")
        if abs(s.value) <= max(z, SIGNIFICANCE_Z) * s.std_error and s.std_error > 0:
            marks.append("within_error_of_zero")
        if s.quality <= 0:
            marks.append("zero_quality")
        if marks:
            flags[s.contributor] = marks
    return flags


def split_pool(
    pool: int, standings: Sequence[Standing], z: float, max_share: float = 1.0
) -> PoolSplit:
    """Integer amounts of an epoch pool; amounts + carried_over == pool, always."""
    if pool < 0:
        raise ValueError("a pool cannot be negative")
    names = [s.contributor for s in standings]
    if len(set(names)) != len(names):
        raise ValueError("each contributor may appear once")
    cap = share_cap(max_share)
    weights = {s.contributor: pool_weight(s, z) for s in standings}
    shares = capped_shares(weights, cap)
    amounts = capped_amounts(pool, shares, int(cap * pool))
    capped = sorted(k for k, share in shares.items() if cap < 1 and share == cap)
    carried = pool - sum(amounts.values())
    return PoolSplit(amounts, carried, weights, pool_flags(standings, z), capped)


@dataclass(frozen=True)
class FeePolicy:
    """How one inference fee is shared (fractions of the fee, summing to 1)."""

    contributors: Fraction = Fraction(7, 10)
    model_owner: Fraction = Fraction(2, 10)
    datanet_owner: Fraction = Fraction(1, 10)

    def __post_init__(self) -> None:
        if self.contributors + self.model_owner + self.datanet_owner != 1:
            raise ValueError("fee shares must sum to 1")


def split_fee(
    fee: int, shares_ppb: Mapping[str, int], policy: FeePolicy, model_owner: str, datanet_owner: str
) -> dict[str, int]:
    """A fee's integer amounts per recipient; they sum to `fee` exactly.

    Parties are keyed `contributor:<id>`, `model_owner:<id>`, `datanet_owner:<id>`.
    """
    parties = ["contributors", "model_owner", "datanet_owner"]
    top = split_integer(
        fee, [policy.contributors, policy.model_owner, policy.datanet_owner], parties
    )
    amounts = {f"model_owner:{model_owner}": top[1], f"datanet_owner:{datanet_owner}": top[2]}
    names = sorted(shares_ppb)
    if top[0] and names and sum(shares_ppb.values()) > 0:
        parts = split_integer(top[0], [shares_ppb[n] for n in names], names)
        amounts.update({f"contributor:{n}": p for n, p in zip(names, parts, strict=True)})
    else:  # nobody to attribute to: the Datanet owner holds it
        amounts[f"datanet_owner:{datanet_owner}"] += top[0]
    return amounts
