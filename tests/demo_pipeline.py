"""Build a demo lake and run the whole pipeline on it (shared by several test modules)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import dagster as dg
import polars as pl

from assets.attribution import build_utility
from assets.demo_data import demo_spec
from assets.validation import validation_set
from ledger.lake import Lake
from openledger_pipelines.demo import prepare_demo, serve_demo_queries
from openledger_pipelines.runner import run_datanets

INFERENCE_ASSETS = ["inferences", "inference_attributions"]


def build_demo_lake(root: Path, queries: int = 3) -> Lake:
    """prepare_demo + every asset for both Datanets, then `queries` served and attributed."""
    prepare_demo(root)
    instance = dg.DagsterInstance.ephemeral()
    assert all(run_datanets(root, instance).values())
    lake = Lake(root)
    if queries:
        serve_demo_queries(lake, queries=queries)
        assert all(run_datanets(root, instance, assets=INFERENCE_ASSETS).values())
    return lake


def wine_utility_factory(demo: Lake) -> tuple[list[str], partial]:
    """The wine demo's contributors and a factory of their utility (for worker processes)."""
    spec = demo_spec("wine")
    rows = pl.from_arrow(demo.read("contributions_wine"))
    players = sorted(set(rows["contributor"]))
    valid = validation_set(spec, Path(demo.root) / "specs")
    return players, partial(build_utility, spec, rows, valid, players)


def commit_forged_rewards(lake: Lake, datanet_epoch: str, amount: pl.Expr) -> None:
    """Commit (properly ledgered) an epoch's rewards with amounts replaced by `amount`:
    what a dishonest operator could publish; only the recompute can tell."""
    rewards = pl.from_arrow(lake.read("rewards", partition=("datanet_epoch", datanet_epoch)))
    lake.write(
        "rewards",
        rewards.with_columns(amount.alias("amount")),  # type: ignore[union-attr]
        asset_key="rewards",
        partition=("datanet_epoch", datanet_epoch),
        key=["role", "recipient", "source"],
    )
