"""Governance commands: propose a reward-policy change, vote, tally, list."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from openledger_pipelines.cli._common import (
    DEFAULT_LAKE,
    DatanetOption,
    LakeOption,
    friendly_errors,
    open_lake,
    out,
    parse_pairs,
    resolve_id,
)

if TYPE_CHECKING:
    import polars as pl

    from ledger.lake import Lake

KeyOption = Annotated[
    Path | None, typer.Option(metavar="FILE", help="Your key file (default: the lake's).")
]
ProposalOption = Annotated[
    str, typer.Option(metavar="ID", help="Proposal id or a unique prefix of 8+ characters.")
]


def register(app: typer.Typer) -> None:
    for name, command in (
        ("propose", propose),
        ("vote", vote),
        ("tally", tally),
        ("proposals", proposals),
    ):
        app.command(name)(command)


def _proposal_id(events: pl.DataFrame, prefix: str) -> str:
    from assets.governance import proposals as all_proposals

    return resolve_id(prefix, all_proposals(events), "proposal")


def _key_file(root: Path, datanet: str, contributor: str, key: Path | None) -> Path:
    from assets.layout import key_path
    from assets.names import SpecError

    path = key or key_path(root, datanet, contributor)
    if not path.exists():
        raise SpecError(f"no key file {path}; pass --key")
    return path


def _record_event(
    store: Lake,
    datanet: str,
    event_for: Callable[[Any], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
) -> None:
    """Check and append one governance event (under the governance lock), then say what."""
    from openledger_pipelines.governance import record
    from openledger_pipelines.version import code_version

    row, committed = record(store, datanet, event_for, run_id="cli", code=code_version())
    out.print(f"{describe(row)} (ledger seq {committed.entry.seq})", highlight=False)


@friendly_errors
def propose(
    datanet: DatanetOption,
    contributor: Annotated[
        str, typer.Option(metavar="ID", help="Proposer (a registered contributor).")
    ],
    change: Annotated[
        list[str],
        typer.Option("--set", metavar="FIELD=VALUE", help="Policy field=JSON value (repeat)."),
    ],
    lake: LakeOption = DEFAULT_LAKE,
    description: Annotated[str, typer.Option(metavar="TEXT", help="Why.")] = "",
    key: KeyOption = None,
) -> None:
    """Propose a reward-policy change; contributors vote on it until its deadline."""
    from assets.governance import Proposal, proposal_message
    from assets.governance import propose as make_proposal
    from assets.layout import signer
    from assets.names import check_contributor_id, check_datanet_name
    from openledger_pipelines.governance import policy_in_force, registered_key, rewards_paid

    store = open_lake(lake)
    root = store.root_path()
    check_datanet_name(datanet)
    changes: dict[str, Any] = {}
    for name, text in parse_pairs(change, "--set").items():
        try:
            changes[name] = json.loads(text)
        except json.JSONDecodeError:
            changes[name] = text
    proposal = Proposal(
        datanet, check_contributor_id(contributor), changes, description, datetime.now(UTC)
    )
    signature = signer(_key_file(root, datanet, contributor, key), contributor)(
        proposal_message(datanet, proposal.proposal_id())
    )
    _record_event(
        store,
        datanet,
        lambda history: make_proposal(
            history,
            proposal,
            signature,
            registered_key(store, datanet, contributor),
            rewards_paid(store, datanet),
            policy_in_force(store, root, datanet),
        ),
        lambda row: (
            f"proposal {row['proposal_id']} recorded, voting until "
            f"{json.loads(row['payload'])['deadline']}"
        ),
    )


@friendly_errors
def vote(
    datanet: DatanetOption,
    proposal: ProposalOption,
    contributor: Annotated[str, typer.Option(metavar="ID", help="Your contributor id.")],
    choice: Annotated[str, typer.Option(metavar="yes|no", help="yes or no.")],
    lake: LakeOption = DEFAULT_LAKE,
    key: KeyOption = None,
) -> None:
    """Vote on a proposal, signed with your registered key; weight = rewards paid to you."""
    from assets.governance import vote as make_vote
    from assets.governance import vote_message
    from assets.layout import signer
    from assets.names import check_datanet_name
    from openledger_pipelines.governance import events, registered_key

    store = open_lake(lake)
    check_datanet_name(datanet)
    proposal_id = _proposal_id(events(store, datanet), proposal)
    signature = signer(_key_file(store.root_path(), datanet, contributor, key), contributor)(
        vote_message(datanet, proposal_id, contributor, choice)
    )
    _record_event(
        store,
        datanet,
        lambda current: make_vote(
            current,
            datanet,
            proposal_id,
            contributor,
            choice,
            signature,
            registered_key(store, datanet, contributor),
            datetime.now(UTC),
        ),
        lambda row: f"vote {choice} by {contributor} with weight {row['weight']:,} recorded",
    )


@friendly_errors
def tally(
    datanet: DatanetOption,
    proposal: ProposalOption,
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Count a proposal's votes after its deadline: enact it (from the next epoch) or
    record it as failed."""
    from assets.governance import outcome, votes_so_far
    from assets.governance import tally as count_votes
    from assets.names import check_datanet_name
    from assets.recompute import open_epoch
    from openledger_pipelines.governance import events, registered_keys

    store = open_lake(lake)
    check_datanet_name(datanet)
    history = events(store, datanet)
    proposal_id = _proposal_id(history, proposal)
    count = votes_so_far(history, proposal_id)
    if outcome(history, proposal_id) is None and datetime.now(UTC) <= count["deadline"]:
        out.print(
            f"proposal {proposal_id}: voting is open until {count['deadline'].isoformat()}; so "
            f"far yes {count['yes']:,}, no {count['no']:,} of {count['electorate']:,}. "
            "Nothing recorded: tally again after the deadline to enact or fail it.",
            highlight=False,
        )
        return

    def describe(row: dict[str, Any]) -> str:
        detail = json.loads(row["payload"])
        what = (
            f"enacted from epoch {row['effective_epoch']}"
            if row["event"] == "enacted"
            else f"failed: {detail['reason']}"
        )
        return (
            f"proposal {proposal_id} {what} "
            f"(yes {detail['yes']:,}, no {detail['no']:,} of {detail['electorate']:,})"
        )

    _record_event(
        store,
        datanet,
        lambda current: count_votes(
            current,
            datanet,
            proposal_id,
            datetime.now(UTC),
            open_epoch(store, datanet),
            keys=registered_keys(store, datanet),
        ),
        describe,
    )


@friendly_errors
def proposals(datanet: DatanetOption, lake: LakeOption = DEFAULT_LAKE) -> None:
    """Proposals, their votes and outcomes."""
    from rich.table import Table

    from assets.governance import outcome
    from assets.governance import proposals as all_proposals
    from assets.names import check_datanet_name
    from openledger_pipelines.governance import events

    check_datanet_name(datanet)
    history = events(open_lake(lake), datanet)
    grid = Table("proposal", "by", "changes", "deadline", "votes", "outcome")
    for proposal_id, row in all_proposals(history).items():
        payload = json.loads(row["payload"])
        votes = history.filter(
            (history["proposal_id"] == proposal_id) & (history["event"] == "vote")
        ).height
        done = outcome(history, proposal_id)
        grid.add_row(
            proposal_id,
            row["actor"],
            json.dumps(payload["changes"]),
            payload["deadline"][:19],
            str(votes),
            "open" if done is None else done["event"],
        )
    out.print(grid)
