"""Integer splitting: largest remainder with a deterministic tie-break.

Amounts are integers in base units; weights may be floats (values, shares) but they are
turned into exact fractions before any arithmetic, so every split sums exactly to its
total and the same inputs always give the same split, on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction


def split_integer(
    total: int, weights: Sequence[float | int | Fraction], keys: Sequence[str] | None = None
) -> list[int]:
    """Split `total` in proportion to non-negative `weights`; parts sum to `total` exactly.

    Each part gets floor(total × w / Σw); the units left over go one each to the largest
    remainders, ties broken by `keys` (ascending; default: position). All-zero weights
    raise: the caller decides what an unallocatable total means (e.g. carry it over).
    """
    if total < 0:
        raise ValueError("total must be non-negative")
    exact = [Fraction(w) for w in weights]
    if any(w < 0 for w in exact):
        raise ValueError("weights must be non-negative")
    mass = sum(exact, Fraction(0))
    if mass == 0:
        raise ValueError("cannot split over weights that are all zero")
    order_keys = list(keys) if keys is not None else [f"{i:012d}" for i in range(len(exact))]
    if len(order_keys) != len(exact) or len(set(order_keys)) != len(order_keys):
        raise ValueError("keys must be unique, one per weight")
    shares = [total * w / mass for w in exact]
    parts = [int(s) for s in shares]  # floor: shares are non-negative
    left = total - sum(parts)
    by_remainder = sorted(range(len(parts)), key=lambda i: (-(shares[i] - parts[i]), order_keys[i]))
    for i in by_remainder[:left]:
        parts[i] += 1
    return parts
