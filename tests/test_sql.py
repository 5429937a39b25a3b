"""DuckDB over the lake: every table and the ledger as views, at any committed version."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from ledger.lake import Lake, LakeError
from ledger.sql import connect


@pytest.fixture(scope="module")
def slake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("sql") / "lake")
    # contributions v0 (alpha), v1 (+beta), v2 (alpha replaced); models v0, v1
    lake.write(
        "contributions",
        pa.table({"id": [1, 2], "datanet": ["alpha", "alpha"], "label": [0.1, 0.2]}),
        partition=("datanet", "alpha"),
        key=["id"],
    )
    lake.write(
        "contributions",
        pa.table({"id": [10], "datanet": ["beta"], "label": [1.0]}),
        partition=("datanet", "beta"),
        key=["id"],
    )
    lake.write("models", pa.table({"model_id": ["m1"], "auc": [0.7]}))
    lake.write(
        "contributions",
        pa.table({"id": [1, 2, 3], "datanet": ["alpha"] * 3, "label": [0.1, 0.25, 0.3]}),
        partition=("datanet", "alpha"),
        key=["id"],
    )
    lake.write("models", pa.table({"model_id": ["m1", "m2"], "auc": [0.7, 0.8]}))
    return lake


def _views(con: object) -> set[str]:
    rows = con.execute(  # type: ignore[attr-defined]
        "select view_name from duckdb_views() where not internal"
    ).fetchall()
    tables = con.execute("show tables").fetchall()  # type: ignore[attr-defined]
    return {r[0] for r in rows} | {r[0] for r in tables}


def test_every_table_and_the_ledger_are_views(slake: Lake) -> None:
    con = connect(slake)
    assert {"contributions", "models", "ledger"} <= _views(con)
    assert set(slake.table_names()) == {"contributions", "models"}
    assert con.execute("select count(*) from contributions").fetchone() == (4,)
    assert con.execute("select count(*) from models").fetchone() == (2,)
    assert con.execute("select count(*) from ledger").fetchone() == (5,)
    assert con.execute("select list(seq order by seq) from ledger").fetchone() == ([0, 1, 2, 3, 4],)


def test_ledger_joins_tables_with_sql(slake: Lake) -> None:
    con = connect(slake)
    rows = con.execute(
        """
        select l.partition_key, l.row_count, count(c.id)
        from ledger l
        join contributions c on c.datanet = l.partition_key
        where l.table_uri = 'tables/contributions' and l.delta_version = 2
        group by all
        """
    ).fetchall()
    assert rows == [("alpha", 3, 3)]
    by_datanet = con.execute(
        "select datanet, sum(label) from contributions group by datanet order by datanet"
    ).fetchall()
    assert by_datanet == [("alpha", pytest.approx(0.65)), ("beta", pytest.approx(1.0))]


def test_older_versions_return_the_old_rows(slake: Lake) -> None:
    con = connect(slake, versions={"contributions": 0, "models": 0})
    assert con.execute("select id, label from contributions order by id").fetchall() == [
        (1, 0.1),
        (2, 0.2),
    ]
    assert con.execute("select model_id from models").fetchall() == [("m1",)]

    con = connect(slake, versions={"contributions": 1})
    assert con.execute("select id from contributions order by id").fetchall() == [
        (1,),
        (2,),
        (10,),
    ]
    assert con.execute("select count(*) from models").fetchone() == (2,)  # others: latest

    # The ledger itself at an older version: the first two entries.
    con = connect(slake, versions={"ledger": 1})
    assert con.execute("select list(seq order by seq) from ledger").fetchone() == ([0, 1],)


def test_old_version_rows_match_the_ledger_row_count(slake: Lake) -> None:
    con = connect(slake, versions={"contributions": 0})
    (ledger_count,) = con.execute(
        "select row_count from ledger where table_uri = 'tables/contributions' "
        "and delta_version = 0"
    ).fetchone()
    assert con.execute("select count(*) from contributions").fetchone() == (ledger_count,)


@pytest.mark.parametrize(
    ("versions", "match"),
    [
        ({"nope": 0}, "table 'nope' does not exist"),
        ({"contributions": 0, "missing_table": 3}, "table 'missing_table' does not exist"),
        ({"../x": 0}, "invalid table name"),
        ({"Contributions": 0}, "invalid table name"),
        ({"contributions": 99}, "table 'contributions' has no version 99"),
    ],
)
def test_bad_versions_raise_lake_error(slake: Lake, versions: dict[str, int], match: str) -> None:
    with pytest.raises(LakeError, match=match):
        connect(slake, versions=versions)


def test_empty_lake_has_no_views(tmp_path: Path) -> None:
    con = connect(Lake(tmp_path / "empty"))
    assert not {"ledger"} & _views(con)
    with pytest.raises(LakeError, match="does not exist"):
        connect(Lake(tmp_path / "empty"), versions={"contributions": 0})


def test_missing_ledger_version_raises_lake_error(slake: Lake) -> None:
    with pytest.raises(LakeError, match="no version 99"):
        connect(slake, versions={"ledger": 99})


# --- the sandbox: SQL reads the lake's tables and nothing else ------------------------------

SANDBOX_ESCAPES = [
    ("select * from read_csv('/etc/passwd')", "file system operations are disabled"),
    ("select * from glob('{home}/*')", "file system operations are disabled"),
    ("select * from read_text('/etc/hostname')", "file system operations are disabled"),
    ("copy models to '{tables}/models/evil.parquet'", "COPY statements are refused"),
    ("copy (select 1) to '/tmp/openledger-escape.csv'", "COPY statements are refused"),
    ("attach '{home}/evil.duckdb' as evil", "ATTACH statements are refused"),
    ("install httpfs", "LOAD statements are refused"),
    ("load httpfs", "LOAD statements are refused"),
    ("set enable_external_access = true", "SET statements are refused"),
    ("export database '{home}/dump'", "EXPORT statements are refused"),
    ("create table stash as select 1", "CREATE statements are refused"),
]


@pytest.mark.parametrize(("query", "message"), SANDBOX_ESCAPES)
def test_cli_sql_refuses_escapes_in_one_line(
    slake: Lake, tmp_path: Path, query: str, message: str
) -> None:
    from typer.testing import CliRunner

    from openledger_pipelines.cli import app

    before = sorted(p.relative_to(slake.root_path()) for p in slake.root_path().rglob("*"))
    text = query.format(home=tmp_path, tables=slake.root_path() / "tables")
    result = CliRunner().invoke(app, ["sql", text, "--lake", str(slake.root)])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    after = sorted(p.relative_to(slake.root_path()) for p in slake.root_path().rglob("*"))
    assert after == before and list(tmp_path.iterdir()) == []  # nothing written anywhere


def test_python_connections_are_sandboxed_too(slake: Lake) -> None:
    import duckdb

    con = connect(slake)
    assert con.execute("select count(*) from models").fetchone() == (2,)
    for query in ("select * from read_csv('/etc/passwd')", "copy models to '/tmp/x.csv'"):
        with pytest.raises(duckdb.PermissionException):
            con.execute(query)
    with pytest.raises(duckdb.InvalidInputException, match="configuration has been locked"):
        con.execute("set enable_external_access = true")


def test_sql_out_writes_results_through_the_cli(slake: Lake, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from openledger_pipelines.cli import app

    target = tmp_path / "models.parquet"
    result = CliRunner().invoke(
        app,
        [
            "sql",
            "select * from models order by model_id",
            "--lake",
            str(slake.root),
            "--out",
            str(target),
        ],
    )
    assert result.exit_code == 0, result.output
    assert pq.read_table(target).column("model_id").to_pylist() == ["m1", "m2"]
    result = CliRunner().invoke(
        app, ["sql", "select 1", "--lake", str(slake.root), "--out", str(tmp_path / "x.txt")]
    )
    assert result.exit_code == 2 and ".csv, .parquet, .jsonl" in result.output
