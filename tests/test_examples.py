"""examples/: the committed files are what make_examples.py makes, and the README's
commands work as written, through the CLI, on a fresh lake."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from types import ModuleType

import polars as pl
import pytest
from typer.testing import CliRunner

from assets.datanets import load_spec
from ledger.lake import Lake
from ledger.sql import connect
from openledger_pipelines.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FILES = {"ann": "ann.csv", "bob": "bob.parquet", "cara": "cara.jsonl"}
runner = CliRunner()


def make_examples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(name: str) -> pl.DataFrame:
    path = EXAMPLES / name
    reader = {".csv": pl.read_csv, ".parquet": pl.read_parquet, ".jsonl": pl.read_ndjson}
    return reader[path.suffix](path)


def readme_commands() -> list[list[str]]:
    """The `uv run openledger ...` lines of examples/README.md, as CLI arguments."""
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    prefix = "uv run openledger "
    return [
        shlex.split(line[len(prefix) :]) for line in block.splitlines() if line.startswith(prefix)
    ]


def test_committed_files_are_what_the_script_makes() -> None:
    parts = make_examples().split(make_examples().iris())
    assert read("validation.csv").equals(parts["validation"])
    assert read("queries.csv").equals(parts["queries"])
    for contributor, name in FILES.items():
        assert read(name).equals(parts[contributor]), name


@pytest.fixture
def at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("OPENLEDGER_LAKE", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


def invoke(args: list[str], lake: Path | str) -> str:
    result = runner.invoke(app, [*args, "--lake", str(lake)])
    assert "Traceback" not in result.output
    assert result.exit_code == 0, (args, result.output)
    return result.output


@pytest.mark.slow
@pytest.mark.parametrize("where", ["folder", "bucket"])
def test_the_readme_flow_runs_end_to_end(
    tmp_path: Path,
    at_repo_root: None,
    where: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every command of examples/README.md, on a lake in a folder and in a bucket (moto)."""
    lake: Path | str = tmp_path / "lake"
    if where == "bucket":
        lake = request.getfixturevalue("s3_lake_uri")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))  # keys and instance stay local
    commands = readme_commands()
    assert ["infer", "--datanet", "iris", "examples/queries.csv"] in commands
    for args in commands:
        invoke(args, lake)
    con = connect(Lake(lake))
    batches = con.execute(
        "select contributor, rows_in, accepted, quarantined, duplicates from batches"
    ).fetchall()
    assert sorted(batches) == sorted(
        (contributor, read(name).height, read(name).height, 0, 0)
        for contributor, name in FILES.items()
    )
    spec = load_spec(EXAMPLES / "spec.yaml")
    served = con.execute("select prediction from inferences").fetchall()
    assert len(served) == read("queries.csv").height
    assert {p for (p,) in served} <= set(spec.label.categories or [])
    (shares,) = con.execute(
        "select count(distinct inference_id) from inference_attributions"
    ).fetchone()
    assert shares == len(served)
    paid = con.execute("select contributor, amount_total from statements").fetchall()
    assert sorted(c for c, _ in paid) == sorted(FILES)
    validation = con.execute("select count(*) from validation_iris").fetchone()
    assert validation == (read("validation.csv").height,)
    refused_in_one_line(["infer", "--datanet", "iris", "examples/missing.csv"], lake)


@pytest.mark.parametrize(
    "args",
    [
        ["datanet", "create", "examples/missing.yaml"],
        ["contribute", "--datanet", "iris", "--contributor", "ann", "examples/missing.csv"],
        ["contribute", "--datanet", "iris", "--contributor", "ann", "--key", "examples/missing.key",
         "examples/ann.csv"],
    ],
)  # fmt: skip
def test_a_missing_input_file_is_one_line_naming_it(
    tmp_path: Path, at_repo_root: None, args: list[str]
) -> None:
    lake = tmp_path / "lake"
    invoke(["datanet", "create", "examples/spec.yaml"], lake)
    refused_in_one_line(args, lake)
    assert not (lake / "inbox").exists()  # nothing was submitted


def refused_in_one_line(args: list[str], lake: Path | str) -> None:
    """The command exits 2 with one error line naming the missing file, no errno."""
    result = runner.invoke(app, [*args, "--lake", str(lake)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    missing = next(a for a in args if "missing" in a)
    assert len(lines) == 1 and lines[0].startswith("error:") and missing in lines[0], lines
    assert "Errno" not in lines[0]
