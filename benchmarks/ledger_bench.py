"""Benchmark of the ledger's table commitment against baselines measured in the same run.

    uv run python benchmarks/ledger_bench.py --rows 1000000 10000000 --repeat 3 \
        --out benchmarks/out/ledger.json

What is measured, on a deterministic (seeded numpy) 5-column table built in memory
(int64 key `id` in shuffled order, float64, ~40-byte string, timestamp[us, UTC], bool):

* ours, end to end: `ledger.commitment.commit_table(table, key=["id"])` (canonical sort,
  then blocks of 2^17 rows gathered, encoded, hashed and folded in a thread pool of
  `ledger.hashing.hash_threads()` threads) on both cores (default) and on one core (a child
  process with OPENLEDGER_HASH_THREADS / NUMBA / OMP / OPENBLAS / MKL / RAYON / NUMEXPR = 1,
  pinned with `taskset -c 0`);
* the stage split, on one core and one block after another, as `commit_table` does it:
  `ledger.commitment.canonical_order`, then per block `Table.take`,
  `ledger.encoding.leaf_messages`, `ledger.hashing.sha256_binary(threads=1)` and
  `ledger.hashing.perfect_subtrees` folded by `ledger.hashing.TreeBuilder.add_subtree`;
* the tree's own memory: `TreeBuilder` fed with synthetic leaf hashes batch by batch;
* merkletools 1.0.3 over the same rows' canonical bytes (`ledger.encoding.encode_rows`),
  timing leaf hashing + make_tree only;
* floors, over the same canonical bytes: one hashlib.sha256 pass over their concatenation,
  a per-row hashlib leaf-hash loop, and a naive pure-Python RFC 9162 tree;
* a ledgered write into a temporary `ledger.lake.Lake` and `ledger.verify.verify_entry_data`
  of the resulting entry; a bare `deltalake.write_deltalake` of the table for context;
* once per run, numba's compile cost: a child with an empty NUMBA_CACHE_DIR (cold compile)
  and a child with the on-disk cache under ledger/__pycache__ (cache load) each time the
  first `commit_table` of WARM_ROWS rows and the two calls after it.

Every measured variant runs in its own child process (this file with `--worker`). The child
first warms up: one `commit_table` of WARM_ROWS rows (more than one 2^17 block, so every
numba kernel signature that the step uses is compiled or loaded from the cache), and the
child records that no numba dispatcher of the `ledger` package gained a signature during
the timed step. It then builds the table, releases freed memory back to the OS, resets the
kernel's peak-RSS mark (/proc/self/clear_refs = 5) and reads
`resource.getrusage(RUSAGE_SELF).ru_maxrss` (and VmHWM) after the step: Arrow and numpy
allocate natively, so RSS is the honest measure of the step's extra peak memory.

Before anything else the run checks that ours gives the same root as the naive tree (itself
checked against the recursive RFC 9162 definition), and every naive-tree run re-checks it at
the measured size; all variants that compute our root must agree across processes and
thread counts.

Only public functions of the `ledger` package are used, so internals can change freely.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
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
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import dry_run  # noqa: E402

KEY = ["id"]
BATCH = 1 << 17  # rows per batch in the stage split (what ledger.commitment uses)
# Warm-up size: more than two 2^17-row blocks plus a partial one, so every kernel signature
# (and the partial-block path) is compiled, or loaded from numba's cache, before timing.
WARM_ROWS = 300_000
THREAD_VARS = (
    "OPENLEDGER_HASH_THREADS",
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "RAYON_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
# Variants run on one core (taskset -c 0, every thread variable = 1).
SINGLE_CORE = ("ours_1core", "stages")
# Pure-Python baselines that may be skipped at large sizes when they would take too long.
SLOW_BASELINES = ("merkletools", "floor_leaf_loop", "naive_tree")
VARIANTS = (
    "ours",
    "ours_1core",
    "stages",
    "tree_stream",
    "merkletools",
    "floor_sha256_concat",
    "floor_leaf_loop",
    "naive_tree",
    "lake",
    "delta_write",
)
LABELS = {
    "ours": "ours, commit_table end to end, 2 cores",
    "ours_1core": "ours, commit_table end to end, 1 core",
    "stages": "ours, stage split (1 core, serial)",
    "tree_stream": "TreeBuilder alone, synthetic leaf hashes",
    "merkletools": "merkletools 1.0.3 (leaf hash + make_tree)",
    "floor_sha256_concat": "floor: one sha256 over all canonical bytes",
    "floor_leaf_loop": "floor: hashlib per-row leaf-hash loop",
    "naive_tree": "floor: naive pure-Python RFC 9162 tree",
    "lake": "Lake.write (Delta write + read back + commit), then verify_entry_data",
    "delta_write": "deltalake.write_deltalake alone",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# data and reference implementations (shared by parent and workers)
# --------------------------------------------------------------------------------------
def make_table(rows: int, seed: int):
    """The benchmark table: deterministic for (rows, seed), keys unique and shuffled."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    ids = rng.permutation(rows).astype(np.int64) * 3 + 1_000_003
    value = rng.standard_normal(rows)
    lengths = rng.integers(32, 49, size=rows, dtype=np.int32)  # 32..48 bytes, mean 40
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789 ", dtype=np.uint8)
    chars = alphabet[rng.integers(0, len(alphabet), size=int(offsets[-1]), dtype=np.uint8)]
    text = pa.Array.from_buffers(
        pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(chars)]
    )
    start_us = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
    micros = start_us + rng.integers(0, 365 * 86_400 * 10**6, size=rows, dtype=np.int64)
    ts = pa.array(micros, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    flag = rng.random(rows) < 0.5
    return pa.table(
        {
            "id": pa.array(ids),
            "value": pa.array(value),
            "text": text,
            "ts": ts,
            "flag": pa.array(flag),
        }
    )


def canonical_rows(table) -> list[bytes]:
    """Canonical row bytes in key order, ordered independently of ledger.commitment."""
    import numpy as np

    from ledger.encoding import encode_rows

    order = np.argsort(table.column("id").to_numpy(), kind="stable")  # ids are unique
    return encode_rows(table.take(order))


def naive_root(rows: list[bytes]) -> bytes:
    """RFC 9162 root, pure Python: hashlib leaf hashes, then level by level (odd node up)."""
    sha = hashlib.sha256
    level = [sha(b"\x00" + r).digest() for r in rows]
    if not level:
        return sha(b"").digest()
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def recursive_root(rows: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1 MTH, literally (for checking `naive_root` on small inputs)."""
    n = len(rows)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + rows[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + recursive_root(rows[:k]) + recursive_root(rows[k:])).digest()


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


def _ledger_sources() -> dict[str, str]:
    return {
        name: hashlib.sha256((ROOT / "ledger" / name).read_bytes()).hexdigest()[:12]
        for name in (
            "hashing.py",
            "sha256_simd.py",
            "encoding.py",
            "commitment.py",
            "lake.py",
            "verify.py",
        )
    }


def _release_memory() -> None:
    """Give freed memory back to the OS, so that a step cannot reuse memory kept by the
    allocators (after the warm-up, say) without it showing in its RSS."""
    gc.collect()
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:  # pragma: no cover - best effort
        pass
    libc = ctypes.util.find_library("c")
    if libc:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL(libc).malloc_trim(0)


def _numba_signatures() -> dict[str, int]:
    """Compiled signatures of every numba dispatcher in the loaded `ledger` modules."""
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # pragma: no cover - numba not installed
        return {}
    out = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("ledger.") and module is not None:
            for attr, value in vars(module).items():
                if isinstance(value, Dispatcher):
                    out[f"{name}.{attr}"] = len(value.signatures)
    return out


def _new_signatures(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}


def warm_up(seed: int) -> dict:
    """One commit_table of WARM_ROWS rows: imports, thread pools and numba kernels."""
    from ledger.commitment import commit_table

    table = make_table(WARM_ROWS, seed + 1)
    before = _numba_signatures()
    t0, c0 = time.perf_counter(), time.process_time()
    commit_table(table, key=KEY)
    return {
        "warmup_rows": WARM_ROWS,
        "warmup_seconds": time.perf_counter() - t0,
        "warmup_cpu_seconds": time.process_time() - c0,
        "warmup_new_signatures": _new_signatures(before, _numba_signatures()),
    }


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - t0, time.process_time() - c0


def _measure(fn) -> tuple[object, dict]:
    _release_memory()
    sigs = _numba_signatures()
    mem = PeakMemory()
    value, wall, cpu = _timed(fn)
    out = {"seconds": wall, "cpu_seconds": cpu, **mem.result()}
    # Must stay empty: a kernel compiled inside the timed step would be counted as work.
    out["compiled_during_step"] = _new_signatures(sigs, _numba_signatures())
    return value, out


def run_worker(variant: str, rows: int, seed: int) -> dict:
    import numpy as np
    import pyarrow as pa

    from ledger.commitment import commit_table
    from ledger.hashing import hash_threads

    warm = warm_up(seed)  # before the table is built, so its garbage is released first
    _release_memory()
    rss_before = _status_kb("VmRSS") or 0
    table = make_table(rows, seed)
    info: dict = {
        **warm,
        "variant": variant,
        "rows": rows,
        "table_nbytes_mb": table.nbytes / 2**20,
        "table_rss_mb": ((_status_kb("VmRSS") or 0) - rss_before) / 1024,
        "affinity_cpus": len(os.sched_getaffinity(0)),
        "loadavg_1min_at_start": os.getloadavg()[0],
        # Other people edit ledger/ while benchmarks run: record which code was measured.
        "ledger_sources_sha256": _ledger_sources(),
        "thread_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
        "hash_threads": hash_threads(),
        "arrow_cpu_count": pa.cpu_count(),
    }

    if variant in ("ours", "ours_1core"):
        result, m = _measure(lambda: commit_table(table, key=KEY))
        info.update(m, root=result.root, row_count=result.row_count)

    elif variant == "stages":
        from ledger.commitment import canonical_order
        from ledger.encoding import leaf_messages
        from ledger.hashing import TreeBuilder, perfect_subtrees, sha256_binary

        names = {
            "sort": "sort (canonical_order)",
            "gather": "gather (take of a block)",
            "encode": "encode (leaf_messages)",
            "hash": "leaf hashes (sha256_binary)",
            "tree": "tree (perfect_subtrees + TreeBuilder)",
        }
        wall = dict.fromkeys(names, 0.0)
        cpu = dict.fromkeys(names, 0.0)

        def step(name: str, fn):
            value, t, c = _timed(fn)
            wall[name] += t
            cpu[name] += c
            return value

        def split() -> tuple[bytes, int]:
            # What commit_table does for a unique key, one block after another in this
            # thread instead of in its pool.
            order = step("sort", lambda: canonical_order(table, KEY))
            builder = TreeBuilder(BATCH)
            message_bytes = 0
            for start in range(0, rows, BATCH):
                block = step("gather", lambda s=start: table.take(order.slice(s, BATCH)))
                messages = step("encode", lambda b=block: leaf_messages(b))
                message_bytes += messages.nbytes
                hashes = step("hash", lambda m=messages: sha256_binary(m, threads=1))
                step("tree", lambda h=hashes: fold(builder, h))
            return step("tree", builder.root), message_bytes

        def fold(builder, hashes) -> None:
            for count, sub in perfect_subtrees(hashes):
                builder.add_subtree(count, sub)

        (root, message_bytes), m = _measure(split)
        info.update(m)
        info["root"] = root.hex()
        info["stages"] = {names[k]: {"seconds": wall[k], "cpu_seconds": cpu[k]} for k in names}
        info["seconds"] = sum(wall.values())
        info["cpu_seconds"] = sum(cpu.values())
        info["wall_with_overhead"] = m["seconds"]
        info["message_bytes_mb"] = message_bytes / 2**20

    elif variant == "tree_stream":
        import tracemalloc

        from ledger.hashing import TreeBuilder

        del table  # not needed: leaf hashes are synthetic
        rng = np.random.default_rng(seed)
        TreeBuilder().add_leaf_hashes(rng.integers(0, 256, (BATCH, 32), dtype=np.uint8))
        _release_memory()

        def stream() -> tuple[bytes, float]:
            gen = np.random.default_rng(seed)
            builder = TreeBuilder()
            spent = 0.0
            for start in range(0, rows, BATCH):
                block = gen.integers(0, 256, (min(BATCH, rows - start), 32), dtype=np.uint8)
                t0 = time.perf_counter()
                builder.add_leaf_hashes(block)
                spent += time.perf_counter() - t0
            t0 = time.perf_counter()
            root = builder.root()
            return root, spent + time.perf_counter() - t0

        (root, tree_seconds), m = _measure(stream)
        info.update(m, root=root.hex(), seconds=tree_seconds, wall_with_generation=m["seconds"])
        _release_memory()
        tracemalloc.start()
        stream()
        info["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        info["leaf_hashes_if_kept_mb"] = rows * 32 / 2**20
        info["one_batch_of_leaf_hashes_mb"] = BATCH * 32 / 2**20

    elif variant in ("merkletools", "floor_sha256_concat", "floor_leaf_loop", "naive_tree"):
        rows_bytes, t_prep, _ = _timed(lambda: canonical_rows(table))
        info["prep_encode_seconds"] = t_prep
        info["canonical_bytes_mb"] = sum(map(len, rows_bytes)) / 2**20
        del table
        if variant == "merkletools":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sha3 is not working!" (pysha3 dropped)
                import merkletools
            # add_leaf(do_hash=True) calls str.encode("utf-8"): give it one character per
            # byte (latin-1); bytes >= 0x80 become two UTF-8 bytes, so it hashes slightly
            # more than the canonical bytes (same SHA-256 block count for these rows).
            texts = [r.decode("latin-1") for r in rows_bytes]
            info["merkletools_hashed_bytes_mb"] = (
                sum(len(t.encode("utf-8")) for t in texts[: min(rows, 100_000)])
                * (rows / min(rows, 100_000))
                / 2**20
            )
            del rows_bytes

            def run() -> str:
                mt = merkletools.MerkleTools(hash_type="sha256")
                mt.add_leaf(texts, do_hash=True)
                mt.make_tree()
                return mt.get_merkle_root()

            root, m = _measure(run)
            info.update(m, merkletools_root=root)
        elif variant == "floor_sha256_concat":
            blob = b"".join(rows_bytes)
            del rows_bytes
            digest, m = _measure(lambda: hashlib.sha256(blob).digest())
            info.update(m, digest=digest.hex())
        elif variant == "floor_leaf_loop":
            sha = hashlib.sha256
            leaves, m = _measure(lambda: [sha(b"\x00" + r).digest() for r in rows_bytes])
            info.update(m, leaves=len(leaves))
        else:
            root, m = _measure(lambda: naive_root(rows_bytes))
            info.update(m, naive_root=root.hex())

    elif variant == "lake":
        from ledger.lake import Lake
        from ledger.verify import verify_entry_data

        with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
            # warm the Delta round trip too (its read-back arrays feed the same kernels)
            warm_lake = Lake(Path(tmp) / "warm")
            c = warm_lake.write("warm", make_table(WARM_ROWS, seed + 1), key=KEY)
            assert verify_entry_data(warm_lake, c.entry) == []
            del c
            lake = Lake(Path(tmp) / "lake")
            committed, m_write = _measure(lambda: lake.write("bench", table, key=KEY))
            diffs, m_verify = _measure(lambda: verify_entry_data(lake, committed.entry))
            if diffs:
                raise AssertionError(f"verification of a fresh write failed: {diffs}")
            files = list((Path(lake.root) / "tables" / "bench").rglob("*.parquet"))
            info["delta_files"] = len(files)
            info["delta_mb"] = sum(f.stat().st_size for f in files) / 2**20
        info.update(
            root=committed.commitment.root,
            write=m_write,
            verify=m_verify,
            seconds=m_write["seconds"],
            cpu_seconds=m_write["cpu_seconds"],
            extra_peak_mb=m_write["extra_peak_mb"],
            verify_seconds=m_verify["seconds"],
            verify_cpu_seconds=m_verify["cpu_seconds"],
            compiled_during_step={
                **m_write["compiled_during_step"],
                **m_verify["compiled_during_step"],
            },
        )

    elif variant == "delta_write":
        from deltalake import write_deltalake

        with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
            write_deltalake(str(Path(tmp) / "warm"), make_table(4096, seed + 1), mode="overwrite")
            uri = str(Path(tmp) / "t")
            _, m = _measure(lambda: write_deltalake(uri, table, mode="overwrite"))
        info.update(m)

    else:
        raise SystemExit(f"unknown variant {variant!r}")
    return info


def run_compile(seed: int) -> dict:
    """Import time, then the first and the next calls of commit_table on WARM_ROWS rows.

    Run with an empty NUMBA_CACHE_DIR the first call includes compiling every kernel (cold
    compile); run with the on-disk cache it includes loading them (cache load).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    from ledger.commitment import commit_table

    info: dict = {
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "loadavg_1min_at_start": os.getloadavg()[0],
        "ledger_sources_sha256": _ledger_sources(),
        "import_seconds": time.perf_counter() - t0,
        "import_cpu_seconds": time.process_time() - c0,
    }
    table = make_table(WARM_ROWS, seed + 1)
    calls = []
    for _ in range(3):
        before = _numba_signatures()
        result, wall, cpu = _timed(lambda: commit_table(table, key=KEY))
        calls.append(
            {
                "seconds": wall,
                "cpu_seconds": cpu,
                "new_signatures": _new_signatures(before, _numba_signatures()),
            }
        )
    info["calls"] = calls
    info["root"] = result.root
    steady = min(calls[1:], key=lambda c: c["seconds"])
    info["first_call_extra_seconds"] = calls[0]["seconds"] - steady["seconds"]
    info["first_call_extra_cpu_seconds"] = calls[0]["cpu_seconds"] - steady["cpu_seconds"]
    try:
        from numba.core.dispatcher import Dispatcher

        hits = misses = 0
        for name, module in list(sys.modules.items()):
            if name.startswith("ledger.") and module is not None:
                for value in vars(module).values():
                    if isinstance(value, Dispatcher):
                        hits += sum(value.stats.cache_hits.values())
                        misses += sum(value.stats.cache_misses.values())
        info["numba_cache_hits"], info["numba_cache_misses"] = hits, misses
    except (ImportError, AttributeError):  # pragma: no cover - informational only
        pass
    return info


def run_check(rows: int, seed: int) -> dict:
    """Ours == naive tree (== recursive RFC 9162 MTH on small inputs); raises otherwise."""
    from ledger.commitment import commit_table

    small = [bytes([i % 256]) * (i % 7) + i.to_bytes(4, "big") for i in range(70)]
    for n in range(len(small) + 1):
        assert naive_root(small[:n]) == recursive_root(small[:n]), f"naive tree wrong at n={n}"
    checked = {}
    for n in (1, 2, 3, 5, 1000, rows):
        table = make_table(n, seed)
        ours = commit_table(table, key=KEY).root
        naive = naive_root(canonical_rows(table)).hex()
        if ours != naive:
            raise AssertionError(f"root mismatch at {n} rows: ours {ours}, naive {naive}")
        checked[n] = ours
    return {"rows": rows, "roots": {str(k): v for k, v in checked.items()}, "ok": True}


# --------------------------------------------------------------------------------------
# parent side: orchestration, summary
# --------------------------------------------------------------------------------------
def _child_env(single_core: bool, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS and k != "NUMBA_CACHE_DIR"}
    env["PYTHONWARNINGS"] = "ignore::UserWarning:merkletools"
    if single_core:
        env.update({k: "1" for k in THREAD_VARS})
    env.update(extra or {})
    return env


def spawn(args: list[str], single_core: bool, timeout: float, env: dict | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    if single_core and shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.run(
        cmd,
        env=_child_env(single_core, env),
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
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            mem_gb = int(fh.readline().split()[1]) / 2**20
    except OSError:
        pass
    versions = {}
    for pkg in ("numpy", "numba", "llvmlite", "pyarrow", "polars", "deltalake", "merkletools"):
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
        "taskset": shutil.which("taskset") is not None,
        "packages": versions,
    }


def _median(runs: list[dict], field: str = "seconds") -> float | None:
    values = [r[field] for r in runs if field in r]
    return statistics.median(values) if values else None


def summarize(rows: int, runs: dict[str, list[dict]], skipped: dict[str, str]) -> dict:
    s: dict = {"rows": rows, "variants": {}, "ratios": {}, "skipped": skipped}
    for name, rs in runs.items():
        if not rs:
            continue
        sec = _median(rs)
        cpu = _median(rs, "cpu_seconds")
        entry = {
            "runs": len(rs),
            "seconds_median": sec,
            "seconds_all": [r["seconds"] for r in rs],
            "rows_per_s": rows / sec if sec else None,
            "cpu_seconds_median": cpu,
            # CPU utilization (CPU seconds / wall seconds): ~1 for a single-threaded step that
            # had its core to itself, < 1 when it waited (I/O or a contended core).
            "cpu_utilization": cpu / sec if sec and cpu else None,
            # Rows per CPU-second: for single-threaded steps, the throughput an uncontended
            # core would give (robust to other processes sharing the machine).
            "rows_per_cpu_s": rows / cpu if cpu else None,
            # Best run: the least disturbed one on a shared machine.
            "seconds_min": min(r["seconds"] for r in rs),
            "rows_per_s_best": rows / min(r["seconds"] for r in rs),
            "rows_per_cpu_s_best": max(
                (rows / r["cpu_seconds"] for r in rs if r.get("cpu_seconds")), default=None
            ),
            "loadavg_at_start": [r.get("loadavg_1min_at_start") for r in rs],
            "extra_peak_mb_max": max(
                (r["extra_peak_mb"] for r in rs if "extra_peak_mb" in r), default=None
            ),
            "table_nbytes_mb": rs[0].get("table_nbytes_mb"),
            "table_rss_mb": rs[0].get("table_rss_mb"),
            "hash_threads": rs[0].get("hash_threads"),
            "warmup_seconds_median": _median(rs, "warmup_seconds"),
            # Must be 0: numba signatures compiled inside a timed step, over all runs.
            "compiled_during_timing": sum(
                sum(r.get("compiled_during_step", {}).values()) for r in rs
            ),
        }
        if name == "stages":
            entry["stages_seconds_median"] = {
                k: statistics.median(r["stages"][k]["seconds"] for r in rs) for k in rs[0]["stages"]
            }
            entry["stages_cpu_median"] = {
                k: statistics.median(r["stages"][k]["cpu_seconds"] for r in rs)
                for k in rs[0]["stages"]
            }
        if name == "lake":
            entry["verify_seconds_median"] = _median(rs, "verify_seconds")
            entry["write_extra_peak_mb_max"] = max(r["write"]["extra_peak_mb"] for r in rs)
            entry["verify_extra_peak_mb_max"] = max(r["verify"]["extra_peak_mb"] for r in rs)
            entry["verify_rows_per_s"] = rows / entry["verify_seconds_median"]
            entry["verify_cpu_seconds_median"] = _median(rs, "verify_cpu_seconds")
        if name == "tree_stream":
            entry["tracemalloc_peak_mb"] = max(r["tracemalloc_peak_mb"] for r in rs)
            entry["leaf_hashes_if_kept_mb"] = rs[0]["leaf_hashes_if_kept_mb"]
        s["variants"][name] = entry

    v = s["variants"]

    def rps(name: str) -> float | None:
        return v.get(name, {}).get("rows_per_s")

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    r = s["ratios"]
    r["ours_2core_over_1core"] = ratio(rps("ours"), rps("ours_1core"))

    def cps(name: str) -> float | None:
        return v.get(name, {}).get("rows_per_cpu_s")

    # Single-threaded comparisons in CPU time (robust to a contended core).
    r["ours_1core_over_merkletools_cpu_time"] = ratio(cps("ours_1core"), cps("merkletools"))
    r["ours_1core_over_naive_tree_cpu_time"] = ratio(cps("ours_1core"), cps("naive_tree"))
    r["ours_1core_over_floor_leaf_loop_cpu_time"] = ratio(cps("ours_1core"), cps("floor_leaf_loop"))
    r["ours_1core_over_floor_sha256_concat_cpu_time"] = ratio(
        cps("ours_1core"), cps("floor_sha256_concat")
    )
    for base in ("merkletools", "floor_leaf_loop", "naive_tree", "floor_sha256_concat"):
        r[f"ours_2core_over_{base}"] = ratio(rps("ours"), rps(base))
        r[f"ours_1core_over_{base}"] = ratio(rps("ours_1core"), rps(base))
    if "stages" in v:
        # The hashing half of ours alone (leaf hashes + tree), like the baselines, which
        # neither sort nor encode.
        cpu = v["stages"]["stages_cpu_median"]
        half = sum(c for k, c in cpu.items() if k.startswith(("leaf hashes", "tree")))
        for base in ("merkletools", "naive_tree", "floor_leaf_loop"):
            if v.get(base, {}).get("cpu_seconds_median"):
                r[f"hash_and_tree_over_{base}_cpu_time"] = v[base]["cpu_seconds_median"] / half
    if "lake" in v and "ours" in v:
        r["verify_over_commit_table"] = ratio(
            v["lake"]["verify_seconds_median"], v["ours"]["seconds_median"]
        )
        r["verify_over_commit_table_cpu_time"] = ratio(
            v["lake"]["verify_cpu_seconds_median"], v["ours"]["cpu_seconds_median"]
        )
        r["verify_over_lake_write"] = ratio(
            v["lake"]["verify_seconds_median"], v["lake"]["seconds_median"]
        )
    if "lake" in v and "delta_write" in v:
        r["lake_write_over_delta_write"] = ratio(
            v["lake"]["seconds_median"], v["delta_write"]["seconds_median"]
        )
    if "ours" in v:
        r["ours_2core_cpu_utilization"] = v["ours"]["cpu_utilization"]
    targets = {}
    if rps("ours_1core"):
        targets["1core_ge_1M_rows_per_s"] = rps("ours_1core") >= 1_000_000
        targets["1core_ge_1M_rows_per_cpu_s"] = cps("ours_1core") >= 1_000_000
    if rps("ours"):
        targets["2core_ge_1.6M_rows_per_s"] = rps("ours") >= 1_600_000
    if r.get("ours_1core_over_merkletools"):
        targets["faster_than_merkletools_on_1core"] = r["ours_1core_over_merkletools"] > 1
        targets["faster_than_merkletools_on_1core_cpu_time"] = (
            r["ours_1core_over_merkletools_cpu_time"] > 1
        )
    if r.get("verify_over_commit_table"):
        targets["verify_le_1.5x_commit"] = r["verify_over_commit_table"] <= 1.5
        targets["verify_le_1.5x_commit_cpu_time"] = r["verify_over_commit_table_cpu_time"] <= 1.5
    s["targets"] = targets
    return s


def check_roots(rows: int, runs: dict[str, list[dict]]) -> dict:
    roots = {}
    for name in ("ours", "ours_1core", "stages", "lake"):
        for rec in runs.get(name, []):
            roots.setdefault(rec["root"], []).append(name)
    for rec in runs.get("lake", []):
        roots.setdefault(rec["root"], []).append("verify")
    for rec in runs.get("naive_tree", []):
        roots.setdefault(rec["naive_root"], []).append("naive_tree")
    if len(roots) > 1:
        raise AssertionError(f"{rows} rows: variants disagree on the root: {roots}")
    return {
        "root": next(iter(roots), None),
        "agreeing": sorted({n for v in roots.values() for n in v}),
    }


def markdown(summary: dict) -> str:
    rows = summary["rows"]
    lines = [
        f"### {rows:,} rows",
        "",
        "| variant | median s | rows/s | rows/CPU-s | runs | CPU util | extra peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in summary["variants"].items():
        lines.append(
            f"| {LABELS[name]} | {e['seconds_median']:.3f} | {e['rows_per_s']:,.0f}"
            f" | {e['rows_per_cpu_s'] or 0:,.0f} | {e['runs']}"
            f" | {e['cpu_utilization'] or 0:.2f} | {max(0, e['extra_peak_mb_max'] or 0):.0f} |"
        )
        if name == "lake":
            vcpu = e["verify_cpu_seconds_median"]
            vsec = e["verify_seconds_median"]
            lines.append(
                f"| verify_entry_data (read from Delta + commit) | {e['verify_seconds_median']:.3f}"
                f" | {e['verify_rows_per_s']:,.0f} | {rows / vcpu:,.0f} | {e['runs']}"
                f" | {vcpu / vsec:.2f} | {e['verify_extra_peak_mb_max']:.0f} |"
            )
    for name, why in summary["skipped"].items():
        lines.append(f"| {LABELS[name]} | skipped: {why} | | | | | |")
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {val:.2f} |" for k, val in summary["ratios"].items() if val]
    st = summary["variants"].get("stages")
    if st:
        total = sum(st["stages_seconds_median"].values())
        lines += ["", "| stage | median s | share | CPU util |", "|---|---:|---:|---:|"]
        for k, sec in st["stages_seconds_median"].items():
            cpu = st["stages_cpu_median"][k]
            lines.append(f"| {k} | {sec:.3f} | {sec / total:.0%} | {cpu / sec if sec else 0:.2f} |")
    lines += ["", "targets: " + json.dumps(summary["targets"])]
    compiled = {n: e["compiled_during_timing"] for n, e in summary["variants"].items()}
    if any(compiled.values()):
        lines.append(f"WARNING: numba compiled inside timed steps: {compiled}")
    else:
        lines.append("numba: no signature compiled inside any timed step")
    return "\n".join(lines)


def compile_markdown(probe: dict) -> str:
    lines = [
        f"### numba compile (commit_table of {WARM_ROWS:,} rows, 2 cores)",
        "",
        "| cache | import s | first call s | next call s | first call extra s (CPU s)"
        " | cache hits / misses | load |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, rec in probe.items():
        nxt = min(c["seconds"] for c in rec["calls"][1:])
        lines.append(
            f"| {kind} | {rec['import_seconds']:.2f} | {rec['calls'][0]['seconds']:.2f}"
            f" | {nxt:.2f} | {rec['first_call_extra_seconds']:.2f}"
            f" ({rec['first_call_extra_cpu_seconds']:.2f})"
            f" | {rec.get('numba_cache_hits', '?')} / {rec.get('numba_cache_misses', '?')}"
            f" | {rec['loadavg_1min_at_start']:.1f} |"
        )
    return "\n".join(lines)


def tree_memory(report: dict) -> dict:
    """TreeBuilder's memory across sizes: flat in n means O(log n) beyond one batch."""
    sizes = {}
    for rows_text, data in report["sizes"].items():
        e = data.get("summary", {}).get("variants", {}).get("tree_stream")
        if e:
            sizes[rows_text] = {
                "extra_peak_rss_mb": e["extra_peak_mb_max"],
                "tracemalloc_peak_mb": e["tracemalloc_peak_mb"],
                "leaf_hashes_if_kept_mb": e["leaf_hashes_if_kept_mb"],
            }
    out: dict = {"sizes": sizes, "one_batch_of_leaf_hashes_mb": BATCH * 32 / 2**20}
    if len(sizes) >= 2:
        first, last = sizes[min(sizes, key=int)], sizes[max(sizes, key=int)]
        growth = last["tracemalloc_peak_mb"] - first["tracemalloc_peak_mb"]
        out["tracemalloc_growth_mb"] = growth
        out["leaf_hashes_growth_mb"] = (
            last["leaf_hashes_if_kept_mb"] - first["leaf_hashes_if_kept_mb"]
        )
        # log2(n) subtree roots of 32 bytes grow by bytes, not megabytes.
        out["met"] = growth < 1.0
    return out


def load_summary(report: dict) -> dict:
    samples = [s[1] for s in report.get("loadavg_samples", [])]
    starts = [
        r["loadavg_1min_at_start"]
        for data in report["sizes"].values()
        for rs in data["runs"].values()
        for r in rs
        if "loadavg_1min_at_start" in r
    ]
    out = {}
    if samples:
        out["loadavg_1min_sampled"] = {
            "min": min(samples),
            "median": statistics.median(samples),
            "max": max(samples),
            "samples": len(samples),
        }
    if starts:
        out["loadavg_1min_at_child_start"] = {"min": min(starts), "max": max(starts)}
    return out


def final_markdown(report: dict) -> str:
    lines = []
    tm = report.get("tree_memory", {})
    if tm.get("sizes"):
        lines += [
            "| tree memory | extra peak RSS MB | tracemalloc peak MB | leaf hashes if kept MB |"
        ]
        lines += ["|---|---:|---:|---:|"]
        for rows_text, e in tm["sizes"].items():
            lines.append(
                f"| {int(rows_text):,} leaves | {max(0, e['extra_peak_rss_mb'] or 0):.1f}"
                f" | {e['tracemalloc_peak_mb']:.1f} | {e['leaf_hashes_if_kept_mb']:.1f} |"
            )
        if "met" in tm:
            lines.append(
                f"\ntree memory O(log n) beyond one batch: {tm['met']} (tracemalloc peak grew "
                f"{tm['tracemalloc_growth_mb']:+.2f} MB; kept leaf hashes would grow "
                f"{tm['leaf_hashes_growth_mb']:.0f} MB)"
            )
    load = report.get("load", {})
    if load:
        lines.append("\nload: " + json.dumps(load))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--repeat", type=int, default=3, help="runs per variant (median reported)")
    p.add_argument(
        "--repeat-large", type=int, default=1, help="runs per variant for sizes >= --large-rows"
    )
    p.add_argument("--large-rows", type=int, default=5_000_000)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "ledger.json")
    p.add_argument("--seed", type=int, default=20240101)
    p.add_argument(
        "--check-rows",
        type=int,
        default=300_000,
        help="size of the ours-vs-naive root check run first (crosses the 2^17 "
        "batch and tree-block boundaries)",
    )
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument(
        "--baseline-budget",
        type=float,
        default=180.0,
        help="skip a pure-Python baseline at a size where it is estimated (from the "
        "previous size) to take longer than this many seconds",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="per child process, seconds")
    p.add_argument(
        "--skip-compile-probe",
        action="store_true",
        help="do not measure numba's cold compile and cache load at the start",
    )
    p.add_argument(
        "--resummarize",
        action="store_true",
        help="recompute the summaries of an existing --out file and print them",
    )
    p.add_argument("--worker", choices=(*VARIANTS, "check", "compile"), help=argparse.SUPPRESS)
    p.add_argument("--worker-rows", type=int, help=argparse.SUPPRESS)
    a = dry_run.parse_args(p, argv)

    if a.worker:
        warnings.simplefilter("ignore", UserWarning)
        if a.worker == "check":
            result = run_check(a.worker_rows, a.seed)
        elif a.worker == "compile":
            result = run_compile(a.seed)
        else:
            result = run_worker(a.worker, a.worker_rows, a.seed)
        print(json.dumps(result))
        return 0

    if a.resummarize:
        report = json.loads(a.out.read_text())
        if report.get("compile"):
            print(compile_markdown(report["compile"]) + "\n", flush=True)
        for rows_text, data in report["sizes"].items():
            rows = int(rows_text)
            summary = summarize(rows, data["runs"], data.get("skipped", {}))
            summary["roots"] = check_roots(rows, data["runs"])
            data["summary"] = summary
            print(markdown(summary) + "\n", flush=True)
        report["tree_memory"] = tree_memory(report)
        report["load"] = load_summary(report)
        print(final_markdown(report), flush=True)
        a.out.write_text(json.dumps(report, indent=2))
        return 0

    started = time.time()
    report: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "seed": a.seed,
        "table": "id int64 (unique, shuffled), value float64, text string (32-48 B, mean 40), "
        "ts timestamp[us, UTC], flag bool; no nulls",
        "sizes": {},
        "loadavg_samples": [],
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)

    # The machine may be shared: sample the load average for the whole run.
    stop_sampling = threading.Event()

    def sample_load() -> None:
        while True:
            report["loadavg_samples"].append([round(time.time() - started, 1), *os.getloadavg()])
            if stop_sampling.wait(15.0):
                return

    threading.Thread(target=sample_load, daemon=True).start()

    def save() -> None:
        report["elapsed_seconds"] = time.time() - started
        report["load"] = load_summary(report)
        a.out.write_text(json.dumps(report, indent=2))

    if not a.skip_compile_probe:
        report["compile"] = {}
        with tempfile.TemporaryDirectory(prefix="ledger-bench-numba-") as cache:
            for kind, extra in (("cold", {"NUMBA_CACHE_DIR": cache}), ("cached", {})):
                log(f"compile probe: {kind} ({'empty NUMBA_CACHE_DIR' if extra else 'disk cache'})")
                rec = spawn(["--worker", "compile", "--seed", str(a.seed)], False, a.timeout, extra)
                report["compile"][kind] = rec
                log(
                    f"compile probe: {kind}: import {rec['import_seconds']:.2f} s, first call "
                    f"{rec['calls'][0]['seconds']:.2f} s, next "
                    f"{min(c['seconds'] for c in rec['calls'][1:]):.2f} s"
                )
        if report["compile"]["cold"]["root"] != report["compile"]["cached"]["root"]:
            raise AssertionError("cold-compiled and cached kernels disagree on the root")
        print(compile_markdown(report["compile"]) + "\n", flush=True)
        save()

    log(f"check: ours vs naive RFC 9162 tree at {a.check_rows:,} rows")
    report["check"] = spawn(
        ["--worker", "check", "--worker-rows", str(a.check_rows), "--seed", str(a.seed)],
        False,
        a.timeout,
    )
    log(
        f"check: ok, roots agree (root at {a.check_rows:,} rows "
        f"{report['check']['roots'][str(a.check_rows)][:16]}…)"
    )
    save()

    previous: dict | None = None
    for rows in a.rows:
        repeat = a.repeat_large if rows >= a.large_rows else a.repeat
        runs: dict[str, list[dict]] = {name: [] for name in a.variants}
        skipped: dict[str, str] = {}
        for name in a.variants:
            if name in SLOW_BASELINES and previous and name in previous["variants"]:
                prev = previous["variants"][name]
                estimate = prev["seconds_median"] * rows / previous["rows"]
                if estimate > a.baseline_budget:
                    skipped[name] = (
                        f"estimated {estimate:.0f} s from {previous['rows']:,} rows "
                        f"> budget {a.baseline_budget:.0f} s"
                    )
                    runs.pop(name)
                    log(f"[{rows:,}] skip {name}: {skipped[name]}")
        for rep in range(repeat):
            for name in list(runs):
                log(f"[{rows:,}] {LABELS[name]} (run {rep + 1}/{repeat}) …")
                try:
                    rec = spawn(
                        ["--worker", name, "--worker-rows", str(rows), "--seed", str(a.seed)],
                        name in SINGLE_CORE,
                        a.timeout,
                    )
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    log(f"[{rows:,}] {name} FAILED: {exc}")
                    skipped[name] = f"failed: {str(exc).splitlines()[0][:200]}"
                    runs.pop(name)
                    continue
                runs[name].append(rec)
                if rec.get("compiled_during_step"):
                    log(
                        f"[{rows:,}] WARNING {name} compiled inside the timed step: "
                        f"{rec['compiled_during_step']}"
                    )
                extra = f", verify {rec['verify_seconds']:.2f} s" if name == "lake" else ""
                log(
                    f"[{rows:,}] {name}: {rec['seconds']:.3f} s = {rows / rec['seconds']:,.0f} "
                    f"rows/s, extra peak {rec.get('extra_peak_mb', 0):.0f} MB{extra}"
                )
                report["sizes"][str(rows)] = {"runs": runs, "skipped": skipped}
                save()
        roots = check_roots(rows, runs)
        log(f"[{rows:,}] roots agree across {roots['agreeing']}: {roots['root']}")
        summary = summarize(rows, runs, skipped)
        summary["roots"] = roots
        report["sizes"][str(rows)] = {"summary": summary, "runs": runs, "skipped": skipped}
        save()
        print(markdown(summary), flush=True)
        print(flush=True)
        previous = summary
    stop_sampling.set()
    report["tree_memory"] = tree_memory(report)
    save()
    print(final_markdown(report), flush=True)
    log(f"done in {time.time() - started:.0f} s; results in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
