"""Sensor, schedule and partition isolation, with Dagster's own test utilities."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from assets.layout import install_spec, submit
from ledger.lake import Lake
from openledger_pipelines.automation import daily_batch, inbox_sensor
from openledger_pipelines.definitions import build_defs
from openledger_pipelines.resources import LakeResource
from openledger_pipelines.runner import run_datanets

SPEC = """
name: {name}
owner: tests
licence: CC0-1.0
task: binary
features:
  - {{name: x, type: float, min: 0, max: 100}}
label: {{name: y, type: int, categories: [0, 1]}}
metric: roc_auc
validation: {{kind: file, name: held_out.csv}}
require_signatures: false
"""
HELD_OUT = "x,y\n1.5,0\n2.5,1\n3.5,1\n0.5,0\n"


def publish(root: Path, name: str) -> None:
    """A spec and its validation file, as a data engineer would publish them."""
    folder = root.parent / "published"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "held_out.csv").write_text(HELD_OUT)
    install_spec(root, SPEC.format(name=name), base=folder)


def add_rows(
    root: Path, datanet: str, contributor: str, rows: list[tuple[float, int]], tmp: Path
) -> None:
    source = tmp / f"{contributor}-{len(rows)}-{rows[0][0]}.csv"
    source.write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in rows))
    submit(root, datanet, contributor, source, submitted_at=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def root(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    for name in ("alpha", "beta"):
        publish(lake, name)
        add_rows(lake, name, "ann", [(1.0, 0), (2.0, 1), (3.0, 1)], tmp_path)
    return lake


def evaluate_sensor(root: Path, instance: dg.DagsterInstance) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, resources={"lake": LakeResource(root=str(root))}
    )
    result = inbox_sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def run_keys(result: dg.SensorResult) -> dict[str, str]:
    return {str(r.partition_key): str(r.run_key) for r in result.run_requests or []}


def test_sensor_adds_partitions_and_requests_only_changed_datanets(
    root: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    first = evaluate_sensor(root, instance)
    assert sorted(instance.get_dynamic_partitions("datanets")) == ["alpha", "beta"]
    assert sorted(run_keys(first)) == ["alpha", "beta"]
    # nothing ran yet: the same work is asked for under the same run keys (launched once)
    assert run_keys(evaluate_sensor(root, instance)) == run_keys(first)

    add_rows(root, "beta", "bob", [(5.0, 0)], tmp_path)
    changed = run_keys(evaluate_sensor(root, instance))
    assert changed["alpha"] == run_keys(first)["alpha"]
    assert changed["beta"] != run_keys(first)["beta"]

    publish(root, "gamma")
    new = run_keys(evaluate_sensor(root, instance))
    assert set(new) == {"alpha", "beta", "gamma"} and new["beta"] == changed["beta"]
    assert "gamma" in instance.get_dynamic_partitions("datanets")


def test_sensor_is_quiet_once_the_lake_has_recorded_everything(
    root: Path, instance: dg.DagsterInstance
) -> None:
    assert run_datanets(root, instance, ["alpha"]) == {"alpha": True}
    assert sorted(run_keys(evaluate_sensor(root, instance))) == ["beta"]


def test_schedule_requests_every_datanet_once_a_day(instance: dg.DagsterInstance) -> None:
    instance.add_dynamic_partitions("datanets", ["alpha", "beta"])
    when = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
    requests = list(daily_batch(context))
    assert sorted(r.partition_key for r in requests) == ["alpha", "beta"]
    assert {r.run_key for r in requests} == {"daily:2026-11-27:alpha", "daily:2026-11-27:beta"}
    assert daily_batch.cron_schedule == "0 2 * * *"


def latest(instance: dg.DagsterInstance, asset: str, partition: str) -> dg.EventLogRecord:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]),
        limit=1,
    ).records
    assert records, (asset, partition)
    return records[0]


def test_new_contributions_rerun_only_their_datanet(
    root: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    first = evaluate_sensor(root, instance)
    job = build_defs(str(root)).resolve_job_def("datanet_job")
    for request in first.run_requests or []:
        assert job.execute_in_process(
            partition_key=request.partition_key, instance=instance
        ).success
    assets = ("datanets", "contributors", "contributions", "quarantine", "duplicates", "batches")
    before = {a: latest(instance, a, "alpha").run_id for a in assets}
    lake = Lake(root)
    alpha_entries = [
        e
        for e in lake.ledger.entries()
        if e.partition_key == "alpha" or e.table_uri.endswith("_alpha")
    ]
    size_before = len(lake.ledger.entries())

    add_rows(root, "beta", "bob", [(7.0, 1), (8.0, 0)], tmp_path)
    backfill = evaluate_sensor(root, instance)
    assert [r.partition_key for r in backfill.run_requests or []] == ["beta"]
    for request in backfill.run_requests or []:
        assert job.execute_in_process(
            partition_key=request.partition_key, instance=instance
        ).success

    assert {a: latest(instance, a, "alpha").run_id for a in assets} == before
    entries = lake.ledger.entries()
    new_entries = entries[size_before:]
    assert len(new_entries) >= len(assets)
    assert all(e.partition_key == "beta" or e.table_uri.endswith("_beta") for e in new_entries)
    assert [
        e for e in entries if e.partition_key == "alpha" or e.table_uri.endswith("_alpha")
    ] == alpha_entries
    beta_rows = lake.read("contributions_beta").num_rows
    assert beta_rows == 5


def test_hand_written_spec_and_inbox_file_work_like_the_commands(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    root = tmp_path / "lake"
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "handmade.yaml").write_text(SPEC.format(name="handmade"))
    (root / "specs" / "handmade").mkdir()
    (root / "specs" / "handmade" / "validation.csv").write_text(HELD_OUT)
    inbox = root / "inbox" / "handmade"
    inbox.mkdir(parents=True)
    (inbox / "rows.csv").write_text("x,y\n1,0\n2,1\n")
    (inbox / "rows.csv.manifest.json").write_text(json.dumps({"contributor": "hand"}))
    assert run_datanets(root, instance) == {"handmade": True}
    lake = Lake(root)
    assert lake.read("contributions_handmade").column("contributor").to_pylist() == ["hand"] * 2
