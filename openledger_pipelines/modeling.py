"""Stage 2 assets: the validation set, quality per row and contributor, and a model per Datanet."""

import base64
import json

import dagster as dg
import polars as pl

from assets.catalog import TABLES
from assets.ingest import DUPLICATES_SCHEMA, QUARANTINE_SCHEMA, contributions_schema
from assets.quality import (
    QUALITY_SCHEMA,
    score_rows,
    summarize_contributors,
    training_rows,
)
from assets.training import importance_chart, train_model
from assets.validation import validation_set
from ledger.lake import Lake
from openledger_pipelines.ingestion import (
    contributions_table,
    current_spec,
    datanets,
    read_or_empty,
)
from openledger_pipelines.ledgered import (
    ledger_check,
    ledger_check_specs,
    materialization,
    store_table,
)
from openledger_pipelines.partitions import datanet_partitions
from openledger_pipelines.resources import LakeResource

MODELS_SCHEMA = {
    "datanet": pl.String,
    "spec_hash": pl.String,
    "model_id": pl.String,
    "training_root": pl.String,
    "training_ledger_seq": pl.Int64,
    "params_hash": pl.String,
    "metric": pl.String,
    "metric_value": pl.Float64,
    "metrics_json": pl.String,
    "training_seconds": pl.Float64,
    "row_count": pl.Int64,
    "model_path": pl.String,
}
FEATURE_ATTRIBUTION_SCHEMA = {
    "datanet": pl.String,
    "model_id": pl.String,
    "feature": pl.String,
    "mean_abs_shap": pl.Float64,
    "rank": pl.Int64,
}


def validation_table(datanet: str) -> str:
    return TABLES["validation"].table(datanet)


def training_table(datanet: str) -> str:
    return TABLES["training_rows"].table(datanet)


@dg.asset(
    partitions_def=datanet_partitions,
    group_name="modeling",
    kinds={"delta"},
    deps=[datanets],
)
def validation(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The Datanet's fixed validation set (never drawn from contributions)."""
    datanet = context.partition_key
    spec = current_spec(lake, datanet)
    frame = validation_set(spec, lake.root_path() / "specs")
    committed = store_table(context, lake.open(), "validation", frame)
    return materialization(
        committed, extra={"source": f"{spec.validation.kind}:{spec.validation.name}"}
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "quality",
            deps=["contributions", "duplicates", "quarantine", "contributors"],
            group_name="modeling",
            kinds={"delta", "lightgbm"},
            description="Quality axes, combined score and decision per row.",
        ),
        dg.AssetSpec(
            "contributor_quality",
            deps=["contributions", "duplicates", "quarantine"],
            group_name="modeling",
            kinds={"delta"},
            description="Per-contributor quality summary and flags.",
        ),
    ],
    partitions_def=datanet_partitions,
    check_specs=[
        dg.AssetCheckSpec(
            "accepted_share_floor",
            asset="quality",
            blocking=True,
            description="Share of accepted rows ≥ the spec's floor.",
        ),
        dg.AssetCheckSpec(
            "no_contributor_lost",
            asset="contributor_quality",
            blocking=True,
            description="Everyone who contributed has a quality row.",
        ),
        *ledger_check_specs("quality", "contributor_quality"),
    ],
)
def quality(context: dg.AssetExecutionContext, lake: LakeResource):
    """Score every accepted contribution on four axes; summarize per contributor."""
    datanet = context.partition_key
    spec = current_spec(lake, datanet)
    store = lake.open()
    part = ("datanet", datanet)
    rows = read_or_empty(store, contributions_table(datanet), contributions_schema(spec))
    duplicates = read_or_empty(store, "duplicates", DUPLICATES_SCHEMA, part)
    quarantine = read_or_empty(store, "quarantine", QUARANTINE_SCHEMA, part)
    context.log.info(f"{datanet}: scoring {rows.height} rows")
    scored = score_rows(spec, rows)
    everyone = sorted(
        set(rows["contributor"]) | set(duplicates["contributor"]) | set(quarantine["contributor"])
    )
    summary = summarize_contributors(spec, scored, duplicates, quarantine, everyone)
    q = store_table(context, store, "quality", scored)
    cq = store_table(context, store, "contributor_quality", summary)
    share = float(scored["accepted"].mean() or 0.0) if scored.height else 0.0
    table_md = markdown_table(
        summary.select(
            "contributor", "rows", "accepted_share", "label_consistency", "duplicates", "flags"
        )
    )
    yield materialization(q, "quality", {"accepted_share": share})
    yield materialization(cq, "contributor_quality", {"summary": dg.MetadataValue.md(table_md)})
    yield dg.AssetCheckResult(
        asset_key="quality",
        check_name="accepted_share_floor",
        passed=share >= spec.quality.min_accepted_share,
        metadata={"accepted_share": share, "floor": spec.quality.min_accepted_share},
    )
    lost = sorted(set(everyone) - set(summary["contributor"]))
    yield dg.AssetCheckResult(
        asset_key="contributor_quality",
        check_name="no_contributor_lost",
        passed=not lost,
        metadata={"lost": ", ".join(lost) or "none", "contributors": len(everyone)},
    )
    yield ledger_check(store, q, "quality")
    yield ledger_check(store, cq, "contributor_quality")


def markdown_table(frame: pl.DataFrame) -> str:
    """A small frame as a Markdown table for Dagster metadata."""

    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def _model_card_markdown(chart_png: bytes, metrics: dict[str, float]) -> str:
    encoded = base64.b64encode(chart_png).decode()
    lines = [f"- **{k}**: {v:.4f}" for k, v in metrics.items()]
    return "\n".join([*lines, "", f"![SHAP importances](data:image/png;base64,{encoded})"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "training_rows",
            deps=["quality", "contributions"],
            group_name="modeling",
            kinds={"delta"},
            description="The exact rows the model is trained on.",
        ),
        dg.AssetSpec(
            "models",
            deps=["training_rows", "validation"],
            group_name="modeling",
            kinds={"delta", "lightgbm"},
            description="One deterministic LightGBM model per Datanet.",
        ),
        dg.AssetSpec(
            "feature_attribution",
            deps=["models"],
            group_name="modeling",
            kinds={"delta", "shap"},
            description="Mean |SHAP| per feature (TreeExplainer).",
        ),
    ],
    partitions_def=datanet_partitions,
    check_specs=ledger_check_specs("training_rows", "models", "feature_attribution"),
)
def models(context: dg.AssetExecutionContext, lake: LakeResource):
    """Train the Datanet's model on the accepted rows, evaluate it, explain it with SHAP."""
    datanet = context.partition_key
    spec = current_spec(lake, datanet)
    store = lake.open()
    rows = read_or_empty(store, contributions_table(datanet), contributions_schema(spec))
    scored = read_or_empty(store, "quality", QUALITY_SCHEMA, ("datanet", datanet))
    train = training_rows(rows, scored)
    tr = store_table(context, store, "training_rows", train)
    valid = pl.from_arrow(store.read(validation_table(datanet)))
    context.log.info(f"{datanet}: training on {train.height} rows, validating on {valid.height}")  # type: ignore[union-attr]
    model = train_model(spec, train, valid)  # type: ignore[arg-type]
    chart = importance_chart(model.importances, f"{datanet} model")
    model_path = save_model_files(store, datanet, model.model_id, model.model_bytes, chart)
    row = {
        "datanet": datanet,
        "spec_hash": spec.spec_hash(),
        "model_id": model.model_id,
        "training_root": tr.commitment.root,
        "training_ledger_seq": tr.entry.seq,
        "params_hash": model.params_hash,
        "metric": spec.metric,
        "metric_value": model.metrics[spec.metric],
        "metrics_json": json.dumps(model.metrics, sort_keys=True),
        "training_seconds": model.training_seconds,
        "row_count": model.row_count,
        "model_path": model_path,
    }
    history = read_or_empty(store, "models", MODELS_SCHEMA, ("datanet", datanet))
    history = history.filter(pl.col("model_id") != model.model_id)
    table = pl.concat([history, pl.DataFrame([row], schema=MODELS_SCHEMA)])
    m = store_table(context, store, "models", table)
    ranked = sorted(model.importances.items(), key=lambda kv: (-kv[1], kv[0]))
    attribution = pl.DataFrame(
        [
            {
                "datanet": datanet,
                "model_id": model.model_id,
                "feature": f,
                "mean_abs_shap": v,
                "rank": i + 1,
            }
            for i, (f, v) in enumerate(ranked)
        ],
        schema=FEATURE_ATTRIBUTION_SCHEMA,
    )
    fa = store_table(context, store, "feature_attribution", attribution)
    yield materialization(tr, "training_rows")
    yield materialization(
        m,
        "models",
        {
            "model_id": model.model_id,
            spec.metric: model.metrics[spec.metric],
            "model_card": dg.MetadataValue.md(_model_card_markdown(chart, model.metrics)),
            "model_file": dg.MetadataValue.path(str(store.root_path() / model_path)),
        },
    )
    yield materialization(
        fa, "feature_attribution", {"top_features": ", ".join(f for f, _ in ranked[:5])}
    )
    for committed, name in ((tr, "training_rows"), (m, "models"), (fa, "feature_attribution")):
        yield ledger_check(store, committed, name)


def save_model_files(
    lake: Lake, datanet: str, model_id: str, model_bytes: bytes, chart_png: bytes
) -> str:
    """Store the model file (named by its hash) and its SHAP chart; returns the lake path."""
    folder = lake.root_path() / "models" / datanet
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model_id}.txt").write_bytes(model_bytes)
    (folder / f"{model_id}.shap.png").write_bytes(chart_png)
    return f"models/{datanet}/{model_id}.txt"
