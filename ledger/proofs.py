"""Self-contained proof documents: a row in a committed table, one ledger in another.

An inclusion proof chains three facts an auditor checks with `ledger.proofcheck` alone:
the row's leaf is in the table's data root; that root is a field of a ledger entry (the
entry's leaf is included); the entry is in the ledger's log root at a given size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ledger.commitment import leaf_hash_matrix, sorted_table
from ledger.encoding import encode_rows, schema_signature
from ledger.hashing import root_of_leaf_hashes
from ledger.lake import Lake, LakeError
from ledger.log import ENTRY_FIELDS, LedgerEntry, entry_hash_matrix
from ledger.merkle import consistency_proof_from_hashes, inclusion_proof_from_hashes
from ledger.proofcheck import decode_row


class ProofError(LakeError):
    """The requested proof cannot be made (no such row, entry or size)."""


def find_entry(
    lake: Lake,
    table: str,
    version: int | None = None,
    partition_key: str | None = None,
    entries: list[LedgerEntry] | None = None,
) -> LedgerEntry:
    """The latest ledger entry for a table (and partition), optionally at a Delta version."""
    uri = lake.table_uri(table)
    entries = lake.ledger.entries() if entries is None else entries
    matches = [
        e
        for e in entries
        if e.table_uri == uri
        and (version is None or e.delta_version == version)
        and (partition_key is None or e.partition_key == partition_key)
    ]
    if not matches:
        what = f"table {table!r}" + (f" version {version}" if version is not None else "")
        what += f" partition {partition_key!r}" if partition_key else ""
        raise ProofError(f"no ledger entry for {what}")
    return matches[-1]


def _typed(value: object, arrow_type: pa.DataType) -> pa.Scalar:
    try:
        return pa.scalar(value).cast(arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ProofError(f"key value {value!r} is not a valid {arrow_type}: {exc}") from exc


def _row_mask(table: pa.Table, key_values: Mapping[str, object]) -> pa.Array:
    mask = None
    for column, value in key_values.items():
        if column not in table.column_names:
            raise ProofError(f"no column {column!r}; columns are {table.column_names}")
        col = table.column(column)
        cond = pc.fill_null(pc.equal(col, _typed(value, col.type)), False)
        mask = cond if mask is None else pc.and_(mask, cond)
    if mask is None:
        raise ProofError("give at least one column=value to select the row")
    return mask


@dataclass(frozen=True)
class _Snapshot:
    """A committed table version, in tree order, with its leaf hashes and the log."""

    entries: list[LedgerEntry]
    entry: LedgerEntry
    ordered: pa.Table
    hashes: np.ndarray
    log_hashes: np.ndarray


def _snapshot(lake: Lake, entry: LedgerEntry, entries: list[LedgerEntry]) -> _Snapshot:
    name = entry.table_uri.rsplit("/", 1)[-1]
    partition = (entry.partition_column, entry.partition_key) if entry.partition_column else None
    rows = lake.read(name, entry.delta_version, partition)  # type: ignore[arg-type]
    ordered = sorted_table(rows, [c for c in entry.row_key.split(",") if c])
    hashes = leaf_hash_matrix(ordered)
    if root_of_leaf_hashes(hashes).hex() != entry.data_root:
        raise ProofError(
            f"{entry.table_uri} v{entry.delta_version} no longer matches ledger entry "
            f"{entry.seq}; run `openledger verify`"
        )
    return _Snapshot(entries, entry, ordered, hashes, entry_hash_matrix(entries))


def _row_proof(snap: _Snapshot, index: int) -> dict[str, Any]:
    """The inclusion proof document of row `index` (tree order) of a snapshot."""
    entries, entry, ordered = snap.entries, snap.entry, snap.ordered
    leaf = encode_rows(ordered.slice(index, 1))[0]
    return {
        "format": "openledger-inclusion-proof/v1",
        "hash": "sha256",
        "tree": "RFC 9162 Merkle Tree Hash",
        "row": dict(zip(ordered.column_names, decode_row(leaf), strict=True)),
        "data": {
            "schema": [list(c) for c in schema_signature(ordered.schema)],
            "leaf": leaf.hex(),
            "index": index,
            "size": ordered.num_rows,
            "path": [h.hex() for h in inclusion_proof_from_hashes(snap.hashes, index)],
            "root": entry.data_root,
        },
        "entry": _entry_section(entries, entry, snap.log_hashes),
    }


def _entry_section(
    entries: list[LedgerEntry], entry: LedgerEntry, log_hashes: np.ndarray
) -> dict[str, Any]:
    """An entry's leaf, its inclusion in the ledger, and the head that binds the size."""
    return {
        "fields": list(ENTRY_FIELDS),
        "leaf": entry.leaf().hex(),
        "index": entry.seq,
        "log_size": len(entries),
        "path": [h.hex() for h in inclusion_proof_from_hashes(log_hashes, entry.seq)],
        "log_root": entries[-1].log_root,
        "head": {
            "leaf": entries[-1].leaf().hex(),
            "path": [h.hex() for h in inclusion_proof_from_hashes(log_hashes, len(entries) - 1)],
        },
    }


def _matching(snap: _Snapshot, key_values: Mapping[str, object]) -> list[int]:
    return pc.indices_nonzero(_row_mask(snap.ordered, key_values)).to_pylist()


def inclusion_proof_document(
    lake: Lake,
    table: str,
    key_values: Mapping[str, object],
    *,
    version: int | None = None,
    partition_key: str | None = None,
) -> dict[str, Any]:
    """Proof that the row selected by `key_values` is in a committed table version."""
    entries = lake.ledger.entries()
    entry = find_entry(lake, table, version, partition_key, entries)
    snap = _snapshot(lake, entry, entries)
    indices = _matching(snap, key_values)
    if len(indices) != 1:
        raise ProofError(
            f"{len(indices)} rows match {dict(key_values)} in {entry.table_uri} "
            f"v{entry.delta_version}; a proof needs exactly one (add key columns)"
        )
    return _row_proof(snap, indices[0])


def contributor_proof_document(
    lake: Lake, contributor: str, model_id: str, limit: int | None = None
) -> dict[str, Any]:
    """Proof that a contributor's rows are in the training set committed for a model:
    the model's row in `models` (naming its training entry) and one inclusion proof per
    row of the contributor in that training-set version (the first `limit`, if given)."""
    entries = lake.ledger.entries()
    models_entries = [e for e in entries if e.table_uri == lake.table_uri("models")]
    for entry in reversed(models_entries):
        snap = _snapshot(lake, entry, entries)
        found = _matching(snap, {"model_id": model_id})
        if found:
            break
    else:
        raise ProofError(f"no model {model_id!r} in the ledgered models table")
    model_proof = _row_proof(snap, found[0])
    seq = model_proof["row"]["training_ledger_seq"]
    if not isinstance(seq, int) or not 0 <= seq < len(entries):
        raise ProofError(f"model {model_id} names no valid training ledger entry")
    training = _snapshot(lake, entries[seq], entries)
    rows = _matching(training, {"contributor": contributor})
    if not rows:
        raise ProofError(f"{contributor} has no rows in the training set of model {model_id}")
    chosen = rows[: limit if limit is not None else len(rows)]
    return {
        "format": "openledger-contributor-proof/v1",
        "contributor": contributor,
        "model_id": model_id,
        "rows_in_training_set": len(rows),
        "model": model_proof,
        "rows": [_row_proof(training, i) for i in chosen],
    }


def consistency_proof_document(
    lake: Lake, old_size: int, new_size: int | None = None
) -> dict[str, Any]:
    """Proof that the ledger at `old_size` entries is a prefix of it at `new_size`."""
    entries = lake.ledger.entries()
    new_size = len(entries) if new_size is None else new_size
    if not 1 <= old_size <= new_size <= len(entries):
        raise ProofError(
            f"sizes must satisfy 1 <= old ({old_size}) <= new ({new_size}) <= "
            f"ledger size ({len(entries)})"
        )
    hashes = entry_hash_matrix(entries[:new_size])
    return {
        "format": "openledger-consistency-proof/v1",
        "hash": "sha256",
        "old_size": old_size,
        "new_size": new_size,
        "old_root": entries[old_size - 1].log_root,
        "new_root": entries[new_size - 1].log_root,
        "proof": [h.hex() for h in consistency_proof_from_hashes(hashes, old_size)],
    }


def table_consistency_proof_document(
    lake: Lake,
    table: str,
    old_version: int,
    new_version: int | None = None,
    partition_key: str | None = None,
) -> dict[str, Any]:
    """Proof that a log table's rows at Delta version `old_version` are the first rows of
    it at `new_version` (default: its latest entry): a row proved at the old version is in
    every later version. Both entries are proved in the same ledger state."""
    entries = lake.ledger.entries()
    mine = [
        e
        for e in entries
        if e.table_uri == lake.table_uri(table)
        and e.partition_key == partition_key
        and e.entry_type == "commit"
    ]
    if not mine:
        where = f" partition {partition_key!r}" if partition_key else ""
        raise ProofError(f"no ledger entry for table {table!r}{where}")
    if mine[-1].table_kind != "log":
        raise ProofError(f"table {table!r} is a snapshot table: only logs only grow")
    old = next((e for e in mine if e.delta_version == old_version), None)
    new = (
        mine[-1]
        if new_version is None
        else next((e for e in mine if e.delta_version == new_version), None)
    )
    if old is None or new is None or old.seq > new.seq:
        raise ProofError(
            f"table {table!r}: give committed versions old <= new "
            f"(committed: {[e.delta_version for e in mine]})"
        )
    snap = _snapshot(lake, new, entries)
    return {
        "format": "openledger-table-consistency-proof/v1",
        "hash": "sha256",
        "old": _entry_section(entries, old, snap.log_hashes),
        "new": _entry_section(entries, new, snap.log_hashes),
        "proof": [h.hex() for h in consistency_proof_from_hashes(snap.hashes, old.row_count)],
    }
