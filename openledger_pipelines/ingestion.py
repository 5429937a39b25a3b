"""Stage 1 assets: Datanet specs, contributor keys and ingested contributions.

Thin wrappers: read the inputs from the lake, call `assets.*`, write through
`store_table` (Delta + ledger, as `assets.catalog` declares each table), return metadata
and check results.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow.compute as pc

from assets.catalog import TABLES, commit
from assets.datanets import DatanetSpec, SpecError, load_spec
from assets.ingest import (
    BATCHES_SCHEMA,
    DUPLICATES_SCHEMA,
    HASH_PREFIX,
    QUARANTINE_SCHEMA,
    IngestResult,
    KnownRows,
    Submission,
    contributions_schema,
    ingest_datanet,
    pending_submissions,
    reconcile,
)
from assets.layout import inbox_dir, registrations, spec_path, validation_sha256
from assets.receipts import receipted_submissions
from ledger.lake import Committed, Lake, LakeError
from ledger.log import COMMIT, LedgerEntry
from openledger_pipelines.ledgered import (
    ledger_check,
    ledger_check_specs,
    materialization,
    store_table,
)
from openledger_pipelines.partitions import datanet_partitions
from openledger_pipelines.resources import LakeResource
from openledger_pipelines.version import code_version

DATANETS_SCHEMA = {
    "datanet": pl.String,
    "spec_version": pl.Int64,
    "spec_hash": pl.String,
    "task": pl.String,
    "metric": pl.String,
    "owner": pl.String,
    "licence": pl.String,
    "require_signatures": pl.Boolean,
    "spec_json": pl.String,
    "validation_sha256": pl.String,  # the lake's copy of a `file` validation set; null: bundled
}
CONTRIBUTORS_SCHEMA = {
    "datanet": pl.String,
    "contributor": pl.String,
    "public_key": pl.String,
    "registered_at": pl.Datetime("us", "UTC"),
}


def contributions_table(datanet: str) -> str:
    """Contributions have the Datanet's own typed columns: one table per Datanet."""
    return TABLES["contributions"].table(datanet)


def read_or_empty(
    lake: Lake, table: str, schema: dict, partition: tuple[str, str] | None = None
) -> pl.DataFrame:
    """The latest rows of a table (or partition); an empty frame if it does not exist yet."""
    try:
        frame = pl.from_arrow(lake.read(table, partition=partition))
    except LakeError:
        return pl.DataFrame(schema=schema)
    return frame.select(list(schema)).cast(schema)  # type: ignore[union-attr,arg-type]


def lake_known_rows(store: Lake, table: str, before: int | None) -> KnownRows:
    """Who first submitted given hashes, from the contributions log: only the 8-byte
    `hash_prefix` column is read to find candidates (all rows of it), then the few rows
    whose prefix matches, from the row groups their sorted files put them in. Rows from
    `before` on (appended by a run that died in its ingest step) do not count: a row is
    never a duplicate of its own batch."""
    empty = pl.DataFrame(
        schema={"row_hash": pl.String, "contributor": pl.String, "batch_id": pl.String}
    )
    upto = pc.field("seq") < before if before is not None else None
    try:
        prefixes = store.read(table, where=upto, columns=[HASH_PREFIX]).column(HASH_PREFIX)
    except LakeError:
        return lambda candidates: empty
    known = pl.Series(HASH_PREFIX, prefixes.combine_chunks().to_numpy(zero_copy_only=False))

    def origins(candidates: pl.DataFrame) -> pl.DataFrame:
        hits = candidates.filter(pl.col(HASH_PREFIX).is_in(known.implode()))
        if hits.height == 0:
            return empty
        wanted = pc.field(HASH_PREFIX).isin(hits[HASH_PREFIX].unique().to_list())
        rows = store.read(
            table,
            where=wanted if upto is None else wanted & upto,
            columns=["row_hash", "contributor", "batch_id"],
        )
        frame = pl.DataFrame(pl.from_arrow(rows))
        return frame.filter(pl.col("row_hash").is_in(hits["row_hash"].implode()))

    return origins


def unfinished_entry(
    store: Lake, datanet: str, table: str, partition: tuple[str, str] | None
) -> LedgerEntry | None:
    """The latest entry of an ingest table when a run appended it and died before its
    step appended `batches` (always last), so its batches do not count as ingested."""
    entry = store.ledger.latest(store.table_uri(table), partition[1] if partition else None)
    if entry is None or table == "batches" or entry.old_row_count == entry.row_count:
        return None
    done = [
        e
        for e in store.ledger.entries_of(store.table_uri("batches"), datanet)
        if e.entry_type == COMMIT  # a rollback of `batches` finishes no step
    ]
    return None if done and done[-1].seq > entry.seq else entry


def batches_landed(
    store: Lake, datanet: str, table: str, partition: tuple[str, str] | None
) -> set[str]:
    """Batches whose rows a run that died in its ingest step already appended to `table`."""
    entry = unfinished_entry(store, datanet, table, partition)
    if entry is None:
        return set()
    added = store.read(
        table,
        entry.delta_version,
        partition,
        where=pc.field("seq") >= entry.old_row_count,
        columns=["batch_id"],
    )
    return set(added.column("batch_id").to_pylist())


@dataclass
class IngestStep:
    """What one ingest step did: the new rows, their ledgered appends, late receipts."""

    result: IngestResult
    committed: dict[str, Committed]
    late: int


def ingest_step(
    store: Lake,
    spec: DatanetSpec,
    *,
    run_id: str,
    code: str,
    progress: Callable[[int, int, Submission], None] | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> IngestStep:
    """Ingest a Datanet's new inbox files and append the new rows to its four logs
    (`batches` last: a file counts as done only when all four hold it). A re-run after a
    crash appends only what is missing. The `ingest` asset is this plus Dagster metadata."""
    datanet = spec.name
    part = ("datanet", datanet)
    done = read_or_empty(store, "batches", BATCHES_SCHEMA, part)
    found, _ = registrations(store.root_path(), datanet)
    keys = {r.contributor: r.public_key for r in found}
    submissions, late = receipted_submissions(
        store,
        inbox_dir(store.root_path(), datanet),
        datanet,
        recorded=set(zip(done["contributor"], done["file_name"], strict=True)),
        run_id=run_id,
        code_version=code,
    )
    if late:
        warn(
            f"{datanet}: {late} inbox file(s) had no receipt (not placed by `openledger "
            "contribute`, or their manifest changed since): received now, after every "
            "receipted file"
        )
    pending = pending_submissions(submissions, done)
    table = contributions_table(datanet)
    unfinished = unfinished_entry(store, datanet, table, None)
    previous = IngestResult(
        contributions=pl.DataFrame(schema=contributions_schema(spec)),
        quarantine=pl.DataFrame(schema=QUARANTINE_SCHEMA),
        duplicates=pl.DataFrame(schema=DUPLICATES_SCHEMA),
        batches=done,
    )
    known = lake_known_rows(store, table, unfinished.old_row_count if unfinished else None)
    result = ingest_datanet(spec, pending, keys, previous, progress, known)
    committed = {}
    for name in INGEST_OUTPUTS:  # `batches` last: it marks a file done
        table = TABLES[name]
        landed = batches_landed(
            store,
            datanet,
            table.table(datanet),
            (table.partition, datanet) if table.partition else None,
        )
        if landed:
            warn(f"{table.table(datanet)}: a crashed run appended batches {sorted(landed)} already")
        frame = getattr(result, name)
        committed[name] = commit(
            store,
            name,
            frame.filter(~pl.col("batch_id").is_in(sorted(landed))),
            datanet=datanet,
            run_id=run_id,
            code_version=code,
        )
    return IngestStep(result, committed, late)


def current_spec_at(root: Path, datanet: str) -> DatanetSpec:
    """The published spec of a Datanet (SpecError if there is none)."""
    path = spec_path(root, datanet)
    if not path.exists():
        raise SpecError(f"Datanet {datanet!r} has no spec at {path}")
    return load_spec(path)


def current_spec(lake: LakeResource, datanet: str) -> DatanetSpec:
    try:
        return current_spec_at(lake.root_path(), datanet)
    except SpecError as exc:
        raise dg.Failure(str(exc)) from None


@dg.asset(
    partitions_def=datanet_partitions,
    group_name="ingestion",
    kinds={"delta"},
)
def datanets(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Every version of the Datanet's spec; a changed spec, or a changed validation file,
    is a new version row."""
    datanet = context.partition_key
    spec = current_spec(lake, datanet)
    try:
        validation = validation_sha256(lake.root_path() / "specs", spec)
    except SpecError as exc:
        raise dg.Failure(str(exc)) from None
    store = lake.open()
    versions = read_or_empty(store, "datanets", DATANETS_SCHEMA, ("datanet", datanet))
    known = set(zip(versions["spec_hash"], versions["validation_sha256"], strict=True))
    if (spec.spec_hash(), validation) not in known:
        row = {
            "datanet": datanet,
            "spec_version": versions.height + 1,
            "spec_hash": spec.spec_hash(),
            "task": spec.task,
            "metric": spec.metric,
            "owner": spec.owner,
            "licence": spec.licence,
            "require_signatures": spec.require_signatures,
            "spec_json": spec.canonical_json(),
            "validation_sha256": validation,
        }
        versions = pl.concat([versions, pl.DataFrame([row], schema=DATANETS_SCHEMA)])
        context.log.info(f"{datanet}: spec version {row['spec_version']} ({row['spec_hash'][:12]})")
    committed = store_table(context, store, "datanets", versions)
    return materialization(
        committed, extra={"spec_hash": spec.spec_hash(), "spec_version": versions.height}
    )


@dg.asset(
    partitions_def=datanet_partitions,
    group_name="ingestion",
    kinds={"delta"},
    deps=[datanets],
)
def contributors(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Contributors and the Ed25519 public keys they registered with the Datanet."""
    datanet = context.partition_key
    found, problems = registrations(lake.root_path(), datanet)
    for problem in problems:
        context.log.warning(f"{datanet}: registration {problem}")
    frame = pl.DataFrame(
        [
            {
                "datanet": r.datanet,
                "contributor": r.contributor,
                "public_key": r.public_key,
                "registered_at": r.registered_at,
            }
            for r in found
        ],
        schema=CONTRIBUTORS_SCHEMA,
    )
    committed = store_table(context, lake.open(), "contributors", frame)
    return materialization(committed, extra={"ignored_registrations": len(problems)})


INGEST_OUTPUTS = ("contributions", "quarantine", "duplicates", "batches")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            deps=[datanets, contributors],
            group_name="ingestion",
            kinds={"delta", "polars"},
            description=doc,
        )
        for name, doc in (
            ("contributions", "Accepted contribution rows, typed by the Datanet's spec."),
            ("quarantine", "Rejected rows and files, with reason code, message and payload."),
            ("duplicates", "Exact duplicate rows; the credit stays with the first contributor."),
            ("batches", "One row per ingested file: counts that reconcile."),
        )
    ],
    partitions_def=datanet_partitions,
    check_specs=[
        dg.AssetCheckSpec(
            "schema_conforms",
            asset="contributions",
            blocking=True,
            description="Contributions have exactly the spec's typed columns.",
        ),
        dg.AssetCheckSpec(
            "counts_reconcile",
            asset="contributions",
            blocking=True,
            description="rows in = accepted + quarantined + duplicates.",
        ),
        *ledger_check_specs(*INGEST_OUTPUTS),
    ],
)
def ingest(context: dg.AssetExecutionContext, lake: LakeResource):
    """Ingest every new inbox file of the Datanet: validate, type, hash, split three ways,
    and append the new rows to the four logs (`batches` last: a file counts as done only
    when all four hold it). A re-run after a crash appends only what is missing."""
    datanet = context.partition_key
    spec = current_spec(lake, datanet)
    store = lake.open()

    def progress(done: int, total: int, sub: Submission) -> None:
        context.log.info(f"{datanet}: ingested {done}/{total}: {sub.file_name} ({sub.contributor})")

    step = ingest_step(
        store,
        spec,
        run_id=context.run.run_id,
        code=code_version(),
        progress=progress,
        warn=context.log.warning,
    )
    result, committed, late = step.result, step.committed, step.late
    new = result.new_batches
    summary = {
        "new_files": len(new),
        "rows_in": sum(int(b["rows_in"]) for b in new),  # type: ignore[call-overload]
        "accepted": sum(int(b["accepted"]) for b in new),  # type: ignore[call-overload]
        "quarantined": sum(int(b["quarantined"]) for b in new),  # type: ignore[call-overload]
        "duplicates": sum(int(b["duplicates"]) for b in new),  # type: ignore[call-overload]
        "rejected_files": sum(1 for b in new if b["status"] == "rejected"),
        "late_receipts": late,
    }
    for name in INGEST_OUTPUTS:
        yield materialization(committed[name], name, summary if name == "batches" else None)
    expected = contributions_schema(spec)
    actual = dict(result.contributions.schema)
    yield dg.AssetCheckResult(
        asset_key="contributions",
        check_name="schema_conforms",
        passed=list(actual.items()) == list(expected.items()),
        metadata={"columns": ", ".join(f"{k}:{v}" for k, v in actual.items())},
    )
    problems = reconcile(result)
    yield dg.AssetCheckResult(
        asset_key="contributions",
        check_name="counts_reconcile",
        passed=not problems,
        metadata={"problems": "; ".join(problems) or "none", **summary},
    )
    for name in INGEST_OUTPUTS:
        yield ledger_check(store, committed[name], name)
