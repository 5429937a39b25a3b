"""Crash safety (issue 15): a pipeline command killed with SIGKILL at any commit point of
the write path — after each Delta commit and after each ledger entry — is finished by
running the command again: the lake verifies, counts reconcile, and every table holds
exactly what an uncrashed run leaves (wall-clock columns aside, and the ledger positions
that the crash's rollback entries move).

The commit points are found by instrumenting the write path (`ledger.lake.commit_point`):
an uncrashed run lists them ($OPENLEDGER_COMMIT_POINTS), then one run per point kills
itself there ($OPENLEDGER_CRASH_AT=N). The commands: `run` (ingest, quality, training,
valuation), `run` again after serving inferences (inference attribution) and
`epoch close`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from assets.layout import install_spec, submit
from ledger.lake import Lake
from ledger.verify import verify_lake

SPEC = """
name: tiny
owner: tests
licence: CC0-1.0
task: binary
features:
  - {name: x, type: float, min: 0, max: 100}
  - {name: z, type: float, min: 0, max: 100}
label: {name: y, type: int, categories: [0, 1]}
metric: accuracy
validation: {kind: file, name: held_out.csv}
require_signatures: false
training: {num_boost_round: 5}
valuation: {num_boost_round: 5}
"""
HELD_OUT = "x,z,y\n1.5,3,0\n2.5,7,1\n3.5,8,1\n0.5,2,0\n4.5,9,1\n0.2,1,0\n"
QUERIES = "x,z\n1.0,2.0\n3.0,8.0\n"
# Columns that hold wall-clock time: equal runs may differ there and only there.
WALL_CLOCK = {"received_at", "closed_at", "training_seconds", "registered_at", "served_at"}


def ledger_position(column: str) -> bool:
    """Columns naming an entry's place in the ledger (`training_ledger_seq`, an epoch's
    `values_seq` pins, ...): the rollback entries a crash adds move those places, while
    the roots beside them, which name the data, must stay equal."""
    return column.endswith("_seq") and column not in ("seq", "receipt_seq")


COMMANDS = {
    "ingest-to-values": ["run"],
    "inference-attribution": ["run"],
    "epoch-close": ["epoch", "close", "--epoch", "0"],  # again: re-checks, never closes 1
}


def openledger(
    lake: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "openledger_pipelines.cli", *args, "--lake", str(lake)],
        env={**os.environ, "DAGSTER_HOME": str(lake / "dagster_home"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def rows_file(folder: Path, name: str, rows: list[tuple[float, float, int]]) -> Path:
    path = folder / name
    path.write_text("x,z,y\n" + "".join(f"{x},{z},{y}\n" for x, z, y in rows))
    return path


def stage_lakes(root: Path) -> dict[str, Path]:
    """The lake before each command of the reference sequence (copies, never changed)."""
    lake = root / "lake"
    published = root / "published"
    published.mkdir()
    (published / "held_out.csv").write_text(HELD_OUT)
    install_spec(lake, SPEC, base=published)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    ann = [(i * 1.0, i * 2.0, i % 2) for i in range(1, 9)]
    bob = [(i * 1.5, i * 1.0 + 1, (i + 1) % 2) for i in range(1, 7)] + ann[:2]
    for name, rows in (("ann", ann), ("bob", bob)):
        submit(lake, "tiny", name, rows_file(root, f"{name}.csv", rows), submitted_at=when)
    stages = {}
    for name, args in COMMANDS.items():
        stages[name] = root / f"before-{name}"
        shutil.copytree(lake, stages[name])
        if name == "inference-attribution":
            queries = root / "queries.csv"
            queries.write_text(QUERIES)
            assert (
                openledger(stages[name], "infer", "--datanet", "tiny", str(queries)).returncode == 0
            )
            shutil.rmtree(lake)
            shutil.copytree(stages[name], lake)
        result = openledger(lake, *args)
        assert result.returncode == 0, result.stdout + result.stderr
    stages["final"] = lake
    return stages


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return stage_lakes(tmp_path_factory.mktemp("crash"))


def commit_points(stages: dict[str, Path], command: str, tmp: Path) -> list[str]:
    lake = tmp / "points"
    shutil.copytree(stages[command], lake)
    log = tmp / "points.txt"
    result = openledger(lake, *COMMANDS[command], env={"OPENLEDGER_COMMIT_POINTS": str(log)})
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


def after(stages: dict[str, Path], command: str) -> Path:
    names = list(COMMANDS)
    following = names.index(command) + 1
    return stages[names[following]] if following < len(names) else stages["final"]


def snapshot(lake: Path) -> dict[str, pl.DataFrame]:
    """Every table's latest rows, without wall-clock columns, in a canonical order."""
    store = Lake(lake)
    tables = {}
    for name in store.table_names():
        frame = pl.DataFrame(pl.from_arrow(store.read(name)))
        frame = frame.drop([c for c in frame.columns if c in WALL_CLOCK or ledger_position(c)])
        tables[name] = frame.sort(frame.columns, nulls_last=True)
    return tables


def assert_same_tables(got: Path, expected: Path) -> None:
    ours, theirs = snapshot(got), snapshot(expected)
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        if ours[name].equals(theirs[name]):
            continue
        differing = [c for c in theirs[name].columns if not ours[name][c].equals(theirs[name][c])]
        raise AssertionError(f"{name}: columns {differing} differ from an uncrashed run")


def scenarios() -> Iterator[tuple[str, int]]:
    """(command, commit point) for every point, numbered as an uncrashed run meets them.
    The counts are checked against the instrumented run in `test_commit_points_are_found`."""
    for command, count in POINTS.items():
        for point in range(1, count + 1):
            yield command, point


# Commit points of each command on the tiny Datanet (2 per table written).
POINTS = {"ingest-to-values": 32, "inference-attribution": 4, "epoch-close": 6}


@pytest.mark.slow
def test_commit_points_are_found(stages: dict[str, Path], tmp_path: Path) -> None:
    for command, count in POINTS.items():
        points = commit_points(stages, command, tmp_path / command)
        assert len(points) == count, (command, points)
        assert all(p.startswith(("delta:", "ledger:")) for p in points)
        assert points[::2] == [p.replace("ledger:", "delta:") for p in points[1::2]]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "point"), list(scenarios()))
def test_killed_at_a_commit_point_the_next_run_finishes_it(
    stages: dict[str, Path], tmp_path: Path, command: str, point: int
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(stages[command], lake)
    crashed = openledger(lake, *COMMANDS[command], env={"OPENLEDGER_CRASH_AT": str(point)})
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    report = verify_lake(Lake(lake))
    assert report.ok or all("no ledger entry" in str(p) for p in report.problems)

    again = openledger(lake, *COMMANDS[command])
    assert again.returncode == 0, again.stdout + again.stderr
    report = verify_lake(Lake(lake))
    assert report.ok, "\n".join(str(p) for p in report.problems)
    assert_same_tables(lake, after(stages, command))


@pytest.mark.slow
def test_verify_reports_a_write_in_flight(stages: dict[str, Path], tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(stages["epoch-close"], lake)
    marker = tmp_path / "paused"
    env = {**os.environ, "OPENLEDGER_PAUSE_AT": "1", "OPENLEDGER_PAUSED_FILE": str(marker)}
    env["DAGSTER_HOME"] = str(lake / "dagster_home")
    writer = subprocess.Popen(
        [sys.executable, "-m", "openledger_pipelines.cli", "epoch", "close", "--lake", str(lake)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and time.monotonic() < deadline and writer.poll() is None:
            time.sleep(0.5)
        assert marker.exists(), "the writer never reached its first commit point"
        report = verify_lake(Lake(lake))
        assert report.ok, "\n".join(str(p) for p in report.problems)
        assert len(report.in_flight) == 1 and "being committed" in report.in_flight[0]
    finally:
        writer.kill()
        writer.wait()
    report = verify_lake(Lake(lake))  # the writer is gone: now it is an orphan
    assert not report.ok and not report.in_flight


@pytest.mark.slow
def test_sigterm_stops_a_run_cleanly(stages: dict[str, Path], tmp_path: Path) -> None:
    """SIGTERM mid-run: exit 143 at once, the run marked failed with its pool slot freed,
    and the next run finishes the work (no stuck slot, nothing lost)."""
    import dagster as dg

    from openledger_pipelines.runner import persistent_instance

    lake = tmp_path / "lake"
    shutil.copytree(stages["ingest-to-values"], lake)
    marker = tmp_path / "paused"
    env = {**os.environ, "OPENLEDGER_PAUSE_AT": "8", "OPENLEDGER_PAUSED_FILE": str(marker)}
    env["DAGSTER_HOME"] = str(lake / "dagster_home")
    runner = subprocess.Popen(
        [sys.executable, "-m", "openledger_pipelines.cli", "run", "--lake", str(lake)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists() and time.monotonic() < deadline and runner.poll() is None:
        time.sleep(0.5)
    assert marker.exists(), "the run never reached its commit point"
    runner.send_signal(signal.SIGTERM)
    _, stderr = runner.communicate(timeout=60)
    assert runner.returncode == 143, stderr  # Dagster failed the step; the CLI stops there
    instance = persistent_instance(lake)
    try:
        runs = instance.get_runs()
        assert runs and all(r.status == dg.DagsterRunStatus.FAILURE for r in runs)
    finally:
        instance.dispose()
    again = openledger(lake, "run")
    assert again.returncode == 0, again.stdout + again.stderr
    assert verify_lake(Lake(lake)).ok
    assert_same_tables(lake, after(stages, "ingest-to-values"))
