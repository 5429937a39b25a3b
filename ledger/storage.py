"""Where a lake lives, and the files it holds beside its Delta tables.

A lake is a local folder or an S3 prefix (`s3://bucket/prefix`, any S3-compatible store).
Specs, registrations, inbox submissions and their manifests, model files, inference logs
and reports go through `LakeFiles`, one small interface over `obstore` that serves both,
so no code path touches the local disk directly. obstore is the Python face of the Rust
`object_store` crate that delta-rs commits through: one library reads the same standard
AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`) for the tables and the files, and it offers
create-only puts (If-None-Match), which pyarrow.fs does not: an inbox file or a key
registration is never silently overwritten, and a store that ignores the condition is
refused (see `check_conditional_writes`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

SCHEMES = ("s3",)
URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<rest>.*)$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
SEGMENT = re.compile(r"^[A-Za-z0-9_.=+-][A-Za-z0-9_.=+ -]*$")
PROBE = "_openledger/conditional-write-probe"


class LakeError(ValueError):
    """A request the lake refuses: bad names or URIs, missing tables or versions."""


@dataclass(frozen=True)
class LakeLocation:
    """A parsed lake root: an absolute local folder, or a bucket and a key prefix."""

    uri: str  # the folder path, or s3://bucket[/prefix], without a trailing slash
    scheme: str  # "file" or "s3"
    bucket: str = ""
    prefix: str = ""

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    def local_path(self) -> Path:
        if not self.is_local:
            raise LakeError(f"{self.uri} is not a local folder")
        return Path(self.uri)

    def keys_folder(self) -> Path:
        """Where private keys for this lake live, always on this machine and never in a
        shared lake: $OPENLEDGER_KEYS, else `<lake>/keys` for a local lake, else
        `~/.openledger/keys/<bucket>/<prefix>` for a lake on object storage."""
        chosen = os.environ.get("OPENLEDGER_KEYS")
        if chosen:
            return Path(chosen).expanduser().resolve()
        if self.is_local:
            return self.local_path() / "keys"
        return Path.home() / ".openledger" / "keys" / self.bucket / self.prefix

    @property
    def display_name(self) -> str:
        """A short name for the lake (a checkpoint's default origin)."""
        return self.uri.rstrip("/").rsplit("/", 1)[-1] or self.bucket


def parse_lake_uri(text: str | os.PathLike[str]) -> LakeLocation:
    """A lake root from a folder path, `file://path` or `s3://bucket[/prefix]`; anything
    else (another scheme, `s3:/bucket`, an empty bucket, `..` in a prefix) is refused
    with one line, never taken for a local folder."""
    raw = os.fspath(text).strip()
    if not raw:
        raise LakeError("the lake location is empty: give a folder or s3://bucket/prefix")
    match = URI.match(raw)
    if match is None or (len(match["scheme"]) == 1 and os.name == "nt"):
        path = Path(raw).expanduser().resolve()
        return LakeLocation(str(path), "file")
    scheme, rest = match["scheme"].lower(), match["rest"]
    if scheme == "file":
        if not rest.startswith("//"):
            raise LakeError(f"malformed lake URI {raw!r}: write file:///absolute/path")
        return LakeLocation(str(Path(rest[2:]).expanduser().resolve()), "file")
    if scheme not in SCHEMES:
        raise LakeError(
            f"unsupported lake URI {raw!r}: a lake is a folder or s3://bucket/prefix "
            "(any S3-compatible store, with AWS_ENDPOINT_URL)"
        )
    if not rest.startswith("//"):
        raise LakeError(f"malformed lake URI {raw!r}: write s3://bucket/prefix")
    bucket, _, prefix = rest[2:].partition("/")
    if not BUCKET.match(bucket):
        raise LakeError(f"malformed lake URI {raw!r}: {bucket!r} is not a bucket name")
    parts = [p for p in prefix.strip("/").split("/") if p] if prefix.strip("/") else []
    for part in parts:
        if part in (".", "..") or not SEGMENT.match(part):
            raise LakeError(f"malformed lake URI {raw!r}: bad prefix segment {part!r}")
    clean = "/".join(parts)
    uri = f"s3://{bucket}/{clean}" if clean else f"s3://{bucket}"
    return LakeLocation(uri, "s3", bucket, clean)


def check_key(key: str) -> str:
    """A relative, `/`-separated key with no empty, `.` or `..` segment."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise LakeError(f"invalid lake file name {key!r}")
    return key


class LakeFiles:
    """The files of one lake root (keys relative to it, `/`-separated)."""

    def __init__(self, location: LakeLocation):
        from obstore.store import LocalStore, S3Store

        self.location = location
        if location.is_local:
            location.local_path().mkdir(parents=True, exist_ok=True)
            self.store: LocalStore | S3Store = LocalStore(location.uri)
        else:
            self.store = S3Store(location.bucket, prefix=location.prefix or None)

    def uri(self, key: str) -> str:
        """Where a file is, for messages and metadata."""
        return f"{self.location.uri}/{check_key(key)}"

    def local_path(self, key: str) -> Path | None:
        """The file's path on disk for a local lake (None on object storage)."""
        return self.location.local_path() / check_key(key) if self.location.is_local else None

    def check_reachable(self) -> None:
        """One request that fails, with one line, when the store or bucket is unreachable
        or the credentials are refused."""
        import obstore

        try:
            obstore.list_with_delimiter(self.store, None)
        except Exception as exc:
            raise LakeError(f"cannot reach lake {self.location.uri}: {_first_line(exc)}") from None

    def read(self, key: str) -> bytes:
        """A file's bytes; FileNotFoundError naming it when absent."""
        import obstore

        try:
            return bytes(obstore.get(self.store, check_key(key)).bytes())
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.uri(key)}: no such file") from None

    def read_text(self, key: str) -> str:
        return self.read(key).decode("utf-8")

    def exists(self, key: str) -> bool:
        import obstore

        try:
            obstore.head(self.store, check_key(key))
        except FileNotFoundError:
            return False
        return True

    def write(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        """Write a whole file at once (readers see the old file or the new one, never
        part of it). `exclusive`: create only; FileExistsError if the file exists."""
        import obstore
        from obstore.exceptions import AlreadyExistsError

        try:
            obstore.put(
                self.store, check_key(key), data, mode="create" if exclusive else "overwrite"
            )
        except AlreadyExistsError:
            raise FileExistsError(f"{self.uri(key)} exists") from None

    def delete(self, key: str) -> None:
        import obstore

        with contextlib.suppress(FileNotFoundError):
            obstore.delete(self.store, check_key(key))

    def stat(self, key: str) -> FileStat:
        import obstore

        try:
            meta = obstore.head(self.store, check_key(key))
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.uri(key)}: no such file") from None
        return FileStat(int(meta["size"]), meta["last_modified"].timestamp())

    def clear(self) -> None:
        """Delete every object of the lake (`openledger demo --fresh` on a bucket)."""
        import obstore

        for batch in obstore.list(self.store, None):
            obstore.delete(self.store, [str(meta["path"]) for meta in batch])

    def list(self, prefix: str) -> list[str]:
        """Every file under a folder `prefix`, recursively, as sorted keys."""
        import obstore

        keys = [
            str(meta["path"])
            for batch in obstore.list(self.store, check_key(prefix) + "/")
            for meta in batch
        ]
        return sorted(k for k in keys if not k.rsplit("/", 1)[-1].startswith("."))

    def names(self, prefix: str | None = None) -> list[str]:
        """The names directly under a folder (files and sub-folders), sorted."""
        import obstore

        listed = obstore.list_with_delimiter(
            self.store, check_key(prefix) + "/" if prefix else None
        )
        found = [p.rstrip("/").rsplit("/", 1)[-1] for p in listed["common_prefixes"]]
        found += [str(m["path"]).rsplit("/", 1)[-1] for m in listed["objects"]]
        return sorted(n for n in set(found) if not n.startswith("."))

    def check_conditional_writes(self) -> None:
        """Refuse a store that does not honour create-only puts (If-None-Match): delta-rs
        and the ledger rely on them to serialize concurrent commits, and without them
        two writers could both commit one version. Costs three requests."""
        key = f"{PROBE}/{uuid.uuid4().hex}"
        self.write(key, b"1", exclusive=True)
        try:
            self.write(key, b"2", exclusive=True)
        except FileExistsError:
            return
        finally:
            self.delete(key)
        raise LakeError(
            f"the store behind {self.location.uri} does not honour conditional writes "
            "(PUT with If-None-Match): concurrent commits would not be safe there, so "
            "OpenLedger refuses to write to it"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else exc.__class__.__name__


@dataclass(frozen=True)
class FileStat:
    st_size: int
    st_mtime: float


class LakePath:
    """A file or folder of a lake, with the part of `pathlib.Path`'s interface the
    pipeline uses (`/`, name, suffix, read/write, exists, glob, stat), over `LakeFiles`:
    the same code serves a folder and a bucket. Folders are key prefixes (`mkdir` does
    nothing; a folder exists while a file is in it). Writes replace a whole file at once.
    Deliberately not os.PathLike: code that would open it with `open()` fails on every
    lake, not only on a bucket."""

    __slots__ = ("files", "key")

    def __init__(self, files: LakeFiles, key: str = ""):
        self.files = files
        self.key = key.strip("/")
        if self.key:
            check_key(self.key)

    # --- names ---------------------------------------------------------------------
    def __truediv__(self, part: str) -> LakePath:
        return self.joinpath(part)

    def joinpath(self, *parts: str) -> LakePath:
        keys = [self.key] if self.key else []
        for part in parts:
            for segment in str(part).split("/"):
                if segment in ("", "."):
                    continue
                if segment == "..":
                    raise LakeError(f"path {'/'.join(parts)!r} escapes the lake root")
                keys.append(segment)
        return LakePath(self.files, "/".join(keys))

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1] if self.key else ""

    @property
    def suffix(self) -> str:
        name = self.name
        dot = name.rfind(".")
        return name[dot:] if 0 < dot < len(name) - 1 else ""

    @property
    def stem(self) -> str:
        return self.name[: len(self.name) - len(self.suffix)] if self.suffix else self.name

    @property
    def parent(self) -> LakePath:
        return LakePath(self.files, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    def with_name(self, name: str) -> LakePath:
        return self.parent / name

    def with_suffix(self, suffix: str) -> LakePath:
        return self.parent / (self.stem + suffix)

    def resolve(self) -> LakePath:
        return self

    def is_relative_to(self, other: LakePath) -> bool:
        return not other.key or self.key == other.key or self.key.startswith(other.key + "/")

    def relative_to(self, other: LakePath) -> str:
        if not self.is_relative_to(other):
            raise ValueError(f"{self} is not under {other}")
        return self.key[len(other.key) :].lstrip("/")

    def local(self) -> Path | None:
        """The file's path on disk for a local lake (None on object storage)."""
        if not self.key:
            return self.files.location.local_path() if self.files.location.is_local else None
        return self.files.local_path(self.key)

    def __str__(self) -> str:
        return self.files.uri(self.key) if self.key else self.files.location.uri

    def __repr__(self) -> str:
        return f"LakePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LakePath) and (self.files.location, self.key) == (
            other.files.location,
            other.key,
        )

    def __hash__(self) -> int:
        return hash((self.files.location, self.key))

    def __lt__(self, other: LakePath) -> bool:
        return self.key < other.key

    # --- contents ------------------------------------------------------------------
    def read_bytes(self) -> bytes:
        return self.files.read(self.key)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        self.files.write(self.key, bytes(data))
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def create_bytes(self, data: bytes) -> None:
        """Write a new file; FileExistsError if it exists (never overwrites)."""
        self.files.write(self.key, bytes(data), exclusive=True)

    def unlink(self, missing_ok: bool = False) -> None:
        if not missing_ok and not self.is_file():
            raise FileNotFoundError(f"{self}: no such file")
        self.files.delete(self.key)

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def is_file(self) -> bool:
        return bool(self.key) and self.files.exists(self.key)

    def is_dir(self) -> bool:
        return not self.key or bool(self.files.names(self.key))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: a folder is a key prefix."""

    def stat(self) -> FileStat:
        return self.files.stat(self.key)

    def iterdir(self) -> list[LakePath]:
        return [self / name for name in self.files.names(self.key or None)]

    def glob(self, pattern: str) -> list[LakePath]:
        """Entries directly in this folder whose name matches `pattern` (no `**`)."""
        if "/" in pattern or "**" in pattern:
            raise LakeError(f"glob pattern {pattern!r}: only names in one folder")
        return sorted(p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    def rglob(self, pattern: str) -> list[LakePath]:
        """Files anywhere under this folder whose name matches `pattern`."""
        found = [LakePath(self.files, k) for k in self.files.list(self.key)] if self.key else []
        return sorted(p for p in found if fnmatch.fnmatchcase(p.name, pattern))


def lake_dir(root: str | os.PathLike[str] | LakePath) -> LakePath:
    """A lake root (or a folder in it) as a LakePath: the one way files in a lake are
    reached, whether the caller holds a URI, a local path or a LakePath already."""
    if isinstance(root, LakePath):
        return root
    return LakePath(LakeFiles(parse_lake_uri(root)))
