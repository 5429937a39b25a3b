"""The code location loads, its graph is what we expect, and every asset is ledgered."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ledger.lake import Lake
from ledger.verify import verify_entry_data, verify_lake
from openledger_pipelines.definitions import defs
from openledger_pipelines.resources import LakeResource

EXPECTED_GRAPH = {"samples": set()}


def asset_graph_snapshot() -> dict[str, set[str]]:
    graph = defs.resolve_asset_graph()
    return {
        key.to_user_string(): {d.to_user_string() for d in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }


def test_definitions_load_and_graph_snapshot() -> None:
    dg.Definitions.validate_loadable(defs)
    assert asset_graph_snapshot() == EXPECTED_GRAPH


def test_every_asset_materialization_has_a_matching_ledger_entry(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("datanets", ["wine", "breast_cancer"])
    graph = defs.resolve_asset_graph()
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    for partition in ("wine", "breast_cancer"):
        result = dg.materialize(
            assets, partition_key=partition, instance=instance,
            resources={"lake": LakeResource(root=str(root))},
        )
        assert result.success
    lake = Lake(root)
    entries = lake.ledger.entries()
    materialized = {
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if instance.get_latest_materialization_event(key) is not None
    }
    assert materialized == set(EXPECTED_GRAPH)
    for asset_key in materialized:
        event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(asset_key))
        metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
        entry = entries[metadata["ledger_seq"].value]
        assert entry.asset_key == asset_key
        assert entry.data_root == metadata["data_root"].value
        assert entry.delta_version == metadata["delta_version"].value
        assert verify_entry_data(lake, entry) == []  # root equals the data read back
    assert verify_lake(lake).ok
