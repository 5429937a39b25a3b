"""Stage 3 assets: contributor Shapley values, point values and per-inference attribution."""

import dagster as dg
import polars as pl

from assets.attribution import (
    SHARES_PPB,
    point_values,
    value_contributors,
    values_table,
)
from assets.attribution import inference_shares as shares_of
from assets.inference import queries_of, read_logs
from assets.quality import CONTRIBUTOR_QUALITY_SCHEMA, QUALITY_SCHEMA
from assets.quality import valued_rows as valued_contributions
from assets.training import label_vector
from ledger.lake import Lake, LakeError
from openledger_pipelines.ingestion import contributions_table, current_spec, read_or_empty
from openledger_pipelines.ledgered import (
    ledger_check,
    ledger_check_specs,
    materialization,
    store_table,
)
from openledger_pipelines.modeling import training_table, validation_table
from openledger_pipelines.partitions import datanet_partitions
from openledger_pipelines.resources import LakeResource

INFERENCE_ATTRIBUTIONS_SCHEMA = {
    "datanet": pl.String,
    "inference_id": pl.String,
    "model_id": pl.String,
    "contributor": pl.String,
    "share_ppb": pl.Int64,
    "share": pl.Float64,
}


def valued_rows(store: Lake, datanet: str) -> tuple[pl.DataFrame, str]:
    """The rows being valued (`assets.quality.valued_rows`: contributions accepted at
    ingestion, less near-duplicates of earlier submissions), with the root of the committed
    contributions version read."""
    name = contributions_table(datanet)
    entry = store.ledger.latest(store.table_uri(name), None)
    if entry is None:
        raise dg.Failure(f"{name} has no ledger entry yet")
    rows = pl.from_arrow(store.read(name, entry.delta_version))
    quality = read_or_empty(store, "quality", QUALITY_SCHEMA, ("datanet", datanet))
    return valued_contributions(rows, quality), entry.data_root  # type: ignore[arg-type]


@dg.asset(
    partitions_def=datanet_partitions,
    group_name="attribution",
    kinds={"delta", "lightgbm"},
    deps=["contributions", "validation", "quality", "contributor_quality"],
    check_specs=[
        dg.AssetCheckSpec(
            "efficiency",
            asset="contributor_values",
            description="Values sum to U(all) - U(∅) within their stated error.",
        ),
        *ledger_check_specs("contributor_values"),
    ],
)
def contributor_values(context: dg.AssetExecutionContext, lake: LakeResource):
    """Shapley value of every contributor (exact for few contributors, else antithetic
    truncated Monte Carlo with a stopping rule), with standard errors and counts."""
    datanet = context.partition_key
    spec = current_spec(lake, datanet)
    store = lake.open()
    rows, root = valued_rows(store, datanet)
    validation = pl.from_arrow(store.read(validation_table(datanet)))
    everyone = read_or_empty(
        store, "contributor_quality", CONTRIBUTOR_QUALITY_SCHEMA, ("datanet", datanet)
    )["contributor"].to_list()

    def progress(pairs: int, evaluations: int, half_width: float) -> None:
        context.log.info(
            f"{datanet}: {pairs} permutation pairs, {evaluations} utilities, "
            f"widest half-width {half_width:.4f}"
        )

    result = value_contributors(spec, rows, validation, progress)  # type: ignore[arg-type]
    table = values_table(spec, result, everyone, root)
    committed = store_table(context, store, "contributor_values", table)
    gap = result.efficiency_gap()
    allowed = spec.valuation.z * float((result.std_errors**2).sum() ** 0.5) + 1e-9
    efficient = not result.method.startswith("banzhaf")  # Banzhaf values need not add up
    yield materialization(
        committed,
        extra={
            "method": result.method,
            "utility_evaluations": result.utility_evaluations,
            "model_fits": int(result.notes.get("fits", 0)),
            "total_utility": result.total_utility,
            "efficiency_gap": gap,
            "converged": result.converged,
        },
    )
    yield dg.AssetCheckResult(
        asset_key="contributor_values",
        check_name="efficiency",
        passed=abs(gap) <= allowed or not efficient,
        metadata={
            "sum_of_values": float(result.values.sum()),
            "u_all_minus_u_empty": result.total_utility,
            "allowed": allowed,
            "applies": efficient,  # False: Banzhaf values, which are not efficient
        },
    )
    yield ledger_check(store, committed, "contributor_values")


@dg.asset(
    name="point_values",
    partitions_def=datanet_partitions,
    group_name="attribution",
    kinds={"delta"},
    deps=["contributions", "validation", "quality"],
    check_specs=ledger_check_specs("point_values"),
)
def point_values_asset(context: dg.AssetExecutionContext, lake: LakeResource):
    """Exact KNN-Shapley value of every training row (flags the lowest-value rows)."""
    datanet = context.partition_key
    spec = current_spec(lake, datanet)
    store = lake.open()
    rows, _ = valued_rows(store, datanet)
    validation = pl.from_arrow(store.read(validation_table(datanet)))
    table = point_values(spec, rows, validation)  # type: ignore[arg-type]
    committed = store_table(context, store, "point_values", table)
    flagged = int(table["low_value_flag"].sum())
    yield materialization(committed, "point_values", {"low_value_rows": flagged})
    yield ledger_check(store, committed, "point_values")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "inferences",
            deps=["models"],
            group_name="attribution",
            kinds={"delta"},
            description="Served predictions: model, query hash, prediction, fee.",
        ),
        dg.AssetSpec(
            "inference_attributions",
            deps=["inferences", "training_rows"],
            group_name="attribution",
            kinds={"delta"},
            description="Each inference's contributor shares (sum to 1 exactly).",
        ),
    ],
    partitions_def=datanet_partitions,
    check_specs=[
        dg.AssetCheckSpec("shares_sum_to_one", asset="inference_attributions", blocking=True),
        *ledger_check_specs("inferences", "inference_attributions"),
    ],
)
def inferences(context: dg.AssetExecutionContext, lake: LakeResource):
    """Ledger the inferences logged since the last run and attribute each one to
    contributors (both tables are logs: a re-run after a crash appends what is missing)."""
    datanet = context.partition_key
    spec = current_spec(lake, datanet)
    store = lake.open()
    served = read_logs(lake.root_path(), datanet)
    part = ("datanet", datanet)
    recorded = ids_in(store, "inferences", part)
    logged = store_table(
        context, store, "inferences", served.filter(~pl.col("inference_id").is_in(recorded))
    )
    waiting = served.filter(
        ~pl.col("inference_id").is_in(ids_in(store, "inference_attributions", part))
    )
    attributions = []
    for model_id, group in waiting.group_by("model_id", maintain_order=True):
        rows = model_training_rows(store, datanet, str(model_id[0]))
        predicted = label_vector(
            spec, group.select(pl.col("prediction").alias(spec.label.identifier))
        )
        queries = queries_of(spec, group)
        for inference_id, parts in zip(
            group["inference_id"], shares_of(spec, rows, queries, predicted), strict=True
        ):
            attributions += [
                {
                    "datanet": datanet,
                    "inference_id": inference_id,
                    "model_id": str(model_id[0]),
                    "contributor": c,
                    "share_ppb": p,
                    "share": p / 1e9,
                }
                for c, p in parts.items()
            ]
    table = pl.DataFrame(attributions, schema=INFERENCE_ATTRIBUTIONS_SCHEMA).sort(
        "inference_id", "contributor"
    )
    attributed = store_table(context, store, "inference_attributions", table)
    totals = table.group_by("inference_id").agg(pl.col("share_ppb").sum())
    bad = totals.filter(pl.col("share_ppb") != SHARES_PPB).height
    missing = waiting.height - totals.height
    yield materialization(
        logged,
        "inferences",
        {"fees": int(waiting["fee"].sum() or 0), "new_inferences": served.height - len(recorded)},
    )
    yield materialization(attributed, "inference_attributions")
    yield dg.AssetCheckResult(
        asset_key="inference_attributions",
        check_name="shares_sum_to_one",
        passed=bad == 0 and missing == 0,
        metadata={"inferences": waiting.height, "not_summing_to_one": bad, "missing": missing},
    )
    yield ledger_check(store, logged, "inferences")
    yield ledger_check(store, attributed, "inference_attributions")


def ids_in(store: Lake, table: str, partition: tuple[str, str]) -> list[str]:
    """The inference ids a log table holds for a Datanet (none if it does not exist)."""
    try:
        rows = store.read(table, partition=partition)
    except LakeError:
        return []
    return rows.column("inference_id").unique().to_pylist()


def model_training_rows(store: Lake, datanet: str, model_id: str) -> pl.DataFrame:
    """The training rows a model was trained on, read at the version its ledger entry names."""
    models = pl.from_arrow(store.read("models", partition=("datanet", datanet)))
    match = models.filter(pl.col("model_id") == model_id)  # type: ignore[union-attr]
    if match.height == 0:
        raise dg.Failure(f"inference logged for unknown model {model_id}")
    entry = store.ledger.entry(int(match["training_ledger_seq"][0]))
    if entry is None:
        raise dg.Failure(f"model {model_id} names a missing training-set entry")
    return pl.from_arrow(store.read(training_table(datanet), entry.delta_version))
