"""The embedded demo: real tabular data committed, verified and proved end to end.

Until the Dagster pipeline lands, the main job is a ledger demo over two Datanets built
from scikit-learn's bundled wine and breast-cancer tables: commit each as a partition of a
`samples` table, append a second batch to one of them, verify the ledger, and make and
check an inclusion proof, a consistency proof and a signed checkpoint.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_breast_cancer, load_wine

from ledger import checkpoint as ckpt
from ledger.lake import Lake
from ledger.proofcheck import check_proof_document
from ledger.proofs import consistency_proof_document, inclusion_proof_document
from ledger.verify import verify_lake

DEMO_TABLE = "samples"


def demo_table(datanet: str, first_id: int = 0, rows: slice | None = None) -> pa.Table:
    """A Datanet's rows from a bundled scikit-learn data set, as an Arrow table."""
    data = load_wine() if datanet == "wine" else load_breast_cancer()
    features = data.data[rows] if rows is not None else data.data
    labels = data.target[rows] if rows is not None else data.target
    n = features.shape[0]
    columns: dict[str, pa.Array] = {
        "datanet": pa.array([datanet] * n),
        "row_id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
        "label": pa.array(labels.astype(np.int64)),
    }
    for j in range(6):  # one schema for both Datanets: their first six features
        columns[f"f{j}"] = pa.array(features[:, j])
    return pa.table(columns)


def run_demo(lake: Lake, console: Console, code_version: str) -> bool:
    """Commit, verify and prove on the demo data; returns whether everything checked."""
    run_id = "demo"
    written = [
        lake.write(
            DEMO_TABLE,
            demo_table("wine"),
            partition=("datanet", "wine"),
            key=["row_id"],
            run_id=run_id,
            code_version=code_version,
        ),
        lake.write(
            DEMO_TABLE,
            demo_table("breast_cancer", rows=slice(0, 300)),
            partition=("datanet", "breast_cancer"),
            key=["row_id"],
            run_id=run_id,
            code_version=code_version,
        ),
        lake.write(
            DEMO_TABLE,
            demo_table("breast_cancer"),  # a second batch arrives
            partition=("datanet", "breast_cancer"),
            key=["row_id"],
            run_id=run_id,
            code_version=code_version,
        ),
    ]
    summary = Table("seq", "table", "partition", "delta version", "rows", "data root")
    for c in written:
        summary.add_row(
            str(c.entry.seq),
            c.table,
            c.entry.partition_key or "",
            str(c.delta_version),
            str(c.commitment.row_count),
            c.commitment.root[:16],
        )
    console.print(summary)

    report = verify_lake(lake)
    console.print(
        f"verify: {'[green]OK' if report.ok else '[red]FAILED'}[/] — "
        f"{report.entries} entries, {report.rows_checked} rows recomputed"
    )

    proof = inclusion_proof_document(lake, DEMO_TABLE, {"row_id": 7}, partition_key="wine")
    ok_row, message = check_proof_document(json.loads(json.dumps(proof)))
    console.print(
        f"inclusion proof of wine row_id=7: {'[green]OK' if ok_row else '[red]FAIL'}[/]"
        f" — {message}",
        highlight=False,
    )
    console.print_json(json.dumps({k: proof[k] for k in ("row", "data")}))

    ok_cons, message = check_proof_document(consistency_proof_document(lake, 1))
    console.print(f"consistency proof: {'[green]OK' if ok_cons else '[red]FAIL'}[/] — {message}")

    signer, verifier = ckpt.generate_keys("openledger.demo")
    entries = lake.ledger.entries()
    note = ckpt.sign_checkpoint(ckpt.checkpoint_of(entries, "openledger/demo"), signer)
    ckpt.check_against_ledger(ckpt.open_checkpoint(note, verifier), entries)
    console.print(f"signed checkpoint (verifier key {verifier}):", highlight=False)
    console.out(note, highlight=False)
    return report.ok and ok_row and ok_cons
