"""Governance rules: signed proposals and votes, refusals, quorum, threshold, and the
policy in force per epoch (changes apply from the epoch after the tally only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assets.datanets import RewardPolicy
from assets.governance import (
    GOVERNANCE_SCHEMA,
    GovernanceError,
    Proposal,
    policy_for_epoch,
    proposal_message,
    propose,
    tally,
    vote,
    vote_message,
    voting_weights,
    with_event,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
POLICY = RewardPolicy(voting_days=2, quorum_bps=5000, threshold_bps=5000)
KEYS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol", "mallory")}
PUBLIC = {n: k.public_key().public_bytes_raw().hex() for n, k in KEYS.items()}
WEIGHTS = {"alice": 600, "bob": 300, "carol": 100}  # mallory is registered but never paid


def empty() -> pl.DataFrame:
    return pl.DataFrame(schema=GOVERNANCE_SCHEMA)


def sign(who: str, message: bytes) -> str:
    return KEYS[who].sign(message).hex()


def proposed(changes: dict | None = None) -> tuple[pl.DataFrame, str]:
    proposal = Proposal("wine", "alice", changes or {"pool_per_epoch": 5000}, "smaller", T0)
    pid = proposal.proposal_id()
    row = propose(
        empty(),
        proposal,
        sign("alice", proposal_message("wine", pid)),
        PUBLIC["alice"],
        WEIGHTS,
        POLICY,
    )
    return with_event(empty(), row), pid


def voted(events: pl.DataFrame, pid: str, who: str, choice: str, at: datetime = T0) -> pl.DataFrame:
    row = vote(
        events,
        "wine",
        pid,
        who,
        choice,
        sign(who, vote_message("wine", pid, who, choice)),
        PUBLIC[who],
        at,
    )
    return with_event(events, row)


def test_a_proposal_snapshots_weights_quorum_and_deadline() -> None:
    events, _ = proposed()
    row = events.row(0, named=True)
    assert row["event"] == "proposal" and row["weight"] == 1000 and row["event_index"] == 0
    assert '"deadline":"2026-11-22T12:00:00+00:00"' in row["payload"]
    assert '"quorum_bps":5000' in row["payload"]


@pytest.mark.parametrize(
    ("signer", "key", "changes", "weights", "message"),
    [
        ("mallory", "alice", {"z": 2.0}, WEIGHTS, "signature does not match"),
        ("alice", None, {"z": 2.0}, WEIGHTS, "not a registered contributor"),
        ("alice", "alice", {}, WEIGHTS, "at least one field"),
        ("alice", "alice", {"pool": 1}, WEIGHTS, "unknown reward policy field"),
        ("alice", "alice", {"fee_model_owner_bps": 9000}, WEIGHTS, "fee shares must sum"),
        ("alice", "alice", {"z": 2.0}, {}, "no electorate yet"),
    ],
)
def test_bad_proposals_are_refused(signer, key, changes, weights, message) -> None:  # type: ignore[no-untyped-def]
    proposal = Proposal("wine", "alice", changes, "", T0)
    signature = sign(signer, proposal_message("wine", proposal.proposal_id()))
    with pytest.raises(GovernanceError, match=message):
        propose(empty(), proposal, signature, PUBLIC[key] if key else None, weights, POLICY)


def test_the_same_proposal_twice_is_refused() -> None:
    events, pid = proposed()
    proposal = Proposal("wine", "alice", {"pool_per_epoch": 5000}, "smaller", T0)
    with pytest.raises(GovernanceError, match="exists"):
        propose(
            events,
            proposal,
            sign("alice", proposal_message("wine", pid)),
            PUBLIC["alice"],
            WEIGHTS,
            POLICY,
        )


def test_votes_carry_the_snapshot_weight() -> None:
    events, pid = proposed()
    events = voted(events, pid, "bob", "yes")
    assert events.row(1, named=True)["weight"] == 300


def test_refused_votes() -> None:
    events, pid = proposed()
    events = voted(events, pid, "bob", "yes")
    good = sign("carol", vote_message("wine", pid, "carol", "yes"))
    cases = [
        # unsigned
        dict(voter="carol", choice="yes", signature=None, key=PUBLIC["carol"], at=T0),
        # forged: mallory signs carol's vote
        dict(
            voter="carol",
            choice="yes",
            signature=sign("mallory", vote_message("wine", pid, "carol", "yes")),
            key=PUBLIC["carol"],
            at=T0,
        ),
        # a signature for "yes" replayed as "no"
        dict(voter="carol", choice="no", signature=good, key=PUBLIC["carol"], at=T0),
        # double vote
        dict(
            voter="bob",
            choice="no",
            signature=sign("bob", vote_message("wine", pid, "bob", "no")),
            key=PUBLIC["bob"],
            at=T0,
        ),
        # registered but never paid: not in the electorate
        dict(
            voter="mallory",
            choice="yes",
            signature=sign("mallory", vote_message("wine", pid, "mallory", "yes")),
            key=PUBLIC["mallory"],
            at=T0,
        ),
        # not registered at all
        dict(voter="carol", choice="yes", signature=good, key=None, at=T0),
        # after the deadline
        dict(
            voter="carol",
            choice="yes",
            signature=good,
            key=PUBLIC["carol"],
            at=T0 + timedelta(days=2, seconds=1),
        ),
    ]
    messages = [
        "signature does not match",
        "signature does not match",
        "signature does not match",
        "already voted",
        "no voting weight",
        "not a registered contributor",
        "voting closed",
    ]
    for case, message in zip(cases, messages, strict=True):
        with pytest.raises(GovernanceError, match=message):
            vote(
                events,
                "wine",
                pid,
                case["voter"],
                case["choice"],
                case["signature"],
                case["key"],
                case["at"],
            )
    with pytest.raises(GovernanceError, match="no proposal"):
        vote(events, "wine", "f" * 64, "carol", "yes", good, PUBLIC["carol"], T0)


def test_tally_before_the_deadline_is_refused() -> None:
    events, pid = proposed()
    with pytest.raises(GovernanceError, match="voting is open"):
        tally(events, "wine", pid, T0 + timedelta(days=1), open_epoch=1, keys=PUBLIC)


AFTER = T0 + timedelta(days=3)


@pytest.mark.parametrize(
    ("votes", "event", "reason"),
    [
        ([("alice", "yes")], "enacted", None),  # 600 of 1000 voted, all yes
        ([("bob", "yes"), ("carol", "yes")], "failed", "quorum not met: 400 of 1000"),
        ([("alice", "no"), ("bob", "yes")], "failed", "threshold not met: 300 yes of 900"),
        ([("alice", "yes"), ("bob", "no"), ("carol", "no")], "enacted", None),
        ([], "failed", "quorum not met"),
    ],
)
def test_tally_outcomes(votes, event, reason) -> None:  # type: ignore[no-untyped-def]
    events, pid = proposed()
    for who, choice in votes:
        events = voted(events, pid, who, choice)
    row = tally(events, "wine", pid, AFTER, open_epoch=4, keys=PUBLIC)
    assert row["event"] == event
    if event == "enacted":
        assert row["effective_epoch"] == 5  # the epoch after the open one
    else:
        assert row["effective_epoch"] is None and reason in row["payload"]
    events = with_event(events, row)
    with pytest.raises(GovernanceError, match="already been tallied"):
        tally(events, "wine", pid, AFTER, open_epoch=4, keys=PUBLIC)
    with pytest.raises(GovernanceError, match="voting is closed"):
        voted(events, pid, "carol", "yes")


def test_an_enacted_change_applies_from_its_epoch_only() -> None:
    events, pid = proposed({"pool_per_epoch": 5000, "z": 2.0})
    events = voted(events, pid, "alice", "yes")
    events = with_event(events, tally(events, "wine", pid, AFTER, open_epoch=1, keys=PUBLIC))
    assert policy_for_epoch(POLICY, events, 1) == POLICY
    changed = policy_for_epoch(POLICY, events, 2)
    assert changed.pool_per_epoch == 5000 and changed.z == 2.0
    assert changed.policy_hash() != POLICY.policy_hash()
    assert policy_for_epoch(POLICY, events, 9) == changed


def test_failed_proposals_change_nothing() -> None:
    events, pid = proposed()
    events = with_event(events, tally(events, "wine", pid, AFTER, open_epoch=0, keys=PUBLIC))
    assert policy_for_epoch(POLICY, events, 10) == POLICY


def test_voting_weights_are_contributor_payouts() -> None:
    rewards = pl.DataFrame(
        {
            "role": ["contributor", "contributor", "model_owner", "contributor", "carry_over"],
            "recipient": ["alice", "alice", "alice", "bob", "next_epoch"],
            "amount": [5, 7, 100, 0, 9],
        }
    )
    assert voting_weights(rewards) == {"alice": 12}


# --- attacks on signatures: forged, replayed, unregistered (issue 14) ----------------------


def second_proposal(events: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    """A second open proposal (by bob) after those in `events`."""
    proposal = Proposal("wine", "bob", {"z": 2.0}, "wider error bars", T0)
    pid = proposal.proposal_id()
    row = propose(
        events, proposal, sign("bob", proposal_message("wine", pid)), PUBLIC["bob"], WEIGHTS, POLICY
    )
    return with_event(events, row), pid


def test_a_vote_replayed_on_another_proposal_is_refused() -> None:
    events, first = proposed()
    events, second = second_proposal(events)
    ballot = sign("carol", vote_message("wine", first, "carol", "yes"))
    events = with_event(
        events, vote(events, "wine", first, "carol", "yes", ballot, PUBLIC["carol"], T0)
    )
    with pytest.raises(GovernanceError, match="signature does not match the voter's"):
        vote(events, "wine", second, "carol", "yes", ballot, PUBLIC["carol"], T0)


def test_a_proposal_signed_by_an_unregistered_key_is_refused() -> None:
    proposal = Proposal("wine", "alice", {"z": 2.0}, "", T0)
    stranger = Ed25519PrivateKey.generate()  # nobody registered this key
    signature = stranger.sign(proposal_message("wine", proposal.proposal_id())).hex()
    with pytest.raises(GovernanceError, match="does not match the proposer's key"):
        propose(empty(), proposal, signature, PUBLIC["alice"], WEIGHTS, POLICY)


def injected(events: pl.DataFrame, **fields: object) -> pl.DataFrame:
    """`events` plus a row written straight into the table, past `propose` and `vote`:
    what anyone with write access to the lake could commit."""
    row = dict.fromkeys(GOVERNANCE_SCHEMA)
    row.update(datanet="wine", event_index=events.height, weight=0, payload="{}", at=T0)
    row.update(fields)
    return with_event(events, row)


def test_the_tally_refuses_events_whose_signatures_do_not_verify() -> None:
    events, pid = proposed()
    events, other = second_proposal(events)
    replayed = sign("alice", vote_message("wine", other, "alice", "yes"))
    stranger = Ed25519PrivateKey.generate()
    forged = stranger.sign(vote_message("wine", pid, "alice", "yes")).hex()
    does_not_match = "signature does not match alice's registered key"
    cases = [
        (  # signed by a key nobody registered
            injected(
                events, proposal_id=pid, event="vote", actor="alice", choice="yes",
                weight=600, signature=forged,
            ),
            does_not_match,
        ),
        (  # alice's genuine vote on the other proposal, copied onto this one
            injected(
                events, proposal_id=pid, event="vote", actor="alice", choice="yes",
                weight=600, signature=replayed,
            ),
            does_not_match,
        ),
        (
            injected(
                events, proposal_id=pid, event="vote", actor="dora", choice="yes",
                weight=600, signature=forged,
            ),
            "dora is not a registered contributor",
        ),
    ]  # fmt: skip
    for history, message in cases:
        with pytest.raises(GovernanceError, match=rf"governance event 2 \(vote by .*{message}"):
            tally(history, "wine", pid, AFTER, open_epoch=0, keys=PUBLIC)
    unsigned_proposal = events.with_columns(
        pl.when(pl.col("proposal_id") == pid).then(None).otherwise(pl.col("signature"))
        .alias("signature")
    )  # fmt: skip
    with pytest.raises(GovernanceError, match=r"governance event 0 \(proposal by alice\)"):
        tally(unsigned_proposal, "wine", pid, AFTER, open_epoch=0, keys=PUBLIC)
    edited = events.with_columns(
        pl.when(pl.col("proposal_id") == pid)
        .then(pl.lit('{"changes":{"pool_per_epoch":1}}'))
        .otherwise(pl.col("payload"))
        .alias("payload")
    )
    with pytest.raises(GovernanceError, match="proposal id is not the hash of its content"):
        tally(edited, "wine", pid, AFTER, open_epoch=0, keys=PUBLIC)
