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

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from ledger.proofcheck import ENCODING_VERSION, schema_hash_of
from ledger.sha256_simd import _copy as copy_bytes

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


@dataclass(frozen=True)
class _Words:
    """A column whose payload is the low `width` bytes of each value, big-endian."""

    tag: int
    valid: np.ndarray  # uint8, 1 = value
    values: np.ndarray  # uint64 (the bits of signed values), zero where null
    width: int


@dataclass(frozen=True)
class _Bytes:
    """A string or binary column: u32-BE length, then the bytes (length 0 where null)."""

    tag: int
    valid: np.ndarray
    offsets: np.ndarray  # int64, n + 1
    data: np.ndarray  # uint8


@dataclass(frozen=True)
class _Matrix:
    """Fixed-width encoded bytes, header included, as an (n, width) uint8 matrix."""

    rows: np.ndarray


_Segment = _Words | _Bytes | _Matrix


def _frozen(array: np.ndarray) -> np.ndarray:
    """A read-only view: zero-copy Arrow buffers are read-only, so every input of the
    compiled loops is made so, and each loop compiles for one signature only."""
    view = array.view()
    view.flags.writeable = False
    return view


def _valid(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.ones(len(array), dtype=np.uint8)
    return pc.is_valid(array).to_numpy(zero_copy_only=False).astype(np.uint8)


def var_parts(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets, data) of a binary or large_binary array, honouring its slice offset."""
    if len(array) == 0:  # an empty array may come without buffers
        return np.zeros(1, np.int64), np.zeros(0, np.uint8)
    wide = pa.types.is_large_binary(array.type) or pa.types.is_large_string(array.type)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[array.offset : array.offset + len(array) + 1].astype(np.int64, copy=False)
    data = array.buffers()[2]
    return offsets, np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(
        0, np.uint8
    )


def _words(tag: int, valid: np.ndarray, array: pa.Array, zero: object, width: int) -> _Words:
    values = pc.fill_null(array, zero).to_numpy(zero_copy_only=False)
    bits = values.astype(np.int64, copy=False).view(np.uint64)
    return _Words(tag, _frozen(valid), _frozen(bits), width)


def _encode_column(field: pa.Field, array: pa.Array) -> _Segment:
    """How one column is encoded: payload values for the compiled assembly loops."""
    tag, _ = _tag_and_name(field)
    if pa.types.is_dictionary(array.type):
        array = decode_dictionary(array)
    n = len(array)
    valid = _valid(array)
    if tag in (TAG_STRING, TAG_BINARY):
        # one physical layout first (view and fixed-size types have no offsets buffer)
        if not (
            pa.types.is_string(array.type)
            or pa.types.is_large_string(array.type)
            or pa.types.is_binary(array.type)
            or pa.types.is_large_binary(array.type)
        ):
            array = array.cast(pa.large_string() if tag == TAG_STRING else pa.large_binary())
        offsets, data = var_parts(array)
        return _Bytes(tag, _frozen(valid), _frozen(offsets), _frozen(data))
    if tag == TAG_BOOL:
        return _words(tag, valid, array, False, 1)
    if tag == TAG_INT:
        return _words(tag, valid, array.cast(pa.int64()), 0, 8)
    if tag == TAG_UINT:
        values = pc.fill_null(array.cast(pa.uint64()), 0).to_numpy()
        return _Words(tag, _frozen(valid), _frozen(values.astype(np.uint64, copy=False)), 8)
    if tag == TAG_FLOAT:
        values = pc.fill_null(array.cast(pa.float64()), 0.0).to_numpy().astype(np.float64)
        with np.errstate(invalid="ignore"):  # signalling NaNs are canonicalized below
            values = values + 0.0  # -0.0 + 0.0 == +0.0
        bits = values.view(np.uint64).copy()
        bits[np.isnan(values)] = CANONICAL_NAN
        return _Words(tag, _frozen(valid), _frozen(bits), 8)
    if tag == TAG_TIMESTAMP:
        try:
            micros = array.cast(pa.timestamp("us", tz=array.type.tz), safe=True)
        except pa.ArrowInvalid as exc:
            raise ValueError(
                f"column {field.name!r}: timestamps below microsecond precision cannot be "
                f"committed (Delta keeps microseconds): {exc}"
            ) from exc
        return _words(tag, valid, micros.cast(pa.int64()), 0, 8)
    if tag == TAG_DATE:  # int32 days: the low 4 bytes of the sign-extended value
        return _words(tag, valid, array.cast(pa.date32()).cast(pa.int32()), 0, 4)
    # decimal: precision, scale, 16-byte big-endian two's complement of the unscaled value
    dec = array.cast(pa.decimal128(array.type.precision, array.type.scale))
    raw = np.frombuffer(dec.buffers()[1], dtype=np.uint8)[dec.offset * 16 : (dec.offset + n) * 16]
    rows = np.empty((n, 20), dtype=np.uint8)
    rows[:, 0] = tag
    rows[:, 1] = valid
    rows[:, 2] = dec.type.precision
    rows[:, 3] = dec.type.scale
    rows[:, 4:] = raw.reshape(n, 16)[:, ::-1] * valid[:, None]
    return _Matrix(rows)


def _encoded_lengths(segment: _Segment) -> np.ndarray | int:
    """Bytes each row of a segment takes (an array for strings, else one width)."""
    if isinstance(segment, _Words):
        return 2 + segment.width
    if isinstance(segment, _Bytes):
        return 6 + np.diff(segment.offsets) * segment.valid
    return segment.rows.shape[1]


@njit(cache=True, nogil=True)
def _place_fixed(out: np.ndarray, cursor: np.ndarray, matrix: np.ndarray) -> None:
    width = matrix.shape[1]
    for i in range(matrix.shape[0]):
        start = cursor[i]
        for j in range(width):
            out[start + j] = matrix[i, j]
        cursor[i] = start + width


@njit(cache=True, inline="always")
def _big_endian(out: np.ndarray, at: int, value: np.uint64, width: int) -> None:
    for j in range(width):
        out[at + j] = np.uint8((value >> np.uint64(8 * (width - 1 - j))) & np.uint64(0xFF))


@njit(cache=True, nogil=True)
def _place_words(
    out: np.ndarray, cursor: np.ndarray, tag: int, valid: np.ndarray, values: np.ndarray, width: int
) -> None:
    for i in range(values.shape[0]):
        start = cursor[i]
        out[start] = tag
        out[start + 1] = valid[i]
        if width == 8:  # constant widths: the byte loop is unrolled (2-3x faster)
            _big_endian(out, start + 2, values[i], 8)
        elif width == 4:
            _big_endian(out, start + 2, values[i], 4)
        else:
            _big_endian(out, start + 2, values[i], width)
        cursor[i] = start + 2 + width


@njit(cache=True, nogil=True)
def _place_bytes(
    out: np.ndarray,
    cursor: np.ndarray,
    tag: int,
    valid: np.ndarray,
    offsets: np.ndarray,
    data: np.ndarray,
) -> None:
    for i in range(offsets.shape[0] - 1):
        start, lo = cursor[i], offsets[i]
        length = (offsets[i + 1] - lo) * valid[i]
        out[start] = tag
        out[start + 1] = valid[i]
        for j in range(4):
            out[start + 5 - j] = np.uint8((length >> (8 * j)) & 0xFF)
        copy_bytes(out, start + 6, data, lo, length)  # memcpy: 5x a slice assignment
        cursor[i] = start + 6 + length


def _place(out: np.ndarray, cursor: np.ndarray, segment: _Segment) -> None:
    if isinstance(segment, _Words):
        _place_words(out, cursor, segment.tag, segment.valid, segment.values, segment.width)
    elif isinstance(segment, _Bytes):
        _place_bytes(out, cursor, segment.tag, segment.valid, segment.offsets, segment.data)
    else:
        _place_fixed(out, cursor, segment.rows)


def leaf_messages(table: pa.Table | pa.RecordBatch) -> pa.LargeBinaryArray:
    """`0x00 ‖ encoded row` for every row: the exact messages whose SHA-256 are leaf hashes.

    Each column is reduced to its payload values (no per-column byte matrices), then the
    rows are assembled column by column by small compiled loops writing straight into the
    output buffer.
    """
    n = table.num_rows
    ncols = table.num_columns
    if ncols > 0xFFFF:
        raise UnsupportedTypeError("more than 65535 columns cannot be encoded")
    prefix = np.empty((n, 4), dtype=np.uint8)
    prefix[:, 0] = 0x00  # RFC 9162 leaf domain separator
    prefix[:, 1] = ENCODING_VERSION
    prefix[:, 2:] = np.frombuffer(ncols.to_bytes(2, "big"), dtype=np.uint8)
    segments: list[_Segment] = [_Matrix(prefix)]
    for field, column in zip(table.schema, table.columns, strict=True):
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        segments.append(_encode_column(field, array))
    lengths = np.zeros(n, dtype=np.int64)
    for segment in segments:
        lengths += _encoded_lengths(segment)
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=np.uint8)
    cursor = out_offsets[:-1].copy()
    for segment in segments:
        _place(out, cursor, segment)
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(out_offsets), pa.py_buffer(out)]
    )


def encode_rows(table: pa.Table | pa.RecordBatch) -> list[bytes]:
    """Raw leaf data (the encoded rows, without the 0x00 leaf prefix), one per row."""
    return [m[1:] for m in leaf_messages(table).to_pylist()]
