"""Invariant 3: the same inputs and seed give the same roots, values and rewards, bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from demo_pipeline import build_demo_lake

from ledger.commitment import commit_table
from ledger.lake import Lake

WALL_CLOCK_COLUMNS = {"models": ["training_seconds"]}  # the one measured time in the lake


def build(root: Path, keys_from: Path | None = None) -> Lake:
    if keys_from is not None:  # contributors' signing keys are random by nature: share them
        shutil.copytree(keys_from / "keys", root / "keys")
    return build_demo_lake(root, queries=3)


def latest_roots(lake: Lake) -> dict[tuple[str, str | None], tuple[str, int]]:
    roots = {}
    for entry in lake.ledger.entries():
        roots[(entry.table_uri, entry.partition_key)] = (entry.data_root, entry.row_count)
    return roots


@pytest.mark.slow
def test_two_runs_on_the_same_inputs_commit_the_same_roots(tmp_path: Path) -> None:
    first = build(tmp_path / "a")
    second = build(tmp_path / "b", keys_from=tmp_path / "a")
    a, b = latest_roots(first), latest_roots(second)
    assert a.keys() == b.keys()
    differing = sorted(str(k) for k in a if a[k] != b[k])
    assert differing == ["('tables/models', 'breast_cancer')", "('tables/models', 'wine')"]
    for datanet in ("wine", "breast_cancer"):
        tables = [
            first.read("models", partition=("datanet", datanet)),
            second.read("models", partition=("datanet", datanet)),
        ]
        stripped = [t.drop_columns(WALL_CLOCK_COLUMNS["models"]) for t in tables]
        assert commit_table(stripped[0], ["model_id"]) == commit_table(stripped[1], ["model_id"])
    values = [
        pl.from_arrow(lake.read("contributor_values")).sort("datanet", "contributor")
        for lake in (first, second)
    ]
    assert values[0].equals(values[1])  # bit for bit, floats included
