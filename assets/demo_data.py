"""The embedded demo: two Datanets from scikit-learn's bundled tables, planted contributors.

Each bundled table is split (stratified, seeded) into a fixed validation set, which no
contributor ever sees, and a pool that simulated contributors submit from:

| contributor | behaviour |
|---|---|
| alice | honest, large (35 % of the pool), CSV |
| bob   | honest, medium (25 %), Parquet |
| carol | honest, small (12 %), JSON Lines |
| dave  | 15 % of the pool with 80 % of labels flipped to another class |
| erin  | copier: 70 % of bob's rows resubmitted, plus 3 % of her own |
| frank | junk: malformed rows (NaN, out of range, text, missing, huge fields, bad     |
|       | labels), random-noise rows, a file that is not UTF-8 and an unsigned file    |
| gina  | tiny: 5 honest rows |

Everything is deterministic for a given seed.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.model_selection import train_test_split

from assets.datanets import DatanetSpec, parse_spec

BUNDLED = {"wine": load_wine, "breast_cancer": load_breast_cancer}
SUBMITTED_FROM = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _column_name(raw: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in raw.lower()).strip("_")


def bundled_frame(name: str) -> pl.DataFrame:
    """A bundled scikit-learn table with snake_case feature names and a `label` column."""
    if name not in BUNDLED:
        raise ValueError(f"no bundled data set {name!r}; choose from {sorted(BUNDLED)}")
    data = BUNDLED[name]()
    frame = pl.DataFrame(
        {_column_name(f): data.data[:, j] for j, f in enumerate(data.feature_names)}
    )
    return frame.with_columns(pl.Series("label", data.target.astype(np.int64)))


def split_bundled(name: str, fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(contributor pool, fixed validation set), stratified by label."""
    frame = bundled_frame(name)
    index = np.arange(frame.height)
    pool, validation = train_test_split(
        index, test_size=fraction, random_state=seed, stratify=frame["label"].to_numpy()
    )
    return frame[np.sort(pool)], frame[np.sort(validation)]


def demo_spec(name: str) -> DatanetSpec:
    """The spec of a demo Datanet, with ranges from the bundled data."""
    frame = bundled_frame(name)
    features = [
        {"name": c, "type": "float", "min": 0.0, "max": float(np.ceil(frame[c].max() * 10))}
        for c in frame.columns
        if c != "label"
    ]
    classes = sorted(int(v) for v in frame["label"].unique())
    doc = {
        "name": name,
        "description": f"Demo Datanet from scikit-learn's bundled {name} table.",
        "owner": "openledger-demo",
        "licence": "BSD-3-Clause",
        "task": "binary" if len(classes) == 2 else "multiclass",
        "features": features,
        "label": {"name": "label", "type": "int", "categories": classes},
        "metric": "roc_auc" if len(classes) == 2 else "accuracy",
        "validation": {"kind": "bundled", "name": name, "fraction": 0.3, "seed": 7},
        "require_signatures": True,
    }
    return parse_spec(json.dumps(doc), f"demo:{name}")


@dataclass(frozen=True)
class DemoFile:
    contributor: str
    file_name: str
    content: bytes
    submitted_at: datetime
    signed: bool = True


def _csv(frame: pl.DataFrame) -> bytes:
    return frame.write_csv().encode("utf-8")


def _jsonl(frame: pl.DataFrame) -> bytes:
    return frame.write_ndjson().encode("utf-8")


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _flip(
    labels: np.ndarray, classes: list[int], share: float, rng: np.random.Generator
) -> np.ndarray:
    flipped = labels.copy()
    chosen = rng.random(labels.shape[0]) < share
    for i in np.flatnonzero(chosen):
        others = [c for c in classes if c != labels[i]]
        flipped[i] = others[rng.integers(len(others))]
    return flipped


def _junk_rows(spec: DatanetSpec, template: pl.DataFrame, rng: np.random.Generator) -> str:
    """CSV text of malformed rows, one planted defect per row."""
    features = [c.name for c in spec.features]
    rows = template.select([*features, "label"]).cast(pl.String).to_dicts()
    defects = ["nan", "-5", "lots of text", "", "x" * 5000, "label", "inf"]
    for i, row in enumerate(rows):
        defect = defects[i % len(defects)]
        column = features[int(rng.integers(len(features)))]
        if defect == "label":
            row["label"] = "99"
        else:
            row[column] = defect
    return pl.DataFrame(rows).write_csv()


def demo_files(spec: DatanetSpec, seed: int = 0) -> list[DemoFile]:
    """Every file the simulated contributors submit to a demo Datanet, in order."""
    rng = np.random.default_rng(seed)
    pool, _ = split_bundled(spec.validation.name, spec.validation.fraction, spec.validation.seed)
    pool = pool[rng.permutation(pool.height)]
    n = pool.height
    cuts = np.cumsum([0, 0.35, 0.25, 0.12, 0.15, 0.03, 0.05])  # the rest: gina
    parts = [pool[int(cuts[i] * n) : int(cuts[i + 1] * n)] for i in range(len(cuts) - 1)]
    alice, bob, carol, dave, erin_own, frank_src = parts
    gina = pool[int(cuts[-1] * n) : int(cuts[-1] * n) + 5]
    classes = [int(c) for c in spec.label.categories or []]
    dave = dave.with_columns(pl.Series("label", _flip(dave["label"].to_numpy(), classes, 0.8, rng)))
    copied = bob[: int(0.7 * bob.height)]
    erin = pl.concat([copied, erin_own])
    noise = pl.DataFrame(
        {c.name: rng.uniform(0, (c.max or 1.0) / 10, frank_src.height) for c in spec.features}
    ).with_columns(pl.Series("label", rng.choice(classes, frank_src.height).astype(np.int64)))
    junk_csv = _junk_rows(spec, frank_src, rng)
    at = [SUBMITTED_FROM + timedelta(hours=h) for h in range(12)]
    return [
        DemoFile("alice", "alice.csv", _csv(alice), at[0]),
        DemoFile("bob", "bob.parquet", _parquet(bob), at[1]),
        DemoFile("carol", "carol.jsonl", _jsonl(carol), at[2]),
        DemoFile("dave", "dave.csv", _csv(dave), at[3]),
        DemoFile("erin", "erin.csv", _csv(erin), at[4]),
        DemoFile("frank", "frank-junk.csv", junk_csv.encode("utf-8"), at[5]),
        DemoFile("frank", "frank-noise.jsonl", _jsonl(noise), at[6]),
        DemoFile(
            "frank", "frank-latin1.csv", "alcohol,label\nCaf\xe9,1\n".encode("latin-1"), at[7]
        ),
        DemoFile("frank", "frank-unsigned.csv", _csv(noise[:3]), at[8], signed=False),
        DemoFile("gina", "gina.jsonl", _jsonl(gina), at[9]),
    ]


DEMO_DATANETS = ("wine", "breast_cancer")
DEMO_CONTRIBUTORS = ("alice", "bob", "carol", "dave", "erin", "frank", "gina")
