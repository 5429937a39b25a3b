"""The `openledger` commands: happy paths and clear errors (exit 2, no traceback)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from typer.testing import CliRunner, Result

from ledger.lake import Lake
from openledger_pipelines.automation import inbox_sensor
from openledger_pipelines.cli import app
from openledger_pipelines.resources import LakeResource
from openledger_pipelines.runner import persistent_instance

runner = CliRunner()
WINE = "contributions_wine"
# For each demo Datanet: one receipts entry (its ten files received in one delivery), one
# ledger entry per table the pipeline writes (16), then the inference tables (2) again
# once the demo's queries are served, then the three tables of its closed epoch 0.
ENTRIES = 2 * 1 + 2 * 16 + 2 * 2 + 2 * 3


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def demo_lake(demo_lake_root: Path) -> Path:
    return demo_lake_root


@pytest.fixture
def lake_copy(demo_lake: Path, tmp_path: Path) -> Path:
    target = tmp_path / "lake"
    shutil.copytree(demo_lake, target)
    return target


def test_every_command_has_help() -> None:
    commands = (
        "demo",
        "verify",
        "prove",
        "verify-proof",
        "consistency",
        "sql",
        "run",
        "contribute",
        "datanet",
        "datanet create",
        "datanet list",
        "contributor",
        "contributor add",
        "contributor list",
        "checkpoint",
        "checkpoint keygen",
        "checkpoint sign",
        "checkpoint verify",
        "epoch",
        "epoch close",
        "epoch list",
        "statement",
        "recompute",
        "report",
        "propose",
        "vote",
        "tally",
        "proposals",
    )
    for command in commands:
        code, output = run(*command.split(), "--help")
        assert code == 0 and "Usage" in output, command


def test_demo_is_idempotent(lake_copy: Path) -> None:
    code, output = run("demo", "--lake", str(lake_copy))
    assert code == 0, output
    code, output = run(
        "sql", "--lake", str(lake_copy), "--json", "select count(*) as n from batches"
    )
    assert json.loads(output) == {"n": 20}  # the same files again changed nothing


def test_lake_defaults_to_environment(demo_lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLEDGER_LAKE", str(demo_lake))
    code, output = run("verify")
    assert code == 0 and f"{ENTRIES} ledger entries verified" in output


def test_prove_then_verify_proof(demo_lake: Path, tmp_path: Path) -> None:
    proof = tmp_path / "proof.json"
    code, output = run(
        "prove",
        "--lake",
        str(demo_lake),
        "--table",
        WINE,
        "--key",
        "contributor=alice",
        "--key",
        "row_index=0",
        "--out",
        str(proof),
    )
    assert code == 0, output
    code, output = run("verify-proof", str(proof))
    assert code == 0 and "OK" in output
    doc = json.loads(proof.read_text())
    assert doc["row"]["contributor"] == "alice"
    doc["data"]["path"][0] = "00" * 32
    proof.write_text(json.dumps(doc))
    code, output = run("verify-proof", str(proof))
    assert code == 1 and "FAIL" in output


def test_consistency_proof(demo_lake: Path, tmp_path: Path) -> None:
    proof = tmp_path / "c.json"
    code, _ = run("consistency", "--lake", str(demo_lake), "--old", "2", "--out", str(proof))
    assert code == 0
    assert run("verify-proof", str(proof))[0] == 0


def test_checkpoint_keygen_sign_verify(lake_copy: Path, tmp_path: Path) -> None:
    code, verifier = run("checkpoint", "keygen", "--lake", str(lake_copy), "--name", "t.log")
    assert code == 0
    code, note = run("checkpoint", "sign", "--lake", str(lake_copy))
    assert code == 0 and note.splitlines()[1] == str(ENTRIES)
    path = tmp_path / "cp.txt"
    path.write_text(note)
    code, output = run(
        "checkpoint", "verify", str(path), "--verifier", verifier.strip(), "--lake", str(lake_copy)
    )
    assert code == 0 and "matches the ledger" in output
    path.write_text(note.replace(f"\n{ENTRIES}\n", f"\n{ENTRIES - 1}\n"))
    code, output = run(
        "checkpoint", "verify", str(path), "--verifier", verifier.strip(), "--lake", str(lake_copy)
    )
    assert code == 2 and "does not verify" in output
    code, output = run("checkpoint", "keygen", "--lake", str(lake_copy), "--name", "t.log")
    assert code == 2 and "refusing to overwrite" in output


def test_sql_over_tables_and_ledger(demo_lake: Path) -> None:
    code, output = run(
        "sql",
        "--lake",
        str(demo_lake),
        "--json",
        "select datanet, count(*) as n from batches group by 1 order by 1",
    )
    assert code == 0
    rows = [json.loads(line) for line in output.splitlines()]
    assert rows == [{"datanet": "breast_cancer", "n": 10}, {"datanet": "wine", "n": 10}]
    code, output = run(
        "sql",
        "--lake",
        str(demo_lake),
        "--json",
        "--at",
        "batches=0",
        "select count(distinct datanet) as n from batches",
    )
    assert code == 0 and json.loads(output) == {"n": 1}
    code, output = run(
        "sql", "--lake", str(demo_lake), "--json", "select max(seq) as s from ledger"
    )
    assert json.loads(output) == {"s": ENTRIES - 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prove", "--table", "nope", "--key", "id=1"], "no ledger entry"),
        (["prove", "--table", "../x", "--key", "id=1"], "invalid table name"),
        (["prove", "--table", WINE, "--key", "row_index"], "name=value"),
        (["prove", "--table", WINE, "--key", "row_index=abc"], "not a valid int64"),
        (["prove", "--table", WINE, "--key", "row_index=100000"], "0 rows match"),
        (["prove", "--table", WINE, "--key", "row_index=0"], "rows match"),
        (["prove", "--table", WINE, "--key", "row_index=3", "--version", "99"], "no ledger entry"),
        (["sql", "select * from missing_table"], "missing_table"),
        (["sql", "--at", "batches=99", "select 1"], "no version 99"),
        (["sql", "--at", "nope=1", "select 1"], "does not exist"),
        (["consistency", "--old", "99"], "sizes must satisfy"),
        (["checkpoint", "sign", "--key", "/nonexistent/key"], "No such file"),
        (
            ["contribute", "--datanet", "../etc", "--contributor", "a", "README.md"],
            "invalid Datanet name",
        ),
        (
            ["contribute", "--datanet", "wine", "--contributor", "../a", "README.md"],
            "invalid contributor id",
        ),
        (["contribute", "--datanet", "nope", "--contributor", "a", "README.md"], "no Datanet"),
        (
            ["contributor", "add", "--datanet", "wine", "--contributor", "x\ny"],
            "invalid contributor id",
        ),
        (
            ["contributor", "add", "--datanet", "wine", "--contributor", "a" * 100],
            "invalid contributor id",
        ),
        (["run", "--datanet", "nope"], "no Datanet 'nope'"),
    ],
)
def test_errors_are_clear(demo_lake: Path, args: list[str], message: str) -> None:
    code, output = run(*args, "--lake", str(demo_lake))
    assert code == 2, output
    assert "error:" in output and message in output


def test_malformed_proof_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, output = run("verify-proof", str(bad))
    assert code == 2 and "not JSON" in output
    bad.write_text(json.dumps({"format": "openledger-inclusion-proof/v1", "data": {}}))
    code, output = run("verify-proof", str(bad))
    assert code == 1 and "malformed proof document" in output
    code, output = run("verify-proof", str(tmp_path / "missing.json"))
    assert code == 2


def test_verify_reports_tampering_with_exit_1(lake_copy: Path) -> None:
    uri = str(lake_copy / "tables" / WINE)
    file = DeltaTable(uri, version=0).file_uris()[0]
    table = pq.read_table(file)
    values = table.column("alcohol").to_pylist()
    values[0] += 1.0
    index = table.schema.get_field_index("alcohol")
    pq.write_table(table.set_column(index, "alcohol", pa.array(values)), file)
    code, output = run("verify", "--lake", str(lake_copy))
    assert code == 1
    entry = json.loads(
        run(
            "sql",
            "--lake",
            str(lake_copy),
            "--json",
            f"select seq from ledger where table_uri = 'tables/{WINE}'",
        )[1]
    )
    assert f"FAILED: first problem: entry {entry['seq']}" in output


def test_infer_serves_and_logs_predictions(lake_copy: Path, tmp_path: Path) -> None:
    queries = tmp_path / "queries.csv"
    validation = pl.from_arrow(
        DeltaTable(str(lake_copy / "tables" / "validation_wine")).to_pyarrow_table()
    )
    validation.drop("label").head(4).write_csv(queries)
    code, output = run("infer", "--datanet", "wine", str(queries), "--lake", str(lake_copy))
    assert code == 0, output
    assert "logged 4 inferences" in output
    logs = list((lake_copy / "inference_log" / "wine").glob("*.parquet"))
    assert len(logs) == 2  # the demo's log and this one
    bad = tmp_path / "bad.csv"
    bad.write_text("alcohol\nnan\n")
    code, output = run("infer", "--datanet", "wine", str(bad), "--lake", str(lake_copy))
    assert code == 2 and "error:" in output
    code, output = run("infer", "--datanet", "nope", str(queries), "--lake", str(lake_copy))
    assert code == 2 and "no spec" in output


# --- rewards: statements, recompute, report, contributor proofs, governance ----------------


def test_statement_json_has_the_documented_fields(demo_lake: Path) -> None:
    code, output = run("statement", "--lake", str(demo_lake), "--contributor", "alice", "--json")
    assert code == 0, output
    rows = json.loads(output)
    assert {r["datanet"] for r in rows} == {"wine", "breast_cancer"}
    for row in rows:
        for field in (
            "datanet",
            "epoch",
            "contributor",
            "value",
            "std_error",
            "quality",
            "amount_pool",
            "amount_fees",
            "flags",
        ):
            assert field in row, field
        assert row["contributor"] == "alice" and row["epoch"] == 0
        assert isinstance(row["amount_pool"], int) and isinstance(row["flags"], list)
        assert row["amount_total"] == row["amount_pool"] + row["amount_fees"]
        assert row["rewards_entry_seq"] is not None
    # the same numbers through the DuckDB view
    code, output = run(
        "sql",
        "--lake",
        str(demo_lake),
        "--json",
        "select sum(amount) as s from rewards where recipient = 'alice' and role = 'contributor'",
    )
    assert json.loads(output)["s"] == sum(r["amount_total"] for r in rows)


def test_statement_human_and_unknown_contributor(demo_lake: Path) -> None:
    code, output = run(
        "statement",
        "--lake",
        str(demo_lake),
        "--contributor",
        "dave",
        "--datanet",
        "wine",
        "--json",
    )
    (row,) = json.loads(output)
    code, output = run(
        "statement", "--lake", str(demo_lake), "--contributor", "dave", "--datanet", "wine"
    )
    text = " ".join(output.split())
    assert code == 0 and f"amount from the pool │ {row['amount_pool']:,}" in text
    assert f"ledger seq {row['values_seq']}" in text
    assert all(flag in text for flag in row["flags"])
    code, output = run("statement", "--lake", str(demo_lake), "--contributor", "nobody")
    assert code == 2 and "no statement" in output
    code, output = run("statement", "--lake", str(demo_lake), "--contributor", "../x")
    assert code == 2 and "invalid contributor id" in output


def test_statement_lists_each_batch_with_its_receipt(demo_lake: Path) -> None:
    def statement(who: str) -> dict:
        args = ["--contributor", who, "--datanet", "wine", "--json"]
        code, output = run("statement", "--lake", str(demo_lake), *args)
        assert code == 0, output
        (row,) = json.loads(output)
        return row

    bob, erin = statement("bob"), statement("erin")
    (bob_batch,) = bob["batches"]
    (erin_batch,) = erin["batches"]  # erin copied bob's rows after him
    assert erin_batch["receipt_seq"] > bob_batch["receipt_seq"]
    assert erin_batch["duplicates"] == erin["duplicates"] > 0
    assert bob_batch["duplicates"] == 0 and bob_batch["accepted"] == bob["rows_ingested"]
    receipts = run(
        "sql", "--lake", str(demo_lake), "--json",
        "select receipt_seq, file_name from receipts where datanet = 'wine'",
    )[1]  # fmt: skip
    names = {r["receipt_seq"]: r["file_name"] for r in map(json.loads, receipts.splitlines())}
    assert names[erin_batch["receipt_seq"]] == erin_batch["file_name"]
    assert erin["batches_entry_seq"] is not None
    code, output = run(
        "statement", "--lake", str(demo_lake), "--contributor", "erin", "--datanet", "wine"
    )
    assert code == 0 and "in receipt order" in output
    assert f"#{erin_batch['receipt_seq']}" in output and erin_batch["file_name"] in output


def test_recompute_and_report(demo_lake: Path, tmp_path: Path) -> None:
    code, output = run("recompute", "--lake", str(demo_lake), "--epoch", "0")
    assert code == 0 and output.count("REPRODUCED") == 2, output
    code, output = run("recompute", "--lake", str(demo_lake), "--epoch", "5")
    assert code == 2 and "not closed" in output
    target = tmp_path / "report.html"
    code, output = run("report", "--lake", str(demo_lake), "--epoch", "0", "--out", str(target))
    assert code == 0, output
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "alice" in page and "data:image/png" in page


def test_recompute_exits_1_on_a_forged_payout(lake_copy: Path) -> None:
    from demo_pipeline import commit_forged_rewards

    from ledger.lake import Lake

    extra = pl.when(pl.col("role") == "carry_over").then(pl.col("amount") + 5)
    commit_forged_rewards(Lake(lake_copy), "wine.0", extra.otherwise(pl.col("amount")))
    code, output = run("recompute", "--lake", str(lake_copy), "--epoch", "0")
    assert code == 1 and "DIFFERENT" in output and "next_epoch" in output


def test_prove_a_contributors_rows_in_a_model(demo_lake: Path, tmp_path: Path) -> None:
    code, output = run(
        "sql",
        "--lake",
        str(demo_lake),
        "--json",
        "select model_id from models where datanet = 'wine'",
    )
    model = json.loads(output)["model_id"]
    proof = tmp_path / "carol.json"
    code, output = run(
        "prove",
        "--lake",
        str(demo_lake),
        "--contributor",
        "carol",
        "--model",
        model,
        "--out",
        str(proof),
    )
    assert code == 0, output
    doc = json.loads(proof.read_text())
    assert doc["rows_in_training_set"] == len(doc["rows"]) > 0
    code, output = run("verify-proof", str(proof))
    text = " ".join(output.split())
    assert code == 0 and f"row(s) of carol are in the training set of model {model}" in text
    # a row proof of someone else's row cannot be passed off as carol's
    doc["contributor"] = "alice"
    proof.write_text(json.dumps(doc))
    code, output = run("verify-proof", str(proof))
    assert code == 1 and "is a row of 'carol'" in output
    code, output = run(
        "prove", "--lake", str(demo_lake), "--contributor", "frank", "--model", "0" * 64
    )
    assert code == 2 and "no model" in output
    code, output = run("prove", "--lake", str(demo_lake), "--contributor", "carol")
    assert code == 2 and "together" in output


def test_governance_commands_refuse_forgeries(lake_copy: Path, tmp_path: Path) -> None:
    from assets.layout import new_contributor_key

    lake = str(lake_copy)

    def vote(contributor: str, choice: str, *extra: str) -> tuple[int, str]:
        return run(
            "vote", "--lake", lake, "--datanet", "wine", "--proposal", proposal_id,
            "--contributor", contributor, "--choice", choice, *extra,
        )  # fmt: skip

    code, output = run(
        "propose",
        "--lake",
        lake,
        "--datanet",
        "wine",
        "--contributor",
        "alice",
        "--set",
        "pool_per_epoch=5000",
        "--description",
        "smaller pool",
    )
    assert code == 0 and "proposal" in output and "ledger seq" in output, output
    proposal_id = output.split("proposal ", 1)[1].split()[0]
    code, output = run("proposals", "--lake", lake, "--datanet", "wine")
    assert code == 0 and proposal_id[:12] in output and "open" in output
    # a key file that claims to be bob's but is not his registered key
    forged = tmp_path / "forged.key"
    new_contributor_key(lake_copy, "wine", "bob", key_file=forged)
    code, output = vote("bob", "yes", "--key", str(forged))
    assert code == 2 and "does not match the voter's registered key" in output
    code, output = vote("bob", "yes")
    assert code == 0 and "vote yes by bob" in output, output
    code, output = vote("bob", "no")
    assert code == 2 and "already voted" in output
    code, output = run("tally", "--lake", lake, "--datanet", "wine", "--proposal", proposal_id)
    assert code == 0 and "voting is open until" in output and "Nothing recorded" in output
    assert "so far yes" in output and "no 0 of" in output  # bob's yes counts, nothing else
    code, output = run(
        "propose",
        "--lake",
        lake,
        "--datanet",
        "wine",
        "--contributor",
        "alice",
        "--set",
        "pool_per_epoch=-1",
    )
    assert code == 2 and "invalid" in output
    code, output = run("verify", "--lake", lake)
    assert code == 0 and f"{ENTRIES + 2} ledger entries verified" in output


# --- a newcomer's first hour: pending work, ids, output, fresh demos ---------------------


def validation_rows(lake: Path) -> pl.DataFrame:
    """Real wine rows no contributor submitted (the Datanet's validation set)."""
    table = DeltaTable(str(lake / "tables" / "validation_wine")).to_pyarrow_table()
    return pl.DataFrame(pl.from_arrow(table))


def sensor_tick(lake: Path) -> dg.SensorResult:
    """One evaluation of `inbox_sensor` on the lake's own Dagster instance."""
    instance = persistent_instance(lake)
    try:
        context = dg.build_sensor_context(
            instance=instance, resources={"lake": LakeResource(root=str(lake))}
        )
        result = inbox_sensor(context)
    finally:
        instance.dispose()
    assert isinstance(result, dg.SensorResult)
    return result


def test_sensor_requests_nothing_after_the_demo(demo_lake: Path) -> None:
    result = sensor_tick(demo_lake)
    assert result.run_requests == [] and result.dynamic_partitions_requests == []


def test_sensor_and_run_pick_only_the_datanet_with_new_files(lake_copy: Path) -> None:
    rows = pl.from_arrow(
        DeltaTable(str(lake_copy / "tables" / "validation_wine")).to_pyarrow_table()
    )
    new_file = lake_copy.parent / "more.csv"
    rows.head(6).write_csv(new_file)
    code, output = run(
        "contribute",
        "--lake",
        str(lake_copy),
        "--datanet",
        "wine",
        "--contributor",
        "gina",
        str(new_file),
    )
    assert code == 0, output
    first, second = sensor_tick(lake_copy), sensor_tick(lake_copy)
    assert [r.partition_key for r in first.run_requests] == ["wine"]
    assert first.run_requests[0].run_key == second.run_requests[0].run_key  # launched once
    code, output = run("run", "--lake", str(lake_copy))
    assert code == 0, output
    assert "breast_cancer: nothing new, skipped" in output
    assert "wine: 1 new inbox file(s)" in output
    assert "wine · ingest: 1 new file(s), 6 rows in: 6 accepted" in output
    assert "wine · valuation:" in output and "run " in output
    assert sensor_tick(lake_copy).run_requests == []  # the CLI's run counts for the sensor
    code, output = run("run", "--lake", str(lake_copy))
    assert code == 0 and "wine: nothing new, skipped" in output


def test_ids_any_unique_prefix_of_eight(demo_lake: Path, tmp_path: Path) -> None:
    code, output = run(
        "sql", "--lake", str(demo_lake), "--json", "select model_id from models order by 1"
    )
    models = [json.loads(line)["model_id"] for line in output.splitlines()]
    proof = tmp_path / "p.json"
    for prefix in (models[0][:8], models[0][:12], models[0].upper()):
        code, output = run(
            "prove",
            "--lake",
            str(demo_lake),
            "--contributor",
            "alice",
            "--model",
            prefix,
            "--limit",
            "1",
            "--out",
            str(proof),
        )
        assert code == 0, output
        assert json.loads(proof.read_text())["model_id"] == models[0]
    code, output = run(
        "prove", "--lake", str(demo_lake), "--contributor", "alice", "--model", models[0][:7]
    )
    assert code == 2 and "at least 8 hex characters" in output


def test_resolve_id_lists_ambiguous_matches() -> None:
    from openledger_pipelines.cli._common import resolve_id

    ids = ["abcdef0011", "abcdef0022", "ffff000000"]
    assert resolve_id("ffff0000", ids, "model") == "ffff000000"
    with pytest.raises(ValueError, match="ambiguous: abcdef0011, abcdef0022"):
        resolve_id("abcdef00", ids, "model")
    with pytest.raises(ValueError, match="no model"):
        resolve_id("12345678", ids, "model")


def test_piped_output_keeps_full_values(demo_lake: Path) -> None:
    code, output = run("datanet", "list", "--lake", str(demo_lake))
    assert code == 0 and "breast_cancer" in output and "…" not in output
    assert "quarantined rows" in output and "rejected files" in output
    code, output = run("tables", "--lake", str(demo_lake))
    assert code == 0 and "contributions_wine" in output and "ledger" in output
    code, output = run("tables", "--lake", str(demo_lake), "--json")
    names = {json.loads(line)["table"] for line in output.splitlines()}
    assert {"batches", "contributions_wine", "ledger"} <= names
    code, output = run("statement", "--lake", str(demo_lake), "--contributor", "alice")
    assert code == 0 and "…" not in output


def test_missing_input_file_is_one_line_naming_it(demo_lake: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    for args in (
        ["contribute", "--datanet", "wine", "--contributor", "ann", str(missing)],
        ["verify-proof", str(missing)],
        ["infer", "--datanet", "wine", str(missing)],
    ):
        code, output = (
            run(*args, "--lake", str(demo_lake)) if args[0] != "verify-proof" else run(*args)
        )
        assert code == 2 and str(missing) in output and len(output.strip().splitlines()) == 1


def test_epoch_close_attributes_pending_inferences_first(lake_copy: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.csv"
    rows = pl.from_arrow(
        DeltaTable(str(lake_copy / "tables" / "validation_wine")).to_pyarrow_table()
    )
    rows.drop("label").head(3).write_csv(queries)
    code, output = run("infer", "--lake", str(lake_copy), "--datanet", "wine", str(queries))
    assert code == 0, output
    code, output = run("epoch", "close", "--lake", str(lake_copy), "--datanet", "wine")
    assert code == 0, output
    assert "wine: attributing 3 pending inference(s) before closing" in output
    assert "fees 3,000,000 from 3 inferences" in " ".join(output.split())


def test_demo_fresh_refuses_a_lake_with_more_than_demo_data(
    lake_copy: Path, tmp_path: Path
) -> None:
    from openledger_pipelines.demo import foreign_content

    assert foreign_content(lake_copy) == []
    (lake_copy / "specs" / "mine.yaml").write_text("name: mine\n")
    code, output = run("demo", "--lake", str(lake_copy), "--fresh")
    assert code == 2 and "refusing --fresh" in output and "specs/mine.yaml" in output
    assert (lake_copy / "ledger").is_dir()  # nothing deleted


# --- a spec's validation file travels with it (datanet create) -----------------------------

FILE_SPEC = """
name: {name}
owner: tests
licence: CC0-1.0
task: binary
features:
  - {{name: x, type: float, min: 0, max: 100}}
label: {{name: y, type: int, categories: [0, 1]}}
metric: roc_auc
validation: {{kind: file, name: {file}}}
require_signatures: false
"""
HELD_OUT = "x,y\n1.5,0\n2.5,1\n3.5,1\n0.5,0\n"


def error_line(output: str) -> str:
    """The one line a refused command prints."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error:"), output
    return lines[0]


def write_spec(folder: Path, name: str = "heldout", file: str = "validation.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(FILE_SPEC.format(name=name, file=file))
    return spec


def test_datanet_create_refuses_a_missing_validation_file(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "in", file="data/validation.csv")
    lake = tmp_path / "lake"
    code, output = run("datanet", "create", str(spec), "--lake", str(lake))
    assert code == 2
    assert str(tmp_path / "in" / "data" / "validation.csv") in error_line(output)
    assert not (lake / "specs").exists()  # nothing published


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("x,y\n1.5,0\nabc,1\n", "not a valid float"),
        ("x,y\n1.5,0\n500,1\n", "above maximum"),
        ("x\n1.5\n", "MISSING_COLUMNS"),
        ("x,y\n1.5,7\n", "y: not one of"),
        ("", "EMPTY_FILE"),
        ('x,y\n"1.5,0\n', "PARSE_ERROR"),
    ],
)
def test_datanet_create_refuses_a_malformed_validation_file_in_one_line(
    tmp_path: Path, content: str, problem: str
) -> None:
    spec = write_spec(tmp_path / "in")
    (tmp_path / "in" / "validation.csv").write_text(content)
    code, output = run("datanet", "create", str(spec), "--lake", str(tmp_path / "lake"))
    assert code == 2
    line = error_line(output)
    assert str(tmp_path / "in" / "validation.csv") in line and problem in line


def test_a_published_validation_file_is_trained_against_and_versioned(tmp_path: Path) -> None:
    from assets.ingest import file_sha256
    from openledger_pipelines.pending import pending_work
    from openledger_pipelines.runner import persistent_instance, run_datanets

    lake = tmp_path / "lake"
    spec = write_spec(tmp_path / "in")
    held_out = tmp_path / "in" / "validation.csv"
    held_out.write_text(HELD_OUT)
    code, output = run("datanet", "create", str(spec), "--lake", str(lake))
    assert code == 0 and "heldout: published" in output, output
    copy = lake / "specs" / "heldout" / "validation.csv"
    assert copy.read_bytes() == held_out.read_bytes()
    rows = tmp_path / "rows.csv"
    rows.write_text("x,y\n1,0\n2,1\n3,1\n4,0\n5,1\n")
    args = ("--datanet", "heldout", "--contributor", "ann", str(rows), "--lake", str(lake))
    assert run("contribute", *args)[0] == 0
    held_out.unlink()  # the lake's copy is what counts from now on
    code, output = run("run", "--lake", str(lake))
    assert code == 0, output

    def query(sql: str) -> list[dict]:
        code, output = run("sql", "--lake", str(lake), "--json", sql)
        assert code == 0, output
        return [json.loads(line) for line in output.splitlines()]

    assert query("select count(*) as n from validation_heldout") == [{"n": 4}]
    assert query("select row_count from models") == [{"row_count": 5}]
    versions = query("select spec_version, validation_sha256 from datanets order by 1")
    assert versions == [{"spec_version": 1, "validation_sha256": file_sha256(copy)}]

    assert not pending_work(Lake(lake), "heldout")  # the run recorded everything
    held_out.write_text(HELD_OUT + "4.5,1\n")  # a changed validation file: a new version
    code, output = run("datanet", "create", str(spec), "--lake", str(lake))
    assert code == 0 and "heldout: published" in output, output
    changed = pending_work(Lake(lake), "heldout").reasons  # the sensor requests a run
    assert any("not recorded yet" in reason for reason in changed), changed
    assert run("datanet", "create", str(spec), "--lake", str(lake))[1].startswith(
        "heldout: unchanged"
    )
    instance = persistent_instance(lake)
    assert run_datanets(lake, instance, assets=["datanets", "validation"]) == {"heldout": True}
    versions = query("select spec_version, validation_sha256 from datanets order by 1")
    assert [v["validation_sha256"] for v in versions] == [
        versions[0]["validation_sha256"],
        file_sha256(copy),
    ]
    assert query("select count(*) as n from validation_heldout") == [{"n": 5}]


def test_two_datanets_keep_their_own_validation_files(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for name, extra in (("first", ""), ("second", "9.5,1\n")):
        spec = write_spec(tmp_path / name, name=name)
        (tmp_path / name / "validation.csv").write_text(HELD_OUT + extra)
        assert run("datanet", "create", str(spec), "--lake", str(lake))[0] == 0
    first = (lake / "specs" / "first" / "validation.csv").read_text()
    second = (lake / "specs" / "second" / "validation.csv").read_text()
    assert first == HELD_OUT and second == HELD_OUT + "9.5,1\n"
    code, output = run("datanet", "list", "--lake", str(lake))
    assert code == 0 and "first" in output and "second" in output


# --- what a contributor may hand the lake (issue 14) --------------------------------------


def published_lake(tmp_path: Path, require_signatures: bool = False) -> Path:
    """A lake with one small Datanet `heldout` published through the CLI."""
    spec = write_spec(tmp_path / "spec")
    if require_signatures:
        spec.write_text(
            spec.read_text().replace("require_signatures: false", "require_signatures: true")
        )
    (tmp_path / "spec" / "validation.csv").write_text(HELD_OUT)
    lake = tmp_path / "lake"
    assert run("datanet", "create", str(spec), "--lake", str(lake))[0] == 0
    return lake


def test_contribute_refuses_a_symlink_in_one_line_and_submits_nothing(tmp_path: Path) -> None:
    lake = published_lake(tmp_path)
    good = tmp_path / "good.csv"
    good.write_text(HELD_OUT)
    link = tmp_path / "link.csv"
    link.symlink_to("/etc/passwd")
    code, output = run(
        "contribute", "--lake", str(lake), "--datanet", "heldout", "--contributor", "ann",
        str(good), str(link),
    )  # fmt: skip
    assert code == 2
    assert "symbolic link" in error_line(output) and str(link) in error_line(output)
    assert not (lake / "inbox").exists()  # not even the good file before it


def contribute(lake: Path, contributor: str, *files: Path) -> Result:
    """`openledger contribute` to `heldout`; the result keeps stderr apart."""
    return runner.invoke(
        app,
        [
            "contribute", "--lake", str(lake), "--datanet", "heldout",
            "--contributor", contributor, *(str(f) for f in files),
        ],
    )  # fmt: skip


def inbox_files(lake: Path) -> list[str]:
    folder = lake / "inbox" / "heldout"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_contribute_without_a_registered_key_warns(tmp_path: Path) -> None:
    lake = published_lake(tmp_path)
    rows = tmp_path / "rows.csv"
    rows.write_text(HELD_OUT)
    result = contribute(lake, "ann", rows)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "ann has no registered key" in result.stderr
    assert "unsigned" in result.stderr
    assert len(inbox_files(lake)) == 2  # accepted: this Datanet takes unsigned files


def test_contribute_unsigned_is_refused_where_signatures_are_required(tmp_path: Path) -> None:
    lake = published_lake(tmp_path, require_signatures=True)
    rows = tmp_path / "rows.csv"
    rows.write_text(HELD_OUT)
    result = contribute(lake, "ann", rows)
    assert result.exit_code == 2 and "ann has no registered key" in error_line(result.output)
    assert "requires signatures" in error_line(result.output)
    # registered with a key the lake does not hold, and no --key: nothing to sign with
    public = "11" * 32
    code, _ = run(
        "contributor", "add", "--lake", str(lake), "--datanet", "heldout",
        "--contributor", "bob", "--public-key", public,
    )  # fmt: skip
    assert code == 0
    result = contribute(lake, "bob", rows)
    assert result.exit_code == 2 and "no key file to sign with" in error_line(result.output)
    assert inbox_files(lake) == []
    code, _ = run(
        "contributor", "add", "--lake", str(lake), "--datanet", "heldout", "--contributor", "cara"
    )
    assert code == 0
    result = contribute(lake, "cara", rows)
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output
    assert len(inbox_files(lake)) == 2


def test_verify_reports_a_table_with_an_empty_delta_log(tmp_path: Path) -> None:
    lake = published_lake(tmp_path)
    (lake / "tables" / "broken" / "_delta_log").mkdir(parents=True)
    code, output = run("verify", "--lake", str(lake))
    assert code == 1, output
    assert "FAILED" in output and "tables/broken" in output


def test_proposals_signed_by_unregistered_keys_are_refused(lake_copy: Path, tmp_path: Path) -> None:
    from assets.layout import new_contributor_key

    lake = str(lake_copy)

    def propose(contributor: str, key: Path) -> tuple[int, str]:
        return run(
            "propose", "--lake", lake, "--datanet", "wine", "--contributor", contributor,
            "--set", "pool_per_epoch=5000", "--key", str(key),
        )  # fmt: skip

    stranger = tmp_path / "dora.key"  # dora has a key but never registered it
    new_contributor_key(lake_copy, "wine", "dora", key_file=stranger)
    code, output = propose("dora", stranger)
    assert code == 2 and "dora is not a registered contributor" in error_line(output)
    other = tmp_path / "alice-other.key"  # alice, but not the key she registered
    new_contributor_key(lake_copy, "wine", "alice", key_file=other)
    code, output = propose("alice", other)
    assert code == 2 and "does not match the proposer's key" in error_line(output)
    assert "governance" not in Lake(lake_copy).table_names()  # nothing recorded
