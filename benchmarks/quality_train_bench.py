"""Benchmark of the quality stage and of training against plain LightGBM / scikit-learn.

    uv run python benchmarks/quality_train_bench.py --rows 1000000 --repeat 3 --threads 1 2 \
        --out benchmarks/out/quality_train.json

The data: a seeded synthetic binary-classification Datanet. The spec (`parse_spec`) has 20
float features `f00`..`f19` with min/max (-10, 10; `f18` and `f19` are nullable), an int label
with categories [0, 1] and metric roc_auc; `training.num_threads` is the thread count under
test (the spec's default is 1). The contributions frame has the columns the quality code
reads: datanet, contributor (100 contributors, lognormal shares of the rows), batch_id
(batches of 5,000 rows per contributor), received_at (Datetime us UTC, one instant per
batch), row_index, row_hash (unique SHA-256 hex), the 20 features and label. Features are
standard normal (1% nulls in f18 and f19); the label is Bernoulli(sigmoid(linear score of
the first 12 features + an interaction)); 5 contributors flip all their labels and 5 flip
30% of them; 0.5% of the rows are copies of other rows (near duplicates).

Variants, each run in its own child process (this file with `--worker`):

* score_rows: `assets.quality.score_rows(spec, frame)`, all four axes, on the frame;
* label_consistency: `assets.quality.label_consistency(spec, frame)` alone;
* cv_baseline: `sklearn.model_selection.cross_val_predict(LGBMClassifier(**lgb_params(spec),
  n_estimators=LABEL_CHECK_ROUNDS), X, y, cv=KFold(5), method="predict_proba")` on the
  same X, y (built with `feature_matrix` / `label_vector` before the timed step);
* fit: `assets.training.fit(spec, X, y)` (spec.training.num_boost_round rounds), i.e. the
  training step that `train_model` times;
* bare_train: `lightgbm.train(lgb_params(spec), lightgbm.Dataset(X, label=y), same rounds)`.

Every child sets POLARS_MAX_THREADS / OMP / OPENBLAS / MKL thread variables to the thread
count under test, so ours and the baselines use the same number of threads throughout, and
records the thread counts it saw. It warms up on a 5,000-row frame, builds the data,
releases freed memory, resets the kernel's peak-RSS mark (/proc/self/clear_refs = 5) and
reports `getrusage(RUSAGE_SELF).ru_maxrss` after the step minus the RSS at its start (extra
peak), plus the same from VmHWM.

Stage split, taken in every child by wrapping (in the child only, product code unchanged):
the four axis functions and `feature_matrix` / `label_vector` / `GroupKFold.split` as looked
up by `assets.quality`, and `lightgbm.Dataset.construct` (binning), `lightgbm.Booster.update`
(one boosting round) and `lightgbm.Booster.predict` for ours and the baselines alike.
`--profile` adds one cProfile run of score_rows and of cv_baseline (not in the medians).

Checks on every run: the baseline's LightGBM parameter block equals that of
`assets.training.fit` (fitted on 20k rows after the timed step); fit and bare_train give
bit-identical predictions on the first 10k rows.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import functools
import gc
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import dry_run  # noqa: E402

DATANET = "bench_quality"
CONTRIBUTORS = 100
FEATURES = 20
NULLABLE = ("f18", "f19")
NULL_SHARE = 0.01
BATCH_ROWS = 5_000
FLIP_ALL, FLIP_SOME = 5, 5  # contributors flipping all / 30% of their labels
DUPLICATE_SHARE = 0.005
WARM_ROWS = 5_000
THREAD_VARS = (
    "POLARS_MAX_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "RAYON_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
VARIANTS = ("score_rows", "label_consistency", "cv_baseline", "fit", "bare_train")
LABELS = {
    "score_rows": "(a) ours: score_rows, four axes",
    "label_consistency": "ours: label_consistency alone",
    "cv_baseline": "(b) cross_val_predict(LGBMClassifier), KFold(5)",
    "fit": "(c) ours: assets.training.fit",
    "bare_train": "(d) bare lightgbm.train",
}
STAGE_ORDER = (
    "validity",
    "uniqueness",
    "label_consistency",
    "typicality",
    "feature_matrix",
    "label_vector",
    "GroupKFold.split",
    "Dataset.construct",
    "Booster.update",
    "Booster.predict",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# data (shared by parent and workers)
# --------------------------------------------------------------------------------------
def make_spec(threads: int):
    from assets.datanets import parse_spec

    features = [
        {
            "name": f"f{i:02d}",
            "type": "float",
            "min": -10.0,
            "max": 10.0,
            "nullable": f"f{i:02d}" in NULLABLE,
        }
        for i in range(FEATURES)
    ]
    doc = {
        "name": DATANET,
        "owner": "bench",
        "licence": "CC0-1.0",
        "task": "binary",
        "features": features,
        "label": {"name": "label", "type": "int", "categories": [0, 1]},
        "metric": "roc_auc",
        "validation": {"kind": "bundled", "name": "breast_cancer"},
        "require_signatures": False,
        "training": {"num_threads": threads},
    }
    return parse_spec(json.dumps(doc), "<quality_train_bench>")  # JSON is YAML


def make_contributions(rows: int, seed: int):
    """The contributions frame, and the contributors flipping all / some of their labels."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    names = [f"contrib_{i:03d}" for i in range(CONTRIBUTORS)]
    share = rng.lognormal(0.0, 0.5, CONTRIBUTORS)
    who = rng.choice(CONTRIBUTORS, size=rows, p=share / share.sum()).astype(np.int64)
    x = rng.standard_normal((rows, FEATURES))
    w = np.concatenate([rng.normal(0.0, 1.0, 12), np.zeros(FEATURES - 12)])
    score = x @ w * 0.7 + 0.8 * x[:, 0] * x[:, 1]
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-score))).astype(np.int64)
    flippers = rng.choice(CONTRIBUTORS, FLIP_ALL + FLIP_SOME, replace=False)
    flip_all, flip_some = flippers[:FLIP_ALL], flippers[FLIP_ALL:]
    flip = np.isin(who, flip_all) | (np.isin(who, flip_some) & (rng.random(rows) < 0.3))
    y = np.where(flip, 1 - y, y)
    dup = rng.random(rows) < DUPLICATE_SHARE  # copies of other rows' values
    source = rng.integers(0, rows, size=int(dup.sum()))
    x[dup] = x[source]
    y[dup] = y[source]
    x = np.clip(x, -10.0, 10.0)  # the spec's range (standard normals never reach it)
    columns = {f"f{i:02d}": x[:, i] for i in range(FEATURES)}
    null_masks = {c: rng.random(rows) < NULL_SHARE for c in NULLABLE}
    hashes = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in range(rows)]
    frame = pl.DataFrame(
        {"__who": who, **columns, "label": y, "row_hash": hashes},
        schema_overrides={"row_hash": pl.String},
    )
    del x, columns, hashes
    frame = frame.with_columns(
        pl.when(pl.Series(mask)).then(None).otherwise(pl.col(c)).alias(c)
        for c, mask in null_masks.items()
    )
    seq = pl.int_range(pl.len(), dtype=pl.Int64).over("__who")
    frame = frame.with_columns(
        (seq // BATCH_ROWS).alias("__batch"), (seq % BATCH_ROWS).alias("row_index")
    )
    # One receipt instant per (contributor, batch), spread over 30 days.
    start_us = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z
    batches = frame.select("__who", "__batch").unique().sort("__who", "__batch")
    received = start_us + rng.integers(0, 30 * 86_400 * 10**6, batches.height)
    batches = batches.with_columns(
        pl.Series("received_at", received, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    )
    frame = frame.join(batches, on=["__who", "__batch"], how="left", maintain_order="left")
    frame = frame.with_columns(
        pl.lit(DATANET).alias("datanet"),
        pl.col("__who")
        .replace_strict(list(range(CONTRIBUTORS)), names, return_dtype=pl.String)
        .alias("contributor"),
    ).with_columns(
        pl.format("{}-b{}", "contributor", pl.col("__batch").cast(pl.String)).alias("batch_id")
    )
    features = [f"f{i:02d}" for i in range(FEATURES)]
    frame = frame.sort("received_at", "contributor", "row_index").select(  # arrival order
        "datanet", "contributor", "batch_id", "received_at", "row_index", "row_hash",
        *features, "label",
    )  # fmt: skip
    return (
        frame,
        sorted(names[int(i)] for i in flip_all),
        sorted(names[int(i)] for i in flip_some),
    )


# --------------------------------------------------------------------------------------
# worker side: one measured variant per process
# --------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


class PeakMemory:
    """Extra peak RSS of a step over the RSS at its start."""

    def __init__(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset the peak-RSS mark to the current RSS
            self.reset = True
        except OSError:
            self.reset = False
        self.rss0 = _status_kb("VmRSS") or 0
        self.maxrss0 = _maxrss_kb()

    def result(self) -> dict:
        hwm = _status_kb("VmHWM")
        maxrss = _maxrss_kb()
        out = {
            "rss_start_mb": self.rss0 / 1024,
            "ru_maxrss_mb": maxrss / 1024,
            # With the mark reset, ru_maxrss - RSS at start is the step's extra peak.
            "extra_peak_mb": (maxrss - (self.rss0 if self.reset else self.maxrss0)) / 1024,
            "peak_reset": self.reset,
        }
        if hwm is not None and self.reset:
            out["extra_peak_vmhwm_mb"] = (hwm - self.rss0) / 1024
        return out


def _release_memory() -> None:
    """Give freed memory back to the OS so a step cannot reuse it unseen by RSS."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL(libc).malloc_trim(0)


class Stages:
    """Wall / CPU seconds, calls and peak-RSS rise of wrapped functions (outermost calls)."""

    def __init__(self) -> None:
        self.data: dict[str, dict] = {}
        self.depth: dict[str, int] = {}
        self.enabled = False

    def _record(self, name: str, wall: float, cpu: float, rise_kb: int) -> None:
        entry = self.data.setdefault(
            name, {"seconds": 0.0, "cpu_seconds": 0.0, "calls": 0, "peak_rise_mb": 0.0}
        )
        entry["seconds"] += wall
        entry["cpu_seconds"] += cpu
        entry["calls"] += 1
        entry["peak_rise_mb"] += rise_kb / 1024

    def wrap(self, owner: object, attr: str, name: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if not self.enabled or self.depth.get(name, 0):
                return original(*args, **kwargs)
            self.depth[name] = 1
            h0 = _status_kb("VmHWM") or 0
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                self._record(name, wall, cpu, (_status_kb("VmHWM") or 0) - h0)
                self.depth[name] = 0

        setattr(owner, attr, timed)

    def wrap_split(self, module: object, attr: str, name: str) -> None:
        """Time each step of the fold generator of a splitter class (GroupKFold)."""
        base = getattr(module, attr)
        stages = self

        class TimedSplitter(base):  # type: ignore[misc, valid-type]
            def split(self, *args, **kwargs):
                folds = super().split(*args, **kwargs)
                while True:
                    t0, c0 = time.perf_counter(), time.process_time()
                    try:
                        fold = next(folds)
                    except StopIteration:
                        if stages.enabled:
                            stages._record(
                                name, time.perf_counter() - t0, time.process_time() - c0, 0
                            )
                        return
                    if stages.enabled:
                        stages._record(name, time.perf_counter() - t0, time.process_time() - c0, 0)
                    yield fold

        TimedSplitter.__name__ = base.__name__
        setattr(module, attr, TimedSplitter)


def install_stages() -> Stages:
    import lightgbm as lgb

    import assets.quality as quality

    stages = Stages()
    for name in ("validity", "uniqueness", "label_consistency", "typicality"):
        stages.wrap(quality, name, name)
    stages.wrap(quality, "feature_matrix", "feature_matrix")
    stages.wrap(quality, "label_vector", "label_vector")
    stages.wrap_split(quality, "GroupKFold", "GroupKFold.split")
    stages.wrap(lgb.Dataset, "construct", "Dataset.construct")
    stages.wrap(lgb.Booster, "update", "Booster.update")
    stages.wrap(lgb.Booster, "predict", "Booster.predict")
    return stages


def _params_block(booster) -> list[str]:
    text = booster.model_to_string()
    block = text[text.index("parameters:") : text.index("end of parameters")]
    return block.splitlines()


def _digest(values) -> str:
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()


def _classifier(spec, rounds: int):
    import lightgbm as lgb

    from assets.training import lgb_params

    # Every lgb_params entry is passed through LGBMClassifier's **kwargs to the booster;
    # num_leaves / learning_rate land in its named arguments. The parameter-block check
    # below confirms the booster gets exactly the parameters of assets.training.fit.
    return lgb.LGBMClassifier(n_estimators=rounds, **lgb_params(spec))


def step_for(variant: str, spec, frame, xy):
    """The measured step of a variant, as a zero-argument function."""
    import lightgbm as lgb
    from sklearn.model_selection import KFold, cross_val_predict

    from assets.quality import LABEL_CHECK_ROUNDS, label_consistency, score_rows
    from assets.training import fit, lgb_params

    if variant == "score_rows":
        return lambda: score_rows(spec, frame)
    if variant == "label_consistency":
        return lambda: label_consistency(spec, frame)
    x, y = xy
    if variant == "cv_baseline":
        return lambda: cross_val_predict(
            _classifier(spec, LABEL_CHECK_ROUNDS),
            x,
            y,
            cv=KFold(n_splits=5),
            method="predict_proba",
        )
    if variant == "fit":
        return lambda: fit(spec, x, y)
    if variant == "bare_train":
        return lambda: lgb.train(
            lgb_params(spec), lgb.Dataset(x, label=y), num_boost_round=spec.training.num_boost_round
        )
    raise SystemExit(f"unknown variant {variant!r}")


def run_worker(variant: str, rows: int, threads: int, seed: int, profile: bool) -> dict:
    import lightgbm as lgb
    import numpy as np
    import polars as pl
    import sklearn

    from assets.quality import LABEL_CHECK_ROUNDS
    from assets.training import feature_matrix, fit, label_vector, lgb_params

    spec = make_spec(threads)
    stages = install_stages()
    needs_frame = variant in ("score_rows", "label_consistency")

    # Warm-up on a small frame of its own: imports, thread pools, lazy initialisation.
    warm, _, _ = make_contributions(WARM_ROWS, seed + 1)
    warm_xy = (feature_matrix(spec, warm), label_vector(spec, warm))
    t0 = time.perf_counter()
    step_for(variant, spec, warm, warm_xy)()
    warmup_seconds = time.perf_counter() - t0
    del warm, warm_xy

    _release_memory()
    rss_before = _status_kb("VmRSS") or 0
    t0 = time.perf_counter()
    frame, flip_all, flip_some = make_contributions(rows, seed)
    generation_seconds = time.perf_counter() - t0
    info: dict = {
        "variant": variant,
        "rows": rows,
        "threads": threads,
        "warmup_seconds": warmup_seconds,
        "generation_seconds": generation_seconds,
        "frame_estimated_mb": frame.estimated_size() / 2**20,
        "contributors": frame["contributor"].n_unique(),
        "flip_all": flip_all,
        "flip_some": flip_some,
        "loadavg_1min_at_start": os.getloadavg()[0],
        "thread_env": {k: os.environ.get(k) for k in THREAD_VARS},
        "polars_threads": pl.thread_pool_size(),
        "lightgbm_num_threads": lgb_params(spec)["num_threads"],
        "spec_num_boost_round": spec.training.num_boost_round,
        "label_check_rounds": LABEL_CHECK_ROUNDS,
        "versions": {
            "lightgbm": lgb.__version__,
            "sklearn": sklearn.__version__,
            "polars": pl.__version__,
            "numpy": np.__version__,
        },
        "product_sources_sha256": {
            name: hashlib.sha256((ROOT / "assets" / name).read_bytes()).hexdigest()[:12]
            for name in ("quality.py", "training.py", "datanets.py")
        },
    }
    xy = None
    if not needs_frame:
        t0 = time.perf_counter()
        xy = (feature_matrix(spec, frame), label_vector(spec, frame))
        info["prep_feature_matrix_label_vector_seconds"] = time.perf_counter() - t0
        groups = frame["contributor"].to_numpy()
        del frame
        frame = None
    info["data_rss_mb"] = ((_status_kb("VmRSS") or 0) - rss_before) / 1024

    step = step_for(variant, spec, frame, xy)
    _release_memory()
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        t0, c0 = time.perf_counter(), time.process_time()
        result = profiler.runcall(step)
        info["seconds"], info["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
        st = pstats.Stats(profiler)
        entries = []
        for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in st.stats.items():
            entries.append(
                {
                    "function": f"{Path(file).name}:{line}({func})",
                    "calls": ncalls,
                    "tottime": tottime,
                    "cumtime": cumtime,
                }
            )
        info["profile_cumulative"] = sorted(entries, key=lambda e: -e["cumtime"])[:45]
        info["profile_tottime"] = sorted(entries, key=lambda e: -e["tottime"])[:25]
        return info

    mem = PeakMemory()
    stages.enabled = True
    t0, c0 = time.perf_counter(), time.process_time()
    result = step()
    info["seconds"], info["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
    stages.enabled = False
    info.update(mem.result())
    info["stages"] = stages.data

    # Sanity and equivalence checks (after the measurement).
    if variant == "score_rows":
        q = result
        info["accepted_share"] = float(q["accepted"].mean())
        info["near_duplicates"] = int((q["uniqueness"] < 1).sum())
        lc = q.group_by("contributor").agg(pl.col("label_consistency").mean())
        mean = dict(zip(lc["contributor"], lc["label_consistency"], strict=True))
        info["mean_label_consistency"] = {
            "flip_all": float(np.mean([mean[c] for c in flip_all])),
            "flip_30pct": float(np.mean([mean[c] for c in flip_some])),
            "others": float(np.mean([v for c, v in mean.items() if c not in flip_all + flip_some])),
        }
    elif variant == "label_consistency":
        info["mean_label_consistency"] = float(np.mean(result))
    elif variant == "cv_baseline":
        x, y = xy
        own = result[np.arange(len(y)), y]
        info["mean_own_label_probability"] = float(np.mean(own))
        flipped = np.isin(groups, flip_all)
        info["mean_own_label_probability_flip_all"] = float(np.mean(own[flipped]))
        # Parameter blocks of the baseline's booster and of assets.training.fit agree?
        n = min(20_000, len(y))
        ours = fit(spec, x[:n], y[:n], num_boost_round=LABEL_CHECK_ROUNDS)
        theirs = _classifier(spec, LABEL_CHECK_ROUNDS).fit(x[:n], y[:n]).booster_
        info["params_block_equal"] = _params_block(ours) == _params_block(theirs)
        info["predictions_equal_20k"] = bool(
            np.array_equal(ours.predict(x[:n]), theirs.predict(x[:n]))
        )
        info["lightgbm_params"] = {k: str(v) for k, v in lgb_params(spec).items()}
    elif variant in ("fit", "bare_train"):
        x, _ = xy
        info["num_trees"] = result.num_trees()
        info["prediction_digest_10k"] = _digest(result.predict(x[:10_000]))
    return info


# --------------------------------------------------------------------------------------
# parent side: orchestration, summary
# --------------------------------------------------------------------------------------
def _child_env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update({k: str(threads) for k in THREAD_VARS})
    env["PYTHONWARNINGS"] = "ignore"
    return env


def spawn(args: list[str], threads: int, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    proc = subprocess.run(
        cmd, env=_child_env(threads), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


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
    mem_gb = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        mem_gb = int(fh.readline().split()[1]) / 2**20
    versions = {}
    for pkg in ("numpy", "polars", "lightgbm", "scikit-learn", "scipy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "ram_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _ratio(runs: list[dict], threads: int, num: str, den: str, field: str) -> dict | None:
    a = sorted(
        (r for r in runs if r["threads"] == threads and r["variant"] == num),
        key=lambda r: r["repetition"],
    )
    b = sorted(
        (r for r in runs if r["threads"] == threads and r["variant"] == den),
        key=lambda r: r["repetition"],
    )
    if not a or not b:
        return None
    return {
        "median_over_median": _median([r[field] for r in a]) / _median([r[field] for r in b]),
        # Least disturbed run of each (on a shared machine, the closest to an idle one).
        "best_over_best": min(r[field] for r in a) / min(r[field] for r in b),
        # Same repetition: the two runs were minutes apart, under similar load.
        "per_repetition": [round(ra[field] / rb[field], 3) for ra, rb in zip(a, b, strict=False)],
    }


# Derived stages: what a step (or an axis) spent outside the wrapped functions it calls.
REST = {
    "score_rows": (
        "rest of score_rows (combined score, reasons, casts)",
        None,
        ("validity", "uniqueness", "label_consistency", "typicality"),
    ),
    "label_consistency": (
        "rest of label_consistency (x[train] / x[test] copies, fold loop)",
        "label_consistency",
        (
            "feature_matrix",
            "label_vector",
            "GroupKFold.split",
            "Dataset.construct",
            "Booster.update",
            "Booster.predict",
        ),
    ),
    "cv_baseline": (
        "rest of cross_val_predict (X[train] / X[test] copies, clone, checks)",
        None,
        ("Dataset.construct", "Booster.update", "Booster.predict"),
    ),
    "fit": (
        "rest of fit (Dataset / Booster set-up)",
        None,
        ("Dataset.construct", "Booster.update"),
    ),
    "bare_train": (
        "rest of lightgbm.train (Dataset / Booster set-up)",
        None,
        ("Dataset.construct", "Booster.update"),
    ),
}


def add_rest_stages(run: dict) -> None:
    """Add the derived `rest of ...` stages to one run (idempotent)."""
    stages = run["stages"]
    for variant, (name, parent, parts) in REST.items():
        if variant == "label_consistency":
            if "label_consistency" not in stages:
                continue
        elif variant != run["variant"]:
            continue
        for field in ("seconds", "cpu_seconds"):
            total = stages[parent][field] if parent else run[field]
            spent = sum(stages.get(p, {}).get(field, 0.0) for p in parts)
            stages.setdefault(name, {"calls": 1, "peak_rise_mb": 0.0})[field] = total - spent


def summarize(runs: list[dict]) -> dict:
    """Medians per (threads, variant), stage medians and the target ratios."""
    for run in runs:
        add_rest_stages(run)
    out: dict = {}
    for threads in sorted({r["threads"] for r in runs}):
        per: dict = {}
        for variant in VARIANTS:
            rs = [r for r in runs if r["threads"] == threads and r["variant"] == variant]
            if not rs:
                continue
            names = sorted({k for r in rs for k in r["stages"]}, key=_stage_key)
            per[variant] = {
                "runs": len(rs),
                "seconds_median": _median([r["seconds"] for r in rs]),
                "seconds_all": [round(r["seconds"], 3) for r in rs],
                "seconds_min": min(r["seconds"] for r in rs),
                "cpu_seconds_min": min(r["cpu_seconds"] for r in rs),
                "cpu_seconds_median": _median([r["cpu_seconds"] for r in rs]),
                "extra_peak_mb_median": _median([r["extra_peak_mb"] for r in rs]),
                "extra_peak_mb_max": max(r["extra_peak_mb"] for r in rs),
                "extra_peak_vmhwm_mb_max": max(r.get("extra_peak_vmhwm_mb", 0.0) for r in rs),
                "data_rss_mb": rs[0]["data_rss_mb"],
                "loadavg_at_start": [r["loadavg_1min_at_start"] for r in rs],
                "polars_threads": rs[0]["polars_threads"],
                "lightgbm_num_threads": rs[0]["lightgbm_num_threads"],
                "stages_seconds_median": {
                    k: _median([r["stages"].get(k, {}).get("seconds", 0.0) for r in rs])
                    for k in names
                },
                "stages_cpu_median": {
                    k: _median([r["stages"].get(k, {}).get("cpu_seconds", 0.0) for r in rs])
                    for k in names
                },
                "stages_calls": {k: rs[0]["stages"].get(k, {}).get("calls", 0) for k in names},
                "stages_peak_rise_mb_max": {
                    k: max(r["stages"].get(k, {}).get("peak_rise_mb", 0.0) for r in rs)
                    for k in names
                },
            }
        ratios: dict = {}
        for num, den, field, tag in (
            ("score_rows", "cv_baseline", "seconds", ""),
            ("label_consistency", "cv_baseline", "seconds", ""),
            ("fit", "bare_train", "seconds", ""),
            ("score_rows", "cv_baseline", "cpu_seconds", " (CPU)"),
            ("label_consistency", "cv_baseline", "cpu_seconds", " (CPU)"),
            ("fit", "bare_train", "cpu_seconds", " (CPU)"),
            ("score_rows", "cv_baseline", "extra_peak_mb", " (extra peak MB)"),
            ("fit", "bare_train", "extra_peak_mb", " (extra peak MB)"),
        ):
            value = _ratio(runs, threads, num, den, field)
            if value:
                ratios[f"{num}/{den}{tag}"] = value
        digests = {
            r["prediction_digest_10k"]
            for r in runs
            if r["threads"] == threads and r["variant"] in ("fit", "bare_train")
        }
        checks = {
            "fit_and_bare_train_predictions_identical": len(digests) == 1 if digests else None,
            "params_block_equal": all(
                r["params_block_equal"]
                for r in runs
                if r["threads"] == threads and r["variant"] == "cv_baseline"
            ),
        }
        out[str(threads)] = {"variants": per, "ratios": ratios, "checks": checks}
    return out


def _stage_key(name: str) -> int:
    order = [
        "validity",
        "uniqueness",
        "label_consistency",
        "typicality",
        REST["score_rows"][0],
        *STAGE_ORDER[4:],
        *[REST[v][0] for v in REST if v != "score_rows"],
    ]
    return order.index(name) if name in order else len(order)


def render(doc: dict) -> str:
    lines = [f"rows {doc['rows']:,}, repeat {doc['repeat']}; {doc['uptime_start']}", ""]
    for threads, block in doc["summary"].items():
        lines += [
            f"### threads = {threads} (LightGBM num_threads, POLARS_MAX_THREADS, OMP)",
            "",
            "| variant | median s | median CPU s | best s | all runs s"
            " | extra peak MB (median / max) | load at start |",
            "|---|---:|---:|---:|---|---:|---|",
        ]
        for variant, v in block["variants"].items():
            lines.append(
                f"| {LABELS[variant]} | {v['seconds_median']:.2f} | {v['cpu_seconds_median']:.2f}"
                f" | {v['seconds_min']:.2f}"
                f" | {', '.join(f'{s:.1f}' for s in v['seconds_all'])}"
                f" | {v['extra_peak_mb_median']:.0f} / {v['extra_peak_mb_max']:.0f}"
                f" | {', '.join(f'{x:.1f}' for x in v['loadavg_at_start'])} |"
            )
        lines += [
            "",
            "| ratio | median/median | best/best | per repetition |",
            "|---|---:|---:|---|",
        ]
        for key, r in block["ratios"].items():
            lines.append(
                f"| {key} | {r['median_over_median']:.3f} | {r['best_over_best']:.3f} | "
                f"{', '.join(str(x) for x in r['per_repetition'])} |"
            )
        lines += ["", f"checks: {block['checks']}", ""]
        for variant, v in block["variants"].items():
            note = (
                " (label_consistency's inner stages are listed below the axes)"
                if variant == "score_rows"
                else ""
            )
            lines += [
                f"stages of {variant}, medians{note}",
                "",
                "| stage | calls | s | CPU s | peak rise MB (max) |",
                "|---|---:|---:|---:|---:|",
            ]
            for k, sec in v["stages_seconds_median"].items():
                rise = max(0.0, v["stages_peak_rise_mb_max"][k])
                lines.append(
                    f"| {k} | {v['stages_calls'][k]} | {sec:.2f} | "
                    f"{v['stages_cpu_median'][k]:.2f} | {rise:.0f} |"
                )
            lines.append("")
    for prof in doc.get("profiles", []):
        lines += [
            f"cProfile of {prof['variant']} (threads {prof['threads']}, {prof['seconds']:.1f} s)",
            "",
            "| function | calls | tottime | cumtime |",
            "|---|---:|---:|---:|",
        ]
        for e in prof["profile_cumulative"][:30]:
            lines.append(
                f"| `{e['function']}` | {e['calls']} | {e['tottime']:.2f} | {e['cumtime']:.2f} |"
            )
        lines.append("")
    lines.append(f"end: {doc.get('uptime_end', '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (median)")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="LightGBM/polars threads to test"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="add cProfile runs")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per child, seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/quality_train.json")
    parser.add_argument("--resummarize", action="store_true", help="re-print --out's tables")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = dry_run.parse_args(parser, argv)

    if args.worker:
        info = run_worker(args.worker, args.rows, args.worker_threads, args.seed, args.profile)
        print(json.dumps(info))
        return
    if args.resummarize:
        doc = json.loads(args.out.read_text())
        doc["summary"] = summarize(doc["runs"])
        print(render(doc))
        return

    doc: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rows": args.rows,
        "repeat": args.repeat,
        "threads": args.threads,
        "seed": args.seed,
        "machine": machine_info(),
        "uptime_start": uptime(),
        "runs": [],
        "profiles": [],
    }
    log(f"start: {doc['uptime_start']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for threads in args.threads:
        for rep in range(args.repeat):
            # Alternate the order so that a drift in load favours no variant.
            order = args.variants if rep % 2 == 0 else args.variants[::-1]
            for variant in order:
                worker = ["--worker", variant, "--worker-threads", str(threads)]
                info = spawn(
                    [*worker, "--rows", str(args.rows), "--seed", str(args.seed)],
                    threads,
                    args.timeout,
                )
                info["repetition"] = rep
                doc["runs"].append(info)
                log(
                    f"threads={threads} rep={rep} {variant}: {info['seconds']:.2f} s, "
                    f"CPU {info['cpu_seconds']:.2f} s, extra peak {info['extra_peak_mb']:.0f} MB, "
                    f"load {info['loadavg_1min_at_start']:.2f}"
                )
                args.out.write_text(json.dumps(doc, indent=1))
    if args.profile:
        for variant in ("score_rows", "cv_baseline"):
            worker = ["--worker", variant, "--worker-threads", str(args.threads[0]), "--profile"]
            info = spawn(
                [*worker, "--rows", str(args.rows), "--seed", str(args.seed)],
                args.threads[0],
                args.timeout,
            )
            doc["profiles"].append(info)
            log(f"profile {variant}: {info['seconds']:.2f} s")
    doc["uptime_end"] = uptime()
    doc["summary"] = summarize(doc["runs"])
    args.out.write_text(json.dumps(doc, indent=1))
    text = render(doc)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
