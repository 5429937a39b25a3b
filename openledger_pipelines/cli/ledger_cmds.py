"""Ledger commands: verify, prove, verify-proof, consistency, checkpoints, sql, tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from openledger_pipelines.cli._common import (
    DEFAULT_LAKE,
    LakeOption,
    err,
    friendly_errors,
    open_lake,
    out,
    parse_pairs,
    resolve_id,
    write_json,
)

OutOption = Annotated[
    Path | None, typer.Option("--out", metavar="FILE", help="Write the proof here.")
]

checkpoint_app = typer.Typer(
    help="Signed checkpoints (C2SP tlog-checkpoint) of the ledger.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    for name, command in (
        ("verify", verify),
        ("prove", prove),
        ("verify-proof", verify_proof),
        ("consistency", consistency),
        ("sql", sql),
        ("tables", tables),
    ):
        app.command(name)(command)
    app.add_typer(checkpoint_app, name="checkpoint")


@friendly_errors
def verify(
    lake: LakeOption = DEFAULT_LAKE,
    data: Annotated[bool, typer.Option(help="Recompute every table's data root.")] = True,
) -> None:
    """Recompute every ledger entry, hash, log root and data root; exit 1 on a mismatch."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ledger.verify import verify_lake

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


def model_ids(lake: str) -> list[str]:
    """Every model id in the lake's `models` table (none if there is no such table)."""
    from ledger.sql import rows_where

    return [str(r["model_id"]) for r in rows_where(open_lake(lake), "models", "true", [])]


@friendly_errors
def prove(
    lake: LakeOption = DEFAULT_LAKE,
    table: Annotated[
        str | None,
        typer.Option(metavar="TABLE", help="Table name, e.g. contributions_wine (see `tables`)."),
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option(metavar="COLUMN=VALUE", help="Selects the row (repeat for more columns)."),
    ] = None,
    version: Annotated[
        int | None, typer.Option(metavar="N", help="Delta version (default: latest).")
    ] = None,
    partition: Annotated[
        str | None, typer.Option(metavar="KEY", help="Partition key (e.g. a Datanet name).")
    ] = None,
    contributor: Annotated[
        str | None, typer.Option(metavar="ID", help="With --model: prove this contributor's rows.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(metavar="ID", help="Model id or a unique prefix of 8+ characters."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(metavar="N", help="With --contributor: at most N rows.")
    ] = None,
    output: OutOption = None,
) -> None:
    """Inclusion proof (self-contained JSON): a row in a committed table version
    (--table/--key), or a contributor's rows in a model's training set (--contributor/--model)."""
    from assets.names import check_contributor_id
    from ledger.proofs import contributor_proof_document, inclusion_proof_document

    if contributor is not None or model is not None:
        if contributor is None or model is None or table is not None or key:
            raise ValueError("give --contributor and --model together (and no --table/--key)")
        model_id = resolve_id(model, model_ids(lake), "model")
        doc = contributor_proof_document(
            open_lake(lake), check_contributor_id(contributor), model_id, limit
        )
    elif table is None or not key:
        raise ValueError("give --table and --key, or --contributor and --model")
    else:
        doc = inclusion_proof_document(
            open_lake(lake),
            table,
            parse_pairs(key, "--key"),
            version=version,
            partition_key=partition,
        )
    write_json(doc, output)


@friendly_errors
def verify_proof(
    proof: Annotated[Path, typer.Argument(metavar="FILE", help="Proof JSON file.")],
) -> None:
    """Check an inclusion or consistency proof (standard library only, no lake needed)."""
    from ledger.proofcheck import check_proof_document

    try:
        doc = json.loads(proof.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{proof} is not JSON: {exc}") from exc
    ok, message = check_proof_document(doc)
    if not ok:
        out.print(f"[bold red]FAIL[/]: {message}", highlight=False)
        raise typer.Exit(1)
    out.print(f"[green]OK[/]: {message}", highlight=False)


@friendly_errors
def consistency(
    old: Annotated[
        int,
        typer.Option(
            metavar="N", help="Earlier ledger size (entries); with --table, a Delta version."
        ),
    ],
    lake: LakeOption = DEFAULT_LAKE,
    new: Annotated[
        int | None, typer.Option(metavar="N", help="Later size or version (default: latest).")
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(
            metavar="TABLE", help="A log table: prove its version OLD is a prefix of NEW."
        ),
    ] = None,
    partition: Annotated[
        str | None, typer.Option(metavar="KEY", help="With --table: the partition (a Datanet).")
    ] = None,
    output: OutOption = None,
) -> None:
    """Proof that the ledger at size OLD is a prefix of the ledger at size NEW; with
    --table, that a log table's rows at version OLD are the first rows at version NEW."""
    from ledger.proofs import consistency_proof_document, table_consistency_proof_document

    if table is not None:
        doc = table_consistency_proof_document(open_lake(lake), table, old, new, partition)
    elif partition is not None:
        raise ValueError("--partition needs --table")
    else:
        doc = consistency_proof_document(open_lake(lake), old, new)
    write_json(doc, output)


OUT_FORMATS = (".csv", ".parquet", ".jsonl", ".json")


@friendly_errors
def sql(
    query: Annotated[
        str, typer.Argument(metavar="QUERY", help="SQL over the lake's tables and `ledger`.")
    ],
    lake: LakeOption = DEFAULT_LAKE,
    at: Annotated[
        list[str] | None,
        typer.Option(metavar="TABLE=VERSION", help="Read a table at a Delta version (repeat)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Rows as JSON lines.")] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="FILE", help="Write the rows to FILE (.csv, .parquet or .jsonl)."
        ),
    ] = None,
) -> None:
    """Run read-only DuckDB SQL over every table of the lake (one view per table, plus
    `ledger`). SQL cannot touch files: results go to stdout, or to --out."""
    from ledger.sql import check_read_only, connect, tables_named

    if output is not None and output.suffix not in OUT_FORMATS:
        raise ValueError(f"--out {output}: use a file ending in {', '.join(OUT_FORMATS)}")
    check_read_only(query)
    versions = {}
    for name, text in parse_pairs(at or [], "--at").items():
        try:
            versions[name] = int(text)
        except ValueError:
            raise ValueError(f"--at {name}={text}: the version must be a number") from None
    con = connect(open_lake(lake), versions, tables_named(query))
    try:
        result = con.sql(query)
        if result is None:
            return
        if output is not None:
            _write_rows(result.arrow(), output)
            return
        columns, rows = result.columns, result.fetchall()
    finally:
        con.close()
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(dict(zip(columns, row, strict=True)), default=str) + "\n")
        return
    from rich.table import Table

    grid = Table(*columns)
    for row in rows:
        grid.add_row(*("" if v is None else str(v) for v in row))
    out.print(grid)


def _write_rows(table: object, path: Path) -> None:
    """Query results to a file the CLI writes (never DuckDB): CSV, Parquet or JSON Lines."""
    import pyarrow as pa

    rows = table.read_all() if isinstance(table, pa.RecordBatchReader) else table
    assert isinstance(rows, pa.Table)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(rows, path)
    elif path.suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(rows, path)
    else:
        with path.open("w", encoding="utf-8") as fh:
            for row in rows.to_pylist():
                fh.write(json.dumps(row, default=str) + "\n")
    err.print(f"wrote {rows.num_rows} rows to {path}", highlight=False)


@friendly_errors
def tables(
    lake: LakeOption = DEFAULT_LAKE,
    as_json: Annotated[bool, typer.Option("--json", help="Rows as JSON lines.")] = False,
) -> None:
    """The lake's tables (what `sql` and `prove --table` can name), with versions and rows."""
    rows = open_lake(lake).table_summaries()
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    from rich.table import Table

    grid = Table("table", "latest version", "rows", "ledger entries")
    for row in rows:
        grid.add_row(
            str(row["table"]), str(row["version"]), str(row["rows"]), str(row["ledger_entries"])
        )
    out.print(grid)
    if not rows:
        err.print("no tables yet: run `openledger demo` or `openledger run`", highlight=False)


def _default_key_path(lake: str) -> Path:
    """The checkpoint signer key: in the lake's keys folder, on this machine."""
    return open_lake(lake).location.keys_folder() / "checkpoint.key"


@checkpoint_app.command("keygen")
@friendly_errors
def checkpoint_keygen(
    name: Annotated[str, typer.Option(metavar="NAME", help="Key name, e.g. ledger.example.org.")],
    lake: LakeOption = DEFAULT_LAKE,
    key: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Signer key file to create.")
    ] = None,
) -> None:
    """Create an Ed25519 signing key; prints the verifier key to publish."""
    from ledger import checkpoint as ckpt

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
    key: Annotated[Path | None, typer.Option(metavar="FILE", help="Signer key file.")] = None,
    origin: Annotated[str | None, typer.Option(metavar="TEXT", help="Log origin line.")] = None,
    size: Annotated[
        int | None, typer.Option(metavar="N", help="Ledger size (default: all).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Write the checkpoint here.")
    ] = None,
) -> None:
    """Print (or write) a signed checkpoint (size + log root) of the ledger."""
    from ledger import checkpoint as ckpt

    entries = open_lake(lake).ledger.entries()
    signer = (key or _default_key_path(lake)).read_text(encoding="utf-8")
    origin = origin or f"openledger/{open_lake(lake).location.display_name}"
    note = ckpt.sign_checkpoint(ckpt.checkpoint_of(entries, origin, size), signer)
    if output is None:
        sys.stdout.write(note)
        return
    output.write_text(note, encoding="utf-8")
    err.print(f"wrote {output}", highlight=False)


@checkpoint_app.command("verify")
@friendly_errors
def checkpoint_verify(
    note: Annotated[Path, typer.Argument(metavar="FILE", help="Signed checkpoint file.")],
    verifier: Annotated[
        str, typer.Option(metavar="KEY", help="Verifier key, or a file holding it.")
    ],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Check a checkpoint's signature and that the ledger still has its root at its size."""
    from ledger import checkpoint as ckpt

    key_text = Path(verifier).read_text(encoding="utf-8") if Path(verifier).is_file() else verifier
    checkpoint = ckpt.open_checkpoint(note.read_text(encoding="utf-8"), key_text)
    ckpt.check_against_ledger(checkpoint, open_lake(lake).ledger.entries())
    out.print(f"[green]OK[/]: signed checkpoint of size {checkpoint.size} matches the ledger")
