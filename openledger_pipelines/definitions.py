"""The Dagster code location: definitions assembled from the per-stage modules."""

from __future__ import annotations

import dagster as dg

from openledger_pipelines import samples
from openledger_pipelines.resources import LakeResource, default_lake_root

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([samples]),
    resources={"lake": LakeResource(root=default_lake_root())},
)
