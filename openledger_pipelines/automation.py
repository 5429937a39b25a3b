"""Jobs, the inbox sensor, the daily batch and the epoch-closing schedule."""

from datetime import UTC, datetime

import dagster as dg

from assets.datanets import SpecError
from assets.layout import spec_names
from assets.names import epoch_key
from ledger.lake import LakeError
from openledger_pipelines.ingestion import current_spec_at
from openledger_pipelines.partitions import datanet_epoch_partitions, datanet_partitions
from openledger_pipelines.pending import pending_work
from openledger_pipelines.resources import LakeResource
from openledger_pipelines.rewards import epoch_due, epoch_job

datanet_job = dg.define_asset_job(
    "datanet_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("rewards"),
    description="Everything for one Datanet: spec, contributors, ingestion and later stages.",
)


@dg.sensor(
    job=datanet_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING
)
def inbox_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
    """New specs become partitions; a Datanet with work the lake has not recorded yet (new
    spec, keys, inbox files or inferences) gets a run. Decided from the lake, not from a
    cursor, so work the CLI already ran is never run again."""
    store = lake.open()
    names = spec_names(store.root_path())
    known = set(context.instance.get_dynamic_partitions(datanet_partitions.name))
    new = [n for n in names if n not in known]
    requests = []
    for name in names:
        try:
            pending = pending_work(store, name)
        except (OSError, SpecError, LakeError) as exc:
            context.log.warning(f"{name}: cannot read its files yet: {exc}")
            continue
        if not pending:
            continue
        context.log.info(f"{name}: {'; '.join(pending.reasons)}")
        requests.append(
            dg.RunRequest(
                partition_key=name,
                run_key=f"{name}:{pending.token}",
                asset_selection=[dg.AssetKey(a) for a in pending.assets]
                if pending.assets
                else None,
            )
        )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[datanet_partitions.build_add_request(new)] if new else [],
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


@dg.schedule(
    job=epoch_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def epoch_closer(context: dg.ScheduleEvaluationContext, lake: LakeResource):
    """Close every Datanet's epoch that has run its `epoch_days` (after the daily batch)."""
    store = lake.open()
    now = context.scheduled_execution_time or datetime.now(UTC)
    known = set(context.instance.get_dynamic_partitions(datanet_epoch_partitions.name))
    for name in context.instance.get_dynamic_partitions(datanet_partitions.name):
        try:
            spec = current_spec_at(lake.root_path(), name)
        except SpecError as exc:
            context.log.warning(f"{name}: {exc}")
            continue
        epoch = epoch_due(store, name, spec.rewards.epoch_days, now)
        if epoch is None:
            continue
        key = epoch_key(name, epoch)
        if key not in known:
            context.instance.add_dynamic_partitions(datanet_epoch_partitions.name, [key])
            known.add(key)
        yield dg.RunRequest(partition_key=key, run_key=f"epoch:{key}")
