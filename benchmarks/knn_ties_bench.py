"""KNN-Shapley with and without tied training points: the grouped sort against the
previous per-row stable re-sort (main's `assets/knn_shapley.py` before issue 18, kept
verbatim by this script from git as `benchmarks/_knn_before.py` is not: it is loaded
from `git show`), same data, same process, CPU time.

    uv run python benchmarks/knn_ties_bench.py --rows 10000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.knn_shapley import knn_shapley, standardize  # noqa: E402
from benchmarks import dry_run  # noqa: E402
from benchmarks.tables import magic_frame  # noqa: E402


def before(commit: str) -> types.ModuleType:
    """`assets/knn_shapley.py` as it was at `commit`, as a module."""
    source = subprocess.run(
        ["git", "show", f"{commit}:assets/knn_shapley.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("knn_before")
    exec(compile(source, "knn_before", "exec"), module.__dict__)
    return module


def timed(fn, *args) -> tuple[float, np.ndarray]:
    started = time.process_time()
    out = fn(*args)
    return time.process_time() - started, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="knn_ties_bench", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="training rows")
    parser.add_argument("--validation", type=int, default=500)
    parser.add_argument("--before", default="dfb523b", help="commit of the previous code")
    args = dry_run.parse_args(parser, argv)
    old = before(args.before)
    rng = np.random.default_rng(0)
    magic = magic_frame()
    x_all = magic.drop("label").to_numpy()
    y_all = magic["label"].to_numpy()
    order = rng.permutation(len(y_all))
    train, valid = order[: args.rows], order[args.rows : args.rows + args.validation]
    synthetic = rng.normal(size=(args.rows + args.validation, x_all.shape[1]))
    cases = {
        "magic (real, tied rows)": (x_all[train], x_all[valid]),
        "synthetic (no ties)": (synthetic[: args.rows], synthetic[args.rows :]),
    }
    for name, (x, xv) in cases.items():
        xs, xvs = standardize(x, xv)
        distinct = np.unique(xs, axis=0).shape[0]
        t_new, new = timed(knn_shapley, xs, y_all[train], xvs, y_all[valid], 10)
        t_old, was = timed(old.knn_shapley, xs, y_all[train], xvs, y_all[valid], 10)
        print(
            f"{name}: N={args.rows} ({args.rows - distinct} repeated points), "
            f"{args.validation} validation rows: before {t_old:.2f} s CPU, grouped "
            f"{t_new:.2f} s, ratio {t_old / t_new:.2f}x, max |difference| "
            f"{np.max(np.abs(new - was)):.1e}"
        )


if __name__ == "__main__":
    main()
