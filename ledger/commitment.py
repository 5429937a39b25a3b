"""Commit a whole table to one RFC 9162 root, independent of chunking, engine or layout.

Rows are put in a canonical order first: by the declared key columns (ties broken by the
leaf bytes, so duplicate keys cannot make the order depend on the file layout), or, with no
key, by the leaf bytes alone. Leaves are then encoded, hashed and folded batch by batch.
"""

from __future__ import annotations

import binascii
import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ledger.encoding import (
    ENCODING_VERSION,
    decode_dictionary,
    leaf_messages,
    schema_hash,
    schema_signature,
    var_parts,
)
from ledger.hashing import TreeBuilder, hash_threads, perfect_subtrees, sha256_binary

BATCH_ROWS = 1 << 17


@dataclass(frozen=True)
class Commitment:
    """What the ledger records about a table's content."""

    root: str  # hex
    row_count: int
    schema_hash: str
    encoding_version: int = ENCODING_VERSION


def as_arrow_table(data: object) -> pa.Table:
    """Accept a pyarrow Table/RecordBatch/RecordBatchReader or a polars DataFrame."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    to_arrow = getattr(data, "to_arrow", None)
    if callable(to_arrow):
        return to_arrow()
    raise TypeError(f"cannot commit a {type(data).__name__}; pass an Arrow table")


def _key_table(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """The key columns, dictionaries decoded so that Arrow can sort them."""
    columns = []
    for name in key:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            chunks = column.chunks or [pa.array([], type=column.type)]
            column = pa.chunked_array([decode_dictionary(c) for c in chunks])
        columns.append(column)
    return pa.table(columns, names=[f"k{i}" for i in range(len(key))])


def _keys_unique(keys: pa.Table, order: pa.Array) -> bool:
    """True when no two rows share a key, comparing canonical encodings (NaN equals NaN,
    -0.0 equals 0.0, null equals null), on the key-sorted rows."""
    if keys.num_rows < 2:
        return True
    if any(pa.types.is_floating(t) or pa.types.is_decimal(t) for t in keys.schema.types):
        # float keys: NaN != NaN and -0.0 == 0.0 in Arrow; compare canonical bytes instead
        encoded = leaf_messages(keys.take(order))
        same = pc.equal(encoded.slice(1), encoded.slice(0, len(encoded) - 1))
        return not pc.any(same).as_py()
    same = None  # exact types: Arrow equality is the encoding's equality
    for column in keys.columns:
        ordered = column.take(order)
        after, before = ordered.slice(1), ordered.slice(0, len(ordered) - 1)
        equal = pc.or_kleene(
            pc.equal(after, before), pc.and_(pc.is_null(after), pc.is_null(before))
        )
        equal = pc.fill_null(equal, False)
        same = equal if same is None else pc.and_(same, equal)
    return not pc.any(same).as_py()


def _integer_key(keys: pa.Table) -> np.ndarray | None:
    """The key as a numpy integer array when it is one integer, timestamp or date column
    without nulls: numpy then orders it exactly as Arrow does. None for any other key."""
    if keys.num_columns != 1 or keys.column(0).null_count:
        return None
    column = keys.column(0)
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        physical = pa.int64() if kind.bit_width == 64 else pa.int32()
    elif pa.types.is_integer(kind):
        physical = kind
    else:
        return None
    # one chunk is used as is: combine_chunks would copy it
    array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return array.view(physical).to_numpy()


def _sort_unique_integers(values: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """(ascending order, whether the values are unique); the order is None when the values
    are already strictly ascending (often so for keys read back from Delta).

    Key offset and row index are packed into one uint64 when they fit, so that numpy's
    vectorized value sort (several times faster than argsort) yields order and sorted keys
    at once. The order among equal values is arbitrary: it is only used when unique.
    """
    n = values.shape[0]
    if n < 2 or bool(np.all(values[1:] > values[:-1])):
        return None, True
    wide = values.astype(np.uint64 if values.dtype.kind == "u" else np.int64, copy=False)
    low = wide.min()
    key_bits = (int(wide.max()) - int(low)).bit_length()
    index_bits = (n - 1).bit_length()
    if key_bits + index_bits > 64:
        order = np.argsort(values)
        ordered = values[order]
        return order, not bool(np.any(ordered[1:] == ordered[:-1]))
    packed = (wide - low).view(np.uint64)  # a new array, 0 .. 2^key_bits - 1
    packed <<= np.uint64(index_bits)
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    ordered = packed >> np.uint64(index_bits)
    unique = not bool(np.any(ordered[1:] == ordered[:-1]))
    del ordered
    packed &= np.uint64((1 << index_bits) - 1)
    return packed.view(np.int64), unique


MAX_PREFIX_TIES = 0.01  # share of rows in 8-byte prefix ties beyond which Arrow sorts


def _string_key(keys: pa.Table) -> pa.Array | None:
    """The key as one string/binary array with offsets, when it is one such column without
    nulls; None for any other key."""
    if keys.num_columns != 1 or keys.column(0).null_count:
        return None
    column = keys.column(0)
    kind = column.type
    if not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        return None
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _sort_unique_strings(array: pa.Array) -> tuple[np.ndarray | None, bool] | None:
    """(ascending byte order, whether unique) of a string key, or None to let Arrow sort.

    Rows are ordered by their first 8 bytes as a big-endian integer (zero-padded), which
    agrees with byte-wise order wherever the prefixes differ; rows whose prefixes tie are
    re-sorted by their full bytes. Hex hashes and other high-entropy keys tie rarely; keys
    with long shared prefixes (names, paths) tie often and go to Arrow instead.
    """
    n = len(array)
    offsets, data = var_parts(array)
    starts, lengths = offsets[:-1], np.diff(offsets)
    prefix = np.zeros(n, dtype=np.uint64)
    for j in range(8):
        has = lengths > j
        byte = np.zeros(n, dtype=np.uint64)
        byte[has] = data[starts[has] + j]
        prefix = (prefix << np.uint64(8)) | byte
    order = np.argsort(prefix, kind="stable")
    ordered = prefix[order]
    tied = np.flatnonzero(ordered[1:] == ordered[:-1])
    if tied.size == 0:
        return (None if bool(np.all(order[1:] > order[:-1])) else order), True
    if tied.size > MAX_PREFIX_TIES * n:
        return None
    unique = True
    # runs of equal prefixes: [first, last] positions in `ordered`
    run_starts = tied[np.r_[True, tied[1:] != tied[:-1] + 1]]
    run_ends = tied[np.r_[tied[1:] != tied[:-1] + 1, True]] + 1
    for first, last in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        rows = order[first : last + 1]
        full = [data[starts[r] : starts[r] + lengths[r]].tobytes() for r in rows.tolist()]
        ranked = sorted(range(len(rows)), key=full.__getitem__)  # stable, as Arrow's
        order[first : last + 1] = rows[ranked]
        ranked_bytes = [full[k] for k in ranked]
        unique = unique and all(a != b for a, b in itertools.pairwise(ranked_bytes))
    return order, unique


def canonical_order(table: pa.Table, key: Sequence[str] | None) -> pa.Array:
    """Row indices in canonical leaf order: by key, ties (or no key) by the leaf bytes."""
    order = _order_and_leaves(table, key)[0]
    return pa.array(np.arange(table.num_rows) if order is None else order)


def _order_and_leaves(
    table: pa.Table, key: Sequence[str] | None
) -> tuple[pa.Array | np.ndarray | None, pa.Array | None]:
    """(canonical order, or None when the rows are in it already; every row's leaf message
    if they had to be encoded to sort)."""
    schema_signature(table.schema)  # unsupported types fail here, with the column named
    for name in key or ():
        if name not in table.column_names:
            raise KeyError(f"key column {name!r} not in table columns {table.column_names}")
    keys = _key_table(table, key or ())
    values = _integer_key(keys) if key else None
    strings = _string_key(keys) if key and values is None else None
    sorted_strings = _sort_unique_strings(strings) if strings is not None else None
    if values is not None:
        order, unique = _sort_unique_integers(values)
        if unique:
            return order, None
    elif sorted_strings is not None:
        order, unique = sorted_strings
        if unique:
            return order, None
    elif key:
        sort_keys = [(name, "ascending") for name in keys.column_names]
        order = pc.sort_indices(keys, sort_keys=sort_keys)
        if _keys_unique(keys, order):
            return order, None
    columns = dict(zip(keys.column_names, keys.columns, strict=True))
    columns["leaf"] = leaf_messages(table)
    sort_keys = [(name, "ascending") for name in columns]
    return pc.sort_indices(pa.table(columns), sort_keys=sort_keys), columns["leaf"]


def sorted_table(table: pa.Table, key: Sequence[str] | None) -> pa.Table:
    """The table in canonical leaf order (what leaf index i of a proof refers to)."""
    return table.take(canonical_order(table, key))


def _block_subtrees(messages: pa.Array) -> list[tuple[int, bytes]]:
    return perfect_subtrees(sha256_binary(messages, threads=1), threads=1)


def commit_table(data: object, key: Sequence[str] | None = None) -> Commitment:
    """Root, row count and schema hash of a table's rows in canonical order.

    Blocks of BATCH_ROWS rows (perfect subtrees) are encoded and hashed in a thread pool
    (the kernels release the GIL) and folded in order: the same root on any number of
    cores, and no sorted copy of the whole table (rows out of order are hashed in place and
    only their hashes are put in order).
    """
    table = as_arrow_table(data)
    order, messages = _order_and_leaves(table, key)
    starts = range(0, table.num_rows, BATCH_ROWS)
    # rows out of order: hash them where they are, then put the 32-byte hashes in order
    # (cheaper than gathering every column of the table into canonical order)
    hashes = leaf_hash_matrix(table) if order is not None and messages is None else None
    with ThreadPoolExecutor(hash_threads()) as pool:

        def block(start: int) -> list[tuple[int, bytes]]:
            if order is None:  # already in canonical order: no gather
                return _block_subtrees(leaf_messages(table.slice(start, BATCH_ROWS)))
            rows = order[start : start + BATCH_ROWS]
            if messages is not None:  # encoded already to sort by leaf bytes
                return _block_subtrees(messages.take(rows))
            assert hashes is not None
            return perfect_subtrees(hashes[np.asarray(rows)], threads=1)

        builder = TreeBuilder(BATCH_ROWS)
        for parts in pool.map(block, starts):
            for count, root in parts:
                builder.add_subtree(count, root)
    return Commitment(
        root=builder.root().hex(), row_count=table.num_rows, schema_hash=schema_hash(table.schema)
    )


def leaf_hash_matrix(table: pa.Table) -> np.ndarray:
    """Leaf hash of every row in the given order, as an (n, 32) matrix; blocks are encoded
    and hashed in a thread pool."""

    def block(start: int) -> np.ndarray:
        return sha256_binary(leaf_messages(table.slice(start, BATCH_ROWS)), threads=1)

    with ThreadPoolExecutor(hash_threads()) as pool:
        parts = list(pool.map(block, range(0, table.num_rows, BATCH_ROWS)))
    return np.concatenate(parts) if parts else np.zeros((0, 32), dtype=np.uint8)


def row_leaf_hashes(data: object) -> pa.StringArray:
    """Hex RFC 9162 leaf hash of every row (in the given order): a row's identity."""
    matrix = leaf_hash_matrix(as_arrow_table(data))
    hexed = binascii.hexlify(matrix.tobytes())  # 64 ASCII bytes per row, back to back
    offsets = np.arange(0, 64 * (len(matrix) + 1), 64, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(
        len(matrix), pa.py_buffer(offsets), pa.py_buffer(hexed)
    ).cast(pa.string())
