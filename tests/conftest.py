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
