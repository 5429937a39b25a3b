"""Replay Shapley estimators on the G = 10 benchmark's 1,024 recorded utilities.

    uv run python benchmarks/replay_estimators.py [--json benchmarks/out/attribution.json]

No model is trained: `benchmarks/out/attribution.json` (written by attribution_bench.py)
holds every coalition's utility (`g10.ours.utilities`, hex bitmask → U), the exact values
and pyDVL's TMC snapshots after every permutation. Each estimator runs on a table lookup
that counts distinct non-empty coalitions (fits, as the benchmark's `Recorder` does), for
seeds 0–4 at a grid of budgets; each budget is a separate run, as in the benchmark. The
summary reuses the benchmark's `group_curves` and `matched_ratios`: per pyDVL budget from
40 to its largest, the (log-log interpolated) fits at which a method's mean RMSE first gets
as low as pyDVL's; ratio = pyDVL fits / the method's fits.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.svarm import svarm_shapley  # noqa: E402
from assets.valuation import StoppingRule, ValuationResult, permutation_shapley  # noqa: E402
from benchmarks import dry_run  # noqa: E402
from benchmarks.attribution_bench import group_curves, matched_ratios  # noqa: E402

Estimator = Callable[[Callable[[int], float], list[str], StoppingRule, int], ValuationResult]
SEEDS = range(5)
BENCH_GRID = [20, 24, 28, 33, 39, 47, 55, 66, 78, 92, 110, 130, 154, 183, 216, 256, 304, 360]
BENCH_GRID += [427, 506, 600, 712, 844, 1000]  # the benchmark's budgets (max_evaluations)


class Replay:
    """U from the recorded table; counts distinct non-empty coalitions (fits)."""

    def __init__(self, table: dict[int, float]) -> None:
        self.table = table
        self.seen: set[int] = set()

    def __call__(self, mask: int) -> float:
        if mask:
            self.seen.add(mask)
        return self.table[mask]


def load(path: Path) -> dict:
    block = json.loads(path.read_text())["g10"]
    block["table"] = {int(k, 16): float(v) for k, v in block["ours"]["utilities"].items()}
    return block


def run(estimator: Estimator, table: dict[int, float], g: int, budgets: list[int]) -> dict:
    """Snapshots per seed, one run per budget (budget = max_evaluations, ∅ included)."""
    players = [str(i) for i in range(g)]
    runs = []
    for seed in SEEDS:
        snapshots = []
        for budget in budgets:
            utility = Replay(table)
            rule = StoppingRule(half_width=1e-12, max_evaluations=budget, min_pairs=10**9)
            result = estimator(utility, players, rule, seed)
            snapshots.append(
                {
                    "budget": budget,
                    "fits": len(utility.seen),
                    "values": result.values.tolist(),
                    "std_errors": result.std_errors.tolist(),
                    "efficiency_gap": result.efficiency_gap(),
                }
            )
        runs.append({"seed": seed, "snapshots": snapshots})
    return {"runs": runs}


def svarm(
    utility: Callable[[int], float], players: list[str], rule: StoppingRule, seed: int
) -> ValuationResult:
    """The previous default: full start (2G + 2), no control variate."""
    return svarm_shapley(
        utility, players, rule, seed=seed, sets_per_batch=1, start="full", control=False
    )


def svarm_small(
    utility: Callable[[int], float], players: list[str], rule: StoppingRule, seed: int
) -> ValuationResult:
    """Small start (G + 2), no control variate."""
    return svarm_shapley(utility, players, rule, seed=seed, sets_per_batch=1, control=False)


def svarm_cv(
    utility: Callable[[int], float], players: list[str], rule: StoppingRule, seed: int
) -> ValuationResult:
    """The default: small start and the singletons' control variate."""
    return svarm_shapley(utility, players, rule, seed=seed, sets_per_batch=1)


def permutations(
    utility: Callable[[int], float], players: list[str], rule: StoppingRule, seed: int
) -> ValuationResult:
    return permutation_shapley(
        utility, players, rule, seed=seed, truncation=0.01, pairs_per_batch=1
    )


def curves(block: dict, runs: dict[str, dict], grid: list[int]) -> dict[str, list[dict]]:
    """`group_curves` per method (each put in the benchmark's "svarm" slot in turn)."""
    out = {}
    for name, method_runs in runs.items():
        view = {k: block[k] for k in ("g", "bad", "ours", "pydvl")} | {"svarm": method_runs}
        got = group_curves(view, "fits", grid)
        out[name] = got["svarm"]
        out["pydvl"] = got["pydvl"]
    return out


def ratios(curve: dict[str, list[dict]], name: str, low: int, high: int) -> list[float]:
    view = {"pydvl": curve["pydvl"], name: curve[name]}
    return [r for _, r in matched_ratios(view, name, low, high)]


def coverage(block: dict, method_runs: dict, bands: list[tuple[int, int]]) -> list[str]:
    exact = np.asarray(block["ours"]["exact"]["values"])
    cells = []
    for low, high in bands:
        hits = total = 0
        for r in method_runs["runs"]:
            for snap in r["snapshots"]:
                if low <= snap["fits"] < high:
                    err = np.abs(np.asarray(snap["values"]) - exact)
                    hits += int(np.sum(err <= 1.96 * np.asarray(snap["std_errors"])))
                    total += err.size
        cells.append(f"{hits / total:.3f}" if total else "-")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/out/attribution.json")
    args = dry_run.parse_args(parser)
    block = load(args.json)
    g = block["g"]
    fine = sorted(set(BENCH_GRID) | {int(v) for v in np.geomspace(12, 1000, 48)})
    estimators: dict[str, tuple[Estimator, list[int]]] = {
        "permutations": (permutations, BENCH_GRID),
        "svarm@bench": (svarm, BENCH_GRID),  # reproduces docs/benchmarks.md's 2.58x
        "svarm": (svarm, fine),
        "svarm_small": (svarm_small, fine),
        "svarm_cv": (svarm_cv, fine),
    }
    runs = {
        name: run(est, block["table"], g, budgets) for name, (est, budgets) in estimators.items()
    }
    top = max(s["fits"] for m in runs.values() for r in m["runs"] for s in r["snapshots"])
    their_top = max(s["fits"] for r in block["pydvl"]["runs"] for s in r["snapshots"])
    grid = sorted({int(v) for v in np.geomspace(g, top, 60)})  # as `efficiency` does
    curve = curves(block, runs, grid)
    names = [*runs, "pydvl"]
    print("mean RMSE vs exact over seeds 0-4, by fits (last snapshot within the budget)")
    print("svarm = full start, no control variate (the previous default); svarm_cv = default")
    print(f"{'fits':>5} " + " ".join(f"{n:>12}" for n in names))
    for k, budget in enumerate(grid):
        cells = [curve[n][k].get("rmse") for n in names]
        print(f"{budget:>5} " + " ".join(f"{c:>12.4f}" if c else f"{'-':>12}" for c in cells))
    print(f"\nfits ratio against pyDVL, matched RMSE, pyDVL budgets {4 * g}..{their_top}:")
    for name in runs:
        got = ratios(curve, name, 4 * g, their_top)
        print(
            f"  {name:>14}: median {np.median(got):.2f}x  min {min(got):.2f}x  "
            f"max {max(got):.2f}x  ({len(got)} budgets)"
        )
    print("\nsvarm_cv's mean RMSE / svarm's at the same fits (< 1: svarm_cv better):")
    pairs = [
        (b, curve["svarm_cv"][k].get("rmse"), curve["svarm"][k].get("rmse"))
        for k, b in enumerate(grid)
    ]
    print("  " + " ".join(f"{b}:{c / o:.2f}" for b, c, o in pairs if c and o and b <= 999))
    bands = [(0, 30), (30, 60), (60, 100), (100, 200), (200, 400), (400, 1024)]
    print("\n1.96·SE coverage of exact, by fits: " + " ".join(f"{a}-{b}" for a, b in bands))
    for name, method_runs in runs.items():
        cells = coverage(block, method_runs, bands) + coverage(block, method_runs, [(0, 1 << 30)])
        print(f"  {name:>14}: " + " ".join(cells[:-1]) + f"  (all: {cells[-1]})")
    gaps = {
        n: max(abs(s["efficiency_gap"]) for r in m["runs"] for s in r["snapshots"])
        for n, m in runs.items()
    }
    print("\nmax |Σφ − (U(N) − U(∅))|: " + ", ".join(f"{n} {v:.1e}" for n, v in gaps.items()))


if __name__ == "__main__":
    main()
