"""DuckDB over the lake: every Delta table, and the ledger, as a view.

Tables are registered as Arrow datasets from deltalake (`to_pyarrow_dataset`), which
works offline with any DuckDB version; DuckDB's own `delta` extension is downloaded at
run time and is not used.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from ledger.lake import Lake, LakeError, check_table_name


def connect(lake: Lake, versions: Mapping[str, int] | None = None) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB with one view per table (at `versions[name]` if given) + `ledger`."""
    versions = dict(versions or {})
    con = duckdb.connect(":memory:")
    names = lake.table_names()
    for name in list(versions):
        if name != "ledger" and name not in names:
            check_table_name(name)
            lake.delta_table(name)  # raises a clear error for a missing table
    for name in names:
        dataset = lake.delta_table(name, versions.get(name)).to_pyarrow_dataset()
        con.register(name, dataset)
    try:
        ledger = lake.ledger.delta_table(versions.get("ledger"))
    except Exception as exc:  # delta-rs raises a bare error for a missing version
        raise LakeError(f"the ledger has no version {versions.get('ledger')}: {exc}") from exc
    if ledger is not None:
        con.register("ledger", ledger.to_pyarrow_dataset())
    return con


def rows_where(lake: Lake, table: str, where: str, params: list[object]) -> list[dict[str, object]]:
    """Rows of a lake table matching a SQL condition, as dicts (none if no such table)."""
    check_table_name(table)
    if table not in lake.table_names():
        return []
    result = connect(lake).execute(f"select * from {table} where {where}", params)
    names = [d[0] for d in result.description]  # type: ignore[union-attr]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
