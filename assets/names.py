"""Names and errors every stage shares, with nothing heavy to import.

Names of Datanets and contributors are checked here, once, so nothing downstream ever
builds a path or a predicate from an unchecked name. Read-only commands import this module
alone, so they start without polars or pydantic.
"""

from __future__ import annotations

import re
from pathlib import Path

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
CONTRIBUTOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SPECS = "specs"  # the lake folder of published specs: specs/<datanet>.yaml


class SpecError(ValueError):
    """A Datanet spec, or a name, that cannot be accepted; the message says why."""


def check_datanet_name(name: object) -> str:
    """A Datanet name: 1-40 lowercase letters, digits or '_', starting with a letter."""
    if not isinstance(name, str) or not NAME.match(name):
        raise SpecError(
            f"invalid Datanet name {name!r}: use 1-40 lowercase letters, digits or '_', "
            "starting with a letter (no paths, spaces or control characters)"
        )
    return name


def check_contributor_id(contributor: object) -> str:
    """A contributor id: 1-63 letters, digits, '_', '-' or '.', no '..', no path parts."""
    if (
        not isinstance(contributor, str)
        or not CONTRIBUTOR.match(contributor)
        or ".." in contributor
    ):
        raise SpecError(
            f"invalid contributor id {contributor!r}: use 1-63 letters, digits, '_', '-' or "
            "'.', starting with a letter or digit, without '..'"
        )
    return contributor


def epoch_key(datanet: str, epoch: int) -> str:
    """The one key of a Datanet's epoch: its Dagster partition key, its partition value in
    the epoch tables and in the ledger (`wine.0`)."""
    return f"{check_datanet_name(datanet)}.{int(epoch)}"


def parse_epoch_key(key: str) -> tuple[str, int]:
    """(Datanet, epoch) of an epoch key; SpecError for anything else."""
    datanet, _, number = key.rpartition(".")
    if not number.isdigit():
        raise SpecError(f"invalid epoch key {key!r}: expected <datanet>.<epoch>, e.g. wine.0")
    return check_datanet_name(datanet), int(number)


def spec_names(root: Path) -> list[str]:
    """Datanets that have a spec file, by name."""
    from ledger.storage import lake_dir

    folder = lake_dir(root) / SPECS
    if not folder.is_dir():
        return []
    names = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            names.append(check_datanet_name(path.stem))
        except SpecError:
            continue  # a stray file with a hostile name is never a Datanet
    return names
