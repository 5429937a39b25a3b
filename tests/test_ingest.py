"""Ingestion of bad and good input: every row lands somewhere, with a defined reason."""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from assets.datanets import SpecError, check_contributor_id, check_datanet_name, parse_spec
from assets.ingest import (
    PAYLOAD_PREFIX_BYTES,
    Submission,
    empty_tables,
    file_sha256,
    inbox_submissions,
    ingest_datanet,
    reconcile,
)
from assets.layout import (
    Registration,
    inbox_dir,
    inside,
    new_contributor_key,
    submit,
    write_registration,
)
from ledger.commitment import row_leaf_hashes

SPEC = """
name: toy
owner: alice
licence: CC-BY-4.0
task: binary
features:
  - {name: x, type: float, min: 0, max: 10}
  - {name: n, type: int, min: 0, max: 5}
  - {name: color, type: category, categories: [red, blue]}
  - {name: note, type: string, nullable: true, max_length: 20}
  - {name: flag, type: bool}
label: {name: y, type: int, categories: [0, 1]}
metric: roc_auc
validation: {kind: bundled, name: breast_cancer}
require_signatures: false
max_file_bytes: 100000
"""
HEADER = "x,n,color,note,flag,y\n"
GOOD = "1.5,2,red,hello,true,0\n"


def spec(**changes: object) -> object:
    doc = parse_spec(SPEC).model_dump(mode="json")
    doc.update(changes)
    return parse_spec(json.dumps(doc))


def submission(path: Path, contributor: str = "ann", hour: int = 0, signature: str | None = None):
    return Submission(
        "toy",
        contributor,
        path,
        file_sha256(path),
        datetime(2026, 1, 1, hour, tzinfo=UTC),
        signature,
        path.name,
    )


def ingest_one(tmp_path: Path, name: str, content: bytes | str, **spec_changes: object):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    result = ingest_datanet(spec(**spec_changes), [submission(path)], {}, empty_tables(spec()))
    assert reconcile(result) == []
    return result


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("nan,2,red,a,true,0\n", "NON_FINITE"),
        ("inf,2,red,a,true,0\n", "NON_FINITE"),
        ("-1,2,red,a,true,0\n", "OUT_OF_RANGE"),
        ("11,2,red,a,true,0\n", "OUT_OF_RANGE"),
        ("abc,2,red,a,true,0\n", "BAD_TYPE"),
        ("1,2.5,red,a,true,0\n", "BAD_TYPE"),
        ("1,2,green,a,true,0\n", "BAD_CATEGORY"),
        ("1,2,red,a,true,7\n", "BAD_CATEGORY"),
        ("1,2,red,a,maybe,0\n", "BAD_TYPE"),
        (",2,red,a,true,0\n", "MISSING_VALUE"),
        ("1,2,red," + "z" * 50 + ",true,0\n", "FIELD_TOO_LARGE"),
    ],
)
def test_bad_rows_are_quarantined_with_a_reason(tmp_path: Path, row: str, reason: str) -> None:
    result = ingest_one(tmp_path, "f.csv", HEADER + GOOD + row)
    assert result.contributions.height == 1
    assert result.quarantine["reason_code"].to_list() == [reason]
    payload = json.loads(result.quarantine["payload"][0])
    assert set(payload) == {"x", "n", "color", "note", "flag", "y"}  # raw row kept


def test_nullable_column_accepts_missing(tmp_path: Path) -> None:
    result = ingest_one(tmp_path, "f.csv", HEADER + "1,2,red,,false,1\n")
    assert result.contributions["note"].to_list() == [None]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.csv", b"", "EMPTY_FILE"),
        ("header.csv", HEADER.encode(), "EMPTY_FILE"),
        ("latin1.csv", (HEADER + "1,2,red,caf\xe9,true,0\n").encode("latin-1"), "BAD_ENCODING"),
        ("missing.csv", b"x,y\n1,0\n", "MISSING_COLUMNS"),
        ("huge.csv", (HEADER + GOOD * 10_000).encode(), "FILE_TOO_LARGE"),
        ("data.xlsx", b"PK\x03\x04", "UNSUPPORTED_FORMAT"),
        ("broken.parquet", b"PAR1 not really", "PARSE_ERROR"),
        ("ragged.csv", (HEADER + "1,2,red\n1,2,red,a,true,0,9,9\n").encode(), "PARSE_ERROR"),
    ],
)
def test_unusable_files_are_quarantined_whole(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    result = ingest_one(tmp_path, name, content)
    assert result.contributions.height == 0
    assert result.quarantine.select("row_index", "reason_code").rows() == [(-1, reason)]
    assert result.batches["status"].to_list() == ["rejected"]


def test_padded_values_are_stripped_and_the_row_hash_is_the_leaf_hash(tmp_path: Path) -> None:
    result = ingest_one(tmp_path, "f.csv", HEADER + GOOD + " 2.5 , 3 , blue , x ,false, 1\n")
    rows = result.contributions
    assert rows.select("x", "n", "color", "note", "y").rows()[1] == (2.5, 3, "blue", "x", 1)
    typed = rows.select("x", "n", "color", "note", "flag", "y")
    assert rows["row_hash"].to_list() == row_leaf_hashes(typed).to_pylist()


def test_extra_columns_are_ignored_and_recorded(tmp_path: Path) -> None:
    result = ingest_one(tmp_path, "f.csv", "extra," + HEADER + "zz," + GOOD)
    assert result.contributions.height == 1
    assert "extra" not in result.contributions.columns
    assert "extra" in result.batches["note"][0]


def test_all_three_formats_agree(tmp_path: Path) -> None:
    frame = pl.read_csv(
        io.StringIO(HEADER + GOOD + "2,3,blue,,false,1\n"), schema_overrides={"note": pl.String}
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    hashes = []
    for name, content in (
        ("a.csv", frame.write_csv().encode()),
        ("a.parquet", buffer.getvalue()),
        ("a.jsonl", frame.write_ndjson().encode()),
    ):
        result = ingest_one(tmp_path, name, content)
        assert result.quarantine.height == 0, result.quarantine
        hashes.append(sorted(result.contributions["row_hash"].to_list()))
    assert hashes[0] == hashes[1] == hashes[2]


def test_jsonl_bad_lines_are_quarantined_individually(tmp_path: Path) -> None:
    lines = [
        '{"x": 1, "n": 1, "color": "red", "flag": true, "y": 0}',
        "{oops",
        "[1, 2]",
        '{"x": "NaN", "n": 1, "color": "red", "flag": true, "y": 0}',
    ]
    result = ingest_one(tmp_path, "a.jsonl", "\n".join(lines) + "\n")
    assert result.contributions.height == 1
    assert sorted(result.quarantine["reason_code"].to_list()) == [
        "NON_FINITE",
        "PARSE_ERROR",
        "PARSE_ERROR",
    ]


def test_duplicates_credit_the_first_contributor(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(HEADER + GOOD + GOOD)  # a repeat inside one file
    second.write_text(HEADER + GOOD + "3,1,blue,x,false,1\n")
    subs = [submission(second, "bob", hour=2), submission(first, "ann", hour=1)]
    ordered = sorted(subs, key=lambda s: s.received_at)
    result = ingest_datanet(spec(), ordered, {}, empty_tables(spec()))
    assert reconcile(result) == []
    owners = dict(
        zip(result.contributions["row_hash"], result.contributions["contributor"], strict=True)
    )
    assert sorted(owners.values()) == ["ann", "bob"]
    dups = result.duplicates.select("contributor", "first_contributor").rows()
    assert sorted(dups) == [("ann", "ann"), ("bob", "ann")]


def test_same_file_twice_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(HEADER + GOOD)
    once = ingest_datanet(spec(), [submission(path)], {}, empty_tables(spec()))
    twice = ingest_datanet(spec(), [submission(path), submission(path)], {}, once)
    assert once.contributions.height == 1 and twice.new_batches == []
    for name in ("contributions", "quarantine", "duplicates", "batches"):
        assert getattr(twice, name).height == 0, name  # nothing new to append


def test_signatures_are_required_and_checked(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    _, public = new_contributor_key(root, "toy", "ann")
    _, other_public = new_contributor_key(root, "toy", "mallory")
    write_registration(root, Registration("toy", "ann", public, datetime.now(UTC)))
    write_registration(root, Registration("toy", "mallory", other_public, datetime.now(UTC)))
    source = tmp_path / "rows.csv"
    source.write_text(HEADER + GOOD)
    submit(root, "toy", "ann", source, submitted_at=datetime(2026, 1, 1, tzinfo=UTC))
    source.write_text(HEADER + "2,2,red,b,true,1\n")
    submit(root, "toy", "ann", source, submitted_at=datetime(2026, 1, 2, tzinfo=UTC), sign=False)
    source.write_text(HEADER + "3,2,red,c,true,1\n")
    forged = submit(root, "toy", "mallory", source, submitted_at=datetime(2026, 1, 3, tzinfo=UTC))
    manifest = forged.path.with_name(forged.path.name + ".manifest.json")
    doc = json.loads(manifest.read_text())
    doc["contributor"] = "ann"  # claim ann's name with mallory's signature
    manifest.write_text(json.dumps(doc))
    source.write_text(HEADER + "4,2,red,d,true,1\n")
    submit(root, "toy", "zed", source, submitted_at=datetime(2026, 1, 4, tzinfo=UTC))
    keys = {"ann": public, "mallory": other_public}
    subs = inbox_submissions(inbox_dir(root, "toy"), "toy")
    result = ingest_datanet(spec(require_signatures=True), subs, keys, empty_tables(spec()))
    assert result.contributions["contributor"].to_list() == ["ann"]
    assert sorted(result.quarantine["reason_code"].to_list()) == [
        "BAD_SIGNATURE",
        "BAD_SIGNATURE",
        "UNKNOWN_CONTRIBUTOR",
    ]
    assert reconcile(result) == []


def test_malformed_manifests_are_quarantined(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text(HEADER + GOOD)
    (inbox / "a.csv.manifest.json").write_text('{"contributor": "../root"}')
    (inbox / "b.manifest.json").write_text('{"contributor": "ann", "file": "../../etc/passwd"}')
    (inbox / "c.manifest.json").write_text("not json")
    subs = inbox_submissions(inbox, "toy")
    result = ingest_datanet(spec(), subs, {}, empty_tables(spec()))
    assert result.contributions.height == 0
    assert result.quarantine["reason_code"].to_list() == ["BAD_MANIFEST"] * 3


@pytest.mark.parametrize(
    "name",
    ["../x", "/abs", "", "A" * 41, "bad\nname", "wine/../..", ".", "con tains space", "Upper"],
)
def test_hostile_datanet_names_are_refused(name: str) -> None:
    with pytest.raises(SpecError, match="invalid Datanet name"):
        check_datanet_name(name)


@pytest.mark.parametrize("name", ["../x", "/abs", "", "a" * 64, "x\x00y", "a/b", "..", ".hidden"])
def test_hostile_contributor_ids_are_refused(name: str) -> None:
    with pytest.raises(SpecError, match="invalid contributor id"):
        check_contributor_id(name)


def test_paths_never_leave_the_lake(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="escapes the lake root"):
        inside(tmp_path, "..", "outside")
    with pytest.raises(SpecError):
        inbox_dir(tmp_path, "../outside")


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5)),
            st.one_of(st.integers(-3, 8), st.just("")),
            st.sampled_from(["red", "blue", "green", ""]),
            st.booleans(),
            st.sampled_from(["0", "1", "2", "x"]),
        ),
        max_size=30,
    )
)
def test_nothing_is_lost(tmp_path: Path, rows: list[tuple]) -> None:
    """Whatever the rows, every one ends in exactly one table and the counts reconcile."""
    frame = pl.DataFrame(
        {
            "x": [str(r[0]) for r in rows],
            "n": [str(r[1]) for r in rows],
            "color": [r[2] for r in rows],
            "note": ["n"] * len(rows),
            "flag": [str(r[3]).lower() for r in rows],
            "y": [r[4] for r in rows],
        },
        schema={c: pl.String for c in ("x", "n", "color", "note", "flag", "y")},
    )
    path = tmp_path / "h.csv"
    path.write_text(frame.write_csv())
    result = ingest_datanet(spec(), [submission(path)], {}, empty_tables(spec()))
    assert reconcile(result) == []
    if rows:
        landed = result.contributions.height + result.quarantine.height + result.duplicates.height
        assert landed == len(rows)
        indices = sorted(
            [
                *result.contributions["row_index"],
                *result.quarantine["row_index"],
                *result.duplicates["row_index"],
            ]
        )
        assert indices == list(range(len(rows)))


# --- contribute reads only regular files (no symlinks, FIFOs, devices, folders) -------------


def toy_lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "toy.yaml").write_text(SPEC)
    return root


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_submit_refuses_anything_but_a_regular_file(tmp_path: Path, kind: str) -> None:
    root = toy_lake(tmp_path)
    target = tmp_path / "secret.csv"
    target.write_text(HEADER + GOOD)
    path = tmp_path / "rows.csv"
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block without a writer
    else:
        path.mkdir()
    expected = "symbolic link" if kind == "symlink" else "not a regular file"
    with pytest.raises(SpecError, match=expected):
        submit(root, "toy", "ann", path, sign=False)
    inbox = inbox_dir(root, "toy")
    assert not inbox.exists() or list(inbox.iterdir()) == []  # nothing copied


# --- quarantine keeps a bounded payload: a prefix, the full length and its SHA-256 ----------


def test_a_huge_rejected_field_is_stored_capped_with_length_and_hash(tmp_path: Path) -> None:
    huge = "z" * 3_000_000 + "é"  # a few MB in a column of at most 20 characters
    result = ingest_one(
        tmp_path, "f.csv", HEADER + GOOD + f"1,2,red,{huge},true,0\n", max_file_bytes=10**7
    )
    row = result.quarantine.row(0, named=True)
    assert row["reason_code"] == "FIELD_TOO_LARGE"
    full = json.dumps(
        {"x": "1", "n": "2", "color": "red", "note": huge, "flag": "true", "y": "0"},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    stored = row["payload"].encode()
    assert len(stored) <= PAYLOAD_PREFIX_BYTES and full.startswith(stored)
    assert len(stored) > PAYLOAD_PREFIX_BYTES - 4  # cut at a character, not far short
    assert row["payload_bytes"] == len(full)
    assert row["payload_sha256"] == hashlib.sha256(full).hexdigest()


def test_a_huge_bad_json_line_is_stored_capped_with_length_and_hash(tmp_path: Path) -> None:
    good = '{"x": 1, "n": 1, "color": "red", "flag": true, "y": 0}'
    line = '{"x": 1, "note": "' + "q" * 2_000_000  # never closed: not JSON
    result = ingest_one(tmp_path, "a.jsonl", f"{good}\n{line}\n", max_file_bytes=10**7)
    row = result.quarantine.row(0, named=True)
    assert row["reason_code"] == "PARSE_ERROR" and row["row_index"] == 1
    assert row["payload"] == line[:PAYLOAD_PREFIX_BYTES]
    assert row["payload_bytes"] == len(line.encode())
    assert row["payload_sha256"] == hashlib.sha256(line.encode()).hexdigest()


def test_small_payloads_are_kept_whole_with_their_length_and_hash(tmp_path: Path) -> None:
    result = ingest_one(tmp_path, "f.csv", HEADER + "abc,2,red,a,true,0\n")
    rejected = ingest_one(tmp_path, "empty.csv", b"")
    for row in (result.quarantine.row(0, named=True), rejected.quarantine.row(0, named=True)):
        full = row["payload"].encode()
        assert json.loads(full)  # whole, still JSON
        assert row["payload_bytes"] == len(full)
        assert row["payload_sha256"] == hashlib.sha256(full).hexdigest()
