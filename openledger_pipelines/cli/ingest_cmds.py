"""Ingest commands: Datanet specs, contributors, submissions, runs and the demo."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from openledger_pipelines.cli._common import (
    DEFAULT_LAKE,
    ContributorOption,
    DatanetOption,
    DatanetsOption,
    LakeOption,
    LogLevelOption,
    err,
    friendly_errors,
    lake_root,
    open_lake,
    out,
)

datanet_app = typer.Typer(help="Datanet specs: create and list.", no_args_is_help=True)
contributor_app = typer.Typer(help="Contributors and their signing keys.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(datanet_app, name="datanet")
    app.add_typer(contributor_app, name="contributor")
    app.command("contribute")(contribute)
    app.command("run")(run)
    app.command("demo")(demo)
    app.command("recover")(recover)


@friendly_errors
def recover(lake: LakeOption = DEFAULT_LAKE) -> None:
    """Clean up after a run that died: fail its Dagster run and free its pool slots, and
    roll back table versions it wrote without a ledger entry (`run` does this first)."""
    from openledger_pipelines.runner import persistent_instance

    instance = persistent_instance(lake_root(lake))
    try:
        cleaned = recover_lake(lake, instance)
    finally:
        instance.dispose()
    if not cleaned:
        out.print("nothing to recover", highlight=False)


def recover_lake(lake: str, instance: Any) -> list[str]:
    """What `recover` does, for the commands that run pipelines: say each thing cleaned."""
    from openledger_pipelines.runner import fail_abandoned_runs
    from openledger_pipelines.version import code_version

    cleaned = fail_abandoned_runs(instance)
    for entry in open_lake(lake).recover(run_id="recover", code_version=code_version()):
        cleaned.append(
            f"{entry.table_uri} [{entry.partition_key or '-'}]: {entry.note} "
            f"(rollback, ledger seq {entry.seq})"
        )
    for line in cleaned:
        err.print(f"recovered: {line}", highlight=False)
    return cleaned


@datanet_app.command("create")
@friendly_errors
def datanet_create(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="Datanet spec file (YAML or JSON).")],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Validate a spec and publish it with the validation file it names (relative to the
    spec); a changed spec or validation file becomes a new version."""
    from assets.datanets import read_spec_text
    from assets.layout import SPECS, install_spec, validation_copy, validation_sha256

    root = lake_root(lake)
    parsed, changed = install_spec(root, read_spec_text(spec), str(spec), base=spec.parent)
    state = "published" if changed else "unchanged"
    out.print(f"{parsed.name}: {state}, spec hash {parsed.spec_hash()}", highlight=False)
    if parsed.validation.kind == "file":
        copy = validation_copy(root / SPECS, parsed)
        sha = validation_sha256(root / SPECS, parsed)
        out.print(f"validation file {copy.relative_to(root)}, sha256 {sha}", highlight=False)


@datanet_app.command("list")
@friendly_errors
def datanet_list(
    lake: LakeOption = DEFAULT_LAKE,
    as_json: Annotated[bool, typer.Option("--json", help="Rows as JSON lines.")] = False,
) -> None:
    """Datanets with a spec, their versions and what has been ingested."""
    from openledger_pipelines.statements import datanet_summaries

    rows = datanet_summaries(open_lake(lake))
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    from rich.table import Table

    grid = Table(*(rows[0].keys() if rows else ["datanet"]))
    for row in rows:
        grid.add_row(*(str(v) for v in row.values()))
    out.print(grid)


@contributor_app.command("add")
@friendly_errors
def contributor_add(
    datanet: DatanetOption,
    contributor: ContributorOption,
    lake: LakeOption = DEFAULT_LAKE,
    public_key: Annotated[
        str | None,
        typer.Option(metavar="HEX", help="Ed25519 public key (hex) if you hold your own key."),
    ] = None,
    key_out: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Where to write a new key file.")
    ] = None,
) -> None:
    """Register a contributor's Ed25519 public key with a Datanet (creating a key if needed)."""
    from assets.layout import Registration, new_contributor_key, spec_names, write_registration
    from assets.names import SpecError, check_contributor_id, check_datanet_name

    root = lake_root(lake)
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
def contributor_list(datanet: DatanetOption, lake: LakeOption = DEFAULT_LAKE) -> None:
    """Registered contributors of a Datanet."""
    from rich.table import Table

    from assets.layout import registrations

    found, problems = registrations(lake_root(lake), datanet)
    grid = Table("contributor", "public key", "registered at")
    for reg in found:
        grid.add_row(reg.contributor, reg.public_key, reg.registered_at.isoformat())
    out.print(grid)
    for problem in problems:
        err.print(f"[yellow]warning:[/] {problem}", highlight=False)


@friendly_errors
def contribute(
    datanet: DatanetOption,
    contributor: Annotated[str, typer.Option(metavar="ID", help="Your contributor id.")],
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE...", help="CSV, Parquet or JSON Lines files.")
    ],
    lake: LakeOption = DEFAULT_LAKE,
    key: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Your key file (default: the lake's).")
    ] = None,
) -> None:
    """Submit files to a Datanet's inbox, signed with your key; each gets a ledgered receipt
    (its place in the credit order) and `openledger run` ingests them."""
    from assets.datanets import SpecError, check_contributor_id, check_datanet_name, load_spec
    from assets.layout import (
        check_regular_file,
        deliver,
        prepare,
        spec_names,
        spec_path,
        unsigned_warning,
    )
    from openledger_pipelines.version import code_version

    root = lake_root(lake)
    check_datanet_name(datanet)
    check_contributor_id(contributor)
    if datanet not in spec_names(root):
        raise SpecError(f"no Datanet {datanet!r}")
    for file in files:  # the plainest problem first: a missing or irregular file
        check_regular_file(file)
    warning = unsigned_warning(root, load_spec(spec_path(root, datanet)), contributor, key)
    outgoing = [prepare(root, datanet, contributor, f, key_file=key) for f in files]
    if warning:  # every file is read: the command will submit them
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    received = deliver(root, datanet, outgoing, code_version=code_version())
    for file, done in zip(files, received, strict=True):
        what = "submitted" if done.new else "already received"
        out.print(
            f"{what} {file} as {done.path.name}: receipt {done.receipt_seq} at "
            f"{done.received_at.isoformat()}",
            highlight=False,
        )


@friendly_errors
def run(
    lake: LakeOption = DEFAULT_LAKE,
    datanet: DatanetsOption = None,
    force: Annotated[
        bool, typer.Option(help="Run even the Datanets with nothing new (re-check everything).")
    ] = False,
    log_level: LogLevelOption = "WARNING",
) -> None:
    """Materialize what is pending through Dagster, in-process, on the shared instance.

    A Datanet runs when its spec, registrations, inbox or inference log hold something the
    lake has not recorded yet (or a previous run stopped short); the others are skipped."""
    from openledger_pipelines.cli.progress import StageReporter, stopped_cleanly
    from openledger_pipelines.pending import pending_work
    from openledger_pipelines.runner import persistent_instance, run_datanets

    store = open_lake(lake)
    root = store.root_path()
    names = _datanets_or_all(root, datanet)
    instance = persistent_instance(root)
    outcome: dict[str, bool] = {}
    try:
        recover_lake(lake, instance)
        work = {name: pending_work(store, name) for name in names}
        for name, pending in work.items():
            if pending or force:
                out.print(f"{name}: {'; '.join(pending.reasons) or 'forced'}", highlight=False)
            else:
                out.print(f"{name}: nothing new, skipped", highlight=False)
        todo = [name for name, pending in work.items() if pending or force]
        if not todo:
            return
        with stopped_cleanly(instance), StageReporter(out) as reporter:
            for name in todo:
                outcome |= run_datanets(
                    root,
                    instance,
                    [name],
                    on_done=reporter.run_done,
                    log_level=log_level.upper(),
                    assets=None if force else work[name].assets,
                    progress=reporter,
                )
    finally:
        instance.dispose()
    if not all(outcome.values()):
        raise typer.Exit(1)


def _datanets_or_all(root: Path, datanet: list[str] | None) -> list[str]:
    """The named Datanets (each must have a spec), or all of them."""
    from assets.layout import spec_names
    from assets.names import SpecError, check_datanet_name

    names = spec_names(root)
    for name in datanet or []:
        check_datanet_name(name)
        if name not in names:
            raise SpecError(f"no Datanet {name!r}; known: {', '.join(names) or 'none'}")
    return list(datanet or names)


@friendly_errors
def demo(
    lake: LakeOption = DEFAULT_LAKE,
    fresh: Annotated[
        bool,
        typer.Option(help="Start from an empty lake (refused if it holds more than demo data)."),
    ] = False,
) -> None:
    """Run the main job on the embedded demo data and print a summary."""
    out.print(f"openledger demo: lake {open_lake(lake).root}", highlight=False)
    out.print("preparing the demo: specs, keys and contributors' files ...", highlight=False)
    from openledger_pipelines.demo import run_demo

    if not run_demo(lake, out, fresh=fresh):
        raise typer.Exit(1)
