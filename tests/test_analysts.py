"""docs/analysts.md: every SQL query runs unchanged on the demo lake and answers what it says.

The demo lake is built once (the `openledger demo` command through typer's CliRunner);
each documented ```sql block is run through `ledger.sql.connect` with the versions its
`--at table=version` comment names, and its answer is checked against the planted
behaviours of `assets/demo_data.py` and against independent reads of the lake.
"""

from __future__ import annotations

import hashlib
import json
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from assets.demo_data import DEMO_CONTRIBUTORS, DEMO_DATANETS, demo_spec
from assets.ingest import FILE_REASONS, ROW_REASONS
from ledger.commitment import commit_table
from ledger.lake import Lake
from ledger.sql import connect
from openledger_pipelines.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "analysts.md"
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.S | re.M)
HEADING = re.compile(r"^### (\d+)\. (.+)$", re.M)
AT = re.compile(r"--at\s+([a-z][a-z0-9_]*)=(\d+)")
# Query number -> words its heading must contain (a reordered page fails loudly).
TITLES = {
    1: "Who contributed what",
    2: "Rejected rows by reason code",
    3: "Duplicates",
    4: "rejected whole",
    5: "Reconciliation",
    6: "Ledger history",
    7: "earlier version",
    8: "never contributed",
    9: "Spec versions",
    10: "Latest ledger entry",
}
Rows = list[dict[str, Any]]
runner = CliRunner()


def parse_doc(text: str) -> dict[int, tuple[str, str]]:
    """{number: (heading, sql)} for every ```sql block under a numbered ### heading."""
    headings = list(HEADING.finditer(text))
    found: dict[int, tuple[str, str]] = {}
    for block in SQL_BLOCK.finditer(text):
        before = [h for h in headings if h.end() < block.start()]
        assert before, f"sql block without a numbered heading: {block.group(1)[:60]!r}"
        heading = before[-1]
        number = int(heading.group(1))
        assert number not in found, f"query {number} has more than one sql block"
        prose = text[heading.end() : block.start()].strip()
        assert prose, f"query {number} has no sentence saying what it answers"
        found[number] = (heading.group(2), block.group(1))
    return found


QUERIES = parse_doc(DOC.read_text(encoding="utf-8"))


def documented_versions(number: int) -> dict[str, int]:
    return {name: int(v) for name, v in AT.findall(QUERIES[number][1])}


@pytest.fixture(scope="module")
def demo_lake(demo_lake_root: Path) -> Lake:
    return Lake(demo_lake_root)


def query(lake: Lake, number: int, versions: dict[str, int] | None = None) -> Rows:
    """Run documented query `number` (at its documented versions unless given)."""
    pinned = documented_versions(number) if versions is None else versions
    relation = connect(lake, pinned).sql(QUERIES[number][1])
    assert relation is not None
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def scalar(lake: Lake, sql: str, versions: dict[str, int] | None = None) -> Any:
    row = connect(lake, versions).execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_doc_has_exactly_ten_headed_queries() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert len(SQL_BLOCK.findall(text)) == 10
    assert sorted(QUERIES) == list(range(1, 11))
    for number, words in TITLES.items():
        assert words.lower() in QUERIES[number][0].lower(), (number, QUERIES[number][0])
    # Only the time-travel query pins versions; every other query reads the latest.
    assert {n for n in QUERIES if documented_versions(n)} == {7}


def test_1_who_contributed_what(demo_lake: Lake) -> None:
    rows = query(demo_lake, 1)
    assert {(r["datanet"], r["contributor"]) for r in rows} == {
        (d, c) for d in DEMO_DATANETS for c in DEMO_CONTRIBUTORS
    }
    for datanet in DEMO_DATANETS:
        mine = {r["contributor"]: r for r in rows if r["datanet"] == datanet}
        accepted = scalar(demo_lake, f"select count(*) from contributions_{datanet}")
        assert sum(r["accepted"] for r in mine.values()) == accepted
        assert sum(r["accepted_share_pct"] for r in mine.values()) == pytest.approx(100, abs=0.05)
        assert max(mine.values(), key=lambda r: r["accepted_share_pct"])["contributor"] == "alice"
        assert mine["erin"]["duplicates"] > mine["erin"]["accepted"] > 0
        assert mine["gina"]["accepted"] == 5
        assert mine["frank"]["files"] == 4 and mine["frank"]["rejected_files"] == 2
        assert mine["frank"]["quarantined"] > 0
        for row in mine.values():
            assert row["rows_in"] == row["accepted"] + row["quarantined"] + row["duplicates"]
            if row["contributor"] != "frank":
                assert (row["rejected_files"], row["quarantined"]) == (0, 0), row


def test_2_rejected_rows_by_reason_code(demo_lake: Lake) -> None:
    rows = query(demo_lake, 2)
    assert {r["contributor"] for r in rows} == {"frank"}
    for datanet in DEMO_DATANETS:
        mine = [r for r in rows if r["datanet"] == datanet]
        row_codes = {r["reason_code"] for r in mine if r["rejected_rows"] > 0}
        file_codes = {r["reason_code"] for r in mine if r["rejected_files"] > 0}
        assert "NON_FINITE" in row_codes
        assert {"OUT_OF_RANGE", "BAD_TYPE", "MISSING_VALUE", "BAD_CATEGORY"} <= row_codes
        assert row_codes <= set(ROW_REASONS)
        assert file_codes == {"BAD_ENCODING", "BAD_SIGNATURE"}
        assert file_codes <= set(FILE_REASONS)
        batches_say = scalar(
            demo_lake, f"select sum(quarantined) from batches where datanet = '{datanet}'"
        )
        assert sum(r["rejected_rows"] for r in mine) == batches_say
        non_finite = next(r for r in mine if r["reason_code"] == "NON_FINITE")
        assert "NaN or infinite" in non_finite["example_message"]


def test_3_duplicates_credit_the_first_contributor(demo_lake: Lake) -> None:
    rows = query(demo_lake, 3)
    assert [(r["datanet"], r["copier"], r["credited_to"]) for r in rows] == [
        ("breast_cancer", "erin", "bob"),
        ("wine", "erin", "bob"),
    ]
    for row in rows:
        datanet = row["datanet"]
        bob = scalar(
            demo_lake,
            f"select count(*) from contributions_{datanet} where contributor = 'bob'",
        )
        assert row["duplicate_rows"] == int(0.7 * bob)  # erin resubmits 70 % of bob's rows
        assert row["copier_files"] == 1
        assert row["original_files"].endswith("-bob-bob.parquet")
        # Every duplicated row is in contributions, credited to bob.
        credited = scalar(
            demo_lake,
            f"select count(*) from duplicates d join contributions_{datanet} c "
            f"using (row_hash) where d.datanet = '{datanet}' and c.contributor = 'bob'",
        )
        assert credited == row["duplicate_rows"]


def test_4_files_rejected_whole(demo_lake: Lake) -> None:
    rows = query(demo_lake, 4)
    assert len(rows) == scalar(demo_lake, "select count(*) from batches where status = 'rejected'")
    assert {(r["datanet"], r["reason_code"]) for r in rows} == {
        (d, code) for d in DEMO_DATANETS for code in ("BAD_ENCODING", "BAD_SIGNATURE")
    }
    for row in rows:
        assert row["contributor"] == "frank"
        expected = "frank-latin1.csv" if row["reason_code"] == "BAD_ENCODING" else "unsigned.csv"
        assert row["file_name"].endswith(expected), row
        assert row["message"].startswith(row["file_name"])


def test_5_reconciliation_is_empty_and_catches_a_mismatch(demo_lake: Lake) -> None:
    assert query(demo_lake, 5) == []
    # quarantine at version 0 has no wine partition: frank's wine junk file is flagged.
    stale = query(demo_lake, 5, {"quarantine": 0})
    assert [(r["datanet"], r["contributor"]) for r in stale] == [("wine", "frank")]
    assert stale[0]["file_name"].endswith("frank-junk.csv")
    assert (stale[0]["quarantined"], stale[0]["quarantined_in_table"]) == (6, 0)
    # batches at version 0 has no wine batches: the wine rows have no batch to belong to.
    orphans = query(demo_lake, 5, {"batches": 0})
    assert orphans and {r["datanet"] for r in orphans} == {"wine"}
    assert all(r["file_name"] is None for r in orphans)


def test_6_ledger_history_of_batches(demo_lake: Lake) -> None:
    rows = query(demo_lake, 6)
    assert [r["partition_key"] for r in rows] == ["breast_cancer", "wine"]
    seqs = [r["seq"] for r in rows]
    versions = [r["delta_version"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(a < b for a, b in pairwise(versions))
    assert [r["committed_at"] for r in rows] == sorted(r["committed_at"] for r in rows)
    for row in rows:
        part = ("datanet", row["partition_key"])
        table = demo_lake.read("batches", row["delta_version"], part)
        assert row["row_count"] == table.num_rows == 10
        assert row["data_root"] == commit_table(table, ["seq"]).root  # a log, in seq order


def test_7_table_at_an_earlier_version(demo_lake: Lake) -> None:
    assert documented_versions(7) == {"batches": 0}
    old = query(demo_lake, 7)
    latest = query(demo_lake, 7, {})
    assert len(old) < len(latest)
    assert [r["datanet"] for r in latest] == sorted(DEMO_DATANETS)
    assert old == [r for r in latest if r["datanet"] == "breast_cancer"]
    assert old[0]["files"] == 10
    breast_cancer_rows = scalar(demo_lake, "select count(*) from contributions_breast_cancer")
    assert old[0]["accepted"] == breast_cancer_rows
    # The CLI with the documented --at gives the same answer.
    result = runner.invoke(
        app, ["sql", QUERIES[7][1], "--lake", demo_lake.root, "--at", "batches=0", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.output.splitlines()] == old


def test_8_registered_but_never_contributed(demo_lake: Lake) -> None:
    assert query(demo_lake, 8) == []  # everyone got rows accepted in the demo
    before_wine = query(demo_lake, 8, {"batches": 0})
    assert [(r["datanet"], r["contributor"]) for r in before_wine] == [
        ("wine", c) for c in sorted(DEMO_CONTRIBUTORS)
    ]
    assert all(r["files_submitted"] == 0 and r["accepted_rows"] == 0 for r in before_wine)


def test_9_spec_versions(demo_lake: Lake) -> None:
    rows = query(demo_lake, 9)
    assert [(r["datanet"], r["spec_version"]) for r in rows] == [
        ("breast_cancer", 1),
        ("wine", 1),
    ]
    by_name = {r["datanet"]: r for r in rows}
    assert (by_name["wine"]["task"], by_name["wine"]["metric"]) == ("multiclass", "accuracy")
    assert (by_name["breast_cancer"]["task"], by_name["breast_cancer"]["metric"]) == (
        "binary",
        "roc_auc",
    )
    for name, row in by_name.items():
        spec = demo_spec(name)
        assert row["spec_hash"] == spec.spec_hash()
        spec_json = scalar(demo_lake, f"select spec_json from datanets where datanet = '{name}'")
        assert row["spec_hash"] == hashlib.sha256(spec_json.encode()).hexdigest()
        assert row["features"] == len(spec.features)
        assert row["label"] == "label" and row["require_signatures"] is True
        entry = connect(demo_lake).execute(
            "select asset_key, partition_key, row_count from ledger where seq = ?",
            [row["first_ledger_seq"]],
        )
        assert entry.fetchone() == ("datanets", name, 1)


def test_10_latest_ledger_entry_per_asset_and_partition(demo_lake: Lake) -> None:
    entries = demo_lake.ledger.entries()

    def newest(upto: int) -> dict[tuple[str, str, str | None], int]:
        latest: dict[tuple[str, str, str | None], int] = {}
        for entry in entries[: upto + 1]:
            latest[(entry.asset_key, entry.table_uri, entry.partition_key)] = entry.seq
        return latest

    rows = query(demo_lake, 10)
    assert {(r["asset_key"], r["table_uri"], r["partition_key"]): r["seq"] for r in rows} == (
        newest(len(entries) - 1)
    )
    # per demo Datanet: its receipts, 16 ledgered tables and the 3 tables of its epoch 0
    assert len(rows) == 2 * 1 + 2 * 16 + 2 * 3
    for r in rows:
        assert entries[r["seq"]].data_root == r["data_root"]
        assert entries[r["seq"]].row_count == r["row_count"]
    # Time travel on the ledger itself: version v holds entries 0..v.
    halfway = len(entries) // 2
    earlier = query(demo_lake, 10, {"ledger": halfway})
    assert {(r["asset_key"], r["table_uri"], r["partition_key"]): r["seq"] for r in earlier} == (
        newest(halfway)
    )
    assert len(earlier) < len(rows)
