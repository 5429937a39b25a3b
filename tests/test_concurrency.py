"""Concurrent writers: ledger commits are serialized across processes without a lock,
never forked; an append that loses the race to another writer lands after it."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import ledger.log
from ledger.lake import Lake
from ledger.verify import verify_lake

WORKERS = 2  # this test process + 1 spawned process; 3 also works (slower)
WRITES = 15


def _writer(root: str, worker: int, writes: int, barrier: Any, results: Any) -> None:
    """One process: `writes` ledgered writes, alternating its own table and its own
    partition of a table shared by every worker."""
    try:
        # Warm up outside the shared lake's lock (lazy imports, Delta runtime), so the
        # workers really overlap instead of queueing behind each other's first write.
        Lake(f"{root}-warmup-{worker}").write("warmup", pa.table({"id": [worker]}))
        lake = Lake(root)
        barrier.wait(timeout=120)  # start together
        done = []
        for i in range(writes):
            ids = pa.array([worker * 1000 + i * 10 + j for j in range(3)], pa.int64())
            if i % 2 == 0:
                data = pa.table(
                    {
                        "id": ids,
                        "worker": pa.array([worker] * 3, pa.int64()),
                        "step": pa.array([i] * 3, pa.int64()),
                    }
                )
                committed = lake.write(f"own_{worker}", data, key=["id"], run_id=f"w{worker}")
            else:
                part = f"w{worker}"
                data = pa.table({"id": ids, "part": [part] * 3, "value": [i * 0.5] * 3})
                committed = lake.write(
                    "shared", data, partition=("part", part), key=["id"], run_id=f"w{worker}"
                )
            done.append((committed.entry.seq, committed.table, committed.delta_version))
        results.put((worker, done, None))
    except BaseException:
        results.put((worker, [], traceback.format_exc()))
        raise


@pytest.mark.slow
def test_concurrent_writers_get_one_contiguous_ledger(tmp_path: Path) -> None:
    """WORKERS processes write at once: this test's process and WORKERS - 1 spawned ones
    (a spawned interpreter re-imports pyarrow, polars and deltalake: seconds each)."""
    root = tmp_path / "lake"
    Lake(root)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(str(root), w, WRITES, barrier, results))
        for w in range(1, WORKERS)
    ]
    for p in procs:
        p.start()
    try:
        _writer(str(root), 0, WRITES, barrier, results)
        outcomes = [results.get(timeout=180) for _ in range(WORKERS)]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    errors = [tb for _, _, tb in outcomes if tb]
    assert not errors, "\n".join(errors)
    assert [p.exitcode for p in procs] == [0] * (WORKERS - 1)

    total = WORKERS * WRITES
    lake = Lake(root)
    entries = lake.ledger.entries()
    assert len(entries) == total
    assert [e.seq for e in entries] == list(range(total))
    assert len(lake.ledger.read_table()) == total  # no duplicate rows hidden by sorting

    # Each worker saw its own commits in order, and together they cover every seq once.
    reported = sorted(seq for _, done, _ in outcomes for seq, _, _ in done)
    assert reported == list(range(total))
    for _, done, _ in outcomes:
        seqs = [seq for seq, _, _ in done]
        assert seqs == sorted(seqs) and len(seqs) == WRITES

    # Table versions and ledger entries agree: every Delta version has exactly one entry.
    per_table: dict[str, list[int]] = {}
    for e in entries:
        per_table.setdefault(e.table_uri, []).append(e.delta_version)
    for uri, versions in per_table.items():
        assert versions == list(range(len(versions))), uri
    shared = per_table["tables/shared"]
    assert len(shared) == WORKERS * (WRITES // 2)

    report = verify_lake(lake)
    assert report.ok, "\n".join(str(p) for p in report.problems)
    assert report.entries == total
    assert sorted(lake.table_names()) == sorted([*(f"own_{w}" for w in range(WORKERS)), "shared"])


def _sneak_in(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the next ledger write be preceded by another writer's append."""
    real = ledger.log.write_deltalake
    sneaked: list[int] = []

    def racing_write(table_or_uri: Any, data: Any, **kwargs: Any) -> None:
        if not sneaked:
            intruder = pa.Table.from_pylist(
                [dict(data.to_pylist()[0], run_id="intruder")], schema=data.schema
            )
            uri = getattr(table_or_uri, "table_uri", table_or_uri)  # another writer's view
            real(uri, intruder, mode="append")
            sneaked.append(1)
        real(table_or_uri, data, **kwargs)

    monkeypatch.setattr(ledger.log, "write_deltalake", racing_write)
    return sneaked


def test_an_append_that_loses_the_race_lands_after_the_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer commits the very place this append read (seq 2): the conditional
    commit fails, the append re-reads the head and lands at seq 3, chained to it."""
    lake = Lake(tmp_path / "lake")
    lake.write("t", pa.table({"a": [1]}))
    lake.write("t", pa.table({"a": [2]}))
    sneaked = _sneak_in(monkeypatch)

    entry = lake.ledger.entries()[-1]
    appended = lake.ledger.append(
        asset_key="t",
        partition_key=None,
        partition_column=None,
        table_uri="tables/t",
        table_kind="snapshot",
        old_row_count=0,
        data_range="",
        delta_version=1,
        schema_hash=entry.schema_hash,
        row_key="",
        row_count=1,
        data_root=entry.data_root,
        run_id="victim",
        code_version="test",
    )
    assert sneaked == [1]
    monkeypatch.undo()
    entries = lake.ledger.entries()
    assert [e.seq for e in entries] == [0, 1, 2, 3]  # no fork: one entry per place
    assert [e.run_id for e in entries[2:]] == ["intruder", "victim"]
    assert appended.seq == 3 and appended.prev_log_root == entries[2].log_root
    assert len(lake.ledger.read_table()) == 4


def test_a_table_write_that_loses_the_race_is_written_again_on_the_new_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer commits a version of the table between this write's read and its
    commit: the write is built again on the new snapshot, so versions and entries stay
    one to one (here the intruder's version is unledgered and its writer unknown, so it
    is rolled back first, and the ledger says so)."""
    import ledger.lake

    lake = Lake(tmp_path / "lake")
    lake.write("t", pa.table({"a": [1]}))
    real = ledger.lake.commit_conditionally
    sneaked: list[int] = []

    def racing(dt: Any, uri: str, table: Any, options: Any, **kwargs: Any) -> bool:
        if not sneaked:
            from deltalake import write_deltalake

            write_deltalake(uri, pa.table({"a": [99]}), mode="overwrite")
            sneaked.append(1)
        return real(dt, uri, table, options, **kwargs)

    monkeypatch.setattr(ledger.lake, "commit_conditionally", racing)
    committed = lake.write("t", pa.table({"a": [2]}))
    monkeypatch.undo()
    assert sneaked == [1]
    entries = lake.ledger.entries()
    assert [(e.entry_type, e.delta_version) for e in entries] == [
        ("commit", 0),
        ("rollback", 2),
        ("commit", 3),
    ]
    assert entries[1].superseded_versions() == [1]
    assert committed.delta_version == 3
    assert lake.read("t").column("a").to_pylist() == [2]
    report = verify_lake(lake)
    assert report.ok, report.problems
