"""Shared fixtures: every test gets its own lake under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.lake import Lake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")
