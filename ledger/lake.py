"""The lake: Delta tables under one root, each write committed to the ledger in one place.

`Lake.write` writes a table (or replaces one partition of it), reads the rows back from
Delta at the version just written, commits them (RFC 9162 root over canonical leaves) and
appends the ledger entry. No lock: a table version is committed only on top of a snapshot
whose every version is ledgered, and only if no other writer committed first (see
`_settled` and `ledger.log.commit_conditionally`), so each table's versions and ledger
entries correspond one to one and in order, on a folder or a bucket alike. A version left
without its entry by a writer that died is rolled back by the next writer of that table.

Layout under the root (a local folder or `s3://bucket/prefix`, see ledger/storage.py):
    tables/<name>/   one Delta table per asset
    ledger/          the ledger Delta table
    specs/, registry/, inbox/, models/, inference_log/, reports/   files (LakeFiles)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, WriterProperties
from deltalake.exceptions import TableNotFoundError

from ledger.compact import CompactRange
from ledger.hashing import EMPTY_ROOT
from ledger.log import (
    LOG,
    ROLLBACK,
    SNAPSHOT,
    Ledger,
    LedgerEntry,
    commit_conditionally,
    retries,
)
from ledger.storage import LakeError, LakeFiles, LakePath, parse_lake_uri

if TYPE_CHECKING:
    from ledger.commitment import Commitment

T = TypeVar("T")
TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PARTITION_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SEQ = "seq"  # the column a log table numbers its rows by, per partition
CLUSTER_ROWS = 8192  # row-group size of a clustered log append (see Lake.append)
TABLES_DIR = "tables"
WRITE_LEASE_S = 300.0  # how long a version written on another host may await its entry
_CHECKED: set[str] = set()  # lakes this process has found reachable
_CONDITIONAL: set[str] = set()  # lakes whose store was found to honour conditional puts
_IN_FLIGHT: set[tuple[str, int]] = set()  # (table URI, version) this process is ledgering


class StaleAppend(LakeError):
    """An append based on a log partition that another writer has appended to since."""


def check_table_name(name: str) -> str:
    if not isinstance(name, str) or not TABLE_NAME.match(name):
        raise LakeError(
            f"invalid table name {name!r}: use 1-63 lowercase letters, digits or '_', "
            "starting with a letter"
        )
    return name


def check_partition_value(value: str) -> str:
    if not isinstance(value, str) or not PARTITION_VALUE.match(value) or ".." in value:
        raise LakeError(
            f"invalid partition value {value!r}: use 1-63 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit, without '..'"
        )
    return value


@dataclass(frozen=True)
class Committed:
    """The outcome of one ledgered write."""

    table: str
    table_uri: str
    delta_version: int
    commitment: Commitment
    entry: LedgerEntry


class Lake:
    """Every table of one lake root, and its ledger."""

    def __init__(self, root: str | os.PathLike[str], storage_options: dict | None = None):
        self.location = parse_lake_uri(str(root) if isinstance(root, LakePath) else root)
        self.is_local = self.location.is_local
        self.root = self.location.uri
        self.files = LakeFiles(self.location)
        if not self.is_local and self.root not in _CHECKED:
            self.files.check_reachable()
            _CHECKED.add(self.root)
        self.storage_options = storage_options
        self.ledger = Ledger(self._uri("ledger"), storage_options)

    def _uri(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def local_root(self) -> Path | None:
        """The lake's folder for a local lake; None on object storage."""
        return self.location.local_path() if self.is_local else None

    def root_path(self) -> LakePath:
        """The files beside the tables (specs, inbox, registrations, models, logs) as a
        path-like object that works the same on a folder and a bucket."""
        return LakePath(self.files)

    def table_uri(self, name: str) -> str:
        """URI of a table, relative to the lake root (what the ledger records)."""
        return f"{TABLES_DIR}/{check_table_name(name)}"

    def absolute_uri(self, table_uri: str) -> str:
        return self._uri(table_uri)

    # --- reading -----------------------------------------------------------------
    def table_names(self) -> list[str]:
        """Every table folder holding a `_delta_log` (on a bucket: a file in it)."""
        found = []
        for name in self.files.names(TABLES_DIR):
            if TABLE_NAME.match(name) and self._has_delta_log(name):
                found.append(name)
        return found

    def _has_delta_log(self, name: str) -> bool:
        local = self.files.local_path(f"{TABLES_DIR}/{name}/_delta_log")
        if local is not None:
            return local.is_dir()
        return bool(self.files.names(f"{TABLES_DIR}/{name}/_delta_log"))

    def table_summaries(self) -> list[dict[str, object]]:
        """Every table (and the ledger): latest Delta version, rows, ledger entries."""
        entries = self.ledger.entries()
        per_uri: dict[str, int] = {}
        for entry in entries:
            per_uri[entry.table_uri] = per_uri.get(entry.table_uri, 0) + 1
        rows: list[dict[str, object]] = []
        for name in self.table_names():
            dt = self.delta_table(name)
            rows.append(
                {
                    "table": name,
                    "version": dt.version(),
                    "rows": dt.to_pyarrow_dataset().count_rows(),
                    "ledger_entries": per_uri.get(self.table_uri(name), 0),
                }
            )
        ledger = self.ledger.delta_table()
        if ledger is not None:
            rows.append(
                {
                    "table": "ledger",
                    "version": ledger.version(),
                    "rows": len(entries),
                    "ledger_entries": None,
                }
            )
        return rows

    def delta_table(self, name: str, version: int | None = None) -> DeltaTable:
        uri = self.absolute_uri(self.table_uri(name))
        try:
            return DeltaTable(uri, version=version, storage_options=self.storage_options)
        except TableNotFoundError as exc:
            raise LakeError(f"table {name!r} does not exist in lake {self.root}") from exc
        except Exception as exc:  # delta-rs raises plain errors for a missing version
            if version is not None:
                raise LakeError(f"table {name!r} has no version {version}: {exc}") from exc
            raise

    def read(
        self,
        name: str,
        version: int | None = None,
        partition: tuple[str, str] | None = None,
        where: pc.Expression | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rows of a table (optionally one partition, rows matching `where`, only
        `columns`) at a Delta version (default latest); the files' statistics skip files
        `where` excludes."""
        dt = self.delta_table(name, version)
        dataset = dt.to_pyarrow_dataset()
        column_order = list(columns) if columns else [f.name for f in dt.schema().to_arrow()]
        expression = where
        if partition is not None:
            column, value = partition
            matches = pc.field(column) == value
            expression = matches if expression is None else matches & expression
        return dataset.to_table(columns=column_order, filter=expression)

    # --- writing -----------------------------------------------------------------
    def write(
        self,
        name: str,
        data: object,
        *,
        asset_key: str | None = None,
        partition: tuple[str, str] | None = None,
        key: Sequence[str] | None = None,
        run_id: str = "manual",
        code_version: str = "unknown",
    ) -> Committed:
        """Write a *snapshot* table `name` (or replace its `partition`) and ledger it.

        With `partition=(column, value)`, only rows with that value are replaced and every
        row of `data` must carry it; the ledger entry commits that partition's rows, in the
        canonical order of `key` (docs/ledger-spec.md §4).
        """
        from ledger.commitment import as_arrow_table, commit_table

        table = _checked(name, as_arrow_table(data), partition)
        for attempt in retries():
            dt = self._settled(name, run_id=run_id, code_version=code_version)
            options: dict[str, object] = {"mode": "overwrite"}
            if partition is not None and dt is not None:
                options["predicate"] = f"{partition[0]} = '{partition[1]}'"
            version = self._commit_delta(name, dt, table, run_id, partition, **options)
            if version is None:
                attempt.lost()
                continue
            with _ledgering(self, name, version, run_id, code_version):
                commitment = commit_table(self.read(name, version, partition), key)
                entry = self.ledger.append(
                    asset_key=asset_key or name,
                    partition_key=partition[1] if partition is not None else None,
                    partition_column=partition[0] if partition is not None else None,
                    table_uri=self.table_uri(name),
                    table_kind=SNAPSHOT,
                    delta_version=version,
                    schema_hash=commitment.schema_hash,
                    row_key=",".join(key or ()),
                    old_row_count=0,
                    row_count=commitment.row_count,
                    data_root=commitment.root,
                    data_range="",
                    run_id=run_id,
                    code_version=code_version,
                )
            commit_point(f"ledger:{name}")
            return Committed(name, self.table_uri(name), version, commitment, entry)
        raise AssertionError("unreachable")

    def append(
        self,
        name: str,
        data: object,
        *,
        asset_key: str | None = None,
        partition: tuple[str, str] | None = None,
        cluster_by: str | None = None,
        after: int | None = None,
        run_id: str = "manual",
        code_version: str = "unknown",
    ) -> Committed:
        """Append rows to a *log* table `name` (or its `partition`) and ledger them.

        Each row gets the next `seq` of its table (partition), assigned here; the data root
        is the RFC 9162 root over all rows in `seq` order, extended from the previous
        entry's compact range with the rows this version added, which are all that is
        read back: the cost follows the new rows, not the table (docs/ledger-spec.md §4.2).
        Appending no rows to an existing log commits nothing and returns its last entry.
        With `cluster_by`, the new rows are stored sorted by that column in small row
        groups, so a lookup by it reads few of them (their `seq` keeps the log's order).
        With `after=n`, the append happens only if the partition still holds exactly n
        rows (StaleAppend otherwise): a caller that decided what to append from what it
        read re-reads and decides again (compare-and-append, see `until_current`).
        """
        from ledger.commitment import as_arrow_table

        table = _checked(name, as_arrow_table(data), partition)
        if SEQ in table.column_names:
            raise LakeError(f"log table {name!r}: `{SEQ}` is assigned by the lake, not given")
        partition_key = partition[1] if partition is not None else None
        for attempt in retries():
            dt = self._settled(name, run_id=run_id, code_version=code_version)
            head = self.ledger.latest(self.table_uri(name), partition_key)
            if head is not None and head.table_kind != LOG:
                raise LakeError(f"table {name!r} is a snapshot table; use Lake.write")
            before = head.row_count if head is not None else 0
            if after is not None and after != before:
                raise StaleAppend(
                    f"log table {name!r}: holds {before} rows, not the {after} this append "
                    "was based on"
                )
            if head is not None and table.num_rows == 0:
                return committed_from_entry(head)
            seqs = pa.array(range(before, before + table.num_rows), type=pa.int64())
            rows = table.add_column(0, pa.field(SEQ, pa.int64(), nullable=False), seqs)
            layout: dict[str, object] = {}
            if cluster_by is not None:
                rows = rows.sort_by(cluster_by)
                layout["writer_properties"] = WriterProperties(max_row_group_size=CLUSTER_ROWS)
            version = self._commit_delta(name, dt, rows, run_id, partition, mode="append", **layout)
            if version is None:
                attempt.lost()
                continue
            with _ledgering(self, name, version, run_id, code_version):
                added = self._read_new_rows(name, version, partition, before)
                if head is not None and added.schema_hash != head.schema_hash:
                    raise LakeError(
                        f"log table {name!r}: appended rows have another schema than its log"
                    )
                grown = (
                    head.data_compact_range() if head is not None else CompactRange.empty()
                ).extend(added.leaf_hashes)
                entry = self.ledger.append(
                    asset_key=asset_key or name,
                    partition_key=partition_key,
                    partition_column=partition[0] if partition is not None else None,
                    table_uri=self.table_uri(name),
                    table_kind=LOG,
                    delta_version=version,
                    schema_hash=added.schema_hash,
                    row_key=SEQ,
                    old_row_count=before,
                    row_count=grown.size,
                    data_root=grown.root().hex(),
                    data_range=grown.text(),
                    run_id=run_id,
                    code_version=code_version,
                )
            commit_point(f"ledger:{name}")
            return committed_from_entry(entry)
        raise AssertionError("unreachable")

    def _read_new_rows(
        self, name: str, version: int, partition: tuple[str, str] | None, before: int
    ) -> NewRows:
        """The rows a log version added (seq >= before), read back from their files only
        (file statistics prune the rest), checked to continue the sequence exactly."""
        from ledger.commitment import leaf_hash_matrix
        from ledger.encoding import schema_hash

        rows = self.read(name, version, partition, pc.field(SEQ) >= before).sort_by(SEQ)
        expected = pa.array(range(before, before + rows.num_rows), type=pa.int64())
        if not rows.column(SEQ).combine_chunks().equals(expected):
            raise LakeError(f"log table {name!r} v{version}: `{SEQ}` is not contiguous")
        return NewRows(leaf_hash_matrix(rows), schema_hash(rows.schema))

    def _commit_delta(
        self,
        name: str,
        dt: DeltaTable | None,
        table: pa.Table,
        run_id: str,
        partition: tuple[str, str] | None,
        **options: object,
    ) -> int | None:
        """Commit a table version right after snapshot `dt` (partitioned by the
        partition's column when it creates the table), naming its writer (run, process,
        host) and partition in the commit info, so a version left without its ledger entry
        can be traced to its writer even when it changed no file. The new version, or
        None when another writer committed first."""
        self._check_store()
        uri = self.absolute_uri(self.table_uri(name))
        if dt is None:
            options["partition_by"] = [partition[0]] if partition is not None else None
        committed = commit_conditionally(
            dt,
            uri,
            table,
            self.storage_options,
            custom_metadata=writer_metadata(run_id, partition),
            **options,
        )
        if not committed:
            return None
        version = dt.version() if dt is not None else 0
        commit_point(f"delta:{name}")
        return version

    def _check_store(self) -> None:
        """Once per process and lake: the store honours conditional writes."""
        if not self.is_local and self.root not in _CONDITIONAL:
            self.files.check_conditional_writes()
            _CONDITIONAL.add(self.root)

    def _open(self, name: str) -> DeltaTable | None:
        try:
            return DeltaTable(
                self.absolute_uri(self.table_uri(name)), storage_options=self.storage_options
            )
        except TableNotFoundError:
            return None

    # --- concurrency and recovery --------------------------------------------------
    def _settled(self, name: str, *, run_id: str, code_version: str) -> DeltaTable | None:
        """The table's latest snapshot once every version of it is ledgered (None: no
        table yet). A version awaiting its entry from a live writer is waited for; one a
        dead writer left is rolled back (docs/ledger-spec.md §5.3). Writing only on such a
        snapshot, and only as its next version, keeps a table's versions and ledger
        entries one to one and in the same order without a lock."""
        while True:
            dt = self._open(name)
            if dt is None:
                return None
            last = self.ledger.last_version_of(self.table_uri(name))
            if dt.version() <= last:
                return dt
            if writer_alive(self.table_uri(name), dt):
                time.sleep(0.05)
                continue
            self.supersede_orphans(name, run_id=run_id, code_version=code_version)

    def orphan_versions(self, name: str) -> list[int]:
        """Delta versions of a table after its last ledgered one: written by a writer
        that has not ledgered them (yet: see `writer_alive`)."""
        dt = self._open(name)
        if dt is None:
            return []
        last = self.ledger.last_version_of(self.table_uri(name))
        return list(range(last + 1, dt.version() + 1))

    def supersede_orphans(self, name: str, *, run_id: str, code_version: str) -> list[LedgerEntry]:
        """Roll back a table's orphan versions (docs/ledger-spec.md §5.3): every partition
        they touched is rewritten with its last ledgered rows, and a `rollback` entry names
        the superseded versions and the runs that wrote them. Each rewrite is a conditional
        commit like any other: of two processes rolling back at once, one does it."""
        from ledger.encoding import schema_hash

        orphans = self.orphan_versions(name)
        if not orphans:
            return []
        last = orphans[0] - 1
        writers = sorted({_writer(self.delta_table(name, v)) for v in orphans})
        touched = self._touched_partitions(name, last, orphans[-1])
        rolled: list[LedgerEntry] = []
        for column, value in touched:
            partition = (column, value) if column is not None else None
            entry = self.ledger.latest(self.table_uri(name), value)
            dt = self._open(name)
            if dt is None or dt.version() != orphans[-1] + len(rolled):
                return rolled  # another writer is rolling back (or has): it ledgers it
            restored = (
                self.read(name, entry.delta_version, partition)
                if entry is not None
                else self._empty_like(name, orphans[-1])
            )
            if partition is not None and last >= 0:
                options: dict[str, object] = {
                    "mode": "overwrite",
                    "predicate": f"{column} = '{value}'",
                }
            else:
                options = {"mode": "overwrite", "schema_mode": "overwrite"}
            version = self._commit_delta(name, dt, restored, run_id, partition, **options)
            if version is None:
                return rolled
            with _ledgering(self, name, version, run_id, code_version, roll_back=False):
                rolled.append(
                    self.ledger.append(
                        asset_key=entry.asset_key if entry is not None else name,
                        partition_key=value,
                        partition_column=column,
                        table_uri=self.table_uri(name),
                        table_kind=entry.table_kind if entry is not None else _kind(restored),
                        delta_version=version,
                        schema_hash=entry.schema_hash
                        if entry is not None
                        else schema_hash(restored.schema),
                        row_key=entry.row_key if entry is not None else "",
                        old_row_count=entry.row_count if entry is not None else 0,
                        row_count=entry.row_count if entry is not None else 0,
                        data_root=entry.data_root if entry is not None else EMPTY_ROOT.hex(),
                        data_range=entry.data_range if entry is not None else "",
                        run_id=run_id,
                        code_version=code_version,
                        entry_type=ROLLBACK,
                        superseded=",".join(str(v) for v in orphans),
                        note=f"rolled back version(s) {orphans} written by "
                        f"{', '.join(writers)} without a ledger entry",
                    )
                )
        return rolled

    def recover(self, *, run_id: str, code_version: str) -> list[LedgerEntry]:
        """Roll back the orphan versions of every table whose writer is gone (what a
        killed run left between a Delta commit and its ledger entry); the rollback
        entries, in ledger order. A version a live writer is still ledgering is left."""
        rolled: list[LedgerEntry] = []
        for name in self.table_names():
            dt = self._open(name)
            if dt is not None and not writer_alive(self.table_uri(name), dt):
                rolled += self.supersede_orphans(name, run_id=run_id, code_version=code_version)
        return rolled

    def _touched_partitions(
        self, name: str, before: int, after: int
    ) -> list[tuple[str | None, str | None]]:
        """(partition column, value) of every partition changed between two versions;
        [(None, None)] for an unpartitioned table."""
        columns = self.delta_table(name, after).metadata().partition_columns
        if not columns:
            return [(None, None)]
        column = columns[0]
        files_after = _files(self.delta_table(name, after), column)
        files_before = _files(self.delta_table(name, before), column) if before >= 0 else {}
        changed = {files_after[f] for f in files_after.keys() - files_before.keys()}
        changed |= {files_before[f] for f in files_before.keys() - files_after.keys()}
        for version in range(before + 1, after + 1):  # a write that changed no file
            info = (self.delta_table(name, version).history(1) or [{}])[0]
            named = str(info.get("openledger.partition", ""))
            if named.startswith(f"{column}="):
                changed.add(named.removeprefix(f"{column}="))
        return [(column, str(v)) for v in sorted(changed, key=str)]

    def _empty_like(self, name: str, version: int) -> pa.Table:
        return self.read(name, version).schema.empty_table()


@dataclass(frozen=True)
class NewRows:
    leaf_hashes: np.ndarray
    schema_hash: str


def _checked(name: str, table: pa.Table, partition: tuple[str, str] | None) -> pa.Table:
    """`table`, after checking the name and that every row is in `partition`."""
    check_table_name(name)
    if partition is not None:
        column, value = partition
        check_partition_value(value)
        if column not in table.column_names:
            raise LakeError(f"partition column {column!r} missing from table {name!r}")
        if table.num_rows and not pc.all(pc.equal(table.column(column), value)).as_py():
            raise LakeError(f"rows of table {name!r} outside partition {column}={value!r}")
    return table


def _kind(table: pa.Table) -> str:
    """A table's kind from its columns: a log's rows carry the lake's `seq`."""
    return LOG if SEQ in table.column_names else SNAPSHOT


def _files(dt: DeltaTable, column: str) -> dict[str, object]:
    actions = pa.table(dt.get_add_actions(flatten=True))
    return dict(
        zip(actions["path"].to_pylist(), actions[f"partition.{column}"].to_pylist(), strict=True)
    )


def writer_metadata(run_id: str, partition: tuple[str, str] | None = None) -> dict[str, str]:
    """Who is writing this Delta version (run, process, host) and which partition."""
    return {
        "openledger.run_id": run_id,
        "openledger.pid": str(os.getpid()),
        "openledger.host": socket.gethostname(),
        "openledger.partition": f"{partition[0]}={partition[1]}" if partition else "",
    }


def writer_alive(table_uri: str, dt: DeltaTable) -> bool:
    """Whether the writer of a table's latest version may still append its ledger entry:
    this process while it is ledgering that version; another process on this host while
    it runs; a writer on another host for WRITE_LEASE_S seconds
    ($OPENLEDGER_WRITE_LEASE_S) after its commit, since its liveness cannot be seen."""
    info = (dt.history(1) or [{}])[0]
    host, pid = str(info.get("openledger.host", "")), int(info.get("openledger.pid", 0) or 0)
    if not host:
        return False  # not written through the lake: nobody will ledger it
    if host == socket.gethostname():
        if pid == os.getpid():
            return (table_uri, dt.version()) in _IN_FLIGHT
        return pid > 0 and process_exists(pid)
    lease = float(os.environ.get("OPENLEDGER_WRITE_LEASE_S", WRITE_LEASE_S))
    committed_ms = int(info.get("timestamp", 0) or 0)
    return time.time() - committed_ms / 1000 < lease


def process_exists(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def _ledgering(
    lake: Lake, name: str, version: int, run_id: str, code: str, *, roll_back: bool = True
) -> Iterator[None]:
    """Marks a version this process committed as awaiting its ledger entry (another
    thread of this process waits for it); if ledgering it fails, the version is rolled
    back at once, so a live process never leaves an orphan behind."""
    key = (lake.table_uri(name), version)
    _IN_FLIGHT.add(key)
    try:
        yield
    except Exception:
        _IN_FLIGHT.discard(key)
        if roll_back:
            with contextlib.suppress(Exception):  # the error that brought us here matters
                lake.supersede_orphans(name, run_id=run_id, code_version=code)
        raise
    finally:
        _IN_FLIGHT.discard(key)


def until_current(attempt: Callable[[], T]) -> T:
    """Call `attempt` (which reads, decides, then appends with `after=`) until no other
    writer appended in between (it raises StaleAppend then)."""
    for tried in retries():
        try:
            return attempt()
        except StaleAppend:
            tried.lost()
    raise AssertionError("unreachable")


def _writer(dt: DeltaTable) -> str:
    info = (dt.history(1) or [{}])[0]
    return f"run {info.get('openledger.run_id', '?')} (pid {info.get('openledger.pid', '?')})"


def committed_from_entry(entry: LedgerEntry) -> Committed:
    """The `Committed` of an existing ledger entry (e.g. an append of nothing)."""
    from ledger.commitment import Commitment

    name = entry.table_uri.rsplit("/", 1)[-1]
    commitment = Commitment(entry.data_root, entry.row_count, entry.schema_hash)
    return Committed(name, entry.table_uri, entry.delta_version, commitment, entry)


def commit_point(label: str) -> None:
    """A point where the write path has committed something (a Delta version, a ledger
    entry). For the crash tests (tests/test_crash.py) only, three variables act on it:
    $OPENLEDGER_COMMIT_POINTS names a file each point's label is appended to;
    $OPENLEDGER_CRASH_AT=N kills the process (SIGKILL) at the N-th point;
    $OPENLEDGER_PAUSE_AT=N stops it there (holding the ledger lock), after creating the
    file $OPENLEDGER_PAUSED_FILE."""
    log = os.environ.get("OPENLEDGER_COMMIT_POINTS")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(label + "\n")
    _POINTS[0] += 1
    if os.environ.get("OPENLEDGER_CRASH_AT") == str(_POINTS[0]):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("OPENLEDGER_PAUSE_AT") == str(_POINTS[0]):
        Path(os.environ["OPENLEDGER_PAUSED_FILE"]).touch()
        signal.pause()


_POINTS = [0]
