"""The append-only ledger table: one hash-linked entry per committed materialization.

Each entry's leaf is the canonical row encoding of its committed fields (`ENTRY_FIELDS`,
everything but the three derived ones); `entry_hash` = SHA-256(0x00 ‖ leaf), `log_root` is
the RFC 9162 root over all entry hashes up to and including this entry, and `log_range`
is that tree's compact range, so the next entry's log root needs this entry alone: an
append costs O(log n), whatever the size of the ledger (docs/ledger-spec.md §5).

"The last entry" is read from the one data file the `seq` statistics point to, and "the
latest entry of table T, partition P" from the files whose statistics can hold T: the
ledger is compacted now and then with its entries clustered by table (`compact`), so
neither reads the whole ledger.

Appends need no lock, on a folder or a bucket alike: the Delta commit of an entry is
conditional on the ledger version its head was read at (delta-rs commits a version by a
create-only put of its log file, and is told not to rebase), so of two writers racing for
one place exactly one wins; the other reads the new head and builds its entry again. The
chain never forks, and no entry is lost or written twice (docs/ledger-spec.md §5.4).
Nothing in this module updates, deletes or vacuums the table.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from ledger.compact import CompactRange
from ledger.hashing import EMPTY_ROOT
from ledger.proofcheck import ENCODING_VERSION, ENTRY_FIELDS, LEDGER_VERSION, leaf_hash

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("ledger_version", pa.int64(), nullable=False),
        pa.field("entry_type", pa.string(), nullable=False),
        pa.field("asset_key", pa.string(), nullable=False),
        pa.field("partition_key", pa.string()),
        pa.field("partition_column", pa.string()),
        pa.field("table_uri", pa.string(), nullable=False),
        pa.field("table_kind", pa.string(), nullable=False),
        pa.field("delta_version", pa.int64(), nullable=False),
        pa.field("encoding_version", pa.int64(), nullable=False),
        pa.field("schema_hash", pa.string(), nullable=False),
        pa.field("row_key", pa.string(), nullable=False),
        pa.field("old_row_count", pa.int64(), nullable=False),
        pa.field("row_count", pa.int64(), nullable=False),
        pa.field("data_root", pa.string(), nullable=False),
        pa.field("data_range", pa.string(), nullable=False),
        pa.field("superseded", pa.string(), nullable=False),
        pa.field("prev_log_root", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("code_version", pa.string(), nullable=False),
        pa.field("committed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("note", pa.string(), nullable=False),
        pa.field("entry_hash", pa.string(), nullable=False),
        pa.field("log_root", pa.string(), nullable=False),
        pa.field("log_range", pa.string(), nullable=False),
    ]
)
DERIVED_FIELDS = ("entry_hash", "log_root", "log_range")
# The fields an entry's leaf commits to: everything but the derived ones.
if tuple(LEDGER_SCHEMA.names[: -len(DERIVED_FIELDS)]) != ENTRY_FIELDS:
    raise ImportError("ledger.log.LEDGER_SCHEMA and ledger.proofcheck.ENTRY_FIELDS disagree")
ENTRY_SCHEMA = pa.schema([LEDGER_SCHEMA.field(n) for n in ENTRY_FIELDS])
LOG, SNAPSHOT = "log", "snapshot"


class ANY:
    """`entries_of(table, ANY)`: the entries of every partition of a table."""


# Every this many entries the ledger's small files are rewritten into few, clustered by
# table (a Z-order OPTIMIZE: same rows, no data change), so reading it stays cheap.
COMPACT_EVERY = 1000
COMMIT, ROLLBACK = "commit", "rollback"


class LedgerError(RuntimeError):
    """The ledger cannot be appended to or read as a valid log."""


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    ledger_version: int
    entry_type: str
    asset_key: str
    partition_key: str | None
    partition_column: str | None
    table_uri: str
    table_kind: str
    delta_version: int
    encoding_version: int
    schema_hash: str
    row_key: str
    old_row_count: int
    row_count: int
    data_root: str
    data_range: str
    superseded: str
    prev_log_root: str
    run_id: str
    code_version: str
    committed_at: datetime
    note: str
    entry_hash: str
    log_root: str
    log_range: str

    def leaf(self) -> bytes:
        """The entry's raw leaf data: the canonical encoding of its committed fields."""
        return entry_leaf(asdict(self))

    def data_compact_range(self) -> CompactRange:
        """The committed table's compact range after this entry (log tables)."""
        return CompactRange.parse(self.row_count, self.data_range)

    def log_compact_range(self) -> CompactRange:
        """The ledger's compact range after this entry."""
        return CompactRange.parse(self.seq + 1, self.log_range)

    def superseded_versions(self) -> list[int]:
        return [int(v) for v in self.superseded.split(",") if v]


def entry_leaf(values: dict[str, object]) -> bytes:
    """Canonical encoding of an entry's committed fields (see ENTRY_FIELDS)."""
    from ledger.encoding import leaf_messages  # compiled kernels: only when writing/checking

    table = pa.Table.from_pylist([{k: values[k] for k in ENTRY_FIELDS}], schema=ENTRY_SCHEMA)
    return leaf_messages(table)[0].as_py()[1:]


def entries_from_table(table: pa.Table) -> list[LedgerEntry]:
    """Ledger rows as entries, in the order of their `seq`."""
    rows = table.sort_by("seq").to_pylist()
    names = {f.name for f in fields(LedgerEntry)}
    return [LedgerEntry(**{k: v for k, v in row.items() if k in names}) for row in rows]


def entry_hash_matrix(entries: list[LedgerEntry]) -> np.ndarray:
    """Entry hashes as stored, as an (n, 32) matrix (the log's leaf hashes)."""
    if not entries:
        return np.zeros((0, 32), dtype=np.uint8)
    raw = b"".join(bytes.fromhex(e.entry_hash) for e in entries)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(entries), 32)


def _refuse_old_format(dt: DeltaTable) -> None:
    names = {f.name for f in dt.schema().to_arrow()}
    if "ledger_version" not in names:
        raise LedgerError(
            "this lake's ledger was written by ledger format 1 (before log tables and "
            "compact ranges); this code reads format 2 only. Keep using the old release to "
            "read it, or rebuild the lake (e.g. `openledger demo --fresh` for a demo lake)"
        )


class Ledger:
    """The ledger table of one lake.

    Reads go through the Delta log's file list and each file's statistics (min/max `seq`,
    `table_uri`): only the files that can hold what is asked for are opened, so finding
    the last entry, or the latest entry of a table, does not read the ledger. The
    snapshot is loaded once and then brought up to date incrementally."""

    def __init__(self, uri: str, storage_options: dict | None = None):
        self.uri = uri
        self.storage_options = storage_options
        self._dt: DeltaTable | None = None

    # --- reading ---------------------------------------------------------------
    def delta_table(self, version: int | None = None) -> DeltaTable | None:
        """The ledger's Delta table at `version`, or its current state (kept and updated
        incrementally); None before the first entry."""
        if version is None and self._dt is not None:
            self._dt.update_incremental()
            return self._dt
        try:
            dt = DeltaTable(self.uri, version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        _refuse_old_format(dt)
        if version is None:
            self._dt = dt
        return dt

    def read_table(self, version: int | None = None) -> pa.Table:
        """Every entry, from a snapshot loaded afresh (what verification reads)."""
        self._dt = None
        dt = self.delta_table(version)
        if dt is None:
            return LEDGER_SCHEMA.empty_table()
        table = dt.to_pyarrow_dataset().to_table()
        return table.select(LEDGER_SCHEMA.names).cast(LEDGER_SCHEMA)

    def entries(self) -> list[LedgerEntry]:
        return entries_from_table(self.read_table())

    def _rows(
        self,
        may_hold: Callable[[pa.Table], list[bool]],
        condition: pc.Expression,
        columns: list[str] | None = None,
        dt: DeltaTable | None = None,
    ) -> pa.Table:
        """Rows matching `condition`, from the files whose statistics `may_hold` them (in
        snapshot `dt`, else the current one)."""
        dt = dt or self.delta_table()
        if dt is None:
            return LEDGER_SCHEMA.empty_table() if columns is None else pa.table({})
        actions = pa.table(dt.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return LEDGER_SCHEMA.empty_table()
        keep = may_hold(actions)
        paths = [p for p, k in zip(actions["path"].to_pylist(), keep, strict=True) if k]
        if not paths:
            return LEDGER_SCHEMA.empty_table() if columns is None else pa.table({})
        import pyarrow.dataset as ds

        if "://" in self.uri:  # object storage: through delta-rs's own store and settings
            files = ds.dataset(
                paths, filesystem=dt.to_pyarrow_dataset().filesystem, format="parquet"
            )
        else:
            files = ds.dataset([f"{self.uri}/{p}" for p in paths], format="parquet")
        found = files.to_table(columns=columns, filter=condition)
        if columns is not None:
            return found
        return found.select(LEDGER_SCHEMA.names).cast(LEDGER_SCHEMA)

    @staticmethod
    def _may_hold_seq(low: int, high: int) -> Callable[[pa.Table], list[bool]]:
        def test(actions: pa.Table) -> list[bool]:
            lows, highs = actions["min.seq"].to_pylist(), actions["max.seq"].to_pylist()
            return [
                lo is None or hi is None or (lo <= high and hi >= low)
                for lo, hi in zip(lows, highs, strict=True)
            ]

        return test

    @staticmethod
    def _may_hold_table(table_uri: str) -> Callable[[pa.Table], list[bool]]:
        def test(actions: pa.Table) -> list[bool]:
            names = actions.column_names
            if "min.table_uri" not in names or "max.table_uri" not in names:
                return [True] * actions.num_rows
            lows, highs = actions["min.table_uri"].to_pylist(), actions["max.table_uri"].to_pylist()
            return [
                lo is None or hi is None or lo <= table_uri <= hi
                for lo, hi in zip(lows, highs, strict=True)
            ]

        return test

    def head(self, dt: DeltaTable | None = None) -> LedgerEntry | None:
        """The last entry (highest seq) of snapshot `dt` (else the current one), read from
        the one file that holds it."""
        dt = dt or self.delta_table()
        if dt is None:
            return None
        actions = pa.table(dt.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return None
        top = pc.max(actions["max.seq"]).as_py()
        rows = entries_from_table(
            self._rows(self._may_hold_seq(top, top), pc.field("seq") == top, dt=dt)
        )
        if len(rows) > 1:
            raise LedgerError(
                f"ledger sequence is not contiguous: {len(rows)} entries claim seq "
                f"{rows[0].seq} (a fork); run `openledger verify`"
            )
        return rows[-1] if rows else None

    def entry(self, seq: int) -> LedgerEntry | None:
        """The entry with sequence number `seq` (None: no such entry)."""
        found = entries_from_table(self._rows(self._may_hold_seq(seq, seq), pc.field("seq") == seq))
        if len(found) > 1:
            raise LedgerError(f"{len(found)} entries claim seq {seq}; run `openledger verify`")
        return found[0] if found else None

    def entries_of(
        self, table_uri: str, partition_key: str | type[ANY] | None = ANY
    ) -> list[LedgerEntry]:
        """The entries of one table (of one partition, if given; None: unpartitioned)."""
        condition = pc.field("table_uri") == table_uri
        if partition_key is None:
            condition &= pc.field("partition_key").is_null()
        elif partition_key is not ANY:
            condition &= pc.field("partition_key") == partition_key
        return entries_from_table(self._rows(self._may_hold_table(table_uri), condition))

    def latest(self, table_uri: str, partition_key: str | None) -> LedgerEntry | None:
        """The latest entry committing `table_uri` (partition `partition_key`), or None."""
        found = self.entries_of(table_uri, partition_key)
        return found[-1] if found else None

    def previous(self, entry: LedgerEntry) -> LedgerEntry | None:
        """The entry before `entry` of the same table and partition, or None."""
        earlier = [
            e for e in self.entries_of(entry.table_uri, entry.partition_key) if e.seq < entry.seq
        ]
        return earlier[-1] if earlier else None

    def last_version_of(self, table_uri: str) -> int:
        """The highest Delta version of a table that an entry commits (or supersedes); -1
        if none: versions after it were never ledgered."""
        versions: list[int] = []
        for entry in self.entries_of(table_uri):
            versions += [entry.delta_version, *entry.superseded_versions()]
        return max(versions, default=-1)

    # --- appending -------------------------------------------------------------
    def append(
        self,
        *,
        asset_key: str,
        partition_key: str | None,
        partition_column: str | None,
        table_uri: str,
        table_kind: str,
        delta_version: int,
        schema_hash: str,
        row_key: str,
        old_row_count: int,
        row_count: int,
        data_root: str,
        data_range: str,
        run_id: str,
        code_version: str,
        entry_type: str = COMMIT,
        superseded: str = "",
        note: str = "",
        encoding_version: int = ENCODING_VERSION,
        committed_at: datetime | None = None,
    ) -> LedgerEntry:
        """Append one entry after the current head, in O(log n); lock-free (module
        docstring): a commit that loses the race to another writer is rebuilt on the new
        head and tried again."""
        fields_in = {
            "entry_type": entry_type,
            "asset_key": asset_key,
            "partition_key": partition_key,
            "partition_column": partition_column,
            "table_uri": table_uri,
            "table_kind": table_kind,
            "delta_version": delta_version,
            "encoding_version": encoding_version,
            "schema_hash": schema_hash,
            "row_key": row_key,
            "old_row_count": old_row_count,
            "row_count": row_count,
            "data_root": data_root,
            "data_range": data_range,
            "superseded": superseded,
            "run_id": run_id,
            "code_version": code_version,
            "note": note,
        }
        for attempt in retries():
            dt = self.delta_table()
            values = self._next_entry(dt, fields_in, committed_at)
            row = pa.Table.from_pylist([values], schema=LEDGER_SCHEMA)
            if not commit_conditionally(dt, self.uri, row, self.storage_options, mode="append"):
                attempt.lost()
                continue
            if (values["seq"] + 1) % COMPACT_EVERY == 0:  # type: ignore[operator]
                self.compact()
            return LedgerEntry(**values)  # type: ignore[arg-type]
        raise AssertionError("unreachable")  # retries() raises when it gives up

    def _next_entry(
        self, dt: DeltaTable | None, fields_in: dict[str, object], committed_at: datetime | None
    ) -> dict[str, object]:
        """The entry after the head of snapshot `dt` (the one the commit is conditional
        on, never a newer one): its seq, previous root and log range."""
        head = self.head(dt) if dt is not None else None
        seq = head.seq + 1 if head is not None else 0
        log_range = head.log_compact_range() if head is not None else CompactRange.empty()
        when = (committed_at or datetime.now(UTC)).astimezone(UTC)
        values: dict[str, object] = {
            "seq": seq,
            "ledger_version": LEDGER_VERSION,
            **fields_in,
            "prev_log_root": head.log_root if head is not None else EMPTY_ROOT.hex(),
            "committed_at": when,
        }
        new_hash = leaf_hash(entry_leaf(values))
        log_range = log_range.extend(np.frombuffer(new_hash, dtype=np.uint8).reshape(1, 32))
        values["entry_hash"] = new_hash.hex()
        values["log_root"] = log_range.root().hex()
        values["log_range"] = log_range.text()
        return values

    def compact(self, dt: DeltaTable | None = None) -> None:
        """Rewrite the ledger's files into few, clustered by table and partition (Delta
        OPTIMIZE with Z-order: the rows and their order by `seq` are unchanged, the old
        files stay for time travel). Best effort: an OPTIMIZE that conflicts with a
        concurrent append is given up (the next one catches up)."""
        dt = dt or self.delta_table()
        if dt is not None:
            with contextlib.suppress(CommitFailedError, DeltaError):
                dt.optimize.z_order(
                    ["table_uri", "partition_key"],
                    commit_properties=CommitProperties(max_commit_retries=0),
                )


WRITE_ATTEMPTS = 200  # conditional commits tried before a writer gives up


class Attempt:
    """One try of an optimistic commit (see `retries`)."""

    def __init__(self, number: int):
        self.number = number

    def lost(self) -> None:
        """Another writer committed first: back off a little (random, growing), so that
        racing writers spread out, before the caller re-reads and tries again."""
        time.sleep(random.uniform(0, min(0.5, 0.005 * 2 ** min(self.number, 7))))


def retries(attempts: int = WRITE_ATTEMPTS) -> Iterator[Attempt]:
    """Attempts of an optimistic commit; LedgerError after `attempts` lost races."""
    for number in range(attempts):
        yield Attempt(number)
    raise LedgerError(
        f"gave up after {attempts} commits lost to concurrent writers; try again later"
    )


def commit_conditionally(
    dt: DeltaTable | None,
    uri: str,
    table: pa.Table,
    storage_options: dict | None,
    *,
    custom_metadata: dict[str, str] | None = None,
    **options: object,
) -> bool:
    """Commit `table` as the version right after snapshot `dt` (or as the table's first
    version when `dt` is None), and only so: False when another writer committed that
    version first (the caller re-reads and tries again), True when this one did. Safe
    across processes and hosts because delta-rs writes a version's log file with a
    create-only put, and is told not to rebase onto a newer version."""
    properties = CommitProperties(custom_metadata=custom_metadata, max_commit_retries=0)
    try:
        if dt is None:
            options = {**options, "mode": "error"}  # create, never overwrite a new table
            write_deltalake(
                uri,
                table,
                storage_options=storage_options,
                commit_properties=properties,
                **options,  # type: ignore[arg-type]
            )
        else:
            write_deltalake(dt, table, commit_properties=properties, **options)  # type: ignore[arg-type]
    except CommitFailedError:
        return False
    except DeltaError as exc:
        if dt is None and "already exists" in str(exc):
            return False
        raise
    return True
