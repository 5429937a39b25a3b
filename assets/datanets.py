"""Datanet specs: a typed dataset with a task, a metric and a reward policy.

A spec is a YAML (or JSON) document validated by the pydantic models below. Its hash
(SHA-256 of the canonical JSON of the validated model) is its version: a changed spec is a
new version, never an edit. Names of Datanets and contributors are checked here, once,
so nothing downstream ever builds a path or a predicate from an unchecked name.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Literal

import polars as pl
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from assets.names import (  # re-exported: every stage imports them from here
    SpecError,
    check_contributor_id,
    check_datanet_name,
)

MAX_AMOUNT = 2**62  # amounts are int64 base units; pools and fees stay well inside
RESERVED_COLUMNS = ("datanet", "contributor", "batch_id", "received_at", "row_hash", "row_index")
MAX_COLUMN_NAME = 200
MAX_LAKE_COLUMN = 63
# The one rule for column names (docs/ingestion.md), printed verbatim when a name is refused.
COLUMN_RULE = (
    f"a column name is spelled as the files' headers spell it: 1-{MAX_COLUMN_NAME} "
    "characters, no control characters, no spaces at either end; its lake column is the "
    "name lower-cased with accents dropped, each run of characters other than a-z and 0-9 "
    "made one '_', none at either end, and 'c_' in front when it starts with a digit; "
    f"lake columns must be 1-{MAX_LAKE_COLUMN} characters, distinct within the spec, "
    f"and not one of {', '.join(RESERVED_COLUMNS)}"
)


def lake_column(name: str) -> str:
    """The lake (Delta, DuckDB, LightGBM, SHAP) column of a header as files spell it:
    safe unquoted everywhere and free of case collisions (see COLUMN_RULE)."""
    folded = unicodedata.normalize("NFKD", name.casefold())
    plain = "".join(ch for ch in folded if not unicodedata.combining(ch))
    column = re.sub(r"[^a-z0-9]+", "_", plain).strip("_")
    return f"c_{column}" if column[:1].isdigit() else column


def check_column_name(name: str) -> str:
    """A column name as files spell it, refused with COLUMN_RULE when it cannot be one."""
    problem = None
    if not 1 <= len(name) <= MAX_COLUMN_NAME:
        problem = f"it has {len(name)} characters"
    elif any(unicodedata.category(ch).startswith("C") for ch in name):
        problem = "it holds a control character"
    elif name != name.strip():
        problem = "it has spaces at an end"
    elif not lake_column(name):
        problem = "it has no letter or digit a-z, 0-9 to make a lake column of"
    elif len(lake_column(name)) > MAX_LAKE_COLUMN:
        problem = f"its lake column {lake_column(name)!r} is longer than {MAX_LAKE_COLUMN}"
    elif lake_column(name) in RESERVED_COLUMNS:
        problem = f"its lake column {lake_column(name)!r} is reserved"
    if problem:
        raise ValueError(f"column name {name!r} refused ({problem}): {COLUMN_RULE}")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    """A typed column with its allowed values. `name` is the header as files spell it;
    `identifier` is its column in the lake (COLUMN_RULE)."""

    name: str
    type: Literal["float", "int", "bool", "category", "string"]
    min: float | None = None
    max: float | None = None
    categories: list[str | int] | None = None
    nullable: bool = False
    max_length: int = Field(default=256, ge=1, le=1_000_000)
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return check_column_name(name)

    @property
    def identifier(self) -> str:
        """The column's name in every lake table, model and query."""
        return lake_column(self.name)

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if self.type == "category" and not self.categories:
            raise ValueError(f"category column {self.name!r} needs `categories`")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min {self.min} > max {self.max}")
        if (self.min is not None or self.max is not None) and self.type not in ("float", "int"):
            raise ValueError(f"column {self.name!r}: min/max only apply to numbers")
        return self

    def polars_type(self) -> pl.DataType:
        return {
            "float": pl.Float64(),
            "int": pl.Int64(),
            "bool": pl.Boolean(),
            "category": pl.String(),
            "string": pl.String(),
        }[self.type]


class QualityPolicy(_Strict):
    """Thresholds of the quality stage (docs/quality.md)."""

    min_row_score: float = Field(default=0.5, ge=0, le=1)
    min_accepted_share: float = Field(default=0.5, ge=0, le=1)
    near_duplicate_decimals: int = Field(default=6, ge=0, le=15)
    # rows with the same label and other columns whose float features all lie within this
    # tolerance (relative above a feature's spread, absolute below it) are near-duplicates:
    # the earliest submitted keeps the credit (docs/quality.md); 0 asks for equality
    near_duplicate_tolerance: float = Field(default=0.01, ge=0, le=1)
    label_folds: int = Field(default=5, ge=2, le=20)
    outlier_z: float = Field(default=4.0, gt=0)


class TrainingPolicy(_Strict):
    """LightGBM settings; fixed seed, deterministic mode and thread count make runs
    reproducible byte for byte."""

    num_boost_round: int = Field(default=100, ge=1, le=10_000)
    params: dict[str, float | int | str | bool] = Field(
        default_factory=lambda: {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 5}
    )
    seed: int = 0
    num_threads: int = Field(default=1, ge=1, le=64)


class ValuationPolicy(_Strict):
    """How contributor values are estimated (docs/attribution.md)."""

    exact_max_players: int = Field(default=12, ge=1, le=16)
    # above exact_max_players: Stratified SVARM with a control variate (every fit informs
    # every contributor; 6.2x fewer fits than pyDVL's TMC for the same error at the median
    # budget of the G = 10 benchmark, at least 3.2x on two games, docs/benchmarks.md) or antithetic
    # truncated permutations (smaller fits; used anyway when max_evaluations is below what
    # SVARM needs to converge, ~2G ln G: e.g. 1,000 contributors, docs/attribution.md)
    # "banzhaf": Data Banzhaf values instead of Shapley (exact up to exact_max_players, then
    # maximum sample reuse): a noise-robust ranking, not efficient (docs/attribution.md)
    method: Literal["permutation", "svarm", "banzhaf"] = "svarm"
    half_width: float = Field(default=0.01, gt=0)  # target confidence half-width per player
    z: float = Field(default=1.96, gt=0)
    max_evaluations: int = Field(default=2000, ge=10)
    truncation: float = Field(default=0.01, ge=0, lt=1)
    pairs_per_batch: int = Field(default=8, ge=1)  # permutation: pairs between stopping checks
    exact_first: bool = True  # permutation: value everyone alone first (control variates)
    sets_per_batch: int = Field(default=16, ge=1)  # svarm: coalitions between stopping checks
    num_boost_round: int = Field(default=50, ge=1)
    workers: int = Field(default=1, ge=1, le=64)
    seed: int = 0
    knn_k: int = Field(default=10, ge=1)


class RewardPolicy(_Strict):
    """How an epoch's pool and the inference fees are split, and how the policy itself
    changes (governance). Shares are integer basis points, so every split stays exact."""

    epoch_days: int = Field(default=7, ge=1, le=366)
    pool_per_epoch: int = Field(default=1_000_000_000, ge=0, le=MAX_AMOUNT)  # base units
    z: float = Field(default=1.0, ge=0, le=10)
    max_share_per_contributor: float = Field(default=1.0, gt=0, le=1)
    fee_per_inference: int = Field(default=1_000_000, ge=0, le=MAX_AMOUNT)  # base units
    fee_contributors_bps: int = Field(default=7000, ge=0, le=10_000)
    fee_model_owner_bps: int = Field(default=2000, ge=0, le=10_000)
    fee_datanet_owner_bps: int = Field(default=1000, ge=0, le=10_000)
    model_owner: str | None = None  # who trains and serves the model; default: the owner
    quorum_bps: int = Field(default=3000, ge=0, le=10_000)  # turnout needed, of all weight
    threshold_bps: int = Field(default=5000, ge=0, lt=10_000)  # yes must exceed this share
    voting_days: float = Field(default=3.0, gt=0, le=366)

    @model_validator(mode="after")
    def _fee_shares(self) -> RewardPolicy:
        total = self.fee_contributors_bps + self.fee_model_owner_bps + self.fee_datanet_owner_bps
        if total != 10_000:
            raise ValueError(f"fee shares must sum to 10000 basis points, not {total}")
        if self.model_owner is not None:
            check_contributor_id(self.model_owner)
        return self

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def policy_hash(self) -> str:
        """The policy's version: SHA-256 of its canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


class ValidationSource(_Strict):
    """Where the fixed validation set comes from; never from contributions being valued."""

    kind: Literal["bundled", "file"]
    name: str  # bundled: a scikit-learn data set name; file: path relative to the spec
    fraction: float = Field(default=0.3, gt=0, lt=1)
    seed: int = 0


class DatanetSpec(_Strict):
    name: str
    description: str = ""
    owner: str
    licence: str
    task: Literal["binary", "multiclass", "regression"]
    features: list[Column] = Field(min_length=1, max_length=500)
    label: Column
    key: list[str] | None = None
    metric: Literal["accuracy", "balanced_accuracy", "roc_auc", "r2_clipped"]
    validation: ValidationSource
    require_signatures: bool = True
    max_file_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    quality: QualityPolicy = QualityPolicy()
    training: TrainingPolicy = TrainingPolicy()
    valuation: ValuationPolicy = ValuationPolicy()
    rewards: RewardPolicy = RewardPolicy()

    @model_validator(mode="after")
    def _consistent(self) -> DatanetSpec:
        check_datanet_name(self.name)
        names = [c.name for c in self.columns]
        _distinct_lake_columns(names)
        for k in self.key or []:
            if k not in names:
                raise ValueError(f"key column {k!r} is not a feature or the label")
        if self.task in ("binary", "multiclass") and self.label.type not in ("int", "category"):
            raise ValueError("classification labels must be `int` or `category` with categories")
        if self.task in ("binary", "multiclass") and not self.label.categories:
            raise ValueError("classification labels need their `categories`")
        if self.task == "binary" and len(self.label.categories or []) != 2:
            raise ValueError("a binary task needs exactly two label categories")
        if self.task == "regression" and self.label.type not in ("float", "int"):
            raise ValueError("a regression label must be numeric")
        if self.metric == "r2_clipped" and self.task != "regression":
            raise ValueError("r2_clipped is a regression metric")
        if self.metric != "r2_clipped" and self.task == "regression":
            raise ValueError("regression Datanets use metric r2_clipped")
        return self

    @property
    def columns(self) -> list[Column]:
        """Features then the label: the typed columns of every contribution row."""
        return [*self.features, self.label]

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def spec_hash(self) -> str:
        """The spec's version: SHA-256 of its canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


def _distinct_lake_columns(names: list[str]) -> None:
    """Refuse two names (features and label) that would share a lake column, naming both."""
    seen: dict[str, str] = {}
    for name in names:
        column = lake_column(name)
        if column in seen:
            first = seen[column]
            what = (
                f"column {name!r} appears twice"
                if first == name
                else (f"columns {first!r} and {name!r} both become lake column {column!r}")
            )
            raise ValueError(f"{what}: {COLUMN_RULE}")
        seen[column] = name


def parse_spec(text: str, source: str = "<spec>") -> DatanetSpec:
    """Parse and validate a YAML/JSON spec; SpecError lists every problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a spec must be a mapping of fields")
    try:
        return DatanetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {_message(e['msg'])}"
            for e in exc.errors()
        )
        raise SpecError(f"{source}: invalid Datanet spec: {problems}") from None


def _message(msg: str) -> str:
    """pydantic's message without its 'Value error, ' prefix."""
    return msg.removeprefix("Value error, ")


def read_spec_text(path: Path) -> str:
    """A spec file's text; SpecError naming the path when it is missing or not UTF-8."""
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec: {exc.strerror or exc}") from None


def load_spec(path: Path) -> DatanetSpec:
    return parse_spec(read_spec_text(path), str(path))
