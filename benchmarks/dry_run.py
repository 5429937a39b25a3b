"""`OPENLEDGER_BENCH_DRY_RUN=1`: parse a benchmark's arguments, print them, stop.

The docs test runs every benchmark command documented in docs/ this way, so a documented
flag that no longer exists fails a test instead of a reader's half-hour run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def parse_args(
    parser: argparse.ArgumentParser, argv: list[str] | None = None
) -> argparse.Namespace:
    """`parser.parse_args(argv)`, exiting 0 right after when the dry-run variable is set."""
    args = parser.parse_args(argv)
    if os.environ.get("OPENLEDGER_BENCH_DRY_RUN"):
        print(f"dry run of {parser.prog}: " + json.dumps(vars(args), default=str, sort_keys=True))
        sys.exit(0)
    return args
