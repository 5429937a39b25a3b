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
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import duckdb
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from assets.datanets import SpecError, check_contributor_id, check_datanet_name
from assets.layout import (
    Registration,
    install_spec,
    new_contributor_key,
    registrations,
    spec_names,
    submit,
    write_registration,
)
from ledger import checkpoint as ckpt
from ledger.encoding import UnsupportedTypeError
from ledger.lake import Lake, LakeError
from ledger.log import LedgerError
from ledger.proofcheck import check_proof_document
from ledger.proofs import (
    consistency_proof_document,
    contributor_proof_document,
    inclusion_proof_document,
)
from ledger.sql import connect, rows_where
from ledger.verify import verify_lake
from openledger_pipelines.statements import payouts_table, statement_rows, statement_table
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
datanet_app = typer.Typer(help="Datanet specs: create and list.", no_args_is_help=True)
app.add_typer(datanet_app, name="datanet")
contributor_app = typer.Typer(help="Contributors and their signing keys.", no_args_is_help=True)
app.add_typer(contributor_app, name="contributor")
model_app = typer.Typer(help="Trained models.", no_args_is_help=True)
app.add_typer(model_app, name="model")

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
    SpecError,
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
    lake: LakeOption = DEFAULT_LAKE,
    table: Annotated[str | None, typer.Option(help="Table name, e.g. contributions.")] = None,
    key: Annotated[
        list[str] | None, typer.Option(help="column=value selecting the row (repeat).")
    ] = None,
    version: Annotated[int | None, typer.Option(help="Delta version (default: latest).")] = None,
    partition: Annotated[str | None, typer.Option(help="Partition key (e.g. Datanet).")] = None,
    contributor: Annotated[
        str | None, typer.Option(help="With --model: prove this contributor's rows.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model id (see `model show`).")] = None,
    limit: Annotated[
        int | None, typer.Option(help="With --contributor: at most this many rows.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--out", help="Write the proof here.")] = None,
) -> None:
    """Inclusion proof (self-contained JSON): a row in a committed table version
    (--table/--key), or a contributor's rows in a model's training set (--contributor/--model)."""
    if contributor is not None or model is not None:
        if contributor is None or model is None or table is not None or key:
            raise ValueError("give --contributor and --model together (and no --table/--key)")
        doc = contributor_proof_document(
            open_lake(lake), check_contributor_id(contributor), model, limit
        )
    elif table is None or not key:
        raise ValueError("give --table and --key, or --contributor and --model")
    else:
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


@datanet_app.command("create")
@friendly_errors
def datanet_create(
    spec: Annotated[Path, typer.Argument(help="Datanet spec file (YAML or JSON).")],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Validate a spec and publish it with the validation file it names (relative to the
    spec); a changed spec or validation file becomes a new version."""
    from assets.datanets import read_spec_text
    from assets.layout import SPECS, validation_copy, validation_sha256

    root = open_lake(lake).root_path()
    parsed, changed = install_spec(root, read_spec_text(spec), str(spec), base=spec.parent)
    state = "published" if changed else "unchanged"
    out.print(f"{parsed.name}: {state}, spec hash {parsed.spec_hash()}", highlight=False)
    if parsed.validation.kind == "file":
        copy = validation_copy(root / SPECS, parsed)
        sha = validation_sha256(root / SPECS, parsed)
        out.print(f"validation file {copy.relative_to(root)}, sha256 {sha}", highlight=False)


@datanet_app.command("list")
@friendly_errors
def datanet_list(lake: LakeOption = DEFAULT_LAKE) -> None:
    """Datanets with a spec, their versions and what has been ingested."""
    target = open_lake(lake)
    con = connect(target)
    tables = set(target.table_names())
    grid = Table(
        "datanet", "spec versions", "contributors", "accepted rows", "quarantined", "duplicates"
    )
    for name in spec_names(target.root_path()):

        def count(sql: str, table: str, name: str = name) -> str:
            if table not in tables:
                return "0"
            return str(con.execute(sql, [name]).fetchone()[0])  # type: ignore[index]

        grid.add_row(
            name,
            count("select count(*) from datanets where datanet = ?", "datanets"),
            count("select count(*) from contributors where datanet = ?", "contributors"),
            count("select coalesce(sum(accepted), 0) from batches where datanet = ?", "batches"),
            count("select count(*) from quarantine where datanet = ?", "quarantine"),
            count("select count(*) from duplicates where datanet = ?", "duplicates"),
        )
    out.print(grid)


@contributor_app.command("add")
@friendly_errors
def contributor_add(
    datanet: Annotated[str, typer.Option(help="Datanet name.")],
    contributor: Annotated[str, typer.Option(help="Contributor id.")],
    lake: LakeOption = DEFAULT_LAKE,
    public_key: Annotated[
        str | None, typer.Option(help="Ed25519 public key (hex) if you hold your own key.")
    ] = None,
    key_out: Annotated[Path | None, typer.Option(help="Where to write a new key file.")] = None,
) -> None:
    """Register a contributor's Ed25519 public key with a Datanet (creating a key if needed)."""
    root = open_lake(lake).root_path()
    check_datanet_name(datanet)
    check_contributor_id(contributor)
    if datanet not in spec_names(root):
        raise SpecError(f"no Datanet {datanet!r}; create it first with `openledger datanet create`")
    if public_key is None:
        path, public_key = new_contributor_key(root, datanet, contributor, key_out)
        out.print(f"new signing key for {contributor}: {path} (keep it private)", highlight=False)
    elif len(bytes.fromhex(public_key)) != 32:
        raise SpecError("--public-key must be 32 bytes of hex (an Ed25519 public key)")
    write_registration(root, Registration(datanet, contributor, public_key, datetime.now(UTC)))
    out.print(f"{contributor} registered with {datanet}, public key {public_key}", highlight=False)


@contributor_app.command("list")
@friendly_errors
def contributor_list(
    datanet: Annotated[str, typer.Option(help="Datanet name.")],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Registered contributors of a Datanet."""
    found, problems = registrations(open_lake(lake).root_path(), datanet)
    grid = Table("contributor", "public key", "registered at")
    for reg in found:
        grid.add_row(reg.contributor, reg.public_key, reg.registered_at.isoformat())
    out.print(grid)
    for problem in problems:
        err.print(f"[yellow]warning:[/] {problem}", highlight=False)


@model_app.command("show")
@friendly_errors
def model_show(
    datanet: Annotated[str, typer.Argument(help="Datanet name.")],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """The current model card: training data root, metrics, top features."""
    check_datanet_name(datanet)
    con = connect(open_lake(lake))
    try:
        card = con.execute(
            "select * from models where datanet = ? order by training_ledger_seq desc limit 1",
            [datanet],
        ).fetchone()
    except duckdb.CatalogException:
        card = None
    if card is None:
        raise SpecError(f"no model for Datanet {datanet!r} yet; run `openledger run`")
    row = dict(zip([d[0] for d in con.description], card, strict=True))  # type: ignore[union-attr]
    features = con.execute(
        "select feature, mean_abs_shap from feature_attribution where model_id = ? "
        "order by rank limit 10",
        [row["model_id"]],
    ).fetchall()
    grid = Table("field", "value", title=f"model card: {datanet}")
    for name in (
        "model_id",
        "spec_hash",
        "training_root",
        "training_ledger_seq",
        "row_count",
        "metric",
        "metric_value",
        "metrics_json",
        "params_hash",
        "training_seconds",
        "model_path",
    ):
        grid.add_row(name, str(row[name]))
    out.print(grid)
    shap_grid = Table("feature", "mean |SHAP|", title="top features")
    for feature, value in features:
        shap_grid.add_row(feature, f"{value:.4f}")
    out.print(shap_grid)


@app.command()
@friendly_errors
def infer(
    datanet: Annotated[str, typer.Option(help="Datanet name.")],
    file: Annotated[Path, typer.Argument(help="Queries: CSV, Parquet or JSON Lines features.")],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Serve predictions from the Datanet's current model and log them for attribution."""
    from assets.inference import current_model, read_queries, serve, write_log
    from openledger_pipelines.governance import policy_in_force
    from openledger_pipelines.ingestion import current_spec_at, read_or_empty
    from openledger_pipelines.modeling import MODELS_SCHEMA

    target = open_lake(lake)
    root = target.root_path()
    spec = current_spec_at(root, check_datanet_name(datanet))
    model = current_model(read_or_empty(target, "models", MODELS_SCHEMA, ("datanet", datanet)))
    served = serve(
        spec,
        (root / str(model["model_path"])).read_bytes(),
        str(model["model_id"]),
        read_queries(spec, file),
        fee=policy_in_force(target, root, datanet).fee_per_inference,
    )
    log = write_log(root, datanet, served)
    grid = Table("#", "prediction", "query hash", "fee")
    for i, row in enumerate(served.iter_rows(named=True)):
        grid.add_row(str(i), row["prediction"], row["query_hash"][:16], str(row["fee"]))
    out.print(grid)
    out.print(
        f"logged {served.height} inferences to {log.relative_to(root)}; "
        "`openledger run` attributes them",
        highlight=False,
    )


@app.command()
@friendly_errors
def contribute(
    datanet: Annotated[str, typer.Option(help="Datanet name.")],
    contributor: Annotated[str, typer.Option(help="Your contributor id.")],
    files: Annotated[list[Path], typer.Argument(help="CSV, Parquet or JSON Lines files.")],
    lake: LakeOption = DEFAULT_LAKE,
    key: Annotated[Path | None, typer.Option(help="Your key file (default: the lake's).")] = None,
) -> None:
    """Submit files to a Datanet's inbox, signed with your key; `openledger run` ingests them."""
    root = open_lake(lake).root_path()
    check_datanet_name(datanet)
    if datanet not in spec_names(root):
        raise SpecError(f"no Datanet {datanet!r}")
    for file in files:
        if not file.is_file():
            raise SpecError(f"{file} is not a file")
        target = submit(root, datanet, contributor, file, key_file=key)
        out.print(f"submitted {file} as {target.name}", highlight=False)


@app.command()
@friendly_errors
def run(
    lake: LakeOption = DEFAULT_LAKE,
    datanet: Annotated[
        list[str] | None, typer.Option(help="Only these Datanets (default: all).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Dagster console log level.")] = "WARNING",
) -> None:
    """Materialize everything pending through Dagster, in-process, on the shared instance."""
    from openledger_pipelines.runner import persistent_instance, run_datanets

    root = open_lake(lake).root_path()
    instance = persistent_instance(root)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    ) as bar:
        names = datanet or spec_names(root)
        task = bar.add_task("running Datanets", total=len(names))

        def done(name: str, result: Any) -> None:
            bar.advance(task)
            state = "[green]succeeded" if result.success else "[red]FAILED"
            out.print(f"{name}: run {result.run_id[:8]} {state}[/]", highlight=False)

        outcome = run_datanets(root, instance, names, on_done=done, log_level=log_level.upper())
    if not all(outcome.values()):
        raise typer.Exit(1)


@app.command()
@friendly_errors
def demo(lake: LakeOption = DEFAULT_LAKE) -> None:
    """Run the main job on the embedded demo data and print a summary."""
    from openledger_pipelines.demo import run_demo

    if not run_demo(open_lake(lake), out, code_version=code_version()):
        raise typer.Exit(1)


# --- stage 4: epochs, statements, recompute, governance ------------------------------------
epoch_app = typer.Typer(help="Reward epochs: close and list.", no_args_is_help=True)
app.add_typer(epoch_app, name="epoch")


def _datanets_or_all(root: Path, datanet: list[str] | None) -> list[str]:
    names = spec_names(root)
    for name in datanet or []:
        check_datanet_name(name)
        if name not in names:
            raise SpecError(f"no Datanet {name!r}")
    return list(datanet or names)


@epoch_app.command("close")
@friendly_errors
def epoch_close(
    lake: LakeOption = DEFAULT_LAKE,
    datanet: Annotated[
        list[str] | None, typer.Option(help="Only these Datanets (default: all).")
    ] = None,
    epoch: Annotated[int | None, typer.Option(help="Epoch (default: the open one).")] = None,
    log_level: Annotated[str, typer.Option(help="Dagster console log level.")] = "WARNING",
) -> None:
    """Close the open epoch now (or re-check a closed one) and print its payouts."""
    from assets.recompute import open_epoch
    from openledger_pipelines.runner import persistent_instance, run_epoch

    store = open_lake(lake)
    root = store.root_path()
    failed = False
    for name in _datanets_or_all(root, datanet):
        number = open_epoch(store, name) if epoch is None else epoch
        result = run_epoch(root, persistent_instance(root), name, number, log_level.upper())
        if not result.success:
            failed = True
            out.print(f"{name} epoch {number}: [red]FAILED[/] (run {result.run_id[:8]})")
            for event in result.all_events:
                if event.is_failure and event.event_specific_data is not None:
                    error = getattr(event.event_specific_data, "error", None)
                    if error is not None:
                        out.print(f"  {error.message.strip()}", highlight=False)
            continue
        out.print(payouts_table(store, name, number))
    if failed:
        raise typer.Exit(1)


@epoch_app.command("list")
@friendly_errors
def epoch_list(lake: LakeOption = DEFAULT_LAKE) -> None:
    """Closed epochs: pool, payouts, carry-over, fees, policy."""
    rows = rows_where(open_lake(lake), "epochs", "true order by datanet, epoch", [])
    grid = Table("datanet", "epoch", "closed at", "pool", "paid", "carried out", "fees", "policy")
    for r in rows:
        grid.add_row(
            r["datanet"],
            str(r["epoch"]),
            str(r["closed_at"])[:19],
            f"{r['pool']:,}",
            f"{r['paid_pool']:,}",
            f"{r['carried_out']:,}",
            f"{r['fees_total']:,}",
            r["policy_hash"][:12],
        )
    out.print(grid)


@app.command()
@friendly_errors
def statement(
    contributor: Annotated[str, typer.Option(help="Contributor id.")],
    lake: LakeOption = DEFAULT_LAKE,
    epoch: Annotated[int | None, typer.Option(help="Only this epoch.")] = None,
    datanet: Annotated[str | None, typer.Option(help="Only this Datanet.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list of objects.")] = False,
) -> None:
    """What a contributor earned and why, per Datanet and epoch, with the ledger entries."""
    rows = statement_rows(open_lake(lake), contributor, epoch, datanet)
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        raise SpecError(f"no statement for {contributor!r} (is an epoch closed?)")
    for row in rows:
        out.print(statement_table(row))


@app.command()
@friendly_errors
def recompute(
    epoch: Annotated[int, typer.Option(help="The closed epoch to rebuild.")],
    lake: LakeOption = DEFAULT_LAKE,
    datanet: Annotated[
        list[str] | None, typer.Option(help="Only these Datanets (default: all).")
    ] = None,
) -> None:
    """Rebuild every reward of a closed epoch from the ledgered tables alone; exit 1 on
    any difference."""
    from assets.recompute import closed_epochs, recompute_epoch

    store = open_lake(lake)
    names = [
        n for n in _datanets_or_all(store.root_path(), datanet) if epoch in closed_epochs(store, n)
    ]
    if not names:
        raise SpecError(f"epoch {epoch} is not closed for any Datanet")
    different = False
    for name in names:
        result = recompute_epoch(store, name, epoch)
        if result.differences:
            different = True
            out.print(f"[bold red]DIFFERENT[/]: {name} epoch {epoch}", highlight=False)
            for line in result.differences:
                out.print(f"  - {line}", highlight=False)
            continue
        paid = int(result.closed.rewards["amount"].sum() or 0)
        out.print(
            f"[green]REPRODUCED[/]: {name} epoch {epoch}: {result.closed.rewards.height} "
            f"reward rows ({paid:,} base units) and {result.closed.statements.height} "
            "statements, bit for bit, from ledger-checked inputs",
            highlight=False,
        )
    if different:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def report(
    epoch: Annotated[int, typer.Option(help="The closed epoch to report.")],
    lake: LakeOption = DEFAULT_LAKE,
    output: Annotated[Path | None, typer.Option("--out", help="HTML file to write.")] = None,
    datanet: Annotated[
        list[str] | None, typer.Option(help="Only these Datanets (default: all).")
    ] = None,
) -> None:
    """Write a self-contained HTML report (tables and charts) of an epoch."""
    import polars as pl

    from assets.epochs import EPOCHS_SCHEMA, REWARDS_SCHEMA, STATEMENTS_SCHEMA
    from assets.report import render_report

    store = open_lake(lake)
    names = _datanets_or_all(store.root_path(), datanet)
    frames = {}
    for table, schema in (
        ("epochs", EPOCHS_SCHEMA),
        ("rewards", REWARDS_SCHEMA),
        ("statements", STATEMENTS_SCHEMA),
    ):
        rows = rows_where(store, table, "epoch = ?", [epoch])
        frame = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
        frames[table] = frame.filter(pl.col("datanet").is_in(names))
    if frames["epochs"].height == 0:
        raise SpecError(f"epoch {epoch} is not closed for {', '.join(names) or 'any Datanet'}")
    target = output or Path(f"openledger-epoch-{epoch}.html")
    target.write_text(
        render_report(
            frames["epochs"],
            frames["rewards"],
            frames["statements"],
            f"OpenLedger rewards, epoch {epoch}",
        ),
        encoding="utf-8",
    )
    out.print(f"wrote {target}", highlight=False)


def _proposal_id(events: Any, prefix: str) -> str:
    from assets.governance import proposals

    ids = [p for p in proposals(events) if p.startswith(prefix.lower())]
    if len(prefix) < 8 or len(ids) != 1:
        raise SpecError(f"no single proposal matches {prefix!r} (give at least 8 characters)")
    return ids[0]


def _key_file(root: Path, datanet: str, contributor: str, key: Path | None) -> Path:
    from assets.layout import key_path

    path = key or key_path(root, datanet, contributor)
    if not path.exists():
        raise SpecError(f"no key file {path}; pass --key")
    return path


def _record_event(
    store: Lake,
    datanet: str,
    event_for: Callable[[Any], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
) -> None:
    """Check and append one governance event (under the governance lock), then say what."""
    from openledger_pipelines.governance import record

    row, committed = record(store, datanet, event_for, run_id="cli", code=code_version())
    out.print(f"{describe(row)} (ledger seq {committed.entry.seq})", highlight=False)


@app.command()
@friendly_errors
def propose(
    datanet: Annotated[str, typer.Option(help="Datanet name.")],
    contributor: Annotated[str, typer.Option(help="Proposer (a registered contributor).")],
    change: Annotated[
        list[str], typer.Option("--set", help="policy_field=value (JSON value), repeat.")
    ],
    lake: LakeOption = DEFAULT_LAKE,
    description: Annotated[str, typer.Option(help="Why.")] = "",
    key: Annotated[Path | None, typer.Option(help="Your key file (default: the lake's).")] = None,
) -> None:
    """Propose a reward-policy change; contributors vote on it until its deadline."""
    from assets.governance import Proposal, proposal_message
    from assets.governance import propose as make_proposal
    from assets.layout import signer
    from openledger_pipelines.governance import policy_in_force, registered_key, rewards_paid

    store = open_lake(lake)
    root = store.root_path()
    check_datanet_name(datanet)
    changes: dict[str, Any] = {}
    for name, text in _parse_pairs(change, "--set").items():
        try:
            changes[name] = json.loads(text)
        except json.JSONDecodeError:
            changes[name] = text
    proposal = Proposal(
        datanet, check_contributor_id(contributor), changes, description, datetime.now(UTC)
    )
    signature = signer(_key_file(root, datanet, contributor, key), contributor)(
        proposal_message(datanet, proposal.proposal_id())
    )
    _record_event(
        store,
        datanet,
        lambda history: make_proposal(
            history,
            proposal,
            signature,
            registered_key(store, datanet, contributor),
            rewards_paid(store, datanet),
            policy_in_force(store, root, datanet),
        ),
        lambda row: (
            f"proposal {row['proposal_id']} recorded, voting until "
            f"{json.loads(row['payload'])['deadline']}"
        ),
    )


@app.command()
@friendly_errors
def vote(
    datanet: Annotated[str, typer.Option(help="Datanet name.")],
    proposal: Annotated[str, typer.Option(help="Proposal id (or an 8+ character prefix).")],
    contributor: Annotated[str, typer.Option(help="Your contributor id.")],
    choice: Annotated[str, typer.Option(help="yes or no.")],
    lake: LakeOption = DEFAULT_LAKE,
    key: Annotated[Path | None, typer.Option(help="Your key file (default: the lake's).")] = None,
) -> None:
    """Vote on a proposal, signed with your registered key; weight = rewards paid to you."""
    from assets.governance import vote as make_vote
    from assets.governance import vote_message
    from assets.layout import signer
    from openledger_pipelines.governance import events, registered_key

    store = open_lake(lake)
    check_datanet_name(datanet)
    history = events(store, datanet)
    proposal_id = _proposal_id(history, proposal)
    signature = signer(_key_file(store.root_path(), datanet, contributor, key), contributor)(
        vote_message(datanet, proposal_id, contributor, choice)
    )
    _record_event(
        store,
        datanet,
        lambda current: make_vote(
            current,
            datanet,
            proposal_id,
            contributor,
            choice,
            signature,
            registered_key(store, datanet, contributor),
            datetime.now(UTC),
        ),
        lambda row: f"vote {choice} by {contributor} with weight {row['weight']:,} recorded",
    )


@app.command()
@friendly_errors
def tally(
    datanet: Annotated[str, typer.Option(help="Datanet name.")],
    proposal: Annotated[str, typer.Option(help="Proposal id (or an 8+ character prefix).")],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Count a proposal's votes after its deadline: enact it (from the next epoch) or
    record it as failed."""
    from assets.governance import tally as count
    from assets.recompute import open_epoch
    from openledger_pipelines.governance import events

    store = open_lake(lake)
    check_datanet_name(datanet)
    history = events(store, datanet)
    proposal_id = _proposal_id(history, proposal)

    def describe(row: dict[str, Any]) -> str:
        detail = json.loads(row["payload"])
        what = (
            f"enacted from epoch {row['effective_epoch']}"
            if row["event"] == "enacted"
            else f"failed: {detail['reason']}"
        )
        return (
            f"proposal {proposal_id[:12]} {what} "
            f"(yes {detail['yes']:,}, no {detail['no']:,} of {detail['electorate']:,})"
        )

    _record_event(
        store,
        datanet,
        lambda current: count(
            current, datanet, proposal_id, datetime.now(UTC), open_epoch(store, datanet)
        ),
        describe,
    )


@app.command()
@friendly_errors
def proposals(
    datanet: Annotated[str, typer.Option(help="Datanet name.")],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Proposals, their votes and outcomes."""
    from assets.governance import outcome
    from assets.governance import proposals as all_proposals
    from openledger_pipelines.governance import events

    check_datanet_name(datanet)
    history = events(open_lake(lake), datanet)
    grid = Table("proposal", "by", "changes", "deadline", "votes", "outcome")
    for proposal_id, row in all_proposals(history).items():
        payload = json.loads(row["payload"])
        votes = history.filter(
            (history["proposal_id"] == proposal_id) & (history["event"] == "vote")
        ).height
        done = outcome(history, proposal_id)
        grid.add_row(
            proposal_id[:12],
            row["actor"],
            json.dumps(payload["changes"]),
            payload["deadline"][:19],
            str(votes),
            "open" if done is None else done["event"],
        )
    out.print(grid)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
