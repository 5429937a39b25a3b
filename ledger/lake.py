"""The lake: Delta tables under one root, each write committed to the ledger in one place.

`Lake.write` writes a table (or replaces one partition of it), reads the rows back from
Delta at the version just written, commits them (RFC 9162 root over canonical leaves) and
appends the ledger entry, all under the ledger lock, so table versions and ledger entries
appear in the same order. Any failure raises; a Delta version left without its ledger
entry (a crash between the two) is reported by verification as unledgered.

Layout under the root (a local folder or `s3://bucket/prefix`):
    tables/<name>/   one Delta table per asset
    ledger/          the ledger Delta table
    ledger.lock      the append lock (local lakes)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from ledger.log import Ledger, LedgerEntry, default_lock_path

if TYPE_CHECKING:
    from ledger.commitment import Commitment

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PARTITION_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
TABLES_DIR = "tables"


class LakeError(ValueError):
    """A request the lake refuses: bad names, missing tables or versions."""


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
        text = os.fspath(root)
        self.is_local = "://" not in text or text.startswith("file://")
        if self.is_local:
            path = Path(text.removeprefix("file://")).expanduser().resolve()
            path.mkdir(parents=True, exist_ok=True)
            text = str(path)
        self.root = text.rstrip("/")
        self.storage_options = storage_options
        self.ledger = Ledger(self._uri("ledger"), default_lock_path(self.root), storage_options)

    def _uri(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def root_path(self) -> Path:
        """The local folder of the lake (for files beside its tables)."""
        if not self.is_local:
            raise LakeError(f"{self.root} is not a local folder")
        return Path(self.root)

    def table_uri(self, name: str) -> str:
        """URI of a table, relative to the lake root (what the ledger records)."""
        return f"{TABLES_DIR}/{check_table_name(name)}"

    def absolute_uri(self, table_uri: str) -> str:
        return self._uri(table_uri)

    # --- reading -----------------------------------------------------------------
    def table_names(self) -> list[str]:
        if not self.is_local:
            raise LakeError("listing tables needs a local lake; name the tables explicitly")
        base = Path(self.root) / TABLES_DIR
        if not base.exists():
            return []
        return sorted(
            p.name
            for p in base.iterdir()
            if (p / "_delta_log").is_dir() and TABLE_NAME.match(p.name)
        )

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
    ) -> pa.Table:
        """Rows of a table (optionally one partition) at a Delta version (default latest)."""
        dt = self.delta_table(name, version)
        dataset = dt.to_pyarrow_dataset()
        column_order = [f.name for f in dt.schema().to_arrow()]
        expression = None
        if partition is not None:
            column, value = partition
            expression = pc.field(column) == value
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
        """Write `data` as table `name` (or replace its `partition`) and ledger it.

        With `partition=(column, value)`, only rows with that value are replaced and every
        row of `data` must carry it; the ledger entry commits that partition's rows.
        """
        from ledger.commitment import as_arrow_table, commit_table

        check_table_name(name)
        table = as_arrow_table(data)
        if partition is not None:
            column, value = partition
            check_partition_value(value)
            if column not in table.column_names:
                raise LakeError(f"partition column {column!r} missing from table {name!r}")
            if table.num_rows and not pc.all(pc.equal(table.column(column), value)).as_py():
                raise LakeError(f"rows of table {name!r} outside partition {column}={value!r}")
        table_uri = self.table_uri(name)
        uri = self.absolute_uri(table_uri)
        with self.ledger.lock():
            exists = self._exists(uri)
            if partition is not None and exists:
                column, value = partition
                write_deltalake(
                    uri,
                    table,
                    mode="overwrite",
                    predicate=f"{column} = '{value}'",
                    storage_options=self.storage_options,
                )
            else:
                write_deltalake(
                    uri,
                    table,
                    mode="overwrite",
                    partition_by=[partition[0]] if partition is not None else None,
                    storage_options=self.storage_options,
                )
            version = DeltaTable(uri, storage_options=self.storage_options).version()
            read_back = self.read(name, version, partition)
            commitment = commit_table(read_back, key)
            entry = self.ledger.append(
                asset_key=asset_key or name,
                partition_key=partition[1] if partition is not None else None,
                partition_column=partition[0] if partition is not None else None,
                table_uri=table_uri,
                delta_version=version,
                schema_hash=commitment.schema_hash,
                row_key=",".join(key or ()),
                row_count=commitment.row_count,
                data_root=commitment.root,
                run_id=run_id,
                code_version=code_version,
            )
        return Committed(name, table_uri, version, commitment, entry)

    def _exists(self, uri: str) -> bool:
        try:
            DeltaTable(uri, storage_options=self.storage_options)
            return True
        except TableNotFoundError:
            return False
