"""The one place a Dagster asset writes a table: Delta write + ledger commit + metadata."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ledger.lake import Committed, Lake
from openledger_pipelines.version import code_version


def commit_metadata(committed: Committed) -> dict[str, dg.MetadataValue]:
    """What every materialization shows: rows, Delta version, root, ledger seq, URI."""
    return {
        "dagster/row_count": dg.MetadataValue.int(committed.commitment.row_count),
        "delta_version": dg.MetadataValue.int(committed.delta_version),
        "data_root": dg.MetadataValue.text(committed.commitment.root),
        "ledger_seq": dg.MetadataValue.int(committed.entry.seq),
        "log_root": dg.MetadataValue.text(committed.entry.log_root),
        "table_uri": dg.MetadataValue.text(committed.table_uri),
    }


def write_ledgered(
    context: dg.AssetExecutionContext,
    lake: Lake,
    table_name: str,
    data: object,
    *,
    partition_column: str | None = None,
    key: Sequence[str] | None = None,
) -> dg.MaterializeResult:
    """Write an asset's table (its partition, if partitioned) and commit it to the ledger."""
    partition = (
        (partition_column, context.partition_key)
        if partition_column is not None and context.has_partition_key
        else None
    )
    committed = lake.write(
        table_name,
        data,
        asset_key=context.asset_key.to_user_string(),
        partition=partition,
        key=key,
        run_id=context.run.run_id,
        code_version=code_version(),
    )
    context.log.info(
        f"committed {table_name} v{committed.delta_version}: "
        f"{committed.commitment.row_count} rows, "
        f"root {committed.commitment.root[:16]}…, ledger seq {committed.entry.seq}"
    )
    return dg.MaterializeResult(metadata=commit_metadata(committed))
