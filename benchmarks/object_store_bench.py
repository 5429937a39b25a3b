"""Object storage and concurrent runs (issue 16), each ratio from one run of this script.

0. Small files (what LakeFiles stores: specs, manifests, registrations): put and get of
   1 KiB objects on the moto server through obstore (the lake's storage library) and
   through pyarrow.fs.S3FileSystem, the other candidate already installed.
1. The demo (`openledger demo`, a fresh lake each time) on a local folder and on a bucket
   of a moto S3 server started here on loopback, alternating which goes first per round.
   Target: the bucket within 3x of the folder.
2. Two Datanets' runs (`openledger run --datanet wine`, `--datanet breast_cancer`) one
   after the other, and the same two at once in two processes, on lakes prepared with the
   demo's inputs (specs, keys, inbox files). Target: at once <= 0.7x one after the other
   (2 cores). Afterwards `verify` must pass on every lake (no fork, no lost entry).

    uv run python benchmarks/object_store_bench.py --rounds 1 --out benchmarks/out/object_store.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import dry_run  # noqa: E402

DATANETS = ("wine", "breast_cancer")


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            return server, url
        except OSError:
            time.sleep(0.05)
    server.terminate()
    raise RuntimeError("moto server did not start")


def openledger(args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "openledger_pipelines.cli", *args],
        env=env,
        cwd=env["BENCH_CWD"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def timed(procs: list[subprocess.Popen[bytes]]) -> float:
    """Wall time until every process has exited; each must exit 0."""
    start = time.perf_counter()
    for proc in procs:
        output, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{proc.args} exited {proc.returncode}:\n{output.decode()[-3000:]}")
    return time.perf_counter() - start


def timed_run(args: Sequence[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    timed([openledger(args, env)])
    return time.perf_counter() - start


def prepare(lake: str, env: dict[str, str]) -> None:
    """The demo's inputs in a lake (specs, registrations, inbox), nothing run yet."""
    code = (
        "from openledger_pipelines.demo import prepare_demo; from ledger.lake import Lake; "
        f"prepare_demo(Lake({lake!r}).root_path())"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=env["BENCH_CWD"], check=True)


def verified(lake: str, env: dict[str, str]) -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "openledger_pipelines.cli", "verify", "--lake", lake],
        env=env,
        cwd=env["BENCH_CWD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0


def small_files(env: dict[str, str], count: int) -> dict[str, float]:
    """Milliseconds per put and per get of a 1 KiB object, obstore vs pyarrow.fs."""
    import obstore
    from obstore.store import S3Store
    from pyarrow import fs

    bucket = make_bucket(env, "small-files").removeprefix("s3://").split("/")[0]
    store = S3Store(bucket, endpoint=env["AWS_ENDPOINT_URL"], region="us-east-1",
                    access_key_id="testing", secret_access_key="testing",
                    client_options={"allow_http": True})  # fmt: skip
    arrow = fs.S3FileSystem(
        access_key="testing", secret_key="testing", region="us-east-1",
        endpoint_override=env["AWS_ENDPOINT_URL"], scheme="http",
    )  # fmt: skip
    data = os.urandom(1024)
    result = {}
    for name, put, get in (
        ("obstore", lambda k: obstore.put(store, k, data), lambda k: obstore.get(store, k).bytes()),
        (
            "pyarrow.fs",
            lambda k: arrow.open_output_stream(f"{bucket}/{k}").write(data),
            lambda k: arrow.open_input_file(f"{bucket}/{k}").read(),
        ),
    ):
        start = time.perf_counter()
        for i in range(count):
            put(f"{name}/f{i}")
        result[f"{name}_put_ms"] = (time.perf_counter() - start) / count * 1000
        start = time.perf_counter()
        for i in range(count):
            get(f"{name}/f{i}")
        result[f"{name}_get_ms"] = (time.perf_counter() - start) / count * 1000
    return result


def make_bucket(env: dict[str, str], name: str) -> str:
    import boto3

    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return f"s3://{name}/lake"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="object_store_bench.py", description=__doc__)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-demo", action="store_true", help="Only the concurrency part.")
    parser.add_argument("--files", type=int, default=200, help="Small objects to put and get.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/object_store.json")
    args = dry_run.parse_args(parser, argv)
    server, url = start_moto()
    work = Path(tempfile.mkdtemp(prefix="object-store-bench-"))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
        "AWS_ALLOW_HTTP": "true",
        "HOME": str(work / "home"),
        "BENCH_CWD": str(work),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("OPENLEDGER_LAKE", None)
    results: dict[str, Any] = {"demo": [], "concurrency": []}
    load_before = os.getloadavg()[0]
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        results["small_files"] = small_files(env, args.files)
        print(f"small files: {results['small_files']}", flush=True)
        for r in range(args.rounds):
            if not args.skip_demo:
                folder, bucket = str(work / f"demo-{r}"), make_bucket(env, f"demo-{r}")
                order = [("folder", folder), ("bucket", bucket)]
                if r % 2:
                    order.reverse()
                times = {kind: timed_run(["demo", "--lake", lake], env) for kind, lake in order}
                times["ratio"] = times["bucket"] / times["folder"]
                print(f"demo round {r}: {times}", flush=True)
                results["demo"].append(times)
            for kind in ("folder", "bucket"):
                lakes = {}
                for mode in ("sequential", "concurrent"):
                    lakes[mode] = (
                        str(work / f"{mode}-{r}")
                        if kind == "folder"
                        else make_bucket(env, f"{mode}-{r}")
                    )
                    prepare(lakes[mode], env)
                runs = {
                    mode: [["run", "--lake", lakes[mode], "--datanet", d] for d in DATANETS]
                    for mode in lakes
                }
                order = ["sequential", "concurrent"] if r % 2 == 0 else ["concurrent", "sequential"]
                times = {}
                for mode in order:
                    if mode == "sequential":
                        times[mode] = sum(timed_run(a, env) for a in runs[mode])
                    else:
                        times[mode] = timed([openledger(a, env) for a in runs[mode]])
                times["ratio"] = times["concurrent"] / times["sequential"]
                times["verify_ok"] = all(verified(lake, env) for lake in lakes.values())
                times["lake"] = kind
                print(f"concurrency round {r} ({kind}): {times}", flush=True)
                results["concurrency"].append(times)
    finally:
        server.terminate()
    results["load_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    results["date"] = time.strftime("%Y-%m-%d")
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
