"""The fixed validation set of a Datanet: the yardstick of every model and utility.

It is fixed per spec version and never drawn from contributions, so no contributor can
move the score that values them by contributing to it. `bundled` sets come from a data set
shipped with scikit-learn (the demo's are the held-out part of the stratified split in
`assets.demo_data.split_bundled`); `file` sets are a CSV/Parquet/JSONL file named
relative to the spec, checked and copied into the lake by `openledger datanet create`
(`assets.layout.validation_copy`) and read from there, validated like a contribution (any
invalid row is an error, not a quarantine).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from assets.datanets import DatanetSpec, SpecError
from assets.demo_data import split_bundled
from assets.ingest import read_strict
from assets.layout import stored_validation_file


def validation_set(spec: DatanetSpec, specs_dir: Path) -> pl.DataFrame:
    """The spec's validation rows, typed by the spec's columns and keyed by lake column."""
    source = spec.validation
    columns = {c.identifier: c.polars_type() for c in spec.columns}
    if source.kind == "bundled":
        try:
            _, frame = split_bundled(source.name, source.fraction, source.seed)
        except ValueError as exc:
            raise SpecError(f"{spec.name}: {exc}") from None
        missing = sorted({c.name for c in spec.columns} - set(frame.columns))
        if missing:
            raise SpecError(f"{spec.name}: bundled set {source.name!r} lacks columns {missing}")
        renamed = frame.select(pl.col(c.name).alias(c.identifier) for c in spec.columns)
        return renamed.cast(columns)  # type: ignore[arg-type]
    return read_strict(stored_validation_file(specs_dir, spec), spec).select(list(columns))
