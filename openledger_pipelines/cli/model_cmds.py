"""Model commands: the model card and serving predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openledger_pipelines.cli._common import (
    DEFAULT_LAKE,
    DatanetOption,
    LakeOption,
    friendly_errors,
    open_lake,
    out,
)

model_app = typer.Typer(help="Trained models.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
    app.command("infer")(infer)


@model_app.command("show")
@friendly_errors
def model_show(
    datanet: Annotated[str, typer.Argument(metavar="DATANET", help="Datanet name.")],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """The current model card: training data root, metrics, top features."""
    from rich.table import Table

    from assets.names import SpecError, check_datanet_name
    from ledger.sql import rows_where

    store = open_lake(lake)
    check_datanet_name(datanet)
    cards = rows_where(
        store, "models", "datanet = ? order by training_ledger_seq desc limit 1", [datanet]
    )
    if not cards:
        raise SpecError(f"no model for Datanet {datanet!r} yet; run `openledger run`")
    card = cards[0]
    features = rows_where(
        store, "feature_attribution", "model_id = ? order by rank limit 10", [card["model_id"]]
    )
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
        grid.add_row(name, str(card[name]))
    out.print(grid)
    shap_grid = Table("feature", "mean |SHAP|", title="top features")
    for row in features:
        shap_grid.add_row(str(row["feature"]), f"{row['mean_abs_shap']:.4f}")
    out.print(shap_grid)


@friendly_errors
def infer(
    datanet: DatanetOption,
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="Queries: CSV, Parquet or JSON Lines features."),
    ],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Serve predictions from the Datanet's current model and log them for attribution."""
    from rich.table import Table

    from assets.inference import current_model, read_queries, serve, write_log
    from assets.names import check_datanet_name
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
        grid.add_row(str(i), str(row["prediction"]), row["query_hash"], str(row["fee"]))
    out.print(grid)
    out.print(
        f"logged {served.height} inferences to {log.relative_to(root)}; "
        "`openledger run` attributes them (or `openledger epoch close`)",
        highlight=False,
    )
