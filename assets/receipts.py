"""Receipts: the order in which the lake received submissions, which decides credit.

The first contributor of a row keeps its credit, so the order of submissions must be one no
contributor can choose. A manifest's `submitted_at` is written by the submitter; a receipt
is written by the receiving side: when `openledger contribute` (`assets.layout.deliver`)
places a file in a Datanet's inbox, it appends one row to the `receipts` table, through
`Lake.write`, so the row is ledgered. The row names the submission (contributor, file
hash, file name, SHA-256 of the manifest) and gets

- `receipt_seq`: 0, 1, 2, ... per Datanet, assigned at append (a compare-and-append:
  of two receivers racing for one number, one gets it and the other re-reads);
- `received_at`: the lake's clock, strictly increasing with `receipt_seq` (a clock that
  stands still or steps back is moved one microsecond past the previous receipt), so
  ordering by time and ordering by sequence agree.

Ingestion orders submissions by receipt. A manifest with no matching receipt (a file
dropped in the inbox by other means, or a manifest edited after its receipt) is received
when ingestion first sees it, after every receipt already recorded: it can never take a
place ahead of a submission received before it. The table is a log (`Lake.append`): each
receipt is appended, never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from assets.ingest import Submission, inbox_submissions
from ledger.lake import Lake, LakeError, until_current

RECEIPTS_TABLE = "receipts"
RECEIPTS_SCHEMA = {
    "datanet": pl.String,
    "receipt_seq": pl.Int64,
    "contributor": pl.String,
    "batch_id": pl.String,  # SHA-256 of the data file
    "file_name": pl.String,  # the data file's name in the inbox
    "manifest_sha256": pl.String,
    "received_at": pl.Datetime("us", "UTC"),
    "received_by": pl.String,  # contribute | ingest (found in the inbox without a receipt)
}
TICK = timedelta(microseconds=1)

Clock = Callable[[], datetime]


class ReceiptError(RuntimeError):
    """The receipts of a Datanet are not a contiguous log; verification says more."""


@dataclass(frozen=True)
class Claim:
    """What a receipt records about one submission, before it has a number."""

    contributor: str
    batch_id: str
    file_name: str
    manifest_sha256: str

    def key(self) -> tuple[str, str, str]:
        """What a manifest in the inbox must match to be this receipt's submission."""
        return (self.file_name, self.manifest_sha256, self.batch_id)


def claim_of(sub: Submission) -> Claim:
    return Claim(sub.contributor, sub.batch_id, sub.file_name, sub.manifest_sha256)


def utc_now() -> datetime:
    return datetime.now(UTC)


def read_receipts(lake: Lake, datanet: str) -> pl.DataFrame:
    """A Datanet's receipts in sequence order (empty before the first one)."""
    try:
        table = lake.read(RECEIPTS_TABLE, partition=("datanet", datanet))
    except LakeError:
        return pl.DataFrame(schema=RECEIPTS_SCHEMA)
    frame = pl.DataFrame(pl.from_arrow(table))
    return frame.select(list(RECEIPTS_SCHEMA)).cast(RECEIPTS_SCHEMA).sort("receipt_seq")  # type: ignore[arg-type]


def _key(row: dict[str, object]) -> tuple[str, str, str]:
    return (str(row["file_name"]), str(row["manifest_sha256"]), str(row["batch_id"]))


def appended(
    current: pl.DataFrame,
    datanet: str,
    claims: Sequence[Claim],
    received_by: str,
    clock: Clock,
) -> pl.DataFrame:
    """`current` plus one receipt per claim, numbered after the last and timed by `clock`,
    never earlier than one microsecond after the receipt before it."""
    if current["receipt_seq"].to_list() != list(range(current.height)):
        raise ReceiptError(
            f"receipts of {datanet} are not numbered 0..n-1; run `openledger verify`"
        )
    last = current["received_at"].max() if current.height else None
    rows = []
    for offset, claim in enumerate(claims):
        when = clock().astimezone(UTC).replace(tzinfo=UTC)
        if last is not None and when <= last:  # type: ignore[operator]
            when = last + TICK  # type: ignore[operator]
        last = when
        rows.append(
            {
                "datanet": datanet,
                "receipt_seq": current.height + offset,
                "contributor": claim.contributor,
                "batch_id": claim.batch_id,
                "file_name": claim.file_name,
                "manifest_sha256": claim.manifest_sha256,
                "received_at": when,
                "received_by": received_by,
            }
        )
    return pl.concat([current, pl.DataFrame(rows, schema=RECEIPTS_SCHEMA)])


def append_receipts(
    lake: Lake,
    datanet: str,
    current: pl.DataFrame,
    claims: Sequence[Claim],
    *,
    received_by: str,
    clock: Clock = utc_now,
    run_id: str = "manual",
    code_version: str = "unknown",
) -> pl.DataFrame:
    """Number, time and ledger `claims` after `current`; the Datanet's receipts after the
    append. StaleAppend when receipts were appended since `current` was read: the caller
    reads again and decides again (`ledger.lake.until_current`)."""
    if not claims:
        return current
    table = appended(current, datanet, claims, received_by, clock)
    lake.append(
        RECEIPTS_TABLE,
        table.slice(current.height),
        asset_key=RECEIPTS_TABLE,
        partition=("datanet", datanet),
        after=current.height,
        run_id=run_id,
        code_version=code_version,
    )
    return table


def with_receipts(subs: Sequence[Submission], receipts: pl.DataFrame) -> list[Submission]:
    """The submissions that have a receipt, in receipt order, each with its receipt's
    number and time (the earliest receipt when one manifest has several)."""
    first: dict[tuple[str, str, str], dict[str, object]] = {}
    for row in receipts.iter_rows(named=True):
        first.setdefault(_key(row), row)
    found = []
    for sub in subs:
        row = first.get(claim_of(sub).key())
        if row is not None:
            seq, when = row["receipt_seq"], row["received_at"]
            found.append(replace(sub, receipt_seq=seq, received_at=when))  # type: ignore[arg-type]
    return sorted(found, key=lambda s: s.receipt_seq)  # type: ignore[arg-type,return-value]


def unreceipted(subs: Sequence[Submission], receipts: pl.DataFrame) -> list[Claim]:
    """Claims of the inbox manifests no receipt matches, once each, in the given order."""
    known = {_key(row) for row in receipts.iter_rows(named=True)}
    claims: list[Claim] = []
    for sub in subs:
        claim = claim_of(sub)
        if claim.key() not in known:
            known.add(claim.key())
            claims.append(claim)
    return claims


def receipted_submissions(
    lake: Lake,
    inbox: Path,
    datanet: str,
    *,
    recorded: Collection[tuple[str, str]] = (),
    run_id: str = "manual",
    code_version: str = "unknown",
    clock: Clock = utc_now,
) -> tuple[list[Submission], int]:
    """(every inbox submission not `recorded` yet, in receipt order; how many were received
    just now): the manifests without a receipt are received first, after every existing
    receipt, in manifest name order."""
    subs = inbox_submissions(inbox, datanet, recorded)

    def receive() -> tuple[pl.DataFrame, int]:
        current = read_receipts(lake, datanet)
        late = unreceipted(subs, current)
        receipts = append_receipts(
            lake,
            datanet,
            current,
            late,
            received_by="ingest",
            clock=clock,
            run_id=run_id,
            code_version=code_version,
        )
        return receipts, len(late)

    receipts, received = until_current(receive)
    return with_receipts(subs, receipts), received
