"""The `openledger` command line: thin commands over the `ledger` and `assets` functions.

Every command takes `--lake PATH` (default: $OPENLEDGER_LAKE, else `.openledger/` in the
working directory). Expected failures (bad names, missing files, tables or versions,
malformed proofs or keys) print one clear line to stderr and exit with status 2; a failed
verification or run exits with status 1.

Commands live in one module per group (ingest, model, rewards, ledger, governance); each
imports its heavy libraries inside the command, so start-up stays fast.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys
import traceback

import typer

from openledger_pipelines.cli import (
    governance_cmds,
    ingest_cmds,
    ledger_cmds,
    model_cmds,
    rewards_cmds,
)

app = typer.Typer(
    help="OpenLedger Pipelines: verifiable data attribution over a Delta lake.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
for group in (ingest_cmds, model_cmds, rewards_cmds, ledger_cmds, governance_cmds):
    group.register(app)


# Commands that only read the lake: they never need pandas, which pyarrow's dataset module
# imports eagerly when it is installed (a second of start-up; docs/benchmarks.md).
READ_ONLY = {
    ("statement",),
    ("sql",),
    ("tables",),
    ("verify-proof",),
    ("verify",),
    ("prove",),
    ("consistency",),
    ("datanet", "list"),
    ("epoch", "list"),
    ("contributor", "list"),
}


class _NoPandas(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes `import pandas` fail with ImportError, so pyarrow treats pandas as absent."""

    def find_spec(
        self, name: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name == "pandas" or name.startswith("pandas."):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        raise ImportError("pandas is not loaded by read-only openledger commands")

    def exec_module(self, module: object) -> None:  # pragma: no cover - never reached
        raise ImportError("pandas is not loaded by read-only openledger commands")


def _skip_pandas(argv: list[str]) -> None:
    """For a read-only command in its own process, keep pandas out (it is never used)."""
    words = tuple(a for a in argv[:2] if not a.startswith("-"))
    if "pandas" not in sys.modules and any(words[: len(c)] == c for c in READ_ONLY):
        sys.meta_path.insert(0, _NoPandas())


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()


def main() -> None:
    """Run a command, then exit with its status without interpreter teardown.

    Background threads of pyarrow dataset scans and delta-rs can outlive the command and
    abort the process while C++ destructors run at exit ("terminate called without an
    active exception", status 134, apache/arrow#34314, delta-io/delta-rs#2184). The work
    is done and flushed by then, so we leave with `os._exit` and the command's own status.
    """
    code = 0
    _skip_pandas(sys.argv[1:])
    try:
        app()
    except SystemExit as exc:
        if isinstance(exc.code, int):
            code = exc.code
        elif exc.code is not None:
            sys.stderr.write(f"{exc.code}\n")
            code = 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        logging.shutdown()
        _flush()
    os._exit(code)


if __name__ == "__main__":
    main()
