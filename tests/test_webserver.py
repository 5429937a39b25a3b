"""The Dagster UI serves the code location from workspace.yaml and shows the CLI's runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from openledger_pipelines.demo import prepare_demo
from openledger_pipelines.runner import dagster_home, persistent_instance, run_datanets

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.mark.slow
def test_ui_shows_the_asset_graph_and_cli_runs(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    prepare_demo(lake)
    instance = persistent_instance(lake)
    assert run_datanets(lake, instance, ["wine"]) == {"wine": True}
    port = free_port()
    env = {**os.environ, "OPENLEDGER_LAKE": str(lake), "DAGSTER_HOME": str(dagster_home(lake))}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        nodes = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                nodes = graphql(port, "{ assetNodes { assetKey { path } } }")["data"]
                if nodes and nodes["assetNodes"]:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert nodes, server.stderr.read().decode() if server.poll() is not None else "timeout"
        keys = {node["assetKey"]["path"][0] for node in nodes["assetNodes"]}
        assert {
            "datanets",
            "contributors",
            "contributions",
            "quarantine",
            "duplicates",
            "batches",
        } <= keys
        result = graphql(
            port,
            '{ assetOrError(assetKey: {path: ["contributions"]}) '
            "{ ... on Asset { assetMaterializations(limit: 5) "
            "{ partition runId } } } }",
        )
        runs = result["data"]["assetOrError"]["assetMaterializations"]
        cli_runs = {record.dagster_run.run_id for record in instance.get_run_records()}
        assert [r["partition"] for r in runs] == ["wine"]
        assert runs[0]["runId"] in cli_runs  # the UI sees the run the CLI made
    finally:
        server.terminate()
        server.wait(timeout=30)
