"""Dagster resources, configured by environment."""

from __future__ import annotations

import os

import dagster as dg

from ledger.lake import Lake
from ledger.storage import LakePath


def default_lake_root() -> str:
    """$OPENLEDGER_LAKE, else `.openledger` in the working directory."""
    return os.environ.get("OPENLEDGER_LAKE", ".openledger")


class LakeResource(dg.ConfigurableResource):
    """The lake every asset writes to; each write is committed to its ledger."""

    root: str

    def open(self) -> Lake:
        return Lake(self.root)

    def root_path(self) -> LakePath:
        """The lake's files (specs, inbox, registrations), on a folder or a bucket."""
        return self.open().root_path()
