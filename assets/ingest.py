"""Ingestion: every row of every submitted file ends in contributions, quarantine or duplicates.

A submission is a file (CSV, Parquet or JSON Lines) in a Datanet's inbox with a manifest
naming its contributor and, where the spec requires it, an Ed25519 signature over every
manifest field (`signing_message`). Submissions are ingested in the order the lake
received them (`assets.receipts`), never in an order the submitter wrote. Each file is
read as text columns; the rows of every file of a run are then stacked and, in one
vectorized polars pass, validated against the spec, typed, hashed (the row hash is the
RFC 9162 leaf hash of the row's typed spec columns) and split three ways:

- accepted rows → `contributions` (typed columns + contributor, batch, received time, hash);
- rejected rows → `quarantine` with a reason code, a message and the raw row as JSON; a
  file that cannot be used at all is quarantined whole (row_index = -1);
- exact duplicates (same row hash) → `duplicates`, credited to the first contributor.

Counts reconcile per batch: rows_in = accepted + quarantined + duplicates. Re-submitting a
file already ingested for the same contributor changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from assets.datanets import Column, DatanetSpec, SpecError, check_contributor_id
from ledger.commitment import row_leaf_hashes
from ledger.hashing import sha256_binary
from ledger.storage import LakePath

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 2  # manifests without a `version` field are version 1
WHOLE_FILE = -1
# Working columns start with NUL, which no spec column name (nor sane header) holds, so a
# file's own columns can never collide with them.
FILE = "\x00file"  # a row's file: its index among the run's pending submissions
REASON = "\x00reason"
TYPED = "\x00typed:"  # + lake column: the value parsed to its spec type
FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}

# Reason codes (docs/ingestion.md). File-level reasons quarantine the whole file.
FILE_REASONS = (
    "BAD_MANIFEST",
    "UNKNOWN_CONTRIBUTOR",
    "BAD_SIGNATURE",
    "UNSUPPORTED_FORMAT",
    "FILE_TOO_LARGE",
    "EMPTY_FILE",
    "BAD_ENCODING",
    "PARSE_ERROR",
    "MISSING_COLUMNS",
)
ROW_REASONS = (
    "PARSE_ERROR",
    "MISSING_VALUE",
    "BAD_TYPE",
    "NON_FINITE",
    "OUT_OF_RANGE",
    "BAD_CATEGORY",
    "FIELD_TOO_LARGE",
)

HASH_PREFIX = "hash_prefix"
META_SCHEMA = {
    "datanet": pl.String,
    "contributor": pl.String,
    "batch_id": pl.String,
    "received_at": pl.Datetime("us", "UTC"),
    "row_index": pl.Int64,
}
# A rejected row's payload is its raw JSON cut to a prefix; the length and SHA-256 of the
# whole payload are kept beside it, so a huge field is never stored (nor ledgered) in full
# and the inbox file still proves what was rejected (docs/ingestion.md).
PAYLOAD_PREFIX_BYTES = 1024
RAW_QUARANTINE_SCHEMA = {"reason_code": pl.String, "message": pl.String, "payload": pl.String}
QUARANTINE_ROW_SCHEMA = {
    **RAW_QUARANTINE_SCHEMA,
    "payload_bytes": pl.Int64,
    "payload_sha256": pl.String,
}
QUARANTINE_SCHEMA = {**META_SCHEMA, **QUARANTINE_ROW_SCHEMA}
DUPLICATES_SCHEMA = {
    **META_SCHEMA,
    "row_hash": pl.String,
    "first_contributor": pl.String,
    "first_batch_id": pl.String,
}
BATCHES_SCHEMA = {
    "datanet": pl.String,
    "contributor": pl.String,
    "batch_id": pl.String,
    "file_name": pl.String,
    "receipt_seq": pl.Int64,  # the lake's receipt: the order that decides credit
    "received_at": pl.Datetime("us", "UTC"),
    "status": pl.String,
    "rows_in": pl.Int64,
    "accepted": pl.Int64,
    "quarantined": pl.Int64,
    "duplicates": pl.Int64,
    "note": pl.String,
}


class FileRejected(Exception):
    """A whole file is unusable; it is quarantined as one row with this reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Submission:
    """One inbox file and what its manifest says about it. `received_at` and `receipt_seq`
    come from the lake's receipt (`assets.receipts`); `claimed_at` is the manifest's
    `submitted_at` as written: signed, kept, never used to order anything."""

    datanet: str
    contributor: str
    path: Path
    batch_id: str
    received_at: datetime
    signature: str | None
    file_name: str
    manifest_problem: str | None = None
    claimed_at: str | None = None
    manifest_version: int = MANIFEST_VERSION
    manifest_sha256: str = ""
    receipt_seq: int | None = None


def contributions_schema(spec: DatanetSpec) -> dict[str, pl.DataType]:
    """Columns of a Datanet's contributions table, in order (lake columns)."""
    typed = {c.identifier: c.polars_type() for c in spec.columns}
    return {**META_SCHEMA, "row_hash": pl.String(), HASH_PREFIX: pl.Int64(), **typed}


def signing_message(
    datanet: str, contributor: str, batch_id: str, file_name: str, submitted_at: str | None
) -> bytes:
    """What a contributor signs (manifest v2): every manifest field that is kept — the
    Datanet, contributor, file hash, file name and the claimed submission time as written
    (empty when absent) — so no field can be changed without the contributor's key and a
    signed file cannot be replayed under another Datanet, name or time. Each field is one
    line: names are checked to hold no control character, and a time has none."""
    fields = (datanet, contributor, batch_id, file_name, submitted_at or "")
    return ("openledger-contribution/v2\n" + "".join(f"{f}\n" for f in fields)).encode()


def file_sha256(path: Path | LakePath) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the inbox -----------------------------------------------------------------------------


def _file_name(named: object) -> str:
    """The data file a manifest names: a plain file name in the same folder."""
    if not isinstance(named, str) or Path(named).name != named or named in ("", ".", ".."):
        raise ValueError(f"file {named!r} must be a plain file name in the inbox")
    if any(ord(c) < 32 or ord(c) == 127 for c in named):
        raise ValueError(f"file {named!r} holds a control character")
    return named


def _manifest_fields(doc: object) -> tuple[str, str | None, str | None, int, str | None]:
    """(contributor, signature, claimed time, version, file name or None) of a manifest;
    ValueError/SpecError saying what is wrong with it."""
    if not isinstance(doc, dict):
        raise ValueError("manifest must be a JSON object")
    contributor = check_contributor_id(doc.get("contributor"))
    signature = doc.get("signature")
    if signature is not None and not isinstance(signature, str):
        raise ValueError("signature must be a hex string")
    version = doc.get("version", 1)
    if version not in (1, MANIFEST_VERSION) or isinstance(version, bool):
        raise ValueError(f"unknown manifest version {version!r}")
    claimed = doc.get("submitted_at")
    if claimed is not None:
        if not isinstance(claimed, str):
            raise ValueError("submitted_at must be an ISO 8601 string")
        datetime.fromisoformat(claimed)  # a claim, but a well-formed one
    named = doc.get("file")
    return contributor, signature, claimed, version, None if named is None else _file_name(named)


def read_manifest(datanet: str, manifest: Path) -> Submission:
    """A Submission from `<file>.manifest.json`; problems are kept, not raised. Its
    `received_at` is a placeholder (the manifest's modification time) until a receipt
    gives it the lake's time."""
    received = datetime.fromtimestamp(manifest.stat().st_mtime, UTC)
    problem, claimed, version, declared = None, None, 1, None
    contributor, signature, file_name = "<invalid>", None, manifest.name[: -len(MANIFEST_SUFFIX)]
    raw = b""
    try:
        raw = manifest.read_bytes()
        doc = json.loads(raw.decode("utf-8"))
        contributor, signature, claimed, version, named = _manifest_fields(doc)
        file_name = named or file_name
        declared = doc.get("sha256")
    except (ValueError, SpecError, TypeError, OSError) as exc:
        problem = f"unusable manifest {manifest.name}: {exc}"
    path = manifest.parent / file_name
    try:
        batch_id = file_sha256(path)
    except OSError as exc:
        problem = problem or f"data file {file_name!r} named by the manifest is missing: {exc}"
        batch_id = hashlib.sha256(raw).hexdigest()
    if not problem and declared is not None and declared != batch_id:
        problem = f"manifest {manifest.name}: sha256 {declared!r} is not the file's {batch_id}"
    return Submission(
        datanet,
        contributor,
        path,
        batch_id,
        received,
        signature,
        file_name,
        problem,
        claimed,
        version,
        hashlib.sha256(raw).hexdigest(),
    )


def inbox_submissions(
    inbox: Path, datanet: str, recorded: Collection[tuple[str, str]] = ()
) -> list[Submission]:
    """Every manifest in a Datanet's inbox, by manifest name (deterministic), except those
    whose (contributor, file name) is `recorded` already (ingested: not read or hashed
    again, so a run costs what is new). Credit order is not decided here:
    `assets.receipts.with_receipts` orders them by receipt."""
    if not inbox.is_dir():
        return []
    subs = []
    for manifest in sorted(inbox.glob(f"*{MANIFEST_SUFFIX}")):
        if recorded and _named(manifest) in recorded:
            continue
        subs.append(read_manifest(datanet, manifest))
    return subs


def _named(manifest: Path) -> tuple[str, str] | None:
    """(contributor, file) a manifest names, read without checking or hashing anything."""
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        return (str(doc["contributor"]), str(doc["file"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --- reading a file as text columns ---------------------------------------------------------


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def read_text_columns(path: Path, max_bytes: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows as all-String columns + row_index, unparseable lines) or FileRejected."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise FileRejected(
            "UNSUPPORTED_FORMAT",
            f"{path.name}: use .csv, .parquet or .jsonl (got {suffix or 'none'})",
        )
    size = path.stat().st_size
    if size > max_bytes:
        raise FileRejected("FILE_TOO_LARGE", f"{path.name} is {size} bytes; limit {max_bytes}")
    if size == 0:
        raise FileRejected("EMPTY_FILE", f"{path.name} is empty")
    bad_lines = pl.DataFrame(
        schema={"row_index": pl.Int64, "message": pl.String, "payload": pl.String}
    )
    fmt = FORMATS[suffix]
    try:
        if fmt == "parquet":
            frame = pl.read_parquet(io.BytesIO(path.read_bytes()))
            frame = frame.select(pl.all().cast(pl.String))
        else:
            data = path.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FileRejected("BAD_ENCODING", f"{path.name} is not UTF-8: {exc}") from None
            if fmt == "csv":
                frame = pl.read_csv(data, infer_schema=False)  # decoded only to check UTF-8
            else:
                frame, bad_lines = _read_jsonl(text)
    except FileRejected:
        raise
    except (pl.exceptions.PolarsError, ValueError, OSError) as exc:  # parser failures
        raise FileRejected("PARSE_ERROR", f"{path.name}: {exc.__class__.__name__}: {exc}") from None
    if frame.height == 0 and bad_lines.height == 0:
        raise FileRejected("EMPTY_FILE", f"{path.name} has no rows")
    if "row_index" not in frame.columns:
        frame = frame.with_row_index("row_index").with_columns(pl.col("row_index").cast(pl.Int64))
    return frame, bad_lines


def _read_jsonl(text: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows: list[dict[str, str | None]] = []
    bad: list[dict[str, object]] = []
    index = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict):
                raise ValueError("a line must hold a JSON object")
            rows.append({"row_index": index, **{str(k): _as_text(v) for k, v in doc.items()}})
        except ValueError as exc:
            bad.append(
                {
                    "row_index": index,
                    "message": f"line {index + 1}: {exc}",
                    "payload": line,  # capped with every payload (`capped_payloads`)
                }
            )
        index += 1
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    schema = {c: (pl.Int64 if c == "row_index" else pl.String) for c in columns or ["row_index"]}
    frame = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    bad_frame = pl.DataFrame(
        bad, schema={"row_index": pl.Int64, "message": pl.String, "payload": pl.String}
    )
    return frame, bad_frame


# --- validation -----------------------------------------------------------------------------


def _typed_value(col: Column, strip: bool = True) -> pl.Expr:
    """The column's text parsed to its spec type (null where it does not parse or is blank:
    a missing value is null whatever the type); `strip=False` parses a number as it is."""
    text = pl.col(col.name).str.strip_chars() if strip else pl.col(col.name)
    if col.type == "float":
        return text.cast(pl.Float64, strict=False)
    if col.type == "int":
        return text.cast(pl.Int64, strict=False)
    if col.type == "bool":
        lowered = text.str.to_lowercase()
        return (
            pl.when(lowered.is_in(["true", "1", "yes"]))
            .then(True)
            .when(lowered.is_in(["false", "0", "no"]))
            .then(False)
            .otherwise(None)
            .cast(pl.Boolean)
        )
    return pl.when(text != "").then(text)


def _plainly_valid(col: Column) -> pl.Expr:
    """True where the value passes every rule of `_reason` by a cheap test (present, short
    in bytes, finite, in range and categories); other rows get the full, ordered checks."""
    value = pl.col(TYPED + col.identifier)
    valid = value.is_not_null() & (pl.col(col.name).str.len_bytes() <= col.max_length)
    if col.type == "float":
        valid &= value.is_finite()
    if col.min is not None:
        valid &= value >= col.min
    if col.max is not None:
        valid &= value <= col.max
    if col.categories is not None:
        valid &= value.cast(pl.String).is_in([str(c) for c in col.categories])
    return valid


def _reason(col: Column) -> pl.Expr:
    """`CODE|message` for the first rule the row breaks in this column, else null.

    Works on the typed value made by `validate_rows` (`TYPED`), so each value is parsed
    once; messages are literals naming the column as files spell it, the raw row is in
    the payload.
    """
    name = col.name
    raw, value = pl.col(name), pl.col(TYPED + col.identifier)
    missing = raw.is_null() | (raw.str.strip_chars() == "")
    reason = (
        pl.when(missing & (not col.nullable))
        .then(pl.lit(f"MISSING_VALUE|{name}: missing value"))
        .when(missing)
        .then(None)
        .when(raw.str.len_chars() > col.max_length)
        .then(pl.lit(f"FIELD_TOO_LARGE|{name}: longer than {col.max_length}"))
        .when(value.is_null())
        .then(pl.lit(f"BAD_TYPE|{name}: not a valid {col.type}"))
    )
    if col.type == "float":
        reason = reason.when(~value.is_finite()).then(
            pl.lit(f"NON_FINITE|{name}: NaN or infinite value")
        )
    if col.min is not None:
        reason = reason.when(value < col.min).then(
            pl.lit(f"OUT_OF_RANGE|{name}: below minimum {col.min}")
        )
    if col.max is not None:
        reason = reason.when(value > col.max).then(
            pl.lit(f"OUT_OF_RANGE|{name}: above maximum {col.max}")
        )
    if col.categories is not None:
        allowed = [str(c) for c in col.categories]
        reason = reason.when(~value.cast(pl.String).is_in(allowed)).then(
            pl.lit(f"BAD_CATEGORY|{name}: not one of {allowed[:10]}")
        )
    return reason.otherwise(None)


def conform_columns(raw: pl.DataFrame, spec: DatanetSpec) -> tuple[pl.DataFrame, list[str]]:
    """(raw as [row_index, spec columns, extra columns], extra column names), absent nullable
    columns as nulls, so that files with the same extras stack into one frame and are
    validated at once; FileRejected when a required column is absent."""
    present = set(raw.columns) - {"row_index"}
    names = [c.name for c in spec.columns]
    missing = [c.name for c in spec.columns if not c.nullable and c.name not in present]
    if missing:
        raise FileRejected(
            "MISSING_COLUMNS", f"missing column(s) {missing}; the spec needs {names}"
        )
    extra = sorted(present - set(names))
    columns = [pl.col(n) if n in present else pl.lit(None, pl.String).alias(n) for n in names]
    return raw.select(pl.col("row_index").cast(pl.Int64), *columns, *extra), extra


def validate_rows(
    frame: pl.DataFrame, extra: Sequence[str], spec: DatanetSpec
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(typed valid rows, rejected rows [reason_code, message, payload]) of a frame made by
    `conform_columns` (or a stack of them); both keep the id columns (`FILE` if present,
    row_index) first. Valid rows carry lake columns (`Column.identifier`), the payload
    the file's own headers. Every value is parsed once; the ordered rule chain that names
    the reason runs only on the few rows that fail the cheap test."""
    ids = [c for c in (FILE, "row_index") if c in frame.columns]
    numbers = [c for c in spec.columns if c.type in ("float", "int")]
    parsed = frame.with_columns(
        _typed_value(c, strip=c not in numbers).alias(TYPED + c.identifier) for c in spec.columns
    )  # unstripped, a padded number fails the cheap test and is parsed again below
    plain = parsed.select(pl.all_horizontal(_plainly_valid(c) for c in spec.columns))
    suspects = plain.to_series().fill_null(False).not_().arg_true()
    reasons = (
        parsed[suspects]
        .with_columns(_typed_value(c).alias(TYPED + c.identifier) for c in numbers)
        .select(pl.coalesce(_reason(c) for c in spec.columns).alias(REASON), pl.all())
    )
    keep = pl.repeat(True, frame.height, eager=True).scatter(suspects, reasons[REASON].is_null())
    good = (
        parsed.with_columns(
            parsed[TYPED + c.identifier].scatter(suspects, reasons[TYPED + c.identifier])
            for c in numbers
        )
        .filter(keep)
        .select(
            *ids,
            *[
                pl.col(TYPED + c.identifier).cast(c.polars_type()).alias(c.identifier)
                for c in spec.columns
            ],
        )
    )
    split = pl.col(REASON).str.split_exact("|", 1)
    bad = reasons.filter(pl.col(REASON).is_not_null()).select(
        *ids,
        split.struct.field("field_0").alias("reason_code"),
        split.struct.field("field_1").alias("message"),
        pl.struct([c.name for c in spec.columns] + list(extra))
        .struct.json_encode()
        .alias("payload"),
    )
    return good, bad


def _prefix(text: str) -> str:
    """The longest prefix of `text` of at most PAYLOAD_PREFIX_BYTES bytes of UTF-8 that ends
    at a character boundary."""
    return text.encode()[:PAYLOAD_PREFIX_BYTES].decode("utf-8", "ignore")


def capped_payloads(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with `payload` cut to its prefix and, beside it, the byte length and the
    SHA-256 of the whole payload; only the few long payloads are cut in Python."""
    full = frame["payload"].fill_null("")
    digests = sha256_binary(pc.cast(full.to_arrow(), pa.large_binary()))
    hexed = digests.tobytes().hex()
    lengths = full.str.len_bytes().cast(pl.Int64)
    long = (lengths > PAYLOAD_PREFIX_BYTES).arg_true()
    cut = full.scatter(long, [_prefix(full[int(i)]) for i in long]) if len(long) else full
    return frame.with_columns(
        cut.alias("payload"),
        lengths.alias("payload_bytes"),
        pl.Series("payload_sha256", [hexed[i * 64 : i * 64 + 64] for i in range(len(full))]),
    )


def row_hashes(typed: pl.DataFrame) -> pl.Series:
    """Hex RFC 9162 leaf hash of every row, in one pass over all rows."""
    return pl.Series("row_hash", row_leaf_hashes(typed.to_arrow()))


def hash_prefix(row_hash: pl.Expr) -> pl.Expr:
    """The first 8 bytes of a hex row hash as a signed int64: what duplicate detection
    reads of the accepted rows (8 bytes a row, not 64), and what contributions files are
    sorted by so the few rows a prefix matches are found in one row group."""
    return (
        row_hash.str.slice(0, 16)
        .str.to_integer(base=16, dtype=pl.UInt64)
        .reinterpret(signed=True)
        .alias(HASH_PREFIX)
    )


# Who first submitted rows with these hashes: (row_hash, contributor, batch_id) of the
# accepted rows among them (`ingest_datanet`'s view of the contributions before a run).
KnownRows = Callable[[pl.DataFrame], pl.DataFrame]


def known_in(frame: pl.DataFrame) -> KnownRows:
    """A `KnownRows` over accepted rows held in memory."""

    def origins(candidates: pl.DataFrame) -> pl.DataFrame:
        wanted = pl.col("row_hash").is_in(candidates["row_hash"].implode())
        return frame.filter(wanted).select("row_hash", "contributor", "batch_id")

    return origins


# --- one run over a Datanet's inbox ----------------------------------------------------------


@dataclass
class IngestResult:
    """Rows of the four ingest tables of one Datanet: what a run adds (or, as the input of
    `ingest_datanet`, what is known before it)."""

    contributions: pl.DataFrame
    quarantine: pl.DataFrame
    duplicates: pl.DataFrame
    batches: pl.DataFrame
    new_batches: list[dict[str, object]] = field(default_factory=list)


def _file_meta(subs: Sequence[Submission]) -> pl.DataFrame:
    """Datanet, contributor, batch id and received time of each file, by file index."""
    return pl.DataFrame(
        {
            "datanet": [s.datanet for s in subs],
            "contributor": [s.contributor for s in subs],
            "batch_id": [s.batch_id for s in subs],
            "received_at": [s.received_at for s in subs],
        },
        schema={k: v for k, v in META_SCHEMA.items() if k != "row_index"},
    )


def _with_meta(frame: pl.DataFrame, meta: pl.DataFrame) -> pl.DataFrame:
    """The file's meta columns before each row's own: one gather by file index, not a
    literal column and a concatenation per file."""
    return pl.concat([meta.select(pl.all().gather(frame[FILE])), frame], how="horizontal")


def _file_rejection(index: int, sub: Submission, reason: str, message: str) -> pl.DataFrame:
    payload = json.dumps({"file": sub.file_name, "batch_id": sub.batch_id})
    return pl.DataFrame(
        {
            FILE: [index],
            "row_index": [WHOLE_FILE],
            "reason_code": [reason],
            "message": [message],
            "payload": [payload],
        },
        schema={FILE: pl.Int64, "row_index": pl.Int64, **RAW_QUARANTINE_SCHEMA},
    )


def check_signature(
    sub: Submission, spec: DatanetSpec, registered: Mapping[str, str]
) -> tuple[str, str] | None:
    """(reason, message) when the submission may not be attributed to its contributor."""
    if sub.manifest_problem:
        return "BAD_MANIFEST", sub.manifest_problem
    key_hex = registered.get(sub.contributor)
    if not spec.require_signatures:
        return None
    if key_hex is None:
        return "UNKNOWN_CONTRIBUTOR", (
            f"{sub.contributor} has no registered key for Datanet {sub.datanet}"
        )
    if not sub.signature:
        return "BAD_SIGNATURE", f"{sub.file_name}: unsigned submission"
    if sub.manifest_version < MANIFEST_VERSION:
        return "BAD_SIGNATURE", (
            f"{sub.file_name}: a version 1 signature covers neither the file name nor the "
            "submission time and is no longer accepted; submit the file again with "
            "`openledger contribute`"
        )
    message = signing_message(
        sub.datanet, sub.contributor, sub.batch_id, sub.file_name, sub.claimed_at
    )
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex)).verify(
            bytes.fromhex(sub.signature), message
        )
    except (ValueError, InvalidSignature):
        return "BAD_SIGNATURE", (
            f"{sub.file_name}: signature does not match {sub.contributor}'s registered key"
        )
    return None


def read_submission(
    index: int, sub: Submission, spec: DatanetSpec, registered: Mapping[str, str]
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(rows as text columns made by `conform_columns`, unparseable lines, extra column
    names) of one submission, both frames tagged with its file index; or FileRejected."""
    refused = check_signature(sub, spec, registered)
    if refused:
        raise FileRejected(*refused)
    raw, bad_lines = read_text_columns(sub.path, spec.max_file_bytes)
    rows, extra = conform_columns(raw, spec)
    tag = pl.lit(index, pl.Int64).alias(FILE)
    return rows.select(tag, pl.all()), bad_lines.select(tag, pl.all()), extra


def _stacked(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """One frame in file order (frames are stacks of different extra columns)."""
    stacked = pl.concat(frames)
    return stacked.sort(FILE, maintain_order=True) if len(frames) > 1 else stacked


def _per_file(frame: pl.DataFrame) -> dict[int, int]:
    """Rows per file index."""
    return dict(frame.group_by(FILE).len().iter_rows())


def split_duplicates(
    known: KnownRows, candidates: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(accepted, duplicates) of candidate rows in arrival order: a row is a duplicate when
    its hash was accepted before (`known` tells who first submitted it) or appeared
    earlier among the candidates; the duplicate names the first contributor and batch,
    who keep the credit."""
    hashes = candidates["row_hash"]
    first = hashes.is_first_distinct()
    before = known(candidates.filter(first))
    seen = hashes.is_in(before["row_hash"].implode())
    accepted = candidates.filter(first & ~seen)
    repeated = pl.concat([candidates.filter(first & seen), candidates.filter(~first)])
    wanted = pl.col("row_hash").is_in(repeated["row_hash"].implode())  # few: join less
    origin = pl.concat(
        [
            before.filter(wanted),
            accepted.filter(wanted).select("row_hash", "contributor", "batch_id"),
        ]
    ).rename({"contributor": "first_contributor", "batch_id": "first_batch_id"})
    duplicates = repeated.join(origin, on="row_hash", how="left")
    return accepted, duplicates.select(list(DUPLICATES_SCHEMA)).cast(DUPLICATES_SCHEMA)  # type: ignore[arg-type]


def empty_tables(spec: DatanetSpec) -> IngestResult:
    return IngestResult(
        contributions=pl.DataFrame(schema=contributions_schema(spec)),
        quarantine=pl.DataFrame(schema=QUARANTINE_SCHEMA),
        duplicates=pl.DataFrame(schema=DUPLICATES_SCHEMA),
        batches=pl.DataFrame(schema=BATCHES_SCHEMA),
    )


def pending_submissions(
    submissions: Iterable[Submission], batches: pl.DataFrame
) -> list[Submission]:
    """Submissions not ingested before, each (contributor, batch) once, in order."""
    done = set(zip(batches["contributor"].to_list(), batches["batch_id"].to_list(), strict=True))
    pending = []
    for sub in submissions:
        if (sub.contributor, sub.batch_id) not in done:
            done.add((sub.contributor, sub.batch_id))
            pending.append(sub)
    return pending


def ingest_datanet(
    spec: DatanetSpec,
    submissions: Iterable[Submission],
    registered: Mapping[str, str],
    previous: IngestResult,
    progress: Callable[[int, int, Submission], None] | None = None,
    known: KnownRows | None = None,
) -> IngestResult:
    """The new rows of each table from every submission not ingested before.

    `previous` holds what is known: the batches already ingested and the accepted rows
    that came before (only `row_hash`, `contributor` and `batch_id` are used, to credit
    duplicates to their first submitter) — or, instead of those rows, `known` answers who
    first submitted a set of hashes (the lake's index, without reading every row). The
    result holds only what these submissions add, for the log tables to append. Files are
    read one by one (a file may be rejected whole); their rows are then stacked and
    validated, typed, hashed and split from duplicates all at once, so the per-row work is
    a few vectorized passes whatever the number of files."""
    pending = pending_submissions(submissions, previous.batches)
    names = [c.name for c in spec.columns]
    columns = [c.identifier for c in spec.columns]
    empty = pl.DataFrame(
        schema={FILE: pl.Int64, "row_index": pl.Int64, **dict.fromkeys(names, pl.String)}
    )
    stacks: dict[tuple[str, ...], list[pl.DataFrame]] = {}
    lines: list[pl.DataFrame] = []
    rejected: list[pl.DataFrame] = []
    summaries: list[dict[str, object]] = []
    for index, sub in enumerate(pending):
        summary: dict[str, object] = {
            "datanet": sub.datanet,
            "contributor": sub.contributor,
            "batch_id": sub.batch_id,
            "file_name": sub.file_name,
            "receipt_seq": sub.receipt_seq,
            "received_at": sub.received_at,
            "note": "",
        }
        try:
            rows, bad_lines, extra = read_submission(index, sub, spec, registered)
        except FileRejected as exc:
            summary.update(
                status="rejected", rows_in=0, quarantined=0, note=f"{exc.reason}: {exc.message}"
            )
            rejected.append(_file_rejection(index, sub, exc.reason, exc.message))
        else:
            stacks.setdefault(tuple(extra), []).append(rows)
            lines.append(bad_lines.with_columns(pl.lit("PARSE_ERROR").alias("reason_code")))
            summary.update(
                status="ingested",
                rows_in=rows.height + bad_lines.height,
                note=f"extra columns ignored: {extra}" if extra else "",
            )
        summaries.append(summary)
        if progress:
            progress(index + 1, len(pending), sub)
    checked = [
        validate_rows(pl.concat(frames), extra, spec) for extra, frames in stacks.items()
    ] or [validate_rows(empty, [], spec)]
    good = _stacked([g for g, _ in checked])
    meta = _file_meta(pending)
    hashed = good.with_columns(row_hashes(good.select(columns)))
    candidates = _with_meta(hashed.with_columns(hash_prefix(pl.col("row_hash"))), meta)
    accepted, duplicates = split_duplicates(
        known if known is not None else known_in(previous.contributions), candidates
    )
    rows_out = ["row_index", "reason_code", "message", "payload"]
    quarantined = capped_payloads(
        _stacked(
            [
                *(b.select(FILE, *rows_out) for _, b in checked),
                *(f.select(FILE, *rows_out) for f in lines),
                *rejected,
            ]
        )
    )
    counts = {
        "quarantined": _per_file(quarantined.filter(pl.col("row_index") != WHOLE_FILE)),
        "candidates": _per_file(candidates),
        "accepted": _per_file(accepted),
    }
    for index, summary in enumerate(summaries):
        accepted_here = counts["accepted"].get(index, 0)
        summary.setdefault("quarantined", counts["quarantined"].get(index, 0))
        summary["accepted"] = accepted_here
        summary["duplicates"] = counts["candidates"].get(index, 0) - accepted_here
    new_batches = pl.DataFrame(summaries, schema=BATCHES_SCHEMA) if summaries else None
    contributions = contributions_schema(spec)
    return IngestResult(
        contributions=accepted.select(list(contributions)).cast(contributions),
        quarantine=_with_meta(quarantined, meta)
        .select(list(QUARANTINE_SCHEMA))
        .cast(QUARANTINE_SCHEMA),  # type: ignore[arg-type]
        duplicates=duplicates,
        batches=new_batches if new_batches is not None else pl.DataFrame(schema=BATCHES_SCHEMA),
        new_batches=summaries,
    )


def reconcile(result: IngestResult) -> list[str]:
    """Problems with the counts (empty when every input row is accounted for)."""
    problems = []
    batches = result.batches
    bad = batches.filter(
        pl.col("rows_in") != pl.col("accepted") + pl.col("quarantined") + pl.col("duplicates")
    )
    for row in bad.iter_rows(named=True):
        problems.append(
            f"batch {row['batch_id'][:12]} of {row['contributor']}: rows_in "
            f"{row['rows_in']} != accepted + quarantined + duplicates"
        )
    counted = {
        "accepted": result.contributions.height,
        "quarantined": result.quarantine.filter(pl.col("row_index") != WHOLE_FILE).height,
        "duplicates": result.duplicates.height,
    }
    for column, actual in counted.items():
        expected = int(batches[column].sum() or 0)
        if expected != actual:
            problems.append(f"{column}: batches say {expected}, tables hold {actual}")
    return problems


def one_line(text: str, limit: int = 300) -> str:
    """A message on one line (parsers' errors span several), cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def read_strict(path: Path, spec: DatanetSpec) -> pl.DataFrame:
    """Every row of a file that is not a contribution (a validation set, queries), typed by
    the spec; a missing or unusable file or any invalid row raises SpecError (one line
    naming the path) instead of quarantine."""
    if not path.is_file():
        raise SpecError(f"{path}: no such file")
    try:
        raw, bad_lines = read_text_columns(path, spec.max_file_bytes)
        good, bad = validate_rows(*conform_columns(raw, spec), spec)
    except (FileRejected, OSError) as exc:
        reason = exc.reason if isinstance(exc, FileRejected) else exc.__class__.__name__
        message = exc.message if isinstance(exc, FileRejected) else exc.strerror or exc
        raise SpecError(one_line(f"{path}: {reason}: {message}")) from None
    if bad.height or bad_lines.height:
        first = (bad if bad.height else bad_lines).row(0, named=True)
        raise SpecError(
            one_line(
                f"{path}: {bad.height + bad_lines.height} invalid rows, e.g. "
                f"row {first['row_index']}: {first['message']}"
            )
        )
    return good.drop("row_index")
