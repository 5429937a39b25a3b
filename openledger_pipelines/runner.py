"""Run the pipeline in-process on the persistent Dagster instance the UI shares."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from assets.layout import spec_names
from assets.names import epoch_key
from ledger.lake import process_exists
from ledger.storage import LakePath
from openledger_pipelines.definitions import build_defs
from openledger_pipelines.partitions import datanet_epoch_partitions, datanet_partitions
from openledger_pipelines.progress import PROGRESS_LOGGER, Listener, listening

DAGSTER_YAML = """\
# Written by openledger. Steps of different Datanets may run at once: the lake serializes
# its own commits (conditional writes). The daemon fails runs whose worker process died.
run_monitoring:
  enabled: true
  poll_interval_seconds: 30
telemetry:
  enabled: false
"""
# Selects the Postgres instance (docs/deploy.md): SQLAlchemy's URL with dagster-postgres's
# driver, postgresql+psycopg2://user:password@host:port/database (SQLAlchemy 2.1 reads a
# bare postgresql:// as psycopg 3, which is not installed). Unset: SQLite in DAGSTER_HOME.
PG_URL_ENV = "OPENLEDGER_DAGSTER_PG_URL"
PG_URL_SCHEME = "postgresql+psycopg2://"
# Run, event-log and schedule storage on Postgres; the URL is read from the environment
# by whoever opens the instance (CLI, webserver, daemon, run workers), never written here.
POSTGRES_STORAGE = f"""\
storage:
  postgres:
    postgres_url:
      env: {PG_URL_ENV}
"""
# Tags of runs the CLI executes in its own process: whose process that is.
PID_TAG, HOST_TAG = "openledger/pid", "openledger/host"
LIVE_STATUSES = [
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.CANCELING,
]


class InstanceSettingError(ValueError):
    """The instance settings cannot be used as they are: a URL without the driver, or a
    DAGSTER_HOME whose dagster.yaml keeps the other kind of storage."""


def dagster_yaml(postgres: bool) -> str:
    """The dagster.yaml openledger writes: SQLite (the embedded default) or Postgres."""
    return DAGSTER_YAML + (POSTGRES_STORAGE if postgres else "")


def dagster_home(lake_root: Path | LakePath) -> Path:
    """$DAGSTER_HOME, else `<lake>/dagster_home` for a local lake (for a lake on object
    storage: `~/.openledger/dagster/<bucket>/<prefix>`), created with its dagster.yaml:
    storage on Postgres when $OPENLEDGER_DAGSTER_PG_URL is set, else SQLite in the folder.

    A dagster.yaml openledger wrote for the other kind is refused, not rewritten: runs
    recorded there would silently vanish from view. One edited by hand is used as it is."""
    base = lake_root.local() if isinstance(lake_root, LakePath) else lake_root
    if base is None:
        location = lake_root.files.location  # type: ignore[union-attr]
        base = Path.home() / ".openledger" / "dagster" / location.bucket / location.prefix
    home = Path(os.environ.get("DAGSTER_HOME") or base / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    url = os.environ.get(PG_URL_ENV, "")
    postgres = bool(url)
    if postgres and not url.startswith(PG_URL_SCHEME):
        scheme = url.split("://", 1)[0] + "://" if "://" in url else "no scheme"
        raise InstanceSettingError(
            f"{PG_URL_ENV} must start with {PG_URL_SCHEME} (dagster-postgres's driver), "
            f"not {scheme}"
        )
    if not config.exists():
        config.write_text(dagster_yaml(postgres), encoding="utf-8")
        return home
    written = config.read_text(encoding="utf-8")
    if written == dagster_yaml(not postgres):
        have, want = ("SQLite", "Postgres") if postgres else ("Postgres", "SQLite")
        raise InstanceSettingError(
            f"{config} keeps the Dagster instance in {have}, but {PG_URL_ENV} is "
            f"{'set' if postgres else 'unset'} ({want}): "
            + (f"unset {PG_URL_ENV}" if postgres else f"set {PG_URL_ENV}")
            + " or use another DAGSTER_HOME"
        )
    return home


def persistent_instance(lake_root: Path | LakePath) -> dg.DagsterInstance:
    """The instance at dagster_home(lake_root): the one `dagster dev` shows."""
    return dg.DagsterInstance.from_config(str(dagster_home(lake_root)))


def process_tags() -> dict[str, str]:
    """Run tags naming this process, so a run it leaves behind can be found and failed."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def fail_abandoned_runs(instance: dg.DagsterInstance, this_process: bool = False) -> list[str]:
    """Mark failed the in-process runs whose process died (killed with -9, say), or those of
    this process (after it was interrupted), and free the pool slots they held, so the
    next run never waits on them. Returns what was cleaned up, one line per run."""
    host, mine = socket.gethostname(), os.getpid()
    cleaned = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=LIVE_STATUSES)):
        if run.tags.get(HOST_TAG) != host or PID_TAG not in run.tags:
            continue  # not a CLI run of this machine: the daemon's run monitoring owns it
        pid = int(run.tags[PID_TAG])
        if pid == mine and not this_process:
            continue
        if pid != mine and process_exists(pid):
            continue
        why = "interrupted" if pid == mine else f"its process {pid} is gone"
        instance.report_run_failed(run, message=f"openledger: run abandoned ({why})")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        cleaned.append(f"run {run.run_id} of {run.job_name} marked failed ({why}), slots freed")
    return cleaned


def interrupted(result: dg.ExecuteInProcessResult) -> bool:
    """Whether a run stopped because the process was told to stop (SIGTERM, Ctrl-C):
    Dagster turns the signal into a failed step, and no further run should start."""
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if (
            event.is_failure
            and getattr(error, "cls_name", "") == "DagsterExecutionInterruptedError"
        ):
            return True
    return False


def run_config(log_level: str, progress: Listener | None) -> dict[str, Any]:
    """Console logging at `log_level`, plus the progress logger when someone listens."""
    loggers: dict[str, Any] = {"console": {"config": {"log_level": log_level}}}
    if progress is not None:
        loggers[PROGRESS_LOGGER] = {}
    return {"loggers": loggers}


def _listening(progress: Listener | None) -> contextlib.AbstractContextManager[None]:
    return listening(progress) if progress is not None else contextlib.nullcontext()


def run_datanets(
    lake_root: Path,
    instance: dg.DagsterInstance,
    datanets: list[str] | None = None,
    on_done: Callable[[str, dg.ExecuteInProcessResult], None] | None = None,
    log_level: str = "WARNING",
    assets: list[str] | None = None,
    progress: Listener | None = None,
) -> dict[str, bool]:
    """Register every spec as a partition and materialize the job for each Datanet
    (only `assets`, if given); `progress` hears each step as it starts and ends."""
    names = spec_names(lake_root)
    unknown = sorted(set(datanets or []) - set(names))
    if unknown:
        raise ValueError(f"no spec for Datanet(s) {unknown}; known: {names}")
    known = set(instance.get_dynamic_partitions(datanet_partitions.name))
    missing = [n for n in names if n not in known]
    if missing:
        instance.add_dynamic_partitions(datanet_partitions.name, missing)
    job = build_defs(str(lake_root)).resolve_job_def("datanet_job")
    outcome = {}
    for name in datanets or names:
        with _listening(progress):
            result = job.execute_in_process(
                partition_key=name,
                instance=instance,
                raise_on_error=False,
                run_config=run_config(log_level, progress),
                tags=process_tags(),
                asset_selection=[dg.AssetKey(a) for a in assets] if assets else None,
            )
        outcome[name] = result.success
        if on_done:
            on_done(name, result)
        if interrupted(result):
            raise KeyboardInterrupt("SIGTERM")
    return outcome


def run_epoch(
    lake_root: Path,
    instance: dg.DagsterInstance,
    datanet: str,
    epoch: int,
    log_level: str = "WARNING",
    progress: Listener | None = None,
) -> dg.ExecuteInProcessResult:
    """Close (or re-check) one Datanet's reward epoch through the `epoch_job`."""
    key = epoch_key(datanet, epoch)
    if key not in instance.get_dynamic_partitions(datanet_epoch_partitions.name):
        instance.add_dynamic_partitions(datanet_epoch_partitions.name, [key])
    job = build_defs(str(lake_root)).resolve_job_def("epoch_job")
    with _listening(progress):
        result = job.execute_in_process(
            partition_key=key,
            instance=instance,
            raise_on_error=False,
            run_config=run_config(log_level, progress),
            tags=process_tags(),
        )
    if interrupted(result):
        raise KeyboardInterrupt("SIGTERM")
    return result
