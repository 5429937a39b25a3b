"""Governance over the lake: read the ledgered events, check a new one, ledger it.

The rules live in `assets.governance`; this module only finds what they need (events,
registered keys, rewards paid, the open epoch, the policy in force) and writes the
Datanet's `governance` partition through `Lake.write`, so every event is a ledger entry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from assets.catalog import commit
from assets.datanets import RewardPolicy
from assets.epochs import REWARDS_SCHEMA
from assets.governance import (
    GOVERNANCE_SCHEMA,
    policy_for_epoch,
    voting_weights,
)
from assets.recompute import open_epoch
from ledger.lake import Committed, Lake, until_current
from openledger_pipelines.ingestion import (
    CONTRIBUTORS_SCHEMA,
    current_spec_at,
    read_or_empty,
)


def events(store: Lake, datanet: str) -> pl.DataFrame:
    return read_or_empty(store, "governance", GOVERNANCE_SCHEMA, ("datanet", datanet)).sort(
        "event_index"
    )


def registered_keys(store: Lake, datanet: str) -> dict[str, str]:
    """Every contributor's public key as ledgered in `contributors`."""
    rows = read_or_empty(store, "contributors", CONTRIBUTORS_SCHEMA, ("datanet", datanet))
    return dict(zip(rows["contributor"], rows["public_key"], strict=True))


def registered_key(store: Lake, datanet: str, contributor: str) -> str | None:
    """The contributor's public key as ledgered in `contributors` (None: not registered)."""
    return registered_keys(store, datanet).get(contributor)


def rewards_paid(store: Lake, datanet: str) -> dict[str, int]:
    """Voting weights: what each contributor has been paid in the closed epochs."""
    paid = read_or_empty(store, "rewards", REWARDS_SCHEMA).filter(pl.col("datanet") == datanet)
    return voting_weights(paid)


def policy_in_force(store: Lake, root: Path, datanet: str) -> RewardPolicy:
    """The policy of the open epoch: the spec's, with the changes enacted for it."""
    spec = current_spec_at(root, datanet)
    return policy_for_epoch(spec.rewards, events(store, datanet), open_epoch(store, datanet))


def record(
    store: Lake,
    datanet: str,
    event_for: Callable[[pl.DataFrame], dict[str, Any]],
    run_id: str,
    code: str,
) -> tuple[dict[str, Any], Committed]:
    """Append one event: `event_for` checks it against the current events and builds its
    row; it is appended to the Datanet's governance log and ledgered only if no event was
    appended since `current` was read (else it is checked again against the new events),
    so two concurrent votes can never both take the same place."""

    def attempt() -> tuple[dict[str, Any], Committed]:
        current = events(store, datanet)
        row = event_for(current)
        committed = commit(
            store,
            "governance",
            pl.DataFrame([row], schema=GOVERNANCE_SCHEMA),
            datanet=datanet,
            after=current.height,
            run_id=run_id,
            code_version=code,
        )
        return row, committed

    return until_current(attempt)
