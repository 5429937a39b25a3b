"""Ledger append cost against ledger size: an append reads the last entry, not the ledger.

Builds lakes whose ledgers hold `--sizes` entries (written in bulk, chained exactly as
appends chain them, then compacted as `Ledger.compact` does every COMPACT_EVERY entries),
then times, alternating between the sizes: `Ledger.append` of one entry, a 3-row
snapshot `Lake.write`, and a 3-row log `Lake.append`. Target (issue 15): at 100,000
entries each costs <= 1.5x what it costs at 100.

    uv run python benchmarks/ledger_append_bench.py --sizes 100 100000 --repeat 15
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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import dry_run  # noqa: E402
from ledger.compact import CompactRange  # noqa: E402
from ledger.hashing import EMPTY_ROOT  # noqa: E402
from ledger.lake import Lake  # noqa: E402
from ledger.log import LEDGER_SCHEMA, LEDGER_VERSION, entry_leaf  # noqa: E402
from ledger.proofcheck import leaf_hash  # noqa: E402

TABLES = 40  # entries spread over this many tables, 4 partitions each


def synthetic_entries(n: int) -> pa.Table:
    """n chained ledger entries of snapshot commits, as appends would write them."""
    rows, log, prev = [], CompactRange.empty(), EMPTY_ROOT.hex()
    when = datetime(2026, 1, 1, tzinfo=UTC)
    for seq in range(n):
        values: dict[str, object] = {
            "seq": seq,
            "ledger_version": LEDGER_VERSION,
            "entry_type": "commit",
            "asset_key": f"t{seq % TABLES}",
            "partition_key": f"p{seq % 4}",
            "partition_column": "datanet",
            "table_uri": f"tables/t{seq % TABLES}",
            "table_kind": "snapshot",
            "delta_version": seq // TABLES,
            "encoding_version": 1,
            "schema_hash": "00" * 32,
            "row_key": "",
            "old_row_count": 0,
            "row_count": 3,
            "data_root": "11" * 32,
            "data_range": "",
            "superseded": "",
            "prev_log_root": prev,
            "run_id": "bench",
            "code_version": "bench",
            "committed_at": when,
            "note": "",
        }
        digest = leaf_hash(entry_leaf(values))
        log = log.extend(np.frombuffer(digest, np.uint8).reshape(1, 32))
        values |= {
            "entry_hash": digest.hex(),
            "log_root": log.root().hex(),
            "log_range": log.text(),
        }
        prev = values["log_root"]  # type: ignore[assignment]
        rows.append(values)
    return pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)


def build_lake(folder: Path, n: int) -> Lake:
    from deltalake import write_deltalake

    lake = Lake(folder)
    table = synthetic_entries(n)
    for start in range(0, n, 10_000):
        write_deltalake(lake.ledger.uri, table.slice(start, 10_000), mode="append")
    lake.ledger.compact()
    return lake


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 100_000])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/ledger_append.json")
    args = dry_run.parse_args(parser, argv)
    work = Path(tempfile.mkdtemp(prefix="ledger-append-"))
    lakes = {}
    for n in args.sizes:
        start = time.perf_counter()
        lakes[n] = build_lake(work / f"lake{n}", n)
        print(f"built a ledger of {n:,} entries in {time.perf_counter() - start:.1f} s", flush=True)
    small = pa.table({"datanet": ["wine"] * 3, "x": [1.0, 2.0, 3.0]})
    times: dict[str, dict[int, list[float]]] = {"append": {}, "write": {}, "log": {}}
    for _ in range(args.repeat):
        for n, lake in lakes.items():
            head = lake.ledger.head()
            assert head is not None
            times["append"].setdefault(n, []).append(
                timed(
                    lambda lake=lake, head=head: lake.ledger.append(
                        asset_key="x",
                        partition_key=None,
                        partition_column=None,
                        table_uri="tables/x",
                        table_kind="snapshot",
                        delta_version=0,
                        schema_hash=head.schema_hash,
                        row_key="",
                        old_row_count=0,
                        row_count=0,
                        data_root=EMPTY_ROOT.hex(),
                        data_range="",
                        run_id="bench",
                        code_version="bench",
                    )
                )
            )
            times["write"].setdefault(n, []).append(
                timed(lambda lake=lake: lake.write("small", small, partition=("datanet", "wine")))
            )
            times["log"].setdefault(n, []).append(
                timed(lambda lake=lake: lake.append("events", small, partition=("datanet", "wine")))
            )
    base = min(args.sizes)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": []}
    print(f"\n{'operation':<10}{'entries':>10}{'median ms':>11}{'x at ' + str(base):>10}")
    for op, per in times.items():
        for n, values in per.items():
            median = statistics.median(values)
            ratio = median / statistics.median(per[base])
            result["rows"].append({"op": op, "entries": n, "median_s": median, "ratio": ratio})
            print(f"{op:<10}{n:>10,}{median * 1000:>11.1f}{ratio:>10.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
