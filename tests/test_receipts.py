"""Credit order comes from the lake's receipts, never from a time the submitter writes.

A copier who submits an author's rows after the author must get duplicates credited to the
author, whatever `submitted_at` they claim (backdated, future-dated, or re-signed by hand
after the receipt); every submission gets one ledgered receipt with a contiguous number.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.datanets import load_spec
from assets.ingest import MANIFEST_SUFFIX, empty_tables, file_sha256, ingest_datanet
from assets.layout import (
    Registration,
    deliver,
    inbox_dir,
    key_path,
    new_contributor_key,
    prepare,
    signer,
    spec_path,
    submit,
    write_registration,
)
from assets.receipts import read_receipts, receipted_submissions, with_receipts
from ledger.lake import Lake
from ledger.verify import verify_entry_data, verify_lake
from openledger_pipelines.pending import pending_work, unrecorded_inbox
from openledger_pipelines.runner import run_datanets

SPEC = """
name: toy
owner: tests
licence: CC0-1.0
task: binary
features:
  - {name: x, type: float, min: 0, max: 100}
label: {name: y, type: int, categories: [0, 1]}
metric: roc_auc
validation: {kind: bundled, name: breast_cancer}
require_signatures: true
"""
ROWS = "x,y\n1.5,0\n2.5,1\n3.5,1\n4.5,0\n"
INGEST = ["contributions", "quarantine", "duplicates", "batches"]
AUTHOR_CLAIM = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A lake with the `toy` Datanet and two registered contributors with keys."""
    lake = tmp_path / "lake"
    (lake / "specs").mkdir(parents=True)
    (lake / "specs" / "toy.yaml").write_text(SPEC)
    for who in ("ann", "mallory"):
        _, public = new_contributor_key(lake, "toy", who)
        write_registration(lake, Registration("toy", who, public, datetime.now(UTC)))
    return lake


def source(tmp_path: Path, name: str, text: str = ROWS) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def ingested(root: Path) -> dict[str, pl.DataFrame]:
    """Run the Datanet's ingest asset through Dagster; its tables as written."""
    assert run_datanets(root, dg.DagsterInstance.ephemeral(), ["toy"], assets=INGEST)["toy"]
    lake = Lake(root)
    tables = {t: pl.DataFrame(pl.from_arrow(lake.read(t))) for t in ("batches", "duplicates")}
    tables["contributions"] = pl.DataFrame(pl.from_arrow(lake.read("contributions_toy")))
    return tables


def resign(root: Path, manifest: Path, who: str, claimed: str) -> None:
    """Rewrite a manifest with another claimed time and a valid signature by `who`: what a
    submitter with write access to the inbox could do after their receipt."""
    from assets.ingest import signing_message

    doc = json.loads(manifest.read_text())
    doc["submitted_at"] = claimed
    message = signing_message("toy", who, doc["sha256"], doc["file"], claimed)
    doc["signature"] = signer(key_path(root, "toy", who), who)(message)
    manifest.write_text(json.dumps(doc))


@pytest.mark.parametrize("attack", ["backdated", "future-dated", "re-signed"])
def test_credit_stays_with_the_earlier_receipt(root: Path, tmp_path: Path, attack: str) -> None:
    author_claim = datetime(2100, 1, 1, tzinfo=UTC) if attack == "future-dated" else AUTHOR_CLAIM
    submit(root, "toy", "ann", source(tmp_path, "mine.csv"), submitted_at=author_claim)
    copier_claim = datetime(2000, 1, 1, tzinfo=UTC) if attack == "backdated" else None
    copy = submit(root, "toy", "mallory", source(tmp_path, "copy.csv"), submitted_at=copier_claim)
    if attack == "re-signed":  # after the receipt, the copier backdates and re-signs by hand
        manifest = copy.path.with_name(copy.path.name + MANIFEST_SUFFIX)
        resign(root, manifest, "mallory", "2000-01-01T00:00:00+00:00")
    tables = ingested(root)
    rows = ROWS.count("\n") - 1
    assert tables["contributions"]["contributor"].to_list() == ["ann"] * rows
    copied = tables["duplicates"]
    assert copied.height == rows and set(copied["contributor"]) == {"mallory"}
    assert set(copied["first_contributor"]) == {"ann"}
    seq = dict(tables["batches"].select("contributor", "receipt_seq").iter_rows())
    assert seq["ann"] == 0
    assert seq["mallory"] == (2 if attack == "re-signed" else 1)  # re-signed: received again
    if attack == "re-signed":
        receipts = read_receipts(Lake(root), "toy")
        assert receipts["received_by"].to_list() == ["contribute", "contribute", "ingest"]


def test_every_submission_has_one_ledgered_receipt_numbered_without_gaps(
    root: Path, tmp_path: Path
) -> None:
    lake = Lake(root)
    submit(root, "toy", "ann", source(tmp_path, "a.csv", "x,y\n1,0\n"))
    both = [
        prepare(root, "toy", "mallory", source(tmp_path, "b.csv", "x,y\n2,0\n")),
        prepare(root, "toy", "ann", source(tmp_path, "c.csv", "x,y\n3,0\n")),
    ]
    deliver(root, "toy", both)
    inbox = inbox_dir(root, "toy")
    (inbox / "dropped.csv").write_text("x,y\n4,1\n")  # by hand, past `contribute`
    (inbox / f"dropped.csv{MANIFEST_SUFFIX}").write_text('{"contributor": "ann"}')
    subs, late = receipted_submissions(lake, inbox, "toy")
    assert late == 1

    receipts = read_receipts(lake, "toy")
    assert receipts["receipt_seq"].to_list() == list(range(4))
    assert receipts["file_name"].to_list() == [s.file_name for s in subs]
    assert receipts["file_name"][3] == "dropped.csv"
    assert receipts["received_by"].to_list() == ["contribute"] * 3 + ["ingest"]
    assert receipts["received_at"].is_sorted() and receipts["received_at"].n_unique() == 4
    for row in receipts.iter_rows(named=True):
        assert row["batch_id"] == file_sha256(inbox / row["file_name"])
    entries = [e for e in lake.ledger.entries() if e.table_uri == lake.table_uri("receipts")]
    assert [e.row_count for e in entries] == [1, 3, 4]  # one append per delivery
    assert all(e.partition_key == "toy" and verify_entry_data(lake, e) == [] for e in entries)
    assert verify_lake(lake).ok


def test_receipt_order_is_deterministic(root: Path, tmp_path: Path) -> None:
    lake = Lake(root)
    inbox = inbox_dir(root, "toy")
    inbox.mkdir(parents=True)
    # dropped by hand: claimed times in the opposite order of the names
    for name, year in (("c", 2001), ("a", 2003), ("b", 2002)):
        (inbox / f"{name}.csv").write_text(f"x,y\n{year - 2000},0\n")
        claim = {"contributor": "ann", "submitted_at": f"{year}-01-01T00:00:00+00:00"}
        (inbox / f"{name}.csv{MANIFEST_SUFFIX}").write_text(json.dumps(claim))
    subs, late = receipted_submissions(lake, inbox, "toy")
    assert late == 3 and [s.file_name for s in subs] == ["a.csv", "b.csv", "c.csv"]
    assert [s.receipt_seq for s in subs] == [0, 1, 2]
    again, late = receipted_submissions(lake, inbox, "toy")
    assert late == 0 and again == subs
    receipts = read_receipts(lake, "toy")
    assert with_receipts(list(reversed(subs)), receipts) == subs


def test_the_same_file_twice_is_received_once(root: Path, tmp_path: Path) -> None:
    rows = source(tmp_path, "a.csv")
    first = submit(root, "toy", "ann", rows)
    second = submit(root, "toy", "ann", rows, submitted_at=datetime(2000, 1, 1, tzinfo=UTC))
    assert first.new and not second.new
    assert (second.path, second.receipt_seq) == (first.path, first.receipt_seq)
    assert read_receipts(Lake(root), "toy").height == 1
    manifest = json.loads((first.path.parent / (first.path.name + MANIFEST_SUFFIX)).read_text())
    assert manifest["submitted_at"] != "2000-01-01T00:00:00+00:00"  # not overwritten


def quarantined(root: Path) -> list[tuple[str, str]]:
    """(reason code, message) of each file ingestion refuses in the lake's inbox."""
    spec = load_spec(spec_path(root, "toy"))
    keys = {"ann": json.loads(key_path(root, "toy", "ann").read_text())["public_key"]}
    subs, _ = receipted_submissions(Lake(root), inbox_dir(root, "toy"), "toy")
    result = ingest_datanet(spec, subs, keys, empty_tables(spec))
    return result.quarantine.select("reason_code", "message").rows()


def manifest_of(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


@pytest.mark.parametrize("edit", ["submitted_at", "file", "sha256"])
def test_the_signature_covers_every_manifest_field(root: Path, tmp_path: Path, edit: str) -> None:
    sent = submit(root, "toy", "ann", source(tmp_path, "a.csv"), submitted_at=AUTHOR_CLAIM)
    manifest = manifest_of(sent.path)
    doc = json.loads(manifest.read_text())
    if edit == "submitted_at":
        doc["submitted_at"] = "2000-01-01T00:00:00+00:00"
    elif edit == "file":  # the same bytes under another name
        renamed = sent.path.with_name("renamed.csv")
        renamed.write_bytes(sent.path.read_bytes())
        doc["file"] = renamed.name
        manifest.unlink()
        manifest = manifest_of(renamed)
    else:  # another file's hash, with that file in place
        sent.path.write_text(ROWS + "9.5,1\n")
        doc["sha256"] = file_sha256(sent.path)
    manifest.write_text(json.dumps(doc))
    [(reason, message)] = quarantined(root)
    assert reason == "BAD_SIGNATURE" and "does not match ann's registered key" in message


def test_version_1_signatures_are_refused_with_a_clear_reason(root: Path) -> None:
    inbox = inbox_dir(root, "toy")
    inbox.mkdir(parents=True)
    (inbox / "old.csv").write_text(ROWS)
    batch = file_sha256(inbox / "old.csv")
    v1 = f"openledger-contribution/v1\ntoy\nann\n{batch}\n".encode()
    signature = signer(key_path(root, "toy", "ann"), "ann")(v1)  # valid, for version 1
    doc = {"contributor": "ann", "file": "old.csv", "signature": signature}
    (inbox / f"old.csv{MANIFEST_SUFFIX}").write_text(json.dumps(doc))
    [(reason, message)] = quarantined(root)
    assert reason == "BAD_SIGNATURE" and "version 1 signature" in message
    assert "submit the file again" in message


def test_pending_work_sees_contributed_and_dropped_files(root: Path, tmp_path: Path) -> None:
    lake = Lake(root)
    assert unrecorded_inbox(lake, "toy") == []
    sent = submit(root, "toy", "ann", source(tmp_path, "a.csv"))  # ledgers a receipt
    inbox = inbox_dir(root, "toy")
    (inbox / "dropped.csv").write_text("x,y\n7,1\n")
    (inbox / f"dropped.csv{MANIFEST_SUFFIX}").write_text('{"contributor": "ann"}')
    expected = sorted([manifest_of(sent.path).name, f"dropped.csv{MANIFEST_SUFFIX}"])
    assert unrecorded_inbox(lake, "toy") == expected
    assert "2 new inbox file(s)" in pending_work(lake, "toy").reasons
    ingested(root)
    assert unrecorded_inbox(lake, "toy") == []
    assert not any("inbox" in reason for reason in pending_work(lake, "toy").reasons)
