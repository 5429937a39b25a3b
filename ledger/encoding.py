"""Canonical binary encoding of table rows (encoding version 1; docs/ledger-spec.md).

A row is encoded as

    version (0x01) ‖ column count (u16 BE) ‖ for each column in schema order:
        type tag (u8) ‖ null flag (u8: 0x01 value, 0x00 null) ‖ payload

Payloads are fixed-width big-endian numbers or u32-BE-length-prefixed bytes; a null keeps
its type's fixed-width payload zero-filled (or length 0). Logical types are normalized
before encoding so the same values give the same bytes whatever Arrow physical type the
reader produced (int32 vs int64, string vs large_string vs string_view, ...); the schema
hash pins the declared types separately.

The encoder is vectorized over Arrow arrays; `ledger.proofcheck.decode_row` is its
standard-library inverse.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from ledger.proofcheck import ENCODING_VERSION, schema_hash_of

TAG_BOOL = 0x01
TAG_INT = 0x02
TAG_UINT = 0x03
TAG_FLOAT = 0x04
TAG_STRING = 0x05
TAG_BINARY = 0x06
TAG_TIMESTAMP = 0x07
TAG_DATE = 0x08
TAG_DECIMAL = 0x09

CANONICAL_NAN = np.uint64(0x7FF8000000000000)


class UnsupportedTypeError(TypeError):
    """A column's Arrow type has no canonical encoding in this encoding version."""


def decode_dictionary(array: pa.Array) -> pa.Array:
    """Values of a dictionary array. Decoded through a non-view value type, since Arrow
    has no take kernel for string_view/binary_view dictionaries."""
    values = array.dictionary
    if pa.types.is_string_view(values.type):
        values = values.cast(pa.large_string())
    elif pa.types.is_binary_view(values.type):
        values = values.cast(pa.large_binary())
    return values.take(array.indices)


def _tag_and_name(field: pa.Field) -> tuple[int, str]:
    t = field.type
    if pa.types.is_dictionary(t):
        return _tag_and_name(pa.field(field.name, t.value_type))
    if pa.types.is_boolean(t):
        return TAG_BOOL, "bool"
    if pa.types.is_signed_integer(t):
        return TAG_INT, "int"
    if pa.types.is_unsigned_integer(t):
        return TAG_UINT, "uint"
    if pa.types.is_floating(t):
        return TAG_FLOAT, "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return TAG_STRING, "string"
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    ):
        return TAG_BINARY, "binary"
    if pa.types.is_timestamp(t):
        return TAG_TIMESTAMP, "timestamp_us_utc"
    if pa.types.is_date(t):
        return TAG_DATE, "date"
    if pa.types.is_decimal(t) and t.bit_width <= 128 and 0 <= t.scale <= t.precision <= 38:
        return TAG_DECIMAL, f"decimal({t.precision},{t.scale})"
    raise UnsupportedTypeError(
        f"column {field.name!r} has type {t}, which encoding version {ENCODING_VERSION} "
        "cannot commit (supported: bool, integers, floats, string, binary, timestamp, "
        "date, decimal up to 128 bits with 0 <= scale <= precision)"
    )


def schema_signature(schema: pa.Schema) -> list[tuple[str, str]]:
    """(column name, canonical type name) pairs: what the schema hash commits to."""
    return [(f.name, _tag_and_name(f)[1]) for f in schema]


def schema_hash(schema: pa.Schema) -> str:
    """Hex SHA-256 of the canonical schema signature and the encoding version."""
    return schema_hash_of(schema_signature(schema))


def _fixed(values: np.ndarray, width: int) -> np.ndarray:
    """Big-endian bytes of a numeric numpy array as an (n, width) uint8 matrix."""
    return np.ascontiguousarray(values).view(np.uint8).reshape(-1, width)


def _header(tag: int, valid: np.ndarray) -> np.ndarray:
    head = np.empty((valid.shape[0], 2), dtype=np.uint8)
    head[:, 0] = tag
    head[:, 1] = valid
    return head


def _encode_column(field: pa.Field, array: pa.Array) -> list[np.ndarray | pa.Array]:
    """Segments (fixed matrices or binary arrays) encoding one column, header included."""
    tag, _ = _tag_and_name(field)
    if pa.types.is_dictionary(array.type):
        array = decode_dictionary(array)
    n = len(array)
    valid = (
        np.ones(n, dtype=np.uint8)
        if array.null_count == 0
        else pc.is_valid(array).to_numpy(zero_copy_only=False).astype(np.uint8)
    )
    head = _header(tag, valid)
    if tag in (TAG_STRING, TAG_BINARY):
        # one physical layout first (view and fixed-size types have no fill kernel)
        data = array.cast(pa.large_string() if tag == TAG_STRING else pa.large_binary())
        data = pc.fill_null(data, "" if tag == TAG_STRING else b"")
        lengths = pc.binary_length(data).to_numpy(zero_copy_only=False).astype(">u4")
        data = data.view(pa.large_binary()) if tag == TAG_STRING else data
        return [np.hstack([head, _fixed(lengths, 4)]), data]
    if tag == TAG_BOOL:
        payload = pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(np.uint8)
        return [np.hstack([head, payload.reshape(-1, 1)])]
    if tag == TAG_INT:
        values = pc.fill_null(array.cast(pa.int64()), 0).to_numpy().astype(">i8")
        return [np.hstack([head, _fixed(values, 8)])]
    if tag == TAG_UINT:
        values = pc.fill_null(array.cast(pa.uint64()), 0).to_numpy().astype(">u8")
        return [np.hstack([head, _fixed(values, 8)])]
    if tag == TAG_FLOAT:
        values = pc.fill_null(array.cast(pa.float64()), 0.0).to_numpy().astype(np.float64)
        with np.errstate(invalid="ignore"):  # signalling NaNs are canonicalized below
            values = values + 0.0  # -0.0 + 0.0 == +0.0
        bits = values.view(np.uint64).copy()
        bits[np.isnan(values)] = CANONICAL_NAN
        return [np.hstack([head, _fixed(bits.astype(">u8"), 8)])]
    if tag == TAG_TIMESTAMP:
        try:
            micros = array.cast(pa.timestamp("us", tz=array.type.tz), safe=True)
        except pa.ArrowInvalid as exc:
            raise ValueError(
                f"column {field.name!r}: timestamps below microsecond precision cannot be "
                f"committed (Delta keeps microseconds): {exc}"
            ) from exc
        values = pc.fill_null(micros.cast(pa.int64()), 0).to_numpy().astype(">i8")
        return [np.hstack([head, _fixed(values, 8)])]
    if tag == TAG_DATE:
        days = array.cast(pa.date32()).cast(pa.int32())
        values = pc.fill_null(days, 0).to_numpy().astype(">i4")
        return [np.hstack([head, _fixed(values, 4)])]
    # decimal: precision, scale, 16-byte big-endian two's complement of the unscaled value
    dec = array.cast(pa.decimal128(array.type.precision, array.type.scale))
    raw = np.frombuffer(dec.buffers()[1], dtype=np.uint8)[dec.offset * 16 : (dec.offset + n) * 16]
    unscaled = raw.reshape(n, 16)[:, ::-1] * valid[:, None]
    meta = np.empty((n, 2), dtype=np.uint8)
    meta[:, 0] = dec.type.precision
    meta[:, 1] = dec.type.scale
    return [np.hstack([head, meta, unscaled])]


@njit(cache=True, nogil=True)
def _place_fixed(out: np.ndarray, cursor: np.ndarray, matrix: np.ndarray) -> None:
    width = matrix.shape[1]
    for i in range(matrix.shape[0]):
        start = cursor[i]
        for j in range(width):
            out[start + j] = matrix[i, j]
        cursor[i] = start + width


@njit(cache=True, nogil=True)
def _place_var(out: np.ndarray, cursor: np.ndarray, offsets: np.ndarray, data: np.ndarray) -> None:
    for i in range(offsets.shape[0] - 1):
        start, lo, hi = cursor[i], offsets[i], offsets[i + 1]
        for j in range(hi - lo):
            out[start + j] = data[lo + j]
        cursor[i] = start + hi - lo


def _var_parts(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data) of a large_binary array, honouring its slice offset."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)
    offsets = offsets[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    return offsets, np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(
        0, np.uint8
    )


def leaf_messages(table: pa.Table | pa.RecordBatch) -> pa.LargeBinaryArray:
    """`0x00 ‖ encoded row` for every row: the exact messages whose SHA-256 are leaf hashes.

    Each column yields fixed-width matrices and/or variable-length parts; the rows are
    then assembled in one pass by two small compiled copy loops.
    """
    n = table.num_rows
    ncols = table.num_columns
    if ncols > 0xFFFF:
        raise UnsupportedTypeError("more than 65535 columns cannot be encoded")
    prefix = np.empty((n, 4), dtype=np.uint8)
    prefix[:, 0] = 0x00  # RFC 9162 leaf domain separator
    prefix[:, 1] = ENCODING_VERSION
    prefix[:, 2:] = np.frombuffer(ncols.to_bytes(2, "big"), dtype=np.uint8)
    segments: list[np.ndarray | tuple[np.ndarray, np.ndarray]] = []
    lengths = np.zeros(n, dtype=np.int64)
    fixed_run: list[np.ndarray] = [prefix]  # consecutive fixed-width parts, stacked once
    for field, column in zip(table.schema, table.columns, strict=True):
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        for seg in _encode_column(field, array):
            if isinstance(seg, np.ndarray):
                fixed_run.append(seg)
                continue
            segments.append(np.hstack(fixed_run))
            fixed_run = []
            offsets, data = _var_parts(seg)
            segments.append((offsets, data))
            lengths += np.diff(offsets)
    if fixed_run:
        segments.append(np.hstack(fixed_run))
    for seg in segments:
        if isinstance(seg, np.ndarray):
            lengths += seg.shape[1]
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=np.uint8)
    cursor = out_offsets[:-1].copy()
    for seg in segments:
        if isinstance(seg, np.ndarray):
            _place_fixed(out, cursor, np.ascontiguousarray(seg))
        else:
            _place_var(out, cursor, seg[0], seg[1])
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(out_offsets), pa.py_buffer(out)]
    )


def encode_rows(table: pa.Table | pa.RecordBatch) -> list[bytes]:
    """Raw leaf data (the encoded rows, without the 0x00 leaf prefix), one per row."""
    return [m[1:] for m in leaf_messages(table).to_pylist()]
