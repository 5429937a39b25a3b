"""The Dagster instance on Postgres (issue 17, docs/deploy.md): with
$OPENLEDGER_DAGSTER_PG_URL set, the CLI, the webserver and the daemon share one instance
whose run, event-log and schedule storage live in a real PostgreSQL server (Debian's
`postgresql`, started by the `postgres` fixture). A CLI run, a sensor tick with the run it
requests and a schedule tick with its run all land there, and nothing in SQLite.

The ticks are made by the daemon's own iteration functions (`execute_sensor_iteration`,
`launch_scheduled_runs`) over the workspace the UI loads (workspace.yaml), with the
schedule's clock moved to its next 02:00 UTC instead of waiting for it; the requested runs
stay queued (the daemon's run queue would launch them).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from services import Postgres

from assets.layout import install_spec, submit
from openledger_pipelines.runner import PG_URL_ENV, dagster_home, dagster_yaml

ROOT = Path(__file__).resolve().parents[1]
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


def tiny_lake(base: Path) -> Path:
    """A lake with one small Datanet and two contributors' rows in its inbox."""
    lake, published = base / "lake", base / "published"
    published.mkdir(parents=True)
    (published / "held_out.csv").write_text(HELD_OUT)
    install_spec(lake, SPEC, base=published)
    rows = {
        "ann": [(i * 1.0, i * 2.0, i % 2) for i in range(1, 9)],
        "bob": [(i * 1.5, i * 1.0 + 1, (i + 1) % 2) for i in range(1, 7)],
    }
    for name, values in rows.items():
        source = base / f"{name}.csv"
        source.write_text("x,z,y\n" + "".join(f"{x},{z},{y}\n" for x, z, y in values))
        submit(lake, "tiny", name, source, submitted_at=datetime(2026, 1, 1, tzinfo=UTC))
    return lake


def sqlite_files(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*") if p.suffix in (".db", ".sqlite"))


def database(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_cli_run_is_recorded_in_postgres(tmp_path: Path, postgres: Postgres, pg_url: str) -> None:
    lake, home = tiny_lake(tmp_path), tmp_path / "dagster_home"
    env = {**os.environ, "DAGSTER_HOME": str(home), PG_URL_ENV: pg_url}
    env.pop("OPENLEDGER_DASK_SCHEDULER", None)
    done = subprocess.run(
        [sys.executable, "-m", "openledger_pipelines.cli", "run", "--lake", str(lake)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (home / "dagster.yaml").read_text() == dagster_yaml(postgres=True)
    assert sqlite_files(home) == []

    db = database(pg_url)
    runs = postgres.query(db, "select run_id, pipeline_name, status from runs")
    assert [(job, status) for _, job, status in runs] == [("datanet_job", "SUCCESS")]
    run_id = runs[0][0]
    materialized = postgres.query(
        db,
        "select count(distinct asset_key) from event_logs "
        f"where run_id = '{run_id}' and dagster_event_type = 'ASSET_MATERIALIZATION'",
    )[0][0]
    assert materialized >= 5  # spec, contributions, quality, model, values, ...
    # Dagster's own tools (and so the UI) open the same instance from the same settings.
    listed = subprocess.run(
        [sys.executable, "-m", "dagster", "run", "list"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout


def test_sensor_and_schedule_ticks_are_recorded_in_postgres(
    tmp_path: Path, postgres: Postgres, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.scheduler.instigation import TickStatus
    from dagster._core.test_utils import create_test_daemon_workspace_context, load_remote_repo
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._daemon.sensor import execute_sensor_iteration
    from dagster._scheduler.scheduler import launch_scheduled_runs

    lake, home = tiny_lake(tmp_path), tmp_path / "dagster_home"
    monkeypatch.setenv("OPENLEDGER_LAKE", str(lake))  # read by the code server the UI starts
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(PG_URL_ENV, pg_url)
    monkeypatch.chdir(ROOT)
    logger = logging.getLogger("test_postgres_instance")
    target = WorkspaceFileTarget(paths=[str(ROOT / "workspace.yaml")])
    with (
        dg.DagsterInstance.from_config(str(dagster_home(lake))) as instance,
        create_test_daemon_workspace_context(target, instance) as workspace,
    ):
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        repository = load_remote_repo(workspace, "__repository__")

        sensor = repository.get_sensor("inbox_sensor")  # both running by default (in code)
        list(execute_sensor_iteration(workspace, logger, None, None))
        [sensor_tick] = instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id)
        assert sensor_tick.status == TickStatus.SUCCESS, sensor_tick.error
        assert instance.get_dynamic_partitions("datanets") == ["tiny"]

        schedule = repository.get_schedule("daily_batch")
        now = datetime.now(UTC)
        next_batch = now.replace(hour=2, minute=0, second=0, microsecond=0)
        if next_batch <= now:
            next_batch += timedelta(days=1)
        # The scheduler's clock: a minute before the batch (it records where it starts),
        # then just after it, as a daemon running across 02:00 UTC sees it.
        for clock in (next_batch - timedelta(minutes=1), next_batch + timedelta(seconds=5)):
            list(launch_scheduled_runs(workspace, logger, clock, {}))
        [schedule_tick] = instance.get_ticks(schedule.get_remote_origin_id(), schedule.selector_id)
        assert schedule_tick.status == TickStatus.SUCCESS, schedule_tick.error
        assert schedule_tick.timestamp == next_batch.timestamp()

    # The same facts, read from Postgres directly: ticks and their runs are there.
    db = database(pg_url)
    ticks = postgres.query(db, "select type, status from job_ticks order by id")
    assert ticks == [("SENSOR", "SUCCESS"), ("SCHEDULE", "SUCCESS")]
    runs = postgres.query(
        db,
        "select t.key, t.value, r.status, r.partition from runs r "
        "join run_tags t on t.run_id = r.run_id "
        "where t.key in ('dagster/sensor_name', 'dagster/schedule_name') order by t.key",
    )
    assert runs == [
        ("dagster/schedule_name", "daily_batch", "QUEUED", "tiny"),
        ("dagster/sensor_name", "inbox_sensor", "QUEUED", "tiny"),
    ]
    assert sqlite_files(home) == []


def test_an_instance_of_the_other_kind_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, home = tmp_path / "lake", tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv(PG_URL_ENV, raising=False)
    dagster_home(lake)  # SQLite, the embedded default
    assert (home / "dagster.yaml").read_text() == dagster_yaml(postgres=False)
    from typer.testing import CliRunner

    from openledger_pipelines.cli import app

    monkeypatch.setenv(PG_URL_ENV, "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    result = CliRunner().invoke(app, ["run", "--lake", str(lake)])
    assert result.exit_code != 0
    assert f"keeps the Dagster instance in SQLite, but {PG_URL_ENV} is set" in result.output
    assert "Traceback" not in result.output
    # A bare postgresql:// would reach SQLAlchemy's psycopg 3 driver, which is not installed.
    monkeypatch.setenv(PG_URL_ENV, "postgresql://nobody@127.0.0.1:1/none")
    result = CliRunner().invoke(app, ["run", "--lake", str(tmp_path / "other")])
    assert result.exit_code != 0
    assert f"{PG_URL_ENV} must start with postgresql+psycopg2://" in result.output


def test_deploy_doc_shows_the_dagster_yaml_openledger_writes() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)
    assert dagster_yaml(postgres=True) in blocks
