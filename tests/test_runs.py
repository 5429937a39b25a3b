"""Runs a killed CLI process leaves behind are failed and their pool slots freed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun

from openledger_pipelines.runner import HOST_TAG, PID_TAG, fail_abandoned_runs


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def started_run(instance: dg.DagsterInstance, pid: int, host: str) -> str:
    run = instance.add_run(
        DagsterRun(
            job_name="datanet_job",
            run_id=f"run-{pid}-{host}",
            status=dg.DagsterRunStatus.STARTED,
            tags={PID_TAG: str(pid), HOST_TAG: host},
        )
    )
    instance.event_log_storage.set_concurrency_slots("ledger", 1)
    assert instance.event_log_storage.claim_concurrency_slot("ledger", run.run_id, "ingest")
    return run.run_id


def test_a_killed_processs_run_is_failed_and_its_slot_freed() -> None:
    with dg.instance_for_test() as instance:
        dead = started_run(instance, dead_pid(), socket.gethostname())
        cleaned = fail_abandoned_runs(instance)
        assert len(cleaned) == 1 and dead in cleaned[0] and "is gone" in cleaned[0]
        run = instance.get_run_by_id(dead)
        assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info("ledger").active_slot_count == 0
        assert fail_abandoned_runs(instance) == []  # once is enough


def test_live_and_foreign_runs_are_left_alone() -> None:
    with dg.instance_for_test() as instance:
        mine = started_run(instance, os.getpid(), socket.gethostname())
        elsewhere = started_run(instance, dead_pid(), "another-host")
        assert fail_abandoned_runs(instance) == []
        for run_id in (mine, elsewhere):
            run = instance.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.STARTED
        # an interrupted command fails its own runs
        assert len(fail_abandoned_runs(instance, this_process=True)) == 1
