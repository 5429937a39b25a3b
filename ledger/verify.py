"""Recompute the ledger from the lake and report the first thing that does not match.

Checks, in order: the ledger table's own history is append-only; sequence numbers run
0..n-1 exactly once; every entry hash, previous log root, log root and log range
recomputes; every entry's data root, row count and schema hash recompute from its table's
Delta snapshot at the recorded version (time travel) — a log table replayed append by
append, reading each version's new rows only, then recomputed whole at its last entry, so
the work is that of the commits; a rollback entry restores exactly the state before the
versions it supersedes; and every Delta version of every table in the lake is covered by
a ledger entry (nothing was written without being committed), except a version a live
writer is committing right now, which is reported as in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ledger.commitment import commit_table, leaf_hash_matrix
from ledger.compact import CompactRange
from ledger.hashing import EMPTY_ROOT
from ledger.lake import SEQ, Lake, LakeError, writer_alive
from ledger.log import LOG, ROLLBACK, LedgerEntry, entries_from_table, entry_leaf
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
    rows_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)  # versions a live writer is committing

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
        created = operation == "WRITE" and mode == "ErrorIfExists" and commit.get("version") == 0
        compacted = operation == "OPTIMIZE"  # files rewritten, rows unchanged (Ledger.compact)
        if not (appended or created or compacted or operation == "CREATE TABLE"):
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
    log = CompactRange.empty()
    prev_root = EMPTY_ROOT.hex()
    for entry in entries:
        values = asdict(entry)
        recomputed = leaf_hash(entry_leaf(values))
        if recomputed.hex() != entry.entry_hash:
            report.problems.append(
                Problem(
                    entry.seq,
                    f"entry hash differs: stored {entry.entry_hash[:16]}…, "
                    f"fields hash to {recomputed.hex()[:16]}… (an entry field was edited)",
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
        log = log.extend(np.frombuffer(recomputed, np.uint8).reshape(1, 32))
        if log.root().hex() != entry.log_root or log.text() != entry.log_range:
            report.problems.append(
                Problem(
                    entry.seq,
                    f"log root differs: stored {entry.log_root[:16]}…, recomputed "
                    f"{log.root().hex()[:16]}… (or its compact range differs)",
                )
            )
        prev_root = entry.log_root


def _partition(entry: LedgerEntry) -> tuple[str, str] | None:
    if entry.partition_column and entry.partition_key is not None:
        return (entry.partition_column, entry.partition_key)
    return None


def _where(entry: LedgerEntry) -> str:
    where = f"{entry.table_uri} v{entry.delta_version}"
    partition = _partition(entry)
    return where + (f" [{partition[0]}={partition[1]}]" if partition else "")


def _table_name(entry: LedgerEntry) -> str:
    return entry.table_uri.rsplit("/", 1)[-1]


def verify_entry_data(
    lake: Lake, entry: LedgerEntry, before: CompactRange | None = None, whole: bool = False
) -> list[str]:
    """Differences between an entry and its table snapshot (empty when it matches).

    A log entry is checked from the rows its version added, on top of `before` (the
    range of the entry before it; found in the ledger when not given): O(new rows). With
    `whole`, every row of the version is recomputed instead (what a reader of the whole
    version, such as an epoch's recompute, relies on)."""
    if entry.table_kind == LOG and entry.entry_type != ROLLBACK and not whole:
        if before is None:
            previous = lake.ledger.previous(entry)
            before = previous.data_compact_range() if previous else CompactRange.empty()
        return _verify_log_append(lake, entry, before)
    try:
        table = lake.read(_table_name(entry), entry.delta_version, _partition(entry))
    except LakeError as exc:
        return [str(exc)]
    except Exception as exc:  # unreadable or corrupted Delta snapshot
        return [f"cannot read {entry.table_uri} at version {entry.delta_version}: {exc}"]
    key = [c for c in entry.row_key.split(",") if c]
    commitment = commit_table(table, key)
    where, diffs = _where(entry), []
    if commitment.row_count != entry.row_count:
        diffs.append(f"{where}: {commitment.row_count} rows, ledger says {entry.row_count}")
    if commitment.schema_hash != entry.schema_hash and (entry.row_count or entry.schema_hash):
        diffs.append(f"{where}: schema hash differs from the ledger's")
    if commitment.root != entry.data_root:
        diffs.append(
            f"{where}: data root {commitment.root[:16]}… differs from the "
            f"ledger's {entry.data_root[:16]}… (rows were edited, added or removed)"
        )
    return diffs


def _verify_log_append(lake: Lake, entry: LedgerEntry, before: CompactRange) -> list[str]:
    """A log version's new rows continue the sequence and extend `before` to its root."""
    from ledger.encoding import schema_hash

    where = _where(entry)
    if entry.old_row_count != before.size:
        return [f"{where}: appended after row {entry.old_row_count}, but the log had {before.size}"]
    try:
        rows = lake.read(
            _table_name(entry), entry.delta_version, _partition(entry), pc.field(SEQ) >= before.size
        ).sort_by(SEQ)
    except LakeError as exc:
        return [str(exc)]
    except Exception as exc:
        return [f"cannot read {entry.table_uri} at version {entry.delta_version}: {exc}"]
    seqs = rows.column(SEQ).to_pylist()
    if seqs != list(range(before.size, before.size + len(seqs))):
        return [f"{where}: `{SEQ}` of the appended rows is not {before.size}, {before.size + 1}, …"]
    grown = before.extend(leaf_hash_matrix(rows))
    diffs = []
    if grown.size != entry.row_count:
        diffs.append(f"{where}: {grown.size} rows, ledger says {entry.row_count}")
    if rows.num_rows and schema_hash(rows.schema) != entry.schema_hash:
        diffs.append(f"{where}: schema hash differs from the ledger's")
    if grown.root().hex() != entry.data_root or grown.text() != entry.data_range:
        diffs.append(
            f"{where}: rows {before.size}..{grown.size - 1} appended by this entry hash to "
            f"{grown.root().hex()[:16]}…, not the ledger's {entry.data_root[:16]}… "
            "(a committed row was edited, added or removed)"
        )
    return diffs


def _check_rollback(
    lake: Lake, entry: LedgerEntry, previous: LedgerEntry | None, last_version: int
) -> list[str]:
    """A rollback restores exactly the last ledgered state and supersedes exactly the
    versions between the table's last ledgered version and the restoring one."""
    where, diffs = _where(entry), []
    expected = list(range(last_version + 1, entry.delta_version))
    if entry.superseded_versions() != expected or not expected:
        diffs.append(
            f"{where}: a rollback must supersede versions {expected}, "
            f"it names {entry.superseded_versions()}"
        )
    state = (
        (previous.data_root, previous.row_count, previous.data_range)
        if previous is not None
        else (EMPTY_ROOT.hex(), 0, "")
    )
    if (entry.data_root, entry.row_count, entry.data_range) != state:
        diffs.append(f"{where}: a rollback must restore the state of the entry before it")
    return diffs + verify_entry_data(lake, entry)


def _check_log_whole(lake: Lake, entries: list[LedgerEntry]) -> list[tuple[int, str]]:
    """The last log entry of a table partition recomputed over all its rows; a difference
    is named by the entry that appended the row that changed."""
    last = entries[-1]
    try:
        rows = lake.read(_table_name(last), last.delta_version, _partition(last)).sort_by(SEQ)
    except Exception as exc:
        return [(last.seq, f"cannot read {last.table_uri} at {last.delta_version}: {exc}")]
    if rows.column(SEQ).to_pylist() != list(range(rows.num_rows)):
        return [(last.seq, f"{_where(last)}: `{SEQ}` does not run 0..{rows.num_rows - 1}")]
    hashes = leaf_hash_matrix(rows)
    if CompactRange.empty().extend(hashes).root().hex() == last.data_root:
        return []
    for entry in entries:
        if entry.row_count > len(hashes):
            return [(entry.seq, f"{_where(last)}: rows of this entry are missing")]
        prefix = CompactRange.empty().extend(hashes[: entry.row_count])
        if prefix.root().hex() != entry.data_root:
            return [
                (
                    entry.seq,
                    f"{_where(last)}: row(s) {entry.old_row_count}..{entry.row_count - 1}, "
                    "appended by this entry, were edited since",
                )
            ]
    return [(last.seq, f"{_where(last)}: rows were added beyond the last entry")]


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
        covered.setdefault(e.table_uri, set()).update([e.delta_version, *e.superseded_versions()])
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
        live = [v for v in missing if v == latest and writer_alive(uri, lake.delta_table(name, v))]
        for version in live:
            report.in_flight.append(f"{uri} v{version}: being committed by a live writer")
        missing = [v for v in missing if v not in live]
        if missing:
            report.problems.append(
                Problem(
                    None,
                    f"{uri}: Delta version(s) {missing} have no ledger entry "
                    "(written without a commit, or the entry was removed)",
                )
            )


def _check_data(
    lake: Lake,
    entries: list[LedgerEntry],
    report: VerifyReport,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Every entry against its table, replaying each table partition in ledger order."""
    last: dict[tuple[str, str | None], LedgerEntry] = {}
    logs: dict[tuple[str, str | None], list[LedgerEntry]] = {}
    last_version: dict[str, int] = {}
    for done, entry in enumerate(entries, start=1):
        where = (entry.table_uri, entry.partition_key)
        previous = last.get(where)
        if entry.entry_type == ROLLBACK:
            diffs = _check_rollback(lake, entry, previous, last_version.get(entry.table_uri, -1))
        elif entry.table_kind == LOG:
            before = previous.data_compact_range() if previous else CompactRange.empty()
            diffs = verify_entry_data(lake, entry, before)
            logs.setdefault(where, []).append(entry)
        else:
            diffs = verify_entry_data(lake, entry)
        for diff in diffs + foreign_partition_changes(lake, entry):
            report.problems.append(Problem(entry.seq, diff))
        last[where] = entry
        last_version[entry.table_uri] = entry.delta_version
        report.rows_checked += entry.row_count - (
            entry.old_row_count if entry.table_kind == LOG else 0
        )
        if progress:
            progress(done, len(entries))
    for history in logs.values():
        if history[-1] is last[(history[-1].table_uri, history[-1].partition_key)]:
            for seq, what in _check_log_whole(lake, history):
                report.problems.append(Problem(seq, what))


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
        _check_data(lake, entries, report, progress)
        _check_coverage(lake, entries, report)
    return report
