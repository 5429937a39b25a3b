"""The code location loads, its graph is what we expect, and every asset is ledgered."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from ledger.lake import Lake
from ledger.verify import verify_entry_data, verify_lake
from openledger_pipelines.definitions import build_defs, defs
from openledger_pipelines.demo import prepare_demo

INGESTION_PARENTS = {"datanets", "contributors"}
EXPECTED_GRAPH = {
    "datanets": set(),
    "contributors": {"datanets"},
    "contributions": INGESTION_PARENTS,
    "quarantine": INGESTION_PARENTS,
    "duplicates": INGESTION_PARENTS,
    "batches": INGESTION_PARENTS,
    "validation": {"datanets"},
    "quality": {"contributions", "duplicates", "quarantine", "contributors"},
    "contributor_quality": {"contributions", "duplicates", "quarantine"},
    "training_rows": {"quality", "contributions"},
    "models": {"training_rows", "validation"},
    "feature_attribution": {"models"},
    "contributor_values": {"contributions", "validation", "quality", "contributor_quality"},
    "point_values": {"contributions", "validation", "quality"},
    "inferences": {"models"},
    "inference_attributions": {"inferences", "training_rows"},
    "epochs": {
        "datanets",
        "contributions",
        "contributor_values",
        "contributor_quality",
        "inferences",
        "inference_attributions",
    },
    "rewards": {"epochs"},
    "statements": {"rewards"},
}
EPOCH_ASSETS = {"epochs", "rewards", "statements"}
DATANETS = ("wine", "breast_cancer")


def partition_keys(asset: str) -> list[str]:
    """The partitions the fixture materializes: each Datanet, or its epoch 0."""
    if asset in EPOCH_ASSETS:
        return [f"{d}.0" for d in DATANETS]
    return list(DATANETS)


def asset_graph_snapshot(definitions: dg.Definitions) -> dict[str, set[str]]:
    graph = definitions.resolve_asset_graph()
    return {
        key.to_user_string(): {d.to_user_string() for d in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }


def test_definitions_load_and_graph_snapshot() -> None:
    dg.Definitions.validate_loadable(defs)
    assert asset_graph_snapshot(defs) == EXPECTED_GRAPH
    assert defs.resolve_job_def("datanet_job") is not None
    assert defs.resolve_job_def("epoch_job") is not None
    assert {s.name for s in defs.sensors or []} == {"inbox_sensor"}
    assert {s.name for s in defs.schedules or []} == {"daily_batch", "epoch_closer"}


def test_no_asset_waits_in_a_concurrency_pool() -> None:
    """Steps of different Datanets may commit at once: the lake serializes commits itself
    (docs/ledger-spec.md §5.4), so no pool limits them."""
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert not graph.get(key).pools, key


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dg.DagsterInstance]:
    root = tmp_path_factory.mktemp("lake")
    prepare_demo(root)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("datanets", ["wine", "breast_cancer"])
    local = build_defs(str(root))
    job = local.resolve_job_def("datanet_job")
    for partition in DATANETS:
        assert job.execute_in_process(partition_key=partition, instance=instance).success
    instance.add_dynamic_partitions("datanet_epochs", [f"{d}.0" for d in DATANETS])
    epoch_job = local.resolve_job_def("epoch_job")
    for partition in DATANETS:
        key = f"{partition}.0"
        assert epoch_job.execute_in_process(partition_key=key, instance=instance).success
    return root, instance


def test_every_asset_materialization_has_a_matching_ledger_entry(
    materialized: tuple[Path, dg.DagsterInstance],
) -> None:
    root, instance = materialized
    lake = Lake(root)
    entries = lake.ledger.entries()
    graph = defs.resolve_asset_graph()
    checked = 0
    for key in graph.get_all_asset_keys():
        for partition in partition_keys(key.to_user_string()):
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
            ).records
            assert records, f"{key.to_user_string()} [{partition}] was not materialized"
            metadata = records[0].asset_materialization.metadata  # type: ignore[union-attr]
            entry = entries[metadata["ledger_seq"].value]
            assert entry.asset_key == key.to_user_string()
            assert entry.data_root == metadata["data_root"].value
            assert entry.delta_version == metadata["delta_version"].value
            assert verify_entry_data(lake, entry) == []  # root equals the data read back
            checked += 1
    assert checked == 2 * len(EXPECTED_GRAPH)
    assert verify_lake(lake).ok


def test_asset_checks_pass_on_the_demo(materialized: tuple[Path, dg.DagsterInstance]) -> None:
    _, instance = materialized
    checks = defs.resolve_asset_graph().asset_check_keys
    assert {c.name for c in checks} == {
        "schema_conforms",
        "counts_reconcile",
        "ledger_matches",
        "accepted_share_floor",
        "no_contributor_lost",
        "efficiency",
        "shares_sum_to_one",
        "amounts_sum_exactly",
    }
    for check in checks:
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])
        execution = record.get(check)
        assert execution is not None, check
        assert execution.status.value == "SUCCEEDED", check


def test_rewards_materialization_carries_the_distribution_chart(
    materialized: tuple[Path, dg.DagsterInstance],
) -> None:
    _root, instance = materialized
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("rewards"), asset_partitions=["wine.0"]),
        limit=1,
    ).records[0]
    chart = record.asset_materialization.metadata["distribution"].value  # type: ignore[union-attr]
    assert "data:image/png;base64," in chart
    for contributor in ("alice", "bob", "carol", "dave", "erin", "frank", "gina"):
        assert contributor in chart


def test_every_table_is_in_the_catalog_with_its_kind(demo_lake_root: Path) -> None:
    from assets.catalog import TABLES

    lake = Lake(demo_lake_root)
    by_table = {spec.table(d): spec for spec in TABLES.values() for d in DATANETS}
    assert set(lake.table_names()) <= set(by_table), set(lake.table_names()) - set(by_table)
    for entry in lake.ledger.entries():
        spec = by_table[entry.table_uri.removeprefix("tables/")]
        assert entry.table_kind == spec.kind, entry.table_uri
        assert entry.partition_column == spec.partition, entry.table_uri
        if spec.kind == "snapshot":
            assert entry.row_key == ",".join(spec.key), entry.table_uri
