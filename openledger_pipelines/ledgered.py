"""The one place a Dagster asset writes a table: Delta write + ledger commit + metadata.

A data engineer adding an asset calls `write_table` and returns `materialization(...)`;
the ledger entry, its check and the run metadata come with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from ledger.lake import Committed, Lake
from ledger.verify import verify_entry_data
from openledger_pipelines.version import code_version


def write_table(
    context: dg.AssetExecutionContext,
    lake: Lake,
    table_name: str,
    data: object,
    *,
    asset_key: str,
    partition_column: str | None = None,
    key: Sequence[str] | None = None,
) -> Committed:
    """Write a snapshot table (or the run's partition of it: the partition value is the
    run's partition key) and commit it to the ledger."""
    partition = None
    if partition_column is not None and context.has_partition_key:
        partition = (partition_column, context.partition_key)
    committed = lake.write(
        table_name,
        data,
        asset_key=asset_key,
        partition=partition,
        key=key,
        run_id=context.run.run_id,
        code_version=code_version(),
    )
    context.log.info(
        f"{asset_key}: wrote {table_name} v{committed.delta_version}, "
        f"{committed.commitment.row_count} rows, root {committed.commitment.root[:16]}…, "
        f"ledger seq {committed.entry.seq}"
    )
    return committed


def append_table(
    context: dg.AssetExecutionContext,
    lake: Lake,
    table_name: str,
    data: object,
    *,
    asset_key: str,
    partition_column: str | None = None,
) -> Committed:
    """Append rows to a log table (the run's partition of it) and commit them: only the
    new rows are read back and hashed (ledger.lake.Lake.append)."""
    partition = None
    if partition_column is not None and context.has_partition_key:
        partition = (partition_column, context.partition_key)
    committed = lake.append(
        table_name,
        data,
        asset_key=asset_key,
        partition=partition,
        run_id=context.run.run_id,
        code_version=code_version(),
    )
    entry = committed.entry
    context.log.info(
        f"{asset_key}: {entry.row_count - entry.old_row_count} new rows in {table_name} "
        f"(now {entry.row_count}), v{committed.delta_version}, root {entry.data_root[:16]}…, "
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
