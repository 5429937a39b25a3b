"""Stage progress for `run`, `demo` and `epoch close`: a line per finished step saying what
it did, with a spinner for the running step on a terminal (plain lines otherwise)."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

from rich.console import Console
from rich.status import Status

from openledger_pipelines.progress import StageEvent


def describe(stage: str, tables: list[StageEvent]) -> str:
    """What a finished step did, in a few words from its materializations."""
    figures: dict[str, Any] = {}
    for table in tables:
        figures.update({f"{table.asset}.{k}": v for k, v in table.figures.items()})
    parts: list[str] = []
    if "batches.new_files" in figures:
        parts.append(
            f"{figures['batches.new_files']} new file(s), {figures['batches.rows_in']} rows in: "
            f"{figures['batches.accepted']} accepted, {figures['batches.quarantined']} "
            f"quarantined, {figures['batches.duplicates']} duplicates"
        )
    if "quality.accepted_share" in figures:
        parts.append(
            f"{figures.get('quality.rows', 0)} rows scored, "
            f"{figures['quality.accepted_share']:.0%} accepted"
        )
    if "models.model_id" in figures:
        parts.append(
            f"model {figures['models.model_id']} on {figures.get('training_rows.rows', '?')} rows"
        )
    if "contributor_values.method" in figures:
        parts.append(
            f"{figures.get('contributor_values.rows', 0)} contributors valued by "
            f"{figures['contributor_values.method']} "
            f"({figures.get('contributor_values.model_fits', 0)} model fits)"
        )
    if "point_values.rows" in figures and not parts:
        parts.append(f"{figures['point_values.rows']} point values")
    if "inferences.fees" in figures:
        parts.append(
            f"{figures.get('inferences.rows', 0)} inferences attributed, fees "
            f"{figures['inferences.fees']:,}"
        )
    if "epochs.pool" in figures:
        parts.append(
            f"pool {figures['epochs.pool']:,}: paid {figures['epochs.paid_pool']:,}, carried "
            f"{figures['epochs.carried_out']:,}; fees {figures['epochs.fees_total']:,}"
        )
    seqs = [t.figures["ledger_seq"] for t in tables if t.figures.get("ledger_seq") is not None]
    if seqs:
        span = f"{min(seqs)}" if len(seqs) == 1 else f"{min(seqs)}-{max(seqs)}"
        parts.append(f"{len(tables)} table(s) committed, ledger seq {span}")
    return "; ".join(parts) or "done"


class StageReporter:
    """Listens to run progress and prints it; use as a context manager around runs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tables: dict[tuple[str, str], list[StageEvent]] = {}
        self.started: dict[tuple[str, str], float] = {}
        self.status: Status | None = None

    def __enter__(self) -> StageReporter:
        if self.console.is_terminal:
            self.status = self.console.status("starting Dagster ...")
            self.status.start()
        else:
            self.console.print("starting Dagster ...", highlight=False)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.status is not None:
            self.status.stop()

    def _say(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def __call__(self, event: StageEvent) -> None:
        key = (event.partition, event.step)
        where = f"{event.partition} · {event.stage}"
        if event.kind == "start":
            self.started[key] = time.monotonic()
            self.tables[key] = []
            if self.status is not None:
                self.status.update(f"{where} ({event.step}) ...")
            else:
                self._say(f"{where}: {event.step} started")
        elif event.kind == "table":
            self.tables.setdefault(key, []).append(event)
        elif event.kind == "success":
            seconds = time.monotonic() - self.started.get(key, time.monotonic())
            did = describe(event.stage, self.tables.get(key, []))
            self._say(f"{where}: {did} ({seconds:.1f} s)")
        elif event.kind == "failure":
            self._say(f"{where}: {event.step} FAILED: {event.message}")

    def run_done(self, name: str, result: Any) -> None:
        """A whole run's outcome, with the full run id the UI and `dagster` resolve."""
        state = "succeeded" if result.success else "FAILED"
        self._say(f"{name}: run {result.run_id} {state}")


@contextlib.contextmanager
def stopped_cleanly(instance: Any) -> Iterator[None]:
    """SIGTERM (or Ctrl-C) stops the runs of this block cleanly: they are marked failed and
    their pool slots freed before the command exits with 143 (130 for Ctrl-C), so the next
    run never waits on a slot nobody will release."""
    import typer

    from openledger_pipelines.runner import fail_abandoned_runs

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except KeyboardInterrupt as exc:
        for line in fail_abandoned_runs(instance, this_process=True):
            typer.echo(f"stopped: {line}", err=True)
        raise typer.Exit(143 if exc.args == ("SIGTERM",) else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
