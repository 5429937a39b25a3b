"""Human-readable views of a closed epoch: a chart, Dagster Markdown and a static HTML report.

Everything here is a pure function of the epoch tables (`assets.epochs` schemas), so a
recomputed epoch renders to the same bytes as the original; charts are PNG with no
timestamp or software metadata for that reason. The HTML page is self-contained (inline CSS,
images as data URIs, no JavaScript) so it can be archived next to the ledger and opened
offline, and every string that came from a user (Datanet, contributor, recipient names,
flags, reasons) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from dataclasses import dataclass
from typing import Any

import polars as pl

from assets.epochs import SOURCES

# Contributors drawn one by one; the rest share one "others" bar so 1000 stay readable.
CHART_TOP = 40
# Interval drawn around each value. The policy's z is not in the statements, so the chart
# uses the usual 95% normal quantile and says so on the axis.
CHART_Z = 1.96
LABEL_WIDTH = 28
ROOT_PREFIX = 16
MISSING = "—"
_AMOUNTS = ("amount_pool", "amount_fees", "amount_total")


@dataclass(frozen=True)
class ChartRow:
    """One bar of the chart: a contributor, or the mean of those past the cap (`count` > 1;
    a mean, not a sum, so the long tail stays on the same scale as the people drawn)."""

    label: str
    amount_pool: float
    amount_fees: float
    value: float
    # None for the "others" aggregate: the estimates are correlated, so no honest error bar.
    std_error: float | None
    count: int = 1


def fmt_int(x: Any) -> str:
    """Integer base units with thousands separators; a dash for missing."""
    return MISSING if x is None else f"{int(x):,}"


def _fmt_float(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    return format(float(x), spec)


def fmt_value(value: Any, std_error: Any) -> str:
    """A Shapley value with its standard error, as `v ± se`."""
    return f"{_fmt_float(value, '.4g')} ± {_fmt_float(std_error, '.2g')}"


def _num(x: Any) -> float:
    """A float for plotting: missing or NaN counts as 0 so one bad row cannot break a chart."""
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def sort_statements(statements: pl.DataFrame) -> pl.DataFrame:
    """Largest payout first; ties by value then name so the order is total and stable."""
    return statements.sort(
        ["amount_total", "value", "contributor"],
        descending=[True, True, False],
        nulls_last=True,
        maintain_order=True,
    )


def chart_rows(statements: pl.DataFrame, top: int = CHART_TOP) -> list[ChartRow]:
    """The bars to draw: the `top` largest payouts, then one "others" row with the mean
    payout and value of the rest."""
    ordered = sort_statements(statements)
    out = [
        ChartRow(
            str(r["contributor"]),
            float(r["amount_pool"] or 0),
            float(r["amount_fees"] or 0),
            _num(r["value"]),
            _num(r["std_error"]),
        )
        for r in ordered.head(top).iter_rows(named=True)
    ]
    rest = ordered.slice(top)
    if rest.height:
        n = rest.height
        out.append(
            ChartRow(
                f"{n} others (mean)",
                int(rest["amount_pool"].fill_null(0).sum()) / n,
                int(rest["amount_fees"].fill_null(0).sum()) / n,
                sum(_num(v) for v in rest["value"]) / n,
                None,
                n,
            )
        )
    return out


def _short(name: str, width: int = LABEL_WIDTH) -> str:
    """Tick labels stay one line and bounded, whatever a contributor called themselves."""
    name = " ".join(name.split())
    return name if len(name) <= width else name[: width - 1] + "…"


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def distribution_chart(statements: pl.DataFrame, title: str) -> bytes:
    """A PNG of one epoch: stacked pool + fee payouts per contributor (largest first) beside
    their Shapley values with ±1.96·std_error bars, so a payout can be read against the
    evidence for it. Same statements, same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    rows = chart_rows(statements)
    # Names and titles are user text: never interpret `$...$` as mathtext.
    with matplotlib.rc_context({"text.parse_math": False}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from")
        if not rows:
            fig, ax = plt.subplots(figsize=(8, 1.6), dpi=100)
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no contributors in this epoch", ha="center", va="center")
            ax.set_title(title)
            return _png(fig)

        height = max(2.8, 0.24 * len(rows) + 1.6)
        fig, (amounts, values) = plt.subplots(
            1, 2, figsize=(11, height), dpi=100, sharey=True, width_ratios=[3, 2]
        )
        y = list(range(len(rows)))
        pool = [r.amount_pool for r in rows]
        fees = [r.amount_fees for r in rows]
        amounts.barh(y, pool, color="#3b6ea5", label="pool")
        amounts.barh(y, fees, left=pool, color="#e0a030", label="fees")
        amounts.set_yticks(y, [_short(r.label) for r in rows])
        amounts.set_ylim(len(rows) - 0.5, -0.5)  # largest at the top
        amounts.set_xlabel("amount paid (base units)")
        amounts.xaxis.set_major_formatter(EngFormatter(sep=""))
        amounts.axvline(0, color="black", linewidth=0.8)
        amounts.legend(
            loc="lower left", bbox_to_anchor=(0, 1), ncols=2, frameon=False, fontsize="small"
        )

        value = [r.value for r in rows]
        err = [CHART_Z * r.std_error if r.std_error is not None else 0.0 for r in rows]
        values.errorbar(value, y, xerr=err, fmt="none", ecolor="#555555", capsize=2)
        colors = ["#b03a2e" if v < 0 else "#1e7b4a" for v in value]
        values.scatter(value, y, c=colors, s=14, zorder=3)
        values.axvline(0, color="black", linewidth=0.8)
        values.set_xlabel("Shapley value\nbars: ± 1.96 × std_error (not the policy's z)")
        fig.suptitle(title)
        fig.tight_layout()
        return _png(fig)


def data_uri(png: bytes) -> str:
    """A PNG as a data URI, so reports carry their images with them."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _md(text: Any) -> str:
    """A Markdown table cell: no raw HTML, no column breaks, one line."""
    s = "" if text is None else str(text)
    return html.escape(" ".join(s.split()), quote=False).replace("|", "\\|")


def _alt(text: str) -> str:
    """Image alt text cannot close its own brackets."""
    return _md(text).replace("[", "(").replace("]", ")")


def epoch_title(epoch_row: dict[str, Any]) -> str:
    """How an epoch is named in titles: `<datanet> · epoch <n>`."""
    return f"{epoch_row.get('datanet', '')} · epoch {epoch_row.get('epoch', '')}"


def distribution_markdown(statements: pl.DataFrame, epoch_row: dict[str, Any]) -> str:
    """Markdown for the epoch's Dagster metadata: the pool's fate in one line, each
    contributor's evidence and payout, and the chart inline (metadata cannot link files)."""
    title = epoch_title(epoch_row)
    lines = [
        f"**{_md(title)}** — pool {fmt_int(epoch_row.get('pool'))} · "
        f"paid {fmt_int(epoch_row.get('paid_pool'))} · "
        f"carried over {fmt_int(epoch_row.get('carried_out'))} · "
        f"fees {fmt_int(epoch_row.get('fees_total'))}",
        "",
    ]
    if statements.is_empty():
        lines.append("_No contributors in this epoch._")
    else:
        lines += [
            "| contributor | value ± std_error | quality | amount_pool | amount_fees "
            "| amount_total | flags |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in sort_statements(statements).iter_rows(named=True):
            lines.append(
                f"| {_md(r['contributor'])} | {fmt_value(r['value'], r['std_error'])} "
                f"| {_fmt_float(r['quality'], '.3f')} | {fmt_int(r['amount_pool'])} "
                f"| {fmt_int(r['amount_fees'])} | {fmt_int(r['amount_total'])} "
                f"| {_md(r['flags'])} |"
            )
    chart = distribution_chart(statements, title)
    lines += ["", f"![distribution of {_alt(title)}]({data_uri(chart)})"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# HTML report

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1.2rem; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; vertical-align: top; }
th { background: #f4f4f6; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tfoot tr { background: #f9f9fb; font-weight: 600; }
.mismatch { color: #b03a2e; } .ok { color: #1e7b4a; }
.neg { color: #b03a2e; }
code { font-size: .92em; }
img { max-width: 100%; height: auto; }
.empty { color: #666; font-style: italic; }
"""


def _e(text: Any) -> str:
    """Escape anything for HTML text or attribute values."""
    return html.escape("" if text is None else str(text), quote=True)


def _row(cells: list[str]) -> str:
    return "<tr>" + "".join(cells) + "</tr>"


def _td(text: Any, num: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("num" if num else "", cls) if c)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{_e(text)}</td>"


def _table(
    head: list[str], body: list[str], foot: list[str] | None = None, numeric: tuple[str, ...] = ()
) -> str:
    """A table; the `numeric` columns get right-aligned headers like their cells."""
    num_attr = ' class="num"'
    ths = "".join(f"<th{num_attr if h in numeric else ''}>{_e(h)}</th>" for h in head)
    if not body:
        body = [f'<tr><td colspan="{len(head)}" class="empty">none</td></tr>']
    parts = ["<table>", f"<thead><tr>{ths}</tr></thead>", "<tbody>", *body, "</tbody>"]
    if foot:
        parts += ["<tfoot>", *foot, "</tfoot>"]
    parts.append("</table>")
    return "\n".join(parts)


def _summary_html(e: dict[str, Any]) -> str:
    """What happened to the pool, and under which policy."""
    closed = e.get("closed_at")
    items = [
        ("pool", fmt_int(e.get("pool"))),
        ("of which policy pool", fmt_int(e.get("pool_base"))),
        ("carried in", fmt_int(e.get("carried_in"))),
        ("paid from pool", fmt_int(e.get("paid_pool"))),
        ("carried out", fmt_int(e.get("carried_out"))),
        ("fees", fmt_int(e.get("fees_total"))),
        ("inferences paid", fmt_int(e.get("inferences_paid"))),
        ("contributors", fmt_int(e.get("contributors"))),
        ("closed at", closed.isoformat() if closed is not None else MISSING),
    ]
    rows = [_row([f"<th>{_e(k)}</th>", _td(v, num=True)]) for k, v in items]
    rows.append(_row(["<th>policy hash</th>", f"<td><code>{_e(e.get('policy_hash'))}</code></td>"]))
    rows.append(_row(["<th>spec hash</th>", f"<td><code>{_e(e.get('spec_hash'))}</code></td>"]))
    return '<table class="summary">\n' + "\n".join(rows) + "\n</table>"


def _sources_html(e: dict[str, Any]) -> str:
    """The ledger entries the epoch pinned, so a reader can recompute it."""
    body = []
    for s in SOURCES:
        root = e.get(f"{s}_root")
        shown = MISSING if root is None else str(root)[:ROOT_PREFIX] + "…"
        body.append(
            _row(
                [
                    _td(s),
                    _td(fmt_int(e.get(f"{s}_seq")), num=True),
                    f'<td><code title="{_e(root)}">{_e(shown)}</code></td>',
                ]
            )
        )
    return _table(["input", "ledger seq", "root"], body, numeric=("ledger seq",))


def _statements_html(statements: pl.DataFrame) -> str:
    """Per contributor: the evidence (rows, quality, value) and the resulting payout."""
    body = []
    for r in sort_statements(statements).iter_rows(named=True):
        neg = "neg" if (r["value"] or 0) < 0 else ""
        body.append(
            _row(
                [
                    _td(r["contributor"]),
                    _td(fmt_int(r["rank"]), num=True),
                    _td(f"{fmt_int(r['rows_accepted'])} / {fmt_int(r['rows_ingested'])}", True),
                    _td(_fmt_float(r["quality"], ".3f"), num=True),
                    _td(fmt_value(r["value"], r["std_error"]), num=True, cls=neg),
                    _td(_fmt_float(r["lower_bound"], ".4g"), num=True),
                    _td(_fmt_float(r["share"], ".2%"), num=True),
                    _td(fmt_int(r["amount_pool"]), num=True),
                    _td(fmt_int(r["amount_fees"]), num=True),
                    _td(fmt_int(r["amount_total"]), num=True),
                    _td(r["flags"]),
                ]
            )
        )
    foot = None
    if body:
        totals = [int(statements[c].fill_null(0).sum()) for c in _AMOUNTS]
        foot = [
            _row(
                [
                    '<td colspan="7">total</td>',
                    *(_td(fmt_int(t), num=True) for t in totals),
                    "<td></td>",
                ]
            )
        ]
    head = ["contributor", "rank", "rows accepted / ingested", "quality", "value ± std_error"]
    head += ["lower bound", "share of pool", "amount_pool", "amount_fees", "amount_total"]
    return _table([*head, "flags"], body, foot, numeric=tuple(head[1:]))


def _total_row(label: str, total: int, expected: Any, expected_name: str) -> str:
    """A sum next to what it must equal, flagged if it does not."""
    ok = expected is not None and total == int(expected)
    check = (
        f'<td class="{"ok" if ok else "mismatch"}">'
        f"{'=' if ok else '≠'} {_e(expected_name)} {_e(fmt_int(expected))}</td>"
    )
    return _row([f'<td colspan="3">{_e(label)}</td>', _td(fmt_int(total), num=True), check])


def _rewards_html(rewards: pl.DataFrame, e: dict[str, Any]) -> str:
    """Every payout row, with the pool and fee sums checked against the epoch record."""
    ordered = rewards.sort(["source", "role", "recipient"], descending=[True, False, False])
    body = [
        _row(
            [
                _td(r["role"]),
                _td(r["recipient"]),
                _td(r["source"]),
                _td(fmt_int(r["amount"]), num=True),
                _td(r["reason"]),
            ]
        )
        for r in ordered.iter_rows(named=True)
    ]
    pool_sum = int(rewards.filter(pl.col("source") == "pool")["amount"].sum() or 0)
    fees_sum = int(rewards.filter(pl.col("source") == "fees")["amount"].sum() or 0)
    foot = [
        _total_row("pool rows (incl. carry-over)", pool_sum, e.get("pool"), "epoch pool"),
        _total_row("fee rows", fees_sum, e.get("fees_total"), "epoch fees"),
    ]
    head = ["role", "recipient", "source", "amount", "reason"]
    return _table(head, body, foot, numeric=("amount",))


def _section_html(
    index: int, e: dict[str, Any], rewards: pl.DataFrame, statements: pl.DataFrame
) -> str:
    title = epoch_title(e)
    chart = data_uri(distribution_chart(statements, title))
    return "\n".join(
        [
            f'<section id="datanet-{index}">',
            f"<h2>{_e(title)}</h2>",
            _summary_html(e),
            "<h3>Pinned ledger entries</h3>",
            _sources_html(e),
            "<h3>Distribution</h3>",
            f'<figure><img alt="distribution of {_e(title)}" src="{chart}">',
            "<figcaption>Payout per contributor (pool + fees), largest first, beside their "
            "Shapley value ± 1.96 × std_error.</figcaption></figure>",
            "<h3>Statements</h3>",
            _statements_html(statements),
            "<h3>Rewards</h3>",
            _rewards_html(rewards, e),
            "</section>",
        ]
    )


def render_report(
    epochs: pl.DataFrame, rewards: pl.DataFrame, statements: pl.DataFrame, title: str
) -> str:
    """A self-contained HTML5 page for one epoch of one or several Datanets: one section per
    row of `epochs`, with the rewards and statements of that Datanet's epoch. Rows of
    `rewards`/`statements` without an epoch row are not shown."""
    sections, toc = [], []
    ordered = epochs.sort(["datanet", "epoch"], maintain_order=True)
    for i, e in enumerate(ordered.iter_rows(named=True)):
        match = (pl.col("datanet") == e["datanet"]) & (pl.col("epoch") == e["epoch"])
        sections.append(_section_html(i, e, rewards.filter(match), statements.filter(match)))
        toc.append(f'<li><a href="#datanet-{i}">{_e(epoch_title(e))}</a></li>')
    body = "\n".join(sections) if sections else '<p class="empty">No epochs.</p>'
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{_e(title)}</h1>",
            "<nav><ul>" + "".join(toc) + "</ul></nav>" if toc else "",
            body,
            "</body>",
            "</html>",
            "",
        ]
    )
