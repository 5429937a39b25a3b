"""Benchmark of attribution: our KNN-Shapley and contributor Shapley against pyDVL 0.10.

    uv run python benchmarks/attribution_bench.py --out benchmarks/out/attribution.json
    uv run python benchmarks/attribution_bench.py --resummarize \
        --out benchmarks/out/attribution.json

pyDVL 0.10 requires numpy<2 and the project uses numpy 2, so pyDVL runs in its own venv,
`benchmarks/.pydvl-env` (git-ignored), which this script creates when missing and syncs
every run (`uv venv` + `uv pip install -r benchmarks/pydvl-requirements.txt`; a no-op when
up to date). Every measured step runs in a child process: ours with this interpreter
(`--worker ours-*`), pyDVL's with the pyDVL venv's (`--worker pydvl-*`). They exchange
arrays through .npy files and JSON in a temporary folder; each child times itself.
This file therefore imports only the standard library and numpy at module level.

Parts (`--parts`, default all):

* knn: exact KNN-Shapley, k = 10, 20 standard-normal features, binary labels from a noisy
  linear score, N training rows (`--knn-sizes`) and 500 validation rows, all standardized
  once with `assets.knn_shapley.standardize`. Ours is `assets.knn_shapley.knn_shapley`;
  pyDVL's is `KNNShapleyValuation(KNeighborsClassifier(n_neighbors=10), test_data)` on
  `Dataset`s of the same standardized arrays. Both get a warm-up on 2,000 rows first.
* g10 / g100: contributor Shapley on a synthetic binary Datanet (10,000 rows, 20 features,
  1,000 validation rows, metric roc_auc, the spec's default training and valuation
  policies). Contributors own contiguous blocks of rows with lognormal sizes; every fifth
  contributor (index % 5 == 4) flips 80 % of its labels. The utility is ours,
  `assets.valuation.DatanetUtility`; pyDVL's is a `ModelUtility` around a model wrapper
  that trains LightGBM with the same parameters on the same bins (an `lgb.Dataset` of the
  coalition's rows with `reference=` the full training set, binned once as ours does) and
  the same bounded metric on the same validation set, on a `GroupedDataset` whose points
  are the contributors. Both sides memoize utilities by coalition (a set, whatever the
  order), so "fits" means distinct coalitions trained; "calls" means utility evaluations
  of non-empty coalitions, i.e. the fits without a cache. Utilities of coalitions that both
  sides evaluated are compared.
  - ours: `permutation_shapley` (antithetic pairs, truncation 0.01 of |U(all) - U(∅)|,
    pairs_per_batch 1 so that budgets are fine-grained), run with increasing
    `max_evaluations` budgets on the same seed; each run is a prefix of the next, and the
    shared cache makes the reruns free.
  - svarm: `assets.svarm.svarm_shapley` (Stratified SVARM, adaptive sizes) at the same
    budgets and seeds, one set per batch; its budget counts distinct coalitions. The
    summary gives its fits ratio against pyDVL both from the c/√fits fit and matched on
    the error curves without a model, and the coverage of its 1.96·SE intervals (G = 10).
  - pyDVL: `TMCShapleyValuation` with its default truncation, `RelativeTruncation(rtol=0.01,
    burn_in_fraction=0.4)`, and a stopping criterion that records the values after every
    permutation and stops at the call budget.
  - g10 adds the ground truth: `exact_shapley` over the 1,024 coalitions.
* demo: the two demo Datanets for demo-data seeds 0..4 (`--demo-seeds`): `prepare_demo`
  into a temporary lake root, then `ingest_datanet` on the inbox (the rows the
  contributor_values asset values: every accepted contribution) and `validation_set`.
  Exact values (G = 7) against `permutation_shapley` (the spec's policy) and pyDVL's TMC at
  a few call budgets; Spearman against exact, and the AUROC of the planted bad contributors
  (dave: flipped labels, frank: noise rows) from the values (low value = bad).
* scale: 1,000 contributors, 1,000,000 rows, `permutation_shapley(workers=2)` with a stated
  half-width target, stopped by a wall-clock deadline (`--scale-minutes`) checked between
  batches; the peak RSS of the whole process tree is sampled every second.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import dry_run  # noqa: E402

BENCH = ROOT / "benchmarks"
PYDVL_ENV = BENCH / ".pydvl-env"
PYDVL_REQUIREMENTS = BENCH / "pydvl-requirements.txt"
PYDVL_PYTHON = PYDVL_ENV / "bin" / "python"

FEATURES = 20
KNN_K = 10
KNN_VAL = 500
GROUP_ROWS = 10_000
GROUP_VAL = 1_000
BAD_EVERY = 5  # contributor index % 5 == 4 flips 80 % of its labels
FLIP_SHARE = 0.8
DEMO_BAD = ("dave", "frank")


# --- shared helpers (both interpreters) -------------------------------------------------------


def rss_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in (task / "children").read_text().split()]
                found += kids
                todo += kids
    return found


def thread_info() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info

        return [
            {k: d.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
            for d in threadpool_info()
        ]
    except ImportError:
        return []


def versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def load(folder: Path, *names: str) -> list[np.ndarray]:
    return [np.load(folder / f"{n}.npy") for n in names]


def mask_of(indices) -> int:
    mask = 0
    for i in indices:
        mask |= 1 << int(i)
    return mask


# --- data ---------------------------------------------------------------------------------------


def linear_labels(x: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    w = rng.normal(size=x.shape[1])
    score = x @ w / math.sqrt(x.shape[1]) + 0.5 * x[:, 0] * x[:, 1]
    return (score + rng.normal(scale=noise, size=len(x)) > 0).astype(np.int64)


def knn_data(n: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + KNN_VAL, FEATURES))
    y = linear_labels(x, rng, 0.7)
    return x[:n], y[:n], x[n:], y[n:]


def group_data(
    n_rows: int, n_groups: int, n_val: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, player_of_row, x_val, y_val, bad): contiguous lognormal blocks per player."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows + n_val, FEATURES))
    y = linear_labels(x, rng, 1.0)
    shares = rng.lognormal(sigma=0.5, size=n_groups)
    sizes = np.maximum(1, np.floor(shares / shares.sum() * n_rows)).astype(np.int64)
    sizes[-1] += n_rows - sizes.sum()
    player = np.repeat(np.arange(n_groups), sizes)
    bad = np.arange(n_groups) % BAD_EVERY == BAD_EVERY - 1
    flip = bad[player] & (rng.random(n_rows) < FLIP_SHARE)
    y_train = np.where(flip, 1 - y[:n_rows], y[:n_rows])
    return x[:n_rows], y_train, player, x[n_rows:], y[n_rows:], bad


def synthetic_spec_json() -> str:
    doc = {
        "name": "bench_attribution",
        "owner": "bench",
        "licence": "CC0-1.0",
        "task": "binary",
        "features": [{"name": f"f{i:02d}", "type": "float"} for i in range(FEATURES)],
        "label": {"name": "label", "type": "int", "categories": [0, 1]},
        "metric": "roc_auc",
        "validation": {"kind": "file", "name": "validation.csv"},
    }
    return json.dumps(doc)


# --- ours (project venv) ---------------------------------------------------------------------


def _project_path() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def worker_ours_knn(folder: Path) -> dict:
    _project_path()
    from assets.knn_shapley import knn_shapley

    x, y, xv, yv = load(folder, "x", "y", "xv", "yv")
    knn_shapley(x[:2000], y[:2000], xv, yv, k=KNN_K)  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    values = knn_shapley(x, y, xv, yv, k=KNN_K)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    np.save(folder / "ours_values.npy", values)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": thread_info(),
        "versions": versions("numpy"),
    }


class Recorder:
    """Wraps a DatanetUtility: counts calls and distinct coalitions of one run, times fits."""

    def __init__(self, utility, fit_log: list) -> None:
        self.utility, self.fit_log = utility, fit_log
        self.calls, self.seen = 0, set()

    def __call__(self, mask: int) -> float:
        if mask:
            self.calls += 1
            self.seen.add(mask)
        if mask in self.utility.cache:
            return self.utility.cache[mask]
        fits, started, cpu = self.utility.fits, time.perf_counter(), time.process_time()
        value = self.utility(mask)
        if self.utility.fits > fits:
            rows = int(sum(self.utility.rows_of[p].size for p in self._players(mask)))
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            self.fit_log.append((rows, wall, cpu, format(mask, "x")))
        return value

    def _players(self, mask: int) -> list[int]:
        return [p for p in range(self.utility.n_players) if mask >> p & 1]


def ours_group_runs(utility, players, config: dict, fit_log: list) -> dict:
    """Exact (optional) and permutation_shapley at increasing budgets, per seed."""
    from assets.valuation import StoppingRule, exact_shapley, permutation_shapley

    out: dict = {"runs": []}
    if config.get("exact"):
        recorder = Recorder(utility, fit_log)
        started = time.perf_counter()
        exact = exact_shapley(recorder, players)
        out["exact"] = {
            "values": exact.values.tolist(),
            "wall_s": time.perf_counter() - started,
            "calls": recorder.calls,
            "fits": utility.fits,
            "total_utility": exact.total_utility,
        }
    if config.get("svarm"):
        out["svarm"] = svarm_group_runs(utility, players, config)
    for seed in config["seeds"]:
        snapshots = []
        for budget in config["budgets"]:
            recorder = Recorder(utility, fit_log)
            started = time.perf_counter()
            result = permutation_shapley(
                recorder,
                players,
                StoppingRule(half_width=1e-12, max_evaluations=budget, min_pairs=10**9),
                seed=seed,
                truncation=config["truncation"],
                pairs_per_batch=1,
            )
            snapshots.append(
                {
                    "budget": budget,
                    "calls": recorder.calls,
                    "fits": len(recorder.seen),
                    "evaluations": result.utility_evaluations,
                    "pairs": int(result.notes["pairs"]),
                    "values": result.values.tolist(),
                    "std_errors": result.std_errors.tolist(),
                    "wall_s": time.perf_counter() - started,
                }
            )
        out["runs"].append({"seed": seed, "snapshots": snapshots})
    return out


def svarm_group_runs(utility, players, config: dict) -> dict:
    """`svarm_shapley` at the same budgets and seeds, one set per batch so that each budget's
    run is a prefix of the next (the shared cache makes the reruns free). Its budget
    (`max_evaluations`) counts distinct coalitions, as it never evaluates a set twice."""
    from assets.svarm import svarm_shapley
    from assets.valuation import StoppingRule

    fit_log: list = []
    runs = []
    for seed in config["seeds"]:
        snapshots = []
        for budget in config["budgets"]:
            recorder = Recorder(utility, fit_log)
            started = time.perf_counter()
            result = svarm_shapley(
                recorder,
                players,
                StoppingRule(half_width=1e-12, max_evaluations=budget, min_pairs=10**9),
                seed=seed,
                sets_per_batch=1,
                **config["svarm"],
            )
            snapshots.append(
                {
                    "budget": budget,
                    "calls": recorder.calls,
                    "fits": len(recorder.seen),
                    "evaluations": result.utility_evaluations,
                    "sets_sampled": int(result.notes["sets_sampled"]),
                    "empty_strata": int(result.notes["empty_strata"]),
                    "values": result.values.tolist(),
                    "std_errors": result.std_errors.tolist(),
                    "efficiency_gap": result.efficiency_gap(),
                    "wall_s": time.perf_counter() - started,
                }
            )
        runs.append({"seed": seed, "snapshots": snapshots})
    return {"runs": runs, "fit_log": fit_log, "options": config["svarm"]}


def worker_ours_groups(folder: Path) -> dict:
    _project_path()
    from assets.datanets import parse_spec
    from assets.valuation import DatanetUtility

    config = json.loads((folder / "config.json").read_text())
    spec = parse_spec(config["spec_json"])
    x, y, player, xv, yv = load(folder, "x", "y", "player", "xv", "yv")
    started = time.perf_counter()
    utility = DatanetUtility(spec, x, y, player, xv, yv, spec.valuation.num_boost_round)
    build_s = time.perf_counter() - started
    players = [str(p) for p in range(utility.n_players)]
    fit_log: list = []
    out = ours_group_runs(utility, players, config, fit_log)
    out.update(
        build_s=build_s,
        u_empty=utility(0),
        u_all=utility((1 << utility.n_players) - 1),
        fit_log=fit_log,
        utilities={format(m, "x"): v for m, v in utility.cache.items()},
        params=utility.params,
        num_boost_round=spec.valuation.num_boost_round,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        versions=versions("numpy", "lightgbm", "scikit-learn"),
        threads=thread_info(),
    )
    return out


# --- scale (ours only, project venv) -----------------------------------------------------------


class LoggedUtility:
    """A utility that appends every coalition it computes (hex bitmask, value) to a file of
    its own process, so a scale run's utilities can be replayed without training."""

    def __init__(self, utility, folder: Path) -> None:
        self.utility, self.path = utility, folder / f"utilities-{os.getpid()}.txt"

    @property
    def fits(self) -> int:
        return self.utility.fits

    def __call__(self, mask: int) -> float:
        fresh = mask not in self.utility.cache
        value = self.utility(mask)
        if fresh:
            with self.path.open("a") as handle:
                handle.write(f"{mask:x} {value!r}\n")
        return value


def scale_utility(folder: str):
    """Utility factory for the scale workers: arrays memory-mapped from the shared folder;
    logged (`LoggedUtility`) when the config asks to record utilities."""
    _project_path()
    from assets.datanets import parse_spec
    from assets.valuation import DatanetUtility

    spec = parse_spec(synthetic_spec_json())
    arrays = [np.load(Path(folder) / f"{n}.npy", mmap_mode="r") for n in ("x", "y", "player")]
    xv, yv = (np.load(Path(folder) / f"{n}.npy") for n in ("xv", "yv"))
    utility = DatanetUtility(
        spec, arrays[0], np.asarray(arrays[1]), np.asarray(arrays[2]), xv, yv,
        spec.valuation.num_boost_round,
    )  # fmt: skip
    config = json.loads((Path(folder) / "config.json").read_text())
    return LoggedUtility(utility, Path(folder)) if config.get("record_utilities") else utility


def worker_ours_scale(folder: Path) -> dict:
    _project_path()
    from dataclasses import dataclass
    from functools import partial

    from assets.valuation import StoppingRule, permutation_shapley

    config = json.loads((folder / "config.json").read_text())
    started = time.perf_counter()
    x, y, player, xv, yv, bad = group_data(
        config["rows"], config["players"], GROUP_VAL, config["data_seed"]
    )
    for name, array in {"x": x, "y": y, "player": player, "xv": xv, "yv": yv}.items():
        np.save(folder / f"{name}.npy", array)
    del x, y
    data_s = time.perf_counter() - started
    peak = {"tree_mb": 0.0, "processes": 0}
    stop_sampling = threading.Event()
    me = os.getpid()

    def sample_memory() -> None:
        while not stop_sampling.is_set():
            pids = [me, *descendants(me)]
            total = sum(rss_mb(p) for p in pids)
            if total > peak["tree_mb"]:
                peak.update(tree_mb=total, processes=len(pids))
            stop_sampling.wait(1.0)

    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    started = time.perf_counter()
    utility = scale_utility(str(folder))
    build_s = time.perf_counter() - started
    deadline = time.monotonic() + config["minutes"] * 60

    @dataclass(frozen=True)
    class TimedRule(StoppingRule):
        """StoppingRule that also stops (unconverged) at a wall-clock deadline."""

        deadline: float = math.inf

        def done(self, std_errors, pairs, evaluations):
            stop, converged = super().done(std_errors, pairs, evaluations)
            return stop or time.monotonic() >= self.deadline, converged

    log_path = folder / "progress.jsonl"
    t0 = time.perf_counter()

    def progress(pairs: int, evaluations: int, half_width: float) -> None:
        record = {
            "t_s": time.perf_counter() - t0,
            "pairs": pairs,
            "evaluations": evaluations,
            "max_half_width": half_width,
            "tree_rss_mb": peak["tree_mb"],
        }
        with log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    rule = TimedRule(
        half_width=config["half_width"],
        z=1.96,
        max_evaluations=10**9,
        deadline=deadline,
    )
    players = [str(p) for p in range(config["players"])]
    if config.get("method", "permutation") == "svarm":  # what the policy picks at this G
        from assets.svarm import svarm_shapley

        result = svarm_shapley(
            utility,
            players,
            rule,
            seed=0,
            sets_per_batch=config["sets_per_batch"],
            workers=config["workers"],
            utility_factory=partial(scale_utility, str(folder)),
            progress=progress,
        )
        result.notes["pairs"] = result.notes["sets_sampled"]
    else:
        result = permutation_shapley(
            utility,
            players,
            rule,
            seed=0,
            truncation=config["truncation"],
            pairs_per_batch=config["pairs_per_batch"],
            workers=config["workers"],
            utility_factory=partial(scale_utility, str(folder)),
            progress=progress,
            exact_first=config.get("exact_first", False),
            position_model=config.get("position_model", True),
        )
    wall = time.perf_counter() - t0
    stop_sampling.set()
    sampler.join()
    half = 1.96 * result.std_errors
    from sklearn.metrics import roc_auc_score

    return {
        "data_s": data_s,
        "build_s": build_s,
        "wall_s": wall,
        "pairs": int(result.notes["pairs"]),
        "evaluations": result.utility_evaluations,
        "main_fits": utility.fits,
        "converged": result.converged,
        "max_half_width": float(half.max()),
        "median_half_width": float(np.median(half)),
        "players_with_zero_se": int(np.sum(result.std_errors == 0)),
        "players_never_evaluated_nonzero": int(np.sum(result.values == 0)),
        "total_utility": result.total_utility,
        "sum_values": float(result.values.sum()),
        "mean_abs_value": float(np.mean(np.abs(result.values))),
        "bad_auroc": float(roc_auc_score(bad, -result.values)),
        "peak_tree_rss_mb": peak["tree_mb"],
        "peak_processes": peak["processes"],
        "self_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "progress": [json.loads(line) for line in log_path.read_text().splitlines()],
        "threads": thread_info(),
        "versions": versions("numpy", "lightgbm"),
    }


# --- pyDVL (pyDVL venv) ------------------------------------------------------------------------


def worker_pydvl_knn(folder: Path) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    from pydvl.valuation import Dataset, KNNShapleyValuation
    from sklearn.neighbors import KNeighborsClassifier

    x, y, xv, yv = load(folder, "x", "y", "xv", "yv")

    def run(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, dict]:
        model = KNeighborsClassifier(n_neighbors=KNN_K)
        valuation = KNNShapleyValuation(model, Dataset(xv, yv), progress=False)
        valuation.fit(Dataset(xs, ys))
        result = valuation.result
        values = np.zeros(len(ys))
        values[np.asarray(result.indices)] = np.asarray(result.values)
        return values, {"algorithm": model.get_params()["algorithm"]}

    run(x[:2000], y[:2000])  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    values, info = run(x, y)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    np.save(folder / "pydvl_values.npy", values)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": thread_info(),
        "versions": versions("pydvl", "numpy", "scikit-learn", "joblib"),
        **info,
    }


def bounded_metric(task: str, metric: str, k: int, y: np.ndarray, prob: np.ndarray) -> float:
    """assets.training.bounded_metric for classification, re-implemented for this venv."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    labels = np.argmax(prob, axis=1)
    if metric == "accuracy":
        return float(np.mean(labels == y))
    if metric == "balanced_accuracy":
        return float(balanced_accuracy_score(y, labels))
    if len(np.unique(y)) < 2:
        return 0.5
    if task == "binary":
        return float(roc_auc_score(y, prob[:, 1]))
    return float(roc_auc_score(y, prob, multi_class="ovr", labels=list(range(k))))


def worker_pydvl_groups(folder: Path) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import lightgbm as lgb
    from pydvl.utils.status import Status
    from pydvl.valuation import (
        Dataset,
        GroupedDataset,
        ModelUtility,
        RelativeTruncation,
        StoppingCriterion,
        SupervisedScorer,
        TMCShapleyValuation,
    )

    config = json.loads((folder / "config.json").read_text())
    x, y, player, xv, yv = load(folder, "x", "y", "player", "xv", "yv")
    task, metric, k = config["task"], config["metric"], config["n_classes"]
    params, rounds = config["params"], config["num_boost_round"]
    started = time.perf_counter()
    full = lgb.Dataset(x, label=y, params=params, free_raw_data=False).construct()
    build_s = time.perf_counter() - started
    fit_log: list = []

    class LightGBMOnSharedBins:
        """sklearn-style model: LightGBM with fixed params on the full set's bins."""

        def fit(self, xs: np.ndarray, ys: np.ndarray):
            self.constant = None
            if len(np.unique(ys)) < 2:  # as DatanetUtility: predict the one class seen
                self.constant = int(ys[0])
                return self
            data = lgb.Dataset(xs, label=ys, reference=full, params=params)
            self.booster = lgb.train(params, data, num_boost_round=rounds)
            return self

        def predict_proba(self, xs: np.ndarray) -> np.ndarray:
            if self.constant is not None:
                return np.eye(k)[np.full(len(xs), self.constant)]
            raw = self.booster.predict(xs)
            return np.column_stack([1.0 - raw, raw]) if task == "binary" else raw

        def predict(self, xs: np.ndarray) -> np.ndarray:
            return np.argmax(self.predict_proba(xs), axis=1)

    def score(model, xs, ys) -> float:
        return bounded_metric(task, metric, k, ys, model.predict_proba(xs))

    memo: dict[bytes, float] = {}
    stats: dict = {"calls": 0, "seen": set(), "keys": {}}

    class SetMemoUtility(ModelUtility):
        """ModelUtility memoized by coalition (as a set), counting calls and fits."""

        def __call__(self, sample) -> float:
            if sample is None or len(sample.subset) == 0:
                return self.scorer.default
            members = np.sort(np.asarray(sample.subset, dtype=np.int64))
            key = members.tobytes()
            stats["calls"] += 1
            stats["seen"].add(key)
            if key not in memo:
                stats["keys"][key] = members
                t, c = time.perf_counter(), time.process_time()
                memo[key] = super().__call__(sample)
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                rows = int(np.isin(player, members).sum())
                fit_log.append((rows, wall, cpu, format(mask_of(members), "x")))
            return memo[key]

    class Snapshots(StoppingCriterion):
        """Records the values after every permutation; stops at the call budget."""

        def __init__(self, budget: int) -> None:
            super().__init__(modify_result=True)
            self.budget, self.rows, self.t0 = budget, [], time.perf_counter()

        def _check(self, result) -> Status:
            order = np.argsort(np.asarray(result.indices))
            self.rows.append(
                {
                    "calls": stats["calls"],
                    "fits": len(stats["seen"]),
                    "permutations": int(np.max(result.counts)) if len(result) else 0,
                    "values": np.asarray(result.values)[order].tolist(),
                    "t_s": time.perf_counter() - self.t0,
                }
            )
            self._converged = np.full(len(result), False)
            return Status.Converged if stats["calls"] >= self.budget else Status.Pending

        def completion(self) -> float:
            return min(1.0, stats["calls"] / self.budget)

    scorer = SupervisedScorer(score, Dataset(xv, yv), default=config["u_empty"], range=(0, 1))
    utility = SetMemoUtility(
        LightGBMOnSharedBins(),
        scorer,
        catch_errors=False,
        show_warnings=False,
        clone_before_fit=False,
    )
    data = GroupedDataset(x, y, data_groups=player)
    runs = []
    for seed in config["seeds"]:
        stats["calls"], stats["seen"] = 0, set()
        criterion = Snapshots(config["budget"])
        valuation = TMCShapleyValuation(
            utility,
            truncation=RelativeTruncation(
                rtol=config["rtol"], burn_in_fraction=config["burn_in_fraction"]
            ),
            is_done=criterion,
            seed=seed,
            show_warnings=False,
            progress=False,
        )
        started = time.perf_counter()
        valuation.fit(data)
        runs.append(
            {
                "seed": seed,
                "wall_s": time.perf_counter() - started,
                "snapshots": criterion.rows,
                "result_counts": np.asarray(valuation.result.counts).tolist(),
            }
        )
    n = int(player.max()) + 1
    return {
        "build_s": build_s,
        "runs": runs,
        "fit_log": fit_log,
        "utilities": {format(mask_of(m), "x"): memo[key] for key, m in stats["keys"].items()},
        "n_players": n,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": versions("pydvl", "numpy", "lightgbm", "scikit-learn", "joblib"),
        "threads": thread_info(),
    }


WORKERS = {
    "ours-knn": worker_ours_knn,
    "ours-groups": worker_ours_groups,
    "ours-scale": worker_ours_scale,
    "pydvl-knn": worker_pydvl_knn,
    "pydvl-groups": worker_pydvl_groups,
}


# --- orchestration (project venv) -------------------------------------------------------------


class LoadSampler:
    """The 1-minute load average every 15 s, in a background thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._t0, os.getloadavg()[0]))
            self._stop.wait(15)

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def ensure_pydvl_env(log) -> dict:
    """Create benchmarks/.pydvl-env if missing and sync it to the requirements (idempotent)."""
    started = time.perf_counter()
    created = False
    if not PYDVL_PYTHON.exists():
        subprocess.run(["uv", "venv", str(PYDVL_ENV), "--python", "3.11", "-q"], check=True)
        created = True
    install = ["uv", "pip", "install", "-q", "--python", str(PYDVL_PYTHON)]
    subprocess.run([*install, "-r", str(PYDVL_REQUIREMENTS)], check=True)
    seconds = time.perf_counter() - started
    log(f"pyDVL venv {'created' if created else 'checked'} in {seconds:.1f} s")
    digest = hashlib.sha256(PYDVL_REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return {"created": created, "requirements_sha256": digest}


def run_worker(kind: str, folder: Path, timeout: float, log) -> dict:
    python = str(PYDVL_PYTHON) if kind.startswith("pydvl") else sys.executable
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind, "--dir", str(folder)]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(folder / f"{kind}.stderr", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"{kind}: timed out after {timeout:.0f} s, stopping its process group")
            os.killpg(proc.pid, 15)
            proc.wait()
    if proc.returncode != 0 or not (folder / f"{kind}.json").exists():
        tail = (folder / f"{kind}.stderr").read_text()[-3000:]
        raise RuntimeError(f"worker {kind} failed (exit {proc.returncode}):\n{tail}")
    out = json.loads((folder / f"{kind}.json").read_text())
    out["process_wall_s"] = time.perf_counter() - started
    out["load_at_start"] = load_before
    out["load_at_end"] = os.getloadavg()[0]
    return out


def save_arrays(folder: Path, **arrays: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)


def part_knn(sizes: list[int], tmp: Path, log, ties: bool = False) -> list[dict]:
    """ties: round the standardized features to integers, so that many distances tie."""
    _project_path()
    from assets.knn_shapley import standardize

    rows = []
    for n in sizes:
        folder = tmp / f"knn_{n}{'_ties' if ties else ''}"
        x, y, xv, yv = knn_data(n, seed=0)
        xs, xvs = standardize(x, xv)
        if ties:
            xs, xvs = np.round(xs), np.round(xvs)
        save_arrays(folder, x=xs, y=y, xv=xvs, yv=yv)
        ours = run_worker("ours-knn", folder, 1800, log)
        log(f"knn N={n}: ours {ours['wall_s']:.2f} s")
        theirs = run_worker("pydvl-knn", folder, 3600, log)
        log(f"knn N={n}: pyDVL {theirs['wall_s']:.2f} s")
        a, b = np.load(folder / "ours_values.npy"), np.load(folder / "pydvl_values.npy")
        diff = np.abs(a - b)
        rows.append(
            {
                "n": n,
                "rounded_features": ties,
                "ours": ours,
                "pydvl": theirs,
                "max_abs_diff": float(diff.max()),
                "points_differing_over_1e-12": int(np.sum(diff > 1e-12)),
                "max_abs_value": float(np.abs(a).max()),
                "sum_ours": float(a.sum()),
                "sum_pydvl": float(b.sum()),
                "ties": knn_tie_report(xs, y, xvs, yv, a, b),
            }
        )
    return rows


def knn_tie_report(x, y, xv, yv, ours, theirs) -> dict:
    """Where values differ: do exactly tied (or ULP-close) distances explain it?"""
    from assets.knn_shapley import knn_shapley

    out: dict = {}
    diff = np.abs(ours - theirs)
    if diff.max() <= 1e-12:
        return {"differing_points": 0}
    worst = np.argsort(diff)[::-1][:5]
    out["worst_points"] = [int(i) for i in worst]
    # per test point: recompute ours and compare with exact (x - x_t)² distances
    per_test, mixed_ties = [], 0
    for t in range(len(xv)):
        direct = np.sum((x - xv[t]) ** 2, axis=1)
        ranked = np.argsort(direct, kind="stable")
        same = direct[ranked][1:] == direct[ranked][:-1]
        mixed_ties += int(np.any(same & (y[ranked][1:] != y[ranked][:-1])))
        expanded = np.sum(xv[t] ** 2) - 2.0 * x @ xv[t] + np.sum(x**2, axis=1)
        a, b = np.argsort(expanded, kind="stable"), np.argsort(direct, kind="stable")
        if not np.array_equal(a, b):
            first = int(np.flatnonzero(a != b)[0])
            per_test.append(
                {
                    "test": t,
                    "first_rank_differing": first,
                    "gap_direct": float(abs(direct[a[first]] - direct[b[first]])),
                    "labels_differ": bool(y[a[first]] != y[b[first]]),
                }
            )
    out["tests_with_equidistant_points_of_different_labels"] = mixed_ties
    out["tests_whose_order_differs_expanded_vs_direct"] = len(per_test)
    out["examples"] = per_test[:5]
    again = knn_shapley(x, y, xv, yv, k=KNN_K)
    out["ours_rerun_identical"] = bool(np.array_equal(again, ours))
    return out


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def auroc_bad(values, bad) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(bad, dtype=int), -np.asarray(values)))


def compare_utilities(ours: dict, theirs: dict) -> dict:
    common = set(ours) & set(theirs)
    diffs = [abs(ours[m] - theirs[m]) for m in common]
    return {
        "common_coalitions": len(common),
        "max_abs_diff": max(diffs) if diffs else None,
        "equal": int(sum(d == 0 for d in diffs)),
    }


def at_budget(snapshots: list[dict], axis: str, budget: float) -> dict | None:
    """The last snapshot whose `axis` count is within the budget."""
    fitting = [s for s in snapshots if s[axis] <= budget]
    return max(fitting, key=lambda s: s[axis]) if fitting else None


def group_configs(g: int, seeds: list[int], budget: int) -> tuple[dict, dict]:
    _project_path()
    from assets.datanets import parse_spec

    spec_json = synthetic_spec_json()
    policy = parse_spec(spec_json).valuation
    # from SVARM's start (g + 2 utilities), so that its curve is measured where pyDVL's
    # smallest budgets are matched (a curve starting later clamps the matched fits there)
    grid = sorted({round(v) for v in np.geomspace(g + 2, budget, 28)})
    ours = {
        "spec_json": spec_json,
        "seeds": seeds,
        "budgets": grid,
        "truncation": policy.truncation,
        "exact": g <= 12,
        "svarm": {"allocation": "neyman"},
    }
    theirs = {"seeds": seeds, "budget": budget, "rtol": 0.01, "burn_in_fraction": 0.4}
    return ours, theirs


def part_groups(
    g: int, seeds: list[int], budget: int, n_rows: int, tmp: Path, log, data_seed: int | None
) -> dict:
    """Contributor Shapley at G players; the data come from seed `data_seed` (default G), so
    another seed gives a held-out game for settings chosen on the default one."""
    folder = tmp / f"groups_{g}"
    data_seed = g if data_seed is None else data_seed
    x, y, player, xv, yv, bad = group_data(n_rows, g, GROUP_VAL, seed=data_seed)
    save_arrays(folder, x=x, y=y, player=player, xv=xv, yv=yv)
    ours_config, theirs_config = group_configs(g, seeds, budget)
    (folder / "config.json").write_text(json.dumps(ours_config))
    ours = run_worker("ours-groups", folder, 3600, log)
    log(f"G={g}: ours done in {ours['process_wall_s']:.0f} s")
    theirs_config.update(
        task="binary",
        metric="roc_auc",
        n_classes=2,
        params=ours["params"],
        num_boost_round=ours["num_boost_round"],
        u_empty=ours["u_empty"],
    )
    (folder / "config.json").write_text(json.dumps(theirs_config))
    theirs = run_worker("pydvl-groups", folder, 3600, log)
    log(f"G={g}: pyDVL done in {theirs['process_wall_s']:.0f} s")
    return {
        "g": g,
        "data_seed": data_seed,
        "rows": n_rows,
        "validation_rows": GROUP_VAL,
        "bad": bad.tolist(),
        "group_sizes": np.bincount(player).tolist(),
        "svarm": ours.pop("svarm"),
        "ours": ours,
        "pydvl": theirs,
        "utility_check": compare_utilities(ours["utilities"], theirs["utilities"]),
    }


def demo_lake_rows(seed: int, tmp: Path):
    """(spec, valued rows, validation) per demo Datanet, through prepare_demo + ingestion."""
    _project_path()
    from assets.datanets import load_spec
    from assets.demo_data import DEMO_DATANETS
    from assets.ingest import empty_tables, ingest_datanet
    from assets.layout import inbox_dir, registrations, spec_path
    from assets.receipts import receipted_submissions
    from assets.validation import validation_set
    from ledger.lake import Lake
    from openledger_pipelines.demo import prepare_demo

    root = tmp / f"demo_lake_{seed}"
    prepare_demo(root, seed)
    out = {}
    for name in DEMO_DATANETS:
        spec = load_spec(spec_path(root, name))
        registered = {r.contributor: r.public_key for r in registrations(root, name)[0]}
        submissions, _ = receipted_submissions(Lake(root), inbox_dir(root, name), name)
        ingested = ingest_datanet(spec, submissions, registered, empty_tables(spec))
        validation = validation_set(spec, spec_path(root, name).parent)
        out[name] = (spec, ingested.contributions, validation)
    return out


def part_demo(seeds: list[int], mc_seeds: list[int], budgets: list[int], tmp: Path, log) -> list:
    _project_path()
    from assets.attribution import build_utility
    from assets.training import feature_matrix, n_classes

    rows_out = []
    for seed in seeds:
        for name, (spec, rows, validation) in demo_lake_rows(seed, tmp).items():
            players = sorted(set(rows["contributor"]))
            utility = build_utility(spec, rows, validation, players)
            config = {
                "seeds": mc_seeds,
                "budgets": budgets,
                "truncation": spec.valuation.truncation,
                "exact": True,
            }
            fit_log: list = []
            ours = ours_group_runs(utility, players, config, fit_log)
            folder = tmp / f"demo_{seed}_{name}"
            save_arrays(
                folder,
                x=feature_matrix(spec, rows),
                y=utility.y,
                player=utility.player_of_row,
                xv=utility.x_val,
                yv=utility.y_val,
            )
            (folder / "config.json").write_text(
                json.dumps(
                    {
                        "seeds": mc_seeds,
                        "budget": max(budgets),
                        "rtol": 0.01,
                        "burn_in_fraction": 0.4,
                        "task": spec.task,
                        "metric": spec.metric,
                        "n_classes": n_classes(spec),
                        "params": utility.params,
                        "num_boost_round": utility.num_boost_round,
                        "u_empty": utility(0),
                    }
                )
            )
            theirs = run_worker("pydvl-groups", folder, 1800, log)
            utilities = {format(m, "x"): v for m, v in utility.cache.items()}
            bad = [p in DEMO_BAD for p in players]
            rows_out.append(
                {
                    "seed": seed,
                    "datanet": name,
                    "players": players,
                    "rows_per_player": [int((rows["contributor"] == p).sum()) for p in players],
                    "bad": bad,
                    "exact": ours["exact"]["values"],
                    "exact_auroc": auroc_bad(ours["exact"]["values"], bad),
                    "ours": ours["runs"],
                    "pydvl": theirs["runs"],
                    "utility_check": compare_utilities(utilities, theirs["utilities"]),
                }
            )
            log(f"demo seed {seed} {name}: exact AUROC {rows_out[-1]['exact_auroc']:.2f}")
    return rows_out


def part_scale(args, tmp: Path, log) -> dict:
    folder = tmp / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    _project_path()
    from assets.datanets import parse_spec

    policy = parse_spec(synthetic_spec_json()).valuation
    config = {
        "rows": args.scale_rows,
        "players": args.scale_players,
        "data_seed": args.scale_data_seed,
        "minutes": args.scale_minutes,
        "workers": 2,
        "half_width": args.scale_half_width,
        "truncation": (
            policy.truncation if args.scale_truncation is None else args.scale_truncation
        ),
        "pairs_per_batch": 1,
        "exact_first": args.scale_exact_first,
        "method": args.scale_method,
        "sets_per_batch": policy.sets_per_batch,
        "position_model": not args.scale_no_position_model,
        "record_utilities": args.scale_record_utilities is not None,
    }
    (folder / "config.json").write_text(json.dumps(config))
    timeout = args.scale_minutes * 60 + args.scale_grace_minutes * 60
    try:
        out = run_worker("ours-scale", folder, timeout, log)
    except RuntimeError as exc:  # killed at the hard limit: keep what the progress log has
        log(str(exc)[:500])
        progress = folder / "progress.jsonl"
        lines = progress.read_text().splitlines() if progress.exists() else []
        out = {"killed": True, "progress": [json.loads(line) for line in lines]}
    out["config"] = config
    if args.scale_record_utilities is not None:  # one file: "hex value" per coalition
        lines = sorted({line for f in folder.glob("utilities-*.txt") for line in f.open()})
        args.scale_record_utilities.write_text("".join(lines))
        log(f"{len(lines)} utilities recorded in {args.scale_record_utilities}")
    return out


# --- summary ------------------------------------------------------------------------------------


def summarize(doc: dict) -> str:
    lines: list[str] = []
    add = lines.append
    add(f"load average (1 min) during the run: {doc.get('load_summary')}")
    for row in doc.get("knn", []) + doc.get("knn_ties", []):
        o, p = row["ours"], row["pydvl"]
        add(
            f"KNN N={row['n']}{' (features rounded: ties)' if row.get('rounded_features') else ''}"
            f": ours {o['wall_s']:.2f} s ({o['cpu_s']:.2f} CPU-s), pyDVL "
            f"{p['wall_s']:.2f} s ({p['cpu_s']:.2f} CPU-s), ratio {p['wall_s'] / o['wall_s']:.1f}× "
            f"wall, {p['cpu_s'] / o['cpu_s']:.1f}× CPU; max |Δ| {row['max_abs_diff']:.2e} "
            f"({row['points_differing_over_1e-12']} points > 1e-12); peak RSS ours "
            f"{o['peak_rss_mb']:.0f} MB, pyDVL {p['peak_rss_mb']:.0f} MB"
        )
    for key in ("g10", "g100"):
        if key in doc:
            lines += summarize_groups(doc[key])
    if "demo" in doc:
        lines += summarize_demo(doc["demo"])
    if "scale" in doc:
        lines += summarize_scale(doc["scale"])
    return "\n".join(lines)


def fit_stats(fit_log: list) -> str:
    if not fit_log:
        return "no fits"
    arr = np.asarray([entry[:3] for entry in fit_log], dtype=float)
    return (
        f"{len(arr)} fits, mean {arr[:, 1].mean() * 1000:.1f} ms wall / "
        f"{arr[:, 2].mean() * 1000:.1f} ms CPU per fit (median {np.median(arr[:, 1]) * 1000:.1f}"
        f" ms), mean rows {arr[:, 0].mean():.0f}"
    )


def paired_fit_times(ours_log: list, theirs_log: list) -> dict | None:
    """Per-fit cost on the same coalitions: ours ÷ pyDVL's wall and CPU time per coalition
    trained by both (the logs carry each fit's coalition), so that coalition sizes, which
    differ between estimators, do not enter the comparison."""
    ours = {e[3]: e for e in ours_log if len(e) > 3}
    theirs = {e[3]: e for e in theirs_log if len(e) > 3}
    common = sorted(ours.keys() & theirs.keys())
    if not common:
        return None
    a = np.asarray([ours[k][:3] for k in common], dtype=float)
    b = np.asarray([theirs[k][:3] for k in common], dtype=float)
    return {
        "coalitions": len(common),
        "mean_rows": float(a[:, 0].mean()),
        "ours_ms_wall": float(a[:, 1].mean() * 1000),
        "pydvl_ms_wall": float(b[:, 1].mean() * 1000),
        "ours_ms_cpu": float(a[:, 2].mean() * 1000),
        "pydvl_ms_cpu": float(b[:, 2].mean() * 1000),
        "median_ratio_wall": float(np.median(a[:, 1] / b[:, 1])),
        "median_ratio_cpu": float(np.median(a[:, 2] / b[:, 2])),
        "share_ours_faster_cpu": float(np.mean(a[:, 2] < b[:, 2])),
    }


def methods(block: dict) -> list[str]:
    """ "ours" is permutation_shapley, "svarm" svarm_shapley (when the run had it)."""
    return [m for m in ("ours", "svarm", "pydvl") if m in block]


def group_curves(block: dict, axis: str, grid: list[int]) -> dict:
    """Per method and budget: mean over seeds of RMSE/max error vs exact, or Spearman."""
    g = block["g"]
    exact = np.asarray(block["ours"]["exact"]["values"]) if "exact" in block["ours"] else None
    out = {}
    for method in methods(block):
        per_budget = []
        for budget in grid:
            vals, xs = [], []
            for run in block[method]["runs"]:
                snap = at_budget(run["snapshots"], axis, budget)
                if snap is not None:
                    vals.append(np.asarray(snap["values"]))
                    xs.append(snap[axis])
            entry: dict = {"budget": budget, "seeds": len(vals)}
            if len(vals) == len(block[method]["runs"]) and vals:
                entry["mean_x"] = float(np.mean(xs))
                if exact is not None:
                    errs = [v - exact for v in vals]
                    entry["rmse"] = float(np.mean([np.sqrt(np.mean(e**2)) for e in errs]))
                    entry["max_err"] = float(np.mean([np.max(np.abs(e)) for e in errs]))
                    entry["spearman_exact"] = float(np.mean([spearman(v, exact) for v in vals]))
                if len(vals) > 1:
                    pairs = [
                        spearman(vals[i], vals[j])
                        for i in range(len(vals))
                        for j in range(i + 1, len(vals))
                    ]
                    entry["spearman_seeds"] = float(np.mean(pairs))
                entry["bad_auroc"] = float(np.mean([auroc_bad(v, block["bad"]) for v in vals]))
            per_budget.append(entry)
        out[method] = per_budget
    out["g"] = g
    return out


def summarize_groups(block: dict) -> list[str]:
    g = block["g"]
    lines = [f"--- contributor Shapley, G={g} ---"]
    if "exact" in block["ours"]:
        ex = block["ours"]["exact"]
        lines.append(
            f"exact: {ex['fits']} fits in {ex['wall_s']:.1f} s, U(all)-U(∅) "
            f"{ex['total_utility']:.4f}, values {np.round(ex['values'], 4).tolist()}"
        )
    lines.append(f"utilities compared: {block['utility_check']}")
    for method in methods(block):
        lines.append(f"{method}: {fit_stats(block[method]['fit_log'])}")
    ours_logs = block["ours"]["fit_log"] + block.get("svarm", {}).get("fit_log", [])
    paired = paired_fit_times(ours_logs, block["pydvl"]["fit_log"])
    if paired:
        lines.append(
            f"same coalitions ({paired['coalitions']}, mean {paired['mean_rows']:.0f} rows): "
            f"ours {paired['ours_ms_wall']:.1f} ms wall / {paired['ours_ms_cpu']:.1f} ms CPU, "
            f"pyDVL {paired['pydvl_ms_wall']:.1f} / {paired['pydvl_ms_cpu']:.1f}; median ratio "
            f"ours/pyDVL {paired['median_ratio_wall']:.3f} wall, {paired['median_ratio_cpu']:.3f}"
            f" CPU; ours faster on {paired['share_ours_faster_cpu']:.0%} (CPU)"
        )
    if "svarm" in block:
        gaps = [abs(s["efficiency_gap"]) for r in block["svarm"]["runs"] for s in r["snapshots"]]
        lines.append(
            f"svarm: options {block['svarm']['options']}, max |Σφ − U(N)+U(∅)| {max(gaps):.1e}"
        )
        if "exact" in block["ours"]:
            lines += svarm_coverage(block)
    for axis in ("fits", "calls"):
        grid = budget_grid(block, axis)
        curves = group_curves(block, axis, grid)
        lines.append(f"by {axis}:")
        for k, budget in enumerate(grid):
            cells = [f"{m} {fmt_entry(curves[m][k])}" for m in methods(block)]
            lines.append(f"  {budget:>5}  " + "  |  ".join(cells))
        if "exact" in block["ours"]:
            lines += efficiency(block, axis)
    return lines


def svarm_coverage(block: dict) -> list[str]:
    """How often |svarm − exact| ≤ 1.96·SE, per budget band (players × seeds)."""
    exact = np.asarray(block["ours"]["exact"]["values"])
    bands = [(0, 50), (50, 100), (100, 200), (200, 400), (400, 1 << 30)]
    lines = ["svarm 1.96·SE interval coverage of exact, by fits:"]
    for low, high in bands:
        hits = total = 0
        for run in block["svarm"]["runs"]:
            for snap in run["snapshots"]:
                if low <= snap["fits"] < high:
                    err = np.abs(np.asarray(snap["values"]) - exact)
                    hits += int(np.sum(err <= 1.96 * np.asarray(snap["std_errors"])))
                    total += err.size
        if total:
            lines.append(f"  {low}–{high} fits: {hits / total:.3f} of {total}")
    return lines


def efficiency(block: dict, axis: str) -> list[str]:
    """How many fits (or calls) ours needs for pyDVL's error, on a fine budget grid.

    Two readings: (1) for each pyDVL budget b, the smallest budget at which ours' mean RMSE
    is at most pyDVL's at b; (2) Monte Carlo error falls as c/√budget, so fitting c per
    method (budgets ≥ 4·G, where every seed has an estimate) gives the budget ratio for
    equal error, (c_pyDVL / c_ours)².
    """
    top = max(s[axis] for m in methods(block) for r in block[m]["runs"] for s in r["snapshots"])
    grid = sorted({int(v) for v in np.geomspace(block["g"], top, 60)})
    curves = group_curves(block, axis, grid)
    theirs = [(e["budget"], e["rmse"]) for e in curves["pydvl"] if "rmse" in e]
    their_top = max(s[axis] for r in block["pydvl"]["runs"] for s in r["snapshots"])
    lines = []
    for method in (m for m in methods(block) if m != "pydvl"):
        ours = [(e["budget"], e["rmse"]) for e in curves[method] if "rmse" in e]
        lines.append(f"  efficiency by {axis}, {method} against pyDVL:")
        for budget, err in theirs[:: max(1, len(theirs) // 8)] + theirs[-1:]:
            match = next((b for b, e in ours if e <= err), None)
            ratio = f"{budget / match:.2f}×" if match else "not reached"
            lines.append(
                f"    pyDVL {budget} → RMSE {err:.4f}; {method} reaches it at {match} ({ratio})"
            )
        # (a) every budget ≥ 4·G, as before; (b) only budgets up to pyDVL's largest, because
        # near 2^G distinct fits an estimator that never repeats a coalition becomes exact
        # and its error falls much faster than 1/√fits, which would flatter the ratio
        for label, high in (("all budgets ≥ 4G", math.inf), ("4G..pyDVL's top", their_top)):
            consts = {}
            for name, pts in ((method, ours), ("pydvl", theirs)):
                usable = [(b, e) for b, e in pts if 4 * block["g"] <= b <= high]
                consts[name] = float(np.exp(np.mean([np.log(e * math.sqrt(b)) for b, e in usable])))
            ratio = (consts["pydvl"] / consts[method]) ** 2
            lines.append(
                f"    c/√{axis} fit ({label}): {method} c={consts[method]:.3f}, pyDVL "
                f"c={consts['pydvl']:.3f}, {axis} ratio for equal RMSE {ratio:.2f}×"
            )
        # (c) no model: per pyDVL budget in 4G..top, the budget at which this method's mean
        # RMSE (log-log interpolated between its measured budgets) first gets as low
        ratios = [r for _, r in matched_ratios(curves, method, 4 * block["g"], their_top)]
        if ratios:
            lines.append(
                f"    matched RMSE, interpolated, pyDVL budgets {4 * block['g']}..{their_top}: "
                f"{axis} ratio min {min(ratios):.2f}× median {float(np.median(ratios)):.2f}× "
                f"max {max(ratios):.2f}× ({len(ratios)} budgets)"
            )
    return lines


def matched_ratios(curves: dict, method: str, low: float, high: float) -> list[tuple[int, float]]:
    """(pyDVL budget, pyDVL budget / the method's matched budget) for pyDVL budgets in
    low..high, from `group_curves` output; budgets the method never matches are left out."""
    theirs = [(e["budget"], e["rmse"]) for e in curves["pydvl"] if "rmse" in e]
    own = [(e["mean_x"], e["rmse"]) for e in curves[method] if "rmse" in e]
    out = []
    for budget, err in theirs:
        if low <= budget <= high:
            reach = matched_budget(own, err)
            if reach is not None:
                out.append((budget, budget / reach))
    return out


def matched_budget(curve: list[tuple[float, float]], err: float) -> float | None:
    """The first budget at which a (budget, RMSE) curve reaches `err`, interpolating log RMSE
    linearly in log budget between measured points (None if it never does)."""
    points = sorted(set(curve))
    if not points or points[0][1] <= err:
        return points[0][0] if points else None
    for (x1, e1), (x2, e2) in itertools.pairwise(points):
        if e1 > err >= e2:
            t = (math.log(e1) - math.log(err)) / (math.log(e1) - math.log(e2))
            return math.exp(math.log(x1) + t * (math.log(x2) - math.log(x1)))
    return None


def budget_grid(block: dict, axis: str) -> list[int]:
    top = max(s[axis] for m in methods(block) for r in block[m]["runs"] for s in r["snapshots"])
    return sorted({int(v) for v in np.geomspace(block["g"], top, 12)})


def fmt_entry(e: dict) -> str:
    if "mean_x" not in e:
        return "-"
    parts = [f"x={e['mean_x']:.0f}"]
    for key in ("rmse", "max_err", "spearman_exact", "spearman_seeds", "bad_auroc"):
        if key in e:
            parts.append(f"{key}={e[key]:.4f}")
    return " ".join(parts)


def summarize_demo(rows: list[dict]) -> list[str]:
    lines = ["--- demo Datanets ---"]
    exact_aucs = [row["exact_auroc"] for row in rows]
    lines.append(
        f"exact AUROC of dave+frank: mean {np.mean(exact_aucs):.3f} over {len(rows)} "
        f"(seed, Datanet), min {min(exact_aucs):.2f}; per row {exact_aucs}"
    )
    budgets = sorted({s["budget"] for s in rows[0]["ours"][0]["snapshots"]})
    for axis in ("calls", "fits"):
        lines.append(f"aggregate by {axis} (mean over seeds × Datanets × MC seeds; n = runs):")
        for budget in budgets:
            cells = []
            for method in ("ours", "pydvl"):
                rhos, aucs, missing = [], [], 0
                for row in rows:
                    for run in row[method]:
                        snap = at_budget(run["snapshots"], axis, budget)
                        if snap is None:
                            missing += 1
                            continue
                        rhos.append(spearman(snap["values"], row["exact"]))
                        aucs.append(auroc_bad(snap["values"], row["bad"]))
                cells.append(
                    f"{method}: ρ {np.mean(rhos):.3f} (min {min(rhos):.2f}) AUROC "
                    f"{np.mean(aucs):.3f} n={len(rhos)} no-estimate={missing}"
                    if rhos
                    else f"{method}: no estimate"
                )
            lines.append(f"  {budget:>4}  " + "  |  ".join(cells))
    for row in rows:
        exact = np.asarray(row["exact"])
        parts = []
        for method in ("ours", "pydvl"):
            for budget in sorted({s["budget"] for s in row["ours"][0]["snapshots"]}):
                rhos, aucs = [], []
                for run in row[method]:
                    snap = at_budget(run["snapshots"], "calls", budget)
                    if snap is not None:
                        rhos.append(spearman(snap["values"], exact))
                        aucs.append(auroc_bad(snap["values"], row["bad"]))
                if rhos:
                    parts.append(
                        f"{method}@{budget}: ρ={np.mean(rhos):.2f} auc={np.mean(aucs):.2f}"
                    )
        lines.append(
            f"seed {row['seed']} {row['datanet']}: players {row['players']} rows "
            f"{row['rows_per_player']} exact {np.round(exact, 4).tolist()} exact AUROC "
            f"{row['exact_auroc']:.2f}; utilities {row['utility_check']}"
        )
        lines.append("   " + "; ".join(parts))
    return lines


def summarize_scale(block: dict) -> list[str]:
    lines = ["--- scale ---", f"config {block.get('config')}"]
    for record in block.get("progress", []):
        lines.append(f"  {record}")
    keys = (
        "build_s",
        "wall_s",
        "pairs",
        "evaluations",
        "converged",
        "max_half_width",
        "median_half_width",
        "players_with_zero_se",
        "bad_auroc",
        "peak_tree_rss_mb",
        "peak_processes",
        "self_maxrss_mb",
        "children_maxrss_mb",
        "total_utility",
        "sum_values",
        "killed",
    )
    lines.append(str({k: block[k] for k in keys if k in block}))
    progress = [r for r in block.get("progress", []) if r["pairs"] >= 4]
    if len(progress) >= 3:
        pairs = np.array([r["pairs"] for r in progress], dtype=float)
        hw = np.array([r["max_half_width"] for r in progress])
        slope, _ = np.polyfit(np.log(pairs), np.log(hw), 1)
        last = block["progress"][-1]
        per_pair = last["t_s"] / last["pairs"]
        per_eval = last["evaluations"] / last["pairs"]
        lines.append(
            f"max half-width ∝ pairs^{slope:.2f} (fit over pairs ≥ 4); {per_pair:.1f} s and "
            f"{per_eval:.1f} utility evaluations per pair"
        )
        target = block["config"]["half_width"]
        if last["max_half_width"] > target:
            for exponent in (slope, -0.5):
                need = last["pairs"] * (last["max_half_width"] / target) ** (-1 / exponent)
                lines.append(
                    f"  extrapolated to half-width {target} with exponent {exponent:.2f}: "
                    f"{need:.0f} pairs, {need * per_pair / 60:.0f} min at this rate"
                )
    return lines


# --- main -----------------------------------------------------------------------------------


def machine() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "attribution.json")
    parser.add_argument("--resummarize", action="store_true")
    parser.add_argument("--parts", default="knn,knnties,g10,g100,demo,scale")
    parser.add_argument("--knn-sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--knn-tie-sizes", type=int, nargs="+", default=[2000])
    parser.add_argument("--group-rows", type=int, default=GROUP_ROWS)
    parser.add_argument(
        "--group-data-seed", type=int, default=None, help="data seed of the G parts (default G)"
    )
    parser.add_argument("--g10-seeds", type=int, default=5)
    parser.add_argument("--g10-budget", type=int, default=2000, help="calls per seed")
    parser.add_argument("--g100-seeds", type=int, default=3)
    parser.add_argument("--g100-budget", type=int, default=1000, help="calls per seed")
    parser.add_argument("--demo-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--demo-mc-seeds", type=int, default=3)
    parser.add_argument("--demo-budgets", type=int, nargs="+", default=[14, 28, 56, 112, 224])
    parser.add_argument("--scale-rows", type=int, default=1_000_000)
    parser.add_argument("--scale-players", type=int, default=1000)
    parser.add_argument("--scale-minutes", type=float, default=10.0)
    parser.add_argument("--scale-data-seed", type=int, default=1, help="2+: a held-out game")
    parser.add_argument("--scale-grace-minutes", type=float, default=10.0)
    parser.add_argument("--scale-half-width", type=float, default=0.01)
    parser.add_argument("--scale-method", choices=["permutation", "svarm"], default="permutation")
    parser.add_argument(
        "--scale-exact-first",
        action="store_true",
        help="value every contributor alone first; first position as a control variate",
    )
    parser.add_argument(
        "--scale-no-position-model",
        action="store_true",
        help="with --scale-exact-first: correct the first position only (no PositionModel)",
    )
    parser.add_argument(
        "--scale-truncation",
        type=float,
        default=None,
        help="the Datanet policy's valuation.truncation for the scale game (default: the "
        "policy default)",
    )
    parser.add_argument(
        "--scale-record-utilities",
        type=Path,
        default=None,
        help="write every scale utility (hex bitmask, value) here, for replay_scale.py",
    )
    args = dry_run.parse_args(parser)

    if args.worker:
        out = WORKERS[args.worker](args.dir)
        (args.dir / f"{args.worker}.json").write_text(json.dumps(out))
        return
    if args.resummarize:
        doc = json.loads(args.out.read_text())
        print(summarize(doc))
        return

    args.out.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.out.with_suffix(".log")
    t_start = time.perf_counter()

    def log(message: str) -> None:
        line = f"[{time.perf_counter() - t_start:7.1f} s, load {os.getloadavg()[0]:.2f}] {message}"
        print(line, flush=True)
        with log_path.open("a") as handle:
            handle.write(line + "\n")

    parts = set(args.parts.split(","))
    doc: dict = {"machine": machine(), "argv": sys.argv, "parts": sorted(parts)}
    doc["pydvl_env"] = ensure_pydvl_env(log)
    sampler = LoadSampler()
    with tempfile.TemporaryDirectory(prefix="attribution_bench_") as name:
        tmp = Path(name)
        if "knn" in parts:
            doc["knn"] = part_knn(args.knn_sizes, tmp, log)
        if "knnties" in parts:
            doc["knn_ties"] = part_knn(args.knn_tie_sizes, tmp, log, ties=True)
        if "g10" in parts:
            seeds = list(range(args.g10_seeds))
            doc["g10"] = part_groups(
                10, seeds, args.g10_budget, args.group_rows, tmp, log, args.group_data_seed
            )
            args.out.write_text(json.dumps(doc))  # partial results survive a later failure
        if "g100" in parts:
            seeds = list(range(args.g100_seeds))
            doc["g100"] = part_groups(
                100, seeds, args.g100_budget, args.group_rows, tmp, log, args.group_data_seed
            )
        if "demo" in parts:
            budgets = args.demo_budgets
            doc["demo"] = part_demo(
                args.demo_seeds, list(range(args.demo_mc_seeds)), budgets, tmp, log
            )
        if "scale" in parts:
            doc["scale"] = part_scale(args, tmp, log)
    loads = [v for _, v in sampler.stop()]
    doc["load_samples"] = loads
    doc["load_summary"] = (
        f"min {min(loads):.2f} median {float(np.median(loads)):.2f} max {max(loads):.2f} "
        f"({len(loads)} samples)"
    )
    doc["total_s"] = time.perf_counter() - t_start
    args.out.write_text(json.dumps(doc))
    summary = summarize(doc)
    args.out.with_suffix(".md").write_text(summary + "\n")
    print(summary)
    log(f"done in {doc['total_s']:.0f} s")


if __name__ == "__main__":
    main()
