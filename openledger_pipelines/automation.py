"""Jobs, the inbox sensor and the daily schedule."""

import json

import dagster as dg

from assets.datanets import SpecError
from assets.layout import datanet_fingerprint, spec_names
from openledger_pipelines.partitions import datanet_partitions
from openledger_pipelines.resources import LakeResource

datanet_job = dg.define_asset_job(
    "datanet_job",
    selection=dg.AssetSelection.all(),
    description="Everything for one Datanet: spec, contributors, ingestion and later stages.",
)


@dg.sensor(
    job=datanet_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING
)
def inbox_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
    """New specs become partitions; a Datanet whose spec, inbox or keys changed gets a run."""
    root = lake.root_path()
    seen = json.loads(context.cursor) if context.cursor else {}
    names = spec_names(root)
    known = set(context.instance.get_dynamic_partitions(datanet_partitions.name))
    new = [n for n in names if n not in known]
    fingerprints: dict[str, str] = {}
    requests = []
    for name in names:
        try:
            fingerprints[name] = datanet_fingerprint(root, name)
        except (OSError, SpecError) as exc:
            context.log.warning(f"{name}: cannot read its files yet: {exc}")
            continue
        if seen.get(name) != fingerprints[name]:
            requests.append(
                dg.RunRequest(partition_key=name, run_key=f"{name}:{fingerprints[name]}")
            )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[datanet_partitions.build_add_request(new)] if new else [],
        cursor=json.dumps(fingerprints, sort_keys=True),
    )


@dg.schedule(
    job=datanet_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def daily_batch(context: dg.ScheduleEvaluationContext):
    """The daily batch: every Datanet's partition, once a day."""
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    for name in context.instance.get_dynamic_partitions(datanet_partitions.name):
        yield dg.RunRequest(partition_key=name, run_key=f"daily:{day}:{name}")
