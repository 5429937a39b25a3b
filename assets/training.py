"""LightGBM per Datanet: features, deterministic parameters, training, metrics, SHAP.

Everything that fits a model (the quality stage's out-of-fold label check, the model of a
Datanet, and later the attribution utility) builds its matrix with `feature_matrix` and its
parameters with `lgb_params`, so the same rows always give the same model bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import warnings
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.metrics import balanced_accuracy_score, r2_score, roc_auc_score

from assets.datanets import DatanetSpec


def model_features(spec: DatanetSpec) -> list[str]:
    """Feature columns a model uses, by lake column: safe as LightGBM and SHAP feature
    names (free-text strings are not model inputs)."""
    return [c.identifier for c in spec.features if c.type != "string"]


def feature_matrix(spec: DatanetSpec, frame: pl.DataFrame) -> np.ndarray:
    """float64 matrix: numbers as is, bools 0/1, categories as their index in the spec."""
    columns = []
    for col in spec.features:
        if col.type == "string":
            continue
        values = frame[col.identifier]
        if col.type == "category":
            codes = {str(c): float(i) for i, c in enumerate(col.categories or [])}
            columns.append(
                values.cast(pl.String).replace_strict(codes, default=None, return_dtype=pl.Float64)
            )
        else:
            columns.append(values.cast(pl.Float64))
    if not columns:
        return np.zeros((frame.height, 0))
    return pl.DataFrame(columns).to_numpy().astype(np.float64, copy=False)


def label_vector(spec: DatanetSpec, frame: pl.DataFrame) -> np.ndarray:
    """Class index (classification, spec order) or float target (regression)."""
    values = frame[spec.label.identifier]
    if spec.task == "regression":
        return values.cast(pl.Float64).to_numpy()
    codes = {str(c): i for i, c in enumerate(spec.label.categories or [])}
    return values.cast(pl.String).replace_strict(codes, return_dtype=pl.Int64).to_numpy()


def n_classes(spec: DatanetSpec) -> int:
    return len(spec.label.categories or []) if spec.task != "regression" else 0


def lgb_params(spec: DatanetSpec, **overrides: object) -> dict[str, object]:
    """Deterministic LightGBM parameters for the Datanet (spec's `training` + task)."""
    policy = spec.training
    objective = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}
    params: dict[str, object] = {
        "objective": objective[spec.task],
        "verbosity": -1,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": policy.num_threads,
        "seed": policy.seed,
        "bagging_seed": policy.seed,
        "feature_fraction_seed": policy.seed,
        "data_random_seed": policy.seed,
        **policy.params,
    }
    if spec.task == "multiclass":
        params["num_class"] = n_classes(spec)
    params.update(overrides)
    return params


def categorical_features(spec: DatanetSpec) -> list[int]:
    """Positions of category columns in `feature_matrix`."""
    used = [c for c in spec.features if c.type != "string"]
    return [i for i, c in enumerate(used) if c.type == "category"]


def fit(
    spec: DatanetSpec, x: np.ndarray, y: np.ndarray, num_boost_round: int | None = None
) -> lgb.Booster:
    """A deterministic LightGBM booster on (x, y)."""
    params = lgb_params(spec)
    data = lgb.Dataset(
        x,
        label=y,
        params={"verbosity": -1, "max_bin": 255},
        free_raw_data=True,
        feature_name=model_features(spec) or "auto",
        categorical_feature=categorical_features(spec) or "auto",
    )
    return lgb.train(params, data, num_boost_round=num_boost_round or spec.training.num_boost_round)


def predict(spec: DatanetSpec, booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """Class probabilities (n, k) for classification, predictions (n,) for regression."""
    raw = booster.predict(x)
    if spec.task == "binary":
        return np.column_stack([1.0 - raw, raw])
    return raw


def bounded_metric(spec: DatanetSpec, y: np.ndarray, prediction: np.ndarray) -> float:
    """The spec's metric, always in [0, 1] (r2 is clipped at 0; AUC of one class is 0.5)."""
    if spec.metric == "r2_clipped":
        return float(max(0.0, r2_score(y, prediction))) if len(y) > 1 else 0.0
    labels = np.argmax(prediction, axis=1)
    if spec.metric == "accuracy":
        return float(np.mean(labels == y))
    if spec.metric == "balanced_accuracy":
        return float(balanced_accuracy_score(y, labels))
    if len(np.unique(y)) < 2:
        return 0.5
    if spec.task == "binary":
        return float(roc_auc_score(y, prediction[:, 1]))
    return float(
        roc_auc_score(y, prediction, multi_class="ovr", labels=list(range(n_classes(spec))))
    )


@dataclass(frozen=True)
class TrainedModel:
    model_bytes: bytes
    model_id: str  # SHA-256 of the model file
    params_hash: str
    metrics: dict[str, float]
    training_seconds: float
    row_count: int
    importances: dict[str, float]  # mean |SHAP| per feature on the validation set


def params_hash(spec: DatanetSpec) -> str:
    doc = {"params": lgb_params(spec), "num_boost_round": spec.training.num_boost_round}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def shap_importances(spec: DatanetSpec, booster: lgb.Booster, x: np.ndarray) -> dict[str, float]:
    """Mean |SHAP value| per feature (TreeExplainer), averaged over classes."""
    import shap  # heavy import, only where a model is explained

    names = model_features(spec)
    if x.shape[0] == 0 or not names:
        return dict.fromkeys(names, 0.0)
    with warnings.catch_warnings():  # shap notes its binary output format; we handle both
        warnings.simplefilter("ignore", UserWarning)
        values = np.asarray(shap.TreeExplainer(booster).shap_values(x))
    if values.ndim == 3:  # (n, features, classes) or (classes, n, features)
        axis = 2 if values.shape[1] == len(names) else 0
        values = np.abs(values).mean(axis=axis)
    importance = np.abs(values).mean(axis=0)
    return {name: float(v) for name, v in zip(names, importance, strict=True)}


def train_model(
    spec: DatanetSpec, training_rows: pl.DataFrame, validation: pl.DataFrame
) -> TrainedModel:
    """Train, evaluate on the fixed validation set and explain one Datanet model."""
    if training_rows.height == 0:
        raise ValueError(f"{spec.name}: no accepted rows to train on")
    x, y = feature_matrix(spec, training_rows), label_vector(spec, training_rows)
    started = time.perf_counter()
    booster = fit(spec, x, y)
    seconds = time.perf_counter() - started
    xv, yv = feature_matrix(spec, validation), label_vector(spec, validation)
    prediction = predict(spec, booster, xv)
    metrics = {spec.metric: bounded_metric(spec, yv, prediction)}
    if spec.task != "regression":
        metrics["accuracy"] = float(np.mean(np.argmax(prediction, axis=1) == yv))
    model_bytes = booster.model_to_string().encode("utf-8")
    return TrainedModel(
        model_bytes=model_bytes,
        model_id=hashlib.sha256(model_bytes).hexdigest(),
        params_hash=params_hash(spec),
        metrics=metrics,
        training_seconds=seconds,
        row_count=training_rows.height,
        importances=shap_importances(spec, booster, xv),
    )


def load_model(model_bytes: bytes) -> lgb.Booster:
    return lgb.Booster(model_str=model_bytes.decode("utf-8"))


def importance_chart(importances: dict[str, float], title: str) -> bytes:
    """A PNG bar chart of feature importances, largest first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(importances.items(), key=lambda kv: kv[1], reverse=True)[:20][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(items) + 1.2), dpi=100)
    ax.barh([k for k, _ in items], [v for _, v in items], color="#3b6ea5")
    ax.set_xlabel("mean |SHAP value| on the validation set")
    ax.set_title(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
