"""Invariant 5: editing, adding, removing or reordering committed rows or ledger entries is
detected, and the verification report names the entry (or table version) concerned.

One small lake is built once per module; every test tampers with its own copy of it.

Rewriting a Parquet file "in place" changes its byte size, and delta-rs reads a file's
footer at the size recorded in the Delta log, so a naive rewrite just makes the snapshot
unreadable. The helpers below therefore act like a careful attacker: they rewrite the file
under the same name *and* patch the size (and drop the stats) of its `add` action in the
`_delta_log`, so the snapshot reads cleanly and only the ledger's roots can catch the edit.
One test keeps the naive rewrite to show that an unreadable snapshot is reported as well.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from ledger.checkpoint import (
    CheckpointError,
    check_against_ledger,
    checkpoint_of,
    generate_keys,
    open_checkpoint,
    sign_checkpoint,
)
from ledger.commitment import commit_table
from ledger.compact import CompactRange
from ledger.hashing import EMPTY_ROOT
from ledger.lake import Lake
from ledger.log import LEDGER_SCHEMA, entry_leaf
from ledger.merkle import leaf_hash, root
from ledger.proofcheck import check_proof_document
from ledger.proofs import consistency_proof_document
from ledger.verify import VerifyReport, verify_lake

UTC_US = pa.timestamp("us", tz="UTC")
CONTRIB = "contributions"
MODELS = "models"
PART = "datanet"

# The pristine lake: (seq, table, Delta version, partition value)
#   0  contributions v0  datanet=alpha
#   1  contributions v1  datanet=beta
#   2  models        v0  (unpartitioned)
#   3  contributions v2  datanet=alpha (second version of that partition)
ENTRIES = [
    (0, CONTRIB, 0, "alpha"),
    (1, CONTRIB, 1, "beta"),
    (2, MODELS, 0, None),
    (3, CONTRIB, 2, "alpha"),
]


def _contributions(datanet: str, ids: list[int], labels: list[float]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            PART: pa.array([datanet] * len(ids), pa.string()),
            "contributor": pa.array([f"c{i % 3}" for i in ids], pa.string()),
            "label": pa.array(labels, pa.float64()),
            "received_at": pa.array([1_700_000_000_000_000 + i for i in ids], UTC_US),
        }
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root_dir = tmp_path_factory.mktemp("pristine") / "lake"
    lake = Lake(root_dir)
    lake.write(
        CONTRIB,
        _contributions("alpha", [1, 2, 3], [0.5, 1.5, 2.5]),
        partition=(PART, "alpha"),
        key=["id"],
        run_id="run-1",
    )
    lake.write(
        CONTRIB,
        _contributions("beta", [10, 11], [4.0, 5.0]),
        partition=(PART, "beta"),
        key=["id"],
        run_id="run-2",
    )
    lake.write(MODELS, pa.table({"model_id": ["m1", "m2"], "auc": [0.71, 0.83]}), run_id="run-3")
    lake.write(
        CONTRIB,
        _contributions("alpha", [1, 2, 3, 4], [0.5, 1.75, 2.5, 3.5]),
        partition=(PART, "alpha"),
        key=["id"],
        run_id="run-4",
    )
    return root_dir


@pytest.fixture
def work(pristine: Path, tmp_path: Path) -> Lake:
    """A private copy of the pristine lake to tamper with."""
    target = tmp_path / "lake"
    shutil.copytree(pristine, target)
    return Lake(target)


# --- helpers --------------------------------------------------------------------------------


def _table_dir(lake: Lake, name: str) -> Path:
    return Path(lake.root) / "tables" / name


def _data_file(lake: Lake, name: str, version: int, partition: str | None) -> Path:
    """The single data file of a table version (and partition)."""
    uris = DeltaTable(str(_table_dir(lake, name)), version=version).file_uris()
    if partition is not None:
        uris = [u for u in uris if f"/{PART}={partition}/" in u]
    assert len(uris) == 1, uris
    return Path(unquote(uris[0].removeprefix("file://")))


def _patch_delta_log(table_dir: Path, data_file: Path) -> None:
    """Make the Delta log agree with a rewritten file: new size, no stale stats."""
    relative = data_file.relative_to(table_dir).as_posix()
    size = data_file.stat().st_size
    for commit in sorted((table_dir / "_delta_log").glob("*.json")):
        lines = commit.read_text().splitlines()
        changed = False
        for i, line in enumerate(lines):
            action = json.loads(line)
            add = action.get("add")
            if add is not None and unquote(add["path"]) == relative:
                add["size"] = size
                add.pop("stats", None)
                lines[i] = json.dumps(action, separators=(",", ":"))
                changed = True
        if changed:
            commit.write_text("\n".join(lines) + "\n")


def _rewrite(table_dir: Path, data_file: Path, table: pa.Table, patch_log: bool = True) -> None:
    """Overwrite a Parquet file under the same name (optionally fixing up the Delta log)."""
    pq.write_table(table, data_file)
    if patch_log:
        _patch_delta_log(table_dir, data_file)


def _float_column(table: pa.Table) -> str:
    return next(f.name for f in table.schema if pa.types.is_floating(f.type))


def _edit_value(table: pa.Table) -> pa.Table:
    name = _float_column(table)
    values = table.column(name).to_pylist()
    values[0] = values[0] + 1.0
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values))


def _add_row(table: pa.Table) -> pa.Table:
    extra = _edit_value(table.slice(0, 1))
    return pa.concat_tables([table, extra])


def _remove_row(table: pa.Table) -> pa.Table:
    return table.slice(1)


def _ledger_dir(lake: Lake) -> Path:
    return Path(lake.root) / "ledger"


def _ledger_file(lake: Lake, seq: int) -> Path:
    """The ledger's data file that holds entry `seq` (one file per append)."""
    for uri in DeltaTable(str(_ledger_dir(lake))).file_uris():
        path = Path(unquote(uri.removeprefix("file://")))
        if seq in pq.ParquetFile(path).read(columns=["seq"]).column("seq").to_pylist():
            return path
    raise AssertionError(f"no ledger file holds entry {seq}")


def _rewrite_ledger_file(
    lake: Lake, seq: int, change: Callable[[pa.Table], pa.Table], patch_log: bool = True
) -> None:
    path = _ledger_file(lake, seq)
    table = pq.ParquetFile(path).read()
    _rewrite(_ledger_dir(lake), path, change(table).cast(table.schema), patch_log)


def _set_field(table: pa.Table, name: str, value: object) -> pa.Table:
    index = table.schema.get_field_index(name)
    field = table.schema.field(index)
    return table.set_column(index, field, pa.array([value] * table.num_rows, field.type))


def _problem_seqs(report: VerifyReport) -> set[int | None]:
    return {p.seq for p in report.problems}


def _messages(report: VerifyReport) -> str:
    return "\n".join(str(p) for p in report.problems)


# --- the untampered lake ------------------------------------------------------------------


def test_pristine_lake_verifies(work: Lake) -> None:
    report = verify_lake(work)
    assert report.ok, _messages(report)
    assert report.entries == len(ENTRIES)
    assert [
        (e.seq, e.table_uri, e.delta_version, e.partition_key) for e in work.ledger.entries()
    ] == [(seq, f"tables/{name}", version, part) for seq, name, version, part in ENTRIES]


def test_helpers_alone_do_not_trip_verification(work: Lake) -> None:
    """Rewriting a file with identical rows (and patching the log) is not a tamper."""
    for _, name, version, part in ENTRIES:
        path = _data_file(work, name, version, part)
        _rewrite(_table_dir(work, name), path, pq.ParquetFile(path).read())
    for seq, *_ in ENTRIES:
        _rewrite_ledger_file(work, seq, lambda t: t)
    report = verify_lake(work)
    assert report.ok, _messages(report)


# --- (a) (b) (c): rows edited, added, removed in a committed table version ----------------


def _where(name: str, version: int, part: str | None) -> str:
    return f"tables/{name} v{version}" + (f" [{PART}={part}]" if part else "")


@pytest.mark.parametrize(
    ("seq", "name", "version", "part"), ENTRIES, ids=[f"seq{e[0]}-{e[1]}-v{e[2]}" for e in ENTRIES]
)
@pytest.mark.parametrize(
    "tamper", [_edit_value, _add_row, _remove_row], ids=["edited", "added", "removed"]
)
def test_row_tamper_names_the_entry(
    work: Lake,
    seq: int,
    name: str,
    version: int,
    part: str | None,
    tamper: Callable[[pa.Table], pa.Table],
) -> None:
    path = _data_file(work, name, version, part)
    _rewrite(_table_dir(work, name), path, tamper(pq.ParquetFile(path).read()))

    report = verify_lake(work)
    assert not report.ok
    assert report.first is not None and report.first.seq == seq, _messages(report)
    # Only that entry is blamed, the message names the table version, and the data root.
    assert _problem_seqs(report) == {seq}, _messages(report)
    assert str(report.first).startswith(f"entry {seq}: {_where(name, version, part)}:")
    assert "data root" in _messages(report)
    if tamper is not _edit_value:
        assert "rows, ledger says" in _messages(report)


def test_naive_in_place_rewrite_is_reported_for_its_entry(work: Lake) -> None:
    """Without fixing the Delta log the snapshot is unreadable: still caught, still named."""
    path = _data_file(work, CONTRIB, 2, "alpha")
    _rewrite(
        _table_dir(work, CONTRIB), path, _edit_value(pq.ParquetFile(path).read()), patch_log=False
    )
    report = verify_lake(work)
    assert not report.ok
    assert report.first is not None and report.first.seq == 3, _messages(report)
    assert "tables/contributions" in str(report.first)


# --- (d) a data file replaced by another file ----------------------------------------------


@pytest.mark.parametrize("source", ["other-table", "other-version"])
def test_replaced_data_file_names_the_entry(work: Lake, source: str) -> None:
    target = _data_file(work, CONTRIB, 2, "alpha")
    donor = (
        _data_file(work, MODELS, 0, None)
        if source == "other-table"
        else _data_file(work, CONTRIB, 0, "alpha")
    )
    shutil.copyfile(donor, target)
    _patch_delta_log(_table_dir(work, CONTRIB), target)

    report = verify_lake(work)
    assert not report.ok
    assert report.first is not None and report.first.seq == 3, _messages(report)
    assert _problem_seqs(report) == {3}, _messages(report)
    assert "tables/contributions" in str(report.first)
    if source == "other-version":  # same schema, older rows: a clean root mismatch
        assert "3 rows, ledger says 4" in _messages(report)
        assert "data root" in _messages(report)


# --- (e) a Delta version written without a ledger entry -----------------------------------


@pytest.mark.parametrize("target", ["models", "contributions", "rogue"])
def test_unledgered_delta_version_is_reported(work: Lake, target: str) -> None:
    uri = str(_table_dir(work, target))
    if target == "models":
        write_deltalake(uri, pa.table({"model_id": ["m3"], "auc": [0.99]}), mode="append")
        expected = "tables/models: Delta version(s) [1]"
    elif target == "contributions":
        write_deltalake(
            uri, _contributions("alpha", [99], [9.0]), mode="append", partition_by=[PART]
        )
        expected = "tables/contributions: Delta version(s) [3]"
    else:
        write_deltalake(uri, pa.table({"x": [1]}), mode="error")
        expected = "tables/rogue: Delta version(s) [0]"

    report = verify_lake(work)
    assert not report.ok
    assert len(report.problems) == 1, _messages(report)
    assert report.first is not None and report.first.seq is None
    assert str(report.first).startswith(expected)
    assert "no ledger entry" in str(report.first)


# --- (f) a ledger entry field edited ------------------------------------------------------


@pytest.mark.parametrize(
    ("seq", "field", "value"),
    [
        (1, "row_count", 3),
        (2, "data_root", "00" * 32),
        (3, "delta_version", 1),
        (0, "table_uri", "tables/models"),
        (1, "partition_key", "alpha"),
        (2, "schema_hash", "ab" * 32),
        (3, "run_id", "run-forged"),
        (0, "prev_log_root", "11" * 32),
    ],
)
def test_edited_ledger_field_names_the_entry(
    work: Lake, seq: int, field: str, value: object
) -> None:
    _rewrite_ledger_file(work, seq, lambda t: _set_field(t, field, value))
    assert getattr(work.ledger.entries()[seq], field) == value  # the edit took

    report = verify_lake(work)
    assert not report.ok
    assert report.first is not None and report.first.seq == seq, _messages(report)
    assert min(s for s in _problem_seqs(report) if s is not None) == seq


def test_edited_entry_hash_and_log_root_name_the_entry(work: Lake) -> None:
    """Editing only the derived hashes is caught too (the next entry's link breaks)."""
    _rewrite_ledger_file(
        work, 1, lambda t: _set_field(_set_field(t, "entry_hash", "22" * 32), "log_root", "33" * 32)
    )
    report = verify_lake(work)
    assert report.first is not None and report.first.seq == 1, _messages(report)
    assert "entry hash differs" in str(report.first)


# --- (g) (h) (i) ledger entries removed, duplicated, reordered ----------------------------


def test_removed_middle_entry_is_named(work: Lake) -> None:
    _rewrite_ledger_file(work, 1, lambda t: t.slice(0, 0))
    report = verify_lake(work)
    assert not report.ok
    assert report.first is not None and report.first.seq == 2, _messages(report)
    assert "expected entry 1, found 2" in str(report.first)
    # The table version the removed entry covered is now unledgered.
    assert "tables/contributions: Delta version(s) [1] have no ledger entry" in _messages(report)


def test_removed_last_entry_leaves_its_version_unledgered(work: Lake) -> None:
    _rewrite_ledger_file(work, 3, lambda t: t.slice(0, 0))
    report = verify_lake(work)
    assert not report.ok
    assert report.entries == 3
    assert report.first is not None
    assert str(report.first).startswith("tables/contributions: Delta version(s) [2]")


def test_duplicated_entry_is_named(work: Lake) -> None:
    _rewrite_ledger_file(work, 1, lambda t: pa.concat_tables([t, t]))
    report = verify_lake(work)
    assert not report.ok
    assert report.entries == len(ENTRIES) + 1
    assert report.first is not None and report.first.seq == 1, _messages(report)
    assert any(p.seq == 1 and "more than once" in p.what for p in report.problems)


def test_duplicated_entry_appended_as_new_file_is_named(work: Lake) -> None:
    """An extra copy added through deltalake (an append, so history looks fine)."""
    copy = work.ledger.read_table().filter(pc.equal(pc.field("seq"), 2))
    write_deltalake(str(_ledger_dir(work)), copy, mode="append")
    report = verify_lake(work)
    assert not report.ok
    assert report.first is not None and report.first.seq == 2, _messages(report)
    assert any(p.seq == 2 and "more than once" in p.what for p in report.problems)


@pytest.mark.parametrize(("i", "j"), [(1, 2), (0, 3)])
def test_swapped_sequence_numbers_are_named(work: Lake, i: int, j: int) -> None:
    path_i, path_j = _ledger_file(work, i), _ledger_file(work, j)
    row_i, row_j = pq.ParquetFile(path_i).read(), pq.ParquetFile(path_j).read()
    _rewrite(_ledger_dir(work), path_i, _set_field(row_i, "seq", j))
    _rewrite(_ledger_dir(work), path_j, _set_field(row_j, "seq", i))
    assert [e.run_id for e in work.ledger.entries()][i] == f"run-{j + 1}"  # reordered

    report = verify_lake(work)
    assert not report.ok
    assert report.first is not None and report.first.seq == i, _messages(report)
    assert "entry hash differs" in str(report.first)


# --- (j) the ledger rewritten through deltalake -------------------------------------------


def test_ledger_overwrite_is_caught_by_history(work: Lake) -> None:
    uri = str(_ledger_dir(work))
    same_rows = DeltaTable(uri).to_pyarrow_table()
    write_deltalake(uri, same_rows, mode="overwrite")  # identical content, new version

    report = verify_lake(work)
    assert not report.ok
    assert len(report.problems) == 1, _messages(report)
    assert report.first is not None and report.first.seq is None
    assert "ledger table version 4 is a WRITE (Overwrite)" in str(report.first)
    assert "rewritten" in str(report.first)


def test_ledger_delete_is_caught_by_history(work: Lake) -> None:
    DeltaTable(str(_ledger_dir(work))).delete("seq = 3")
    report = verify_lake(work)
    assert not report.ok
    assert any("ledger table version 4 is a DELETE" in p.what for p in report.problems)
    assert "tables/contributions: Delta version(s) [2]" in _messages(report)


# --- (k) a self-consistent forgery: caught by a checkpoint and a consistency proof ----------


def _forge_chain(lake: Lake, edits: dict[int, dict[str, object]]) -> None:
    """Apply `edits` to entries and recompute every entry hash and log root, as an attacker
    with the library would, then write the forged rows back into the same files."""
    values = [asdict(e) for e in lake.ledger.entries()]
    for seq, changes in edits.items():
        values[seq].update(changes)
    prev = EMPTY_ROOT.hex()
    leaves: list[bytes] = []
    log = CompactRange.empty()
    for v in values:
        v["prev_log_root"] = prev
        leaves.append(entry_leaf(v))
        v["entry_hash"] = leaf_hash(leaves[-1]).hex()
        v["log_root"] = root(leaves).hex()
        log = log.extend(np.frombuffer(leaf_hash(leaves[-1]), np.uint8).reshape(1, 32))
        v["log_range"] = log.text()  # the attacker recomputes the derived range too
        prev = v["log_root"]
    for v in values:
        row = pa.Table.from_pylist([v], schema=LEDGER_SCHEMA)
        _rewrite_ledger_file(lake, v["seq"], lambda t, row=row: row)  # type: ignore[misc]


def test_consistent_forgery_is_caught_by_signed_checkpoint_and_consistency_proof(
    work: Lake,
) -> None:
    signer, verifier = generate_keys("openledger-test")
    honest = work.ledger.entries()
    trusted_size = 2
    published_old = sign_checkpoint(checkpoint_of(honest, "lake.test", trusted_size), signer)
    published_head = sign_checkpoint(checkpoint_of(honest, "lake.test"), signer)
    honest_proof = consistency_proof_document(work, trusted_size)
    assert check_proof_document(honest_proof)[0]

    # The attacker edits a committed row, recomputes that entry's data root, then every
    # entry hash, previous log root and log root after it.
    path = _data_file(work, CONTRIB, 0, "alpha")
    _rewrite(_table_dir(work, CONTRIB), path, _edit_value(pq.ParquetFile(path).read()))
    forged_root = commit_table(work.read(CONTRIB, 0, (PART, "alpha")), ["id"]).root
    _forge_chain(work, {0: {"data_root": forged_root}})

    forged = work.ledger.entries()
    assert forged[0].data_root == forged_root != honest[0].data_root
    # Self-consistent: recomputing the lake alone cannot see it...
    report = verify_lake(work)
    assert report.ok, _messages(report)

    # ...but a checkpoint published before refutes it,
    for note in (published_old, published_head):
        checkpoint = open_checkpoint(note, verifier)
        with pytest.raises(CheckpointError, match="differs from the checkpoint"):
            check_against_ledger(checkpoint, forged)
        check_against_ledger(checkpoint, honest)  # the honest ledger agrees

    # ...and so does a consistency proof from the trusted checkpoint to the forged head.
    trusted = open_checkpoint(published_old, verifier)
    for new_size in range(trusted_size, len(forged) + 1):
        doc = consistency_proof_document(work, trusted_size, new_size)
        assert doc["old_root"] != trusted.root.hex()  # the forger's claimed old root
        doc["old_root"] = trusted.root.hex()  # what the auditor actually trusts
        ok, message = check_proof_document(doc)
        assert not ok, message
        assert "does NOT verify" in message

    # The forged ledger also fails against a signed checkpoint after a later append.
    work.write(MODELS, pa.table({"model_id": ["m9"], "auc": [0.5]}))
    grown = work.ledger.entries()
    doc = consistency_proof_document(work, trusted_size)
    doc["old_root"] = trusted.root.hex()
    assert not check_proof_document(doc)[0]
    with pytest.raises(CheckpointError):
        check_against_ledger(open_checkpoint(published_head, verifier), grown)


def test_truncated_ledger_is_caught_by_checkpoint(work: Lake) -> None:
    signer, verifier = generate_keys("openledger-test")
    note = sign_checkpoint(checkpoint_of(work.ledger.entries(), "lake.test"), signer)
    _rewrite_ledger_file(work, 3, lambda t: t.slice(0, 0))
    with pytest.raises(CheckpointError, match="entries were removed"):
        check_against_ledger(open_checkpoint(note, verifier), work.ledger.entries())


# --- known gap --------------------------------------------------------------------------------


def test_rows_added_to_another_partition_of_a_ledgered_version_are_detected(
    work: Lake,
) -> None:
    table_dir = _table_dir(work, CONTRIB)
    relative = f"{PART}=beta/part-00000-forged-c000.snappy.parquet"
    forged = _contributions("beta", [12], [99.0]).drop_columns([PART])
    pq.write_table(forged, table_dir / relative)
    add = {
        "add": {
            "path": relative,
            "partitionValues": {PART: "beta"},
            "size": (table_dir / relative).stat().st_size,
            "modificationTime": 1_700_000_000_000,
            "dataChange": True,
        }
    }
    commit = table_dir / "_delta_log" / f"{2:020d}.json"
    commit.write_text(commit.read_text().rstrip("\n") + "\n" + json.dumps(add) + "\n")
    assert sorted(work.read(CONTRIB, partition=(PART, "beta")).column("id").to_pylist()) == [
        10,
        11,
        12,
    ]  # the forged row is served as current data

    report = verify_lake(work)
    assert not report.ok
