"""Exit status under repetition: every read command N times and the demo M times, each a
fresh process, two at a time; every status must be 0 and stderr free of C++ aborts.

Before `openledger` left through `os._exit`, `statement --json` aborted at interpreter exit
("terminate called without an active exception", status 134) in 5 of 12 runs on the demo
lake (issue 13). This script is the full protocol; tests/test_exit_status.py runs a
shorter one in the suite.

    uv run python benchmarks/exit_status_stress.py --lake .openledger --runs 50 --demos 5
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import dry_run  # noqa: E402

OPENLEDGER = str(Path(sys.executable).parent / "openledger")
ABORT = "terminate called"


def read_commands(lake: Path, proof: Path) -> dict[str, list[str]]:
    at = ["--lake", str(lake)]
    return {
        "statement --json": ["statement", "--contributor", "alice", "--epoch", "0", "--json", *at],
        "statement": ["statement", "--contributor", "alice", "--epoch", "0", *at],
        "sql": ["sql", "select count(*) from batches", *at],
        "datanet list": ["datanet", "list", *at],
        "tables": ["tables", *at],
        "epoch list": ["epoch", "list", *at],
        "verify-proof": ["verify-proof", str(proof)],
    }


def once(args: list[str]) -> tuple[int, bool]:
    """(exit status, whether stderr shows a C++ abort) of one fresh process."""
    result = subprocess.run([OPENLEDGER, *args], capture_output=True, text=True)
    return result.returncode, ABORT in result.stderr


def stress(lake: Path, runs: int, demos: int, workers: int = 2) -> dict[str, dict[str, int]]:
    """Counts of each exit status per command."""
    proof = Path(tempfile.mkdtemp()) / "row.proof.json"
    status, _ = once(
        [
            *("prove", "--lake", str(lake), "--table", "contributions_wine"),
            *("--key", "contributor=alice", "--key", "row_index=0", "--out", str(proof)),
        ]
    )
    assert status == 0, "could not make a proof on the lake"
    jobs = [(name, argv) for name, argv in read_commands(lake, proof).items() for _ in range(runs)]
    jobs += [("demo", ["demo", "--lake", str(lake)])] * demos
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    with ThreadPoolExecutor(workers) as pool:
        outcomes = pool.map(lambda job: once(job[1]), jobs)
        for (name, _), (code, aborted) in zip(jobs, outcomes, strict=True):
            counts[name][f"exit {code}" + (" (abort)" if aborted else "")] += 1
    return {name: dict(c) for name, c in counts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, default=Path(".openledger"))
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--demos", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/exit_status.json")
    args = dry_run.parse_args(parser, argv)
    if not (args.lake / "ledger").is_dir():
        subprocess.run([OPENLEDGER, "demo", "--lake", str(args.lake)], check=True)
    counts = stress(args.lake, args.runs, args.demos)
    print(json.dumps(counts, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(counts, indent=2))
    return 0 if all(set(c) == {"exit 0"} for c in counts.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
