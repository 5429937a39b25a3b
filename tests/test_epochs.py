"""Closing reward epochs: exact sums, carry-over, closed epochs never change, late rows
count in the next epoch, and the independent recompute reproduces (or names) every amount."""

from __future__ import annotations

import io
import shutil
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import dagster as dg
import hypothesis.strategies as st
import numpy as np
import polars as pl
import pytest
from demo_pipeline import build_demo_lake, commit_forged_rewards
from hypothesis import given, settings
from hypothesis_budget import examples
from rich.console import Console
from rich.table import Table

from assets.datanets import RewardPolicy
from assets.demo_data import demo_spec, split_bundled
from assets.epochs import EpochError, EpochInputs, Source, close_epoch
from assets.layout import submit
from assets.recompute import (
    closed_epochs,
    committed_epoch,
    gather_inputs,
    latest_pins,
    recompute_epoch,
)
from ledger.lake import Lake
from ledger.sql import connect
from ledger.verify import verify_lake
from openledger_pipelines.definitions import build_defs
from openledger_pipelines.runner import run_datanets, run_epoch
from openledger_pipelines.statements import statement_rows, statement_table

CLOSED_AT = datetime(2026, 11, 10, tzinfo=UTC)
INGEST_ASSETS = ["contributions", "quarantine", "duplicates", "batches"]


def inputs_for(
    values: list[tuple[str, float, float, float]],
    pool: int,
    fees: list[tuple[str, int, dict[str, int]]],
    carried_in: int = 0,
    max_share: float = 1.0,
) -> EpochInputs:
    """Pure inputs: (contributor, value, std_error, accepted_share) and (id, fee, shares)."""
    names = [v[0] for v in values]
    return EpochInputs(
        datanet="d",
        epoch=3,
        closed_at=CLOSED_AT,
        spec_hash="s" * 64,
        datanet_owner="owner",
        policy=RewardPolicy(pool_per_epoch=pool, max_share_per_contributor=max_share),
        carried_in=carried_in,
        values=pl.DataFrame(
            {
                "contributor": names,
                "value": [v[1] for v in values],
                "std_error": [v[2] for v in values],
                "rank": list(range(1, len(values) + 1)),
            },
            schema={
                "contributor": pl.String,
                "value": pl.Float64,
                "std_error": pl.Float64,
                "rank": pl.Int64,
            },
        ),
        quality=pl.DataFrame(
            {
                "contributor": names,
                "accepted_share": [v[3] for v in values],
                "rows": [10] * len(names),
                "accepted_rows": [int(10 * v[3]) for v in values],
                "duplicates": [0] * len(names),
                "quarantined": [0] * len(names),
                "flags": [""] * len(names),
            },
            schema={
                "contributor": pl.String,
                "accepted_share": pl.Float64,
                "rows": pl.Int64,
                "accepted_rows": pl.Int64,
                "duplicates": pl.Int64,
                "quarantined": pl.Int64,
                "flags": pl.String,
            },
        ),
        inferences=pl.DataFrame(
            {"inference_id": [f[0] for f in fees], "fee": [f[1] for f in fees]},
            schema={"inference_id": pl.String, "fee": pl.Int64},
        ),
        attributions=pl.DataFrame(
            [
                {"inference_id": i, "contributor": c, "share_ppb": p}
                for i, _, shares in fees
                for c, p in shares.items()
            ],
            schema={"inference_id": pl.String, "contributor": pl.String, "share_ppb": pl.Int64},
        ),
        sources={"contributor_values": Source(7, "ab" * 32)},
    )


def sums(closed) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    rewards = closed.rewards
    pool = int(rewards.filter(pl.col("source") == "pool")["amount"].sum() or 0)
    fees = int(rewards.filter(pl.col("source") == "fees")["amount"].sum() or 0)
    return pool, fees


standing = st.tuples(
    st.floats(-1, 1, allow_nan=False),
    st.floats(0, 0.5, allow_nan=False),
    st.floats(0, 1, allow_nan=False),
)


@settings(max_examples=examples(150), deadline=None)
@given(
    people=st.lists(standing, min_size=1, max_size=12),
    pool=st.integers(0, 10**15),
    carried=st.integers(0, 10**12),
    fees=st.lists(
        st.tuples(st.integers(0, 10**9), st.lists(st.integers(0, 10**9), min_size=12, max_size=12)),
        max_size=6,
    ),
    cap=st.sampled_from([1.0, 0.5, 0.2]),
)
def test_every_pool_and_fee_sums_exactly(people, pool, carried, fees, cap) -> None:  # type: ignore[no-untyped-def]
    values = [(f"c{i:02d}", v, se, q) for i, (v, se, q) in enumerate(people)]
    names = [v[0] for v in values]
    fee_rows = []
    for j, (fee, raw) in enumerate(fees):
        shares = dict(zip(names, raw, strict=False))
        if not any(shares.values()):
            shares[names[0]] = 1
        fee_rows.append((f"i{j}", fee, shares))
    inputs = inputs_for(values, pool, fee_rows, carried, cap)
    closed = close_epoch(inputs)
    pool_sum, fee_sum = sums(closed)
    record = closed.epochs.row(0, named=True)
    assert pool_sum == pool + carried == record["pool"]
    assert fee_sum == sum(f[1] for f in fee_rows) == record["fees_total"]
    assert record["paid_pool"] + record["carried_out"] == record["pool"]
    assert closed.rewards["amount"].min() >= 0  # type: ignore[operator]
    statements = closed.statements
    ceiling = int(Fraction(str(cap)) * (pool + carried))  # a cap is a hard limit in base units
    for row in statements.iter_rows(named=True):
        assert row["amount_pool"] <= ceiling
        if row["value"] <= 0:
            assert row["amount_pool"] == 0
            assert {"negative_value", "zero_value"} & set(row["flags"].split(","))
        assert row["amount_total"] == row["amount_pool"] + row["amount_fees"]
    assert int(statements["amount_pool"].sum()) == record["paid_pool"]
    # deterministic: the same inputs give the same tables
    again = close_epoch(inputs)
    for table in ("epochs", "rewards", "statements"):
        assert getattr(again, table).equals(getattr(closed, table))


def test_everyone_held_to_the_cap_is_marked_capped_and_the_rest_carries() -> None:
    people = [("a", 0.8, 0.0, 1.0), ("b", 0.1, 0.0, 1.0), ("c", 0.1, 0.0, 1.0)]
    closed = close_epoch(inputs_for(people, 1000, [], max_share=0.3))
    pool_rows = closed.rewards.filter(pl.col("source") == "pool")
    paid = dict(zip(pool_rows["recipient"], pool_rows["amount"], strict=True))
    reasons = dict(zip(pool_rows["recipient"], pool_rows["reason"], strict=True))
    assert [paid[n] for n in "abc"] == [300, 300, 300]  # b and c capped in the second round
    assert all(reasons[n].endswith(", capped") for n in "abc")
    assert closed.epochs.row(0, named=True)["carried_out"] == 100


def test_nobody_positive_carries_the_whole_pool_over() -> None:
    closed = close_epoch(inputs_for([("a", -0.1, 0.0, 1.0), ("b", 0.05, 0.1, 1.0)], 1000, []))
    record = closed.epochs.row(0, named=True)
    assert record["carried_out"] == 1000 and record["paid_pool"] == 0
    carry = closed.rewards.filter(pl.col("role") == "carry_over").row(0, named=True)
    assert carry["amount"] == 1000 and "no contributor had positive weight" in carry["reason"]
    flags = dict(zip(closed.statements["contributor"], closed.statements["flags"], strict=True))
    assert "negative_value" in flags["a"]
    assert "within_error_of_zero" in flags["b"]  # 0.05 ± 0.1: inside its error bar


def test_fees_follow_policy_shares_and_attribution() -> None:
    inputs = inputs_for(
        [("a", 0.5, 0.0, 1.0), ("b", 0.5, 0.0, 1.0)],
        0,
        [("i1", 1000, {"a": 750_000_000, "b": 250_000_000}), ("i2", 10, {"a": 1_000_000_000})],
    )
    closed = close_epoch(inputs)
    fees = {
        (r["role"], r["recipient"]): r["amount"]
        for r in closed.rewards.filter(pl.col("source") == "fees").iter_rows(named=True)
    }
    # i1: 700 to contributors (525 a, 175 b), 200 model owner, 100 Datanet owner;
    # i2: 7 to a, 2 model owner, 1 Datanet owner
    assert fees == {
        ("contributor", "a"): 532,
        ("contributor", "b"): 175,
        ("model_owner", "owner"): 202,
        ("datanet_owner", "owner"): 101,
    }


def test_an_unattributed_inference_is_refused() -> None:
    inputs = inputs_for([("a", 0.5, 0.0, 1.0)], 10, [("i1", 5, {})])
    with pytest.raises(EpochError, match="no attribution"):
        close_epoch(inputs)


def test_statements_say_which_rows_earned_and_which_did_not() -> None:
    inputs = inputs_for([("copier", 0.2, 0.0, 0.8), ("nobody", -0.1, 0.0, 1.0)], 1000, [])
    quality = pl.DataFrame(
        {
            "contributor": ["copier", "nobody"],
            "accepted_share": [0.8, 1.0],
            "rows": [5, 3],
            "accepted_rows": [4, 3],
            "duplicates": [20, 0],
            "quarantined": [1, 0],
            "flags": ["mostly_duplicates", ""],
        }
    )
    closed = close_epoch(replace(inputs, quality=quality))
    rows = {r["contributor"]: r for r in closed.statements.iter_rows(named=True)}
    copier, nobody = rows["copier"], rows["nobody"]
    assert copier["amount_pool"] > 0 and "copied_rows_earn_nothing" in copier["flags"]
    assert copier["rows_earning"] == copier["rows_accepted"] == 4
    assert copier["rows_that_earned"] == "4 accepted rows (own, first submitted)"
    assert copier["rows_that_earned_nothing"] == (
        "20 duplicates of earlier submissions (credited to their first submitter), "
        "1 quarantined, 1 rejected by quality"
    )
    assert copier["rows_contributed"] == (
        copier["rows_earning"]
        + copier["duplicates"]
        + copier["near_duplicates"]
        + copier["quarantined"]
        + copier["rows_rejected_by_quality"]
    )
    assert nobody["amount_total"] == 0 and nobody["rows_earning"] == 0
    assert nobody["rows_that_earned"] == "none"
    assert nobody["rows_that_earned_nothing"].startswith("3 accepted rows (own, first submitted):")
    assert "negative_value" in nobody["rows_that_earned_nothing"]


# --- on a real lake -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def closed_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo pipeline with 3 queries served and epoch 0 of both Datanets closed."""
    root = tmp_path_factory.mktemp("epochs") / "lake"
    build_demo_lake(root)
    instance = dg.DagsterInstance.ephemeral()
    for name in ("wine", "breast_cancer"):
        assert run_epoch(root, instance, name, 0).success
    return root


@pytest.fixture
def lake_copy(closed_lake: Path, tmp_path: Path) -> Path:
    target = tmp_path / "lake"
    shutil.copytree(closed_lake, target)
    return target


def test_recompute_reproduces_a_closed_epoch_bit_for_bit(closed_lake: Path) -> None:
    lake = Lake(closed_lake)
    for name in ("wine", "breast_cancer"):
        result = recompute_epoch(lake, name, 0)
        assert result.differences == []
        record = result.closed.epochs.row(0, named=True)
        assert record["pool"] == sums(result.closed)[0]
        assert record["inferences_paid"] == 3
    assert verify_lake(lake).ok


def test_the_copiers_statement_says_only_their_own_rows_earned(closed_lake: Path) -> None:
    """erin (a copier) is paid for her own rows and flagged for her copies: the statement
    says which rows are which, and its counts match the ledgered tables."""
    lake = Lake(closed_lake)
    con = connect(lake)
    for name in ("wine", "breast_cancer"):
        (erin,) = statement_rows(lake, "erin", 0, name)
        copies = con.execute(
            "select first_contributor, count(*) from duplicates "
            "where datanet = ? and contributor = 'erin' group by 1",
            [name],
        ).fetchall()
        assert copies and all(first != "erin" for first, _ in copies)
        copied = sum(n for _, n in copies)
        assert erin["amount_total"] > 0 and "copied_rows_earn_nothing" in erin["flags"]
        assert erin["rows_earning"] == erin["rows_accepted"] > 0
        assert erin["rows_that_earned"] == (
            f"{erin['rows_accepted']} accepted rows (own, first submitted)"
        )
        assert erin["rows_that_earned_nothing"].startswith(
            f"{copied} duplicates of earlier submissions (credited to their first submitter)"
        )
        text = " ".join(export_text(statement_table(erin)).split())
        assert f"rows that earned │ {erin['rows_that_earned']}" in text
        assert "rows that earned nothing │ " in text
    statements = pl.from_arrow(lake.read("statements"))
    assert (
        statements["rows_contributed"]
        == statements["rows_accepted"]
        + statements["duplicates"]
        + statements["near_duplicates"]
        + statements["quarantined"]
        + statements["rows_rejected_by_quality"]
    ).all()


def export_text(table: Table) -> str:
    """A rich table as plain text, wide enough not to wrap."""
    console = Console(width=400, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_recompute_names_a_forged_payout(lake_copy: Path) -> None:
    """An operator commits (properly ledgered) payouts that moved one unit from bob to
    alice: the sums still hold, but the recompute from the inputs names both rows."""
    lake = Lake(lake_copy)
    pool = pl.col("source") == "pool"
    commit_forged_rewards(
        lake,
        "wine.0",
        pl.when((pl.col("recipient") == "alice") & pool)
        .then(pl.col("amount") + 1)
        .when((pl.col("recipient") == "bob") & pool)
        .then(pl.col("amount") - 1)
        .otherwise(pl.col("amount")),
    )
    differences = recompute_epoch(lake, "wine", 0).differences
    assert any(d.startswith("rewards: recomputed root") for d in differences)
    assert any("'alice'" in d and "amount" in d for d in differences)
    assert any("'bob'" in d and "amount" in d for d in differences)
    assert recompute_epoch(lake, "breast_cancer", 0).differences == []


def test_recompute_refuses_inputs_that_no_longer_match_the_ledger(lake_copy: Path) -> None:
    """Replacing the data file of a pinned input (values) is caught before it is used."""
    lake = Lake(lake_copy)
    entry = committed_epoch(lake, "wine", 0)["epochs"]
    record = pl.from_arrow(lake.read("epochs", entry.delta_version)).row(0, named=True)
    values_entry = lake.ledger.entries()[record["contributor_values_seq"]]
    table_dir = lake_copy / "tables" / "contributor_values"
    for target in sorted((table_dir / "datanet=wine").glob("*.parquet")):
        frame = pl.read_parquet(target)
        frame.with_columns(pl.col("value") * 2).write_parquet(target)
    with pytest.raises(EpochError, match=f"ledger entry {values_entry.seq}"):
        recompute_epoch(lake, "wine", 0)


def _submit_late_rows(root: Path) -> int:
    """carol submits wine rows nobody has contributed (the unused tail of the demo pool)."""
    spec = demo_spec("wine")
    pool, _ = split_bundled(spec.validation.name, spec.validation.fraction, spec.validation.seed)
    rng = np.random.default_rng(0)
    pool = pool[rng.permutation(pool.height)]
    late = pool[int(0.95 * pool.height) + 5 :]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "carol-late.csv"
        late.write_csv(path)
        submit(root, "wine", "carol", path, submitted_at=CLOSED_AT)
    return late.height


def test_closed_epoch_never_changes_and_late_rows_count_next(lake_copy: Path) -> None:
    lake = Lake(lake_copy)
    instance = dg.DagsterInstance.ephemeral()
    before = committed_epoch(lake, "wine", 0)
    statement0 = pl.from_arrow(lake.read("statements", partition=("datanet_epoch", "wine.0")))
    carol0 = statement0.filter(pl.col("contributor") == "carol").row(0, named=True)
    added = _submit_late_rows(lake_copy)
    assert added > 0

    # closing epoch 1 on values computed before the new rows were ingested is refused
    assert all(run_datanets(lake_copy, instance, ["wine"], assets=INGEST_ASSETS).values())
    with pytest.raises(EpochError, match="another version of the contributions"):
        gather_inputs(lake, "wine", 1, latest_pins(lake, "wine", 1), CLOSED_AT)

    assert all(run_datanets(lake_copy, instance, ["wine"]).values())
    # epoch 0 re-run: recomputed identical, nothing new written
    size = len(lake.ledger.entries())
    assert run_epoch(lake_copy, instance, "wine", 0).success
    assert len(lake.ledger.entries()) == size
    assert committed_epoch(lake, "wine", 0) == before
    assert recompute_epoch(lake, "wine", 0).differences == []

    # skipping an epoch is refused; epoch 1 counts the late rows
    assert not run_epoch(lake_copy, instance, "wine", 2).success
    assert run_epoch(lake_copy, instance, "wine", 1).success
    assert closed_epochs(lake, "wine") == [0, 1]
    statement1 = pl.from_arrow(lake.read("statements", partition=("datanet_epoch", "wine.1")))
    carol1 = statement1.filter(pl.col("contributor") == "carol").row(0, named=True)
    assert carol1["rows_ingested"] == carol0["rows_ingested"] + added
    assert carol1["contributions_seq"] > carol0["contributions_seq"]
    records = pl.from_arrow(lake.read("epochs")).filter(pl.col("datanet") == "wine").sort("epoch")
    assert records["carried_in"][1] == records["carried_out"][0]
    assert records["previous_epoch_seq"][1] == before["epochs"].seq
    assert records["inferences_paid"][1] == 0  # the 3 served inferences were paid in epoch 0
    assert recompute_epoch(lake, "wine", 1).differences == []
    assert recompute_epoch(lake, "wine", 0).differences == []
    assert verify_lake(lake).ok


def sign_as(root: Path, who: str, message: bytes) -> str:
    """`message` signed with `who`'s demo key for the wine Datanet."""
    from assets.layout import key_path, signer

    return signer(key_path(root, "wine", who), who)(message)


def test_governance_changes_apply_from_the_next_epoch_and_recompute(lake_copy: Path) -> None:
    """A pool change proposed, voted and enacted while epoch 1 is open applies from
    epoch 2; every event is ledgered and both epochs recompute from the ledger."""
    from assets.governance import Proposal, proposal_message, propose, tally, vote, vote_message
    from openledger_pipelines.governance import (
        events,
        open_epoch,
        policy_in_force,
        record,
        registered_key,
        registered_keys,
        rewards_paid,
    )

    lake = Lake(lake_copy)
    instance = dg.DagsterInstance.ephemeral()
    now = datetime.now(UTC)
    policy = policy_in_force(lake, lake_copy, "wine")
    weights = rewards_paid(lake, "wine")
    assert weights and all(w > 0 for w in weights.values())

    proposal = Proposal("wine", "alice", {"pool_per_epoch": 5000}, "smaller pool", now)
    pid = proposal.proposal_id()
    signature = sign_as(lake_copy, "alice", proposal_message("wine", pid))
    alice_key = registered_key(lake, "wine", "alice")
    _, first = record(
        lake,
        "wine",
        lambda current: propose(current, proposal, signature, alice_key, weights, policy),
        "test",
        "test",
    )
    for who in sorted(weights):
        ballot = sign_as(lake_copy, who, vote_message("wine", pid, who, "yes"))
        key = registered_key(lake, "wine", who)
        record(
            lake,
            "wine",
            lambda current, who=who, ballot=ballot, key=key: vote(
                current, "wine", pid, who, "yes", ballot, key, now
            ),
            "test",
            "test",
        )
    after = now + timedelta(days=policy.voting_days, seconds=1)
    opened = open_epoch(lake, "wine")
    row, last = record(
        lake,
        "wine",
        lambda current: tally(
            current, "wine", pid, after, opened, keys=registered_keys(lake, "wine")
        ),
        "test",
        "test",
    )
    assert row["event"] == "enacted" and row["effective_epoch"] == 2
    assert len(events(lake, "wine")) == len(weights) + 2
    assert last.entry.seq == first.entry.seq + len(weights) + 1  # every event is an entry

    assert run_epoch(lake_copy, instance, "wine", 1).success
    assert run_epoch(lake_copy, instance, "wine", 2).success
    records = pl.from_arrow(lake.read("epochs")).filter(pl.col("datanet") == "wine").sort("epoch")
    assert records["pool_base"].to_list() == [policy.pool_per_epoch, policy.pool_per_epoch, 5000]
    assert records["policy_hash"][0] == records["policy_hash"][1] != records["policy_hash"][2]
    assert records["governance_seq"][1] == last.entry.seq
    for epoch in (0, 1, 2):
        assert recompute_epoch(lake, "wine", epoch).differences == []
    assert verify_lake(lake).ok


def test_the_schedule_closes_epochs_when_due(closed_lake: Path) -> None:
    from openledger_pipelines.automation import epoch_closer
    from openledger_pipelines.resources import LakeResource
    from openledger_pipelines.rewards import epoch_due

    lake = Lake(closed_lake)
    closed = committed_epoch(lake, "wine", 0)["epochs"].committed_at
    assert epoch_due(lake, "wine", 7, closed + timedelta(days=6)) is None
    assert epoch_due(lake, "wine", 7, closed + timedelta(days=7, seconds=1)) == 1
    assert epoch_due(lake, "nothing_here", 7, closed + timedelta(days=70)) is None

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("datanets", ["wine", "breast_cancer"])
        for days, expected in ((1, []), (8, ["breast_cancer.1", "wine.1"])):
            # as a context manager, so the instance it opens is closed again (Dagster
            # otherwise leaves it as the current definitions-state storage of the process)
            with dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=closed + timedelta(days=days),
                resources={"lake": LakeResource(root=str(closed_lake))},
            ) as context:
                requests = list(epoch_closer(context))  # type: ignore[arg-type]
            assert sorted(str(r.partition_key) for r in requests) == expected
        assert "wine.1" in instance.get_dynamic_partitions("datanet_epochs")
    assert build_defs(str(closed_lake)).resolve_job_def("datanet_job") is not None  # not leaked


def test_concurrent_votes_are_all_recorded(lake_copy: Path) -> None:
    """Votes cast at the same moment are serialized by the governance lock: none is lost
    and none takes another's place in the event log."""
    import threading

    from assets.governance import Proposal, proposal_message, propose, vote, vote_message
    from openledger_pipelines.governance import (
        events,
        policy_in_force,
        record,
        registered_key,
        rewards_paid,
    )

    lake = Lake(lake_copy)
    now = datetime.now(UTC)
    weights = rewards_paid(lake, "wine")
    policy = policy_in_force(lake, lake_copy, "wine")

    proposal = Proposal("wine", "alice", {"z": 2.0}, "", now)
    pid = proposal.proposal_id()
    signature = sign_as(lake_copy, "alice", proposal_message("wine", pid))
    key = registered_key(lake, "wine", "alice")
    record(
        lake,
        "wine",
        lambda current: propose(current, proposal, signature, key, weights, policy),
        "t",
        "t",
    )
    voters = sorted(weights)[:4]
    ballots = {
        who: (
            sign_as(lake_copy, who, vote_message("wine", pid, who, "no")),
            registered_key(lake, "wine", who),
        )
        for who in voters
    }
    start = threading.Barrier(len(voters))
    failures: list[BaseException] = []

    def cast(who: str) -> None:
        start.wait()
        try:
            record(
                Lake(lake_copy),
                "wine",
                lambda current: vote(current, "wine", pid, who, "no", *ballots[who], now),
                "t",
                "t",
            )
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=cast, args=(who,)) for who in voters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    votes = events(lake, "wine").filter(pl.col("event") == "vote")
    assert sorted(votes["actor"].to_list()) == voters
    assert sorted(votes["event_index"].to_list()) == list(range(1, len(voters) + 1))
    assert verify_lake(lake).ok
