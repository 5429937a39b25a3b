"""Regenerate the example files from scikit-learn's bundled iris table (deterministic).

    uv run python examples/make_examples.py

The iris frame keeps its real headers (`sepal length (cm)`, ...); the label is the species
name. Exact duplicate rows are dropped first, so every contributed row is accepted. The
rows are split, stratified by species and with a fixed seed, into a validation file, a
queries file (features only) and three contributors' files in three formats.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from sklearn.datasets import load_iris

HERE = Path(__file__).resolve().parent
SEED = 13
VALIDATION_PER_SPECIES = 10
QUERIES_PER_SPECIES = 2
LABEL = "species"


def iris() -> pl.DataFrame:
    """The bundled iris table with its real feature headers and the species by name."""
    data = load_iris()
    frame = pl.DataFrame(
        {name: data.data[:, j] for j, name in enumerate(data.feature_names)}
    ).with_columns(pl.Series(LABEL, np.asarray(data.target_names)[data.target]))
    return frame.unique(maintain_order=True)


def split(frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """validation, queries and one share per contributor, stratified by species."""
    rng = np.random.default_rng(SEED)
    parts: dict[str, list[pl.DataFrame]] = {"validation": [], "queries": [], "pool": []}
    for _, rows in frame.group_by(LABEL, maintain_order=True):
        rows = rows[rng.permutation(rows.height)]
        cut = VALIDATION_PER_SPECIES + QUERIES_PER_SPECIES
        parts["validation"].append(rows[:VALIDATION_PER_SPECIES])
        parts["queries"].append(rows[VALIDATION_PER_SPECIES:cut])
        parts["pool"].append(rows[cut:])
    pool = pl.concat(parts["pool"])
    pool = pool[rng.permutation(pool.height)]
    third = pool.height // 3
    return {
        "validation": pl.concat(parts["validation"]),
        "queries": pl.concat(parts["queries"]).drop(LABEL),
        "ann": pool[:third],
        "bob": pool[third : 2 * third],
        "cara": pool[2 * third :],
    }


def main() -> None:
    parts = split(iris())
    parts["validation"].write_csv(HERE / "validation.csv")
    parts["queries"].write_csv(HERE / "queries.csv")
    parts["ann"].write_csv(HERE / "ann.csv")
    parts["bob"].write_parquet(HERE / "bob.parquet")
    parts["cara"].write_ndjson(HERE / "cara.jsonl")
    for name, rows in parts.items():
        print(f"{name}: {rows.height} rows")


if __name__ == "__main__":
    main()
