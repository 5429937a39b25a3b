"""How many examples a property test runs under the loaded hypothesis profile."""

from __future__ import annotations

from hypothesis import settings

BASELINE = 100  # hypothesis' own default max_examples, which the `ci` profile keeps


def examples(n: int) -> int:
    """`n` under `ci`; scaled by the profile's max_examples / 100 under a bigger profile, so
    a test that pins a small count for speed still runs more under `thorough`."""
    return max(1, n * settings.default.max_examples // BASELINE)
