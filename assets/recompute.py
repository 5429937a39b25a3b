"""An epoch's inputs, read from the ledger, and the independent recompute.

This is the promise against closed attribution services, in three steps anyone can read:

1. `pins_of` takes the ledger entries an epoch's record names (seq of each input);
2. `gather_inputs` reads each input table at exactly that entry's Delta version, after
   recomputing its Merkle root and checking it against the ledger (`read_pinned`);
3. `recompute_epoch` runs the same pure `close_epoch` and compares the three tables it
   gives with the committed ones, row by row and root by root.

The Dagster `rewards` asset closes an epoch through the same `gather_inputs`, with the
latest entries as pins, so closing and recomputing cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from assets.datanets import DatanetSpec, SpecError
from assets.epochs import (
    EPOCHS_SCHEMA,
    REWARDS_SCHEMA,
    SOURCES,
    STATEMENTS_SCHEMA,
    ClosedEpoch,
    EpochError,
    EpochInputs,
    Source,
    close_epoch,
    epoch_key,
)
from assets.governance import GOVERNANCE_SCHEMA, policy_for_epoch
from assets.names import parse_epoch_key
from ledger.commitment import commit_table
from ledger.lake import SEQ, Lake
from ledger.log import LOG, LedgerEntry
from ledger.verify import verify_entry_data

EPOCH_TABLES = {"epochs": EPOCHS_SCHEMA, "rewards": REWARDS_SCHEMA, "statements": STATEMENTS_SCHEMA}
# Row keys the epoch tables are committed with (their ledger entries use the same).
EPOCH_KEYS = {
    "epochs": ["datanet_epoch"],
    "rewards": ["role", "recipient", "source"],
    "statements": ["contributor"],
}
# Where each pinned input lives: table name (None: the Datanet's contributions table).
SOURCE_TABLES = {
    "datanets": "datanets",
    "contributions": None,
    "contributor_values": "contributor_values",
    "contributor_quality": "contributor_quality",
    "inferences": "inferences",
    "inference_attributions": "inference_attributions",
    "governance": "governance",
    "previous_epoch": "epochs",
}


def source_table(name: str, datanet: str) -> str:
    return SOURCE_TABLES[name] or f"contributions_{datanet}"


def read_pinned(store: Lake, entry: LedgerEntry) -> pl.DataFrame:
    """A table snapshot at a ledger entry, after checking it still recomputes to the
    entry's root (EpochError naming the entry otherwise)."""
    problems = verify_entry_data(store, entry, whole=True)
    if problems:
        raise EpochError(f"ledger entry {entry.seq} does not match its data: {'; '.join(problems)}")
    name = entry.table_uri.rsplit("/", 1)[-1]
    partition = (entry.partition_column, entry.partition_key) if entry.partition_column else None
    rows = store.read(name, entry.delta_version, partition)
    if entry.table_kind == LOG:  # a log's row numbers are the lake's, not the table's data
        rows = rows.sort_by(SEQ).drop_columns([SEQ])
    return pl.from_arrow(rows)  # type: ignore[arg-type,return-value]


def latest_pins(store: Lake, datanet: str, epoch: int) -> dict[str, int | None]:
    """The newest ledger entry of each input of a Datanet's epoch (None: never written)."""
    pins: dict[str, int | None] = {}
    for name in SOURCES:
        uri = store.table_uri(source_table(name, datanet))
        if name == "contributions":  # one unpartitioned table per Datanet
            found = store.ledger.latest(uri, None)
        else:
            wanted = epoch_key(datanet, epoch - 1) if name == "previous_epoch" else datanet
            found = store.ledger.latest(uri, wanted)
        pins[name] = found.seq if found is not None else None
    return pins


def pins_of(record: dict[str, object]) -> dict[str, int | None]:
    """The input entries an epoch's record pinned."""
    return {name: record[f"{name}_seq"] for name in SOURCES}  # type: ignore[misc]


def _spec_at(datanets: pl.DataFrame, spec_hash: str | None) -> DatanetSpec:
    """The spec version in force: the one named, else the latest version."""
    rows = datanets.sort("spec_version")
    if spec_hash is not None:
        rows = rows.filter(pl.col("spec_hash") == spec_hash)
    if rows.height == 0:
        raise EpochError(f"spec {spec_hash} is not in the ledgered datanets table")
    try:
        return DatanetSpec.model_validate_json(rows["spec_json"][-1])
    except (ValueError, SpecError) as exc:
        raise EpochError(f"the ledgered spec does not validate: {exc}") from exc


def gather_inputs(
    store: Lake,
    datanet: str,
    epoch: int,
    pins: dict[str, int | None],
    closed_at: datetime,
    spec_hash: str | None = None,
) -> EpochInputs:
    """Read every pinned input (root-checked) and assemble what `close_epoch` needs."""
    frames: dict[str, pl.DataFrame | None] = {}
    sources: dict[str, Source | None] = {}
    for name in SOURCES:
        seq = pins.get(name)
        if seq is None:
            frames[name], sources[name] = None, None
            continue
        entry = store.ledger.entry(seq)
        if entry is None:
            raise EpochError(f"pinned ledger entry {seq} for {name} does not exist")
        expected = store.table_uri(source_table(name, datanet))
        if entry.table_uri != expected:
            raise EpochError(f"ledger entry {seq} is {entry.table_uri}, not {expected}")
        frames[name] = read_pinned(store, entry)
        sources[name] = Source(seq, entry.data_root)
    for required in ("datanets", "contributions", "contributor_values", "contributor_quality"):
        if frames[required] is None:
            raise EpochError(f"{datanet} has no committed {required} yet; run the Datanet first")
    if epoch > 0 and frames["previous_epoch"] is None:
        raise EpochError(f"epoch {epoch - 1} of {datanet} is not closed; close epochs in order")
    values = frames["contributor_values"]
    assert values is not None and sources["contributions"] is not None
    stale = set(values["training_root"].to_list()) - {sources["contributions"].root}
    if stale:
        raise EpochError(
            "contributor_values were computed on another version of the contributions; "
            "materialize the Datanet's assets before closing the epoch"
        )
    spec = _spec_at(frames["datanets"], spec_hash)  # type: ignore[arg-type]
    events = frames["governance"]
    policy = policy_for_epoch(
        spec.rewards,
        events if events is not None else pl.DataFrame(schema=GOVERNANCE_SCHEMA),
        epoch,
    )
    previous = frames["previous_epoch"]
    carried_in = int(previous["carried_out"][0]) if previous is not None else 0
    served = frames["inferences"]
    if served is None:
        served = pl.DataFrame(schema={"inference_id": pl.String, "fee": pl.Int64})
    if previous is not None and previous["inferences_seq"][0] is not None:
        pinned = store.ledger.entry(int(previous["inferences_seq"][0]))
        if pinned is None:
            raise EpochError(
                f"the previous epoch pins a missing entry {previous['inferences_seq'][0]}"
            )
        paid_before = read_pinned(store, pinned)
        served = served.join(paid_before.select("inference_id"), on="inference_id", how="anti")
    attributions = frames["inference_attributions"]
    if attributions is None:
        attributions = pl.DataFrame(
            schema={"inference_id": pl.String, "contributor": pl.String, "share_ppb": pl.Int64}
        )
    attributions = attributions.join(served.select("inference_id"), on="inference_id", how="semi")
    return EpochInputs(
        datanet=datanet,
        epoch=epoch,
        closed_at=closed_at,
        spec_hash=spec.spec_hash(),
        datanet_owner=spec.owner,
        policy=policy,
        carried_in=carried_in,
        values=values,
        quality=frames["contributor_quality"],  # type: ignore[arg-type]
        inferences=served,
        attributions=attributions,
        sources=sources,
    )


def committed_epoch(store: Lake, datanet: str, epoch: int) -> dict[str, LedgerEntry]:
    """The latest ledger entries of an epoch's three tables (empty if not closed). An
    entry that holds no rows (a crashed close rolled back) is no closing."""
    key = epoch_key(datanet, epoch)
    found: dict[str, LedgerEntry] = {}
    for table in EPOCH_TABLES:
        entry = store.ledger.latest(store.table_uri(table), key)
        if entry is not None and entry.row_count > 0:
            found[table] = entry
    return found


def closed_epochs(store: Lake, datanet: str) -> list[int]:
    """The epochs of a Datanet that have been closed, in order."""
    latest: dict[str, LedgerEntry] = {}
    for entry in store.ledger.entries_of(store.table_uri("epochs")):
        latest[str(entry.partition_key)] = entry
    closed = [parse_epoch_key(k) for k, e in latest.items() if e.row_count > 0]
    return sorted(epoch for name, epoch in closed if name == datanet)


def open_epoch(store: Lake, datanet: str) -> int:
    """The epoch now open, i.e. the next one to close."""
    closed = closed_epochs(store, datanet)
    return closed[-1] + 1 if closed else 0


@dataclass
class Recomputed:
    datanet: str
    epoch: int
    closed: ClosedEpoch
    committed: dict[str, LedgerEntry]  # the epoch tables' ledger entries compared against
    differences: list[str]


def recompute_epoch(store: Lake, datanet: str, epoch: int) -> Recomputed:
    """Rebuild a closed epoch from its pinned inputs and list every difference from what
    was committed (an empty list: reproduced bit for bit)."""
    committed = committed_epoch(store, datanet, epoch)
    if set(committed) != set(EPOCH_TABLES):
        raise EpochError(f"epoch {epoch} of {datanet} has not been closed")
    record = read_pinned(store, committed["epochs"]).to_dicts()[0]
    inputs = gather_inputs(
        store, datanet, epoch, pins_of(record), record["closed_at"], record["spec_hash"]
    )
    closed = close_epoch(inputs)
    differences = []
    for table, entry in committed.items():
        ours: pl.DataFrame = getattr(closed, table)
        root = commit_table(ours.to_arrow(), EPOCH_KEYS[table]).root
        if root == entry.data_root:
            continue
        theirs = read_pinned(store, entry)
        differences.append(
            f"{table}: recomputed root {root[:16]}… differs from ledger entry {entry.seq} "
            f"({entry.data_root[:16]}…)"
        )
        differences += _row_differences(table, ours, theirs)
    return Recomputed(datanet, epoch, closed, committed, differences)


def _row_differences(table: str, ours: pl.DataFrame, theirs: pl.DataFrame) -> list[str]:
    key = EPOCH_KEYS[table]
    ours_rows = {tuple(r[k] for k in key): r for r in ours.to_dicts()}
    theirs_rows = {tuple(r[k] for k in key): r for r in theirs.to_dicts()}
    out = []
    for k in sorted(set(ours_rows) | set(theirs_rows), key=str):
        a, b = ours_rows.get(k), theirs_rows.get(k)
        if a is None or b is None:
            out.append(f"{table} {k}: only in {'recomputed' if b is None else 'committed'}")
            continue
        for column in a:
            if not _same(a[column], b.get(column)):
                out.append(
                    f"{table} {k} {column}: recomputed {a[column]!r}, committed {b.get(column)!r}"
                )
    return out


def _same(a: object, b: object) -> bool:
    """Equal, counting NaN as equal to NaN (as the row encoding does)."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)
