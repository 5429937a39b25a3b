"""Replay permutation estimators on a scale run's recorded utilities (no training).

    uv run python benchmarks/attribution_bench.py --parts scale --scale-exact-first \
        --scale-record-utilities benchmarks/out/scale_utilities.txt ...
    uv run python benchmarks/replay_scale.py benchmarks/out/scale_utilities.txt --pairs 400

Controls do not change which coalitions a scan reaches (truncation reads utilities only),
so the same seed, truncation and batch size reach exactly the recorded coalitions. Each
variant runs on the same permutations; the summary gives the largest and the median 95 %
half-width after a grid of pair counts, and how the values of two variants differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.valuation import StoppingRule, permutation_shapley  # noqa: E402
from benchmarks import dry_run  # noqa: E402

VARIANTS = {  # name → permutation_shapley keywords
    "plain": {"exact_first": False},
    "first": {"exact_first": True, "position_model": False},
    "model": {"exact_first": True, "position_model": True},
}


def load_table(path: Path) -> dict[int, float]:
    table = {}
    for line in path.read_text().splitlines():
        mask, value = line.split()
        table[int(mask, 16)] = float(value)
    return table


@dataclass(frozen=True)
class AfterPairs(StoppingRule):
    """Stop after a number of pairs, never converged (a replay has no target)."""

    pairs_limit: int = 1

    def done(self, std_errors: np.ndarray, pairs: int, evaluations: int) -> tuple[bool, bool]:
        return pairs >= self.pairs_limit, False


def replay(table: dict[int, float], players: int, pairs: int, options: dict) -> dict:
    """One variant's curve, values and half-widths, and the distinct coalitions it read
    (their number and total members: a variant's training cost in utilities and rows)."""
    curve: list[tuple[int, float]] = []
    read: set[int] = set()

    def lookup(mask: int) -> float:
        read.add(mask)
        return table[mask]

    result = permutation_shapley(
        lookup,
        [str(p) for p in range(players)],
        AfterPairs(half_width=0.0, max_evaluations=10**12, pairs_limit=pairs),
        seed=0,
        truncation=options.get("truncation", 0.01),
        pairs_per_batch=1,
        progress=lambda p, _e, half: curve.append((p, half)),
        **{k: v for k, v in options.items() if k != "truncation"},
    )
    return {
        "curve": curve,
        "values": result.values,
        "half": 1.96 * result.std_errors,
        "utilities": len(read),
        "members": sum(mask.bit_count() for mask in read),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("utilities", type=Path)
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--pairs", type=int, required=True, help="pairs the run recorded")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--truncations",
        nargs="+",
        type=float,
        default=[0.01],
        help="truncation tolerances to replay (each at most the recorded run's: a larger one "
        "stops scans earlier, so it reads a subset of the recorded coalitions)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = dry_run.parse_args(parser)
    table = load_table(args.utilities)
    runs = {
        f"{name}@{tol:g}" if len(args.truncations) > 1 else name: replay(
            table, args.players, args.pairs, {**VARIANTS[name], "truncation": tol}
        )
        for name in args.variants
        for tol in args.truncations
    }
    grid = sorted({p for p in (10, 25, 50, 100, 200, 300, 400, 600, 800) if p <= args.pairs})
    grid.append(args.pairs)
    print("largest 95 % half-width after n pairs")
    print("pairs  " + "  ".join(f"{name:>11}" for name in runs))
    for p in grid:
        print(f"{p:5d}  " + "  ".join(f"{dict(run['curve'])[p]:11.5f}" for run in runs.values()))
    for name, run in runs.items():
        print(
            f"{name}: median half-width {np.median(run['half']):.6f}, sum of values "
            f"{run['values'].sum():.6f}, {run['utilities']} utilities of "
            f"{run['members']} members in all"
        )
    names = list(runs)
    a = names[0]
    for b in names[1:]:  # each against the first
        gap = np.abs(runs[a]["values"] - runs[b]["values"])
        print(f"|{a} − {b}|: max {gap.max():.6f}, median {np.median(gap):.6f}")
    if args.json:
        args.json.write_text(json.dumps({n: r["curve"] for n, r in runs.items()}))


if __name__ == "__main__":
    main()
