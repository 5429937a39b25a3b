"""Stage 4: closing a reward epoch (tables `epochs`, `rewards`, `statements`).

One run per Datanet and epoch. Closing pins the newest ledger entry of every input
(contributions, values, quality, inferences and their attributions, the spec, governance,
the previous epoch) and commits the three tables; `assets.recompute` rebuilds them from
those pins alone. A closed epoch never changes: materializing it again recomputes it and
fails loudly if the ledgered inputs no longer reproduce it.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl

from assets.epochs import SOURCES, EpochError, close_epoch
from assets.names import parse_epoch_key
from assets.recompute import (
    committed_epoch,
    gather_inputs,
    latest_pins,
    open_epoch,
    recompute_epoch,
)
from assets.report import distribution_markdown
from ledger.commitment import Commitment
from ledger.lake import Committed, Lake
from ledger.log import LedgerEntry
from openledger_pipelines.ingestion import current_spec
from openledger_pipelines.ledgered import (
    ledger_check,
    ledger_check_specs,
    materialization,
    store_table,
)
from openledger_pipelines.partitions import datanet_epoch_partitions
from openledger_pipelines.resources import LakeResource

EPOCH_ASSETS = ("epochs", "rewards", "statements")


def committed_from_entry(entry: LedgerEntry) -> Committed:
    """The `Committed` of an existing ledger entry (to report a closed epoch's tables)."""
    commitment = Commitment(entry.data_root, entry.row_count, entry.schema_hash)
    name = entry.table_uri.rsplit("/", 1)[-1]
    return Committed(name, entry.table_uri, entry.delta_version, commitment, entry)


def epoch_due(store: Lake, datanet: str, epoch_days: int, now: datetime) -> int | None:
    """The Datanet's next epoch if it has run `epoch_days` by `now`: since the previous
    epoch closed, or since the Datanet's first ledger entry for epoch 0."""
    closes = [
        e.committed_at
        for e in store.ledger.entries_of(store.table_uri("epochs"))
        if (e.partition_key or "").rsplit(".", 1)[0] == datanet
    ]
    starts = [e.committed_at for e in store.ledger.entries_of(store.table_uri("datanets"), datanet)]
    opened = closes[-1] if closes else (starts[0] if starts else None)
    if opened is None or now < opened + timedelta(days=epoch_days):
        return None
    return open_epoch(store, datanet)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "epochs",
            deps=[s for s in SOURCES if s not in ("governance", "previous_epoch")],
            group_name="rewards",
            kinds={"delta"},
            description="Per closed epoch: pool, carry-over, fees, policy, pinned inputs.",
        ),
        dg.AssetSpec(
            "rewards",
            deps=["epochs"],
            group_name="rewards",
            kinds={"delta"},
            description="Integer payouts per epoch, recipient and source (pool or fees).",
        ),
        dg.AssetSpec(
            "statements",
            deps=["rewards"],
            group_name="rewards",
            kinds={"delta"},
            description="Per contributor and epoch: what they earned and why.",
        ),
    ],
    partitions_def=datanet_epoch_partitions,
    check_specs=[
        dg.AssetCheckSpec(
            "amounts_sum_exactly",
            asset="rewards",
            blocking=True,
            description="Pool rows (with the carry-over) sum to the pool; fee rows to the fees.",
        ),
        *ledger_check_specs(*EPOCH_ASSETS),
    ],
)
def epoch_close(context: dg.AssetExecutionContext, lake: LakeResource):
    """Close a Datanet's epoch: split its pool and its inference fees into integer payouts."""
    datanet, epoch = parse_epoch_key(context.partition_key)
    store = lake.open()
    done = committed_epoch(store, datanet, epoch)
    if "epochs" in done:
        yield from _already_closed(context, store, datanet, epoch)
        return
    expected = open_epoch(store, datanet)
    if epoch != expected:
        raise dg.Failure(f"{datanet}: the next epoch to close is {expected}, not {epoch}")
    spec = current_spec(lake, datanet)
    closed_at = datetime.now(UTC)
    try:
        inputs = gather_inputs(
            store, datanet, epoch, latest_pins(store, datanet, epoch), closed_at, spec.spec_hash()
        )
        closed = close_epoch(inputs)
    except EpochError as exc:
        raise dg.Failure(f"{datanet} epoch {epoch}: {exc}") from None
    context.log.info(
        f"{datanet} epoch {epoch}: pool {inputs.policy.pool_per_epoch} + carried "
        f"{inputs.carried_in}, {inputs.inferences.height} inferences, "
        f"{closed.statements.height} contributors"
    )
    committed = {}
    # rewards and statements first, the epoch record last: an epoch is closed once its
    # record is committed, so a crash before that leaves it open and re-runnable.
    for table in ("rewards", "statements", "epochs"):
        committed[table] = store_table(context, store, table, getattr(closed, table))
    record = closed.epochs.to_dicts()[0]
    yield materialization(
        committed["epochs"],
        "epochs",
        {
            "pool": record["pool"],
            "paid_pool": record["paid_pool"],
            "carried_out": record["carried_out"],
            "fees_total": record["fees_total"],
            "policy_hash": record["policy_hash"],
        },
    )
    yield materialization(
        committed["rewards"],
        "rewards",
        {"distribution": dg.MetadataValue.md(distribution_markdown(closed.statements, record))},
    )
    yield materialization(committed["statements"], "statements")
    yield _sums_check(closed.rewards, record)
    for table in EPOCH_ASSETS:
        yield ledger_check(store, committed[table], table)


def _sums_check(rewards: pl.DataFrame, record: dict) -> dg.AssetCheckResult:
    pool_sum = int(rewards.filter(pl.col("source") == "pool")["amount"].sum() or 0)
    fee_sum = int(rewards.filter(pl.col("source") == "fees")["amount"].sum() or 0)
    return dg.AssetCheckResult(
        asset_key="rewards",
        check_name="amounts_sum_exactly",
        passed=pool_sum == record["pool"] and fee_sum == record["fees_total"],
        metadata={
            "pool": record["pool"],
            "pool_rows_sum": pool_sum,
            "fees": record["fees_total"],
            "fee_rows_sum": fee_sum,
        },
    )


def _already_closed(context: dg.AssetExecutionContext, store: Lake, datanet: str, epoch: int):
    """A closed epoch is recomputed from its pins and must come out identical."""
    try:
        result = recompute_epoch(store, datanet, epoch)
    except EpochError as exc:
        raise dg.Failure(
            f"{datanet} epoch {epoch} is closed but cannot be recomputed: {exc}"
        ) from None
    if result.differences:
        raise dg.Failure(
            f"{datanet} epoch {epoch} is closed and no longer reproduces from its ledgered "
            "inputs:\n" + "\n".join(result.differences[:20])
        )
    context.log.info(f"{datanet} epoch {epoch} is closed; recomputed identical, nothing written")
    entries = result.committed
    record = result.closed.epochs.to_dicts()[0]
    for table in EPOCH_ASSETS:
        yield materialization(
            committed_from_entry(entries[table]), table, {"closed_epoch": "recomputed identical"}
        )
    yield _sums_check(result.closed.rewards, record)
    for table in EPOCH_ASSETS:
        yield ledger_check(store, committed_from_entry(entries[table]), table)


epoch_job = dg.define_asset_job(
    "epoch_job",
    selection=dg.AssetSelection.assets(*EPOCH_ASSETS),
    description="Close one Datanet's reward epoch: epochs, rewards and statements.",
)
