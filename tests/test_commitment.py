"""Table commitments: the same rows give the same root whatever the order, chunking or engine."""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import random
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from ledger import commitment
from ledger.commitment import (
    Commitment,
    canonical_order,
    commit_table,
    leaf_hash_matrix,
    sorted_table,
)
from ledger.encoding import UnsupportedTypeError, encode_rows, schema_hash
from ledger.hashing import root_of_leaf_hashes
from ledger.merkle import EMPTY_ROOT, root

SETTINGS = settings(max_examples=examples(30), deadline=None)

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("grp", pa.string()),
        ("name", pa.string()),
        ("score", pa.float64()),
        ("flag", pa.bool_()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("day", pa.date32()),
        ("amount", pa.decimal128(12, 2)),
        ("blob", pa.binary()),
        ("count", pa.int32()),
    ]
)


def random_table(n: int, seed: int, duplicate_keys: bool = False) -> pa.Table:
    """n rows of every column type, with nulls, NaN, -0.0, empty and non-ASCII strings.

    Keys are unique, or (duplicate_keys) drawn from {None, 0, 1, 2, 3} so rows share keys.
    Rows come from a seeded generator: hypothesis draws the size and the seed (fast).
    """
    rng = random.Random(seed)
    if duplicate_keys:
        ids: list[int | None] = [rng.choice([None, 0, 1, 2, 3]) for _ in range(n)]
    else:
        ids = [*rng.sample(range(-(2**40), 2**40), n)]
    floats = [None, float("nan"), -0.0, 0.0, float("inf"), -float("inf"), 5e-324, 1.0]
    texts = [None, "", "é", "日本", "😀", "a\x00b", "A", "a"]
    rows_ = []
    for key in ids:
        rows_.append(
            {
                "id": key,
                "grp": rng.choice(["a", "b", None]),
                "name": rng.choice([*texts, "x" * rng.randrange(40)]),
                "score": rng.choice([*floats, rng.uniform(-1e300, 1e300)]),
                "flag": rng.choice([True, False, None]),
                "at": rng.choice(
                    [
                        None,
                        dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
                        + dt.timedelta(microseconds=rng.randrange(-(2**50), 2**50)),
                    ]
                ),
                "day": rng.choice(
                    [None, dt.date(1970, 1, 1) + dt.timedelta(days=rng.randrange(-9999, 99999))]
                ),
                "amount": rng.choice(
                    [None, decimal.Decimal(rng.randrange(-(10**12) + 1, 10**12)).scaleb(-2)]
                ),
                "blob": rng.choice([None, b"", rng.randbytes(rng.randrange(10))]),
                "count": rng.choice([None, -(2**31), 2**31 - 1, rng.randrange(-(2**31), 2**31)]),
            }
        )
    return pa.Table.from_pylist(rows_, schema=SCHEMA)


sizes = st.integers(0, 25)
seeds = st.integers(0, 2**32 - 1)


# --- same rows, other layouts ---------------------------------------------------------------
def permuted(table: pa.Table, rng: random.Random) -> pa.Table:
    order = list(range(table.num_rows))
    rng.shuffle(order)
    return table.take(pa.array(order, pa.int64()))


def rechunked(table: pa.Table, rng: random.Random) -> pa.Table:
    """Every column split into chunks at its own random places."""
    n = table.num_rows
    columns = {}
    for name in table.column_names:
        array = table.column(name).combine_chunks()
        bounds = [0, *sorted(rng.randrange(n + 1) for _ in range(rng.randrange(4))), n]
        columns[name] = pa.chunked_array(
            [array.slice(a, b - a) for a, b in itertools.pairwise(bounds)], array.type
        )
    return pa.table(columns)


def rebatched(table: pa.Table, rng: random.Random) -> pa.Table:
    batches = table.combine_chunks().to_batches(max_chunksize=rng.randrange(1, 6))
    return pa.Table.from_batches(batches, schema=table.schema)


def widened(table: pa.Table, rng: random.Random) -> pa.Table:
    """string -> large_string, int32 -> int64, binary -> large_binary (same values)."""
    fields = []
    for f in table.schema:
        t = {
            pa.string(): pa.large_string(),
            pa.int32(): pa.int64(),
            pa.binary(): pa.large_binary(),
        }.get(f.type, f.type)
        fields.append(pa.field(f.name, t))
    return table.cast(pa.schema(fields))


def dictionary_encoded(table: pa.Table, rng: random.Random) -> pa.Table:
    """String columns (incl. the key column grp) dictionary-encoded, as by a reader."""
    columns = {
        name: table.column(name).dictionary_encode() if name in ("grp", "name") else column
        for name, column in zip(table.column_names, table.columns, strict=True)
    }
    return pa.table(columns)


def via_polars_categorical(table: pa.Table, rng: random.Random) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(pl.col("grp").cast(pl.Categorical))


def via_polars(table: pa.Table, rng: random.Random) -> pl.DataFrame:
    return pl.from_arrow(table)  # type: ignore[return-value]


def via_record_batch_reader(
    table: pa.Table, rng: random.Random
) -> Callable[[], pa.RecordBatchReader]:
    """A reader is consumed by one commit: hand out a fresh one per commit."""
    size = rng.randrange(1, 6)
    return lambda: pa.RecordBatchReader.from_batches(
        table.schema, table.to_batches(max_chunksize=size)
    )


LAYOUTS = [
    permuted,
    rechunked,
    rebatched,
    widened,
    dictionary_encoded,
    via_polars,
    via_polars_categorical,
    via_record_batch_reader,
]


def _roots(data: object) -> tuple[str, ...]:
    """Roots under several keys and without key; `data` may be a zero-arg factory."""

    def fresh() -> object:
        return data() if callable(data) else data

    return (
        commit_table(fresh(), ["id"]).root,
        commit_table(fresh(), ["grp", "id"]).root,
        commit_table(fresh()).root,
        commit_table(fresh(), ["score"]).root,  # duplicate floats, NaN, -0.0, nulls
        commit_table(fresh(), ["flag", "grp"]).root,  # many duplicate keys
    )


def _proof_root(table: pa.Table, key: list[str] | None) -> str:
    """Root over leaf_hash_matrix(sorted_table(...)): the leaf order proofs index into."""
    return root_of_leaf_hashes(leaf_hash_matrix(sorted_table(table, key))).hex()


@SETTINGS
@given(sizes, seeds)
def test_root_independent_of_layout(n: int, seed: int) -> None:
    table = random_table(n, seed)
    rng = random.Random(seed)
    expected = _roots(table)
    for layout in LAYOUTS:
        assert _roots(layout(table, rng)) == expected, layout.__name__
    # several layout changes at once
    mixed = rechunked(widened(permuted(table, rng), rng), rng)
    assert _roots(mixed) == expected
    # the commitment matches the order proofs are built over
    assert _proof_root(mixed, ["id"]) == expected[0]
    assert _proof_root(mixed, None) == expected[2]


@SETTINGS
@given(sizes, seeds, st.sampled_from([1, 2, 4, 8]))
def test_root_independent_of_batch_size(n: int, seed: int, batch_rows: int) -> None:
    """Blocks of BATCH_ROWS rows (a power of two: blocks are perfect subtrees) give one root."""
    table = random_table(n, seed)
    rng = random.Random(seed)
    expected = _roots(table)
    with mock.patch.object(commitment, "BATCH_ROWS", batch_rows):
        assert _roots(permuted(table, rng)) == expected
        assert _proof_root(table, ["id"]) == expected[0]


@SETTINGS
@given(sizes, seeds)
def test_duplicate_keys_give_a_layout_independent_root(n: int, seed: int) -> None:
    table = random_table(n, seed, duplicate_keys=True)
    rng = random.Random(seed + 1)
    expected = _roots(table)
    for layout in LAYOUTS:
        assert _roots(layout(table, rng)) == expected, layout.__name__
    assert _proof_root(permuted(table, rng), ["id"]) == expected[0]


@SETTINGS
@given(st.integers(1, 25), seeds, st.data())
def test_changed_added_or_removed_row_changes_root(n: int, seed: int, data: st.DataObject) -> None:
    table = random_table(n, seed)
    before = _roots(table)
    rows_ = table.to_pylist()
    i = data.draw(st.integers(0, len(rows_) - 1))
    column = data.draw(st.sampled_from(["id", "name", "blob", "flag", "count"]))
    changed = [dict(r) for r in rows_]
    value = changed[i][column]
    changed[i][column] = {
        "id": lambda v: v + 2**41,  # outside the id range: still unique
        "name": lambda v: "x" if v is None else v + "x",
        "blob": lambda v: b"" if v is None else v + b"\x00",
        "flag": lambda v: True if v is None else not v,
        "count": lambda v: 0 if v is None else v ^ 1,
    }[column](value)
    after = pa.Table.from_pylist(changed, schema=SCHEMA)
    assert all(a != b for a, b in zip(_roots(after), before, strict=True))
    removed = table.filter(pc.not_equal(table.column("id"), rows_[i]["id"]))
    assert all(a != b for a, b in zip(_roots(removed), before, strict=True))
    extra = dict(rows_[i], id=2**41 + 1)
    added = pa.concat_tables([table, pa.Table.from_pylist([extra], schema=SCHEMA)])
    assert all(a != b for a, b in zip(_roots(added), before, strict=True))
    # an exact duplicate row is a second leaf: it changes the root too
    duplicated = pa.concat_tables([table, table.slice(i, 1)])
    assert all(a != b for a, b in zip(_roots(duplicated), before, strict=True))


def test_normalized_values_do_not_change_root() -> None:
    """-0.0 vs 0.0, NaN payloads, int32 vs int64: same encoding, same root."""
    nan = float("nan")
    other_nan = -nan
    a = pa.table({"id": pa.array([1, 2], pa.int32()), "x": [0.0, nan]})
    b = pa.table({"id": pa.array([2, 1], pa.int64()), "x": [other_nan, -0.0]})
    assert commit_table(a, ["id"]).root == commit_table(b, ["id"]).root
    assert commit_table(a).root == commit_table(b).root


def test_key_order_and_ties() -> None:
    table = pa.table({"k": [2, None, 1, 2], "v": ["b", "n", "a", "a"]})
    ordered = sorted_table(table, ["k"])
    assert ordered.column("k").to_pylist() == [1, 2, 2, None]  # ascending, nulls last
    assert ordered.column("v").to_pylist() == ["a", "a", "b", "n"]  # ties by leaf bytes
    assert canonical_order(table, ["k"]).to_pylist() == [2, 3, 0, 1]
    # no key: by leaf bytes, where the u32 length prefix puts shorter strings first
    words = pa.table({"w": ["b", "ab", "a", ""]})
    assert sorted_table(words, None).column("w").to_pylist() == ["", "a", "b", "ab"]
    assert sorted_table(words, []).column("w").to_pylist() == ["", "a", "b", "ab"]


def test_missing_key_column_raises_key_error() -> None:
    table = pa.table({"id": [1, 2]})
    with pytest.raises(KeyError, match="nope"):
        commit_table(table, ["nope"])
    with pytest.raises(KeyError, match="nope"):
        commit_table(table, ["id", "nope"])
    with pytest.raises(KeyError):
        canonical_order(table, ["ID"])
    with pytest.raises(KeyError):
        sorted_table(table.slice(0, 0), ["nope"])


def test_empty_and_single_row_tables() -> None:
    empty = SCHEMA.empty_table()
    got = commit_table(empty, ["id"])
    assert got == Commitment(root=EMPTY_ROOT.hex(), row_count=0, schema_hash=schema_hash(SCHEMA))
    assert commit_table(empty).root == EMPTY_ROOT.hex()
    one = pa.table({"id": [7]})
    assert commit_table(one, ["id"]).root == root(encode_rows(one)).hex()


def test_commit_accepts_record_batches_and_rejects_other_objects() -> None:
    table = pa.table({"id": [2, 1], "s": ["b", "a"]})
    expected = commit_table(table, ["id"])
    assert commit_table(table.to_batches()[0], ["id"]) == expected
    assert commit_table(pl.from_arrow(table), ["id"]) == expected
    with pytest.raises(TypeError):
        commit_table([{"id": 1}])


def test_schema_hash_pins_names_and_type_families_not_widths() -> None:
    base = pa.schema([("id", pa.int64()), ("s", pa.string())])
    assert schema_hash(base) == schema_hash(
        pa.schema([("id", pa.int8()), ("s", pa.large_string())])
    )
    assert schema_hash(base) != schema_hash(pa.schema([("id", pa.uint64()), ("s", pa.string())]))
    assert schema_hash(base) != schema_hash(pa.schema([("ID", pa.int64()), ("s", pa.string())]))
    assert schema_hash(base) != schema_hash(pa.schema([("s", pa.string()), ("id", pa.int64())]))
    decimals = [pa.decimal128(10, 2), pa.decimal128(10, 3), pa.decimal128(11, 2)]
    assert len({schema_hash(pa.schema([("d", t)])) for t in decimals}) == 3


def test_column_order_is_part_of_the_commitment() -> None:
    table = pa.table({"id": [1, 2], "s": ["a", "b"]})
    swapped = table.select(["s", "id"])
    assert commit_table(table, ["id"]).root != commit_table(swapped, ["id"]).root


# --- Delta round trips ----------------------------------------------------------------------
def test_delta_round_trip_gives_the_same_root(tmp_path: Path) -> None:
    table = random_table(300, seed=1)
    expected = _roots(table)
    rng = random.Random(2)

    # one write; several appends of a shuffled copy; partitioned by a column
    single, appended, partitioned = (str(tmp_path / name) for name in ("one", "many", "part"))
    write_deltalake(single, table)
    shuffled = permuted(table, rng)
    for start in range(0, shuffled.num_rows, 70):
        write_deltalake(appended, shuffled.slice(start, 70), mode="append")
    write_deltalake(partitioned, shuffled, partition_by=["grp"])

    for uri in (single, appended, partitioned):
        delta = DeltaTable(uri)
        read = delta.to_pyarrow_table()
        assert read.schema.names == SCHEMA.names
        assert _roots(read) == expected, uri
        assert _roots(delta.to_pyarrow_dataset().to_table()) == expected, uri
        assert _roots(pl.read_delta(uri)) == expected, uri
        assert commit_table(read, ["id"]).schema_hash == schema_hash(SCHEMA)

    # time travel: the first append alone is version 0
    first = DeltaTable(appended, version=0).to_pyarrow_table()
    assert commit_table(first, ["id"]).root == commit_table(shuffled.slice(0, 70), ["id"]).root


def test_delta_round_trip_of_nanosecond_timestamps(tmp_path: Path) -> None:
    """Delta keeps microseconds: whole-µs nanosecond timestamps read back with the same root."""
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "at": pa.array([1_000, None, -2_000_000], pa.timestamp("ns", tz="UTC")),
        }
    )
    write_deltalake(str(tmp_path / "t"), table)
    read = DeltaTable(str(tmp_path / "t")).to_pyarrow_table()
    assert read.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert commit_table(read, ["id"]) == commit_table(table, ["id"])


# --- regressions -----------------------------------------------------------------------------
def test_nan_keys_give_a_layout_independent_root() -> None:
    """Regression: NaN != NaN made duplicate NaN keys look unique (root followed row order)."""
    nan = float("nan")
    a = pa.table({"k": [nan, nan, 1.0, -0.0, 0.0], "v": ["x", "y", "z", "p", "q"]})
    rng = random.Random(5)
    expected = commit_table(a, ["k"]).root
    for _ in range(10):
        assert commit_table(permuted(a, rng), ["k"]).root == expected
    negative_nan = pa.table({"k": [-nan, nan, 1.0, 0.0, -0.0], "v": ["y", "x", "z", "q", "p"]})
    assert commit_table(negative_nan, ["k"]).root == expected


def test_dictionary_key_column() -> None:
    """Regression: Arrow cannot sort dictionary columns (a polars Categorical key)."""
    plain = pa.table({"k": ["b", "a", "c", "a"], "v": [1, 2, 3, 4]})
    categorical = pl.from_arrow(plain).with_columns(pl.col("k").cast(pl.Categorical))
    expected = commit_table(plain, ["k"]).root
    assert commit_table(categorical, ["k"]).root == expected
    # dictionaries with other index orders
    reordered = pa.table(
        {
            "k": pa.DictionaryArray.from_arrays(
                pa.array([0, 1, 2, 1], pa.int8()), pa.array(["b", "a", "c"])
            ),
            "v": [1, 2, 3, 4],
        }
    )
    assert commit_table(reordered, ["k"]).root == expected
    assert commit_table(permuted(reordered, random.Random(1)), ["k", "v"]).root == (
        commit_table(plain, ["k", "v"]).root
    )


def test_unsupported_key_column_raises_unsupported_type_error() -> None:
    """Regression: an unsupported key column failed in Arrow's sort instead."""
    table = pa.table({"tags": pa.array([["a"], ["b"]]), "id": [1, 2]})
    for key in (["tags"], ["id"], None):
        with pytest.raises(UnsupportedTypeError, match="'tags'"):
            commit_table(table, key)


# --- integer keys: numpy sort path --------------------------------------------------------
INTEGER_KEY_TYPES = [
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.uint32(),
    pa.uint64(),
    pa.timestamp("us", tz="UTC"),
    pa.timestamp("us"),
    pa.date32(),
    pa.date64(),
]


def _type_range(kind: pa.DataType) -> tuple[int, int]:
    if pa.types.is_integer(kind):
        bits = kind.bit_width
        if pa.types.is_signed_integer(kind):
            return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return 0, 2**bits - 1
    if pa.types.is_date32(kind):
        return -(2**31), 2**31 - 1
    if pa.types.is_date64(kind):
        return -(10**6), 10**6  # days, stored as whole days of milliseconds
    return -(2**63), 2**63 - 1


def _integer_key_table(kind: pa.DataType, values: list[int]) -> pa.Table:
    if pa.types.is_date64(kind):
        storage = pa.array([v * 86_400_000 for v in values], pa.int64())
    else:
        storage = pa.array(values, pa.int64() if not pa.types.is_integer(kind) else kind)
        storage = storage.cast(pa.int32() if pa.types.is_date32(kind) else storage.type)
    return pa.table({"k": storage.view(kind), "v": pa.array([str(v) for v in values], pa.string())})


@SETTINGS
@given(st.sampled_from(INTEGER_KEY_TYPES), st.data())
def test_integer_key_order_equals_arrow_sort(kind: pa.DataType, data: st.DataObject) -> None:
    """The numpy sort of an integer key (packed or argsort) orders rows as Arrow does."""
    lo, hi = _type_range(kind)
    edges = st.sampled_from([lo, hi, 0, 1, lo + 1, hi - 1]).filter(lambda v: lo <= v <= hi)
    values = data.draw(st.lists(st.integers(lo, hi) | edges, max_size=60, unique=True))
    table = _integer_key_table(kind, values)
    expected = pc.sort_indices(table, sort_keys=[("k", "ascending")]).to_pylist()
    assert canonical_order(table, ["k"]).to_pylist() == expected
    ordered = table.take(pa.array(expected, pa.int64()))
    assert canonical_order(ordered, ["k"]).to_pylist() == list(range(len(values)))
    assert commit_table(ordered, ["k"]) == commit_table(table, ["k"])


@SETTINGS
@given(st.lists(st.integers(-3, 3), max_size=40), seeds)
def test_duplicate_integer_keys_tie_by_leaf_bytes(keys: list[int], seed: int) -> None:
    """Duplicate integer keys (no nulls) fall back to the key + leaf-byte order."""
    rng = random.Random(seed)
    values = pa.array([rng.choice(["a", "b", "c"]) for _ in keys], pa.string())
    table = pa.table({"k": pa.array(keys, pa.int64()), "v": values})
    rows_ = sorted(zip(table.column("k").to_pylist(), encode_rows(table), strict=True))
    assert commit_table(table, ["k"]).root == root([r for _, r in rows_]).hex()
    assert commit_table(permuted(table, rng), ["k"]).root == root([r for _, r in rows_]).hex()


@pytest.mark.parametrize("batch_rows", [1, 2, 4, 1 << 17])
def test_already_sorted_key_is_committed_without_gather(batch_rows: int) -> None:
    """Rows already in key order (sliced, many chunks) give the root of any other order."""
    table = random_table(97, 7)
    ordered = sorted_table(table, ["id"])
    chunked = pa.concat_tables([ordered.slice(s, 10) for s in range(0, 97, 10)])
    tail = pa.concat_tables([table.slice(0, 3), ordered]).slice(3)  # columns with an offset
    with mock.patch.object(commitment, "BATCH_ROWS", batch_rows):
        expected = commit_table(table, ["id"])
        assert commit_table(ordered, ["id"]) == expected
        assert commit_table(chunked, ["id"]) == expected
        assert commit_table(tail, ["id"]) == expected


STRING_KEY_TYPES = [pa.string(), pa.large_string(), pa.binary(), pa.large_binary()]
# short alphabets and shared prefixes make 8-byte prefix ties, zero bytes and empty keys
# test the zero padding, non-ASCII text the byte order
key_text = st.text(alphabet=["a", "b", "\x00", "é", "☃"], max_size=12) | st.sampled_from(
    ["", "abcdefgh", "abcdefgh\x00", "abcdefghi", "abcdefgg", "abcdefgi"]
)


@SETTINGS
@given(st.sampled_from(STRING_KEY_TYPES), st.lists(key_text, max_size=60), seeds)
def test_string_key_order_equals_arrow_sort(kind: pa.DataType, texts: list[str], seed: int) -> None:
    """The 8-byte prefix sort of a string or binary key orders rows as Arrow does, prefix
    ties included; duplicates fall back to the key + leaf-byte order, with the same root."""
    values = [t.encode() for t in texts] if pa.types.is_binary(kind) or pa.types.is_large_binary(
        kind
    ) else texts  # fmt: skip
    table = pa.table({"k": pa.array(values, kind), "v": pa.array(range(len(values)), pa.int64())})
    expected_root = commit_table(table, ["k"])
    rows_ = sorted(zip([str(v) for v in texts], encode_rows(table), strict=True))
    if len(set(texts)) == len(texts):
        expected = pc.sort_indices(table, sort_keys=[("k", "ascending")]).to_pylist()
        assert canonical_order(table, ["k"]).to_pylist() == expected
    else:
        assert expected_root.root == root([r for _, r in sorted(rows_, key=lambda x: (
            x[0].encode(), x[1]))]).hex()  # fmt: skip
    shuffled = permuted(table, random.Random(seed))
    assert commit_table(shuffled, ["k"]) == expected_root
    with mock.patch.object(commitment, "MAX_PREFIX_TIES", 1.0):  # never hand over to Arrow
        assert commit_table(shuffled, ["k"]) == expected_root
    with mock.patch.object(commitment, "MAX_PREFIX_TIES", 0.0):  # always hand over on a tie
        assert commit_table(shuffled, ["k"]) == expected_root


def test_hex_hash_keys_are_sorted_without_arrow() -> None:
    """Row hashes (64 hex characters) rarely tie on 8 bytes: the numpy path orders them."""
    keys = [f"{random.Random(i).getrandbits(256):064x}" for i in range(3000)]
    table = pa.table({"row_hash": keys, "v": list(range(3000))})
    with mock.patch.object(commitment.pc, "sort_indices", side_effect=AssertionError):
        order = canonical_order(table, ["row_hash"]).to_pylist()
    assert [keys[i] for i in order] == sorted(keys)
