"""Every table of the lake, declared once: what it holds, its kind, key and partitioning.

The one partitioning rule: a table whose columns are fixed holds every Datanet and is
partitioned by `datanet` (epoch tables by the epoch key `wine.0`, which names one Datanet
epoch); a table whose columns are a Datanet's own (its contributions, validation and
training rows) is one table per Datanet, `<name>_<datanet>`, unpartitioned.

*Log* tables are appended to (`Lake.append`: rows numbered by `seq`, roots extended from
the previous entry); *snapshot* tables are recomputed and replace their partition
(`Lake.write`: rows committed in the order of `key`). docs/ledger-spec.md §4.1–4.2.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.lake import Committed, Lake
from ledger.log import LOG, SNAPSHOT


@dataclass(frozen=True)
class TableSpec:
    """One table (or, `per_datanet`, one table per Datanet) of the lake."""

    name: str
    kind: str  # LOG or SNAPSHOT
    holds: str
    partition: str | None = "datanet"  # the partition column; None: unpartitioned
    key: tuple[str, ...] = ()  # a snapshot's row order (a log's is `seq`)
    per_datanet: bool = False
    cluster_by: str | None = None  # a log's files are sorted by it (lookups read little)

    def table(self, datanet: str) -> str:
        """The Delta table holding this Datanet's rows."""
        return f"{self.name}_{datanet}" if self.per_datanet else self.name


def _log(
    name: str, holds: str, per_datanet: bool = False, cluster_by: str | None = None
) -> TableSpec:
    partition = None if per_datanet else "datanet"
    return TableSpec(name, LOG, holds, partition, per_datanet=per_datanet, cluster_by=cluster_by)


def _snapshot(
    name: str, holds: str, key: tuple[str, ...], partition: str | None = "datanet"
) -> TableSpec:
    return TableSpec(name, SNAPSHOT, holds, partition, key, per_datanet=partition is None)


TABLES = {
    spec.name: spec
    for spec in (
        _snapshot("datanets", "every version of a Datanet's spec", ("spec_version",)),
        _snapshot("contributors", "registered contributors and keys", ("contributor",)),
        _log("receipts", "submissions in the order the lake received them"),
        _log(
            "contributions",
            "accepted rows, typed by the Datanet's spec",
            per_datanet=True,
            cluster_by="hash_prefix",  # duplicate detection looks rows up by it
        ),
        _log("quarantine", "rejected rows and files, with a reason"),
        _log("duplicates", "exact duplicates, credited to the first submitter"),
        _log("batches", "one row per ingested file; counts reconcile"),
        _snapshot("validation", "the fixed validation set", (), partition=None),
        _snapshot("quality", "quality axes per row", ("row_hash",)),
        _snapshot("contributor_quality", "quality per contributor", ("contributor",)),
        _snapshot("training_rows", "the rows the model trains on", ("row_hash",), None),
        _snapshot("models", "every trained model", ("model_id",)),
        _snapshot("feature_attribution", "SHAP importances per model", ("model_id", "feature")),
        _snapshot("contributor_values", "Shapley values per contributor", ("contributor",)),
        _snapshot("point_values", "KNN-Shapley values per row", ("row_hash",)),
        _log("inferences", "served predictions and their fees"),
        _log("inference_attributions", "each inference's shares per contributor"),
        _snapshot("epochs", "a closed epoch's record", ("datanet_epoch",), "datanet_epoch"),
        _snapshot(
            "rewards", "an epoch's payouts", ("role", "recipient", "source"), "datanet_epoch"
        ),
        _snapshot(
            "statements", "what each contributor earned and why", ("contributor",), "datanet_epoch"
        ),
        _log("governance", "proposals, votes and outcomes"),
    )
}


def commit(
    store: Lake,
    name: str,
    data: object,
    *,
    datanet: str,
    partition: str | None = None,
    after: int | None = None,
    run_id: str,
    code_version: str,
) -> Committed:
    """Write or append a catalogued table's rows for one Datanet (its partition
    `partition`, default the Datanet) and ledger them, as the catalog says; `after`: see
    `Lake.append` (logs only)."""
    spec = TABLES[name]
    part = (spec.partition, partition or datanet) if spec.partition else None
    if spec.kind == LOG:
        return store.append(
            spec.table(datanet),
            data,
            asset_key=name,
            partition=part,
            cluster_by=spec.cluster_by,
            after=after,
            run_id=run_id,
            code_version=code_version,
        )
    return store.write(
        spec.table(datanet),
        data,
        asset_key=name,
        partition=part,
        key=list(spec.key),
        run_id=run_id,
        code_version=code_version,
    )
