"""Stage progress of in-process runs, as plain facts a console can show.

Dagster reports every step start, materialization and step end as a structured log
record. The `openledger_progress` logger forwards those records to whoever listens in
this process (the CLI's progress display), translated into `StageEvent`s: which Datanet,
which stage (ingest, quality, training, valuation, inference attribution, epoch), what
happened and the materialization's headline figures. Runs launched by the daemon or the
UI do not configure this logger, so it costs them nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

PROGRESS_LOGGER = "openledger_progress"

# Step (op) name -> the stage it belongs to, in pipeline order.
STAGES = {
    "datanets": "ingest",
    "contributors": "ingest",
    "ingest": "ingest",
    "quality": "quality",
    "validation": "training",
    "models": "training",
    "contributor_values": "valuation",
    "point_values": "valuation",
    "inferences": "inference attribution",
    "epoch_close": "epoch",
}
# Materialization metadata worth a word in a progress line, per asset.
HEADLINES = {
    "batches": ("new_files", "rows_in", "accepted", "quarantined", "duplicates"),
    "quality": ("accepted_share",),
    "models": ("model_id",),
    "contributor_values": ("method", "model_fits", "converged"),
    "inferences": ("fees",),
    "epochs": ("pool", "paid_pool", "carried_out", "fees_total"),
}


@dataclass
class StageEvent:
    """One step's start or end, or one table it committed."""

    kind: str  # "start", "table", "success", "failure"
    partition: str
    step: str
    stage: str
    asset: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    message: str = ""


Listener = Callable[[StageEvent], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send this process's run progress to `listener` while the block runs."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def _value(metadata_value: Any) -> Any:
    return getattr(metadata_value, "value", metadata_value)


def stage_event(meta: dict[str, Any]) -> StageEvent | None:
    """A StageEvent from a Dagster log record's metadata (None: not a step event)."""
    event = meta.get("dagster_event")
    step = meta.get("step_key") or ""
    if event is None or not step:
        return None
    op = step.split("[", 1)[0]
    stage = STAGES.get(op, op)
    tags = meta.get("job_tags") or {}
    partition = str(tags.get("dagster/partition", ""))
    kind = event.event_type_value
    if kind == "STEP_START":
        return StageEvent("start", partition, op, stage)
    if kind == "STEP_SUCCESS":
        return StageEvent("success", partition, op, stage)
    if kind == "STEP_FAILURE":
        error = getattr(event.event_specific_data, "error", None)
        message = error.message.strip().splitlines()[-1] if error is not None else ""
        return StageEvent("failure", partition, op, stage, message=message)
    if kind == "ASSET_MATERIALIZATION":
        materialization = event.event_specific_data.materialization
        asset = materialization.asset_key.to_user_string()
        metadata = materialization.metadata
        figures = {
            "rows": _value(metadata.get("dagster/row_count")),
            "ledger_seq": _value(metadata.get("ledger_seq")),
        }
        for name in HEADLINES.get(asset, ()):
            if name in metadata:
                figures[name] = _value(metadata[name])
        return StageEvent("table", partition, op, stage, asset=asset, figures=figures)
    return None


class _Forward(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None)
        if not meta or not _listeners:
            return
        found = stage_event(meta)
        if found is None:
            return
        with _lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener(found)


@dg.logger(description="Forwards step progress to listeners in this process (the CLI).")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger(PROGRESS_LOGGER, level=logging.DEBUG)
    logger.addHandler(_Forward())
    return logger
