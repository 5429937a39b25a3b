"""Invariant 3: the same inputs and seed give the same roots, values and rewards, bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from demo_pipeline import build_demo_lake

from ledger.commitment import commit_table
from ledger.lake import Lake
from openledger_pipelines.runner import run_epoch

# The lake's two wall-clock readings: how long training took, and when an epoch closed.
WALL_CLOCK_COLUMNS = {"models": ["training_seconds"], "epochs": ["closed_at"]}
DATANETS = ("wine", "breast_cancer")


def build(root: Path, keys_from: Path | None = None) -> Lake:
    if keys_from is not None:  # contributors' signing keys are random by nature: share them
        shutil.copytree(keys_from / "keys", root / "keys")
    lake = build_demo_lake(root, queries=3)
    instance = dg.DagsterInstance.ephemeral()
    for datanet in DATANETS:
        assert run_epoch(root, instance, datanet, 0).success
    return lake


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
    assert differing == [
        "('tables/epochs', 'breast_cancer.0')",
        "('tables/epochs', 'wine.0')",
        "('tables/models', 'breast_cancer')",
        "('tables/models', 'wine')",
    ]  # rewards and statements included: same roots, so the same payouts to the unit
    for table, column, value, key in [
        *(("models", "datanet", d, "model_id") for d in DATANETS),
        *(("epochs", "datanet_epoch", f"{d}.0", "datanet_epoch") for d in DATANETS),
    ]:
        tables = [lake.read(table, partition=(column, value)) for lake in (first, second)]
        stripped = [t.drop_columns(WALL_CLOCK_COLUMNS[table]) for t in tables]
        assert commit_table(stripped[0], [key]) == commit_table(stripped[1], [key])
    values = [
        pl.from_arrow(lake.read("contributor_values")).sort("datanet", "contributor")
        for lake in (first, second)
    ]
    assert values[0].equals(values[1])  # bit for bit, floats included
