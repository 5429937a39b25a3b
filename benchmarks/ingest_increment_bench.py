"""Ingestion cost against history: 10,000 new rows into a Datanet already holding
1,000,000, against the same rows into an empty Datanet and a bare Delta append.

Targets (issue 15): ingest into the full Datanet <= 1.3x into the empty one, and
<= 2.5x a bare `write_deltalake(..., mode="append")` of the same rows (typed, read from
the same CSV). The data comes from benchmarks/ingest_bench.py's generator (9 float
features, 1 % bad rows, 0.1 % duplicates). Every measured step runs `ingest_step` — the
`ingest` asset without Dagster — on a fresh copy of its lake; the three variants
alternate, `--repeat` times, and the medians are compared.

    uv run python benchmarks/ingest_increment_bench.py --history 1000000 --new 10000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import dry_run  # noqa: E402
from benchmarks.ingest_bench import DATANET, make_rows, write_inbox  # noqa: E402


def ingest(lake_root: Path, files: int = 1) -> float:
    """Wall seconds of one ingest step on a lake (its inbox's `files` new files)."""
    from assets.datanets import load_spec
    from assets.layout import spec_path
    from ledger.lake import Lake
    from openledger_pipelines.ingestion import ingest_step

    store = Lake(lake_root)
    spec = load_spec(spec_path(lake_root, DATANET))
    start = time.perf_counter()
    step = ingest_step(store, spec, run_id="bench", code="bench")
    elapsed = time.perf_counter() - start
    assert step.result.batches.height == files, "exactly the new files are ingested"
    return elapsed


def bare(csv: Path, target: Path) -> float:
    """Wall seconds of reading the CSV typed and one `write_deltalake` append."""
    import polars as pl
    from deltalake import write_deltalake

    from benchmarks.ingest_bench import FEATURES, LABEL

    schema = {name: pl.Float64 for name, _, _ in FEATURES} | {LABEL: pl.Int64}
    start = time.perf_counter()
    frame = pl.read_csv(csv, schema_overrides=schema, null_values=["", "NaN", "n/a", "abc"])
    write_deltalake(str(target), frame, mode="append")
    return time.perf_counter() - start


def build(work: Path, history: int, new: int) -> dict[str, Path]:
    """Three lakes: history ingested + a new file pending; only the new file pending; and
    the new file's CSV for the bare write."""
    full, empty = work / "full", work / "empty"
    old, _ = make_rows(history, 1, 0.01, 0.001, max(history // 100, 1))
    fresh, _ = make_rows(new, 2, 0.01, 0.001, max(new // 10, 1))
    write_inbox(full, old, 100)
    ingest(full, files=100)
    write_inbox(full, fresh, 1)
    write_inbox(empty, fresh, 1)
    csv = work / "new.csv"
    fresh.write_csv(csv)
    return {"full": full, "empty": empty, "csv": csv}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/ingest_increment.json")
    args = dry_run.parse_args(parser, argv)
    work = Path(tempfile.mkdtemp(prefix="ingest-increment-"))
    start = time.perf_counter()
    lakes = build(work, args.history, args.new)
    print(f"built the lakes in {time.perf_counter() - start:.0f} s", flush=True)
    ingest(Path(shutil.copytree(lakes["empty"], work / "warm")))  # imports, numba kernels
    times: dict[str, list[float]] = {"into full": [], "into empty": [], "bare append": []}
    for run in range(args.repeat):
        for name, lake in (("into full", lakes["full"]), ("into empty", lakes["empty"])):
            copy = Path(shutil.copytree(lake, work / f"run{run}-{name.replace(' ', '-')}"))
            times[name].append(ingest(copy))
            shutil.rmtree(copy)
        times["bare append"].append(bare(lakes["csv"], work / f"bare{run}"))
        print(f"run {run + 1}/{args.repeat} (load {os.getloadavg()[0]:.2f})", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {
        "full / empty": medians["into full"] / medians["into empty"],
        "full / bare": medians["into full"] / medians["bare append"],
    }
    for name, value in medians.items():
        print(f"{name:<12} median {value:.3f} s  (runs {[round(v, 3) for v in times[name]]})")
    print(f"full / empty = {ratios['full / empty']:.2f} (target <= 1.3)")
    print(f"full / bare  = {ratios['full / bare']:.2f} (target <= 2.5)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "history": args.history,
                "new": args.new,
                "times": times,
                "medians": medians,
                "ratios": ratios,
            },
            indent=2,
        )
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
