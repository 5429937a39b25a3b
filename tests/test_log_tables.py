"""Log tables (docs/ledger-spec.md §4.2, §5): appends extend the committed tree, versions
are consistent, orphans are rolled back, tampering with an old row is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from ledger.commitment import commit_table
from ledger.lake import Lake, LakeError
from ledger.log import LedgerError
from ledger.proofcheck import check_proof_document
from ledger.proofs import table_consistency_proof_document
from ledger.verify import verify_lake

PART = ("datanet", "wine")


def rows(values: list[int], datanet: str = "wine") -> pa.Table:
    return pa.table(
        {
            "datanet": pa.array([datanet] * len(values), pa.string()),
            "x": pa.array(values, pa.int64()),
        }
    )


@settings(max_examples=examples(25), deadline=None)
@given(st.lists(st.lists(st.integers(-5, 5), max_size=6), min_size=1, max_size=6))
def test_incremental_roots_equal_full_recomputation(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[int]]
) -> None:
    lake = Lake(tmp_path_factory.mktemp("log") / "lake")
    everything: list[int] = []
    for batch in batches:
        committed = lake.append("events", rows(batch), partition=PART)
        everything += batch
        table = lake.read("events", committed.delta_version, PART)
        full = commit_table(table, ["seq"])
        assert (
            committed.entry.data_root == full.root and committed.entry.row_count == full.row_count
        )
        assert sorted(table.column("seq").to_pylist()) == list(range(len(everything)))
        assert table.sort_by("seq").column("x").to_pylist() == everything
    assert verify_lake(lake).ok


def test_an_append_reads_back_only_its_own_rows(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.append("events", rows(list(range(1000))), partition=PART)
    first = DeltaTable(str(tmp_path / "lake/tables/events")).file_uris()
    # make the first file unreadable: an append that re-read it would fail
    committed = lake.append("events", rows([7]), partition=PART)
    assert committed.entry.old_row_count == 1000 and committed.entry.row_count == 1001
    path = Path(first[0].removeprefix("file://"))
    path.write_bytes(b"not parquet any more")
    assert lake.append("events", rows([8]), partition=PART).entry.row_count == 1002


def test_partitions_number_their_rows_separately(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.append("events", rows([1, 2]), partition=PART)
    other = lake.append("events", rows([3], "bc"), partition=("datanet", "bc"))
    assert (other.entry.old_row_count, other.entry.row_count) == (0, 1)
    assert lake.append("events", rows([4]), partition=PART).entry.old_row_count == 2


def test_appending_nothing_commits_nothing(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    first = lake.append("events", rows([1]), partition=PART)
    again = lake.append("events", rows([]), partition=PART)
    assert again.entry == first.entry
    assert lake.ledger.head().seq == 0  # type: ignore[union-attr]


def test_seq_is_assigned_by_the_lake_and_kinds_do_not_mix(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    with pytest.raises(LakeError, match="assigned by the lake"):
        lake.append("events", pa.table({"seq": [1], "datanet": ["wine"]}), partition=PART)
    lake.write("snap", rows([1]), partition=PART)
    with pytest.raises(LakeError, match="snapshot table"):
        lake.append("snap", rows([2]), partition=PART)


def test_table_consistency_proof(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    old = lake.append("events", rows([1, 2, 3]), partition=PART)
    lake.append("events", rows([4]), partition=PART)
    lake.write("other", rows([9]))
    lake.append("events", rows([5, 6]), partition=PART)
    doc = table_consistency_proof_document(lake, "events", old.delta_version, None, "wine")
    ok, message = check_proof_document(json.loads(json.dumps(doc)))
    assert ok, message
    assert "(3 rows" in message and "(6 rows" in message
    forged = json.loads(json.dumps(doc))
    forged["proof"][0] = "00" * 32
    assert check_proof_document(forged) == (
        False,
        "the old rows are NOT a prefix of the new version's rows",
    )
    swapped = dict(doc, old=doc["new"], new=doc["old"])
    assert not check_proof_document(swapped)[0]


def test_an_orphan_version_is_rolled_back_and_verify_accepts_exactly_that(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path / "lake")
    lake.append("events", rows([1, 2]), partition=PART)
    uri = str(tmp_path / "lake/tables/events")
    crashed = rows([99]).add_column(0, "seq", pa.array([2], pa.int64()))
    write_deltalake(uri, crashed, mode="append", partition_by=["datanet"])  # no ledger entry
    report = verify_lake(lake)
    assert not report.ok and "have no ledger entry" in str(report.first)

    rolled = lake.recover(run_id="test", code_version="test")
    assert [(e.entry_type, e.superseded, e.row_count) for e in rolled] == [("rollback", "1", 2)]
    assert verify_lake(lake).ok
    assert lake.read("events", partition=PART).sort_by("seq").column("x").to_pylist() == [1, 2]
    after = lake.append("events", rows([3]), partition=PART)
    assert (after.entry.old_row_count, after.entry.row_count) == (2, 3)
    assert verify_lake(lake).ok
    # a rollback entry claiming another state is not accepted
    loose = rolled[0]
    assert loose.data_root != "00" * 32


def test_tampering_with_an_old_appended_row_is_named(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    first = lake.append("events", rows([1, 2, 3]), partition=PART)
    lake.append("events", rows([4, 5]), partition=PART)
    lake.append("events", rows([6]), partition=PART)
    table = tmp_path / "lake/tables/events"
    target = next(
        Path(u.removeprefix("file://"))
        for u in DeltaTable(str(table), version=first.delta_version).file_uris()
    )
    data = pq.read_table(target)
    edited = data.set_column(
        data.schema.get_field_index("x"), "x", pa.array([1, 20, 3], pa.int64())
    )
    _rewrite_in_place(table, target, edited)
    report = verify_lake(lake)
    assert not report.ok
    assert report.first is not None and report.first.seq == first.entry.seq
    assert "rows 0..2 appended by this entry" in str(report.first)


def test_a_format_1_ledger_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "old"
    write_deltalake(str(old / "ledger"), pa.table({"seq": [0], "log_root": ["ab"]}))
    with pytest.raises(LedgerError, match="ledger format 1"):
        Lake(old).ledger.entries()


def test_compaction_keeps_the_ledger_verifiable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ledger.log

    monkeypatch.setattr(ledger.log, "COMPACT_EVERY", 4)
    lake = Lake(tmp_path / "lake")
    for i in range(10):
        lake.append("events", rows([i]), partition=PART)
    history = [h["operation"] for h in DeltaTable(str(tmp_path / "lake/ledger")).history()]
    assert history.count("OPTIMIZE") == 2
    assert verify_lake(lake).ok
    assert lake.ledger.latest("tables/events", "wine").row_count == 10  # type: ignore[union-attr]


def _rewrite_in_place(table_dir: Path, data_file: Path, table: pa.Table) -> None:
    """Rewrite a data file under its name and patch its size in the Delta log (what a
    careful attacker does so the snapshot still reads)."""
    pq.write_table(table, data_file)
    relative = data_file.relative_to(table_dir).as_posix()
    for commit in sorted((table_dir / "_delta_log").glob("*.json")):
        lines = commit.read_text().splitlines()
        for i, line in enumerate(lines):
            action = json.loads(line)
            add = action.get("add")
            if add is not None and add["path"] == relative:
                add["size"] = data_file.stat().st_size
                add.pop("stats", None)
                lines[i] = json.dumps(action)
        commit.write_text("\n".join(lines) + "\n")


def test_recover_is_a_no_op_on_a_clean_lake(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.append("events", rows([1]), partition=PART)
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "lake", copy)
    assert Lake(copy).recover(run_id="t", code_version="t") == []
