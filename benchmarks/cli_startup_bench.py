"""CLI start-up: wall time of read-only `openledger` commands on the demo lake.

Each command is the installed console script run as a subprocess (its own wall time, no
`uv run` in front), `--runs` times, interleaved so machine noise spreads over all of them;
the median is compared with its target. Two baselines run in the same loop: a bare
interpreter start (`python -c pass`, the floor) and `import dagster` (what every command
paid when the CLI imported everything up front).

    uv run python benchmarks/cli_startup_bench.py --lake .openledger --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import dry_run  # noqa: E402

OPENLEDGER = str(Path(sys.executable).parent / "openledger")
TARGETS = {  # command -> target median seconds (issue 13)
    "--help": 0.5,
    "statement": 1.5,
    "sql": 1.5,
    "datanet list": 1.5,
    "verify-proof": 1.5,
}


def commands(lake: Path, proof: Path) -> dict[str, list[str]]:
    at = ["--lake", str(lake)]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import dagster": [sys.executable, "-c", "import dagster"],
        "--help": [OPENLEDGER, "--help"],
        "statement": [OPENLEDGER, "statement", "--contributor", "alice", "--epoch", "0", *at],
        "sql": [OPENLEDGER, "sql", "select count(*) from batches", *at],
        "datanet list": [OPENLEDGER, "datanet", "list", *at],
        "verify-proof": [OPENLEDGER, "verify-proof", str(proof)],
    }


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-500:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, default=Path(".openledger"), help="a demo lake")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/cli_startup.json")
    args = dry_run.parse_args(parser, argv)
    if not (args.lake / "ledger").is_dir():
        print(f"building the demo lake at {args.lake} ...", flush=True)
        subprocess.run([OPENLEDGER, "demo", "--lake", str(args.lake)], check=True)
    proof = args.lake / "reports" / "bench.proof.json"
    proof.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *(OPENLEDGER, "prove", "--lake", str(args.lake), "--table", "contributions_wine"),
            *("--key", "contributor=alice", "--key", "row_index=0", "--out", str(proof)),
        ],
        check=True,
        capture_output=True,
    )
    plan = commands(args.lake, proof)
    times: dict[str, list[float]] = {name: [] for name in plan}
    for run in range(args.runs):
        for name, command in plan.items():
            times[name].append(timed(command))
        print(f"run {run + 1}/{args.runs} done (load {os.getloadavg()[0]:.2f})", flush=True)
    floor = statistics.median(times["python -c pass"])
    rows = []
    print(f"\n{'command':<16}{'median s':>10}{'min s':>8}{'target':>8}{'x python':>10}  met")
    for name, values in times.items():
        median = statistics.median(values)
        target = TARGETS.get(name)
        met = "" if target is None else ("yes" if median <= target else "NO")
        rows.append({"command": name, "median_s": median, "min_s": min(values), "target_s": target})
        print(
            f"{name:<16}{median:>10.3f}{min(values):>8.3f}"
            f"{'' if target is None else f'{target:.1f}':>8}{median / floor:>10.1f}  {met}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "runs": args.runs,
                "load_after": os.getloadavg()[0],
                "rows": rows,
                "raw": times,
            },
            indent=2,
        )
    )
    return 0 if all(r["target_s"] is None or r["median_s"] <= r["target_s"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
