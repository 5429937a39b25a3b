"""What every command shares: consoles, the `--lake` option, errors, ids and output.

Only the standard library, typer and rich are imported here: each command imports what it
needs (Dagster, DuckDB, deltalake, ...) inside its own body, so `--help` and the read
commands start fast (docs/benchmarks.md, "CLI start-up").
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from ledger.lake import Lake
    from ledger.storage import LakePath

# Without a terminal (a pipe or a file), print full values: no 80-column cut.
PIPE_WIDTH = 100_000


def make_console(stderr: bool = False) -> Console:
    """A console that wraps to the terminal, or never wraps when writing to a pipe/file."""
    stream = sys.stderr if stderr else sys.stdout
    interactive = hasattr(stream, "isatty") and stream.isatty()
    return Console(stderr=stderr, width=None if interactive else PIPE_WIDTH)


out = make_console()
err = make_console(stderr=True)

DEFAULT_LAKE = ".openledger"
LakeOption = Annotated[
    str,
    typer.Option(
        "--lake",
        envvar="OPENLEDGER_LAKE",
        metavar="PATH|URI",
        help="Lake root: a folder or s3://bucket/prefix (env OPENLEDGER_LAKE).",
        show_default=True,
    ),
]
DatanetOption = Annotated[str, typer.Option(metavar="NAME", help="Datanet name.")]
DatanetsOption = Annotated[
    list[str] | None,
    typer.Option("--datanet", metavar="NAME", help="Only this Datanet (repeat; default: all)."),
]
ContributorOption = Annotated[str, typer.Option(metavar="ID", help="Contributor id.")]
LogLevelOption = Annotated[
    str, typer.Option(metavar="LEVEL", help="Dagster console log level (DEBUG, INFO, WARNING).")
]

F = TypeVar("F", bound=Callable[..., Any])

# Expected failures, by module and class name: checked only if the module was imported
# (an exception can only come from a module that ran), so this imports nothing heavy.
USER_ERROR_TYPES = (
    ("assets.names", "SpecError"),
    ("ledger.lake", "LakeError"),
    ("ledger.log", "LedgerError"),
    ("assets.receipts", "ReceiptError"),
    ("ledger.checkpoint", "CheckpointError"),
    ("ledger.encoding", "UnsupportedTypeError"),
    ("duckdb", "Error"),
)


def is_user_error(exc: BaseException) -> bool:
    """A failure the user can fix from a one-line message (bad name, missing file, ...)."""
    if isinstance(exc, OSError | ValueError | KeyError):
        return True
    for module, name in USER_ERROR_TYPES:
        loaded = sys.modules.get(module)
        kind = getattr(loaded, name, None) if loaded is not None else None
        if isinstance(kind, type) and isinstance(exc, kind):
            return True
    return False


def error_message(exc: BaseException) -> str:
    """One line naming what went wrong (an OSError names its path, not just an errno)."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc.__class__.__name__}: {exc.filename}"
    return str(exc)


def friendly_errors(func: F) -> F:
    """Turn expected failures into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:
            if not is_user_error(exc):
                raise
            err.print(f"[bold red]error:[/] {error_message(exc)}", highlight=False, markup=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def open_lake(lake: str) -> Lake:
    from ledger.lake import Lake

    return Lake(lake)


def lake_root(lake: str) -> LakePath:
    """The lake's files (specs, inbox, registrations), on a folder or a bucket."""
    return open_lake(lake).root_path()


def parse_pairs(pairs: Iterable[str], what: str) -> dict[str, str]:
    """`name=value` options as a dict; anything else is a clear error."""
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"{what} must look like name=value, got {pair!r}")
        parsed[name] = value
    return parsed


def write_json(doc: Any, path: Path | None) -> None:
    """JSON to stdout, or to a file (saying so on stderr)."""
    text = json.dumps(doc, indent=2, default=str)
    if path is None:
        sys.stdout.write(text + "\n")
        return
    path.write_text(text + "\n", encoding="utf-8")
    err.print(f"wrote {path}", highlight=False)


MIN_ID_PREFIX = 8


def resolve_id(prefix: str, candidates: Iterable[str], what: str) -> str:
    """The one id of `candidates` starting with `prefix` (at least 8 hex characters).

    The one rule for every id the commands take (models, proposals, runs): any unique
    prefix of 8 or more characters; an ambiguous prefix lists its matches."""
    wanted = prefix.strip().lower()
    if len(wanted) < MIN_ID_PREFIX or any(c not in "0123456789abcdef" for c in wanted):
        raise ValueError(
            f"{what} id {prefix!r}: give at least {MIN_ID_PREFIX} hex characters of the id"
        )
    matches = sorted({c for c in candidates if c.lower().startswith(wanted)})
    if not matches:
        raise ValueError(f"no {what} with id {prefix!r}")
    if len(matches) > 1:
        raise ValueError(f"{what} id {prefix!r} is ambiguous: {', '.join(matches)}")
    return matches[0]
