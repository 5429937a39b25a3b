"""Signed checkpoints of the ledger in the C2SP tlog-checkpoint signed-note format.

A checkpoint body is `<origin>\\n<size>\\n<base64 log root>\\n`; the note appends a blank
line and one signature line `— <key name> <base64(key hash ‖ Ed25519 signature)>`, where
the key hash is the first 4 bytes of SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key). Keys use the
golang.org/x/mod/sumdb/note text forms, so standard note tooling can check them:
verifier `name+hash+base64(0x01 ‖ public key)`, signer
`PRIVATE+KEY+name+hash+base64(0x01 ‖ private seed)`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.log import LedgerEntry

ALG_ED25519 = b"\x01"
SIGNATURE_DASH = "\u2014"  # em dash, as the signed-note format requires
KEY_NAME = re.compile(r"^[^\s+]{1,128}$")


class CheckpointError(ValueError):
    """A malformed checkpoint or key, a bad signature, or a checkpoint the ledger refutes."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + public).digest()[:4]


def _check_name(name: str) -> str:
    if not KEY_NAME.match(name):
        raise CheckpointError(f"invalid key name {name!r}: no spaces or '+'")
    return name


def generate_keys(name: str) -> tuple[str, str]:
    """A new (signer key, verifier key) pair in note text form."""
    _check_name(name)
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes_raw()
    key_hash = _key_hash(name, public).hex()
    signer = f"PRIVATE+KEY+{name}+{key_hash}+{base64.b64encode(ALG_ED25519 + seed).decode()}"
    verifier = f"{name}+{key_hash}+{base64.b64encode(ALG_ED25519 + public).decode()}"
    return signer, verifier


def _parse_key(text: str, private: bool) -> tuple[str, bytes, bytes]:
    text = text.strip()
    if private:
        if not text.startswith("PRIVATE+KEY+"):
            raise CheckpointError("signer key must look like PRIVATE+KEY+name+hash+data")
        text = text.removeprefix("PRIVATE+KEY+")
    parts = text.split("+", 2)  # base64 data may itself contain '+'
    if len(parts) != 3:
        raise CheckpointError("verifier key must look like name+hash+data")
    name, hash_hex, data = parts
    try:
        raw = base64.b64decode(data, validate=True)
        key_hash = bytes.fromhex(hash_hex)
    except ValueError as exc:
        raise CheckpointError(f"malformed key: {exc}") from exc
    if len(raw) != 33 or raw[:1] != ALG_ED25519 or len(key_hash) != 4:
        raise CheckpointError("only Ed25519 keys (algorithm 0x01, 32 bytes) are supported")
    return _check_name(name), key_hash, raw[1:]


def sign_checkpoint(checkpoint: Checkpoint, signer_key: str) -> str:
    """The signed note text of a checkpoint."""
    name, key_hash, seed = _parse_key(signer_key, private=True)
    private = Ed25519PrivateKey.from_private_bytes(seed)
    if _key_hash(name, private.public_key().public_bytes_raw()) != key_hash:
        raise CheckpointError("signer key hash does not match its key")
    body = checkpoint.body()
    signature = private.sign(body.encode())
    blob = base64.b64encode(key_hash + signature).decode()
    return f"{body}\n{SIGNATURE_DASH} {name} {blob}\n"


def open_checkpoint(note: str, verifier_key: str) -> Checkpoint:
    """Parse a signed note and check its signature by `verifier_key`; raise if it fails."""
    name, key_hash, public = _parse_key(verifier_key, private=False)
    if _key_hash(name, public) != key_hash:
        raise CheckpointError("verifier key hash does not match its key")
    body, sep, signatures = note.partition("\n\n")
    if not sep:
        raise CheckpointError("not a signed note: no blank line before the signatures")
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 3 or not lines[1].isdigit() or (lines[1] != "0" and lines[1][0] == "0"):
        raise CheckpointError("checkpoint body must be origin, decimal size, base64 root")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except ValueError as exc:
        raise CheckpointError(f"bad root encoding: {exc}") from exc
    if len(root) != 32:
        raise CheckpointError("checkpoint root must be 32 bytes")
    verified = False
    for line in signatures.splitlines():
        match = re.fullmatch(f"{SIGNATURE_DASH} (\\S+) (\\S+)", line)
        if not match or match.group(1) != name:
            continue
        try:
            blob = base64.b64decode(match.group(2), validate=True)
        except ValueError:
            continue
        if blob[:4] != key_hash:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], body.encode())
            verified = True
        except InvalidSignature as exc:
            raise CheckpointError(f"signature by {name} does not verify") from exc
    if not verified:
        raise CheckpointError(f"no signature by key {name} on this checkpoint")
    return Checkpoint(origin=lines[0], size=int(lines[1]), root=root)


def checkpoint_of(entries: list[LedgerEntry], origin: str, size: int | None = None) -> Checkpoint:
    """The checkpoint of the ledger at `size` entries (default: all)."""
    size = len(entries) if size is None else size
    if not 1 <= size <= len(entries):
        raise CheckpointError(f"size {size} outside the ledger's 1..{len(entries)} entries")
    return Checkpoint(origin, size, bytes.fromhex(entries[size - 1].log_root))


def check_against_ledger(checkpoint: Checkpoint, entries: list[LedgerEntry]) -> None:
    """Raise unless the ledger, at the checkpoint's size, has the checkpoint's root."""
    if checkpoint.size > len(entries):
        raise CheckpointError(
            f"checkpoint covers {checkpoint.size} entries but the ledger has {len(entries)}: "
            "entries were removed"
        )
    if checkpoint.size and entries[checkpoint.size - 1].log_root != checkpoint.root.hex():
        raise CheckpointError(
            f"ledger log root at size {checkpoint.size} differs from the checkpoint: "
            "the ledger was rewritten after it was published"
        )
