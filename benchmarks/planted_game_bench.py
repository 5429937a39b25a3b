"""The valuation game on planted contributors of real tables, exact (no pipeline).

Each table (benchmarks/tables.py) is shuffled with the seed and cut to `--rows`; 30 % is
the validation set, the rest is split among four honest contributors (30, 20, 10 and 5 %
of it), two label flippers (10 % each, 40 % of labels flipped), a random-noise
contributor (8 %, features uniform over each feature's range, random labels) and a tiny
honest one (10 rows). All 2^8 coalitions are fitted (`DatanetUtility`, jackknife on) and
the exact values printed with their validation jackknife standard errors, and under the
old uniform-guess U(∅) for comparison (every value moves by (U_old(∅) − U(∅))/G).

    uv run python benchmarks/planted_game_bench.py --tables magic wine --seeds 0 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.training import feature_matrix, label_vector
from assets.valuation import DatanetUtility, exact_shapley
from benchmarks import dry_run
from benchmarks.tables import TABLES, table_frame, table_spec

HONEST = {"h1": 0.30, "h2": 0.20, "h3": 0.10, "h4": 0.05}
FLIPPERS = {"flip1": 0.10, "flip2": 0.10}
BAD = ("flip1", "flip2", "noise")


def flip(labels: np.ndarray, classes: list[int], share: float, rng: np.random.Generator):
    """Labels with `share` of them (drawn at random) changed to another class."""
    out = labels.copy()
    for i in np.flatnonzero(rng.random(len(out)) < share):
        others = [c for c in classes if c != out[i]]
        out[i] = others[rng.integers(len(others))]
    return out


def planted(name: str, seed: int, rows: int):
    """(table, validation, {contributor: rows}) of one planted scenario."""
    rng = np.random.default_rng(seed)
    frame = table_frame(name)
    frame = frame[rng.permutation(frame.height)][:rows]
    n_val = int(0.3 * frame.height)
    validation, pool = frame[:n_val], frame[n_val:]
    parts, at = {}, 0
    for who, share in {**HONEST, **FLIPPERS}.items():
        size = int(share * pool.height)
        parts[who], at = pool[at : at + size], at + size
    parts["tiny"] = pool[at : at + 10]
    classes = sorted(frame["label"].unique().to_list())
    for who in FLIPPERS:
        labels = flip(parts[who]["label"].to_numpy(), classes, 0.4, rng)
        parts[who] = parts[who].with_columns(pl.Series("label", labels))
    size = int(0.08 * pool.height)
    features = [c for c in frame.columns if c != "label"]
    parts["noise"] = pl.DataFrame(
        {c: rng.uniform(float(pool[c].min()), float(pool[c].max()), size) for c in features}
    ).with_columns(pl.Series("label", rng.choice(classes, size).astype(np.int64)))
    return frame, validation, parts


def game(name: str, seed: int, rows: int) -> dict:
    frame, validation, parts = planted(name, seed, rows)
    spec = table_spec(name, frame)
    players = sorted(parts)
    lake_names = {c.name: c.identifier for c in spec.columns}
    data = pl.concat([p.with_columns(pl.lit(c).alias("contributor")) for c, p in parts.items()])
    data, validation = data.rename(lake_names), validation.rename(lake_names)
    index = {p: i for i, p in enumerate(players)}
    utility = DatanetUtility(
        spec,
        feature_matrix(spec, data),
        label_vector(spec, data),
        data["contributor"].replace_strict(index, return_dtype=pl.Int64).to_numpy(),
        feature_matrix(spec, validation),
        label_vector(spec, validation),
        spec.valuation.num_boost_round,
        jackknife=True,
    )
    started = time.perf_counter()
    result = exact_shapley(utility, players)
    y_val = label_vector(spec, validation)
    uniform = 1.0 / len(np.unique(y_val))
    return {
        "players": players,
        "values": result.values,
        "std_errors": result.std_errors,
        "u_empty": utility(0),
        "shift_from_uniform": (utility(0) - uniform) / len(players),
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="planted_game_bench", description=__doc__)
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--rows", type=int, default=4000, help="rows kept of each table")
    args = dry_run.parse_args(parser, argv)
    print("table seed U(∅) | value (value/SE) per contributor | bad ≤ 2 SE | honest > bad")
    for name in args.tables:
        for seed in args.seeds:
            r = game(name, seed, args.rows)
            value = dict(zip(r["players"], r["values"], strict=True))
            se = dict(zip(r["players"], r["std_errors"], strict=True))
            cells = " ".join(
                f"{p}={value[p]:+.4f}({value[p] / max(se[p], 1e-12):+.1f})" for p in r["players"]
            )
            bad_ok = all(value[b] <= 2 * se[b] for b in BAD)
            ranked = min(value[h] for h in HONEST) > max(value[b] for b in BAD)
            print(
                f"{name} {seed} U(∅)={r['u_empty']:.4f} | {cells} | {bad_ok} | {ranked} "
                f"| uniform U(∅) would add {r['shift_from_uniform']:+.4f} to each "
                f"| {r['seconds']:.0f} s"
            )


if __name__ == "__main__":
    main()
