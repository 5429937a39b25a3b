"""The lake on object storage: a real S3 API (moto in server mode, tests/conftest.py) holds
the whole lake, tables, ledger and files; bad URIs are refused; concurrent writers on a
bucket never fork the ledger; tampering in the bucket is caught."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from ledger.lake import Lake
from ledger.storage import LakeError, parse_lake_uri
from ledger.verify import verify_lake
from openledger_pipelines.cli import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3:/bucket/prefix", "malformed lake URI"),
        ("gs://bucket/prefix", "unsupported lake URI"),
        ("s3://", "is not a bucket name"),
        ("s3://Bad_Bucket/x", "is not a bucket name"),
        ("s3://bucket/a/../b", "bad prefix segment"),
        ("file:relative", "malformed lake URI"),
    ],
)
def test_a_bad_lake_uri_is_one_line_and_never_a_local_folder(
    uri: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LakeError, match=message):
        parse_lake_uri(uri)
    result = CliRunner().invoke(app, ["verify", "--lake", uri])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # nothing created, least of all `s3:/bucket`


def test_an_unreachable_bucket_is_one_line(s3_env: dict[str, str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["verify", "--lake", "s3://no-such-bucket/lake"])
    assert result.exit_code == 2, result.output
    assert "cannot reach lake s3://no-such-bucket/lake" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_tables_and_files_live_in_the_bucket(s3_lake_uri: str) -> None:
    lake = Lake(s3_lake_uri)
    committed = lake.append("events", pa.table({"x": [1, 2, 3]}))
    lake.write("scores", pa.table({"id": [1], "v": [0.5]}), key=["id"])
    (lake.root_path() / "specs" / "note.txt").write_text("hello")
    again = Lake(s3_lake_uri)
    assert again.table_names() == ["events", "scores"]
    assert (again.root_path() / "specs" / "note.txt").read_text() == "hello"
    assert [p.name for p in again.root_path().iterdir()] == ["ledger", "specs", "tables"]
    assert again.ledger.head().seq == 1  # type: ignore[union-attr]
    assert committed.entry.row_count == 3
    report = verify_lake(again)
    assert report.ok and report.entries == 2, report.problems


def test_a_create_only_write_never_overwrites_in_the_bucket(s3_lake_uri: str) -> None:
    path = Lake(s3_lake_uri).root_path() / "inbox" / "x.csv"
    path.create_bytes(b"first")
    with pytest.raises(FileExistsError):
        path.create_bytes(b"second")
    assert path.read_bytes() == b"first"
    Lake(s3_lake_uri).files.check_conditional_writes()  # moto honours If-None-Match


def _append_many(root: str, worker: int, count: int, env: dict[str, str]) -> None:
    import os

    os.environ.update(env)
    lake = Lake(root)
    for i in range(count):
        part = f"w{worker}"
        lake.append("shared", pa.table({"part": [part], "i": [i]}), partition=("part", part))
        lake.write(f"own_{worker}", pa.table({"id": [i]}), key=["id"])


@pytest.mark.slow
def test_two_processes_writing_one_bucket_lake_never_fork_the_ledger(
    s3_lake_uri: str, s3_env: dict[str, str]
) -> None:
    writes = 8
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_append_many, args=(s3_lake_uri, w, writes, s3_env)) for w in (1, 2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    lake = Lake(s3_lake_uri)
    entries = lake.ledger.entries()
    assert [e.seq for e in entries] == list(range(4 * writes))  # none lost, none twice
    per_table: dict[str, list[int]] = {}
    for e in entries:
        per_table.setdefault(e.table_uri, []).append(e.delta_version)
    assert all(v == list(range(len(v))) for v in per_table.values()), per_table
    shared = lake.read("shared")
    for part in ("w1", "w2"):
        rows = shared.filter(pa.compute.equal(shared["part"], part))
        assert sorted(rows["seq"].to_pylist()) == list(range(writes))
        assert sorted(rows["i"].to_pylist()) == list(range(writes))
    report = verify_lake(lake)
    assert report.ok, report.problems


@pytest.mark.slow
def test_the_demo_and_the_auditors_commands_on_a_bucket(
    s3_lake_uri: str, s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole demo on the moto lake, then what an auditor runs against the bucket; the
    only local files are the keys and the Dagster instance, under $HOME."""
    import boto3

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    demo = runner.invoke(app, ["demo", "--lake", s3_lake_uri])
    assert demo.exit_code == 0, demo.output
    assert "verify: OK" in demo.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    bucket, prefix = s3_lake_uri.removeprefix("s3://").split("/", 1)
    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    tops = {k.removeprefix(prefix + "/").split("/", 1)[0] for k in keys}
    assert {"tables", "ledger", "specs", "registry", "inbox", "models"} <= tops
    assert "keys" not in tops and "dagster_home" not in tops  # private keys stay local
    assert any((home / ".openledger" / "keys").rglob("*.key"))

    lake = ["--lake", s3_lake_uri]
    verify = runner.invoke(app, ["verify", *lake])
    assert verify.exit_code == 0 and "OK" in verify.output, verify.output
    statement = runner.invoke(app, ["statement", "--contributor", "alice", "--epoch", "0", *lake])
    assert statement.exit_code == 0 and "alice" in statement.output, statement.output
    recompute = runner.invoke(app, ["recompute", "--epoch", "0", *lake])
    assert recompute.exit_code == 0, recompute.output
    sql = runner.invoke(app, ["sql", "select count(*) as n from contributions_wine", *lake])
    assert sql.exit_code == 0 and "n" in sql.output, sql.output
    proof = tmp_path / "row.proof.json"
    prove = runner.invoke(
        app,
        [
            "prove",
            "--table",
            "contributions_wine",
            "--key",
            "contributor=alice",
            "--key",
            "row_index=0",
            "--out",
            str(proof),
            *lake,
        ],
    )
    assert prove.exit_code == 0, prove.output
    checked = subprocess.run(
        [sys.executable, str(ROOT / "ledger" / "proofcheck.py"), str(proof)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # Tampering in the bucket: rewrite one data file of the quality table in place.
    data_key = next(k for k in keys if "/tables/quality/" in k and k.endswith(".parquet"))
    import io

    import pyarrow.parquet as pq

    body = client.get_object(Bucket=bucket, Key=data_key)["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    name = next(f.name for f in table.schema if pa.types.is_floating(f.type))
    forged = table.set_column(
        table.schema.names.index(name),
        name,
        pa.compute.add(table[name], pa.scalar(1.0, table.schema.field(name).type)),
    )
    out = io.BytesIO()
    pq.write_table(forged, out)
    client.put_object(Bucket=bucket, Key=data_key, Body=out.getvalue())
    tampered = runner.invoke(app, ["verify", *lake])
    assert tampered.exit_code == 1, tampered.output
    assert "quality" in tampered.output


class _ForgetfulProxy:
    """An S3 endpoint that ignores conditional writes: a loopback proxy in front of the
    moto server that drops `If-None-Match` from every request, as a store without
    conditional-write support would."""

    def __init__(self, upstream: str):
        import http.server
        import threading
        import urllib.request

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                request = urllib.request.Request(
                    upstream + self.path, data=body, method=self.command
                )
                for name, value in self.headers.items():
                    if name.lower() not in ("if-none-match", "host", "content-length"):
                        request.add_header(name, value)
                try:
                    response = urllib.request.urlopen(request, timeout=30)
                except urllib.error.HTTPError as err:
                    response = err
                data = response.read()
                self.send_response(response.status)
                for name, value in response.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_store_without_conditional_writes_is_refused_before_any_write(
    s3_lake_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ledger.lake

    proxy = _ForgetfulProxy(os.environ["AWS_ENDPOINT_URL"])
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setattr(ledger.lake, "_CONDITIONAL", set())  # check this store afresh
        lake = Lake(s3_lake_uri)
        with pytest.raises(LakeError, match="does not honour conditional writes"):
            lake.append("events", pa.table({"x": [1]}))
        assert lake.table_names() == [] and lake.ledger.head() is None  # nothing written
    finally:
        proxy.server.shutdown()


@pytest.mark.slow
def test_two_datanets_runs_at_once_on_a_bucket(
    s3_lake_uri: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """`openledger run` for wine and for breast_cancer in two processes at the same time,
    on one bucket lake: both succeed, the ledger has one entry per place and per table
    version, and `verify` passes."""
    from openledger_pipelines.demo import prepare_demo

    env = {**os.environ, **s3_env, "HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    env.pop("OPENLEDGER_LAKE", None)
    prepare_demo(Lake(s3_lake_uri).root_path())
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "openledger_pipelines.cli",
                "run",
                "--lake",
                s3_lake_uri,
                "--datanet",
                name,
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name in ("wine", "breast_cancer")
    ]
    outputs = [p.communicate(timeout=1500)[0].decode() for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outputs
    lake = Lake(s3_lake_uri)
    entries = lake.ledger.entries()
    assert [e.seq for e in entries] == list(range(len(entries)))
    versions: dict[str, list[int]] = {}
    for e in entries:
        versions.setdefault(e.table_uri, []).append(e.delta_version)
    assert all(v == list(range(len(v))) for v in versions.values()), versions
    datanets = {e.partition_key for e in entries if e.table_uri == "tables/quality"}
    assert datanets == {"wine", "breast_cancer"}
    report = verify_lake(lake)
    assert report.ok, report.problems
