"""Quality scoring and training: planted behaviours are caught, models are reproducible."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from demo_pipeline import build_demo_lake
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples
from typer.testing import CliRunner

from assets.datanets import parse_spec
from assets.demo_data import DEMO_DATANETS, bundled_frame, demo_spec
from assets.ingest import DUPLICATES_SCHEMA, QUARANTINE_SCHEMA
from assets.quality import (
    AXES,
    TINY_ROWS,
    near_duplicate_of,
    score_rows,
    summarize_contributors,
    training_rows,
    typicality,
    uniqueness,
)
from assets.training import train_model
from assets.validation import validation_set
from ledger.commitment import commit_table, row_leaf_hashes
from ledger.lake import Lake
from openledger_pipelines.cli import app

HONEST = ("alice", "bob", "carol")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return build_demo_lake(tmp_path_factory.mktemp("quality") / "lake", queries=0)


def summary(lake: Lake, datanet: str) -> pl.DataFrame:
    return pl.from_arrow(lake.read("contributor_quality", partition=("datanet", datanet)))


@pytest.mark.parametrize("datanet", DEMO_DATANETS)
def test_flipped_labels_score_lowest_label_consistency(demo: Lake, datanet: str) -> None:
    frame = summary(demo, datanet).sort("label_consistency")
    assert frame["contributor"][0] == "dave"
    assert "lowest_label_consistency" in frame.filter(pl.col("contributor") == "dave")["flags"][0]
    honest = frame.filter(pl.col("contributor").is_in(HONEST))
    assert honest["label_consistency"].min() > 0.7
    assert frame.filter(pl.col("contributor") == "dave")["accepted_share"][0] < 0.5


@pytest.mark.parametrize("datanet", DEMO_DATANETS)
def test_copied_rows_are_duplicates_of_the_original(demo: Lake, datanet: str) -> None:
    dups = pl.from_arrow(demo.read("duplicates", partition=("datanet", datanet)))
    erin = dups.filter(pl.col("contributor") == "erin")
    assert erin.height > 0 and set(erin["first_contributor"]) == {"bob"}
    row = summary(demo, datanet).filter(pl.col("contributor") == "erin").row(0, named=True)
    assert row["duplicate_share"] > 0.5 and "mostly_duplicates" in row["flags"]


@pytest.mark.parametrize("datanet", DEMO_DATANETS)
def test_junk_is_rejected(demo: Lake, datanet: str) -> None:
    frame = summary(demo, datanet)
    frank = frame.filter(pl.col("contributor") == "frank").row(0, named=True)
    assert frank["quarantined"] > 0 and "mostly_rejected" in frank["flags"]
    assert frank["accepted_share"] < 0.5
    honest = frame.filter(pl.col("contributor").is_in(HONEST))
    assert honest["accepted_share"].min() > 0.8


def test_every_contributor_has_a_quality_row_and_axes_are_bounded(demo: Lake) -> None:
    for datanet in DEMO_DATANETS:
        frame = summary(demo, datanet)
        assert sorted(frame["contributor"]) == sorted(
            ["alice", "bob", "carol", "dave", "erin", "frank", "gina"]
        )
        rows = pl.from_arrow(demo.read("quality", partition=("datanet", datanet)))
        contributions = pl.from_arrow(demo.read(f"contributions_{datanet}"))
        assert sorted(rows["row_hash"]) == sorted(contributions["row_hash"])
        for axis in (*AXES, "combined"):
            assert rows[axis].is_between(0.0, 1.0).all(), axis


def test_model_is_trained_on_the_committed_training_rows(demo: Lake) -> None:
    models = pl.from_arrow(demo.read("models"))
    entries = demo.ledger.entries()
    for row in models.iter_rows(named=True):
        datanet = row["datanet"]
        model_file = Path(demo.root) / row["model_path"]
        assert hashlib.sha256(model_file.read_bytes()).hexdigest() == row["model_id"]
        entry = entries[row["training_ledger_seq"]]
        assert entry.table_uri == f"tables/training_rows_{datanet}"
        assert entry.data_root == row["training_root"]
        trained_on = demo.read(f"training_rows_{datanet}", entry.delta_version)
        assert commit_table(trained_on, ["row_hash"]).root == row["training_root"]
        assert row["row_count"] == trained_on.num_rows
        quality = pl.from_arrow(demo.read("quality", partition=("datanet", datanet)))
        assert trained_on.num_rows == int(quality["accepted"].sum())
        assert 0.5 < row["metric_value"] <= 1.0
    features = pl.from_arrow(demo.read("feature_attribution"))
    assert set(features["model_id"]) == set(models["model_id"])


@pytest.mark.parametrize("datanet", DEMO_DATANETS)
def test_training_twice_gives_a_byte_identical_model(demo: Lake, datanet: str) -> None:
    spec = demo_spec(datanet)
    contributions = pl.from_arrow(demo.read(f"contributions_{datanet}"))
    quality = pl.from_arrow(demo.read("quality", partition=("datanet", datanet)))
    rows = training_rows(contributions, quality)
    valid = validation_set(spec, Path(demo.root) / "specs")
    first, second = train_model(spec, rows, valid), train_model(spec, rows, valid)
    assert first.model_bytes == second.model_bytes
    assert first.model_id == second.model_id
    stored = pl.from_arrow(demo.read("models", partition=("datanet", datanet)))
    assert first.model_id in set(stored["model_id"])
    again = score_rows(spec, contributions)  # quality is deterministic too
    assert again.sort("row_hash").equals(quality.select(again.columns).sort("row_hash"))


@pytest.mark.parametrize("datanet", DEMO_DATANETS)
def test_validation_set_is_never_contributed(demo: Lake, datanet: str) -> None:
    spec = demo_spec(datanet)
    valid = validation_set(spec, Path(demo.root) / "specs")
    assert valid.height > 0
    valid_hashes = set(row_leaf_hashes(valid.select([c.name for c in spec.columns])).to_pylist())
    contributed = set(pl.from_arrow(demo.read(f"contributions_{datanet}"))["row_hash"])
    assert not valid_hashes & contributed


def test_model_show_prints_the_card(demo: Lake) -> None:
    result = CliRunner().invoke(app, ["model", "show", "wine", "--lake", demo.root])
    assert result.exit_code == 0, result.output
    assert "training_root" in result.output and "top features" in result.output


SPEC = parse_spec("""
name: toy
owner: t
licence: CC0-1.0
task: binary
features:
  - {name: x, type: float, min: -1000, max: 1000}
  - {name: c, type: category, categories: [a, b]}
label: {name: y, type: int, categories: [0, 1]}
metric: roc_auc
validation: {kind: bundled, name: breast_cancer}
quality: {near_duplicate_decimals: 2}
""")


def toy(
    xs: list[float],
    cs: list[str] | None = None,
    ys: list[int] | None = None,
    contributors: list[str] | None = None,
) -> pl.DataFrame:
    n = len(xs)
    return pl.DataFrame(
        {
            "datanet": ["toy"] * n,
            "contributor": contributors or ["a"] * n,
            "batch_id": ["b"] * n,
            "received_at": pl.Series([0] * n).cast(pl.Datetime("us", "UTC")),
            "row_index": list(range(n)),
            "row_hash": [f"{i:064x}" for i in range(n)],
            "x": xs,
            "c": cs or ["a"] * n,
            "y": ys or [0] * n,
        }
    )


def test_near_duplicates_after_rounding_credit_the_first_row() -> None:
    rows = toy([1.001, 1.004, 2.0, 1.0], cs=["a", "a", "a", "b"])
    assert uniqueness(SPEC, rows).tolist() == [1.0, 0.0, 1.0, 1.0]


def submitted(frame: pl.DataFrame, contributor: str, hour: int) -> pl.DataFrame:
    """Rows of a bundled table as one contributor's batch received at `hour`."""
    return frame.with_columns(
        pl.lit("breast_cancer").alias("datanet"),
        pl.lit(contributor).alias("contributor"),
        pl.lit(f"{contributor}-batch").alias("batch_id"),
        pl.lit(hour * 3_600_000_000).cast(pl.Datetime("us", "UTC")).alias("received_at"),
        pl.int_range(frame.height).cast(pl.Int64).alias("row_index"),
    )


@settings(max_examples=examples(12), deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    share=st.floats(0.2, 1.0),
    noise=st.sampled_from([0.0, 1e-6, 1e-4, 1e-3]),
    copier_first=st.booleans(),
)
def test_perturbed_copies_are_near_duplicates_of_the_earlier_submission(
    seed: int, share: float, noise: float, copier_first: bool
) -> None:
    """A copier who resubmits a reordered subset of someone's rows with relative noise up
    to 1e-3 loses every copied row to whoever was received first, and no honest row of a
    real table is taken for a copy of another."""
    spec = demo_spec("breast_cancer")
    rng = np.random.default_rng(seed)
    table = bundled_frame("breast_cancer")
    table = table[rng.permutation(table.height)]
    honest, own = table[:300], table[300:400]
    copied = honest[np.sort(rng.choice(300, int(share * 300), replace=False))]
    copied = copied[rng.permutation(copied.height)].with_columns(
        pl.col(c) * (1 + noise * pl.Series(rng.standard_normal(copied.height)))
        for c in copied.columns
        if c != "label"
    )
    hours = (2, 1) if copier_first else (1, 2)
    rows = pl.concat(
        [
            submitted(honest, "honest", hours[0]),
            submitted(pl.concat([copied, own]), "copier", hours[1]),
        ]
    )
    earliest = near_duplicate_of(spec, rows)
    who = rows["contributor"].to_numpy()
    dup = earliest >= 0
    later, first = ("honest", "copier") if copier_first else ("copier", "honest")
    # every copy pairs up with its original, credited to the earlier submission
    assert int(dup.sum()) == copied.height
    assert set(who[dup]) == {later} and set(who[earliest[dup]]) == {first}
    assert uniqueness(spec, rows).tolist() == (~dup).astype(float).tolist()


def test_near_duplicates_need_the_same_label_and_stay_within_the_tolerance() -> None:
    spec = demo_spec("breast_cancer")
    table = bundled_frame("breast_cancer")[:50]
    relabelled = table.with_columns((1 - pl.col("label")).alias("label"))
    shifted = table.with_columns(pl.col("mean_radius") * 1.05)  # 5 % off on one feature
    rows = pl.concat(
        [
            submitted(table, "a", 1),
            submitted(relabelled, "b", 2),
            submitted(shifted, "c", 3),
        ]
    )
    assert (near_duplicate_of(spec, rows) < 0).all()
    loose = spec.model_copy(
        update={"quality": spec.quality.model_copy(update={"near_duplicate_tolerance": 0.1})}
    )
    caught = near_duplicate_of(loose, rows) >= 0
    assert rows.filter(caught)["contributor"].unique().to_list() == ["c"]


def test_outliers_lose_typicality() -> None:
    rows = toy([*np.linspace(0, 1, 50).tolist(), 900.0])
    scores = typicality(SPEC, rows)
    assert scores[-1] < 0.01 and scores[:-1].min() > 0.99


@settings(max_examples=examples(20), deadline=None)
@given(
    st.lists(st.floats(-100, 100), min_size=1, max_size=40),
    st.lists(st.sampled_from([0, 1]), min_size=40, max_size=40),
)
def test_axes_are_probabilities_and_combined_follows_the_formula(
    xs: list[float], ys: list[int]
) -> None:
    rows = toy(xs, ys=ys[: len(xs)], contributors=[f"c{i % 3}" for i in range(len(xs))])
    scored = score_rows(SPEC, rows)
    for axis in (*AXES, "combined"):
        assert scored[axis].is_between(0.0, 1.0).all()
    expected = (
        scored["validity"]
        * scored["uniqueness"]
        * (scored["label_consistency"] * scored["typicality"]).sqrt()
    )
    assert np.allclose(scored["combined"].to_numpy(), expected.to_numpy())
    assert (scored["accepted"] == (scored["combined"] >= SPEC.quality.min_row_score)).all()


def flags_of(
    own: dict[str, int], duplicates: dict[str, int], quarantined: dict[str, int]
) -> dict[str, set[str]]:
    """Contributor flags of a toy Datanet from own ingested rows, duplicates and
    quarantined rows per contributor (a negative count: files rejected whole)."""
    owners = [c for c, n in own.items() for _ in range(n)]
    scored = score_rows(SPEC, toy(np.linspace(0, 10, len(owners)).tolist(), contributors=owners))

    def frame(counts: dict[str, int], schema: dict, index: int | None = None) -> pl.DataFrame:
        names = [c for c, n in counts.items() for _ in range(n)]
        data: dict[str, list] = {k: [None] * len(names) for k in schema}
        data["contributor"] = names
        data["row_index"] = [i if index is None else index for i in range(len(names))]
        return pl.DataFrame(data, schema=schema)

    dups = frame(duplicates, DUPLICATES_SCHEMA)
    bad = frame({k: v for k, v in quarantined.items() if v > 0}, QUARANTINE_SCHEMA)
    whole = frame({k: -v for k, v in quarantined.items() if v < 0}, QUARANTINE_SCHEMA, -1)
    everyone = sorted({*own, *duplicates, *quarantined})
    summary = summarize_contributors(SPEC, scored, dups, pl.concat([bad, whole]), everyone)
    return {
        r["contributor"]: set(filter(None, r["flags"].split(",")))
        for r in summary.iter_rows(named=True)
    }


def test_tiny_means_few_rows_of_ones_own_not_duplicates_or_rejections() -> None:
    small = TINY_ROWS - 5
    flags = flags_of(
        own={"big": 3 * TINY_ROWS, "small": small, "half_copied": small, "junk": 2},
        duplicates={"copier": 3 * TINY_ROWS, "half_copied": small},
        quarantined={"junk": 3 * TINY_ROWS, "unsigned": -1},
    )
    assert "tiny" in flags["small"]
    assert "tiny" not in flags["big"]
    # all duplicates, no row of their own: not tiny; mostly_duplicates says why
    assert "tiny" not in flags["copier"] and "mostly_duplicates" in flags["copier"]
    assert "tiny" not in flags["half_copied"] and "mostly_duplicates" in flags["half_copied"]
    assert "tiny" not in flags["junk"] and "mostly_rejected" in flags["junk"]
    # only a file rejected whole: nothing ingested, not "tiny"
    assert "tiny" not in flags["unsigned"] and "low_accepted_share" in flags["unsigned"]
