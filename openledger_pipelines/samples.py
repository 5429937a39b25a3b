"""Demo-data assets: each Datanet's bundled sample rows, ledgered like any other table."""

import dagster as dg

from openledger_pipelines.demo import DEMO_TABLE, demo_table
from openledger_pipelines.ledgered import write_ledgered
from openledger_pipelines.partitions import datanet_partitions
from openledger_pipelines.resources import LakeResource


@dg.asset(
    name=DEMO_TABLE,
    partitions_def=datanet_partitions,
    pool="ledger",
    group_name="demo",
    kinds={"delta", "polars"},
)
def samples(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Rows of the Datanet's bundled scikit-learn data set (wine or breast_cancer)."""
    if context.partition_key not in ("wine", "breast_cancer"):
        raise dg.Failure(f"no bundled demo data for Datanet {context.partition_key!r}")
    table = demo_table(context.partition_key)
    return write_ledgered(
        context, lake.open(), DEMO_TABLE, table, partition_column="datanet", key=["row_id"]
    )
