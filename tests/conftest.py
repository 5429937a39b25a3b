"""Shared fixtures: every test gets its own lake under tmp_path; the demo lake is built
once per test process and copied by the tests that change it.

Hypothesis profiles, chosen by $HYPOTHESIS_PROFILE (default `ci`). Neither reads or writes
an example database, so a run never depends on a local `.hypothesis/`; a failure prints the
blob that replays it. `thorough` raises max_examples 20-fold, and `examples(n)` in
`hypothesis_budget.py` scales each test's pinned count by the same factor.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from services import Postgres, postgres_server

from ledger.lake import Lake

settings.register_profile("ci", database=None, print_blob=True)
settings.register_profile(
    "thorough", max_examples=2_000, deadline=None, database=None, print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


@pytest.fixture(scope="session")
def demo_lake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake after `openledger demo` (through the CLI, as a user runs it). Read it, or
    copy it before changing anything."""
    from typer.testing import CliRunner

    from openledger_pipelines.cli import app

    root = tmp_path_factory.mktemp("demo") / "lake"
    result = CliRunner().invoke(app, ["demo", "--lake", str(root)])
    assert result.exit_code == 0, result.output
    assert "verify: OK" in result.output
    return root


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server (Debian's `postgresql`) on loopback, for this test process."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def pg_url(postgres: Postgres, request: pytest.FixtureRequest) -> str:
    """The URL of a new, empty database on that server, for one test."""
    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    return postgres.create_database(name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API: moto in server mode in a subprocess on a free loopback port; its
    endpoint URL. Credentials are moto's fakes, given the standard AWS variables."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("moto server did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS variables that point every client (delta-rs, obstore, subprocesses) at the
    moto server, set in this process's environment."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ALLOW_HTTP": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_lake_uri(s3_env: dict[str, str], request: pytest.FixtureRequest) -> str:
    """A fresh bucket on the moto server; the lake URI of a prefix in it."""
    import hashlib

    import boto3

    bucket = "lake-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    return f"s3://{bucket}/community"
