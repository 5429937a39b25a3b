"""The one place a Dagster asset writes a table: Delta write + ledger commit + metadata.

A data engineer adding an asset declares its table in `assets.catalog`, calls
`store_table` and returns `materialization(...)`; the ledger entry, its check and the run
metadata come with it.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from assets.catalog import TABLES, commit
from assets.names import parse_epoch_key
from ledger.lake import Committed, Lake
from ledger.verify import verify_entry_data
from openledger_pipelines.version import code_version


def store_table(
    context: dg.AssetExecutionContext, lake: Lake, name: str, data: object
) -> Committed:
    """Write or append (as `assets.catalog` declares table `name`) the run's partition of a
    table, and commit it to the ledger. The run's partition key is the Datanet, or for an
    epoch run its key `wine.0`, which is also the epoch tables' partition value."""
    key = context.partition_key
    datanet = parse_epoch_key(key)[0] if TABLES[name].partition == "datanet_epoch" else key
    committed = commit(
        lake,
        name,
        data,
        datanet=datanet,
        partition=key,
        run_id=context.run.run_id,
        code_version=code_version(),
    )
    entry = committed.entry
    added = entry.row_count - entry.old_row_count if entry.table_kind == "log" else entry.row_count
    context.log.info(
        f"{name}: {entry.table_kind} {committed.table} v{committed.delta_version}, "
        f"{added} rows committed (now {entry.row_count}), root {entry.data_root[:16]}…, "
        f"ledger seq {entry.seq}"
    )
    return committed


def materialization(
    committed: Committed,
    asset_key: str | None = None,
    extra: Mapping[str, object] | None = None,
) -> dg.MaterializeResult:
    """What every materialization shows: rows, Delta version, root, ledger seq, URI."""
    metadata: dict[str, object] = {
        "dagster/row_count": dg.MetadataValue.int(committed.commitment.row_count),
        "delta_version": dg.MetadataValue.int(committed.delta_version),
        "data_root": dg.MetadataValue.text(committed.commitment.root),
        "ledger_seq": dg.MetadataValue.int(committed.entry.seq),
        "log_root": dg.MetadataValue.text(committed.entry.log_root),
        "table_uri": dg.MetadataValue.text(committed.table_uri),
        **(extra or {}),
    }
    return dg.MaterializeResult(asset_key=asset_key, metadata=metadata)  # type: ignore[arg-type]


def ledger_check_specs(*asset_keys: str) -> list[dg.AssetCheckSpec]:
    """The blocking `ledger_matches` check of each asset an op writes."""
    return [
        dg.AssetCheckSpec(
            "ledger_matches",
            asset=key,
            blocking=True,
            description="The committed Delta version recomputes to its ledger root.",
        )
        for key in asset_keys
    ]


def ledger_check(lake: Lake, committed: Committed, asset_key: str) -> dg.AssetCheckResult:
    """Re-read the committed version and recompute its root against the ledger entry."""
    diffs = verify_entry_data(lake, committed.entry)
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="ledger_matches",
        passed=not diffs,
        metadata={"ledger_seq": committed.entry.seq, "problems": "; ".join(diffs) or "none"},
    )
