"""What `show` draws: the ranked overview with its 24-hour sparklines, and one pair's metrics with its
7-day chart and history; JSON and CSV of both (the machinery is mcdata.render's)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from mcdata.errors import printable
from mcdata.render import (
    ANSI,
    SPREAD_DIGITS,
    Output,
    age_text,
    change,
    console,
    number,
    percent,
    rank,
    run_line,
    timestamp,
    write_csv,
    write_json_streamed,
)
from mcdata.views import SHOWN_METRIC_ORDER, MetricRow, Overview, PairView

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

SHOWN_METRIC_COLUMNS = (*SHOWN_METRIC_ORDER, "std_rank_of")  # JSON and CSV: each row says how many were ranked


SPARK = "▁▂▃▄▅▆▇█"


def hour_sparkline(closes: Sequence[float | None]) -> str:
    """One glyph per hour (hourly_closes): the hours without a sample are blank."""
    known = [value for value in closes if value is not None]
    if not known:
        return " " * len(closes)
    low, high = min(known), max(known)
    span = high - low
    return "".join(" " if value is None else SPARK[int((value - low) / span * (len(SPARK) - 1)) if span else 0]
                   for value in closes)


def _metric_row(row: MetricRow, ranked: int) -> dict[str, Any]:
    return {**{c: row.get(c) for c in SHOWN_METRIC_ORDER}, "std_rank_of": ranked}


def overview_output(view: Overview) -> Output:
    pairs = [_metric_row(r, view.ranked_pairs.get(r["exchange"], 0)) for r in view.pairs]
    document = {"as_of": view.as_of, "ranked_pairs": view.ranked_pairs, "pairs": pairs, "last_run": view.last_run,
                "not_configured": [{"exchange": e, "pair": p} for e, p in sorted(view.unconfigured)]}
    return Output(document, pairs, SHOWN_METRIC_COLUMNS, lambda out: overview_table(view, out))


def write_overview_streamed(head: Overview, rows: Iterable[MetricRow], output_format: str, out: TextIO) -> None:
    """overview_output's JSON or CSV of every row, written as the rows are read (flat memory)."""
    shown = (_metric_row(r, head.ranked_pairs.get(r["exchange"], 0)) for r in rows)
    if output_format == "csv":
        write_csv(shown, SHOWN_METRIC_COLUMNS, out)
        return
    write_json_streamed({"as_of": head.as_of, "ranked_pairs": head.ranked_pairs}, "pairs", shown,
                        lambda: {"last_run": head.last_run, "not_configured": [
                            {"exchange": e, "pair": p} for e, p in sorted(head.unconfigured)]}, out)


def pair_output(view: PairView) -> Output:
    history = [_metric_row(r, view.ranked_pairs) for r in view.history]
    document = {"exchange": view.exchange, "pair": view.pair, "as_of": view.as_of, "ranked_pairs": view.ranked_pairs,
                "metrics": _metric_row(view.metrics, view.ranked_pairs), "history": history,
                "prices": [{"timestamp": t, "price": p} for t, p in view.prices], "last_run": view.last_run}
    return Output(document, history, SHOWN_METRIC_COLUMNS, lambda out: pair_table(view, out))


# The overview's columns, most important first: the first three never shrink or drop; the others drop
# out from the end as the terminal narrows (a pipe is 200 wide and keeps them all).
OVERVIEW_COLUMNS = ("rank", "pair", "latest", "24h change", "24h stddev", "24h volatility", "7d average",
                    "last 24h", "samples 24h/7d", "7d min", "7d max")


ALWAYS_SHOWN = 3


def _overview_cells(row: MetricRow, label: str, ranked: int, spark: list[float | None]) -> dict[str, Any]:
    from rich.text import Text

    text, style = change(row["change_24h_pct"])
    volatility = percent(row["volatility_24h"])
    return {"rank": rank(row["std_rank"], ranked), "pair": printable(label), "latest": number(row["latest_price"]),
            "24h change": Text(text, style=style), "24h stddev": number(row["stddev_24h"], SPREAD_DIGITS),
            "24h volatility": volatility, "7d average": number(row["weekly_average"]),
            "last 24h": hour_sparkline(spark), "samples 24h/7d": f"{row['samples_24h']}/{row['samples_7d']}",
            "7d min": number(row["min_price"]), "7d max": number(row["max_price"])}


def fitting_columns(widths: Mapping[str, int], available: int) -> list[str]:
    """The overview's columns that fit in `available` characters, dropping the least important first.
    A rich table with a box needs each column's width plus 3 (padding and a rule), plus 1."""
    shown = list(OVERVIEW_COLUMNS)
    while len(shown) > ALWAYS_SHOWN and sum(widths[c] + 3 for c in shown) + 1 > available:
        shown.pop()
    return shown


# Rows a table is laid out at a time: rich keeps every rendered cell of a table until it prints it
# (20,000 rows: 16 s and 290 MB before the first line).
TABLE_CHUNK = 1_000


def print_in_chunks(terminal: Console, table_for: Callable[[bool, bool], Table],
                    rows: Sequence[Sequence[Any]]) -> None:
    """Print a long table TABLE_CHUNK rows at a time, as the one table it is: `table_for(first, last)` makes
    a chunk's table with fixed column widths (so each chunk's lines continue the last one's), and the edge
    lines between chunks are left out. Memory stays flat and the first rows appear at once."""
    chunk = TABLE_CHUNK
    starts = range(0, len(rows), chunk) or range(1)
    for start in starts:
        first, last = start == 0, start + chunk >= len(rows)
        table = table_for(first, last)
        for row in rows[start:start + chunk]:
            table.add_row(*row)
        if first and last:
            terminal.print(table)
            return
        with terminal.capture() as captured:
            terminal.print(table)
        lines = captured.get().splitlines(keepends=True)
        lines = lines[(0 if first else 1):(None if last else -1)]  # a later chunk's top edge, an earlier's bottom
        terminal.file.write("".join(lines))
        terminal.file.flush()


def overview_table(view: Overview, out: TextIO) -> None:
    from rich.cells import cell_len
    from rich.table import Table

    several_venues = len({r["exchange"] for r in view.pairs}) > 1
    def label(row: MetricRow) -> str:
        name = f"{row['exchange']}:{row['pair']}" if several_venues else row["pair"]
        return f"{name} *" if (row["exchange"], row["pair"]) in view.unconfigured else name

    rows = [_overview_cells(row, label(row),
                            view.ranked_pairs.get(row["exchange"], 0),
                            view.sparklines.get((row["exchange"], row["pair"]), [None] * 24))
            for row in view.pairs]
    # a column is as wide as its cells on the terminal, where a wide character takes two
    widths = {c: max([len(c), *(cell_len(str(cells[c])) for cells in rows)]) for c in OVERVIEW_COLUMNS}
    terminal = console(out)
    shown = fitting_columns(widths, terminal.width)
    title = f"Metrics as of {timestamp(view.as_of)} ({age_text(view.as_of)}), ranked by 24 h stddev"

    def table(first: bool, last: bool) -> Table:
        table = Table(title=title if first else None, title_justify="left", show_header=first,
                      caption=run_line(view.last_run) if last else None, caption_justify="left")
        for name in shown:  # each column as wide as its widest cell: rank, pair and price are never cut
            table.add_column(name, justify="left" if name in ("pair", "last 24h") else "right", no_wrap=True,
                             width=widths[name])
        return table

    print_in_chunks(terminal, table, [[cells[name] for name in shown] for cells in rows])
    if len(view.pairs) < view.total:
        terminal.print(f"showing {len(view.pairs):,} of {view.total:,} pairs: --limit N or --all for more, "
                       "--sort to rank by another metric")
    if view.unconfigured:
        terminal.print("* not configured any more: not fetched, its numbers stop at its last sample")
    hidden = [name for name in OVERVIEW_COLUMNS if name not in shown]
    if hidden:  # never silently: the seed query's min_price is among the first to go
        terminal.print(f"hidden: {', '.join(hidden)} (COLUMNS=200)")


def _midnights(first: datetime, last: datetime) -> list[datetime]:
    day = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = []
    while day <= last:
        if day >= first:
            days.append(day)
        day += timedelta(days=1)
    return days


def price_chart(prices: Sequence[tuple[datetime, float]], title: str, width: int, color: bool) -> str:
    """A terminal line chart of the prices (plotext), dates on the x axis."""
    import plotext as plt

    plt.clear_figure()
    plt.plotsize(max(40, min(width, 160)), 18)
    plt.theme("pro" if color else "clear")
    plt.date_form("Y-m-d H:M")
    plt.plot([t.strftime("%Y-%m-%d %H:%M") for t, _ in prices], [p for _, p in prices], marker="braille")
    days = _midnights(prices[0][0], prices[-1][0])  # round ticks: each UTC midnight, labelled by its date
    if days:
        plt.xticks([day.strftime("%Y-%m-%d %H:%M") for day in days], [day.strftime("%b %d") for day in days])
    plt.title(title)
    chart = str(plt.build())
    return chart if color else ANSI.sub("", chart)


def pair_table(view: PairView, out: TextIO) -> None:
    from rich.table import Table
    from rich.text import Text

    m = view.metrics
    text, style = change(m["change_24h_pct"])
    summary = Table(title=f"{printable(view.pair)} on {printable(view.exchange)} as of {timestamp(view.as_of)}",
                    title_justify="left", show_header=False)
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    volatility = percent(m["volatility_24h"])
    for name, value in (
        ("snapshot age", age_text(view.as_of)),
        ("latest price", number(m["latest_price"])), ("latest sample", timestamp(m["latest_at"])),
        ("24h change", Text(text, style=style)), ("7d average", number(m["weekly_average"])),
        ("7d min", number(m["min_price"])), ("7d max", number(m["max_price"])),
        ("24h standard deviation", number(m["stddev_24h"], SPREAD_DIGITS)), ("24h volatility", volatility),
        ("rank by 24h stddev", rank(m["std_rank"], view.ranked_pairs)),
        ("rank by 24h volatility", rank(m["volatility_rank"], view.ranked_pairs)),
        ("samples 24h / 7d", f"{m['samples_24h']} / {m['samples_7d']}"),
    ):
        summary.add_row(name, value)
    terminal = console(out)
    terminal.print(summary)
    if len(view.prices) >= 2:
        chart = price_chart(view.prices, f"{view.pair} price, last 7 days (UTC)", terminal.width, out.isatty())
        terminal.print(Text.from_ansi(chart) if out.isatty() else Text(chart))
    else:
        terminal.print("(fewer than two prices in the last 7 days: no chart)")
    history = Table(title="Recent metrics (UTC)", title_justify="left", caption=run_line(view.last_run),
                    caption_justify="left")
    for name in ("as of", "latest", "24h change", "7d average", "24h stddev", "rank"):  # about 75 columns wide
        history.add_column(name, justify="left" if name == "as of" else "right", no_wrap=True)
    for row in view.history:
        text, style = change(row["change_24h_pct"])
        history.add_row(row["timestamp"].astimezone(UTC).strftime("%m-%d %H:%M"), number(row["latest_price"]),
                        Text(text, style=style),
                        number(row["weekly_average"]), number(row["stddev_24h"], SPREAD_DIGITS),
                        "–" if row["std_rank"] is None else str(row["std_rank"]))
    terminal.print(history)
