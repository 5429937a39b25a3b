"""Statements and payouts as readers see them (CLI, demo): rows from the lake, rich tables."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from assets.names import check_contributor_id, check_datanet_name, epoch_key
from ledger.lake import Lake
from ledger.sql import connect, rows_where


def datanet_summaries(lake: Lake) -> list[dict[str, Any]]:
    """Per Datanet with a spec: spec versions, contributors, and what ingestion did with
    its files (the same labels as the demo's ingestion table, all from `batches`)."""
    from assets.names import spec_names

    names = spec_names(lake.root_path())
    tables = set(lake.table_names())
    con = connect(lake, tables=["datanets", "contributors", "batches"])
    try:

        def count(sql: str, table: str, name: str) -> int:
            if table not in tables:
                return 0
            return int(con.execute(sql, [name]).fetchone()[0] or 0)  # type: ignore[index]

        def batch_sum(column: str, name: str) -> int:
            return count(f"select sum({column}) from batches where datanet = ?", "batches", name)

        return [
            {
                "datanet": name,
                "spec versions": count(
                    "select count(*) from datanets where datanet = ?", "datanets", name
                ),
                "contributors": count(
                    "select count(*) from contributors where datanet = ?", "contributors", name
                ),
                "files": count("select count(*) from batches where datanet = ?", "batches", name),
                "rejected files": batch_sum("(status = 'rejected')::int", name),
                "rows in": batch_sum("rows_in", name),
                "accepted rows": batch_sum("accepted", name),
                "quarantined rows": batch_sum("quarantined", name),
                "duplicate rows": batch_sum("duplicates", name),
            }
            for name in names
        ]
    finally:
        con.close()


def payouts_table(lake: Lake, datanet: str, epoch: int) -> Table:
    """An epoch's payouts, titled with its pool, carry-over, fees and policy."""
    key = epoch_key(datanet, epoch)
    record = rows_where(lake, "epochs", "datanet_epoch = ?", [key])[0]
    title = (
        f"{datanet} epoch {epoch}: pool {record['pool']:,} (carried in "
        f"{record['carried_in']:,}), paid {record['paid_pool']:,}, carried out "
        f"{record['carried_out']:,}; fees {record['fees_total']:,} from "
        f"{record['inferences_paid']} inferences; policy {record['policy_hash'][:12]}"
    )
    grid = Table("role", "recipient", "source", "amount", "reason", title=title)
    rows = rows_where(
        lake, "rewards", "datanet_epoch = ? order by source desc, amount desc, recipient", [key]
    )
    for row in rows:
        grid.add_row(
            row["role"], row["recipient"], row["source"], f"{row['amount']:,}", row["reason"]
        )
    return grid


def statement_rows(
    lake: Lake, contributor: str, epoch: int | None = None, datanet: str | None = None
) -> list[dict[str, Any]]:
    """A contributor's statement rows, with the ledger entries of the epoch's tables."""
    check_contributor_id(contributor)
    where, params = "contributor = ?", [contributor]
    if epoch is not None:
        where, params = where + " and epoch = ?", [*params, epoch]
    if datanet is not None:
        where, params = where + " and datanet = ?", [*params, check_datanet_name(datanet)]
    rows = rows_where(lake, "statements", where + " order by datanet, epoch", params)
    for row in rows:
        for table in ("statements", "rewards", "epochs"):
            found = lake.ledger.latest(lake.table_uri(table), row["datanet_epoch"])
            row[f"{table}_entry_seq"] = found.seq if found else None
            row[f"{table}_entry_root"] = found.data_root if found else None
        row["flags"] = [f for f in row["flags"].split(",") if f]
    return rows


def statement_table(r: dict[str, Any]) -> Table:
    """One statement row: what the contributor earned, why, and from which entries."""
    grid = Table(
        "item",
        "value",
        title=f"statement: {r['contributor']} · {r['datanet']} · epoch {r['epoch']}",
        show_header=False,
    )
    for label, value in (
        (
            "rows contributed",
            f"{r['rows_contributed']} (ingested {r['rows_ingested']}, "
            f"duplicates {r['duplicates']}, quarantined {r['quarantined']})",
        ),
        ("rows accepted by quality", str(r["rows_accepted"])),
        ("rows that earned", r["rows_that_earned"]),
        ("rows that earned nothing", r["rows_that_earned_nothing"]),
        ("quality multiplier", f"{r['quality']:.3f}"),
        (
            "value ± std error",
            f"{r['value']:.5f} ± {r['std_error']:.5f} (lower bound {r['lower_bound']:.5f})",
        ),
        ("rank", str(r["rank"])),
        ("weight", f"{r['weight']:.6g}"),
        ("share of the paid pool", f"{r['share']:.4%}"),
        ("amount from the pool", f"{r['amount_pool']:,}"),
        ("amount from fees", f"{r['amount_fees']:,} ({r['inferences_attributed']} inferences)"),
        ("total", f"{r['amount_total']:,}"),
        ("flags", ", ".join(r["flags"]) or "none"),
        ("policy", r["policy_hash"]),
        ("values from", f"ledger seq {r['values_seq']} root {r['values_root']}"),
        ("quality from", f"ledger seq {r['quality_seq']} root {r['quality_root']}"),
        ("contributions", f"ledger seq {r['contributions_seq']} root {r['contributions_root']}"),
        (
            "rewards committed",
            f"ledger seq {r['rewards_entry_seq']} root {r['rewards_entry_root']}",
        ),
    ):
        grid.add_row(label, value)
    return grid
