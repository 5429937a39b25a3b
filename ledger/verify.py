"""Recompute the ledger from the lake and report the first thing that does not match.

Checks, in order: the ledger table's own history is append-only; sequence numbers run
0..n-1 exactly once; every entry hash, previous log root and log root recomputes; every
entry's data root, row count and schema hash recompute from its table's Delta snapshot at
the recorded version (time travel); and every Delta version of every table in the lake is
covered by a ledger entry (nothing was written without being committed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from ledger.commitment import commit_table
from ledger.hashing import EMPTY_ROOT, TreeBuilder
from ledger.lake import Lake, LakeError
from ledger.log import LedgerEntry, entries_from_table, entry_leaf
from ledger.proofcheck import leaf_hash


@dataclass(frozen=True)
class Problem:
    """One mismatch; `seq` names the ledger entry when there is one."""

    seq: int | None
    what: str

    def __str__(self) -> str:
        return (f"entry {self.seq}: " if self.seq is not None else "") + self.what


@dataclass
class VerifyReport:
    entries: int = 0
    tables_checked: int = 0
    rows_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        with_seq = [p for p in self.problems if p.seq is not None]
        if with_seq:
            return min(with_seq, key=lambda p: p.seq)  # type: ignore[arg-type,return-value]
        return self.problems[0] if self.problems else None


def _check_history(lake: Lake, report: VerifyReport) -> None:
    dt = lake.ledger.delta_table()
    if dt is None:
        return
    for commit in dt.history():
        operation = commit.get("operation", "")
        mode = (commit.get("operationParameters") or {}).get("mode", "")
        appended = operation == "WRITE" and mode == "Append"
        if not (appended or operation == "CREATE TABLE"):
            report.problems.append(
                Problem(
                    None,
                    f"ledger table version {commit.get('version')} is a {operation} "
                    f"({mode or 'no mode'}), not an append: the ledger was rewritten",
                )
            )


def _check_chain(entries: list[LedgerEntry], report: VerifyReport) -> None:
    seqs = [e.seq for e in entries]
    seen: set[int] = set()
    for position, seq in enumerate(seqs):
        if seq in seen:
            report.problems.append(Problem(seq, "sequence number appears more than once"))
        elif seq != position:
            report.problems.append(
                Problem(seq, f"sequence gap: expected entry {position}, found {seq}")
            )
        seen.add(seq)
    builder = TreeBuilder()
    prev_root = EMPTY_ROOT.hex()
    for entry in entries:
        values = asdict(entry)
        recomputed = leaf_hash(entry_leaf(values)).hex()
        if recomputed != entry.entry_hash:
            report.problems.append(
                Problem(
                    entry.seq,
                    f"entry hash differs: stored {entry.entry_hash[:16]}…, "
                    f"fields hash to {recomputed[:16]}… (an entry field was edited)",
                )
            )
        if entry.prev_log_root != prev_root:
            report.problems.append(
                Problem(
                    entry.seq,
                    f"previous log root {entry.prev_log_root[:16]}… does not link "
                    f"to the log root before it {prev_root[:16]}…",
                )
            )
        builder.add_leaf_hashes(np.frombuffer(bytes.fromhex(recomputed), np.uint8).reshape(1, 32))
        log_root = builder.root().hex()
        if log_root != entry.log_root:
            report.problems.append(
                Problem(
                    entry.seq,
                    f"log root differs: stored {entry.log_root[:16]}…, recomputed {log_root[:16]}…",
                )
            )
        prev_root = entry.log_root


def verify_entry_data(lake: Lake, entry: LedgerEntry) -> list[str]:
    """Differences between an entry and its table snapshot (empty when it matches)."""
    name = entry.table_uri.rsplit("/", 1)[-1]
    partition = (
        (entry.partition_column, entry.partition_key)
        if entry.partition_column and entry.partition_key is not None
        else None
    )
    try:
        table = lake.read(name, entry.delta_version, partition)
    except LakeError as exc:
        return [str(exc)]
    except Exception as exc:  # unreadable or corrupted Delta snapshot
        return [f"cannot read {entry.table_uri} at version {entry.delta_version}: {exc}"]
    key = [c for c in entry.row_key.split(",") if c]
    commitment = commit_table(table, key)
    where = f"{entry.table_uri} v{entry.delta_version}"
    if partition:
        where += f" [{partition[0]}={partition[1]}]"
    diffs = []
    if commitment.row_count != entry.row_count:
        diffs.append(f"{where}: {commitment.row_count} rows, ledger says {entry.row_count}")
    if commitment.schema_hash != entry.schema_hash:
        diffs.append(f"{where}: schema hash differs from the ledger's")
    if commitment.root != entry.data_root:
        diffs.append(
            f"{where}: data root {commitment.root[:16]}… differs from the "
            f"ledger's {entry.data_root[:16]}… (rows were edited, added or removed)"
        )
    return diffs


def _partition_files(lake: Lake, name: str, version: int, column: str) -> dict[str, object]:
    """Data files of a table version and the partition value each belongs to."""
    if version < 0:
        return {}
    actions = pa.table(lake.delta_table(name, version).get_add_actions(flatten=True))
    return dict(
        zip(actions["path"].to_pylist(), actions[f"partition.{column}"].to_pylist(), strict=True)
    )


def foreign_partition_changes(lake: Lake, entry: LedgerEntry) -> list[str]:
    """Partitions that the entry's Delta version changed besides the one it commits.

    A partition entry recomputes only its own partition; this catches files slipped into
    other partitions within the same version.
    """
    if not entry.partition_column:
        return []
    name = entry.table_uri.rsplit("/", 1)[-1]
    try:
        before = _partition_files(lake, name, entry.delta_version - 1, entry.partition_column)
        after = _partition_files(lake, name, entry.delta_version, entry.partition_column)
    except Exception as exc:
        return [f"cannot list the files of {entry.table_uri} v{entry.delta_version}: {exc}"]
    touched = {after[p] for p in after.keys() - before.keys()}
    touched |= {before[p] for p in before.keys() - after.keys()}
    foreign = sorted(str(v) for v in touched if v != entry.partition_key)
    if not foreign:
        return []
    return [
        f"{entry.table_uri} v{entry.delta_version} also changed partition(s) {foreign}, "
        f"which this entry ({entry.partition_column}={entry.partition_key}) does not cover"
    ]


def _check_coverage(lake: Lake, entries: list[LedgerEntry], report: VerifyReport) -> None:
    covered: dict[str, set[int]] = {}
    for e in entries:
        covered.setdefault(e.table_uri, set()).add(e.delta_version)
    for name in lake.table_names():
        uri = lake.table_uri(name)
        try:
            latest = lake.delta_table(name).version()
        except LakeError:  # an empty _delta_log: a finding, not a crash
            report.problems.append(
                Problem(None, f"{uri}: its _delta_log holds no commit (not a Delta table)")
            )
            continue
        except Exception as exc:  # a corrupted log
            report.problems.append(Problem(None, f"{uri}: unreadable Delta log: {exc}"))
            continue
        missing = sorted(set(range(latest + 1)) - covered.get(uri, set()))
        if missing:
            report.problems.append(
                Problem(
                    None,
                    f"{uri}: Delta version(s) {missing} have no ledger entry "
                    "(written without a commit, or the entry was removed)",
                )
            )


def verify_lake(
    lake: Lake,
    *,
    check_data: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Verify the whole ledger of a lake; `progress(done, total)` is called per entry."""
    report = VerifyReport()
    _check_history(lake, report)
    try:
        table = lake.ledger.read_table()
    except Exception as exc:
        report.problems.append(Problem(None, f"cannot read the ledger table: {exc}"))
        return report
    entries = entries_from_table(table)
    report.entries = len(entries)
    _check_chain(entries, report)
    if check_data:
        for done, entry in enumerate(entries, start=1):
            for diff in verify_entry_data(lake, entry) + foreign_partition_changes(lake, entry):
                report.problems.append(Problem(entry.seq, diff))
            report.tables_checked += 1
            report.rows_checked += entry.row_count
            if progress:
                progress(done, len(entries))
        if lake.is_local:
            _check_coverage(lake, entries, report)
    return report
