"""Documentation is executable: every shell and Python block of README.md and docs/*.md
runs here, as written, and must exit 0.

The commands run in a scratch working directory (the repository's top-level folders linked
into it, so `examples/...` and `python ledger/proofcheck.py` resolve as in a checkout), with
`uv` pointed at this project (`UV_PROJECT`). README's first command builds the demo lake
there; later blocks use it. Only the documented placeholders are substituted (see
PLACEHOLDERS); benchmark commands run with OPENLEDGER_BENCH_DRY_RUN=1, which checks every
documented flag without the benchmark's hour of work; README's own test command is what
CI runs, so it is not run again here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(bash|sh|python)[ \t]*\n(.*?)^```", re.S | re.M)
TEST_COMMAND = "uv run pytest"
# Commands that start a server: run until it answers, then stopped (port: dagster dev's).
SERVERS = {"dagster dev": "http://127.0.0.1:3000/server_info"}


def blocks(path: Path) -> list[tuple[str, str]]:
    """(language, body) of every fenced shell or Python block of a Markdown file."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(path.read_text(encoding="utf-8"))]


def shell_commands(body: str) -> list[str]:
    """One command per logical line: `\\` continuations joined, comments and blanks dropped."""
    commands, current = [], ""
    for line in body.splitlines():
        current += line.strip() if current else line.rstrip()
        if current.endswith("\\"):
            current = current[:-1].rstrip() + " "
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            commands.append(current.strip())
        current = ""
    return commands


def _latest(lake: Path, sql: str) -> str:
    """One value from the lake, via the product's own SQL access."""
    sys.path.insert(0, str(ROOT))
    from ledger.lake import Lake
    from ledger.sql import connect

    con = connect(Lake(lake))
    try:
        row = con.execute(sql).fetchone()
    finally:
        con.close()
    assert row is not None, sql
    return str(row[0])


# The placeholders the docs use, and what stands for each (README: "Placeholders").
PLACEHOLDERS: dict[str, Callable[[Path], str]] = {
    "<model id>": lambda lake: _latest(
        lake,
        "select model_id from models where datanet = 'wine' order by training_ledger_seq desc",
    )[:12],
    "<proposal id>": lambda lake: _latest(
        lake,
        "select proposal_id from governance where datanet = 'wine' and event = 'proposal' "
        "order by event_index desc",
    )[:12],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory that looks like a checkout (top-level folders linked)."""
    work = tmp_path_factory.mktemp("docs")
    for name in (
        "examples",
        "ledger",
        "assets",
        "openledger_pipelines",
        "benchmarks",
        "docs",
        "workspace.yaml",
        "pyproject.toml",
    ):
        if (ROOT / name).exists():
            (work / name).symlink_to(ROOT / name)
    return work


def environment(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLEDGER_", "DAGSTER_"))}
    env.update(
        UV_PROJECT=str(ROOT),
        OPENLEDGER_BENCH_DRY_RUN="1",
        COLUMNS="120",
    )
    return env


def run_shell(command: str, work: Path) -> subprocess.CompletedProcess[str]:
    for placeholder, value in PLACEHOLDERS.items():
        if placeholder in command:
            command = command.replace(placeholder, value(work / ".openledger"))
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=work,
        env=environment(work),
        capture_output=True,
        text=True,
        timeout=1800,
    )


def serve_until_up(command: str, work: Path, url: str) -> subprocess.CompletedProcess[str]:
    """Start a server command, wait until `url` answers (exit 0), then stop it."""
    server = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=work,
        env=environment(work),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    code = 1
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    code = 0 if response.status == 200 else 1
                    break
            except OSError:
                time.sleep(2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            output = server.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            output = server.communicate()[0]
    return subprocess.CompletedProcess(command, code, output[-3000:], "")


def run_python(code: str, work: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=work,
        env=environment(work) | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_document(path: Path, work: Path) -> list[str]:
    """Every command of a document, in order; a failure names the command and its output."""
    ran = []
    for language, body in blocks(path):
        if language == "python":
            result = run_python(body, work)
            assert result.returncode == 0, f"{path.name}: python block\n{body}\n{result.stderr}"
            ran.append(body)
            continue
        exports = ""  # `export` lines of a block hold for its later commands
        for command in shell_commands(body):
            if TEST_COMMAND in command:
                continue  # the test suite itself: CI runs it
            if command.startswith("export "):
                exports += command + "; "
                continue
            server = next((url for name, url in SERVERS.items() if name in command), None)
            if server is not None:
                result = serve_until_up(exports + command, work, server)
            else:
                result = run_shell(exports + command, work)
            assert result.returncode == 0, (
                f"{path.name}: `{command}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
            )
            ran.append(command)
    return ran


def test_block_parser_joins_continuations_and_drops_comments() -> None:
    body = "# comment\nuv run a \\\n    --b 1   # trailing\n\nuv run c\n"
    assert shell_commands(body) == ["uv run a --b 1   # trailing", "uv run c"]


def test_every_document_with_commands_is_covered() -> None:
    covered = {p.name for p in DOCS if blocks(p)}
    assert {"README.md", "analysts.md", "benchmarks.md"} <= covered


@pytest.mark.slow
def test_readme_runs_as_written(workdir: Path) -> None:
    ran = run_document(ROOT / "README.md", workdir)
    assert "openledger demo" in ran[0]  # the first command builds the demo lake
    assert (workdir / ".openledger" / "ledger").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in DOCS if p.name != "README.md" and blocks(p)])
def test_docs_run_as_written(name: str, workdir: Path) -> None:
    if not (workdir / ".openledger" / "ledger").is_dir():
        run_shell("uv run openledger demo", workdir)
    assert run_document(ROOT / "docs" / name, workdir)
