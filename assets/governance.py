"""Governance of a Datanet's reward policy: signed proposals, signed votes, a tally.

Every event is a row of the `governance` table (ledgered on each change), so the policy in
force for any epoch can be recomputed from the ledger:

- a proposal changes some fields of the reward policy; it is signed by a registered
  contributor, and it snapshots the electorate: each contributor's voting weight is the
  total they have been paid so far (pool and fees, all closed epochs). Quorum, threshold and
  deadline come from the policy in force when it is made;
- a vote (yes or no) is signed with the voter's registered key; unsigned or forged votes,
  double votes, votes from anyone outside the electorate and votes after the deadline are
  refused;
- after the deadline a tally enacts the proposal when turnout reaches the quorum and yes
  weight exceeds the threshold of the votes cast; otherwise it records it as failed. An
  enacted change applies from the epoch after the one open at the tally, never to an
  epoch already open or closed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from assets.datanets import RewardPolicy, check_contributor_id

GOVERNANCE_SCHEMA: dict[str, pl.DataType] = {
    "datanet": pl.String(),
    "event_index": pl.Int64(),
    "proposal_id": pl.String(),
    "event": pl.String(),  # proposal | vote | enacted | failed
    "actor": pl.String(),
    "at": pl.Datetime("us", "UTC"),
    "choice": pl.String(),
    "weight": pl.Int64(),
    "payload": pl.String(),
    "signature": pl.String(),
    "effective_epoch": pl.Int64(),
}
CHOICES = ("yes", "no")


class GovernanceError(ValueError):
    """A proposal, vote or tally that is refused; the message says why."""


@dataclass(frozen=True)
class Proposal:
    datanet: str
    proposer: str
    changes: dict[str, Any]
    description: str
    created_at: datetime

    def proposal_id(self) -> str:
        """SHA-256 of the proposal's canonical JSON: what the proposer signs."""
        doc = {
            "datanet": self.datanet,
            "proposer": self.proposer,
            "changes": self.changes,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
        }
        return hashlib.sha256(_canonical(doc).encode()).hexdigest()


def _canonical(doc: object) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def proposal_message(datanet: str, proposal_id: str) -> bytes:
    return f"openledger-proposal/v1\n{datanet}\n{proposal_id}\n".encode()


def vote_message(datanet: str, proposal_id: str, voter: str, choice: str) -> bytes:
    return f"openledger-vote/v1\n{datanet}\n{proposal_id}\n{voter}\n{choice}\n".encode()


def signature_valid(public_key_hex: str, message: bytes, signature_hex: str | None) -> bool:
    if not signature_hex:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(
            bytes.fromhex(signature_hex), message
        )
    except (ValueError, InvalidSignature):
        return False
    return True


def voting_weights(rewards: pl.DataFrame) -> dict[str, int]:
    """Each contributor's weight: base units paid to them so far (pool and fees)."""
    paid = (
        rewards.filter(pl.col("role") == "contributor")
        .group_by("recipient")
        .agg(pl.col("amount").sum())
        .filter(pl.col("amount") > 0)
        .sort("recipient")
    )
    return {r: int(a) for r, a in zip(paid["recipient"], paid["amount"], strict=True)}


def changed_policy(policy: RewardPolicy, changes: dict[str, Any]) -> RewardPolicy:
    """The policy with `changes` applied; unknown fields or invalid values are refused."""
    unknown = sorted(set(changes) - set(RewardPolicy.model_fields))
    if unknown:
        raise GovernanceError(f"unknown reward policy field(s): {', '.join(unknown)}")
    try:
        return RewardPolicy.model_validate({**policy.model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise GovernanceError(f"the changed policy is invalid: {problems}") from None


def _payload(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(row["payload"])


def proposals(events: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Each proposal's row, by id."""
    return {r["proposal_id"]: r for r in events.filter(pl.col("event") == "proposal").to_dicts()}


def outcome(events: pl.DataFrame, proposal_id: str) -> dict[str, Any] | None:
    """The enacted/failed row of a proposal, if it has been tallied."""
    rows = events.filter(
        (pl.col("proposal_id") == proposal_id) & pl.col("event").is_in(["enacted", "failed"])
    ).to_dicts()
    return rows[0] if rows else None


def _event(events: pl.DataFrame, datanet: str, **fields: Any) -> dict[str, Any]:
    row = dict.fromkeys(GOVERNANCE_SCHEMA)
    row.update({"datanet": datanet, "event_index": events.height, "weight": 0, "payload": "{}"})
    row.update(fields)
    return row


def propose(
    events: pl.DataFrame,
    proposal: Proposal,
    signature: str | None,
    public_key: str | None,
    weights: dict[str, int],
    policy: RewardPolicy,
) -> dict[str, Any]:
    """The `proposal` event row, or GovernanceError saying why it is refused."""
    check_contributor_id(proposal.proposer)
    if public_key is None:
        raise GovernanceError(f"{proposal.proposer} is not a registered contributor")
    proposal_id = proposal.proposal_id()
    if not signature_valid(public_key, proposal_message(proposal.datanet, proposal_id), signature):
        raise GovernanceError("the proposal's signature does not match the proposer's key")
    if not proposal.changes:
        raise GovernanceError("a proposal must change at least one field")
    changed_policy(policy, proposal.changes)
    if sum(weights.values()) <= 0:
        raise GovernanceError("no electorate yet: voting weight comes from rewards paid")
    if proposal_id in proposals(events):
        raise GovernanceError(f"proposal {proposal_id[:12]} exists")
    deadline = proposal.created_at + timedelta(days=policy.voting_days)
    payload = {
        "changes": proposal.changes,
        "description": proposal.description,
        "deadline": deadline.isoformat(),
        "quorum_bps": policy.quorum_bps,
        "threshold_bps": policy.threshold_bps,
        "weights": weights,
    }
    return _event(
        events,
        proposal.datanet,
        proposal_id=proposal_id,
        event="proposal",
        actor=proposal.proposer,
        at=proposal.created_at,
        weight=sum(weights.values()),
        payload=_canonical(payload),
        signature=signature,
    )


def vote(
    events: pl.DataFrame,
    datanet: str,
    proposal_id: str,
    voter: str,
    choice: str,
    signature: str | None,
    public_key: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The `vote` event row, or GovernanceError saying why the vote is refused."""
    check_contributor_id(voter)
    proposal = proposals(events).get(proposal_id)
    if proposal is None:
        raise GovernanceError(f"no proposal {proposal_id} in Datanet {datanet}")
    if choice not in CHOICES:
        raise GovernanceError(f"choice must be one of {', '.join(CHOICES)}")
    if public_key is None:
        raise GovernanceError(f"{voter} is not a registered contributor")
    if not signature_valid(
        public_key, vote_message(datanet, proposal_id, voter, choice), signature
    ):
        raise GovernanceError("the vote's signature does not match the voter's registered key")
    details = _payload(proposal)
    if outcome(events, proposal_id) is not None:
        raise GovernanceError("the proposal has been tallied; voting is closed")
    if now > datetime.fromisoformat(details["deadline"]):
        raise GovernanceError(f"voting closed at {details['deadline']}")
    weight = int(details["weights"].get(voter, 0))
    if weight <= 0:
        raise GovernanceError(f"{voter} has no voting weight: nothing paid to them yet")
    voted = events.filter(
        (pl.col("proposal_id") == proposal_id)
        & (pl.col("event") == "vote")
        & (pl.col("actor") == voter)
    )
    if voted.height:
        raise GovernanceError(f"{voter} has already voted on this proposal")
    return _event(
        events,
        datanet,
        proposal_id=proposal_id,
        event="vote",
        actor=voter,
        at=now,
        choice=choice,
        weight=weight,
        signature=signature,
    )


def _signed_message(row: dict[str, Any]) -> bytes | str:
    """What a stored proposal or vote is signed over, or why that cannot be rebuilt."""
    if row["event"] == "vote":
        return vote_message(row["datanet"], row["proposal_id"], row["actor"], row["choice"])
    try:
        details = _payload(row)
        rebuilt = Proposal(
            row["datanet"], row["actor"], details["changes"], details["description"], row["at"]
        )
    except (KeyError, TypeError, ValueError):
        return "proposal id is not the hash of its content (the payload is not a proposal's)"
    if rebuilt.proposal_id() != row["proposal_id"]:
        return "proposal id is not the hash of its content (the event was edited)"
    return proposal_message(row["datanet"], row["proposal_id"])


def event_problem(row: dict[str, Any], keys: Mapping[str, str]) -> str | None:
    """Why a stored proposal or vote does not verify against the registered keys (None:
    it does; tallies are not signed). Catches rows written into the table directly."""
    if row["event"] not in ("proposal", "vote"):
        return None
    message = _signed_message(row)
    if isinstance(message, str):
        return message
    key = keys.get(row["actor"])
    if key is None:
        return f"{row['actor']} is not a registered contributor"
    if not signature_valid(key, message, row["signature"]):
        return (
            f"signature does not match {row['actor']}'s registered key "
            "(forged, or copied from another event)"
        )
    return None


def check_events(events: pl.DataFrame, keys: Mapping[str, str]) -> None:
    """GovernanceError naming the first proposal or vote whose signature does not verify."""
    for row in events.sort("event_index").iter_rows(named=True):
        problem = event_problem(row, keys)
        if problem:
            raise GovernanceError(
                f"governance event {row['event_index']} ({row['event']} by {row['actor']}): "
                f"{problem}; refusing to count it"
            )


def votes_so_far(events: pl.DataFrame, proposal_id: str) -> dict[str, Any]:
    """Yes and no weight cast on a proposal, its electorate and its deadline."""
    proposal = proposals(events).get(proposal_id)
    if proposal is None:
        raise GovernanceError(f"no proposal {proposal_id}")
    votes = events.filter((pl.col("proposal_id") == proposal_id) & (pl.col("event") == "vote"))
    return {
        "yes": int(votes.filter(pl.col("choice") == "yes")["weight"].sum() or 0),
        "no": int(votes.filter(pl.col("choice") == "no")["weight"].sum() or 0),
        "electorate": int(proposal["weight"]),
        "deadline": datetime.fromisoformat(_payload(proposal)["deadline"]),
    }


def tally(
    events: pl.DataFrame,
    datanet: str,
    proposal_id: str,
    now: datetime,
    open_epoch: int,
    *,
    keys: Mapping[str, str],
) -> dict[str, Any]:
    """The `enacted` or `failed` event row of a proposal whose voting has closed. Every
    proposal and vote of the proposal is verified again against the registered `keys`
    first: a row written into the table past `propose`/`vote` is never counted."""
    proposal = proposals(events).get(proposal_id)
    if proposal is None:
        raise GovernanceError(f"no proposal {proposal_id} in Datanet {datanet}")
    if outcome(events, proposal_id) is not None:
        raise GovernanceError("the proposal has already been tallied")
    check_events(events.filter(pl.col("proposal_id") == proposal_id), keys)
    details = _payload(proposal)
    if now <= datetime.fromisoformat(details["deadline"]):
        raise GovernanceError(f"voting is open until {details['deadline']}")
    count = votes_so_far(events, proposal_id)
    yes, no, electorate = count["yes"], count["no"], count["electorate"]
    quorum = (yes + no) * 10_000 >= details["quorum_bps"] * electorate
    passed = yes * 10_000 > details["threshold_bps"] * (yes + no)
    result = {"yes": yes, "no": no, "electorate": electorate}
    if not quorum:
        result["reason"] = f"quorum not met: {yes + no} of {electorate} weight voted"
    elif not passed:
        result["reason"] = f"threshold not met: {yes} yes of {yes + no}"
    enacted = quorum and passed
    return _event(
        events,
        datanet,
        proposal_id=proposal_id,
        event="enacted" if enacted else "failed",
        actor="tally",
        at=now,
        payload=_canonical(result),
        effective_epoch=open_epoch + 1 if enacted else None,
    )


def policy_for_epoch(base: RewardPolicy, events: pl.DataFrame, epoch: int) -> RewardPolicy:
    """The reward policy in force for `epoch`: the spec's, with every change enacted for an
    epoch up to it applied in the order enacted."""
    policy = base
    found = proposals(events)
    enacted = events.filter(
        (pl.col("event") == "enacted") & (pl.col("effective_epoch") <= epoch)
    ).sort("event_index")
    for row in enacted.to_dicts():
        policy = changed_policy(policy, _payload(found[row["proposal_id"]])["changes"])
    return policy


def with_event(events: pl.DataFrame, row: dict[str, Any]) -> pl.DataFrame:
    """The events with one more row (the table is append-only)."""
    return pl.concat([events, pl.DataFrame([row], schema=GOVERNANCE_SCHEMA)])
