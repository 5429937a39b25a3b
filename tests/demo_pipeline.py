"""Build a demo lake and run the whole pipeline on it (shared by several test modules)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

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
