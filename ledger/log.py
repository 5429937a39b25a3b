"""The append-only ledger table: one hash-linked entry per committed materialization.

Each entry's leaf is the canonical row encoding of its fields (all columns but
`entry_hash` and `log_root`); `entry_hash` = SHA-256(0x00 ‖ leaf), and `log_root` is the
RFC 9162 root over all entry hashes up to and including this entry, so the ledger is itself
a Merkle log with inclusion and consistency proofs. `prev_log_root` links each entry to
the log before it.

Appends are serialized by an exclusive lock file in the lake (one writer at a time across
processes on this machine); after writing, the Delta version is checked to be exactly one
past the version read, so an append that raced a writer outside the lock fails loudly.
Nothing in this module updates, deletes or vacuums the table.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from ledger.hashing import EMPTY_ROOT, root_of_leaf_hashes, sha256_binary
from ledger.proofcheck import ENCODING_VERSION, ENTRY_FIELDS

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("asset_key", pa.string(), nullable=False),
        pa.field("partition_key", pa.string()),
        pa.field("partition_column", pa.string()),
        pa.field("table_uri", pa.string(), nullable=False),
        pa.field("delta_version", pa.int64(), nullable=False),
        pa.field("encoding_version", pa.int64(), nullable=False),
        pa.field("schema_hash", pa.string(), nullable=False),
        pa.field("row_key", pa.string(), nullable=False),
        pa.field("row_count", pa.int64(), nullable=False),
        pa.field("data_root", pa.string(), nullable=False),
        pa.field("prev_log_root", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("code_version", pa.string(), nullable=False),
        pa.field("committed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("entry_hash", pa.string(), nullable=False),
        pa.field("log_root", pa.string(), nullable=False),
    ]
)
# The fields an entry's leaf commits to: everything but the two derived hashes.
if tuple(LEDGER_SCHEMA.names[:-2]) != ENTRY_FIELDS:
    raise ImportError("ledger.log.LEDGER_SCHEMA and ledger.proofcheck.ENTRY_FIELDS disagree")
ENTRY_SCHEMA = pa.schema([LEDGER_SCHEMA.field(n) for n in ENTRY_FIELDS])


class LedgerError(RuntimeError):
    """The ledger cannot be appended to or read as a valid log."""


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    asset_key: str
    partition_key: str | None
    partition_column: str | None
    table_uri: str
    delta_version: int
    encoding_version: int
    schema_hash: str
    row_key: str
    row_count: int
    data_root: str
    prev_log_root: str
    run_id: str
    code_version: str
    committed_at: datetime
    entry_hash: str
    log_root: str

    def leaf(self) -> bytes:
        """The entry's raw leaf data: the canonical encoding of its committed fields."""
        return entry_leaf(asdict(self))


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


class Ledger:
    """The ledger table of one lake."""

    def __init__(self, uri: str, lock_path: Path | None, storage_options: dict | None = None):
        self.uri = uri
        self.lock_path = lock_path
        self.storage_options = storage_options

    # --- reading ---------------------------------------------------------------
    def delta_table(self, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def read_table(self, version: int | None = None) -> pa.Table:
        dt = self.delta_table(version)
        if dt is None:
            return LEDGER_SCHEMA.empty_table()
        return dt.to_pyarrow_table().cast(LEDGER_SCHEMA)

    def entries(self) -> list[LedgerEntry]:
        return entries_from_table(self.read_table())

    # --- appending -------------------------------------------------------------
    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive, blocking, cross-process lock over every ledger append."""
        return exclusive_lock(self.lock_path)

    def append(
        self,
        *,
        asset_key: str,
        partition_key: str | None,
        partition_column: str | None,
        table_uri: str,
        delta_version: int,
        schema_hash: str,
        row_key: str,
        row_count: int,
        data_root: str,
        run_id: str,
        code_version: str,
        encoding_version: int = ENCODING_VERSION,
        committed_at: datetime | None = None,
    ) -> LedgerEntry:
        """Append one entry. Call while holding `lock()`."""
        dt = self.delta_table()
        before = dt.version() if dt is not None else -1
        existing = self.entries()
        if [e.seq for e in existing] != list(range(len(existing))):
            raise LedgerError("ledger sequence is not contiguous; run `openledger verify`")
        prev_root = existing[-1].log_root if existing else EMPTY_ROOT.hex()
        when = (committed_at or datetime.now(UTC)).astimezone(UTC)
        values: dict[str, object] = {
            "seq": len(existing),
            "asset_key": asset_key,
            "partition_key": partition_key,
            "partition_column": partition_column,
            "table_uri": table_uri,
            "delta_version": delta_version,
            "encoding_version": encoding_version,
            "schema_hash": schema_hash,
            "row_key": row_key,
            "row_count": row_count,
            "data_root": data_root,
            "prev_log_root": prev_root,
            "run_id": run_id,
            "code_version": code_version,
            "committed_at": when,
        }
        leaf = entry_leaf(values)
        new_hash = sha256_binary(pa.array([b"\x00" + leaf], pa.large_binary()))
        hashes = np.concatenate([entry_hash_matrix(existing), new_hash])
        values["entry_hash"] = new_hash[0].tobytes().hex()
        values["log_root"] = root_of_leaf_hashes(hashes).hex()
        row = pa.Table.from_pylist([values], schema=LEDGER_SCHEMA)
        write_deltalake(self.uri, row, mode="append", storage_options=self.storage_options)
        after = self.delta_table().version()
        if after != before + 1:
            raise LedgerError(
                f"ledger moved from version {before} to {after} during one append: another "
                "writer appended concurrently outside the lock; run `openledger verify`"
            )
        return LedgerEntry(**values)  # type: ignore[arg-type]


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
