"""Shared fixtures: every test gets its own lake under tmp_path; the demo lake is built
once per test process and copied by the tests that change it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.lake import Lake


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
