"""Quality of every accepted contribution row and of every contributor (docs/quality.md).

Four axes per row, each in [0, 1], higher is better:

- validity: share of the row's nullable spec columns that hold a value (hard constraints
  were enforced at ingestion; rows failing them are in quarantine);
- uniqueness: 0 for a near-duplicate of an earlier row (equal after rounding floats to the
  spec's `near_duplicate_decimals` and trimming/lowercasing text), else 1; the earliest row
  (received time, then contributor, batch, row index) keeps the credit;
- label_consistency: out-of-fold LightGBM probability of the given label, folds grouped by
  contributor so a contributor's rows are judged by models trained on others' rows (in the
  spirit of confident learning); for regression exp(-r² / (2 s²)) with r the out-of-fold
  residual and s = 3 * the residuals' robust scale;
- typicality: 1 - outlier score; the outlier score grows with the largest robust z-score
  (|x - median| / (1.4826 · MAD)) over numeric features beyond the spec's `outlier_z`:
  typicality = exp(-max(0, z_max - outlier_z) / outlier_z).

Combined row score = validity * uniqueness * √(label_consistency * typicality); a row is
accepted for training when combined ≥ the spec's `min_row_score`.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.model_selection import GroupKFold, KFold

from assets.datanets import DatanetSpec
from assets.training import feature_matrix, fit, label_vector, predict

AXES = ("validity", "uniqueness", "label_consistency", "typicality")
QUALITY_SCHEMA = {
    "datanet": pl.String,
    "contributor": pl.String,
    "batch_id": pl.String,
    "row_index": pl.Int64,
    "row_hash": pl.String,
    "validity": pl.Float64,
    "uniqueness": pl.Float64,
    "label_consistency": pl.Float64,
    "typicality": pl.Float64,
    "combined": pl.Float64,
    "accepted": pl.Boolean,
    "reasons": pl.String,
}
CONTRIBUTOR_QUALITY_SCHEMA = {
    "datanet": pl.String,
    "contributor": pl.String,
    "rows": pl.Int64,
    "accepted_rows": pl.Int64,
    "accepted_share": pl.Float64,
    "validity": pl.Float64,
    "uniqueness": pl.Float64,
    "label_consistency": pl.Float64,
    "typicality": pl.Float64,
    "combined": pl.Float64,
    "duplicates": pl.Int64,
    "near_duplicates": pl.Int64,  # of rows given earlier (`near_duplicate_of`): never valued
    "duplicate_share": pl.Float64,
    "quarantined": pl.Int64,
    "flags": pl.String,
}
# Rounds of the out-of-fold models: enough to rank labels, cheaper than the final model.
LABEL_CHECK_ROUNDS = 50


def validity(spec: DatanetSpec, rows: pl.DataFrame) -> np.ndarray:
    nullable = [c.identifier for c in spec.columns if c.nullable]
    if not nullable or rows.height == 0:
        return np.ones(rows.height)
    present = rows.select(pl.sum_horizontal(pl.col(c).is_not_null() for c in nullable))
    return present.to_series().to_numpy() / len(nullable)


CREDIT_ORDER = ["received_at", "contributor", "batch_id", "row_index"]


def near_duplicate_of(spec: DatanetSpec, rows: pl.DataFrame) -> np.ndarray:
    """Per row, the position of the earliest row (in credit order: the receipt's time, then
    contributor, batch, row) that it nearly duplicates, or -1 for a row nobody gave first.

    Two rows are near-duplicates when their label and every non-float column agree (text
    trimmed and lowercased) and every float feature, rounded to `near_duplicate_decimals`,
    differs by at most `near_duplicate_tolerance` on the scale z = asinh(x / s), s the
    feature's standard deviation: a relative difference for values beyond s, an absolute
    one (tolerance · s) below. So a copy survives reordering, subsets of rows and small
    noise: 1e-3 relative noise moves z by about 1e-3. The comparison is a Chebyshev radius
    query of a k-d tree per group of equal other columns (O(N log N))."""
    from sklearn.neighbors import KDTree

    n = rows.height
    earliest = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return earliest
    quality = spec.quality
    floats = [c.identifier for c in spec.columns if c.type == "float" and c is not spec.label]
    others = []
    for col in spec.columns:
        if col.identifier in floats:
            continue
        expr = pl.col(col.identifier)
        if col.type in ("category", "string"):
            expr = expr.cast(pl.String).str.strip_chars().str.to_lowercase()
        others.append(expr.alias(col.identifier))
    ordered = rows.with_row_index("__pos").sort(CREDIT_ORDER)
    position = ordered["__pos"].to_numpy().astype(np.int64)
    group = (
        ordered.select(pl.struct(others).rank("dense").alias("g"))["g"].to_numpy()
        if others
        else np.zeros(n, dtype=np.int64)
    )
    x = (
        ordered.select(pl.col(floats).cast(pl.Float64).round(quality.near_duplicate_decimals))
        .to_numpy()
        .reshape(n, len(floats))
        if floats
        else np.zeros((n, 0))
    )
    missing = np.isnan(x)
    scale = np.nanstd(np.where(missing, np.nan, x), axis=0) if n > 1 else np.ones(len(floats))
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    z = np.where(missing, 1e9, np.arcsinh(np.nan_to_num(x) / scale))  # null matches null only
    tolerance = quality.near_duplicate_tolerance
    for g in np.unique(group):
        members = np.flatnonzero(group == g)  # in credit order
        if members.size < 2:
            continue
        if not floats:  # every column compared exactly: the first of equal rows keeps it
            earliest[members[1:]] = members[0]
            continue
        found = KDTree(z[members], metric="chebyshev").query_radius(z[members], r=tolerance)
        first = np.array([near.min() for near in found])  # each row finds itself at least
        later = first < np.arange(members.size)
        earliest[members[later]] = members[first[later]]
    out = np.full(n, -1, dtype=np.int64)
    out[position] = np.where(earliest >= 0, position[np.maximum(earliest, 0)], -1)
    return out


def uniqueness(spec: DatanetSpec, rows: pl.DataFrame) -> np.ndarray:
    """0 for a near-duplicate of an earlier row (`near_duplicate_of`), else 1."""
    return (near_duplicate_of(spec, rows) < 0).astype(np.float64)


def label_consistency(spec: DatanetSpec, rows: pl.DataFrame) -> np.ndarray:
    """Out-of-fold probability of each row's own label (see module docstring)."""
    n = rows.height
    if n < 4:
        return np.ones(n)  # too few rows to judge anyone: no evidence against
    x, y = feature_matrix(spec, rows), label_vector(spec, rows)
    groups = rows["contributor"].to_numpy()
    k = min(spec.quality.label_folds, len(np.unique(groups)))
    if k >= 2:
        splits = GroupKFold(n_splits=k).split(x, y, groups)
    else:  # one contributor: plain folds, the only others there are
        splits = KFold(
            n_splits=min(spec.quality.label_folds, n), shuffle=True, random_state=spec.training.seed
        ).split(x)
    out = np.empty(n)
    for train, test in splits:
        booster = fit(spec, x[train], y[train], num_boost_round=LABEL_CHECK_ROUNDS)
        prediction = predict(spec, booster, x[test])
        if spec.task == "regression":
            out[test] = prediction
        else:
            out[test] = prediction[np.arange(len(test)), y[test]]
    if spec.task == "regression":
        residual = np.abs(y - out)
        scale = 3.0 * 1.4826 * float(np.median(residual)) + 1e-12
        return np.exp(-(residual**2) / (2 * scale**2))
    return np.clip(out, 0.0, 1.0)


def typicality(spec: DatanetSpec, rows: pl.DataFrame) -> np.ndarray:
    numeric = [c.identifier for c in spec.features if c.type in ("float", "int")]
    if not numeric or rows.height == 0:
        return np.ones(rows.height)
    x = rows.select(pl.col(numeric).cast(pl.Float64)).to_numpy()
    median = np.nanmedian(x, axis=0)
    mad = np.nanmedian(np.abs(x - median), axis=0) * 1.4826
    scale = np.where(mad > 0, mad, np.nanstd(x, axis=0) + 1e-12)
    z = np.nan_to_num(np.abs(x - median) / scale, nan=0.0).max(axis=1)
    limit = spec.quality.outlier_z
    return np.exp(-np.maximum(0.0, z - limit) / limit)


def score_rows(spec: DatanetSpec, contributions: pl.DataFrame) -> pl.DataFrame:
    """Per-row quality of a Datanet's contributions (QUALITY_SCHEMA)."""
    axes = {
        "validity": validity(spec, contributions),
        "uniqueness": uniqueness(spec, contributions),
        "label_consistency": label_consistency(spec, contributions),
        "typicality": typicality(spec, contributions),
    }
    combined = (
        axes["validity"]
        * axes["uniqueness"]
        * np.sqrt(axes["label_consistency"] * axes["typicality"])
    )
    threshold = spec.quality.min_row_score
    scored = contributions.select(
        "datanet", "contributor", "batch_id", "row_index", "row_hash"
    ).with_columns(
        *[pl.Series(name, values, dtype=pl.Float64) for name, values in axes.items()],
        pl.Series("combined", combined, dtype=pl.Float64),
    )
    reasons = (
        pl.concat_list(
            pl.when(pl.col("uniqueness") < 1).then(pl.lit("near_duplicate")),
            pl.when(pl.col("label_consistency") < 0.25).then(pl.lit("label_inconsistent")),
            pl.when(pl.col("typicality") < 0.5).then(pl.lit("outlier")),
            pl.when(pl.col("validity") < 1).then(pl.lit("missing_values")),
        )
        .list.drop_nulls()
        .list.join(",")
    )
    return (
        scored.with_columns(
            (pl.col("combined") >= threshold).alias("accepted"), reasons.alias("reasons")
        )
        .select(list(QUALITY_SCHEMA))
        .cast(QUALITY_SCHEMA)
    )  # type: ignore[arg-type]


TINY_ROWS = 10


def tiny(explained: pl.Expr) -> pl.Expr:
    """A small contributor: 1 to TINY_ROWS - 1 rows of their own ingested (their value
    rests on little data). Not with 0 rows, nor when duplicates or quarantine (`explained`)
    made the rows few: those flags say more precisely why."""
    return pl.col("rows").is_between(1, TINY_ROWS - 1) & ~explained


def summarize_contributors(
    spec: DatanetSpec,
    quality: pl.DataFrame,
    duplicates: pl.DataFrame,
    quarantine: pl.DataFrame,
    contributors: list[str],
) -> pl.DataFrame:
    """Per-contributor quality; every contributor who submitted anything has a row."""
    per = quality.group_by("contributor").agg(
        pl.len().alias("rows"),
        pl.col("accepted").sum().cast(pl.Int64).alias("accepted_rows"),
        (pl.col("uniqueness") < 1).sum().cast(pl.Int64).alias("near_duplicates"),
        *[pl.col(a).mean() for a in (*AXES, "combined")],
    )
    dups = duplicates.group_by("contributor").agg(pl.len().cast(pl.Int64).alias("duplicates"))
    bad = (
        quarantine.filter(pl.col("row_index") >= 0)
        .group_by("contributor")
        .agg(pl.len().cast(pl.Int64).alias("quarantined"))
    )
    everyone = pl.DataFrame(
        {"contributor": sorted(set(contributors))}, schema={"contributor": pl.String}
    )
    table = (
        everyone.join(per, on="contributor", how="left")
        .join(dups, on="contributor", how="left")
        .join(bad, on="contributor", how="left")
        .with_columns(
            pl.col(
                "rows", "accepted_rows", "duplicates", "near_duplicates", "quarantined"
            ).fill_null(0)
        )
    )
    submitted = pl.col("rows") + pl.col("duplicates") + pl.col("quarantined")
    table = table.with_columns(
        pl.lit(spec.name).alias("datanet"),
        (pl.col("accepted_rows") / pl.col("rows"))
        .fill_nan(0.0)
        .fill_null(0.0)
        .alias("accepted_share"),
        ((pl.col("duplicates") + pl.col("near_duplicates")) / submitted)
        .fill_nan(0.0)
        .fill_null(0.0)
        .alias("duplicate_share"),
        (pl.col("quarantined") / submitted).fill_nan(0.0).fill_null(0.0).alias("__bad_share"),
    )
    lowest_lc = table["label_consistency"].min()
    mostly_duplicates = pl.col("duplicate_share") > 0.3
    mostly_rejected = pl.col("__bad_share") > 0.3
    flags = (
        pl.concat_list(
            pl.when(
                (pl.col("label_consistency") == lowest_lc) & (pl.col("label_consistency") < 0.5)
            ).then(pl.lit("lowest_label_consistency")),
            pl.when(mostly_duplicates).then(pl.lit("mostly_duplicates")),
            pl.when(mostly_rejected).then(pl.lit("mostly_rejected")),
            pl.when(pl.col("accepted_share") < spec.quality.min_accepted_share).then(
                pl.lit("low_accepted_share")
            ),
            pl.when(tiny(mostly_duplicates | mostly_rejected)).then(pl.lit("tiny")),
        )
        .list.drop_nulls()
        .list.join(",")
    )
    return (
        table.with_columns(flags.alias("flags"))
        .select(list(CONTRIBUTOR_QUALITY_SCHEMA))
        .cast(CONTRIBUTOR_QUALITY_SCHEMA)
        .sort("contributor")
    )  # type: ignore[arg-type]


def training_rows(contributions: pl.DataFrame, quality: pl.DataFrame) -> pl.DataFrame:
    """The contributions the quality stage accepted, in row-hash order."""
    accepted = quality.filter(pl.col("accepted")).select("row_hash")
    return contributions.join(accepted, on="row_hash", how="semi").sort("row_hash")


def valued_rows(contributions: pl.DataFrame, quality: pl.DataFrame) -> pl.DataFrame:
    """The rows attribution values: every ingested contribution except near-duplicates of
    an earlier submission (uniqueness 0), which are credited to that submission as exact
    duplicates are at ingestion. Rows quality rejected for other reasons stay in the game,
    so the harm of flipped labels or noise shows in their contributor's value; they earn
    nothing (rewards weigh values by the accepted share; docs/attribution.md)."""
    copies = quality.filter(pl.col("uniqueness") < 1).select("row_hash")
    return contributions.join(copies, on="row_hash", how="anti")
