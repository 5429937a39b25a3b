"""Row encoding version 1 (docs/ledger-spec.md): golden bytes, a reference encoder, properties.

The golden hex strings are copied from the examples in docs/ledger-spec.md, where they were
derived by hand from the specification text; any change of the encoder breaks these tests.
`ref_encode_row` is a second, scalar encoder written from the specification only (Python
values from `to_pylist`, `struct`), against which the vectorized encoder is compared.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import itertools
import math
import random
import struct
import zoneinfo
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from ledger.checkpoint import Checkpoint
from ledger.commitment import commit_table
from ledger.encoding import (
    ENCODING_VERSION,
    UnsupportedTypeError,
    encode_rows,
    leaf_messages,
    schema_hash,
    schema_signature,
)
from ledger.log import ENTRY_FIELDS, ENTRY_SCHEMA, entry_leaf
from ledger.proofcheck import check_proof_document, decode_row, leaf_hash

SETTINGS = settings(max_examples=examples(50), deadline=None)

# --- golden examples of docs/ledger-spec.md §9 ------------------------------------------
EMPTY_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
NY = zoneinfo.ZoneInfo("America/New_York")


def _example_rows() -> dict[str, tuple[pa.Table, str, str]]:
    """Example id -> (one-row table, encoded row hex, leaf hash hex)."""
    return {
        "1": (
            pa.table({"id": pa.array([42], pa.int64()), "name": pa.array(["hi"], pa.string())}),
            "0100020201000000000000002a0501000000026869",
            "f067ec9bba8a84e5464a4bb9173afe9f758a95930c741693f124b205aed25ccd",
        ),
        "2": (
            pa.table(
                {
                    "i": pa.array([None], pa.int64()),
                    "s": pa.array([None], pa.string()),
                    "b": pa.array([None], pa.bool_()),
                    "f": pa.array([None], pa.float64()),
                    "d": pa.array([None], pa.date32()),
                    "m": pa.array([None], pa.decimal128(10, 2)),
                    "x": pa.array([None], pa.binary()),
                }
            ),
            "010007020000000000000000000500000000000100000400000000000000000008000000000009000a02"
            "00000000000000000000000000000000060000000000",
            "c2604857fa1c4bd76956ba55cff031c13967fb42fc79aec4d88e4aedc617214b",
        ),
        "3": (
            pa.table(
                {
                    "neg_zero": pa.array([-0.0], pa.float64()),
                    "nan": pa.array([float("nan")], pa.float64()),
                    "f32": pa.array([1.5], pa.float32()),
                    "ninf": pa.array([float("-inf")], pa.float64()),
                }
            ),
            "0100040401000000000000000004017ff800000000000004013ff80000000000000401fff0000000000000",
            "9b0e1ef967dbd0ae1aeb2d0cd7d166d4fc3334a3f6f1db3a317f2821eb7a3876",
        ),
        "4": (
            pa.table(
                {
                    "t_ns": pa.array([1_704_067_200_000_000_000], pa.timestamp("ns", tz="UTC")),
                    "t_ny": pa.array(
                        [dt.datetime(1969, 12, 31, 18, 59, 59, 999999, tzinfo=NY)],
                        pa.timestamp("us", tz="America/New_York"),
                    ),
                    "d": pa.array([dt.date(2024, 1, 1)], pa.date32()),
                    "d_before": pa.array([dt.date(1969, 12, 31)], pa.date32()),
                }
            ),
            "010004070100060dd7102120000701ffffffffffffffff080100004d0b0801ffffffff",
            "738a18f2cc9c2d15801f7438b9877f074bf2b09e536d9aaa5a8b582421e84332",
        ),
        "5": (
            pa.table(
                {
                    "ok": pa.array([True]),
                    "i8": pa.array([-1], pa.int8()),
                    "u64": pa.array([2**64 - 1], pa.uint64()),
                    "price": pa.array([decimal.Decimal("1.23")], pa.decimal128(10, 2)),
                    "delta": pa.array([decimal.Decimal("-0.01")], pa.decimal128(10, 2)),
                    "text": pa.array(["ü€"], pa.large_string()),
                    "raw": pa.array([bytes.fromhex("deadbeef")], pa.binary()),
                    "empty": pa.array([""], pa.string()),
                }
            ),
            "0100080101010201ffffffffffffffff0301ffffffffffffffff09010a02000000000000000000000000"
            "0000007b09010a02ffffffffffffffffffffffffffffffff050100000005c3bce282ac060100000004de"
            "adbeef050100000000",
            "b3a013dffdc5d7d7c62d14cb292b7afa0d0ab718866eca6424722b51dd07ae30",
        ),
        "6": (
            pa.table({"x": [1]}).select([]),
            "010000",
            "bf5e8ffa51a9e748985800c1d3d7f1a2a6ae7435136593ca8d9637e3f87c699c",
        ),
    }


EXAMPLE_ROWS = _example_rows()

EXAMPLE_7_TABLE = pa.table({"id": pa.array([3, 1, 2], pa.int64()), "name": ["c", "a", "b"]})
EXAMPLE_7_LEAVES = [
    "0100020201000000000000000105010000000161",
    "0100020201000000000000000205010000000162",
    "0100020201000000000000000305010000000163",
]
EXAMPLE_7_LEAF_HASHES = [
    "e0bcf4850b95f5b06c5e60649ad0058346705e46aab10f3c07fae3f353bc590d",
    "f9ff6b2f6ad629efee61bab6e4227bfc10e182cd42115bcf83191cd371479108",
    "1ae3aebff393f9bc76a9eec523001884504538fed4ee07fc85a99eb864df85c1",
]
EXAMPLE_7_ROOT = "61c36da5179ed2bc22fb143a592e3d04a097537adf17569497aa67fc3b9dd2b2"
EXAMPLE_7_SCHEMA_JSON = '{"encoding_version":1,"columns":[["id","int"],["name","string"]]}'
EXAMPLE_7_SCHEMA_HASH = "daef53dd57c71744ea6f08eccd7dcb0ef5b2cdd5cf04fb98df53cb12e9a92e34"

EXAMPLE_8_LEAVES = [
    "01000105010000000161",
    "01000105010000000162",
    "0100010501000000026162",
]
EXAMPLE_8_ROOT = "e9f47fa79b3f9410d477665f63db836b02a9b6d0d6893a90de4bc34661c27a41"
EXAMPLE_8_SCHEMA_HASH = "918a4ba371abfef2884bf69d199b30f7299e219f16c2554c8efe9304efa33e35"

EXAMPLE_9_LEAVES = [
    "010002020100000000000000000501000000017a",
    "0100020201000000000000000105010000000178",
    "0100020201000000000000000105010000000179",
]
EXAMPLE_9_ROOT = "59b25affda4efb731bff05b8e2a56e2f106c45ca100fdde000f87e8032da143e"

EXAMPLE_10_VALUES: dict[str, Any] = {
    "seq": 0,
    "ledger_version": 2,
    "entry_type": "commit",
    "asset_key": "contributions",
    "partition_key": None,
    "partition_column": None,
    "table_uri": "tables/contributions",
    "table_kind": "snapshot",
    "delta_version": 0,
    "encoding_version": 1,
    "schema_hash": EXAMPLE_7_SCHEMA_HASH,
    "row_key": "id",
    "old_row_count": 0,
    "row_count": 3,
    "data_root": EXAMPLE_7_ROOT,
    "data_range": "",
    "superseded": "",
    "prev_log_root": EMPTY_HEX,
    "run_id": "run-1",
    "code_version": "0.1.0",
    "committed_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    "note": "",
}
EXAMPLE_10_LEAF = (
    "0100160201000000000000000002010000000000000002050100000006636f6d6d697405010000000d636f6e"
    "747269627574696f6e730500000000000500000000000501000000147461626c65732f636f6e747269627574"
    "696f6e73050100000008736e617073686f740201000000000000000002010000000000000001050100000040"
    "6461656635336464353763373137343465613666303865636364376463623065663562326364643563663034"
    "6662393864663533636231326539613932653334050100000002696402010000000000000000020100000000"
    "0000000305010000004036316333366461353137396564326263323266623134336135393265336430346130"
    "3937353337616466313735363934393761613637666333623964643262320501000000000501000000000501"
    "0000004065336230633434323938666331633134396166626634633839393666623932343237616534316534"
    "36343962393334636134393539393162373835326238353505010000000572756e2d31050100000005302e31"
    "2e30070100060dd710212000050100000000"
)
EXAMPLE_10_ENTRY_HASH = "36e0fc6f6150d303a7bc300ad343eb0c9a8266ca6b27b44398e2586626c8ea3f"
EXAMPLE_11_BODY = "openledger.example/lake\n1\nNuD8b2FQ0wOnvDAK00PrDJqCZsprJ7RDmOJYZibI6j8=\n"
EXAMPLE_12_PROOF: dict[str, Any] = {
    "format": "openledger-inclusion-proof/v1",
    "hash": "sha256",
    "tree": "RFC 9162 Merkle Tree Hash",
    "row": {"id": 2, "name": "b"},
    "data": {
        "schema": [["id", "int"], ["name", "string"]],
        "leaf": "0100020201000000000000000205010000000162",
        "index": 1,
        "size": 3,
        "path": [
            "e0bcf4850b95f5b06c5e60649ad0058346705e46aab10f3c07fae3f353bc590d",
            "1ae3aebff393f9bc76a9eec523001884504538fed4ee07fc85a99eb864df85c1",
        ],
        "root": EXAMPLE_7_ROOT,
    },
    "entry": {
        "fields": list(ENTRY_FIELDS),
        "leaf": EXAMPLE_10_LEAF,
        "index": 0,
        "log_size": 1,
        "path": [],
        "log_root": EXAMPLE_10_ENTRY_HASH,
        "head": {"leaf": EXAMPLE_10_LEAF, "path": []},
    },
}


@pytest.mark.parametrize("example", sorted(EXAMPLE_ROWS))
def test_golden_rows(example: str) -> None:
    table, row_hex, leaf_hex = EXAMPLE_ROWS[example]
    assert encode_rows(table) == [bytes.fromhex(row_hex)]
    assert ref_encode_table(table) == [bytes.fromhex(row_hex)]
    assert leaf_messages(table).to_pylist() == [b"\x00" + bytes.fromhex(row_hex)]
    assert leaf_hash(bytes.fromhex(row_hex)).hex() == leaf_hex
    assert hashlib.sha256(b"\x00" + bytes.fromhex(row_hex)).hexdigest() == leaf_hex
    # a one-row table's root is its leaf hash
    assert commit_table(table).root == leaf_hex


def test_golden_decoded_values() -> None:
    assert decode_row(bytes.fromhex(EXAMPLE_ROWS["1"][1])) == [42, "hi"]
    assert decode_row(bytes.fromhex(EXAMPLE_ROWS["2"][1])) == [None] * 7
    f = decode_row(bytes.fromhex(EXAMPLE_ROWS["3"][1]))
    assert f[0] == 0.0 and math.copysign(1, f[0]) == 1 and math.isnan(f[1])
    assert f[2:] == [1.5, float("-inf")]
    assert decode_row(bytes.fromhex(EXAMPLE_ROWS["4"][1])) == [1704067200000000, -1, 19723, -1]
    assert decode_row(bytes.fromhex(EXAMPLE_ROWS["5"][1])) == [
        True,
        -1,
        2**64 - 1,
        "123/2",
        "-1/2",
        "ü€",
        "deadbeef",
        "",
    ]
    assert decode_row(bytes.fromhex("010000")) == []


def test_golden_three_row_table_with_key() -> None:
    table = EXAMPLE_7_TABLE
    assert schema_signature(table.schema) == [("id", "int"), ("name", "string")]
    assert hashlib.sha256(EXAMPLE_7_SCHEMA_JSON.encode()).hexdigest() == EXAMPLE_7_SCHEMA_HASH
    ordered = table.sort_by("id")
    assert [r.hex() for r in encode_rows(ordered)] == EXAMPLE_7_LEAVES
    assert [leaf_hash(bytes.fromhex(x)).hex() for x in EXAMPLE_7_LEAVES] == EXAMPLE_7_LEAF_HASHES
    h = [bytes.fromhex(x) for x in EXAMPLE_7_LEAF_HASHES]
    by_hand = hashlib.sha256(
        b"\x01" + hashlib.sha256(b"\x01" + h[0] + h[1]).digest() + h[2]
    ).hexdigest()
    assert by_hand == EXAMPLE_7_ROOT
    for key in (["id"], None):
        got = commit_table(table, key)
        assert (got.root, got.row_count, got.schema_hash) == (
            EXAMPLE_7_ROOT,
            3,
            EXAMPLE_7_SCHEMA_HASH,
        )
        assert got.encoding_version == ENCODING_VERSION == 1
    # int32 ids and large_string names: same rows, same schema hash
    narrow = table.cast(pa.schema([("id", pa.int32()), ("name", pa.large_string())]))
    assert commit_table(narrow, ["id"]).root == EXAMPLE_7_ROOT
    assert schema_hash(narrow.schema) == EXAMPLE_7_SCHEMA_HASH


def test_golden_three_row_table_without_key() -> None:
    table = pa.table({"name": ["b", "a", "ab"]})
    assert sorted(r.hex() for r in encode_rows(table)) == EXAMPLE_8_LEAVES
    got = commit_table(table)
    assert got.root == EXAMPLE_8_ROOT
    assert got.schema_hash == EXAMPLE_8_SCHEMA_HASH
    doc = '{"encoding_version":1,"columns":[["name","string"]]}'
    assert hashlib.sha256(doc.encode()).hexdigest() == EXAMPLE_8_SCHEMA_HASH


def test_golden_duplicate_keys() -> None:
    for names in (["y", "x", "z"], ["x", "y", "z"]):
        table = pa.table({"id": pa.array([1, 1, 0], pa.int64()), "name": names})
        assert commit_table(table, ["id"]).root == EXAMPLE_9_ROOT
    leaves = [bytes.fromhex(x) for x in EXAMPLE_9_LEAVES]
    h = [leaf_hash(x) for x in leaves]
    by_hand = hashlib.sha256(
        b"\x01" + hashlib.sha256(b"\x01" + h[0] + h[1]).digest() + h[2]
    ).hexdigest()
    assert by_hand == EXAMPLE_9_ROOT


def test_golden_ledger_entry_and_checkpoint() -> None:
    assert list(EXAMPLE_10_VALUES) == list(ENTRY_FIELDS)
    leaf = entry_leaf(EXAMPLE_10_VALUES)
    assert leaf.hex() == EXAMPLE_10_LEAF
    assert leaf_hash(leaf).hex() == EXAMPLE_10_ENTRY_HASH
    assert decode_row(leaf) == [
        0,
        2,
        "commit",
        "contributions",
        None,
        None,
        "tables/contributions",
        "snapshot",
        0,
        1,
        EXAMPLE_7_SCHEMA_HASH,
        "id",
        0,
        3,
        EXAMPLE_7_ROOT,
        "",
        "",
        EMPTY_HEX,
        "run-1",
        "0.1.0",
        1704067200000000,
        "",
    ]
    # an independent encoder (this file's reference) gives the same bytes
    assert ref_encode_table(pa.Table.from_pylist([EXAMPLE_10_VALUES], schema=ENTRY_SCHEMA)) == [
        leaf
    ]
    checkpoint = Checkpoint("openledger.example/lake", 1, bytes.fromhex(EXAMPLE_10_ENTRY_HASH))
    assert checkpoint.body() == EXAMPLE_11_BODY


def test_golden_proof_document() -> None:
    ok, message = check_proof_document(EXAMPLE_12_PROOF)
    assert ok, message
    assert "row 1 of 3" in message and "tables/contributions" in message
    # the same document with any hex digit of its leaf, path or roots changed fails
    for path in (
        ("data", "leaf"),
        ("data", "root"),
        ("entry", "leaf"),
        ("entry", "log_root"),
    ):
        doc = _with(EXAMPLE_12_PROOF, path, _bump(_get(EXAMPLE_12_PROOF, path)))
        assert not check_proof_document(doc)[0], path
    doc = _with(
        EXAMPLE_12_PROOF, ("data", "path"), list(reversed(EXAMPLE_12_PROOF["data"]["path"]))
    )
    assert not check_proof_document(doc)[0]
    for key, value in (("index", 0), ("index", 2), ("size", 4), ("size", 2)):
        assert not check_proof_document(_with(EXAMPLE_12_PROOF, ("data", key), value))[0]
    # the row shown must be the row the leaf encodes, under the committed schema
    for path, value in (
        (("row", "name"), "c"),
        (("row", "id"), 2.0),
        (("data", "schema"), [["id", "int"], ["name", "binary"]]),
        (("data", "schema"), [["ID", "int"], ["name", "string"]]),
        (("entry", "index"), 1),
        (("entry", "log_size"), 2),
        (("entry", "fields"), list(reversed(ENTRY_FIELDS))),
    ):
        assert not check_proof_document(_with(EXAMPLE_12_PROOF, path, value))[0], path
    assert not check_proof_document({"format": "x"})[0]
    assert not check_proof_document([])[0]


def _get(doc: dict[str, Any], path: tuple[str, str]) -> Any:
    return doc[path[0]][path[1]]


def _with(doc: dict[str, Any], path: tuple[str, str], value: Any) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in doc.items()}
    out[path[0]][path[1]] = value
    return out


def _bump(hex_text: str) -> str:
    last = hex_text[-1]
    return hex_text[:-1] + ("0" if last != "0" else "1")


# --- reference encoder, written from docs/ledger-spec.md only ------------------------------
EPOCH_DAY = dt.date(1970, 1, 1)
EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EPOCH_NAIVE = dt.datetime(1970, 1, 1)
MICRO = dt.timedelta(microseconds=1)


def ref_kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return ref_kind(t.value_type)
    checks: list[tuple[Callable[[pa.DataType], bool], str]] = [
        (pa.types.is_boolean, "bool"),
        (pa.types.is_signed_integer, "int"),
        (pa.types.is_unsigned_integer, "uint"),
        (pa.types.is_floating, "float"),
        (pa.types.is_string, "string"),
        (pa.types.is_large_string, "string"),
        (pa.types.is_string_view, "string"),
        (pa.types.is_binary, "binary"),
        (pa.types.is_large_binary, "binary"),
        (pa.types.is_binary_view, "binary"),
        (pa.types.is_fixed_size_binary, "binary"),
        (pa.types.is_timestamp, "timestamp"),
        (pa.types.is_date, "date"),
        (pa.types.is_decimal, "decimal"),
    ]
    for check, kind in checks:
        if check(t):
            return kind
    raise AssertionError(f"no kind for {t}")


TAG = {
    "bool": 0x01,
    "int": 0x02,
    "uint": 0x03,
    "float": 0x04,
    "string": 0x05,
    "binary": 0x06,
    "timestamp": 0x07,
    "date": 0x08,
    "decimal": 0x09,
}


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _micros(value: Any, t: pa.DataType) -> int:
    if isinstance(value, int):  # raw epoch count in the type's unit (nanoseconds)
        assert value % 1000 == 0
        return value // 1000
    epoch = EPOCH_NAIVE if value.tzinfo is None else EPOCH_UTC
    return (value - epoch) // MICRO


def _unscaled(value: decimal.Decimal, scale: int) -> int:
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    magnitude = int("".join(map(str, digits)) or "0")
    shift = exponent + scale
    magnitude = magnitude * 10**shift if shift >= 0 else magnitude // 10**-shift
    return -magnitude if sign else magnitude


def ref_payload(kind: str, t: pa.DataType, value: Any) -> bytes:
    """Payload of one value; value None means the null payload."""
    if kind == "bool":
        return bytes([1 if value else 0])
    if kind == "int":
        return struct.pack(">q", value or 0)
    if kind == "uint":
        return struct.pack(">Q", value or 0)
    if kind == "float":
        if value is None or value == 0:
            return bytes(8)
        if math.isnan(value):
            return bytes.fromhex("7ff8000000000000")
        return struct.pack(">d", float(value))
    if kind in ("string", "binary"):
        raw = b"" if value is None else value.encode("utf-8") if kind == "string" else value
        return struct.pack(">I", len(raw)) + raw
    if kind == "timestamp":
        return struct.pack(">q", 0 if value is None else _micros(value, t))
    if kind == "date":
        return struct.pack(">i", 0 if value is None else (value - EPOCH_DAY).days)
    # decimal: precision, scale, 16-byte two's complement of the unscaled integer
    unscaled = 0 if value is None else _unscaled(value, t.scale)
    return bytes([t.precision, t.scale]) + unscaled.to_bytes(16, "big", signed=True)


def ref_encode_row(types: list[pa.DataType], values: list[Any]) -> bytes:
    out = bytes([1]) + struct.pack(">H", len(types))
    for t, value in zip(types, values, strict=True):
        kind = ref_kind(t)
        vt = _value_type(t)
        out += bytes([TAG[kind], 0 if value is None else 1]) + ref_payload(kind, vt, value)
    return out


def _python_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """Python values of a column; nanosecond timestamps as raw epoch nanoseconds."""
    t = _value_type(column.type)
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return column.cast(t).cast(pa.int64()).to_pylist()
    return column.to_pylist()


def ref_encode_table(table: pa.Table) -> list[bytes]:
    types = [f.type for f in table.schema]
    columns = [_python_values(c) for c in table.columns]
    return [ref_encode_row(types, [c[i] for c in columns]) for i in range(table.num_rows)]


def ref_decoded(types: list[pa.DataType], values: list[Any]) -> list[Any]:
    """What decode_row must return for these values (docs/ledger-spec.md §2.6)."""
    out: list[Any] = []
    for t, value in zip(types, values, strict=True):
        kind, vt = ref_kind(t), _value_type(t)
        if value is None:
            out.append(None)
        elif kind == "float":
            out.append(struct.unpack(">d", ref_payload(kind, vt, value))[0])
        elif kind == "binary":
            out.append(value.hex())
        elif kind == "timestamp":
            out.append(_micros(value, vt))
        elif kind == "date":
            out.append((value - EPOCH_DAY).days)
        elif kind == "decimal":
            out.append(f"{_unscaled(value, vt.scale)}/{vt.scale}")
        else:
            out.append(value)
    return out


# --- random tables of every supported type ------------------------------------------------
INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]
UINT_TYPES = [pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
TIMEZONES = [None, "UTC", "Asia/Kolkata", "America/New_York"]
# µs range that Python datetimes represent (years 1..9999, two days of margin for time
# zones) and that nanosecond timestamps can hold
DAY_US = 86_400_000_000
MIN_US, MAX_US = -62_135_596_800_000_000 + 2 * DAY_US, 253_402_300_799_999_999 - 2 * DAY_US
NS_US = (2**63 - 1) // 1000

NAN_PAYLOADS = [
    struct.unpack(">d", bytes.fromhex(h))[0]
    for h in ("7ff8000000000000", "fff8000000000000", "7ff0000000000001", "fff8000000000001")
]


@st.composite
def column_specs(draw: st.DrawFn) -> tuple[pa.DataType, list[Any], int]:
    """(arrow type, python values incl. None, rows) for one column."""
    n = draw(st.integers(0, 12))
    family = draw(
        st.sampled_from(
            [
                *("bool", "int", "uint", "f64", "f32", "f16", "string", "binary", "fixed"),
                *("timestamp", "date32", "date64", "decimal"),
            ]
        )
    )
    t: pa.DataType
    if family == "bool":
        t, values = pa.bool_(), st.booleans()
    elif family == "int":
        t = draw(st.sampled_from(INT_TYPES))
        bits = t.bit_width
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        values = st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, -1]))
    elif family == "uint":
        t = draw(st.sampled_from(UINT_TYPES))
        values = st.one_of(st.integers(0, 2**t.bit_width - 1), st.just(2**t.bit_width - 1))
    elif family == "f64":
        t = pa.float64()
        values = st.one_of(st.floats(), st.sampled_from([-0.0, 0.0, *NAN_PAYLOADS]))
    elif family == "f32":
        t = pa.float32()
        values = st.one_of(st.floats(width=32), st.sampled_from([-0.0, math.nan, math.inf]))
    elif family == "f16":
        t = pa.float16()
        values = st.one_of(st.floats(width=16), st.sampled_from([-0.0, math.nan]))
    elif family == "string":
        t = draw(st.sampled_from([pa.string(), pa.large_string(), pa.string_view()]))
        values = st.one_of(st.text(max_size=8), st.sampled_from(["", "ü€😀", "\x00"]))
    elif family == "binary":
        t = draw(st.sampled_from([pa.binary(), pa.large_binary(), pa.binary_view()]))
        values = st.binary(max_size=20)
    elif family == "fixed":
        t = pa.binary(3)
        values = st.binary(min_size=3, max_size=3)
    elif family == "timestamp":
        unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
        t = pa.timestamp(unit, tz=draw(st.sampled_from(TIMEZONES)))
        factor = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}[unit]
        lo, hi = (-NS_US, NS_US) if unit == "ns" else (MIN_US // factor + 1, MAX_US // factor)
        scale = 1000 if unit == "ns" else 1
        values = st.integers(lo, hi).map(lambda v: v * scale)
    elif family == "date32":
        t = pa.date32()
        values = st.integers(-719_162, 2_932_896)
    elif family == "date64":
        t = pa.date64()
        values = st.integers(-719_162, 2_932_896).map(lambda d: d * 86_400_000)
    else:
        t = draw(
            st.sampled_from(
                [
                    pa.decimal128(1, 0),
                    pa.decimal128(10, 2),
                    pa.decimal128(38, 10),
                    pa.decimal128(38, 38),
                    pa.decimal128(38, 0),
                    pa.decimal32(7, 3),
                    pa.decimal64(18, 4),
                ]
            )
        )
        limit = 10**t.precision - 1
        values = st.integers(-limit, limit).map(lambda u, s=t.scale: _decimal(u, s))
    cells = [draw(st.one_of(st.none(), values)) for _ in range(n)]
    return t, cells, n


def _decimal(unscaled: int, scale: int) -> decimal.Decimal:
    return decimal.Decimal(unscaled).scaleb(-scale, context=decimal.Context(prec=100))


def build_array(t: pa.DataType, cells: list[Any]) -> pa.Array:
    if t == pa.float16():
        mask = np.array([v is None for v in cells], dtype=bool)
        data = np.array([0.0 if v is None else v for v in cells], dtype=np.float16)
        return pa.array(data, type=t, mask=mask)
    if pa.types.is_timestamp(t) or t == pa.date64():
        storage = pa.int64()
        return pa.array(cells, storage).cast(t)
    if t == pa.date32():
        return pa.array(cells, pa.int32()).cast(t)
    return pa.array(cells, t)


@st.composite
def arrow_tables(draw: st.DrawFn) -> pa.Table:
    """Random tables, each column possibly sliced, dictionary-encoded and/or chunked."""
    ncols = draw(st.integers(1, 5))
    specs = [draw(column_specs()) for _ in range(ncols)]
    n = min(s[2] for s in specs)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for i, (t, cells, _) in enumerate(specs):
        cells = cells[:n]
        pad_before = draw(st.integers(0, 3))
        pad_after = draw(st.integers(0, 3))
        filler = [None] * (pad_before + pad_after)
        padded = filler[:pad_before] + cells + filler[pad_before:]
        array = build_array(t, padded).slice(pad_before, n)
        # dictionary<string_view | binary_view>: see test_dictionary_of_view_type
        dictionary_ok = not (
            pa.types.is_floating(t)
            or pa.types.is_decimal(t)
            or pa.types.is_string_view(t)
            or pa.types.is_binary_view(t)
        )
        if dictionary_ok and draw(st.booleans()):
            array = array.dictionary_encode()
        if draw(st.booleans()):
            cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
            bounds = [0, *cuts, n]
            array = pa.chunked_array(
                [array.slice(a, b - a) for a, b in itertools.pairwise(bounds)],
                array.type,
            )
        columns[f"c{i} {t}"] = array
    return pa.table(columns)


@SETTINGS
@given(arrow_tables())
def test_vectorized_encoder_equals_reference(table: pa.Table) -> None:
    encoded = encode_rows(table)
    assert encoded == ref_encode_table(table)
    assert [b"\x00" + e for e in encoded] == leaf_messages(table).to_pylist()
    # the same table combined into one chunk, and as record batches, encodes the same
    assert encode_rows(table.combine_chunks()) == encoded
    assert [e for batch in table.to_batches() for e in encode_rows(batch)] == encoded


@SETTINGS
@given(arrow_tables())
def test_decode_row_round_trips(table: pa.Table) -> None:
    types = [f.type for f in table.schema]
    columns = [_python_values(c) for c in table.columns]
    for i, row in enumerate(encode_rows(table)):
        decoded = decode_row(row)
        expected = ref_decoded(types, [c[i] for c in columns])
        assert len(decoded) == len(expected)
        for got, want in zip(decoded, expected, strict=True):
            if isinstance(want, float):
                assert struct.pack(">d", got) == struct.pack(">d", want)
            else:
                assert got == want and type(got) is type(want)


def _widened(table: pa.Table) -> pa.Table:
    """The same logical values under the widest physical type of each family."""
    fields = []
    for f in table.schema:
        t = _value_type(f.type)
        kind = ref_kind(t)
        wide = {
            "int": pa.int64(),
            "uint": pa.uint64(),
            "float": pa.float64(),
            "string": pa.large_string(),
            "binary": pa.large_binary(),
            "date": pa.date32(),
        }.get(kind)
        if kind == "timestamp":
            wide = pa.timestamp("ns" if t.unit == "ns" else "us", tz="UTC")
        if kind == "decimal":
            wide = pa.decimal128(t.precision, t.scale)
        fields.append(pa.field(f.name, wide or t))
    return table.cast(pa.schema(fields))


@SETTINGS
@given(arrow_tables())
def test_physical_type_does_not_change_bytes(table: pa.Table) -> None:
    wide = _widened(table)
    assert encode_rows(wide) == encode_rows(table)
    assert schema_hash(wide.schema) == schema_hash(table.schema)


def test_int32_vs_int64_and_string_vs_large_string() -> None:
    values = [0, -1, 2**31 - 1, -(2**31), None]
    narrow = pa.table({"a": pa.array(values, pa.int32()), "s": pa.array(["x", "", None, "é", "y"])})
    wide = pa.table(
        {
            "a": pa.array(values, pa.int64()),
            "s": pa.array(["x", "", None, "é", "y"], pa.large_string()),
        }
    )
    assert encode_rows(narrow) == encode_rows(wide)
    # but signed and unsigned integers are different types
    assert encode_rows(pa.table({"a": pa.array([1], pa.uint64())})) != encode_rows(
        pa.table({"a": pa.array([1], pa.int64())})
    )
    # and so are strings and binary with the same bytes
    assert encode_rows(pa.table({"a": ["x"]})) != encode_rows(pa.table({"a": [b"x"]}))


def test_negative_zero_and_nan_normalized() -> None:
    nans = pa.array([*NAN_PAYLOADS, float("nan")], pa.float64())
    rows = encode_rows(pa.table({"f": nans}))
    assert len(set(rows)) == 1
    assert rows[0].hex() == "0100010401" + "7ff8000000000000"
    zeros = encode_rows(pa.table({"f": pa.array([0.0, -0.0], pa.float32())}))
    assert zeros[0] == zeros[1] == bytes.fromhex("0100010401" + "00" * 8)
    # a null float differs from 0.0 only by its flag
    assert encode_rows(pa.table({"f": pa.array([None], pa.float64())}))[0].hex() == (
        "0100010400" + "00" * 8
    )


def test_timestamps_are_utc_microseconds_whatever_the_zone_or_unit() -> None:
    instant = dt.datetime(2024, 3, 10, 7, 30, tzinfo=dt.UTC)
    expected = encode_rows(pa.table({"t": pa.array([instant], pa.timestamp("us", tz="UTC"))}))
    for unit in ("s", "ms", "us", "ns"):
        for tz in ("UTC", "America/New_York", "Asia/Kolkata"):
            local = instant.astimezone(zoneinfo.ZoneInfo(tz))
            arr = pa.array([local], pa.timestamp(unit, tz=tz))
            assert encode_rows(pa.table({"t": arr})) == expected, (unit, tz)
    # a naive timestamp is taken as UTC wall-clock time
    naive = pa.array([instant.replace(tzinfo=None)], pa.timestamp("us"))
    assert encode_rows(pa.table({"t": naive})) == expected


def test_nanosecond_timestamps_with_sub_microsecond_part_raise() -> None:
    table = pa.table({"when ns": pa.array([1_000, 1_001], pa.timestamp("ns"))})
    with pytest.raises(ValueError, match="'when ns'"):
        encode_rows(table)
    with pytest.raises(ValueError):
        commit_table(table)
    # whole microseconds are fine, and so is a garbage value under a null
    ok = pa.table({"t": pa.array([1_000, None, -5_000], pa.timestamp("ns", tz="UTC"))})
    assert decode_row(encode_rows(ok)[2]) == [-5]
    data = pa.py_buffer(np.array([1_000, 1_001], dtype=np.int64).tobytes())
    validity = pa.py_buffer(np.packbits([1, 0], bitorder="little").tobytes())
    masked = pa.Array.from_buffers(pa.timestamp("ns"), 2, [validity, data], null_count=1)
    assert [decode_row(r) for r in encode_rows(pa.table({"t": masked}))] == [[1], [None]]


UNSUPPORTED_TYPES = [
    pa.list_(pa.int64()),
    pa.large_list(pa.string()),
    pa.list_(pa.int32(), 2),
    pa.struct([("a", pa.int64())]),
    pa.map_(pa.string(), pa.int64()),
    pa.null(),
    pa.time32("s"),
    pa.time64("us"),
    pa.duration("us"),
    pa.decimal256(40, 2),
    pa.decimal128(5, -2),
    pa.decimal128(5, 7),
    pa.month_day_nano_interval(),
]


@pytest.mark.parametrize("arrow_type", UNSUPPORTED_TYPES, ids=str)
def test_unsupported_types_raise_with_column_name(arrow_type: pa.DataType) -> None:
    column = pa.nulls(2, arrow_type)
    table = pa.table({"fine": [1, 2], "bad column": column})
    with pytest.raises(UnsupportedTypeError, match="'bad column'"):
        encode_rows(table)
    with pytest.raises(UnsupportedTypeError, match="'bad column'"):
        schema_hash(table.schema)
    with pytest.raises(UnsupportedTypeError, match="'bad column'"):
        commit_table(table)
    assert issubclass(UnsupportedTypeError, TypeError)


def test_unsupported_nested_values_raise() -> None:
    table = pa.table(
        {
            "l": pa.array([[1, 2], None]),
            "s": pa.array([{"a": 1}, None]),
            "m": pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64())),
        }
    )
    for name in table.column_names:
        with pytest.raises(UnsupportedTypeError, match=f"'{name}'"):
            encode_rows(table.select([name]))


def test_decode_row_rejects_malformed_rows() -> None:
    good = bytes.fromhex(EXAMPLE_ROWS["3"][1])  # fixed-width payloads only
    for cut in range(len(good)):
        with pytest.raises(ValueError):
            decode_row(good[:cut])
    with pytest.raises(ValueError):
        decode_row(good + b"\x00")
    with pytest.raises(ValueError):
        decode_row(b"\x02" + good[1:])  # unknown encoding version
    with pytest.raises(ValueError):
        decode_row(bytes.fromhex("0100010a0100"))  # unknown type tag 0x0a
    with pytest.raises(ValueError):
        decode_row(bytes.fromhex("010001020200000000000000" + "00"))  # null flag 2
    with pytest.raises(ValueError):
        decode_row(bytes.fromhex("010001050100000002ff00"))  # invalid UTF-8
    with pytest.raises(ValueError):
        decode_row(bytes.fromhex("01000105010000000561"))  # length beyond the row


@pytest.mark.parametrize("example", sorted(EXAMPLE_ROWS))
def test_decode_row_rejects_every_truncation(example: str) -> None:
    """Regression: a cut inside a u32 length prefix raised struct.error, not ValueError."""
    good = bytes.fromhex(EXAMPLE_ROWS[example][1])
    for cut in range(len(good)):
        with pytest.raises(ValueError):
            decode_row(good[:cut])
    with pytest.raises(ValueError):
        decode_row(bytes.fromhex(EXAMPLE_10_LEAF)[:-9])


@pytest.mark.parametrize(
    ("view", "plain", "values"),
    [
        (pa.string_view(), pa.string(), ["a", "", "ü€"]),
        (pa.string_view(), pa.string(), ["a", None]),
        (pa.binary_view(), pa.binary(), [b"a", b"", b"\xff"]),
    ],
    ids=["string_view", "string_view_nulls", "binary_view"],
)
def test_view_types_encode_like_plain_types(
    view: pa.DataType, plain: pa.DataType, values: list[Any]
) -> None:
    """Regression: view types failed in pc.fill_null (no coalesce kernel for views)."""
    assert encode_rows(pa.table({"v": pa.array(values, view)})) == encode_rows(
        pa.table({"v": pa.array(values, plain)})
    )


@pytest.mark.parametrize(
    "values", [[b"abc", b"\x00\x01\x02"], [b"abc", None]], ids=["no_nulls", "nulls"]
)
def test_fixed_size_binary_encodes_like_binary(values: list[bytes | None]) -> None:
    """Regression: fill_null(b"") could not build a fixed-width scalar."""
    table = pa.table({"h": pa.array(values, pa.binary(3))})
    assert encode_rows(table) == encode_rows(pa.table({"h": pa.array(values, pa.binary())}))


def test_decimal_scale_outside_0_to_precision_is_unsupported() -> None:
    """Regression: a negative scale failed with OverflowError/ArrowInvalid."""
    for t, value in ((pa.decimal128(5, -2), decimal.Decimal("100")), (pa.decimal128(5, 7), None)):
        table = pa.table({"price": pa.array([value], t)})
        with pytest.raises(UnsupportedTypeError, match="'price'"):
            encode_rows(table)
        with pytest.raises(UnsupportedTypeError, match="'price'"):
            schema_hash(table.schema)


@pytest.mark.parametrize(
    ("view", "values"),
    [(pa.string_view(), ["b", "a", None, "b"]), (pa.binary_view(), [b"b", None, b"b"])],
    ids=["string_view", "binary_view"],
)
def test_dictionary_of_view_type(view: pa.DataType, values: list[Any]) -> None:
    plain = pa.array(values, view)
    table = pa.table({"k": plain.dictionary_encode()})
    assert encode_rows(table) == encode_rows(pa.table({"k": plain}))


def test_header_counts_columns_and_version() -> None:
    rng = random.Random(3)
    for ncols in (0, 1, 2, 255, 256, 300):
        table = pa.table({f"c{i}": [rng.randrange(100)] for i in range(ncols)})
        if ncols == 0:
            table = pa.table({"x": [1]}).select([])
        row = encode_rows(table)[0]
        assert row[0] == ENCODING_VERSION == 1
        assert int.from_bytes(row[1:3], "big") == ncols
        assert len(row) == 3 + 10 * ncols
    assert encode_rows(pa.table({"a": pa.array([], pa.int64())})) == []
