"""The Dagster code location: definitions assembled from the per-stage modules."""

from __future__ import annotations

import dagster as dg

from openledger_pipelines import attribution, automation, ingestion, modeling, rewards
from openledger_pipelines.progress import PROGRESS_LOGGER, progress_logger
from openledger_pipelines.resources import LakeResource, default_lake_root


def build_defs(lake_root: str) -> dg.Definitions:
    """Definitions bound to one lake (the CLI passes its --lake; the UI uses the env)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules([ingestion, modeling, attribution, rewards]),
        jobs=[automation.datanet_job, rewards.epoch_job],
        sensors=[automation.inbox_sensor],
        schedules=[automation.daily_batch, automation.epoch_closer],
        resources={"lake": LakeResource(root=lake_root)},
        # `console` is Dagster's default; the CLI adds `openledger_progress` to its runs.
        loggers={"console": dg.colored_console_logger, PROGRESS_LOGGER: progress_logger},
    )


defs = build_defs(default_lake_root())
