"""Where specs, contributor registrations and inbox files live in a local lake.

Every path is built from a checked name and then checked to stay inside the lake root, so
a hostile Datanet or contributor name can never reach a file outside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assets.datanets import (
    DatanetSpec,
    SpecError,
    check_contributor_id,
    check_datanet_name,
    parse_spec,
)
from assets.ingest import (
    MANIFEST_SUFFIX,
    MANIFEST_VERSION,
    file_sha256,
    read_strict,
    signing_message,
)
from assets.names import SPECS, spec_names  # noqa: F401  (re-exported)
from assets.receipts import (
    Claim,
    Clock,
    append_receipts,
    read_receipts,
    utc_now,
)
from ledger.lake import Lake, until_current
from ledger.storage import LakePath, lake_dir

INBOX = "inbox"
REGISTRY = "registry"
KEYS = "keys"
INFERENCE_LOG = "inference_log"
VALIDATION = "validation"
SAFE_FILE = re.compile(r"[^A-Za-z0-9_.-]+")


def inside(root: Path | LakePath, *parts: str) -> Path | LakePath:
    """root/parts, refusing anything that resolves outside root."""
    if isinstance(root, LakePath):
        try:
            return root.joinpath(*parts)
        except ValueError:
            raise SpecError(f"path {'/'.join(parts)!r} escapes the lake root {root}") from None
    base = root.resolve()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base):
        raise SpecError(f"path {'/'.join(parts)!r} escapes the lake root {base}")
    return path


def spec_path(root: Path | LakePath, datanet: str) -> LakePath:
    return inside(lake_dir(root), SPECS, f"{check_datanet_name(datanet)}.yaml")


def inbox_dir(root: Path | LakePath, datanet: str) -> LakePath:
    return inside(lake_dir(root), INBOX, check_datanet_name(datanet))


def registry_dir(root: Path | LakePath, datanet: str) -> LakePath:
    return inside(lake_dir(root), REGISTRY, check_datanet_name(datanet))


def key_path(root: Path | LakePath, datanet: str, contributor: str) -> Path:
    """A contributor's private key file: in the lake's keys folder on this machine
    (`LakeLocation.keys_folder`), never in a shared lake."""
    folder = root.files.location.keys_folder() if isinstance(root, LakePath) else root / KEYS
    return inside(folder, check_datanet_name(datanet), f"{check_contributor_id(contributor)}.key")


def safe_file_name(name: str) -> str:
    """A plain, harmless file name derived from a user's file name."""
    cleaned = SAFE_FILE.sub("_", Path(name).name).strip("._") or "file"
    return cleaned[:100]


def validation_copy(specs_dir: Path, spec: DatanetSpec) -> Path:
    """Where the lake keeps a spec's validation file: `specs/<datanet>/validation<ext>`, a
    folder per Datanet so two Datanets never share one (and `spec_names` never sees it)."""
    suffix = Path(spec.validation.name).suffix.lower()
    return inside(lake_dir(specs_dir), check_datanet_name(spec.name), VALIDATION + suffix)


def stored_validation_file(specs_dir: Path, spec: DatanetSpec) -> Path:
    """The lake's copy of a spec's validation file; SpecError naming it when missing."""
    path = validation_copy(specs_dir, spec)
    if not path.is_file():
        raise SpecError(
            f"{spec.name}: validation file {path} is missing; `openledger datanet create "
            "<spec file>` copies it from next to the spec"
        )
    return path


def validation_sha256(specs_dir: Path, spec: DatanetSpec) -> str | None:
    """SHA-256 of the lake's copy of a spec's validation file (None for bundled sets): part
    of the Datanet's ledgered version, so a changed file is a new version."""
    if spec.validation.kind != "file":
        return None
    return file_sha256(stored_validation_file(specs_dir, spec))


def checked_validation_file(spec: DatanetSpec, base: Path | None, source: str) -> bytes:
    """The bytes of the validation file a spec names, resolved from the spec's folder
    `base`, once every row is valid for the spec and has its label; else SpecError, one
    line naming the path. Checked here so a bad file never waits for the first run."""
    if base is None:
        raise SpecError(
            f"{source}: validation file {spec.validation.name!r} is resolved next to the "
            "spec file; publish it with `openledger datanet create <spec file>`"
        )
    path = base / spec.validation.name
    try:
        frame = read_strict(path, spec)
    except SpecError as exc:
        raise SpecError(f"validation file {exc}") from None
    unlabelled = frame[spec.label.identifier].null_count()
    if unlabelled:
        raise SpecError(f"validation file {path}: {unlabelled} rows have no {spec.label.name!r}")
    return path.read_bytes()


def _same_spec(path: Path, spec: DatanetSpec) -> bool:
    """Whether the spec file in place is this spec (a broken one is not)."""
    try:
        return parse_spec(path.read_text(encoding="utf-8")).spec_hash() == spec.spec_hash()
    except (SpecError, OSError, UnicodeDecodeError):
        return False


def install_spec(
    root: Path, text: str, source: str = "<spec>", base: Path | None = None
) -> tuple[DatanetSpec, bool]:
    """Validate a spec (and the validation file it names, found in `base`, the spec's
    folder) and place both in the lake; (spec, changed). A changed spec or validation file
    replaces the lake's copy, and the `datanets` asset records it as a new version."""
    spec = parse_spec(text, source)
    root = lake_dir(root)
    path = spec_path(root, spec.name)
    validation = None
    if spec.validation.kind == "file":
        validation = checked_validation_file(spec, base, source)
    copy = validation_copy(root / SPECS, spec) if validation is not None else None
    same_copy = copy is None or (copy.is_file() and copy.read_bytes() == validation)
    if path.exists() and same_copy and _same_spec(path, spec):
        return spec, False
    if copy is not None and validation is not None and not same_copy:
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(validation)  # before the spec: a run the spec triggers finds it
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return spec, True


def contributor_public_key(root: Path, datanet: str, contributor: str) -> str:
    """The public key of an existing key file, or of a newly created one."""
    path = key_path(root, datanet, contributor)
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))["public_key"]
    return new_contributor_key(root, datanet, contributor)[1]


@dataclass(frozen=True)
class Registration:
    datanet: str
    contributor: str
    public_key: str  # hex, Ed25519 raw public key
    registered_at: datetime


def write_registration(root: Path, reg: Registration) -> Path:
    """Record a contributor's public key; re-registering a different key is refused."""
    folder = registry_dir(root, reg.datanet)
    path = inside(folder, f"{check_contributor_id(reg.contributor)}.json")
    if path.exists():
        current = read_registration(reg.datanet, path)
        if current.public_key != reg.public_key:
            raise SpecError(
                f"{reg.contributor} already registered a different key for "
                f"{reg.datanet}; key rotation is not supported"
            )
        return path
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "contributor": reg.contributor,
                "public_key": reg.public_key,
                "registered_at": reg.registered_at.isoformat(),
            }
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def read_registration(datanet: str, path: Path) -> Registration:
    doc = json.loads(path.read_text(encoding="utf-8"))
    key = doc["public_key"]
    if not isinstance(key, str) or len(bytes.fromhex(key)) != 32:
        raise SpecError(f"{path.name}: public_key must be 32 bytes of hex")
    return Registration(
        datanet=datanet,
        contributor=check_contributor_id(doc["contributor"]),
        public_key=key,
        registered_at=datetime.fromisoformat(doc["registered_at"]).astimezone(UTC),
    )


def registrations(root: Path, datanet: str) -> tuple[list[Registration], list[str]]:
    """(valid registrations, problems): a malformed file is reported, never trusted."""
    folder = registry_dir(root, datanet)
    found, problems = [], []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(read_registration(datanet, path))
        except (ValueError, KeyError, TypeError, SpecError) as exc:
            problems.append(f"{path.name}: ignored, {exc.__class__.__name__}: {exc}")
    return found, problems


def new_contributor_key(
    root: Path, datanet: str, contributor: str, key_file: Path | None = None
) -> tuple[Path, str]:
    """Create an Ed25519 key file for a contributor; returns (path, public key hex)."""
    path = key_file or key_path(root, datanet, contributor)
    if path.exists():
        raise SpecError(f"{path} exists; refusing to overwrite a key")
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw().hex()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "datanet": datanet,
                "contributor": contributor,
                "private_key": private.private_bytes_raw().hex(),
                "public_key": public,
            }
        )
        + "\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path, public


def signer(key_file: Path, contributor: str) -> Callable[[bytes], str]:
    """A function signing messages (hex signature) with a contributor's key file; a file
    that names someone else is refused."""
    if not key_file.is_file():
        raise SpecError(f"{key_file}: no such key file")
    try:
        doc = json.loads(key_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read key file {key_file}: {exc}") from exc
    if doc.get("contributor") != contributor:
        raise SpecError(f"{key_file} belongs to {doc.get('contributor')!r}, not {contributor!r}")
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(doc["private_key"]))
    return lambda message: private.sign(message).hex()


def unsigned_warning(
    root: Path, spec: DatanetSpec, contributor: str, key_file: Path | None
) -> str | None:
    """Why a submission by `contributor` would not carry a signature ingestion can check
    (None: it will): a warning where the Datanet takes unsigned files, SpecError where it
    requires signatures, so nobody submits a file that is bound to be quarantined."""
    if key_file is not None and not key_file.is_file():
        raise SpecError(f"{key_file}: no such key file")  # a named key must exist
    registered = inside(registry_dir(root, spec.name), f"{check_contributor_id(contributor)}.json")
    key = key_file or key_path(root, spec.name, contributor)
    if not registered.is_file():
        problem = f"{contributor} has no registered key for Datanet {spec.name}"
        advice = "register it first with `openledger contributor add`"
    elif not key.is_file():
        problem = f"no key file to sign with for {contributor} ({key})"
        advice = "pass --key with the key you registered"
    else:
        return None
    if spec.require_signatures:
        raise SpecError(f"{problem}, and Datanet {spec.name} requires signatures: {advice}")
    return f"{problem}; submitting unsigned ({advice} to sign)"


def check_regular_file(source: Path) -> None:
    """Refuse a symbolic link, FIFO, device or folder (SpecError, one line), so a
    submission can never smuggle another file (`link.csv -> /etc/passwd`) into the inbox."""
    try:
        mode = os.lstat(source).st_mode
    except FileNotFoundError:
        raise SpecError(f"{source}: no such file") from None
    if stat.S_ISLNK(mode):
        raise SpecError(f"{source} is a symbolic link; submit the file it points to instead")
    if not stat.S_ISREG(mode):
        raise SpecError(f"{source} is not a regular file (a folder, FIFO or device)")


def read_regular_file(source: Path) -> bytes:
    """The bytes of a regular file (see `check_regular_file`). The file is opened without
    following links and checked again on the open descriptor, so swapping it for a link
    after the first check does not work either."""
    check_regular_file(source)
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise SpecError(f"{source} is not a regular file (a folder, FIFO or device)")
        return fh.read()


@dataclass(frozen=True)
class Outgoing:
    """A file checked, hashed and signed for a Datanet's inbox, not yet received."""

    contributor: str
    name: str  # its file name in the inbox
    data: bytes
    manifest: bytes
    batch_id: str

    def claim(self) -> Claim:
        return Claim(
            self.contributor, self.batch_id, self.name, hashlib.sha256(self.manifest).hexdigest()
        )


@dataclass(frozen=True)
class Submitted:
    """Where a file is in the inbox and its receipt; `new` is False when the same
    contributor's same file had been received before (nothing was written again)."""

    path: Path
    receipt_seq: int
    received_at: datetime
    new: bool


def prepare(
    root: Path,
    datanet: str,
    contributor: str,
    source: Path,
    key_file: Path | None = None,
    submitted_at: datetime | None = None,
    sign: bool = True,
) -> Outgoing:
    """A regular file and its manifest (version 2), signed over every manifest field with
    the contributor's key file when one is given (or exists at the default place) unless
    `sign` is False. `submitted_at` is the submitter's claim, kept but never used to order."""
    check_datanet_name(datanet)
    check_contributor_id(contributor)
    if sign and key_file is not None and not key_file.is_file():
        raise SpecError(f"{key_file}: no such key file")  # never fall back to unsigned
    data = read_regular_file(source)
    batch_id = hashlib.sha256(data).hexdigest()
    name = f"{batch_id[:16]}-{contributor}-{safe_file_name(source.name)}"
    claimed = (submitted_at or datetime.now(UTC)).isoformat()
    key_file = key_file or key_path(root, datanet, contributor)
    signature = None
    if sign and key_file.exists():
        message = signing_message(datanet, contributor, batch_id, name, claimed)
        signature = signer(key_file, contributor)(message)
    manifest = {
        "version": MANIFEST_VERSION,
        "contributor": contributor,
        "file": name,
        "sha256": batch_id,
        "signature": signature,
        "submitted_at": claimed,
    }
    text = json.dumps(manifest) + "\n"
    return Outgoing(contributor, name, data, text.encode("utf-8"), batch_id)


def _in_inbox(folder: Path, receipt: dict[str, object]) -> bool:
    """Whether a receipt's submission is in the inbox as received (manifest unchanged)."""
    manifest = folder / f"{receipt['file_name']}{MANIFEST_SUFFIX}"
    try:
        same = hashlib.sha256(manifest.read_bytes()).hexdigest() == receipt["manifest_sha256"]
    except OSError:
        return False
    return same and (folder / str(receipt["file_name"])).is_file()


def deliver(
    root: Path,
    datanet: str,
    outgoing: Sequence[Outgoing],
    *,
    clock: Clock = utc_now,
    run_id: str = "cli",
    code_version: str = "unknown",
) -> list[Submitted]:
    """Receive files into a Datanet's inbox, in the given order: each gets a ledgered
    receipt (number and time from the lake), then its file and manifest are written. The
    receipts are a compare-and-append: if another receiver appended first, the decision is
    taken again on the new receipts. A contributor's file already received and still in the
    inbox is not received again (the same file twice changes nothing)."""
    folder = inbox_dir(root, datanet)
    lake = Lake(root)

    def receive() -> tuple[
        pl.DataFrame, dict[tuple[str, str], dict[str, object]], dict[tuple[str, str], Outgoing]
    ]:
        current = read_receipts(lake, datanet)
        wanted = {(o.contributor, o.batch_id) for o in outgoing}
        held: dict[tuple[str, str], dict[str, object]] = {}
        for row in current.iter_rows(named=True):
            key = (str(row["contributor"]), str(row["batch_id"]))
            if key in wanted and key not in held and _in_inbox(folder, row):
                held[key] = row
        fresh: dict[tuple[str, str], Outgoing] = {}
        for item in outgoing:
            key = (item.contributor, item.batch_id)
            if key not in held and key not in fresh:
                fresh[key] = item
        receipts = append_receipts(
            lake,
            datanet,
            current,
            [o.claim() for o in fresh.values()],
            received_by="contribute",
            clock=clock,
            run_id=run_id,
            code_version=code_version,
        )
        return receipts, held, fresh

    receipts, held, fresh = until_current(receive)
    for item in fresh.values():  # the data file first: a manifest never names a gap
        inside(folder, item.name).write_bytes(item.data)
        inside(folder, item.name + MANIFEST_SUFFIX).write_bytes(item.manifest)
    new = {
        (str(r["contributor"]), str(r["batch_id"])): r
        for r in receipts.tail(len(fresh)).iter_rows(named=True)
    }
    return [_submitted(folder, o, new, held) for o in outgoing]


def _submitted(
    folder: Path,
    item: Outgoing,
    new: dict[tuple[str, str], dict[str, object]],
    held: dict[tuple[str, str], dict[str, object]],
) -> Submitted:
    key = (item.contributor, item.batch_id)
    receipt = new.get(key) or held[key]
    return Submitted(
        folder / str(receipt["file_name"]),
        int(receipt["receipt_seq"]),  # type: ignore[call-overload]
        receipt["received_at"],  # type: ignore[arg-type]
        key in new,
    )


def submit(
    root: Path,
    datanet: str,
    contributor: str,
    source: Path,
    key_file: Path | None = None,
    submitted_at: datetime | None = None,
    sign: bool = True,
    clock: Clock = utc_now,
) -> Submitted:
    """Copy one file into the Datanet's inbox with a signed manifest and a receipt
    (`prepare` then `deliver`)."""
    item = prepare(root, datanet, contributor, source, key_file, submitted_at, sign)
    return deliver(root, datanet, [item], clock=clock)[0]
