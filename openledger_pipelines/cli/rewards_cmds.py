"""Reward commands: close and list epochs, statements, recompute, the HTML report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from openledger_pipelines.cli._common import (
    DEFAULT_LAKE,
    DatanetsOption,
    LakeOption,
    LogLevelOption,
    err,
    friendly_errors,
    open_lake,
    out,
)
from openledger_pipelines.cli.ingest_cmds import _datanets_or_all, recover_lake

epoch_app = typer.Typer(help="Reward epochs: close and list.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(epoch_app, name="epoch")
    app.command("statement")(statement)
    app.command("recompute")(recompute)
    app.command("report")(report)


@epoch_app.command("close")
@friendly_errors
def epoch_close(
    lake: LakeOption = DEFAULT_LAKE,
    datanet: DatanetsOption = None,
    epoch: Annotated[
        int | None, typer.Option(metavar="N", help="Epoch (default: the open one).")
    ] = None,
    log_level: LogLevelOption = "WARNING",
) -> None:
    """Close the open epoch now (or re-check a closed one) and print its payouts.

    Inferences served since the last run are attributed first, so their fees are paid in
    the epoch they were served in."""
    from assets.recompute import open_epoch
    from openledger_pipelines.cli.progress import StageReporter, stopped_cleanly
    from openledger_pipelines.pending import INFERENCE_ASSETS, pending_inferences
    from openledger_pipelines.runner import persistent_instance, run_datanets, run_epoch
    from openledger_pipelines.statements import payouts_table

    store = open_lake(lake)
    root = store.root_path()
    failed = False
    instance = persistent_instance(root)
    try:
        recover_lake(lake, instance)
        for name in _datanets_or_all(root, datanet):
            number = open_epoch(store, name) if epoch is None else epoch
            waiting = pending_inferences(store, name)
            if waiting and epoch is None:
                out.print(
                    f"{name}: attributing {waiting} pending inference(s) before closing",
                    highlight=False,
                )
                with stopped_cleanly(instance), StageReporter(out) as reporter:
                    attributed = run_datanets(
                        root,
                        instance,
                        [name],
                        on_done=reporter.run_done,
                        log_level=log_level.upper(),
                        assets=INFERENCE_ASSETS,
                        progress=reporter,
                    )
                if not attributed[name]:
                    failed = True
                    out.print(f"{name}: [red]attributing inferences FAILED[/]; epoch not closed")
                    continue
            with stopped_cleanly(instance), StageReporter(out) as reporter:
                result = run_epoch(root, instance, name, number, log_level.upper(), reporter)
            if not result.success:
                failed = True
                out.print(f"{name} epoch {number}: [red]FAILED[/] (run {result.run_id})")
                for event in result.all_events:
                    if event.is_failure and event.event_specific_data is not None:
                        error = getattr(event.event_specific_data, "error", None)
                        if error is not None:
                            out.print(f"  {error.message.strip()}", highlight=False)
                continue
            out.print(payouts_table(store, name, number))
    finally:
        instance.dispose()
    if failed:
        raise typer.Exit(1)


@epoch_app.command("list")
@friendly_errors
def epoch_list(
    lake: LakeOption = DEFAULT_LAKE,
    as_json: Annotated[bool, typer.Option("--json", help="Rows as JSON lines.")] = False,
) -> None:
    """Closed epochs: pool, payouts, carry-over, fees, policy."""
    from ledger.sql import rows_where

    rows = rows_where(open_lake(lake), "epochs", "true order by datanet, epoch", [])
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(r, default=str) + "\n")
        return
    from rich.table import Table

    grid = Table("datanet", "epoch", "closed at", "pool", "paid", "carried out", "fees", "policy")
    for r in rows:
        grid.add_row(
            str(r["datanet"]),
            str(r["epoch"]),
            str(r["closed_at"])[:19],
            f"{r['pool']:,}",
            f"{r['paid_pool']:,}",
            f"{r['carried_out']:,}",
            f"{r['fees_total']:,}",
            str(r["policy_hash"]),
        )
    out.print(grid)


@friendly_errors
def statement(
    contributor: Annotated[str, typer.Option(metavar="ID", help="Contributor id.")],
    lake: LakeOption = DEFAULT_LAKE,
    epoch: Annotated[int | None, typer.Option(metavar="N", help="Only this epoch.")] = None,
    datanet: Annotated[str | None, typer.Option(metavar="NAME", help="Only this Datanet.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list of objects.")] = False,
) -> None:
    """What a contributor earned and why, per Datanet and epoch, with the ledger entries."""
    from assets.names import SpecError
    from openledger_pipelines.statements import batches_table, statement_rows, statement_table

    rows = statement_rows(open_lake(lake), contributor, epoch, datanet)
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str, indent=2) + "\n")
        return
    if not rows:
        raise SpecError(f"no statement for {contributor!r} (is an epoch closed?)")
    for row in rows:
        out.print(statement_table(row))
        out.print(batches_table(row))


@friendly_errors
def recompute(
    epoch: Annotated[int, typer.Option(metavar="N", help="The closed epoch to rebuild.")],
    lake: LakeOption = DEFAULT_LAKE,
    datanet: DatanetsOption = None,
) -> None:
    """Rebuild every reward of a closed epoch from the ledgered tables alone; exit 1 on
    any difference."""
    from assets.names import SpecError
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


@friendly_errors
def report(
    epoch: Annotated[int, typer.Option(metavar="N", help="The closed epoch to report.")],
    lake: LakeOption = DEFAULT_LAKE,
    output: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="HTML file to write (default: <lake>/reports/epoch-N.html).",
        ),
    ] = None,
    datanet: DatanetsOption = None,
) -> None:
    """Write a self-contained HTML report (tables and charts) of an epoch."""
    import polars as pl

    from assets.epochs import EPOCHS_SCHEMA, REWARDS_SCHEMA, STATEMENTS_SCHEMA
    from assets.names import SpecError
    from assets.report import render_report
    from ledger.sql import rows_where

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
    target = output or store.root_path() / "reports" / f"epoch-{epoch}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        render_report(
            frames["epochs"],
            frames["rewards"],
            frames["statements"],
            f"OpenLedger rewards, epoch {epoch}",
        ),
        encoding="utf-8",
    )
    err.print(f"wrote {target}", highlight=False)
