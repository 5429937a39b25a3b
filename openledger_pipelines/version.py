"""The code version recorded in every ledger entry."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@cache
def code_version() -> str:
    """Package version plus the git commit when run from a checkout.

    $OPENLEDGER_CODE_VERSION overrides it (deployments pin their image tag here).
    """
    override = os.environ.get("OPENLEDGER_CODE_VERSION")
    if override:
        return override
    try:
        base = version("openledger-pipelines")
    except PackageNotFoundError:
        base = "0+unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return base
    return f"{base}+g{commit}" if commit else base
