"""Closing an epoch: from ledgered values, quality and inferences to integer payouts.

`close_epoch` is a pure function of `EpochInputs`: the Dagster asset calls it with the
latest committed inputs, `openledger recompute` calls it with the inputs an epoch's record
pins (ledger seq and root of each), and both must get the same three tables bit for bit:

- `epochs`: one row per Datanet and epoch — the pool (policy pool + carried in), what was
  paid and carried out, the fees, the policy in effect, and the ledger entries used;
- `rewards`: one row per epoch, recipient and source (`pool` or `fees`), amounts in integer
  base units; a pool's rows (with the carry-over row) sum to the pool, fees to the fees;
- `statements`: one row per contributor explaining their amounts.

An epoch covers the contributions committed when it closes (the contributions entry its
values were computed on); rows committed later count in the next epoch. Its fees are those
of the inferences ledgered since the previous epoch closed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

import polars as pl

from assets.datanets import RewardPolicy
from assets.names import epoch_key
from assets.rewards import FeePolicy, Standing, split_fee, split_pool

INT64_MAX = 2**63 - 1
# The ledgered inputs an epoch pins, by the name its record uses for them.
SOURCES = (
    "datanets",
    "contributions",
    "contributor_values",
    "contributor_quality",
    "inferences",
    "inference_attributions",
    "governance",
    "previous_epoch",
)
TIMESTAMP = pl.Datetime("us", "UTC")
EPOCHS_SCHEMA: dict[str, pl.DataType] = {
    "datanet": pl.String(),
    "epoch": pl.Int64(),
    "datanet_epoch": pl.String(),
    "closed_at": TIMESTAMP,
    "spec_hash": pl.String(),
    "policy_hash": pl.String(),
    "policy_json": pl.String(),
    "pool_base": pl.Int64(),
    "carried_in": pl.Int64(),
    "pool": pl.Int64(),
    "paid_pool": pl.Int64(),
    "carried_out": pl.Int64(),
    "fees_total": pl.Int64(),
    "inferences_paid": pl.Int64(),
    "contributors": pl.Int64(),
    **{f"{s}_seq": pl.Int64() for s in SOURCES},
    **{f"{s}_root": pl.String() for s in SOURCES},
}
REWARDS_SCHEMA: dict[str, pl.DataType] = {
    "datanet": pl.String(),
    "epoch": pl.Int64(),
    "datanet_epoch": pl.String(),
    "role": pl.String(),  # contributor | model_owner | datanet_owner | carry_over
    "recipient": pl.String(),
    "source": pl.String(),  # pool | fees
    "amount": pl.Int64(),
    "policy_hash": pl.String(),
    "reason": pl.String(),
}
STATEMENTS_SCHEMA: dict[str, pl.DataType] = {
    "datanet": pl.String(),
    "epoch": pl.Int64(),
    "datanet_epoch": pl.String(),
    "contributor": pl.String(),
    "rows_contributed": pl.Int64(),
    "rows_ingested": pl.Int64(),
    "rows_accepted": pl.Int64(),
    "duplicates": pl.Int64(),
    "near_duplicates": pl.Int64(),  # of earlier submissions: credited to them, not valued
    "quarantined": pl.Int64(),
    "quality": pl.Float64(),
    "value": pl.Float64(),
    "std_error": pl.Float64(),
    "lower_bound": pl.Float64(),
    "rank": pl.Int64(),
    "weight": pl.Float64(),
    "share": pl.Float64(),
    "amount_pool": pl.Int64(),
    "amount_fees": pl.Int64(),
    "amount_total": pl.Int64(),
    "inferences_attributed": pl.Int64(),
    "flags": pl.String(),
    # which rows earned and which did not, in numbers and in words (`rows_explained`)
    "rows_rejected_by_quality": pl.Int64(),
    "rows_earning": pl.Int64(),
    "rows_that_earned": pl.String(),
    "rows_that_earned_nothing": pl.String(),
    "policy_hash": pl.String(),
    "values_seq": pl.Int64(),
    "values_root": pl.String(),
    "quality_seq": pl.Int64(),
    "quality_root": pl.String(),
    "contributions_seq": pl.Int64(),
    "contributions_root": pl.String(),
}
CARRY_OVER = "next_epoch"


class EpochError(ValueError):
    """An epoch that cannot be closed (or recomputed) as asked; the message says why."""


@dataclass(frozen=True)
class Source:
    """A ledgered input: the ledger entry (seq) and the data root it commits."""

    seq: int
    root: str


@dataclass(frozen=True)
class EpochInputs:
    """Everything an epoch's payouts depend on; all of it is ledgered."""

    datanet: str
    epoch: int
    closed_at: datetime
    spec_hash: str
    datanet_owner: str
    policy: RewardPolicy
    carried_in: int
    values: pl.DataFrame  # contributor_values of the Datanet
    quality: pl.DataFrame  # contributor_quality of the Datanet
    inferences: pl.DataFrame  # the inferences this epoch pays (not paid before)
    attributions: pl.DataFrame  # their contributor shares (share_ppb)
    sources: dict[str, Source | None]


@dataclass(frozen=True)
class ClosedEpoch:
    epochs: pl.DataFrame
    rewards: pl.DataFrame
    statements: pl.DataFrame


def standings(values: pl.DataFrame, quality: pl.DataFrame) -> list[Standing]:
    """One standing per valued contributor: value, its standard error, and the quality
    multiplier (the share of their ingested rows that passed quality; 0 if unknown)."""
    accepted = dict(zip(quality["contributor"], quality["accepted_share"], strict=True))
    return [
        Standing(c, float(v), float(se), float(accepted.get(c) or 0.0))
        for c, v, se in zip(
            values["contributor"], values["value"], values["std_error"], strict=True
        )
    ]


def fee_amounts(inputs: EpochInputs) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Each inference's fee split by policy shares and its attribution, summed per
    (role, recipient); also how many inferences each contributor was attributed."""
    policy = inputs.policy
    fee_policy = FeePolicy(
        Fraction(policy.fee_contributors_bps, 10_000),
        Fraction(policy.fee_model_owner_bps, 10_000),
        Fraction(policy.fee_datanet_owner_bps, 10_000),
    )
    model_owner = policy.model_owner or inputs.datanet_owner
    shares: dict[str, dict[str, int]] = defaultdict(dict)
    for inference_id, contributor, ppb in zip(
        inputs.attributions["inference_id"],
        inputs.attributions["contributor"],
        inputs.attributions["share_ppb"],
        strict=True,
    ):
        shares[inference_id][contributor] = int(ppb)
    totals: dict[tuple[str, str], int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    paid = inputs.inferences.sort("inference_id")
    for inference_id, fee in zip(paid["inference_id"], paid["fee"], strict=True):
        if inference_id not in shares:
            raise EpochError(f"inference {inference_id} has no attribution; run the Datanet first")
        split = split_fee(
            int(fee), shares[inference_id], fee_policy, model_owner, inputs.datanet_owner
        )
        for party, amount in split.items():
            role, recipient = party.split(":", 1)
            totals[(role, recipient)] += amount
            if role == "contributor" and shares[inference_id].get(recipient, 0) > 0:
                counts[recipient] += 1
    return dict(totals), dict(counts)


def _pool_reason(amount: int, flags: list[str], capped: bool) -> str:
    if amount > 0:
        return "share of the pool by lower-bound value x quality" + (", capped" if capped else "")
    return ", ".join(flags) or "lower bound of value is zero"


def close_epoch(inputs: EpochInputs) -> ClosedEpoch:
    """The epoch's three tables; amounts are exact integers and every pool and fee sums."""
    policy, key = inputs.policy, epoch_key(inputs.datanet, inputs.epoch)
    pool = policy.pool_per_epoch + inputs.carried_in
    if pool > INT64_MAX:
        raise EpochError(f"pool {pool} exceeds int64 base units")
    people = standings(inputs.values, inputs.quality)
    split = split_pool(pool, people, policy.z, policy.max_share_per_contributor)
    fees, attributed = fee_amounts(inputs)
    policy_hash = policy.policy_hash()
    common = {"datanet": inputs.datanet, "epoch": inputs.epoch, "datanet_epoch": key}

    rewards = []
    for s in people:
        capped = s.contributor in split.capped
        amount = split.amounts[s.contributor]
        rewards.append(
            {
                **common,
                "role": "contributor",
                "recipient": s.contributor,
                "source": "pool",
                "amount": amount,
                "policy_hash": policy_hash,
                "reason": _pool_reason(amount, split.flags.get(s.contributor, []), capped),
            }
        )
    rewards.append(
        {
            **common,
            "role": "carry_over",
            "recipient": CARRY_OVER,
            "source": "pool",
            "amount": split.carried_over,
            "policy_hash": policy_hash,
            "reason": "no contributor had positive weight"
            if split.carried_over == pool and pool > 0
            else "left by caps and rounding"
            if split.carried_over
            else "nothing carried",
        }
    )
    for (role, recipient), amount in sorted(fees.items()):
        rewards.append(
            {
                **common,
                "role": role,
                "recipient": recipient,
                "source": "fees",
                "amount": amount,
                "policy_hash": policy_hash,
                "reason": f"{attributed.get(recipient, 0)} attributed inferences"
                if role == "contributor"
                else f"{role.replace('_', ' ')} share of {inputs.inferences.height} inferences",
            }
        )
    rewards_frame = pl.DataFrame(rewards, schema=REWARDS_SCHEMA)
    statements = _statements(
        inputs, people, split.amounts, split.weights, split.flags, fees, attributed, policy_hash
    )
    fees_total = int(inputs.inferences["fee"].sum() or 0)
    record = {
        **common,
        "closed_at": inputs.closed_at,
        "spec_hash": inputs.spec_hash,
        "policy_hash": policy_hash,
        "policy_json": policy.canonical_json(),
        "pool_base": policy.pool_per_epoch,
        "carried_in": inputs.carried_in,
        "pool": pool,
        "paid_pool": pool - split.carried_over,
        "carried_out": split.carried_over,
        "fees_total": fees_total,
        "inferences_paid": inputs.inferences.height,
        "contributors": len(people),
    }
    for name in SOURCES:
        source = inputs.sources.get(name)
        record[f"{name}_seq"] = source.seq if source else None
        record[f"{name}_root"] = source.root if source else None
    return ClosedEpoch(pl.DataFrame([record], schema=EPOCHS_SCHEMA), rewards_frame, statements)


def _statements(
    inputs: EpochInputs,
    people: list[Standing],
    amounts: dict[str, int],
    weights: dict[str, Fraction],
    pool_flags: dict[str, list[str]],
    fees: dict[tuple[str, str], int],
    attributed: dict[str, int],
    policy_hash: str,
) -> pl.DataFrame:
    quality = {r["contributor"]: r for r in inputs.quality.iter_rows(named=True)}
    values = {r["contributor"]: r for r in inputs.values.iter_rows(named=True)}
    pool_paid = sum(amounts.values())
    sources = inputs.sources
    rows = []
    for s in people:
        q = quality.get(s.contributor, {})
        flags = set(pool_flags.get(s.contributor, []))
        flags |= {f for f in (q.get("flags") or "").split(",") if f}
        if (q.get("duplicates") or 0) > 0 or (q.get("near_duplicates") or 0) > 0:
            flags.add("copied_rows_earn_nothing")
        amount_fees = fees.get(("contributor", s.contributor), 0)
        amount_total = amounts[s.contributor] + amount_fees
        why = ", ".join(pool_flags.get(s.contributor, [])) or (
            "lower bound of value is zero"
            if weights[s.contributor] == 0
            else "their share of the pool rounds to zero"
        )
        earned = rows_explained(q, amount_total, why)
        rows.append(
            {
                "datanet": inputs.datanet,
                "epoch": inputs.epoch,
                "datanet_epoch": epoch_key(inputs.datanet, inputs.epoch),
                "contributor": s.contributor,
                "rows_contributed": int(
                    (q.get("rows") or 0) + (q.get("duplicates") or 0) + (q.get("quarantined") or 0)
                ),
                "rows_ingested": int(q.get("rows") or 0),
                "rows_accepted": int(q.get("accepted_rows") or 0),
                "duplicates": int(q.get("duplicates") or 0),
                "near_duplicates": int(q.get("near_duplicates") or 0),
                "quarantined": int(q.get("quarantined") or 0),
                "quality": s.quality,
                "value": s.value,
                "std_error": s.std_error,
                "lower_bound": s.value - inputs.policy.z * s.std_error,
                "rank": int(values[s.contributor]["rank"]),
                "weight": float(weights[s.contributor]),
                "share": float(amounts[s.contributor] / pool_paid) if pool_paid else 0.0,
                "amount_pool": amounts[s.contributor],
                "amount_fees": amount_fees,
                "amount_total": amount_total,
                "inferences_attributed": attributed.get(s.contributor, 0),
                "flags": ",".join(sorted(flags)),
                **earned,
                "policy_hash": policy_hash,
                **_seq_root("values", sources.get("contributor_values")),
                **_seq_root("quality", sources.get("contributor_quality")),
                **_seq_root("contributions", sources.get("contributions")),
            }
        )
    return pl.DataFrame(rows, schema=STATEMENTS_SCHEMA)


def _count(row: dict[str, object], key: str) -> int:
    """A count from a contributor_quality row (0 when the contributor has none)."""
    value = row.get(key)
    return int(value) if isinstance(value, int | float) else 0


def rows_explained(
    quality: dict[str, object], amount_total: int, why_nothing: str
) -> dict[str, object]:
    """Which of a contributor's rows earned and which did not, so that a flag such as
    `copied_rows_earn_nothing` next to a payout reads as what it is: only rows of their
    own, submitted first and accepted by quality, earn (pool and fees); copies of earlier
    rows are credited to their first submitter. `why_nothing`: why accepted rows earned
    nothing, when they did not."""
    accepted, ingested = _count(quality, "accepted_rows"), _count(quality, "rows")
    duplicates, quarantined = _count(quality, "duplicates"), _count(quality, "quarantined")
    near = _count(quality, "near_duplicates")
    own = f"{accepted} accepted rows (own, first submitted)"
    nothing = []
    if accepted and not amount_total:
        nothing.append(f"{own}: {why_nothing}")
    if duplicates:
        nothing.append(
            f"{duplicates} duplicates of earlier submissions (credited to their first submitter)"
        )
    if near:
        nothing.append(
            f"{near} near-duplicates of earlier submissions (within the spec's tolerance; "
            "credited to their first submitter, not valued)"
        )
    if quarantined:
        nothing.append(f"{quarantined} quarantined")
    if ingested - accepted - near:
        nothing.append(f"{ingested - accepted - near} rejected by quality")
    earning = accepted if amount_total else 0
    return {
        "rows_rejected_by_quality": ingested - accepted - near,
        "rows_earning": earning,
        "rows_that_earned": own if earning else "none",
        "rows_that_earned_nothing": ", ".join(nothing) or "none",
    }


def _seq_root(prefix: str, source: Source | None) -> dict[str, object]:
    return {
        f"{prefix}_seq": source.seq if source else None,
        f"{prefix}_root": source.root if source else None,
    }
