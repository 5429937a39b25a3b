"""Column names as real files spell them: one documented rule maps each to a lake column."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from assets.datanets import COLUMN_RULE, SpecError, lake_column, parse_spec
from assets.inference import read_queries
from assets.layout import install_spec, submit
from ledger.lake import Lake
from ledger.sql import connect
from openledger_pipelines.cli import app
from openledger_pipelines.runner import run_datanets

NAMES = ["fLength", "Status", "sepal length (cm)"]
LABEL = "Class (y)"


def spec_doc(features: list[dict[str, object]], label: str = LABEL) -> dict[str, object]:
    return {
        "name": "mixed",
        "owner": "tests",
        "licence": "CC0-1.0",
        "task": "binary",
        "features": features,
        "label": {"name": label, "type": "int", "categories": [0, 1]},
        "metric": "roc_auc",
        "validation": {"kind": "file", "name": "held_out.csv"},
        "require_signatures": False,
    }


FEATURES = [
    {"name": "fLength", "type": "float", "min": 0, "max": 100},
    {"name": "Status", "type": "category", "categories": ["on", "off"]},
    {"name": "sepal length (cm)", "type": "float"},
]


def refusal(features: list[dict[str, object]], label: str = LABEL) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(json.dumps(spec_doc(features, label)), "spec.yaml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("spec.yaml: ")
    return message


def test_real_headers_are_accepted_and_mapped_by_the_rule() -> None:
    spec = parse_spec(json.dumps(spec_doc(FEATURES)))
    assert [c.name for c in spec.columns] == [*NAMES, LABEL]
    columns = [c.identifier for c in spec.columns]
    assert columns == ["flength", "status", "sepal_length_cm", "class_y"]
    for column in columns:  # safe unquoted in DuckDB, in Delta and as a LightGBM name
        assert column == lake_column(column) and column.isascii() and column[0].isalpha()
        assert not set(column) & set(' ",:[]{}()')


@pytest.mark.parametrize(
    ("name", "becomes"),
    [
        ("Größe", "grosse"),
        ("2nd dose", "c_2nd_dose"),
        ("a--b__c", "a_b_c"),
        ("od280/od315", "od280_od315"),
    ],
)
def test_the_rule_on_awkward_headers(name: str, becomes: str) -> None:
    assert lake_column(name) == becomes


@pytest.mark.parametrize(
    ("first", "second"),
    [("Status", "status"), ("petal width", "Petal-Width"), ("a b", "a_b")],
)
def test_two_names_with_one_lake_column_are_refused_naming_both(first: str, second: str) -> None:
    features = [{"name": first, "type": "float"}, {"name": second, "type": "float"}]
    message = refusal(features)
    assert repr(first) in message and repr(second) in message
    assert repr(lake_column(first)) in message and COLUMN_RULE in message


def test_a_feature_and_the_label_may_not_share_a_lake_column() -> None:
    message = refusal([{"name": "class y", "type": "float"}])
    assert "'class y'" in message and repr(LABEL) in message


@pytest.mark.parametrize(
    "name", ["Contributor", "ROW HASH", "row-index", " x", "x\ty", "数据", "x" * 64, "y" * 201]
)
def test_refused_names_print_the_rule_verbatim(name: str) -> None:
    message = refusal([{"name": name, "type": "float"}])
    assert repr(name) in message and COLUMN_RULE in message
    assert "String should match pattern" not in message


# --- end to end: ingest (CSV, Parquet, JSON Lines), quality, training, SHAP, inference -------


def table(rng: np.random.Generator, n: int) -> pl.DataFrame:
    """Rows with the file's own headers; the label follows fLength."""
    length = rng.uniform(0, 100, n).round(3)
    return pl.DataFrame(
        {
            "fLength": length,
            "Status": rng.choice(["on", "off"], n),
            "sepal length (cm)": rng.normal(5.8, 0.8, n).round(2),
            LABEL: (length > 50).astype(np.int64),
        }
    )


@pytest.fixture(scope="module")
def mixed_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("mixed")
    root = tmp / "lake"
    rng = np.random.default_rng(3)
    table(rng, 24).write_csv(tmp / "held_out.csv")
    install_spec(root, json.dumps(spec_doc(FEATURES)), base=tmp)
    files = {
        "ann": (tmp / "ann.csv", pl.DataFrame.write_csv),
        "bob": (tmp / "bob.parquet", pl.DataFrame.write_parquet),
        "cara": (tmp / "cara.jsonl", pl.DataFrame.write_ndjson),
    }
    for contributor, (path, write) in files.items():
        write(table(rng, 30), path)
        submit(root, "mixed", contributor, path, submitted_at=datetime(2026, 1, 1, tzinfo=UTC))
    bad = tmp / "bad.csv"
    bad.write_text(f"fLength,Status,sepal length (cm),{LABEL}\n500,on,5.1,1\n")
    submit(root, "mixed", "dora", bad, submitted_at=datetime(2026, 1, 2, tzinfo=UTC))
    assert run_datanets(root, dg.DagsterInstance.ephemeral()) == {"mixed": True}
    return root


def test_contributions_land_in_lake_columns_an_analyst_queries_unquoted(mixed_lake: Path) -> None:
    con = connect(Lake(mixed_lake))
    per = dict(
        con.execute(
            "select contributor, count(*) from contributions_mixed "
            "where flength >= 0 and status in ('on', 'off') and sepal_length_cm > 0 "
            "and class_y in (0, 1) group by 1"
        ).fetchall()
    )
    assert per == {"ann": 30, "bob": 30, "cara": 30}
    (message,) = con.execute("select message from quarantine where contributor = 'dora'").fetchone()
    assert message.startswith("fLength: above maximum")  # named as the file spells it


def test_model_and_shap_use_the_lake_columns(mixed_lake: Path) -> None:
    con = connect(Lake(mixed_lake))
    model_path, metric = con.execute("select model_path, metric_value from models").fetchone()
    booster = lgb.Booster(model_file=str(mixed_lake / model_path))
    assert booster.feature_name() == ["flength", "status", "sepal_length_cm"]
    assert metric > 0.8  # the label follows fLength: the columns reached the model intact
    ranked = con.execute("select feature from feature_attribution order by rank").fetchall()
    assert ranked[0] == ("flength",)


def test_queries_with_the_original_headers_are_served(mixed_lake: Path, tmp_path: Path) -> None:
    queries = tmp_path / "queries.jsonl"
    table(np.random.default_rng(9), 5).drop(LABEL).write_ndjson(queries)
    spec = parse_spec((mixed_lake / "specs" / "mixed.yaml").read_text())
    assert read_queries(spec, queries).columns == ["flength", "status", "sepal_length_cm"]
    result = CliRunner().invoke(
        app, ["infer", "--datanet", "mixed", str(queries), "--lake", str(mixed_lake)]
    )
    assert result.exit_code == 0, result.output
    assert "logged 5 inferences" in result.output
    instance = dg.DagsterInstance.ephemeral()
    assets = ["inferences", "inference_attributions"]
    assert run_datanets(mixed_lake, instance, assets=assets) == {"mixed": True}
    con = connect(Lake(mixed_lake))
    logged = con.execute("select query_json from inferences").fetchall()
    assert len(logged) == 5 and all("sepal_length_cm" in q for (q,) in logged)
    shares = con.execute(
        "select sum(share_ppb) from inference_attributions group by inference_id"
    ).fetchall()
    assert shares == [(1_000_000_000,)] * 5
