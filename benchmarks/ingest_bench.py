"""Benchmark of ingestion (validate, type, hash, split, Delta + ledger) against a bare Delta write.

    uv run python benchmarks/ingest_bench.py --rows 1000000 --repeat 3 \
        --out benchmarks/out/ingest.json

The data: a seeded generator writes a Datanet spec (9 float features with ranges, an int
label with 2 categories, `require_signatures: false`) and 1M contribution rows as CSV files,
submitted to a temporary lake's inbox with `assets.layout.prepare` and `deliver`. 1% of the
rows are bad, in five kinds taken in turn (NaN, out of range, text in a number, missing
value, label not a category), and 0.1% are exact copies of earlier good rows (half from
the same 10k block, half from an earlier one), so they land in `duplicates`. The same rows
are laid out as 100 files (100 contributors x 10k rows) and, for the memory-vs-files
check, as 10 and 1000 files (receipts follow row order, so the first copy of a row is
always the same one).

Variants, each in its own child process (this file with `--worker`):

* full: what the `ingest` Dagster asset does, without Dagster: `ingest_step`
  (openledger_pipelines/ingestion.py): the inbox in receipt order, `ingest_datanet`, then
  `Lake.append` of the new rows to contributions, quarantine, duplicates and batches. The
  asset's blocking `ledger_matches` checks (`verify_entry_data` of the four entries) are
  timed after the measured step and reported apart.
* bare: `pl.read_csv` of the same files with the typed schema, the accepted rows kept
  (a boolean mask the generator wrote: no validation logic), one `write_deltalake`.
* the full variant again on 10 and 1000 files: peak RSS against the number of files.

Each child warms up first on a tiny inbox (numba kernels load on first use), then resets
the kernel's peak-RSS mark (/proc/self/clear_refs = 5) and reports
`getrusage(RUSAGE_SELF).ru_maxrss` after the step minus the RSS at its start (extra peak),
and the process's whole peak. The full variant also reports a stage split, taken by
wrapping (in the child only) `assets.ingest.read_text_columns`, `validate_rows`,
`row_hashes` and, inside `ledger.lake.Lake.write`, `write_deltalake`, `Lake.read`,
`commit_table` and `Ledger.append`; each wrapper also records how far its calls raised the
peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import dry_run  # noqa: E402

DATANET = "bench"
CONTRIBUTORS = 100
# name, min, max: nine float features with different ranges.
FEATURES = [
    ("x0", 0.0, 1.0),
    ("x1", -1.0, 1.0),
    ("x2", 0.0, 100.0),
    ("x3", -50.0, 50.0),
    ("x4", 0.0, 1000.0),
    ("x5", 10.0, 20.0),
    ("x6", -5.0, 5.0),
    ("x7", 0.0, 10.0),
    ("x8", 100.0, 200.0),
]
LABEL = "y"
BAD_KINDS = ("nan", "out_of_range", "text", "missing", "bad_label")
REASONS = {
    "nan": "NON_FINITE",
    "out_of_range": "OUT_OF_RANGE",
    "text": "BAD_TYPE",
    "missing": "MISSING_VALUE",
    "bad_label": "BAD_CATEGORY",
}
SUBMITTED_FROM = "2026-01-01T00:00:00+00:00"
INGEST_TABLES = ("contributions", "quarantine", "duplicates", "batches")


def spec_text() -> str:
    features = "\n".join(
        f"  - {{name: {n}, type: float, min: {lo}, max: {hi}}}" for n, lo, hi in FEATURES
    )
    return f"""\
name: {DATANET}
owner: bench
licence: CC-BY-4.0
task: binary
features:
{features}
label: {{name: {LABEL}, type: int, categories: [0, 1]}}
metric: roc_auc
validation: {{kind: bundled, name: breast_cancer}}
require_signatures: false
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def make_rows(rows: int, seed: int, bad_share: float, dup_share: float, block: int):
    """(all-text frame of the 10 spec columns, row kind: -1 good, 0-4 BAD_KINDS, 5 dup)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    values = np.empty((len(FEATURES), rows))
    for j, (_, lo, hi) in enumerate(FEATURES):
        values[j] = np.round(rng.uniform(lo, hi, rows), 6)  # 6 decimals, inside [lo, hi]
    label = rng.integers(0, 2, rows)
    kind = np.full(rows, -1, dtype=np.int8)
    n_bad = round(rows * bad_share)
    bad_at = rng.choice(rows, n_bad, replace=False)
    kind[bad_at] = rng.permutation(np.arange(n_bad) % len(BAD_KINDS))
    bad_col = rng.integers(0, len(FEATURES), rows)  # which feature a bad row spoils
    # Exact duplicates: copy an earlier good row over a later good row.
    n_dup = round(rows * dup_share)
    targets = [int(t) for t in rng.permutation(np.flatnonzero(kind == -1)) if t >= 2 * block]
    targets = sorted(targets[:n_dup])
    is_target = np.zeros(rows, dtype=bool)
    is_target[targets] = True
    for i, j in enumerate(targets):
        start = j - j % block
        while True:  # a source that is good and not itself overwritten
            src = int(
                rng.integers(start, j) if i % 2 == 0 and j > start else rng.integers(0, start)
            )
            if kind[src] == -1 and not is_target[src]:
                break
        values[:, j] = values[:, src]
        label[j] = label[src]
    kind[targets] = 5
    text = pl.DataFrame({n: values[j] for j, (n, _, _) in enumerate(FEATURES)}).with_columns(
        pl.all().cast(pl.String)
    )
    text = text.with_columns(pl.Series(LABEL, label).cast(pl.String))
    kinds = pl.Series("kind", kind)
    spoiled = pl.Series("col", bad_col)
    updates = []
    for j, (name, lo, hi) in enumerate(FEATURES):
        here = spoiled == j
        out_of_range = f"{hi + (hi - lo):g}" if j % 2 else f"{lo - (hi - lo):g}"
        updates.append(
            pl.when(here & (kinds == 0))
            .then(pl.lit("NaN"))
            .when(here & (kinds == 1))
            .then(pl.lit(out_of_range))
            .when(here & (kinds == 2))
            .then(pl.lit("n/a" if j % 2 else "abc"))
            .when(here & (kinds == 3))
            .then(pl.lit(None, pl.String))
            .otherwise(pl.col(name))
            .alias(name)
        )
    updates.append(pl.when(kinds == 4).then(pl.lit("2")).otherwise(pl.col(LABEL)).alias(LABEL))
    return text.with_columns(updates), kind


def write_inbox(root: Path, frame, n_files: int, log_every: int = 0) -> list[str]:
    """Split `frame` into n_files CSV files in row order, `prepare` each and `deliver` them
    all in that order (one receipts append, receipt times k seconds apart); inbox paths."""
    from datetime import datetime, timedelta

    from assets.layout import deliver, install_spec, prepare

    install_spec(root, spec_text())
    per_file = frame.height // n_files
    start = datetime.fromisoformat(SUBMITTED_FROM)
    outbox = root / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    outgoing = []
    for k in range(n_files):
        source = outbox / f"part-{k:05d}.csv"
        frame.slice(k * per_file, per_file).write_csv(source)
        contributor = f"c{k * CONTRIBUTORS // n_files:03d}"
        claimed = start + timedelta(seconds=k)
        outgoing.append(
            prepare(root, DATANET, contributor, source, submitted_at=claimed, sign=False)
        )
        source.unlink()
        if log_every and (k + 1) % log_every == 0:
            log(f"  {n_files} files: {k + 1} prepared")
    times = iter([start + timedelta(seconds=k) for k in range(n_files)])
    paths = [str(done.path) for done in deliver(root, DATANET, outgoing, clock=times.__next__)]
    outbox.rmdir()
    return paths


def run_generate(data: Path, rows: int, seed: int, layouts: list[int], bad: float, dup: float):
    import numpy as np

    block = rows // CONTRIBUTORS
    t0 = time.perf_counter()
    frame, kind = make_rows(rows, seed, bad, dup, block)
    np.save(data / "accepted.npy", kind == -1)
    files = {}
    for n in layouts:
        files[str(n)] = write_inbox(data / f"files_{n}", frame, n)
    warm, warm_kind = make_rows(1500, seed + 1, 0.02, 0.01, 500)
    write_inbox(data / "warm", warm, 3)
    np.save(data / "warm_accepted.npy", warm_kind == -1)
    csv_bytes = {n: sum(Path(p).stat().st_size for p in ps) for n, ps in files.items()}
    meta = {
        "rows": rows,
        "seed": seed,
        "bad_rows": int((kind >= 0).sum() - (kind == 5).sum()),
        "bad_by_kind": {k: int((kind == i).sum()) for i, k in enumerate(BAD_KINDS)},
        "duplicate_rows": int((kind == 5).sum()),
        "accepted_rows": int((kind == -1).sum()),
        "files": files,
        "csv_mb": {n: b / 2**20 for n, b in csv_bytes.items()},
        "generate_seconds": time.perf_counter() - t0,
    }
    (data / "meta.json").write_text(json.dumps(meta))
    return {k: v for k, v in meta.items() if k != "files"}


# --------------------------------------------------------------------------------------
# worker side
# --------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


class PeakMemory:
    """Extra peak RSS of a step over the RSS at its start (peak mark reset at the start)."""

    def __init__(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.rss0 = _status_kb("VmRSS")
        self.maxrss0 = _maxrss_kb()

    def now(self) -> dict:
        maxrss = _maxrss_kb()
        return {
            "rss_start_mb": self.rss0 / 1024,
            "extra_peak_mb": (maxrss - (self.rss0 if self.reset else self.maxrss0)) / 1024,
            "extra_peak_vmhwm_mb": (_status_kb("VmHWM") - self.rss0) / 1024,
            # The whole process: imports, warm-up and the step (what must fit in memory).
            "process_peak_mb": maxrss / 1024,
            "rss_now_mb": _status_kb("VmRSS") / 1024,
            "peak_reset": self.reset,
        }


class StageClock:
    """Wall, CPU seconds and peak-RSS rise of every call of wrapped functions, by stage."""

    def __init__(self) -> None:
        self.stages: dict[str, dict] = {}
        self.undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, stage: str) -> None:
        original = getattr(owner, attr)
        entry = self.stages.setdefault(
            stage, {"seconds": 0.0, "cpu_seconds": 0.0, "calls": 0, "peak_rise_mb": 0.0}
        )

        def timed(*args, **kwargs):
            hwm0 = _status_kb("VmHWM")
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                entry["seconds"] += time.perf_counter() - t0
                entry["cpu_seconds"] += time.process_time() - c0
                entry["calls"] += 1
                entry["peak_rise_mb"] += max(0, _status_kb("VmHWM") - hwm0) / 1024

        self.undo.append((owner, attr, original))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        for owner, attr, original in reversed(self.undo):
            setattr(owner, attr, original)
        self.undo.clear()


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - t0, time.process_time() - c0


def _sources() -> dict[str, str]:
    names = [
        "assets/ingest.py",
        "assets/layout.py",
        "assets/datanets.py",
        "ledger/lake.py",
        "ledger/commitment.py",
        "ledger/encoding.py",
        "ledger/hashing.py",
        "ledger/log.py",
        "openledger_pipelines/ingestion.py",
    ]
    return {n: hashlib.sha256((ROOT / n).read_bytes()).hexdigest()[:12] for n in names}


def ingest_like_the_asset(data_root: Path, lake_root: Path):
    """The `ingest` asset's step without Dagster (`ingest_step`); (store, result,
    committed, step times)."""
    from assets.datanets import load_spec
    from assets.layout import spec_path
    from ledger.lake import Lake
    from openledger_pipelines.ingestion import ingest_step
    from openledger_pipelines.version import code_version

    if not lake_root.exists():  # the inbox, receipts and specs: one lake, as in the product
        shutil.copytree(data_root, lake_root)
    store = Lake(lake_root)
    spec = load_spec(spec_path(lake_root, DATANET))
    times: dict[str, dict[str, float]] = {}
    t0, c0, hwm0 = time.perf_counter(), time.process_time(), _status_kb("VmHWM")
    step = ingest_step(store, spec, run_id="ingest-bench", code=code_version())
    t1, c1, hwm1 = time.perf_counter(), time.process_time(), _status_kb("VmHWM")
    times["ingest_step"] = {
        "seconds": t1 - t0,
        "cpu_seconds": c1 - c0,
        "peak_rise_mb": max(0, hwm1 - hwm0) / 1024,
        "rss_after_mb": _status_kb("VmRSS") / 1024,
    }
    return store, step.result, step.committed, times


def ledger_checks(store, committed: dict) -> list[str]:
    from ledger.verify import verify_entry_data

    problems = []
    for name in INGEST_TABLES:
        problems += [f"{name}: {d}" for d in verify_entry_data(store, committed[name].entry)]
    return problems


def run_full(data: Path, n_files: int, checks: bool) -> dict:
    import assets.ingest as ingest_mod
    import ledger.commitment as commitment_mod
    import ledger.lake as lake_mod
    import ledger.log as log_mod
    from assets.ingest import reconcile

    meta = json.loads((data / "meta.json").read_text())
    info: dict = {"variant": "full", "files": n_files, "rows": meta["rows"]}
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        # Warm-up: the whole thing on a tiny inbox (imports, numba kernels, thread pools).
        store, result, committed, _ = ingest_like_the_asset(data / "warm", Path(tmp) / "warm")
        assert reconcile(result) == [], reconcile(result)
        assert ledger_checks(store, committed) == []
        clock = StageClock()
        clock.wrap(ingest_mod, "read_text_columns", "read CSV as text (read_text_columns)")
        clock.wrap(ingest_mod, "validate_rows", "validate + type (validate_rows)")
        clock.wrap(ingest_mod, "row_hashes", "row hashes (row_hashes)")
        clock.wrap(lake_mod.Lake, "append", "Lake.append total")
        clock.wrap(lake_mod, "write_deltalake", "Delta write (write_deltalake)")
        clock.wrap(lake_mod.Lake, "read", "Delta reads (Lake.read)")
        clock.wrap(commitment_mod, "leaf_hash_matrix", "leaf hashes of new rows")
        clock.wrap(log_mod.Ledger, "append", "ledger append (Ledger.append)")
        info["loadavg_1min_at_start"] = os.getloadavg()[0]
        mem = PeakMemory()
        (store, result, committed, steps), wall, cpu = _timed(
            lambda: ingest_like_the_asset(data / f"files_{n_files}", Path(tmp) / "lake")
        )
        info.update(mem.now(), seconds=wall, cpu_seconds=cpu)
        clock.restore()
        info["steps"] = steps
        info["stages"] = clock.stages
        problems = reconcile(result)
        batches = result.batches
        info["counts"] = {
            "rows_in": int(batches["rows_in"].sum()),
            "accepted": result.contributions.height,
            "quarantined": int(batches["quarantined"].sum()),
            "duplicates": result.duplicates.height,
            "files": batches.height,
            "rejected_files": int((batches["status"] == "rejected").sum()),
            "reasons": dict(
                result.quarantine.group_by("reason_code").len().sort("reason_code").iter_rows()
            ),
        }
        info["roots"] = {n: c.commitment.root for n, c in committed.items()}
        info["reconcile_problems"] = problems
        expected = {
            "rows_in": meta["rows"],
            "accepted": meta["accepted_rows"],
            "quarantined": meta["bad_rows"],
            "duplicates": meta["duplicate_rows"],
            "files": n_files,
            "rejected_files": 0,
            "reasons": {REASONS[k]: v for k, v in sorted(meta["bad_by_kind"].items())},
        }
        info["counts"]["reasons"] = dict(sorted(info["counts"]["reasons"].items()))
        expected["reasons"] = dict(sorted(expected["reasons"].items()))
        if problems or info["counts"] != expected:
            raise AssertionError(f"counts: got {info['counts']}, expected {expected}; {problems}")
        files = list((Path(tmp) / "lake" / "tables").rglob("*.parquet"))
        info["delta_mb"] = sum(f.stat().st_size for f in files) / 2**20
        del result
        if checks:  # the asset's blocking ledger_matches checks, measured apart
            diffs, t, c = _timed(lambda: ledger_checks(store, committed))
            if diffs:
                raise AssertionError(f"ledger checks failed: {diffs}")
            info["ledger_checks"] = {"seconds": t, "cpu_seconds": c}
    info["sources"] = _sources()
    return info


def run_bare(data: Path, n_files: int) -> dict:
    import numpy as np
    import polars as pl
    from deltalake import write_deltalake

    meta = json.loads((data / "meta.json").read_text())
    paths = meta["files"][str(n_files)]
    accepted = np.load(data / "accepted.npy")
    schema = {**{n: pl.Float64 for n, _, _ in FEATURES}, LABEL: pl.Int64}
    info: dict = {"variant": "bare", "files": n_files, "rows": meta["rows"]}

    def read(files: list[str], mask) -> pl.DataFrame:
        frames = [pl.read_csv(p, schema=schema, ignore_errors=True) for p in files]
        return pl.concat(frames).filter(pl.Series(mask))

    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        warm_files = sorted(str(p) for p in (data / "warm" / "inbox" / DATANET).glob("*.csv"))
        warm = read(warm_files, np.load(data / "warm_accepted.npy"))
        write_deltalake(str(Path(tmp) / "warm"), warm.to_arrow(), mode="overwrite")
        uri = str(Path(tmp) / "bare")
        info["loadavg_1min_at_start"] = os.getloadavg()[0]
        mem = PeakMemory()
        frame, t_read, c_read = _timed(lambda: read(paths, accepted))
        _, t_write, c_write = _timed(
            lambda: write_deltalake(uri, frame.to_arrow(), mode="overwrite")
        )
        info.update(mem.now())
        info.update(
            seconds=t_read + t_write,
            cpu_seconds=c_read + c_write,
            read={"seconds": t_read, "cpu_seconds": c_read},
            write={"seconds": t_write, "cpu_seconds": c_write},
            accepted=frame.height,
        )
        if frame.height != meta["accepted_rows"]:
            raise AssertionError(f"bare read {frame.height} rows, not {meta['accepted_rows']}")
        files = list(Path(uri).rglob("*.parquet"))
        info["delta_mb"] = sum(f.stat().st_size for f in files) / 2**20
    return info


# --------------------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------------------
def spawn(args: list[str], timeout: float) -> dict:
    env = dict(os.environ)
    env["OPENLEDGER_CODE_VERSION"] = "ingest-bench"  # code_version() without a git call
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_info() -> dict:
    from importlib import metadata

    model = platform.processor()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    with open("/proc/meminfo") as fh:
        mem_gb = int(fh.readline().split()[1]) / 2**20
    versions = {}
    for pkg in ("numpy", "pyarrow", "polars", "deltalake", "numba", "dagster"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "ram_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "uptime_at_start": uptime,
    }


def _med(values: list[float]) -> float:
    return statistics.median(values)


# Stages of the full run, grouped as the issue asks (wrapped functions, see the docstring).
GROUPS = {
    "read + validate": [
        "read CSV as text (read_text_columns)",
        "validate + type (validate_rows)",
    ],
    "row hashes": ["row hashes (row_hashes)"],
    "Delta writes": ["Delta write (write_deltalake)"],
    "ledger commits": [
        "Delta read-back (Lake.read)",
        "commit_table",
        "ledger append (Ledger.append)",
    ],
}


def stage_split(run: dict) -> dict[str, dict]:
    """Seconds, CPU seconds and peak-RSS rise by stage; the remainders made explicit."""
    st, steps = run["stages"], run["steps"]
    fields = ("seconds", "cpu_seconds", "peak_rise_mb")

    def rest(step: dict, inner: list[str]) -> dict:
        out = {f: step[f] - sum(st[n][f] for n in inner) for f in fields}
        out["peak_rise_mb"] = max(0.0, out["peak_rise_mb"])
        return out

    first = [steps["spec + previous tables"], steps["inbox_submissions"]]
    out = {
        "spec, previous tables, inbox_submissions": {f: sum(s[f] for s in first) for f in fields}
    }
    inner = GROUPS["read + validate"] + GROUPS["row hashes"]
    out.update({n: {f: st[n][f] for f in fields} for n in inner})
    out["rest of ingest_datanet (dedup joins, concats, casts)"] = rest(
        steps["ingest_datanet"], inner
    )
    inner = GROUPS["Delta writes"] + GROUPS["ledger commits"]
    out.update({n: {f: st[n][f] for f in fields} for n in inner})
    out["rest of Lake.write (to_arrow, partition check, lock, versions)"] = rest(
        st["Lake.write total"], inner
    )
    out["outside Lake.write (result dict, loop)"] = rest(
        steps["Lake.write x4"], ["Lake.write total"]
    )
    return out


def summarize(runs: dict[str, list[dict]], layouts: list[int], main_files: int) -> dict:
    full, bare = runs.get(f"full_{main_files}", []), runs.get(f"bare_{main_files}", [])
    s: dict = {"variants": {}, "ratios": {}, "targets": {}}
    for name, rs in runs.items():
        if not rs:
            continue
        rows = rs[0]["rows"]
        sec = _med([r["seconds"] for r in rs])
        cpu = _med([r["cpu_seconds"] for r in rs])
        e = {
            "runs": len(rs),
            "seconds_median": sec,
            "seconds_all": [r["seconds"] for r in rs],
            "rows_per_s": rows / sec,
            "cpu_seconds_median": cpu,
            "rows_per_cpu_s": rows / cpu,
            "extra_peak_mb_max": max(r["extra_peak_mb"] for r in rs),
            "extra_peak_mb_all": [r["extra_peak_mb"] for r in rs],
            "process_peak_mb_max": max(r["process_peak_mb"] for r in rs),
            "rss_start_mb": rs[0]["rss_start_mb"],
            "loadavg_at_start": [r["loadavg_1min_at_start"] for r in rs],
        }
        if rs[0]["variant"] == "full":
            splits = [stage_split(r) for r in rs]
            e["stages_median"] = {
                k: {
                    f: _med([sp[k][f] for sp in splits])
                    for f in ("seconds", "cpu_seconds", "peak_rise_mb")
                }
                for k in splits[0]
            }
            e["groups_median"] = {
                g: {
                    f: _med([sum(r["stages"][n][f] for n in names) for r in rs])
                    for f in ("seconds", "cpu_seconds")
                }
                for g, names in GROUPS.items()
            }
            if "ledger_checks" in rs[0]:
                e["ledger_checks_seconds_median"] = _med(
                    [r["ledger_checks"]["seconds"] for r in rs]
                )
        else:
            e["read_seconds_median"] = _med([r["read"]["seconds"] for r in rs])
            e["write_seconds_median"] = _med([r["write"]["seconds"] for r in rs])
            e["write_cpu_seconds_median"] = _med([r["write"]["cpu_seconds"] for r in rs])
        s["variants"][name] = e
    if full and bare:
        pairs = list(zip(full, bare, strict=False))
        r = s["ratios"]
        r["full_over_bare_wall_per_pair"] = [a["seconds"] / b["seconds"] for a, b in pairs]
        r["full_over_bare_wall_median"] = _med(r["full_over_bare_wall_per_pair"])
        r["full_over_bare_cpu_median"] = _med(
            [a["cpu_seconds"] / b["cpu_seconds"] for a, b in pairs]
        )
        r["full_over_bare_write_only_wall_median"] = _med(
            [a["seconds"] / b["write"]["seconds"] for a, b in pairs]
        )
        s["targets"]["full_le_2.5x_bare"] = r["full_over_bare_wall_median"] <= 2.5
    if full:
        s["targets"]["process_peak_under_4GiB"] = max(f["process_peak_mb"] for f in full) < 4096
        s["targets"]["extra_peak_under_4GiB"] = max(f["extra_peak_mb"] for f in full) < 4096
    by_files = {n: runs[f"full_{n}"] for n in layouts if runs.get(f"full_{n}")}
    s["extra_peak_by_files"] = {
        n: {
            "median_mb": _med([r["extra_peak_mb"] for r in rs]),
            "all_mb": [round(r["extra_peak_mb"]) for r in rs],
            "seconds_median": _med([r["seconds"] for r in rs]),
        }
        for n, rs in by_files.items()
    }
    if len(by_files) > 1:
        peaks = {n: v["median_mb"] for n, v in s["extra_peak_by_files"].items()}
        # "does not grow": the median extra peak at the most files stays within 10% of the
        # median at the fewest.
        s["targets"]["memory_flat_in_files"] = peaks[max(peaks)] <= 1.10 * peaks[min(peaks)]
    return s


def markdown(summary: dict, meta: dict) -> str:
    lines = [
        f"rows {meta['rows']:,}: accepted {meta['accepted_rows']:,}, bad {meta['bad_rows']:,} "
        f"{meta['bad_by_kind']}, duplicates {meta['duplicate_rows']:,}; CSV {meta['csv_mb']} MB",
        "",
        "| variant | median s | rows in/s | rows/CPU-s | runs | extra peak MB | process peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in summary["variants"].items():
        lines.append(
            f"| {name} | {e['seconds_median']:.2f} | {e['rows_per_s']:,.0f} "
            f"| {e['rows_per_cpu_s']:,.0f} | {e['runs']} | {e['extra_peak_mb_max']:.0f} "
            f"| {e['process_peak_mb_max']:.0f} |"
        )
    lines += ["", "| ratio | value |", "|---|---:|"]
    for k, v in summary["ratios"].items():
        text = ", ".join(f"{x:.2f}" for x in v) if isinstance(v, list) else f"{v:.2f}"
        lines.append(f"| {k} | {text} |")
    for name, e in summary["variants"].items():
        if "stages_median" not in e:
            continue
        lines += [
            "",
            f"stage split of {name} (medians)",
            "",
            "| stage | s | CPU s | peak rise MB |",
            "|---|---:|---:|---:|",
        ]
        for k, v in e["stages_median"].items():
            lines.append(
                f"| {k} | {v['seconds']:.2f} | {v['cpu_seconds']:.2f} | {v['peak_rise_mb']:.0f} |"
            )
        if "ledger_checks_seconds_median" in e:
            lines.append(
                f"| (after) ledger checks x4 | {e['ledger_checks_seconds_median']:.2f} | | |"
            )
    lines += ["", "extra peak MB by files: " + json.dumps(summary["extra_peak_by_files"])]
    lines += ["targets: " + json.dumps(summary["targets"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3, help="full/bare pairs at --main-files")
    p.add_argument("--main-files", type=int, default=100)
    p.add_argument("--files", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--files-repeat", type=int, default=1, help="runs at the other file counts")
    p.add_argument("--bad-share", type=float, default=0.01)
    p.add_argument("--dup-share", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=20260101)
    p.add_argument("--no-checks", action="store_true", help="skip timing the ledger checks")
    p.add_argument("--data-dir", type=Path, help="keep the generated lake here (default: temp)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "ingest.json")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--resummarize", action="store_true", help="re-print an --out file")
    p.add_argument("--worker", choices=("generate", "full", "bare"), help=argparse.SUPPRESS)
    p.add_argument("--worker-data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--worker-files", type=int, help=argparse.SUPPRESS)
    a = dry_run.parse_args(p, argv)
    layouts = sorted(set(a.files) | {a.main_files})

    if a.worker:
        warnings.simplefilter("ignore")
        if a.worker == "generate":
            result = run_generate(a.worker_data, a.rows, a.seed, layouts, a.bad_share, a.dup_share)
        elif a.worker == "full":
            result = run_full(a.worker_data, a.worker_files, not a.no_checks)
        else:
            result = run_bare(a.worker_data, a.worker_files)
        print(json.dumps(result))
        return 0

    if a.resummarize:
        report = json.loads(a.out.read_text())
        summary = summarize(report["runs"], report["layouts"], report["main_files"])
        report["summary"] = summary
        a.out.write_text(json.dumps(report, indent=2))
        print(markdown(summary, report["data"]))
        return 0

    for n in layouts:
        if a.rows % n or a.rows % CONTRIBUTORS:
            raise SystemExit(f"--rows {a.rows} does not split evenly into {n} files")
    started = time.time()
    report: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "seed": a.seed,
        "layouts": layouts,
        "main_files": a.main_files,
        "runs": {},
    }
    log(f"uptime: {report['machine']['uptime_at_start']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        report["elapsed_seconds"] = time.time() - started
        a.out.write_text(json.dumps(report, indent=2))

    tmp = None
    if a.data_dir is None:
        tmp = tempfile.mkdtemp(prefix="ingest-bench-data-")
        data = Path(tmp)
    else:
        data = a.data_dir
        data.mkdir(parents=True, exist_ok=True)
    try:
        common = ["--worker-data", str(data), "--seed", str(a.seed), "--rows", str(a.rows)]
        log(f"generating {a.rows:,} rows as {layouts} files in {data} …")
        report["data"] = spawn(
            [
                "--worker",
                "generate",
                *common,
                "--files",
                *map(str, a.files),
                "--main-files",
                str(a.main_files),
                "--bad-share",
                str(a.bad_share),
                "--dup-share",
                str(a.dup_share),
            ],
            a.timeout,
        )
        log(f"generated: {report['data']}")
        extra = ["--no-checks"] if a.no_checks else []
        plan = []
        for _ in range(a.repeat):
            plan += [("full", a.main_files), ("bare", a.main_files)]
        for _ in range(a.files_repeat):
            plan += [("full", n) for n in layouts if n != a.main_files]
        for variant, n in plan:
            name = f"{variant}_{n}"
            log(f"{name} …")
            rec = spawn(["--worker", variant, "--worker-files", str(n), *common, *extra], a.timeout)
            report["runs"].setdefault(name, []).append(rec)
            log(
                f"{name}: {rec['seconds']:.2f} s = {a.rows / rec['seconds']:,.0f} rows/s, "
                f"CPU {rec['cpu_seconds']:.2f} s, extra peak {rec['extra_peak_mb']:.0f} MB, "
                f"process peak {rec['process_peak_mb']:.0f} MB, "
                f"load {rec['loadavg_1min_at_start']:.2f}"
            )
            save()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    report["uptime_at_end"] = subprocess.run(
        ["uptime"], capture_output=True, text=True
    ).stdout.strip()
    summary = summarize(report["runs"], layouts, a.main_files)
    report["summary"] = summary
    save()
    md = markdown(summary, report["data"])
    a.out.with_suffix(".md").write_text(md + "\n")
    print(md, flush=True)
    log(f"done in {time.time() - started:.0f} s; results in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
