"""What a Datanet has that the lake has not recorded yet: the one test of "is there work?".

The inbox sensor, `openledger run` and `openledger epoch close` all ask this module, and
it answers from the lake alone (the `batches`, `datanets`, `contributors` and
`inferences` tables and the ledger), never from a cursor that only the daemon advances:
after the CLI has run everything, the sensor sees nothing to do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from assets.catalog import TABLES
from assets.datanets import SpecError
from assets.ingest import MANIFEST_SUFFIX, read_manifest
from assets.layout import INFERENCE_LOG, inbox_dir, inside, registrations, spec_path
from ledger.lake import Lake, LakeError
from ledger.log import COMMIT, LOG, LedgerEntry

INFERENCE_ASSETS = ["inferences", "inference_attributions"]
# Per-Datanet tables of the datanet job, in order: each must be ledgered after `batches`
# (else a run stopped short of it and the Datanet still has work).
# The tables one run of the datanet job writes for a Datanet (not receipts, written on
# contribute, nor governance or the epoch tables, written by their own commands).
JOB_TABLES = tuple(
    name
    for name in TABLES
    if name not in ("receipts", "governance", "epochs", "rewards", "statements")
)


@dataclass
class Pending:
    """Work a Datanet has: why, which assets to run (None: all) and a token naming the
    exact pending items (the sensor's run key: the same items never launch twice)."""

    reasons: list[str] = field(default_factory=list)
    assets: list[str] | None = None
    items: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.reasons)

    @property
    def token(self) -> str:
        return hashlib.sha256("\n".join(sorted(self.items)).encode()).hexdigest()[:16]


def _column(lake: Lake, table: str, datanet: str, columns: list[str]) -> list[tuple]:
    """`columns` of a table's rows for one Datanet (empty if the table does not exist)."""
    try:
        data = lake.read(table, partition=("datanet", datanet))
    except LakeError:
        return []
    return list(zip(*(data.column(c).to_pylist() for c in columns), strict=True))


def unrecorded_inbox(lake: Lake, datanet: str) -> list[str]:
    """Inbox manifests whose file `batches` has not recorded (by contributor and file
    hash, as ingestion dedups). Files already recorded by name are not hashed again."""
    folder = inbox_dir(lake.root_path(), datanet)
    if not folder.is_dir():
        return []
    rows = _column(lake, "batches", datanet, ["contributor", "file_name", "batch_id"])
    by_name = {(c, f) for c, f, _ in rows}
    done = {(c, b) for c, _, b in rows}
    pending = []
    for manifest in sorted(folder.glob(f"*{MANIFEST_SUFFIX}")):
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
            if (doc.get("contributor"), doc.get("file")) in by_name:
                continue
        except (OSError, ValueError, AttributeError):
            pass  # an unusable manifest is ingested as a rejected file: it is work
        sub = read_manifest(datanet, manifest)
        if (sub.contributor, sub.batch_id) not in done:
            done.add((sub.contributor, sub.batch_id))
            pending.append(manifest.name)
    return pending


def unrecorded_inferences(lake: Lake, datanet: str) -> list[str]:
    """Ids of logged inferences that the `inferences` table has not recorded yet."""
    folder = inside(lake.root_path(), INFERENCE_LOG, datanet)
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return []
    import io

    import pyarrow.parquet as pq

    logged: set[str] = set()
    for path in files:
        data = io.BytesIO(path.read_bytes())
        logged.update(pq.read_table(data, columns=["inference_id"]).column(0).to_pylist())
    recorded = {i for (i,) in _column(lake, "inferences", datanet, ["inference_id"])}
    return sorted(logged - recorded)


def pending_inferences(lake: Lake, datanet: str) -> int:
    """How many logged inferences wait to be attributed."""
    return len(unrecorded_inferences(lake, datanet))


def _spec_reason(lake: Lake, datanet: str) -> tuple[str, str] | None:
    """Why the spec (or its validation file) is new to the `datanets` table, if it is."""
    from assets.datanets import load_spec
    from assets.layout import SPECS, validation_sha256

    root = lake.root_path()
    try:
        spec = load_spec(spec_path(root, datanet))
        version = (spec.spec_hash(), validation_sha256(root / SPECS, spec))
    except SpecError as exc:
        return f"spec cannot be read: {exc}", f"spec-error:{exc}"
    if version in _column(lake, "datanets", datanet, ["spec_hash", "validation_sha256"]):
        return None
    return f"spec {version[0][:12]} not recorded yet", f"spec:{version[0]}:{version[1]}"


def _latest(lake: Lake, name: str, datanet: str, commits_only: bool = False) -> LedgerEntry | None:
    """The latest entry of a catalogued table for a Datanet (commits only, if asked)."""
    spec = TABLES[name]
    uri = lake.table_uri(spec.table(datanet))
    part = datanet if spec.partition else None
    if not commits_only:
        return lake.ledger.latest(uri, part)
    found = [e for e in lake.ledger.entries_of(uri, part) if e.entry_type == COMMIT]
    return found[-1] if found else None


def _stopped_short(lake: Lake, datanet: str) -> list[str]:
    """Tables of the datanet job that the run which last ingested did not write (it was
    stopped or crashed after ingesting): each snapshot table needs an entry from that run
    or a later one, each log table needs to exist."""
    ingested = _latest(lake, "batches", datanet, commits_only=True)
    if ingested is None:
        return []  # nothing ingested yet: the inbox and spec checks decide
    behind = []
    for name in JOB_TABLES:
        entry = _latest(lake, name, datanet)
        if entry is None or (
            TABLES[name].kind != LOG
            and entry.seq < ingested.seq
            and entry.run_id != ingested.run_id
        ):
            behind.append(name)
    logged = {i for (i,) in _column(lake, "inferences", datanet, ["inference_id"])}
    attributed = {i for (i,) in _column(lake, "inference_attributions", datanet, ["inference_id"])}
    if logged - attributed:
        behind.append("inference_attributions")
    return sorted(set(behind))


def pending_work(lake: Lake, datanet: str) -> Pending:
    """Everything a run of this Datanet would have to do, from the lake alone."""
    found = Pending()
    spec = _spec_reason(lake, datanet)
    if spec is not None:
        found.reasons.append(spec[0])
        found.items.append(spec[1])
    registered, _ = registrations(lake.root_path(), datanet)
    recorded = set(_column(lake, "contributors", datanet, ["contributor", "public_key"]))
    new_keys = sorted({(r.contributor, r.public_key) for r in registered} - recorded)
    if new_keys:
        found.reasons.append(f"{len(new_keys)} contributor key(s) not recorded yet")
        found.items.extend(f"key:{c}:{k}" for c, k in new_keys)
    inbox = unrecorded_inbox(lake, datanet)
    if inbox:
        found.reasons.append(f"{len(inbox)} new inbox file(s)")
        found.items.extend(f"inbox:{name}" for name in inbox)
    behind = _stopped_short(lake, datanet)
    if behind:
        found.reasons.append(f"a previous run stopped short of {', '.join(behind)}")
        found.items.extend(f"behind:{t}" for t in behind)
    whole_job = bool(found.reasons) and behind != ["inference_attributions"]
    waiting = unrecorded_inferences(lake, datanet)
    if waiting:
        found.reasons.append(f"{len(waiting)} inference(s) to attribute")
        found.items.extend(f"inference:{i}" for i in waiting)
    if found.reasons and not whole_job:
        found.assets = list(INFERENCE_ASSETS)
    return found
