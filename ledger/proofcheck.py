"""Standard-library-only checks of RFC 9162 proofs and of OpenLedger proof files.

This module deliberately imports nothing outside the Python standard library, so an
auditor can copy this one file and check a proof without installing the project:

    python proofcheck.py proof.json

Verifiers return False on any malformed or wrong input; they never raise.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from collections.abc import Sequence
from typing import Any

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def root_from_inclusion_proof(
    leaf_hash_value: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes | None:
    """Root implied by an inclusion proof (RFC 9162 §2.1.3.2), or None if malformed."""
    if not (_is_hash(leaf_hash_value) and _is_size(index) and _is_size(size)):
        return None
    if index >= size or not all(_is_hash(p) for p in proof):
        return None
    fn, sn, r = index, size - 1, leaf_hash_value
    for p in proof:
        if sn == 0:
            return None  # proof longer than the path to the root
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None  # proof shorter than the path: not fully consumed
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True iff raw leaf data `leaf` is at `index` of the tree of `size` with `root`."""
    try:
        if not isinstance(leaf, bytes | bytearray) or not _is_hash(root):
            return False
        computed = root_from_inclusion_proof(leaf_hash(bytes(leaf)), index, size, list(proof))
        return computed is not None and computed == root
    except Exception:  # malformed input of any kind is a failed verification
        return False


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True iff the tree (old_size, old_root) is a prefix of (new_size, new_root).

    RFC 9162 §2.1.4.2, with the edge cases of transparency-dev/merkle: equal sizes need an
    empty proof and equal roots; an empty old tree needs an empty proof.
    """
    try:
        proof = list(proof)
        if not (_is_size(old_size) and _is_size(new_size)):
            return False
        if not (_is_hash(old_root) and _is_hash(new_root)):
            return False
        if not all(_is_hash(p) for p in proof) or old_size > new_size:
            return False
        if old_size == new_size:
            return not proof and old_root == new_root
        if old_size == 0:
            return not proof
        if not proof:
            return False
        if old_size & (old_size - 1) == 0:  # exact power of two: old root is a node
            proof = [old_root, *proof]
        fn, sn = old_size - 1, new_size - 1
        while fn & 1:
            fn >>= 1
            sn >>= 1
        fr = sr = proof[0]
        for c in proof[1:]:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                fr = node_hash(c, fr)
                sr = node_hash(c, sr)
                if not fn & 1:
                    while not fn & 1 and fn != 0:
                        fn >>= 1
                        sn >>= 1
            else:
                sr = node_hash(sr, c)
            fn >>= 1
            sn >>= 1
        return fr == old_root and sr == new_root and sn == 0
    except Exception:
        return False


# The fields an entry's leaf encodes, in order (docs/ledger-spec.md §5); ledger.log uses this.
ENTRY_FIELDS = (
    "seq",
    "ledger_version",
    "entry_type",
    "asset_key",
    "partition_key",
    "partition_column",
    "table_uri",
    "table_kind",
    "delta_version",
    "encoding_version",
    "schema_hash",
    "row_key",
    "old_row_count",
    "row_count",
    "data_root",
    "data_range",
    "superseded",
    "prev_log_root",
    "run_id",
    "code_version",
    "committed_at",
    "note",
)
LEDGER_VERSION = 2
ENCODING_VERSION = 1


def schema_hash_of(signature: Any) -> str:
    """Schema hash of [[column name, canonical type], ...] (see ledger.encoding)."""
    doc = {"encoding_version": ENCODING_VERSION, "columns": [list(c) for c in signature]}
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _same(shown: Any, decoded: Any) -> bool:
    if isinstance(decoded, float) and decoded != decoded:  # NaN
        return isinstance(shown, float) and shown != shown
    return type(shown) is type(decoded) and shown == decoded


# --- decoding of the OpenLedger row encoding (docs/ledger-spec.md), for proof files ---

_FIXED = {0x01: 1, 0x02: 8, 0x03: 8, 0x04: 8, 0x07: 8, 0x08: 4, 0x09: 18}


def decode_row(data: bytes) -> list[Any]:
    """Decode one encoded row; see `_decode_row`. Raises ValueError on malformed input."""
    try:
        return _decode_row(data)
    except struct.error as exc:
        raise ValueError(f"truncated row: {exc}") from None


def _decode_row(data: bytes) -> list[Any]:
    """Decode one encoded row (encoding version 1) into Python values.

    Strings come back as str, binary as hex str, timestamps as UTC microseconds,
    dates as days since epoch, decimals as "unscaled/scale" strings.
    Raises ValueError on any malformed input.
    """
    if len(data) < 3 or data[0] != 1:
        raise ValueError("not an encoding-version-1 row")
    (ncols,) = struct.unpack_from(">H", data, 1)
    pos, values = 3, []
    for _ in range(ncols):
        if pos + 2 > len(data):
            raise ValueError("truncated row")
        tag, flag = data[pos], data[pos + 1]
        pos += 2
        if flag not in (0, 1):
            raise ValueError(f"bad null flag {flag}")
        if tag in (0x05, 0x06):
            (length,) = struct.unpack_from(">I", data, pos)
            raw = data[pos + 4 : pos + 4 + length]
            if len(raw) != length:
                raise ValueError("truncated value")
            pos += 4 + length
            value: Any = raw.decode("utf-8") if tag == 0x05 else raw.hex()
        elif tag in _FIXED:
            raw = data[pos : pos + _FIXED[tag]]
            if len(raw) != _FIXED[tag]:
                raise ValueError("truncated value")
            pos += _FIXED[tag]
            if tag == 0x01:
                value = raw != b"\x00"
            elif tag in (0x02, 0x07):
                value = struct.unpack(">q", raw)[0]
            elif tag == 0x03:
                value = struct.unpack(">Q", raw)[0]
            elif tag == 0x04:
                value = struct.unpack(">d", raw)[0]
            elif tag == 0x08:
                value = struct.unpack(">i", raw)[0]
            else:
                value = f"{int.from_bytes(raw[2:], 'big', signed=True)}/{raw[1]}"
        else:
            raise ValueError(f"unknown type tag 0x{tag:02x}")
        values.append(value if flag == 1 else None)
    if pos != len(data):
        raise ValueError("trailing bytes after the last column")
    return values


def _hexes(items: Any) -> list[bytes]:
    if not isinstance(items, list):
        raise ValueError("expected a list of hex strings")
    return [bytes.fromhex(x) for x in items]


def check_proof_document(doc: Any) -> tuple[bool, str]:
    """Check an OpenLedger proof file; returns (ok, explanation)."""
    try:
        kind = doc.get("format")
        if kind == "openledger-consistency-proof/v1":
            ok = verify_consistency(
                doc["old_size"],
                doc["new_size"],
                bytes.fromhex(doc["old_root"]),
                bytes.fromhex(doc["new_root"]),
                _hexes(doc["proof"]),
            )
            return ok, (
                "ledger of size %d is a prefix of size %d"
                if ok
                else "consistency proof does NOT verify (%d -> %d)"
            ) % (doc["old_size"], doc["new_size"])
        if kind == "openledger-contributor-proof/v1":
            return _check_contributor_proof(doc)
        if kind == "openledger-table-consistency-proof/v1":
            return _check_table_consistency(doc)
        if kind != "openledger-inclusion-proof/v1":
            return False, f"unknown proof format {kind!r}"
        data, entry = doc["data"], doc["entry"]
        leaf = bytes.fromhex(data["leaf"])
        data_root = bytes.fromhex(data["root"])
        if not verify_inclusion(leaf, data["index"], data["size"], _hexes(data["path"]), data_root):
            return False, "row is NOT included in the table's data root"
        if list(entry["fields"]) != list(ENTRY_FIELDS):
            return False, "entry field names differ from the ledger's fixed entry layout"
        fields = dict(zip(ENTRY_FIELDS, decode_row(bytes.fromhex(entry["leaf"])), strict=True))
        if fields["data_root"] != data["root"]:
            return False, "ledger entry does not commit to this data root"
        if fields["row_count"] != data["size"]:
            return False, "ledger entry row count differs from the proof's tree size"
        if schema_hash_of(data["schema"]) != fields["schema_hash"]:
            return False, "the proof's column names and types are not the committed schema"
        names = [name for name, _ in data["schema"]]
        shown = doc["row"]
        decoded = decode_row(leaf)
        if list(shown) != names or not all(map(_same, shown.values(), decoded)):
            return False, "the row shown in the proof is not the row its leaf encodes"
        problem = _entry_problem(entry)
        if problem:
            return False, problem
        log_size = entry["log_size"]
        return True, (
            f"row {data['index']} of {data['size']} is in table {fields['table_uri']} "
            f"version {fields['delta_version']}, committed as ledger entry "
            f"{fields['seq']} under log root {entry['log_root']} (size {log_size}); "
            "hold (size, log root) against a signed checkpoint"
        )
    except Exception as exc:  # malformed document
        return False, f"malformed proof document: {exc.__class__.__name__}: {exc}"


def _entry_fields(entry: Any) -> dict[str, Any]:
    if list(entry["fields"]) != list(ENTRY_FIELDS):
        raise ValueError("entry field names differ from the ledger's fixed entry layout")
    return dict(zip(ENTRY_FIELDS, decode_row(bytes.fromhex(entry["leaf"])), strict=True))


def _entry_problem(entry: Any) -> str | None:
    """Why an entry section does not prove its entry is in the stated ledger (None: it
    does): the leaf's seq is its index, it is included under the log root, and the head
    entry binds the log size to that root."""
    fields = _entry_fields(entry)
    if fields["seq"] != entry["index"]:
        return "ledger entry's sequence number differs from its index in the log"
    log_size, log_root = entry["log_size"], bytes.fromhex(entry["log_root"])
    if not verify_inclusion(
        bytes.fromhex(entry["leaf"]), entry["index"], log_size, _hexes(entry["path"]), log_root
    ):
        return "ledger entry is NOT included in the ledger's log root"
    head = entry["head"]  # the last entry binds log_size to log_root
    head_fields = dict(zip(ENTRY_FIELDS, decode_row(bytes.fromhex(head["leaf"])), strict=True))
    if head_fields["seq"] != log_size - 1 or not verify_inclusion(
        bytes.fromhex(head["leaf"]), log_size - 1, log_size, _hexes(head["path"]), log_root
    ):
        return "the log root is not the root of a ledger of the stated size"
    return None


def _check_table_consistency(doc: Any) -> tuple[bool, str]:
    """Two entries of one log table, in one ledger state; the old rows are a prefix."""
    old, new = doc["old"], doc["new"]
    for name, section in (("old", old), ("new", new)):
        problem = _entry_problem(section)
        if problem:
            return False, f"{name} entry: {problem}"
    if (old["log_size"], old["log_root"]) != (new["log_size"], new["log_root"]):
        return False, "the two entries are proved against different ledger states"
    a, b = _entry_fields(old), _entry_fields(new)
    if (a["table_uri"], a["partition_key"]) != (b["table_uri"], b["partition_key"]):
        return False, "the two entries commit different tables"
    if a["table_kind"] != "log" or b["table_kind"] != "log" or a["seq"] > b["seq"]:
        return False, "only an earlier and a later entry of a log table can be consistent"
    ok = verify_consistency(
        a["row_count"],
        b["row_count"],
        bytes.fromhex(a["data_root"]),
        bytes.fromhex(b["data_root"]),
        _hexes(doc["proof"]),
    )
    if not ok:
        return False, "the old rows are NOT a prefix of the new version's rows"
    return True, (
        f"{a['table_uri']} version {a['delta_version']} ({a['row_count']} rows, entry "
        f"{a['seq']}) is a prefix of version {b['delta_version']} ({b['row_count']} rows, "
        f"entry {b['seq']}) under log root {new['log_root']} (size {new['log_size']})"
    )


def _check_contributor_proof(doc: Any) -> tuple[bool, str]:
    """A model's row names its training-set entry; every row proof must be in that entry,
    belong to the contributor, and hang off the same ledger as the model's proof."""
    model = doc["model"]
    ok, message = check_proof_document(model)
    if not ok:
        return False, f"model proof: {message}"
    if model["row"].get("model_id") != doc["model_id"]:
        return False, "the model proof is for another model"
    rows = doc["rows"]
    if not isinstance(rows, list) or not rows:
        return False, "no row proofs"
    for i, proof in enumerate(rows):
        ok, message = check_proof_document(proof)
        if not ok:
            return False, f"row proof {i}: {message}"
        if proof["row"].get("contributor") != doc["contributor"]:
            return False, f"row proof {i} is a row of {proof['row'].get('contributor')!r}"
        if proof["entry"]["index"] != model["row"]["training_ledger_seq"]:
            return False, f"row proof {i} is not in the model's training-set entry"
        if proof["data"]["root"] != model["row"]["training_root"]:
            return False, f"row proof {i} is under another root than the model's training set"
        if proof["entry"]["log_root"] != model["entry"]["log_root"]:
            return False, f"row proof {i} is against another ledger state than the model's"
    indices = [p["data"]["index"] for p in rows]
    if len(set(indices)) != len(indices):
        return False, "the same row is proved twice"
    return True, (
        f"{len(rows)} row(s) of {doc['contributor']} are in the training set of model "
        f"{doc['model_id']} (ledger entry {model['row']['training_ledger_seq']}, root "
        f"{model['row']['training_root']}) under log root {model['entry']['log_root']}"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python proofcheck.py PROOF.json", file=sys.stderr)
        return 2
    try:
        with open(args[0], encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"cannot read proof file: {exc}", file=sys.stderr)
        return 2
    ok, message = check_proof_document(doc)
    print(("OK: " if ok else "FAIL: ") + message)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
