"""The `openledger` command line: thin commands over the `ledger` (and later `assets`) functions.

Every command takes `--lake PATH` (default: $OPENLEDGER_LAKE, else `.openledger/` in the
working directory). Expected failures (bad names, missing tables or versions, malformed
proofs or keys) print one clear line to stderr and exit with status 2; a failed
verification exits with status 1.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import duckdb
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ledger import checkpoint as ckpt
from ledger.encoding import UnsupportedTypeError
from ledger.lake import Lake, LakeError
from ledger.log import LedgerError
from ledger.proofcheck import check_proof_document
from ledger.proofs import consistency_proof_document, inclusion_proof_document
from ledger.sql import connect
from ledger.verify import verify_lake
from openledger_pipelines.version import code_version

app = typer.Typer(
    help="OpenLedger Pipelines: verifiable data attribution over a Delta lake.",
    no_args_is_help=True,
    add_completion=False,
)
checkpoint_app = typer.Typer(
    help="Signed checkpoints (C2SP tlog-checkpoint) of the ledger.", no_args_is_help=True
)
app.add_typer(checkpoint_app, name="checkpoint")

out = Console()
err = Console(stderr=True)

LakeOption = Annotated[
    Path,
    typer.Option(
        "--lake",
        envvar="OPENLEDGER_LAKE",
        help="Lake root folder (env OPENLEDGER_LAKE).",
        show_default=True,
    ),
]
DEFAULT_LAKE = Path(".openledger")
USER_ERRORS: tuple[type[Exception], ...] = (
    LakeError,
    LedgerError,
    ckpt.CheckpointError,
    UnsupportedTypeError,
    duckdb.Error,
    OSError,
    ValueError,
    KeyError,
)
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn expected failures into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except USER_ERRORS as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def open_lake(lake: Path) -> Lake:
    return Lake(lake)


def _parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"{what} must look like name=value, got {pair!r}")
        parsed[name] = value
    return parsed


def _write_json(doc: dict[str, Any], path: Path | None) -> None:
    text = json.dumps(doc, indent=2, sort_keys=False)
    if path is None:
        out.print_json(text)
    else:
        path.write_text(text + "\n", encoding="utf-8")
        err.print(f"wrote {path}")


@app.command()
@friendly_errors
def verify(
    lake: LakeOption = DEFAULT_LAKE,
    data: Annotated[bool, typer.Option(help="Recompute every table's data root.")] = True,
) -> None:
    """Recompute every ledger entry, hash, log root and data root; exit 1 on a mismatch."""
    target = open_lake(lake)
    with Progress(
        TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("verify", total=None)
        report = verify_lake(
            target,
            check_data=data,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if report.ok:
        out.print(
            f"[green]OK[/]: {report.entries} ledger entries verified, "
            f"{report.rows_checked} rows recomputed"
        )
        return
    out.print(f"[bold red]FAILED[/]: first problem: {report.first}", highlight=False)
    for problem in report.problems:
        out.print(f"  - {problem}", highlight=False)
    raise typer.Exit(1)


@app.command()
@friendly_errors
def prove(
    table: Annotated[str, typer.Option(help="Table name, e.g. contributions.")],
    key: Annotated[list[str], typer.Option(help="column=value selecting the row (repeat).")],
    lake: LakeOption = DEFAULT_LAKE,
    version: Annotated[int | None, typer.Option(help="Delta version (default: latest).")] = None,
    partition: Annotated[str | None, typer.Option(help="Partition key (e.g. Datanet).")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="Write the proof here.")] = None,
) -> None:
    """Inclusion proof (self-contained JSON) that a row is in a committed table version."""
    doc = inclusion_proof_document(
        open_lake(lake),
        table,
        _parse_pairs(key, "--key"),
        version=version,
        partition_key=partition,
    )
    _write_json(doc, output)


@app.command("verify-proof")
@friendly_errors
def verify_proof(
    proof: Annotated[Path, typer.Argument(help="Proof JSON file.")],
) -> None:
    """Check an inclusion or consistency proof (standard library only, no lake needed)."""
    try:
        doc = json.loads(proof.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{proof} is not JSON: {exc}") from exc
    ok, message = check_proof_document(doc)
    if not ok:
        out.print(f"[bold red]FAIL[/]: {message}", highlight=False)
        raise typer.Exit(1)
    out.print(f"[green]OK[/]: {message}", highlight=False)


@app.command()
@friendly_errors
def consistency(
    old: Annotated[int, typer.Option(help="Earlier ledger size (entries).")],
    lake: LakeOption = DEFAULT_LAKE,
    new: Annotated[int | None, typer.Option(help="Later size (default: current).")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="Write the proof here.")] = None,
) -> None:
    """Proof that the ledger at size OLD is a prefix of the ledger at size NEW."""
    _write_json(consistency_proof_document(open_lake(lake), old, new), output)


@app.command()
@friendly_errors
def sql(
    query: Annotated[str, typer.Argument(help="SQL over the lake's tables and `ledger`.")],
    lake: LakeOption = DEFAULT_LAKE,
    at: Annotated[list[str] | None, typer.Option(help="table=version to time-travel.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Rows as JSON lines.")] = False,
) -> None:
    """Run DuckDB SQL over every table of the lake (one view per table, plus `ledger`)."""
    versions = {name: int(v) for name, v in _parse_pairs(at or [], "--at").items()}
    result = connect(open_lake(lake), versions).sql(query)
    if result is None:
        return
    rows = result.fetchall()
    if as_json:
        for row in rows:
            print(json.dumps(dict(zip(result.columns, row, strict=True)), default=str))
        return
    grid = Table(*result.columns)
    for row in rows:
        grid.add_row(*("" if v is None else str(v) for v in row))
    out.print(grid)


def _default_key_path(lake: Path) -> Path:
    return lake / "keys" / "checkpoint.key"


@checkpoint_app.command("keygen")
@friendly_errors
def checkpoint_keygen(
    name: Annotated[str, typer.Option(help="Key name, e.g. ledger.example.org.")],
    lake: LakeOption = DEFAULT_LAKE,
    key: Annotated[Path | None, typer.Option(help="Signer key file to create.")] = None,
) -> None:
    """Create an Ed25519 signing key; prints the verifier key to publish."""
    path = key or _default_key_path(lake)
    if path.exists():
        raise ValueError(f"{path} exists; refusing to overwrite a signing key")
    signer, verifier = ckpt.generate_keys(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(signer + "\n", encoding="utf-8")
    path.chmod(0o600)
    path.with_suffix(".pub").write_text(verifier + "\n", encoding="utf-8")
    out.print(verifier, highlight=False)


@checkpoint_app.command("sign")
@friendly_errors
def checkpoint_sign(
    lake: LakeOption = DEFAULT_LAKE,
    key: Annotated[Path | None, typer.Option(help="Signer key file.")] = None,
    origin: Annotated[str | None, typer.Option(help="Log origin line.")] = None,
    size: Annotated[int | None, typer.Option(help="Ledger size (default: all).")] = None,
) -> None:
    """Print a signed checkpoint (size + log root) of the ledger."""
    entries = open_lake(lake).ledger.entries()
    signer = (key or _default_key_path(lake)).read_text(encoding="utf-8")
    origin = origin or f"openledger/{lake.resolve().name}"
    sys.stdout.write(ckpt.sign_checkpoint(ckpt.checkpoint_of(entries, origin, size), signer))


@checkpoint_app.command("verify")
@friendly_errors
def checkpoint_verify(
    note: Annotated[Path, typer.Argument(help="Signed checkpoint file.")],
    verifier: Annotated[str, typer.Option(help="Verifier key, or a file holding it.")],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Check a checkpoint's signature and that the ledger still has its root at its size."""
    key_text = Path(verifier).read_text(encoding="utf-8") if Path(verifier).is_file() else verifier
    checkpoint = ckpt.open_checkpoint(note.read_text(encoding="utf-8"), key_text)
    ckpt.check_against_ledger(checkpoint, open_lake(lake).ledger.entries())
    out.print(f"[green]OK[/]: signed checkpoint of size {checkpoint.size} matches the ledger")


@app.command()
@friendly_errors
def demo(lake: LakeOption = DEFAULT_LAKE) -> None:
    """Run the main job on the embedded demo data and print a summary."""
    from openledger_pipelines.demo import run_demo

    if not run_demo(open_lake(lake), out, code_version=code_version()):
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
