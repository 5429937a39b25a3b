"""The embedded demo: specs, keys and planted contributors' files, run through Dagster."""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import yaml
from rich.console import Console
from rich.table import Table

from assets.datanets import SpecError
from assets.demo_data import DEMO_CONTRIBUTORS, DEMO_DATANETS, demo_files, demo_spec
from assets.ingest import MANIFEST_SUFFIX
from assets.layout import (
    INBOX,
    INFERENCE_LOG,
    KEYS,
    REGISTRY,
    SPECS,
    Registration,
    contributor_public_key,
    deliver,
    install_spec,
    prepare,
    write_registration,
)
from ledger import checkpoint as ckpt
from ledger.lake import Lake
from ledger.proofcheck import check_proof_document
from ledger.proofs import inclusion_proof_document
from ledger.storage import LakePath
from ledger.verify import verify_lake
from openledger_pipelines.ingestion import contributions_table, read_or_empty
from openledger_pipelines.runner import persistent_instance, run_datanets, run_epoch
from openledger_pipelines.statements import (
    batches_table,
    datanet_summaries,
    payouts_table,
    statement_rows,
    statement_table,
)

REGISTERED_AT = datetime(2026, 11, 1, tzinfo=UTC)
# Everything a demo lake holds at its top level.
LAKE_FOLDERS = {SPECS, INBOX, REGISTRY, KEYS, INFERENCE_LOG, "tables", "ledger", "models"}
LAKE_FOLDERS |= {"dagster_home", "reports"}
LOCK_FILES = {"ledger.lock", "receipts.lock"}
SERVED_AT = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def prepare_demo(root: Path, seed: int = 0) -> None:
    """Place the demo specs, register the contributors and submit their files (idempotent)."""
    for name in DEMO_DATANETS:
        spec = demo_spec(name)
        install_spec(root, _spec_text(name))
        for contributor in DEMO_CONTRIBUTORS:
            public = contributor_public_key(root, name, contributor)
            write_registration(root, Registration(name, contributor, public, REGISTERED_AT))
        files = demo_files(spec, seed)
        with tempfile.TemporaryDirectory() as tmp:
            outgoing = []
            for demo in files:
                source = Path(tmp) / demo.file_name
                source.write_bytes(demo.content)
                outgoing.append(
                    prepare(
                        root,
                        name,
                        demo.contributor,
                        source,
                        submitted_at=demo.submitted_at,
                        sign=demo.signed,
                    )
                )
        # received in the order they were made, each at its own fixed time: the operator's
        # clock replayed, so the demo lake is the same bit for bit on every machine
        replay = iter([demo.submitted_at for demo in files]).__next__
        deliver(root, name, outgoing, clock=replay, run_id="demo")


def summary_table(lake: Lake) -> Table:
    """Per Datanet: files, rows in, accepted, quarantined, duplicates (as `datanet list`)."""
    rows = datanet_summaries(lake)
    grid = Table(*(rows[0].keys() if rows else ["datanet"]), title="ingestion")
    for row in rows:
        grid.add_row(*(str(v) for v in row.values()))
    return grid


def quality_table(lake: Lake) -> Table:
    """Per Datanet and contributor: rows, accepted share, label consistency, flags."""
    frame = pl.from_arrow(lake.read("contributor_quality")).sort("datanet", "contributor")
    grid = Table(
        "datanet",
        "contributor",
        "rows",
        "accepted",
        "label consistency",
        "duplicates",
        "flags",
        title="quality",
    )
    for r in frame.iter_rows(named=True):  # type: ignore[union-attr]
        grid.add_row(
            r["datanet"],
            r["contributor"],
            str(r["rows"]),
            f"{r['accepted_share']:.0%}",
            f"{r['label_consistency'] or 0:.2f}",
            str(r["duplicates"]),
            r["flags"],
        )
    return grid


def models_table(lake: Lake) -> Table:
    """Per Datanet: the current model, its metric, training rows and top features."""
    models = pl.from_arrow(lake.read("models"))
    features = pl.from_arrow(lake.read("feature_attribution"))
    grid = Table("datanet", "model id", "metric", "value", "rows", "top features", title="models")
    for r in models.sort("datanet").iter_rows(named=True):  # type: ignore[union-attr]
        top = (
            features.filter(  # type: ignore[union-attr]
                (pl.col("model_id") == r["model_id"]) & (pl.col("rank") <= 3)
            )
            .sort("rank")["feature"]
            .to_list()
        )
        grid.add_row(
            r["datanet"],
            r["model_id"][:12],
            r["metric"],
            f"{r['metric_value']:.3f}",
            str(r["row_count"]),
            ", ".join(top),
        )
    return grid


def serve_demo_queries(lake: Lake, queries: int = 20) -> None:
    """Serve predictions for held-out rows of each demo Datanet and log them."""
    from assets.inference import current_model, serve, write_log
    from assets.validation import validation_set
    from openledger_pipelines.modeling import MODELS_SCHEMA

    root = lake.root_path()
    for name in DEMO_DATANETS:
        spec = demo_spec(name)
        model = current_model(read_or_empty(lake, "models", MODELS_SCHEMA, ("datanet", name)))
        rows = validation_set(spec, root / "specs").head(queries).drop(spec.label.identifier)
        model_bytes = (root / str(model["model_path"])).read_bytes()
        served = serve(spec, model_bytes, str(model["model_id"]), rows, SERVED_AT)
        write_log(root, name, served)


def values_table(lake: Lake) -> Table:
    """Per Datanet and contributor: Shapley value ± standard error, rank, method."""
    frame = pl.from_arrow(lake.read("contributor_values")).sort("datanet", "rank")
    fees = (
        pl.from_arrow(lake.read("inference_attributions"))
        .group_by("datanet", "contributor")
        .agg((pl.col("share_ppb").sum() / 1e9).alias("inference_shares"))
    )
    frame = frame.join(fees, on=["datanet", "contributor"], how="left")  # type: ignore[union-attr]
    grid = Table(
        "datanet",
        "rank",
        "contributor",
        "value",
        "± s.e.",
        "method",
        "Σ inference shares",
        title="contributor values",
    )
    for r in frame.iter_rows(named=True):
        grid.add_row(
            r["datanet"],
            str(r["rank"]),
            r["contributor"],
            f"{r['value']:+.4f}",
            f"{r['std_error']:.4f}",
            r["method"],
            f"{r['inference_shares'] or 0:.2f}",
        )
    return grid


def _two_deep(folder: LakePath) -> list[LakePath]:
    """Files one folder down (`folder/*/*`), sorted."""
    return sorted(p for sub in folder.iterdir() for p in sub.iterdir())


def foreign_content(root: LakePath) -> list[str]:
    """What a lake holds besides the demo's own inputs and outputs (empty: demo only).

    Inputs decide: demo specs, demo contributors' registrations, keys and inbox files, the
    demo's served queries; tables are derived from them, except governance events and
    epochs after 0, which only a person makes."""
    import hashlib

    from assets.inference import read_logs

    if not root.exists():
        return []
    found: list[str] = []
    allowed_top = {*LAKE_FOLDERS, *LOCK_FILES}
    found += [f"{p.name}" for p in root.iterdir() if p.name not in allowed_top]
    for path in sorted((root / SPECS).glob("*")):
        name = path.name.removesuffix(".yaml")
        if name not in DEMO_DATANETS or path.read_bytes() != _spec_text(name).encode():
            found.append(f"{SPECS}/{path.name}")
    for folder in (REGISTRY, KEYS):
        for path in _two_deep(root / folder):
            if path.parent.name not in DEMO_DATANETS or path.stem not in DEMO_CONTRIBUTORS:
                found.append(f"{folder}/{path.parent.name}/{path.name}")
    demo_hashes = {
        hashlib.sha256(f.content).hexdigest()
        for name in DEMO_DATANETS
        for f in demo_files(demo_spec(name))
    }
    for path in _two_deep(root / INBOX):
        if path.name.endswith(MANIFEST_SUFFIX):
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() not in demo_hashes:
            found.append(f"{INBOX}/{path.parent.name}/{path.name}")
    for name in sorted(p.name for p in (root / INFERENCE_LOG).glob("*")):
        served = read_logs(root, name) if name in DEMO_DATANETS else None
        if served is None or served.filter(pl.col("served_at") != SERVED_AT).height:
            found.append(f"{INFERENCE_LOG}/{name} (inferences not served by the demo)")
    lake = Lake(root)
    if "governance" in lake.table_names():
        found.append("governance events (tables/governance)")
    if "epochs" in lake.table_names():
        later = pl.from_arrow(lake.read("epochs")).filter(pl.col("epoch") > 0)
        found += [f"closed epoch {r['datanet']}.{r['epoch']}" for r in later.iter_rows(named=True)]
    return found


def clear_demo_lake(root: LakePath) -> None:
    """Delete a lake that holds demo data only; refuse (naming what) otherwise."""
    foreign = foreign_content(root)
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise SpecError(
            f"refusing --fresh: {root} holds more than demo data: {', '.join(foreign[:5])}{more}"
        )
    local = root.local()
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
    else:
        root.files.clear()


def _spec_text(name: str) -> str:
    return yaml.safe_dump(demo_spec(name).model_dump(mode="json"), sort_keys=False)


def run_demo(lake_uri: str, console: Console, fresh: bool = False) -> bool:
    """Run the whole pipeline on the demo data, showing each stage as it finishes; then
    print what it did and checked."""
    from openledger_pipelines.cli.ingest_cmds import recover_lake
    from openledger_pipelines.cli.progress import StageReporter, stopped_cleanly
    from openledger_pipelines.pending import INFERENCE_ASSETS, pending_work

    root = Lake(lake_uri).root_path()
    if fresh:
        clear_demo_lake(root)
    lake = Lake(lake_uri)
    root = lake.root_path()
    head = lake.ledger.head()
    before = head.seq + 1 if head is not None else 0
    if before:
        console.print(
            f"the lake already holds {before} ledger entries: the demo adds to it and runs "
            "only what is new (`openledger demo --fresh` starts over)",
            highlight=False,
        )
    prepare_demo(root)
    instance = persistent_instance(root)
    outcome: dict[str, bool] = {}
    try:
        recover_lake(lake_uri, instance)
        with stopped_cleanly(instance), StageReporter(console) as reporter:
            for name in sorted(DEMO_DATANETS):  # spec order, as `openledger run`
                if pending_work(lake, name):
                    outcome |= run_datanets(
                        root, instance, [name], on_done=reporter.run_done, progress=reporter
                    )
            serve_demo_queries(lake)  # then attribute the served inferences
            for name in sorted(DEMO_DATANETS):  # spec order, as `openledger run`
                if pending_work(lake, name):
                    outcome |= run_datanets(
                        root,
                        instance,
                        [name],
                        on_done=reporter.run_done,
                        assets=INFERENCE_ASSETS,
                        progress=reporter,
                    )
            for name in DEMO_DATANETS:  # close the first reward epoch (re-checked on a re-run)
                closed = run_epoch(root, instance, name, 0, progress=reporter)
                reporter.run_done(f"{name} epoch 0", closed)
                outcome[f"{name} epoch 0"] = closed.success
    finally:
        instance.dispose()
    return print_summary(lake, console) and all(outcome.values())


def print_summary(lake: Lake, console: Console) -> bool:
    """The demo's tables, payouts, a statement, verification, a proof and a checkpoint."""
    console.print(summary_table(lake))
    console.print(quality_table(lake))
    console.print(models_table(lake))
    console.print(values_table(lake))
    for name in DEMO_DATANETS:
        console.print(payouts_table(lake, name, 0))
    for row in statement_rows(lake, "alice", 0, DEMO_DATANETS[0]):
        console.print(statement_table(row))
        console.print(batches_table(row))
    report_ok = verify_lake(lake)
    console.print(
        f"ledger: {report_ok.entries} entries; verify: "
        f"{'[green]OK' if report_ok.ok else '[red]FAILED: ' + str(report_ok.first)}[/]",
        highlight=False,
    )
    first = pl.from_arrow(lake.read(contributions_table("wine"))).row(0, named=True)
    proof = inclusion_proof_document(
        lake, contributions_table("wine"), {"row_hash": first["row_hash"]}
    )
    ok_row, message = check_proof_document(json.loads(json.dumps(proof)))
    console.print(
        f"inclusion proof for {first['contributor']}'s wine row: "
        f"{'[green]OK' if ok_row else '[red]FAIL'}[/] — {message}",
        highlight=False,
    )
    signer, verifier = ckpt.generate_keys("openledger.demo")
    entries = lake.ledger.entries()
    note = ckpt.sign_checkpoint(ckpt.checkpoint_of(entries, "openledger/demo"), signer)
    ckpt.check_against_ledger(ckpt.open_checkpoint(note, verifier), entries)
    console.print(f"signed checkpoint (verifier {verifier}):", highlight=False)
    console.out(note, highlight=False)
    return report_ok.ok and ok_row
