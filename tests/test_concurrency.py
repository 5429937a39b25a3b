"""Concurrent writers: ledger commits are serialized across processes, never forked; an
append that races a writer outside the lock fails loudly."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import ledger.log
from ledger.lake import Lake
from ledger.log import LedgerError
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
    """Make the next ledger write be preceded by an outside append (no lock taken)."""
    real = ledger.log.write_deltalake
    sneaked: list[int] = []

    def racing_write(table_or_uri: Any, data: Any, **kwargs: Any) -> None:
        if not sneaked:
            intruder = pa.Table.from_pylist(
                [dict(data.to_pylist()[0], run_id="intruder")], schema=data.schema
            )
            real(table_or_uri, intruder, mode="append")
            sneaked.append(1)
        real(table_or_uri, data, **kwargs)

    monkeypatch.setattr(ledger.log, "write_deltalake", racing_write)
    return sneaked


def test_append_raises_when_a_writer_sneaks_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write("t", pa.table({"a": [1]}))
    lake.write("t", pa.table({"a": [2]}))
    sneaked = _sneak_in(monkeypatch)

    entry = lake.ledger.entries()[-1]
    with lake.ledger.lock(), pytest.raises(LedgerError, match="from version 1 to 3"):
        lake.ledger.append(
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

    # The fork is visible: two entries claim seq 2, and verification names it.
    assert [e.seq for e in lake.ledger.entries()] == [0, 1, 2, 2]
    report = verify_lake(lake)
    assert not report.ok
    assert report.first is not None and report.first.seq == 2
    assert any(p.seq == 2 and "more than once" in p.what for p in report.problems)

    # ...and the ledger refuses to grow on top of it.
    with pytest.raises(LedgerError, match="not contiguous"):
        lake.write("t", pa.table({"a": [3]}))


def test_lake_write_raises_when_a_writer_sneaks_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write("t", pa.table({"a": [1]}))
    _sneak_in(monkeypatch)
    with pytest.raises(LedgerError, match="another writer appended concurrently"):
        lake.write("t", pa.table({"a": [2]}))
