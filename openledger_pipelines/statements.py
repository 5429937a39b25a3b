"""Statements and payouts as readers see them (CLI, demo): rows from the lake, rich tables."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from assets.names import check_contributor_id, check_datanet_name, epoch_key
from ledger.lake import Lake
from ledger.log import LedgerEntry
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
        entry = batches_entry(lake, row["datanet"], row["contributions_seq"])
        row["batches_entry_seq"] = entry.seq if entry else None
        row["batches"] = contributor_batches(lake, entry, contributor) if entry else []
    return rows


BATCH_FIELDS = (
    "receipt_seq",
    "file_name",
    "batch_id",
    "received_at",
    "status",
    "rows_in",
    "accepted",
    "duplicates",
    "quarantined",
)


def batches_entry(lake: Lake, datanet: str, contributions_seq: int | None) -> LedgerEntry | None:
    """The `batches` entry ingested with the contributions an epoch used (the same run),
    else the Datanet's latest `batches` entry before them; None without one."""
    candidates = lake.ledger.entries_of(lake.table_uri("batches"), datanet)
    if contributions_seq is None:
        return candidates[-1] if candidates else None
    contributions = lake.ledger.entry(contributions_seq)
    run = contributions.run_id if contributions is not None else None
    for entry in candidates:
        if entry.seq > contributions_seq and entry.run_id == run:
            return entry
    earlier = [e for e in candidates if e.seq < contributions_seq]
    return earlier[-1] if earlier else None


def contributor_batches(lake: Lake, entry: LedgerEntry, contributor: str) -> list[dict[str, Any]]:
    """A contributor's batches in the committed `batches` version, in receipt order: the
    place in the credit order the lake gave each of their files."""
    table = lake.read("batches", entry.delta_version, ("datanet", str(entry.partition_key)))
    rows = [r for r in table.to_pylist() if r["contributor"] == contributor]
    rows.sort(key=lambda r: (r["receipt_seq"] is None, r["receipt_seq"] or 0, r["batch_id"]))
    return [{k: r.get(k) for k in BATCH_FIELDS} for r in rows]


def batches_table(r: dict[str, Any]) -> Table:
    """A statement's batches: each file with its receipt number (its place in the credit
    order: the first receipt of a row keeps its credit) and what became of its rows."""
    grid = Table(
        "receipt",
        "file",
        "received at",
        "status",
        "rows in",
        "accepted",
        "duplicates",
        "quarantined",
        title=(
            f"batches of {r['contributor']} · {r['datanet']}, in receipt order "
            f"(ledger seq {r['batches_entry_seq']})"
        ),
    )
    for b in r["batches"]:
        grid.add_row(
            f"#{b['receipt_seq']}",
            str(b["file_name"]),
            str(b["received_at"])[:26],
            str(b["status"]),
            *(str(b[k]) for k in ("rows_in", "accepted", "duplicates", "quarantined")),
        )
    return grid


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
