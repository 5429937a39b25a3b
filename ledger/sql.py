"""DuckDB over the lake: every Delta table, and the ledger, as a view.

Tables are registered as Arrow datasets from deltalake (`to_pyarrow_dataset`), which
works offline with any DuckDB version; DuckDB's own `delta` extension is downloaded at
run time and is not used.

A connection is a sandbox over the lake: once the tables are registered, DuckDB's own
file system access is switched off and the configuration locked, so SQL cannot read files
(`read_csv('/etc/passwd')`, `glob`), write them (`COPY ... TO`, `EXPORT`), attach
databases or install and load extensions. `check_read_only` also refuses every statement
but SELECT and EXPLAIN (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import duckdb

from ledger.lake import Lake, LakeError, check_table_name


def connect(
    lake: Lake,
    versions: Mapping[str, int] | None = None,
    tables: Iterable[str] | None = None,
) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB with one view per table (at `versions[name]` if given) + `ledger`;
    only the `tables` named, if given (opening every Delta log costs time)."""
    versions = dict(versions or {})
    con = duckdb.connect(":memory:")
    wanted = None if tables is None else {t.lower() for t in tables}
    names = [n for n in lake.table_names() if wanted is None or n in wanted]
    for name in list(versions):
        if name != "ledger" and name not in names:
            check_table_name(name)
            lake.delta_table(name)  # raises a clear error for a missing table
    for name in names:
        dataset = lake.delta_table(name, versions.get(name)).to_pyarrow_dataset()
        con.register(name, dataset)
    try:
        ledger = (
            lake.ledger.delta_table(versions.get("ledger"))
            if wanted is None or "ledger" in wanted
            else None
        )
    except Exception as exc:  # delta-rs raises a bare error for a missing version
        raise LakeError(f"the ledger has no version {versions.get('ledger')}: {exc}") from exc
    if ledger is not None:
        con.register("ledger", ledger.to_pyarrow_dataset())
    for setting in SANDBOX:
        con.execute(setting)
    return con


# Applied after the lake's tables are registered; the last one freezes the others.
SANDBOX = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET lock_configuration = true",
)
READ_STATEMENTS = ("SELECT", "EXPLAIN")


def tables_named(query: str) -> set[str] | None:
    """The tables a query names (None: it names none, e.g. SHOW TABLES: open them all)."""
    try:
        found = {name.lower() for name in duckdb.get_table_names(query)}
    except duckdb.Error:
        return None
    return found or None


def check_read_only(query: str) -> None:
    """Refuse any statement but SELECT (incl. SHOW, DESCRIBE, SUMMARIZE) and EXPLAIN."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise LakeError(str(exc).splitlines()[0]) from None
    for statement in statements:
        kind = statement.type.name
        if kind not in READ_STATEMENTS:
            raise LakeError(
                f"{kind} statements are refused: queries over the lake are read-only "
                "(SELECT or EXPLAIN; write results with `openledger sql --out FILE`)"
            )


def rows_where(lake: Lake, table: str, where: str, params: list[object]) -> list[dict[str, object]]:
    """Rows of a lake table matching a SQL condition, as dicts (none if no such table)."""
    check_table_name(table)
    if table not in lake.table_names():
        return []
    result = connect(lake, tables=[table]).execute(f"select * from {table} where {where}", params)
    names = [d[0] for d in result.description]  # type: ignore[union-attr]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
