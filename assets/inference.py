"""Serving predictions from a Datanet's current model and logging them for attribution.

`openledger infer` validates the query rows like contributions (features only), predicts
with the model file whose SHA-256 is the current model id, and appends a log file under
`<lake>/inference_log/<datanet>/`; the `inferences` asset ledgers the logs and
`inference_attributions` splits each inference among contributors.
"""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from assets.datanets import DatanetSpec, SpecError
from assets.ingest import read_strict
from assets.layout import INFERENCE_LOG, inside
from assets.training import feature_matrix, load_model, predict
from ledger.commitment import row_leaf_hashes
from ledger.storage import lake_dir

INFERENCES_SCHEMA = {
    "datanet": pl.String,
    "inference_id": pl.String,
    "model_id": pl.String,
    "query_hash": pl.String,
    "prediction": pl.String,
    "fee": pl.Int64,
    "served_at": pl.Datetime("us", "UTC"),
    "query_json": pl.String,
}


def features_only(spec: DatanetSpec) -> DatanetSpec:
    """The spec with an optional label: queries carry features only."""
    return spec.model_copy(update={"label": spec.label.model_copy(update={"nullable": True})})


def read_queries(spec: DatanetSpec, path: Path) -> pl.DataFrame:
    """Query rows of a file (headers as the spec spells them), typed by the spec's
    features and keyed by lake column; any invalid row is an error."""
    return read_strict(path, features_only(spec)).select([c.identifier for c in spec.features])


def serve(
    spec: DatanetSpec,
    model_bytes: bytes,
    model_id: str,
    queries: pl.DataFrame,
    served_at: datetime | None = None,
    fee: int | None = None,
) -> pl.DataFrame:
    """Predictions for the queries, as rows of the `inferences` table; each carries `fee`
    (the fee of the reward policy in force; default: the spec's)."""
    if hashlib.sha256(model_bytes).hexdigest() != model_id:
        raise SpecError(f"model file does not hash to model id {model_id}")
    booster = load_model(model_bytes)
    output = predict(spec, booster, feature_matrix(spec, queries))
    if spec.task == "regression":
        labels = [repr(float(v)) for v in output]
    else:
        categories = spec.label.categories or []
        labels = [str(categories[i]) for i in np.argmax(output, axis=1)]
    when = served_at or datetime.now(UTC)
    hashes = row_leaf_hashes(queries).to_pylist() if queries.height else []
    stamp = when.isoformat()
    ids = [
        hashlib.sha256(f"{model_id}|{h}|{stamp}|{i}".encode()).hexdigest()
        for i, h in enumerate(hashes)
    ]
    return pl.DataFrame(
        {
            "datanet": [spec.name] * queries.height,
            "inference_id": ids,
            "model_id": [model_id] * queries.height,
            "query_hash": hashes,
            "prediction": labels,
            "fee": [spec.rewards.fee_per_inference if fee is None else fee] * queries.height,
            "served_at": [when] * queries.height,
            "query_json": [
                r for r in queries.select(pl.struct(pl.all()).struct.json_encode()).to_series()
            ],
        },
        schema=INFERENCES_SCHEMA,
    )


def write_log(root: Path, datanet: str, served: pl.DataFrame) -> Path:
    """Append a log file of served inferences (never rewritten)."""
    folder = inside(lake_dir(root), INFERENCE_LOG, datanet)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    served.write_parquet(buffer)
    data = buffer.getvalue()
    name = f"{hashlib.sha256(data).hexdigest()[:20]}.parquet"
    inside(folder, name).write_bytes(data)
    return folder / name


def read_logs(root: Path, datanet: str) -> pl.DataFrame:
    """Every logged inference of a Datanet, in a stable order."""
    folder = inside(lake_dir(root), INFERENCE_LOG, datanet)
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return pl.DataFrame(schema=INFERENCES_SCHEMA)
    frames = [pl.read_parquet(io.BytesIO(f.read_bytes())).cast(INFERENCES_SCHEMA) for f in files]  # type: ignore[arg-type]
    return pl.concat(frames).unique("inference_id", keep="first").sort("served_at", "inference_id")


def queries_of(spec: DatanetSpec, inferences: pl.DataFrame) -> pl.DataFrame:
    """The logged query features back as a typed frame."""
    schema = pl.Struct({c.identifier: c.polars_type() for c in spec.features})
    return inferences.select(pl.col("query_json").str.json_decode(schema)).unnest("query_json")


def current_model(models: pl.DataFrame) -> dict[str, object]:
    """The newest row of a Datanet's `models` table."""
    if models.height == 0:
        raise SpecError("no model yet; run `openledger run` first")
    return models.sort("training_ledger_seq").row(-1, named=True)
