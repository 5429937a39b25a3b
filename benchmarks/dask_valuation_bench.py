"""Valuation fits on Dask against the local process pool: fits per second with 1 and 2
workers each, on the same coalitions, in the same run, and the overhead per fit.

    uv run python benchmarks/dask_valuation_bench.py --out benchmarks/out/dask_valuation.json

Data: attribution_bench's synthetic binary Datanet (`group_data`, `synthetic_spec_json`:
20 features, 1,000 validation rows, the spec's default policies, LightGBM on 1 thread),
with `--rows` rows over `--players` contributors. `--coalitions` distinct random non-empty
coalitions (seeded) are evaluated by every configuration with `evaluate_many`, the call
SVARM and Banzhaf make:

* in-process: no pool (the floor);
* local: `process_pool`, 1 or 2 spawned processes (what `valuation.workers` starts);
* dask: `dask_pool` on a `LocalCluster` of 1 or 2 worker processes, 1 thread each, over
  TCP on loopback (what OPENLEDGER_DASK_SCHEDULER selects).

Each configuration gets a fresh pool, so fresh utility caches (the cluster is started
before the clock). "setup" is opening the pool until every worker has built its utility;
then the coalitions are timed. With 1 worker they are then asked again: every answer is
cached, so that pass is the round trip of one call, the dispatch overhead alone.
Configurations alternate order over `--rounds` rounds; the medians are reported. The
utilities must be identical in every configuration (checked). For Dask, "÷ local" (fits/s)
and "overhead per fit" (seconds per fit, Dask minus local) are medians over rounds of its
difference from local at the same worker count in the same round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import dry_run  # noqa: E402

CONFIGS = [("in-process", 1), ("local", 1), ("dask", 1), ("local", 2), ("dask", 2)]


def shipped_utility(arrays: dict[str, np.ndarray]) -> Any:
    """The same utility from arrays shipped with the factory (as the product's rows are)."""
    from assets.datanets import parse_spec
    from assets.valuation import DatanetUtility
    from benchmarks.attribution_bench import synthetic_spec_json

    spec = parse_spec(synthetic_spec_json())
    return DatanetUtility(
        spec, arrays["x"], arrays["y"], arrays["player"], arrays["xv"], arrays["yv"],
        spec.valuation.num_boost_round,
    )  # fmt: skip


def warm(delay: float) -> int:
    """In a worker: its utility exists (built at start or on first task); its pid."""
    from assets.valuation import worker_utility

    worker_utility()
    time.sleep(delay)  # long enough that each worker takes one of the warm-up tasks
    return os.getpid()


def coalitions(players: int, count: int, seed: int) -> list[int]:
    """`count` distinct non-empty coalitions, drawn uniformly (seeded)."""
    rng = np.random.default_rng(seed)
    drawn = rng.choice(np.arange(1, 1 << players), size=count, replace=False)
    return [int(mask) for mask in drawn]


@contextmanager
def opened(
    kind: str, workers: int, factory: Callable[[], Any]
) -> Iterator[tuple[Executor | None, Any, float]]:
    """(pool, in-process utility, clock start) of one configuration; a Dask cluster is
    started before the clock (a deployment's cluster outlives its runs)."""
    from assets.dask_pool import dask_pool
    from assets.valuation import process_pool

    if kind == "in-process":
        started = time.perf_counter()
        yield None, factory(), started
    elif kind == "local":
        started = time.perf_counter()
        with process_pool(workers, factory) as pool:
            yield pool, None, started
    else:
        from distributed import LocalCluster

        with LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, protocol="tcp",
            host="127.0.0.1", dashboard_address=None,
        ) as cluster:  # fmt: skip
            started = time.perf_counter()
            with dask_pool(cluster.scheduler_address, factory) as pool:
                yield pool, None, started


def measure(kind: str, workers: int, factory: Callable[[], Any], masks: list[int]) -> dict:
    """Setup, timed pass and (1 worker) cached pass of one configuration."""
    from assets.valuation import evaluate_many

    with opened(kind, workers, factory) as (pool, utility, started):
        if pool is not None:
            while len(set(pool.map(warm, [0.5] * workers))) < workers:
                pass  # until every worker has answered one: each has built its utility
        setup = time.perf_counter() - started
        clock = time.perf_counter()
        values, fits = evaluate_many(utility, masks, pool)
        wall = time.perf_counter() - clock
        fits = utility.fits if utility is not None else fits
        cached = None
        if workers == 1:
            clock = time.perf_counter()
            again, _ = evaluate_many(utility, masks, pool)
            cached = (time.perf_counter() - clock) / len(masks)
            assert again == values
    return {
        "kind": kind, "workers": workers, "setup_s": setup, "wall_s": wall, "fits": fits,
        "fits_per_s": fits / wall, "cached_call_s": cached, "values": values,
    }  # fmt: skip


def summarize(runs: list[dict]) -> list[dict]:
    """Medians per configuration; for Dask, the medians of its per-round differences from
    local at the same worker count (neighbours in time: the machine's load drifts)."""
    rows = []
    for kind, workers in CONFIGS:
        mine = [r for r in runs if r["kind"] == kind and r["workers"] == workers]
        cached = [r["cached_call_s"] for r in mine if r["cached_call_s"] is not None]
        row = {
            "config": f"{kind} ×{workers}" if kind != "in-process" else kind,
            "kind": kind, "workers": workers,
            "fits_per_s": statistics.median(r["fits_per_s"] for r in mine),
            "s_per_fit": statistics.median(r["wall_s"] / r["fits"] for r in mine),
            "setup_s": statistics.median(r["setup_s"] for r in mine),
            "cached_call_ms": statistics.median(cached) * 1e3 if cached else None,
        }  # fmt: skip
        if kind == "dask":
            local = {
                r["round"]: r for r in runs if r["kind"] == "local" and r["workers"] == workers
            }
            pairs = [(r, local[r["round"]]) for r in mine]
            row["speed_vs_local"] = statistics.median(
                d["fits_per_s"] / here["fits_per_s"] for d, here in pairs
            )
            row["overhead_ms_per_fit"] = 1e3 * statistics.median(
                d["wall_s"] / d["fits"] - here["wall_s"] / here["fits"] for d, here in pairs
            )
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| executor | fits/s | ms per fit | ÷ local | overhead per fit | setup s | call, cached |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        overhead = r.get("overhead_ms_per_fit")
        lines.append(
            f"| {r['config']} | {r['fits_per_s']:.1f} | {r['s_per_fit'] * 1e3:.1f} | "
            + (
                f"{r['speed_vs_local']:.2f} | {overhead:+.1f} ms"
                if overhead is not None
                else "— | —"
            )
            + f" | {r['setup_s']:.2f} | "
            + (f"{r['cached_call_ms']:.2f} ms" if r["cached_call_ms"] is not None else "—")
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--players", type=int, default=10)
    parser.add_argument("--coalitions", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/dask_valuation.json")
    args = dry_run.parse_args(parser, argv)
    from benchmarks.attribution_bench import GROUP_VAL, group_data, machine

    x, y, player, xv, yv, _ = group_data(args.rows, args.players, GROUP_VAL, args.seed)
    arrays = {"x": x, "y": y, "player": player, "xv": xv, "yv": yv}
    factory = partial(shipped_utility, arrays)
    masks = coalitions(args.players, args.coalitions, args.seed + 1)
    load_before = os.getloadavg()[0]
    runs = []
    for round_ in range(args.rounds):
        for kind, workers in CONFIGS if round_ % 2 == 0 else CONFIGS[::-1]:
            run = measure(kind, workers, factory, masks) | {"round": round_}
            print(f"round {round_} {kind} ×{workers}: {run['fits_per_s']:.1f} fits/s", flush=True)
            runs.append(run)
    reference = runs[0]["values"]
    assert all(r["values"] == reference for r in runs), "utilities differ between executors"
    rows = summarize(runs)
    doc = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": machine(),
        "load_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "date": time.strftime("%Y-%m-%d"),
        "summary": rows,
        "runs": [{k: v for k, v in r.items() if k != "values"} for r in runs],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(table(rows))
    print(f"load {load_before:.2f} → {doc['load_1min']['after']:.2f}; utilities identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
