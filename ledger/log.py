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

Appends are serialized by an exclusive lock file in the lake (one writer at a time across
processes on this machine); after writing, the Delta version is checked to be exactly one
past the version read, so an append that raced a writer outside the lock fails loudly.
Nothing in this module updates, deletes or vacuums the table.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

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

    def __init__(self, uri: str, lock_path: Path | None, storage_options: dict | None = None):
        self.uri = uri
        self.lock_path = lock_path
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
    ) -> pa.Table:
        """Rows matching `condition`, from the files whose statistics `may_hold` them."""
        dt = self.delta_table()
        if dt is None:
            return LEDGER_SCHEMA.empty_table() if columns is None else pa.table({})
        actions = pa.table(dt.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return LEDGER_SCHEMA.empty_table()
        keep = may_hold(actions)
        paths = [
            f"{self.uri}/{p}" for p, k in zip(actions["path"].to_pylist(), keep, strict=True) if k
        ]
        if not paths:
            return LEDGER_SCHEMA.empty_table() if columns is None else pa.table({})
        import pyarrow.dataset as ds

        found = ds.dataset(paths, format="parquet").to_table(columns=columns, filter=condition)
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

    def head(self) -> LedgerEntry | None:
        """The last entry (highest seq), read from the one file that holds it."""
        dt = self.delta_table()
        if dt is None:
            return None
        actions = pa.table(dt.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return None
        top = pc.max(actions["max.seq"]).as_py()
        rows = entries_from_table(self._rows(self._may_hold_seq(top, top), pc.field("seq") == top))
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
    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive, blocking, cross-process lock over every ledger append."""
        return exclusive_lock(self.lock_path)

    def lock_is_held(self) -> bool:
        """Whether some process holds the lock now (a write is being committed)."""
        if self.lock_path is None or not self.lock_path.exists():
            return False
        with open(self.lock_path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False

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
        """Append one entry, in O(log n) from the previous entry. Call holding `lock()`."""
        dt = self.delta_table()
        before = dt.version() if dt is not None else -1
        head = self.head()
        seq = head.seq + 1 if head is not None else 0
        log_range = head.log_compact_range() if head is not None else CompactRange.empty()
        when = (committed_at or datetime.now(UTC)).astimezone(UTC)
        values: dict[str, object] = {
            "seq": seq,
            "ledger_version": LEDGER_VERSION,
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
            "prev_log_root": head.log_root if head is not None else EMPTY_ROOT.hex(),
            "run_id": run_id,
            "code_version": code_version,
            "committed_at": when,
            "note": note,
        }
        new_hash = leaf_hash(entry_leaf(values))
        log_range = log_range.extend(np.frombuffer(new_hash, dtype=np.uint8).reshape(1, 32))
        values["entry_hash"] = new_hash.hex()
        values["log_root"] = log_range.root().hex()
        values["log_range"] = log_range.text()
        row = pa.Table.from_pylist([values], schema=LEDGER_SCHEMA)
        # write through the snapshot just read (no reload); it is refreshed after
        write_deltalake(
            dt if dt is not None else self.uri,
            row,
            mode="append",
            storage_options=self.storage_options,
        )
        written = self.delta_table()
        assert written is not None
        if written.version() != before + 1:
            raise LedgerError(
                f"ledger moved from version {before} to {written.version()} during one "
                "append: another writer appended concurrently outside the lock; "
                "run `openledger verify`"
            )
        if (seq + 1) % COMPACT_EVERY == 0:
            self.compact(written)
        return LedgerEntry(**values)  # type: ignore[arg-type]

    def compact(self, dt: DeltaTable | None = None) -> None:
        """Rewrite the ledger's files into few, clustered by table and partition (Delta
        OPTIMIZE with Z-order: the rows and their order by `seq` are unchanged, the old
        files stay for time travel). Call holding `lock()`."""
        dt = dt or self.delta_table()
        if dt is not None:
            dt.optimize.z_order(["table_uri", "partition_key"])


@contextlib.contextmanager
def exclusive_lock(path: Path | None) -> Iterator[None]:
    """A blocking, cross-process lock on a file (None: object storage, where the caller
    guarantees a single writer). Not re-entrant: never nest two on the same file."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def default_lock_path(lake_root: str, name: str = "ledger.lock") -> Path | None:
    """A lock file for local lakes; None for object storage URIs."""
    if "://" in lake_root and not lake_root.startswith("file://"):
        return None
    return Path(lake_root.removeprefix("file://")) / name
