"""Epoch reports: deterministic charts, Dagster Markdown and a self-contained, escaped HTML page."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import polars as pl
import pytest

from assets.epochs import EPOCHS_SCHEMA, REWARDS_SCHEMA, SOURCES, STATEMENTS_SCHEMA
from assets.report import (
    chart_rows,
    distribution_chart,
    distribution_markdown,
    render_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert(1)</script>"
POOL = 1_000_000_000_000
FEES = 2_000


def statement(datanet: str, contributor: str, value: float, se: float, pool: int, fees: int,
              flags: str = "") -> dict[str, Any]:  # fmt: skip
    return {
        "datanet": datanet,
        "epoch": 3,
        "datanet_epoch": f"{datanet}.3",
        "contributor": contributor,
        "rows_contributed": 10,
        "rows_ingested": 10,
        "rows_accepted": 9,
        "duplicates": 0,
        "quarantined": 0,
        "quality": 0.9,
        "value": value,
        "std_error": se,
        "lower_bound": value - 1.96 * se,
        "rank": 1,
        "weight": 0.5,
        "share": 0.5,
        "amount_pool": pool,
        "amount_fees": fees,
        "amount_total": pool + fees,
        "inferences_attributed": 1,
        "flags": flags,
        "policy_hash": "p" * 64,
        "values_seq": 7,
        "values_root": "a" * 64,
        "quality_seq": 8,
        "quality_root": "b" * 64,
        "contributions_seq": 6,
        "contributions_root": "c" * 64,
    }


def reward(datanet: str, role: str, recipient: str, source: str, amount: int) -> dict[str, Any]:
    return {
        "datanet": datanet,
        "epoch": 3,
        "datanet_epoch": f"{datanet}.3",
        "role": role,
        "recipient": recipient,
        "source": source,
        "amount": amount,
        "policy_hash": "p" * 64,
        "reason": f"why {recipient} <b>",
    }


def epoch_record(datanet: str, pool: int, carried_out: int, fees: int, n: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "datanet": datanet,
        "epoch": 3,
        "datanet_epoch": f"{datanet}.3",
        "closed_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        "spec_hash": "s" * 64,
        "policy_hash": "p" * 64,
        "policy_json": "{}",
        "pool_base": pool - 100,
        "carried_in": 100,
        "pool": pool,
        "paid_pool": pool - carried_out,
        "carried_out": carried_out,
        "fees_total": fees,
        "inferences_paid": 4,
        "contributors": n,
    }
    for i, s in enumerate(SOURCES):
        record[f"{s}_seq"] = 100 + i if s != "previous_epoch" else None
        record[f"{s}_root"] = f"{i:x}" * 64 if s != "previous_epoch" else None
    return record


@pytest.fixture
def statements() -> pl.DataFrame:
    rows = [
        statement("alpha", "ana", 0.12, 0.01, 600_000_000_000, 1_234),
        statement("alpha", SCRIPT, 0.05, 0.02, 399_999_999_990, 0),
        statement("alpha", "neg", -0.02, 0.005, 0, 0, "lower_bound_nonpositive"),
    ]
    return pl.DataFrame(rows, schema=STATEMENTS_SCHEMA)


@pytest.fixture
def rewards() -> pl.DataFrame:
    rows = [
        reward("alpha", "contributor", "ana", "pool", 600_000_000_000),
        reward("alpha", "contributor", SCRIPT, "pool", 399_999_999_990),
        reward("alpha", "contributor", "neg", "pool", 0),
        reward("alpha", "carry_over", "next_epoch", "pool", 10),
        reward("alpha", "contributor", "ana", "fees", 1_234),
        reward("alpha", "model_owner", "mo", "fees", 500),
        reward("alpha", "datanet_owner", "owner", "fees", 266),
        reward("beta & co", "carry_over", "next_epoch", "pool", 5_000),
    ]
    return pl.DataFrame(rows, schema=REWARDS_SCHEMA)


@pytest.fixture
def epochs() -> pl.DataFrame:
    rows = [epoch_record("alpha", POOL, 10, FEES, 3), epoch_record("beta & co", 5_000, 5_000, 0, 0)]
    return pl.DataFrame(rows, schema=EPOCHS_SCHEMA)


def many(n: int) -> pl.DataFrame:
    rows = [
        statement("big", f"c{i:04d}", (i % 7 - 2) / 100, 0.01, 1_000 * (n - i), i % 3)
        for i in range(n)
    ]
    if n > 5:
        rows[5]["contributor"] = "$x$ costs $5 " + "very long name " * 5
    return pl.DataFrame(rows, schema=STATEMENTS_SCHEMA)


class StrictParser(HTMLParser):
    """Records text, attributes and tag nesting; HTMLParser itself is lenient."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.doctype
    assert parser.problems == []
    assert parser.stack == []
    return parser


def test_chart_is_a_deterministic_png(statements: pl.DataFrame) -> None:
    first = distribution_chart(statements, "alpha · epoch 3")
    assert first.startswith(PNG_MAGIC)
    assert distribution_chart(statements, "alpha · epoch 3") == first
    # Not a constant image: the data shows in the bytes.
    other = statements.with_columns(pl.col("value") * 2)
    assert distribution_chart(other, "alpha · epoch 3") != first


def test_chart_of_an_empty_epoch_and_of_a_thousand_contributors() -> None:
    empty = pl.DataFrame(schema=STATEMENTS_SCHEMA)
    assert distribution_chart(empty, "empty").startswith(PNG_MAGIC)
    big = many(1000)  # one name is full of `$`: it must not be parsed as mathtext
    png = distribution_chart(big, "big $ epoch")
    assert png.startswith(PNG_MAGIC)
    assert distribution_chart(big, "big $ epoch") == png


def test_chart_caps_labels_and_keeps_the_totals() -> None:
    big = many(1000)
    rows = chart_rows(big)
    assert len(rows) == 41
    assert rows[-1].label == "960 others (mean)"
    assert (rows[-1].count, rows[-1].std_error) == (960, None)
    totals = [r.amount_pool + r.amount_fees for r in rows[:-1]]
    assert totals == sorted(totals, reverse=True)
    assert rows[0].label == "c0000"
    drawn = sum(r.amount_pool * r.count for r in rows)
    assert drawn == pytest.approx(big["amount_pool"].sum(), rel=1e-12)
    assert sum(r.amount_fees * r.count for r in rows) == pytest.approx(big["amount_fees"].sum())
    assert rows[-1].amount_pool <= rows[-2].amount_pool
    assert [r.count for r in chart_rows(big.head(40))] == [1] * 40


def test_markdown_lists_contributors_and_embeds_the_chart(
    statements: pl.DataFrame, epochs: pl.DataFrame
) -> None:
    md = distribution_markdown(statements, epochs.row(0, named=True))
    first = md.splitlines()[0]
    assert "pool 1,000,000,000,000" in first
    assert "paid 999,999,999,990" in first
    assert "carried over 10" in first
    assert "fees 2,000" in first
    assert "| ana |" in md and "| neg |" in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert SCRIPT not in md
    assert "-0.02 ± 0.005" in md
    assert "| 600,000,000,000 | 1,234 | 600,000,001,234 |" in md
    uri = re.search(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert uri is not None
    assert base64.b64decode(uri.group(1)).startswith(PNG_MAGIC)
    # Largest payout first.
    assert md.index("| ana |") < md.index("&lt;script&gt;") < md.index("| neg |")


def test_markdown_of_an_empty_epoch(epochs: pl.DataFrame) -> None:
    md = distribution_markdown(pl.DataFrame(schema=STATEMENTS_SCHEMA), epochs.row(1, named=True))
    assert "No contributors" in md
    assert "carried over 5,000" in md
    assert "](data:image/png;base64," in md


def test_report_is_well_formed_self_contained_and_escaped(
    epochs: pl.DataFrame, rewards: pl.DataFrame, statements: pl.DataFrame
) -> None:
    page = render_report(epochs, rewards, statements, "Epoch 3 <report>")
    parsed = parse(page)
    assert "script" not in parsed.tags
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Epoch 3 &lt;report&gt;" in page
    assert "beta &amp; co" in page
    for tag, key, value in parsed.attrs:
        assert not value.lower().startswith(("http://", "https://", "//")), (tag, key, value)
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.I)
    images = [v for tag, key, v in parsed.attrs if tag == "img" and key == "src"]
    assert len(images) == 2
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    text = "".join(parsed.text)
    for name in ["ana", "neg", SCRIPT, "mo", "owner"]:
        assert name in text
    # Pinned ledger entries: seq and a root prefix (not the whole root).
    assert "100" in text and "0" * 16 + "…" in text and "0" * 64 not in text


def test_report_shows_exact_totals(
    epochs: pl.DataFrame, rewards: pl.DataFrame, statements: pl.DataFrame
) -> None:
    page = render_report(epochs, rewards, statements, "t")
    feet = re.findall(r"<tfoot>(.*?)</tfoot>", page, re.S)
    cells = [re.sub(r"<[^>]+>", "|", f) for f in feet]
    alpha_statements, alpha_rewards, beta_rewards = cells
    assert "|999,999,999,990||1,234||1,000,000,001,224|" in alpha_statements
    assert "|1,000,000,000,000||= epoch pool 1,000,000,000,000|" in alpha_rewards
    assert "|2,000||= epoch fees 2,000|" in alpha_rewards
    assert "|5,000||= epoch pool 5,000|" in beta_rewards
    assert "|0||= epoch fees 0|" in beta_rewards
    assert "mismatch" not in page.replace(".mismatch", "")


def test_report_flags_sums_that_do_not_match(
    epochs: pl.DataFrame, rewards: pl.DataFrame, statements: pl.DataFrame
) -> None:
    wrong = epochs.with_columns(pl.col("fees_total") + 1)
    page = render_report(wrong, rewards, statements, "t")
    assert '<td class="mismatch">≠ epoch fees 2,001</td>' in page


def test_report_of_one_empty_datanet(epochs: pl.DataFrame, rewards: pl.DataFrame) -> None:
    page = render_report(
        epochs.filter(pl.col("datanet") == "beta & co"),
        rewards,
        pl.DataFrame(schema=STATEMENTS_SCHEMA),
        "empty",
    )
    parsed = parse(page)
    assert parsed.tags.count("section") == 1
    assert "ana" not in "".join(parsed.text)  # other Datanets' rewards are not shown
    assert "none" in "".join(parsed.text)
