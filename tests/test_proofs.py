"""Inclusion and consistency proof documents, checked in-process and by a standalone,
standard-library-only copy of `ledger/proofcheck.py` (`python -I -S`)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

import ledger.proofcheck
from ledger.lake import Lake
from ledger.proofcheck import check_proof_document, decode_row
from ledger.proofs import ProofError, consistency_proof_document, inclusion_proof_document

UTC_US = pa.timestamp("us", tz="UTC")
PROOFCHECK = Path(ledger.proofcheck.__file__)

# The lake: (seq, table, Delta version, partition value)
#   0 contributions v0 alpha | 1 contributions v1 beta | 2 models v0
#   3 contributions v2 alpha | 4 models v1             | 5 contributions v3 beta
LEDGER_SIZE = 6


def _contributions(datanet: str, ids: list[int]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "datanet": pa.array([datanet] * len(ids), pa.string()),
            "contributor": pa.array([f"c{i % 2}" for i in ids], pa.string()),
            "text": pa.array([f"row {i} é" for i in ids], pa.string()),
            "label": pa.array([i * 0.25 for i in ids], pa.float64()),
            "payload": pa.array([bytes([i % 256]) * 3 for i in ids], pa.binary()),
            "received_at": pa.array([1_700_000_000_000_000 + i for i in ids], UTC_US),
            "flag": pa.array([None if i % 3 == 0 else i % 2 == 0 for i in ids], pa.bool_()),
        }
    )


def _models(names: list[str]) -> pa.Table:
    return pa.table(
        {
            "model_id": names,
            "kind": ["gbm" if n != "lin" else "linear" for n in names],
            "auc": [0.5 + 0.01 * i for i in range(len(names))],
        }
    )


@pytest.fixture(scope="module")
def plake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("proofs") / "lake")
    lake.write(
        "contributions",
        _contributions("alpha", [1, 2, 3]),
        partition=("datanet", "alpha"),
        key=["id"],
    )
    lake.write(
        "contributions",
        _contributions("beta", list(range(100, 113))),
        partition=("datanet", "beta"),
        key=["id"],
    )
    lake.write("models", _models(["m1", "m2", "lin"]))
    lake.write(
        "contributions",
        _contributions("alpha", [1, 2, 3, 4, 5, 6, 7]),
        partition=("datanet", "alpha"),
        key=["id"],
    )
    lake.write("models", _models(["m1", "m2", "m3", "m4", "lin"]))
    lake.write(
        "contributions",
        _contributions("beta", list(range(100, 105))),
        partition=("datanet", "beta"),
        key=["id"],
    )
    assert len(lake.ledger.entries()) == LEDGER_SIZE
    return lake


# (case id, table, key values, version, partition key, expected entry seq, expected row size)
CASES: list[tuple[str, str, dict[str, object], int | None, str | None, int, int]] = [
    ("partitioned-latest", "contributions", {"id": 5}, None, "alpha", 3, 7),
    ("partitioned-latest-other-partition", "contributions", {"id": 104}, None, "beta", 5, 5),
    ("partitioned-latest-any-partition", "contributions", {"id": 104}, None, None, 5, 5),
    ("partitioned-older", "contributions", {"id": 2}, 0, None, 0, 3),
    ("partitioned-older-beta", "contributions", {"id": 112}, 1, "beta", 1, 13),
    ("unpartitioned-latest", "models", {"model_id": "m4"}, None, None, 4, 5),
    ("unpartitioned-older", "models", {"model_id": "lin"}, 0, None, 2, 3),
    ("two-key-columns", "models", {"kind": "gbm", "model_id": "m1"}, 1, None, 4, 5),
]


@pytest.fixture(scope="module")
def documents(plake: Lake) -> dict[str, dict[str, Any]]:
    return {
        case: inclusion_proof_document(plake, table, key, version=version, partition_key=part)
        for case, table, key, version, part, _, _ in CASES
    }


@pytest.mark.parametrize(
    ("case", "table", "key", "version", "part", "seq", "size"), CASES, ids=[c[0] for c in CASES]
)
def test_inclusion_proof_verifies(
    documents: dict[str, dict[str, Any]],
    case: str,
    table: str,
    key: dict[str, object],
    version: int | None,
    part: str | None,
    seq: int,
    size: int,
) -> None:
    doc = documents[case]
    assert doc["entry"]["index"] == seq
    assert doc["entry"]["log_size"] == LEDGER_SIZE
    assert doc["data"]["size"] == size
    for column, value in key.items():
        assert doc["row"][column] == value
    # JSON round trip: what an auditor receives.
    received = json.loads(json.dumps(doc))
    ok, message = check_proof_document(received)
    assert ok, message
    assert f"is in table tables/{table} version" in message
    assert f"ledger entry {seq} " in message
    # The leaf decodes (standard library only) to the selected row.
    decoded = dict(
        zip(received["row"], decode_row(bytes.fromhex(received["data"]["leaf"])), strict=True)
    )
    for column, value in key.items():
        assert decoded[column] == value


def test_inclusion_proof_of_older_version_uses_older_rows(plake: Lake) -> None:
    latest = inclusion_proof_document(plake, "models", {"model_id": "m2"})
    older = inclusion_proof_document(plake, "models", {"model_id": "m2"}, version=0)
    assert latest["data"]["root"] != older["data"]["root"]
    assert (latest["data"]["size"], older["data"]["size"]) == (5, 3)
    assert check_proof_document(latest)[0] and check_proof_document(older)[0]


# --- the standalone checker ---------------------------------------------------------------


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("auditor")
    shutil.copy(PROOFCHECK, folder / "proofcheck.py")
    return folder


def _run_standalone(folder: Path, doc: object, name: str) -> subprocess.CompletedProcess[str]:
    path = folder / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-I", "-S", "proofcheck.py", path.name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_standalone_checker_accepts_and_rejects(
    documents: dict[str, dict[str, Any]], plake: Lake, standalone: Path
) -> None:
    """Isolated mode without site-packages: only the standard library is importable."""
    probe = subprocess.run(
        [sys.executable, "-I", "-S", "-c", "import pyarrow"],
        cwd=standalone,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert probe.returncode != 0  # third-party packages really are out of reach

    docs: list[tuple[str, object]] = [(case, doc) for case, doc in documents.items()]
    docs.append(("consistency", consistency_proof_document(plake, 2, LEDGER_SIZE)))
    for name, doc in docs:
        done = _run_standalone(standalone, doc, f"{name}.json")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("OK: ")
        assert done.stderr == ""

    bad = copy.deepcopy(documents["partitioned-latest"])
    bad["data"]["index"] += 1
    done = _run_standalone(standalone, bad, "bad.json")
    assert done.returncode == 1
    assert done.stdout.startswith("FAIL: ")
    assert "Traceback" not in done.stderr

    for garbage in ("not json", "[1, 2]"):
        (standalone / "garbage.json").write_text(garbage, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-I", "-S", "proofcheck.py", "garbage.json"],
            cwd=standalone,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode in (1, 2)
        assert "Traceback" not in done.stderr


# --- every single-field corruption fails, and never raises ---------------------------------


def _flip_hex(text: str, position: int = 0) -> str:
    raw = bytearray(bytes.fromhex(text))
    raw[position % len(raw)] ^= 0x01
    return raw.hex()


Corruption = tuple[str, Callable[[dict[str, Any]], None]]


def _shape(index: int, size: int) -> list[bool] | None:
    """Sides (True = sibling on the left) of an RFC 9162 inclusion path, per §2.1.3.2."""
    if not 0 <= index < size:
        return None
    fn, sn, sides = index, size - 1, []
    while sn > 0:
        if fn & 1 or fn == sn:
            sides.append(True)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sides.append(False)
        fn >>= 1
        sn >>= 1
    return sides


def _same_shape(index: int, size: int, other: int) -> bool:
    """True when (index, other) hashes the same path the same way as (index, size): the
    proof alone cannot tell those sizes apart (RFC 9162 binds the size in the tree head)."""
    return _shape(index, other) == _shape(index, size)


def _set(section: str, key: str, value: object) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        doc[section][key] = value

    return apply


def _corruptions(doc: dict[str, Any]) -> Iterator[Corruption]:
    data, entry = doc["data"], doc["entry"]
    # leaf bytes: first, middle and last byte of the row and of the entry
    for section, leaf in (("data", data["leaf"]), ("entry", entry["leaf"])):
        n = len(leaf) // 2
        for pos in sorted({0, 1, n // 2, n - 1}):
            yield f"{section}.leaf byte {pos}", _set(section, "leaf", _flip_hex(leaf, pos))
        yield f"{section}.leaf truncated", _set(section, "leaf", leaf[:-2])
        yield f"{section}.leaf extended", _set(section, "leaf", leaf + "00")
        yield f"{section}.leaf not hex", _set(section, "leaf", "zz" + leaf[2:])
    # indexes and sizes: every other value in range, out of range, wrong types
    for section, index_key, size_key in (("data", "index", "size"), ("entry", "index", "log_size")):
        index, size = doc[section][index_key], doc[section][size_key]
        for other in [*range(size + 1), size + 1, -1, 2**64]:
            if other != index:
                yield f"{section}.{index_key}={other}", _set(section, index_key, other)
        for other in [*range(size + 3), -1, 2**64]:
            if other != size:
                yield f"{section}.{size_key}={other}", _set(section, size_key, other)
        for wrong in (str(index), float(index), None, True, [index]):
            yield f"{section}.{index_key}={wrong!r}", _set(section, index_key, wrong)
            yield f"{section}.{size_key}={wrong!r}", _set(section, size_key, wrong)
    # path elements: each flipped, each removed, one added, one truncated, wrong types
    for section in ("data", "entry"):
        path = doc[section]["path"]
        for i in range(len(path)):
            flipped = [*path[:i], _flip_hex(path[i], i), *path[i + 1 :]]
            yield f"{section}.path[{i}] flipped", _set(section, "path", flipped)
            yield f"{section}.path[{i}] removed", _set(section, "path", path[:i] + path[i + 1 :])
            yield (
                f"{section}.path[{i}] short",
                _set(section, "path", [*path[:i], path[i][:-2], *path[i + 1 :]]),
            )
        yield f"{section}.path extra", _set(section, "path", [*path, "00" * 32])
        if path[::-1] != path:
            yield f"{section}.path reversed", _set(section, "path", path[::-1])
        if path:
            yield f"{section}.path emptied", _set(section, "path", [])
        yield f"{section}.path not a list", _set(section, "path", "".join(path))
    # roots
    for pos in (0, 31):
        yield f"data.root byte {pos}", _set("data", "root", _flip_hex(data["root"], pos))
        yield (
            f"entry.log_root byte {pos}",
            _set("entry", "log_root", _flip_hex(entry["log_root"], pos)),
        )
    yield "data.root short", _set("data", "root", data["root"][:-2])
    yield "entry.log_root short", _set("entry", "log_root", entry["log_root"][:-2])
    yield "data.root null", _set("data", "root", None)
    # the entry's field names, the format, missing sections
    yield (
        "entry.fields renamed",
        _set("entry", "fields", [f if f != "data_root" else "root" for f in entry["fields"]]),
    )
    yield "entry.fields short", _set("entry", "fields", entry["fields"][:-1])
    # the head entry that binds log_size to log_root, the schema and the row shown
    head = entry["head"]
    yield (
        "entry.head.leaf flipped",
        _set("entry", "head", dict(head, leaf=_flip_hex(head["leaf"], 3))),
    )
    if head["path"]:
        yield (
            "entry.head.path flipped",
            _set(
                "entry", "head", dict(head, path=[_flip_hex(head["path"][0], 0), *head["path"][1:]])
            ),
        )
    schema = data["schema"]
    yield (
        "data.schema renamed",
        _set("data", "schema", [[f"{schema[0][0]}x", schema[0][1]], *schema[1:]]),
    )
    yield "data.schema retyped", _set("data", "schema", [[schema[0][0], "binary"], *schema[1:]])

    def change_row(doc: dict[str, Any]) -> None:
        first = next(iter(doc["row"]))
        value = doc["row"][first]
        doc["row"][first] = (value + "x") if isinstance(value, str) else 12345.5

    yield "row value changed", change_row

    def set_format(doc: dict[str, Any]) -> None:
        doc["format"] = "openledger-inclusion-proof/v0"

    yield "format", set_format
    for key in ("data", "entry", "format"):
        yield f"no {key}", lambda doc, key=key: doc.pop(key)  # type: ignore[misc]
    for section in ("data", "entry"):
        for key in list(doc[section]):
            yield f"no {section}.{key}", lambda d, s=section, k=key: d[s].pop(k)  # type: ignore[misc]


@pytest.mark.parametrize(
    "case", ["partitioned-latest", "partitioned-older-beta", "unpartitioned-older"]
)
def test_every_single_field_corruption_fails_without_raising(
    documents: dict[str, dict[str, Any]], case: str
) -> None:
    original = json.loads(json.dumps(documents[case]))
    assert check_proof_document(original)[0]
    tried = 0
    for name, corrupt in _corruptions(original):
        doc = copy.deepcopy(original)
        corrupt(doc)
        result = check_proof_document(doc)  # must not raise
        assert isinstance(result, tuple) and len(result) == 2
        ok, message = result
        assert ok is False, f"corruption {name!r} was accepted: {message}"
        assert isinstance(message, str) and message
        tried += 1
    assert tried > 80
    assert check_proof_document(original)[0]  # corruptions never touched the original


def test_log_size_misstatements_are_rejected(documents: dict[str, dict[str, Any]]) -> None:
    """The head entry (seq = log_size - 1, included under log_root) binds the size to the
    root, so no other size verifies, even one with the same path shape."""
    same_shape = 0
    for case, original in documents.items():
        index, size = original["entry"]["index"], original["entry"]["log_size"]
        for other in range(1, 2 * LEDGER_SIZE):
            if other == size:
                continue
            same_shape += _same_shape(index, size, other)
            doc = dict(original, entry=dict(original["entry"], log_size=other))
            ok, message = check_proof_document(doc)
            assert not ok, (case, other, message)
    assert same_shape > 0  # the sizes a bare RFC 9162 path could not tell apart are covered


def test_log_size_is_bound_to_the_log_root(documents: dict[str, dict[str, Any]]) -> None:
    doc = copy.deepcopy(documents["partitioned-latest"])
    assert (doc["entry"]["index"], doc["entry"]["log_size"]) == (3, LEDGER_SIZE)
    doc["entry"]["log_size"] = 5
    ok, message = check_proof_document(doc)
    assert not ok, message


def test_entry_field_names_are_not_taken_from_the_document(
    documents: dict[str, dict[str, Any]],
) -> None:
    doc = copy.deepcopy(documents["partitioned-latest"])
    fields = doc["entry"]["fields"]
    i, j = fields.index("delta_version"), fields.index("encoding_version")
    fields[i], fields[j] = fields[j], fields[i]
    ok, message = check_proof_document(doc)
    assert not ok, message


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "x",
        1,
        {},
        {"format": None},
        {"format": "openledger-inclusion-proof/v1"},
        {"format": "openledger-consistency-proof/v1"},
    ],
)
def test_malformed_documents_fail_without_raising(doc: object) -> None:
    ok, message = check_proof_document(doc)
    assert ok is False and message


def test_row_shown_in_document_must_match_the_leaf(documents: dict[str, dict[str, Any]]) -> None:
    doc = copy.deepcopy(documents["partitioned-latest"])
    doc["row"]["label"] = 1_000_000.0  # what the contributor reads; the leaf still says 1.25
    ok, message = check_proof_document(doc)
    assert not ok, message


# --- errors when a proof cannot be made ----------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "kwargs", "match"),
    [
        ("contributions", {"id": 999}, {}, r"0 rows match \{'id': 999\}"),
        ("contributions", {"id": 104}, {"partition_key": "alpha"}, "0 rows match"),
        (
            "contributions",
            {"id": 3},
            {"version": 1, "partition_key": "alpha"},
            "no ledger entry for table 'contributions' version 1 partition 'alpha'",
        ),
        ("contributions", {"id": 3}, {"version": 1}, "0 rows match"),
        (
            "contributions",
            {"contributor": "c1"},
            {"partition_key": "alpha"},
            "4 rows match .* a proof needs exactly one",
        ),
        ("models", {"kind": "gbm"}, {}, "4 rows match"),
        ("nope", {"id": 1}, {}, "no ledger entry for table 'nope'"),
        ("models", {"id": 1}, {}, "no column 'id'; columns are"),
        (
            "contributions",
            {"id": "one"},
            {"partition_key": "alpha"},
            "key value 'one' is not a valid int64",
        ),
        ("models", {"auc": "high"}, {}, "key value 'high' is not a valid double"),
        ("models", {}, {}, "at least one column=value"),
        (
            "models",
            {"model_id": "m1"},
            {"version": 7},
            "no ledger entry for table 'models' version 7",
        ),
        ("contributions", {"id": 1}, {"partition_key": "gamma"}, "partition 'gamma'"),
    ],
)
def test_proof_errors_are_clear(
    plake: Lake, table: str, key: dict[str, object], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ProofError, match=match):
        inclusion_proof_document(plake, table, key, **kwargs)


def test_proof_refused_when_table_no_longer_matches_its_entry(plake: Lake, tmp_path: Path) -> None:
    """No proof is produced for rows the ledger does not commit to (an edited file)."""
    shutil.copytree(plake.root, tmp_path / "lake")
    lake = Lake(tmp_path / "lake")
    table_dir = Path(lake.root) / "tables" / "models"
    (uri,) = DeltaTable(str(table_dir), version=1).file_uris()
    path = Path(uri.removeprefix("file://"))
    rows = pq.ParquetFile(path).read()
    pq.write_table(rows.set_column(2, "auc", pa.array([0.0] * rows.num_rows)), path)
    # keep the Delta log consistent with the rewritten file (size, no stale stats)
    for commit in (table_dir / "_delta_log").glob("*.json"):
        actions = [json.loads(line) for line in commit.read_text().splitlines()]
        for action in actions:
            if "add" in action and action["add"]["path"] == path.name:
                action["add"]["size"] = path.stat().st_size
                action["add"].pop("stats", None)
        commit.write_text("".join(json.dumps(a) + "\n" for a in actions))
    assert lake.read("models", 1).column("auc").to_pylist() == [0.0] * rows.num_rows
    with pytest.raises(ProofError, match="tables/models v1 no longer matches ledger entry 4"):
        inclusion_proof_document(lake, "models", {"model_id": "m1"})


# --- consistency proofs ---------------------------------------------------------------------


def test_consistency_proofs_for_every_pair(plake: Lake) -> None:
    entries = plake.ledger.entries()
    for new in range(1, LEDGER_SIZE + 1):
        for old in range(1, new + 1):
            doc = json.loads(json.dumps(consistency_proof_document(plake, old, new)))
            assert doc["old_root"] == entries[old - 1].log_root
            assert doc["new_root"] == entries[new - 1].log_root
            ok, message = check_proof_document(doc)
            assert ok, (old, new, message)
            assert message == f"ledger of size {old} is a prefix of size {new}"

            for field in ("old_root", "new_root"):
                for pos in (0, 31):
                    bad = dict(doc, **{field: _flip_hex(doc[field], pos)})
                    assert check_proof_document(bad)[0] is False, (old, new, field, pos)
            for i in range(len(doc["proof"])):
                flipped = [*doc["proof"][:i], _flip_hex(doc["proof"][i]), *doc["proof"][i + 1 :]]
                assert not check_proof_document(dict(doc, proof=flipped))[0], (old, new, i)
                dropped = doc["proof"][:i] + doc["proof"][i + 1 :]
                assert not check_proof_document(dict(doc, proof=dropped))[0], (old, new, i)
            assert not check_proof_document(dict(doc, proof=[*doc["proof"], "00" * 32]))[0]
            # A root from another size of the same ledger is no substitute.
            if old > 1:
                other = entries[old - 2].log_root
                assert not check_proof_document(dict(doc, old_root=other))[0], (old, new)
            if old < new:
                assert not check_proof_document(dict(doc, old_size=new, new_size=old))[0]
                assert not check_proof_document(dict(doc, old_root=doc["new_root"]))[0]


@pytest.mark.parametrize(("old", "new"), [(0, 3), (-1, 2), (4, 3), (1, 7), (7, None)])
def test_consistency_proof_sizes_are_checked(plake: Lake, old: int, new: int | None) -> None:
    with pytest.raises(ProofError, match="sizes must satisfy"):
        consistency_proof_document(plake, old, new)
