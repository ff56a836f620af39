"""What a person sees: the overview at 80, 120 and 200 columns, CSV cells, sparklines."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from mcdata import render, render_metrics
from mcdata.views import Overview, hourly_closes

AS_OF = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PAIRS = ["btceur", "btcusd", "dogeusd", "etheur", "ltceur", "solusd", "xrpusd", "adaeur", "bateth"]


def overview() -> Overview:
    rows = []
    for index, pair in enumerate(PAIRS):
        price = 87654.321 / (index + 1) ** 3
        rows.append({"exchange": "kraken", "pair": pair, "timestamp": AS_OF, "latest_price": price,
                     "latest_at": AS_OF, "weekly_average": price * 1.01, "min_price": price * 0.9,
                     "max_price": price * 1.1, "stddev_24h": price / 50, "std_rank": index + 1,
                     "volatility_24h": 2.0 - index / 10, "volatility_rank": index + 1,
                     "change_24h_pct": 1.5 - index / 3, "samples_24h": 25, "samples_7d": 169, "computed_at": AS_OF})
    sparks = {("kraken", pair): [float(i % 7) for i in range(24)] for pair in PAIRS}
    last_run = {"id": 12, "command": "run", "status": "ok", "started_at": AS_OF, "finished_at": AS_OF}
    return Overview(AS_OF, {"kraken": len(PAIRS)}, rows, sparks, last_run)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drawn(width: int | None, monkeypatch: pytest.MonkeyPatch) -> str:
    if width is None:  # piped, no COLUMNS: 200 wide
        monkeypatch.delenv("COLUMNS", raising=False)
        out: io.StringIO = io.StringIO()
    else:
        monkeypatch.setenv("COLUMNS", str(width))
        monkeypatch.setenv("NO_COLOR", "1")
        out = Terminal()
    render_metrics.overview_table(overview(), out)
    return render.ANSI.sub("", out.getvalue())


@pytest.mark.parametrize("width", [80, 120])
def test_the_overview_fits_the_terminal_and_keeps_pair_rank_and_price(width: int,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    text = drawn(width, monkeypatch)
    assert max(len(line) for line in text.splitlines()) <= width
    table_lines = [line for line in text.splitlines() if line.startswith("│")]
    for index, pair in enumerate(PAIRS):  # every name whole, with its rank and its price
        line = next(line for line in table_lines if f" {pair} " in line)
        assert f"{index + 1}/{len(PAIRS)}" in line
        assert render.number(87654.321 / (index + 1) ** 3) in line
    assert "…" not in text


def test_columns_drop_by_priority_as_the_terminal_narrows(monkeypatch: pytest.MonkeyPatch) -> None:
    headers = {}
    for width in (80, 120, None):
        lines = drawn(width, monkeypatch).splitlines()
        table = "\n".join(line for line in lines if not line.startswith("hidden: "))
        headers[width] = [name for name in render_metrics.OVERVIEW_COLUMNS if name in table]
        footer = [line for line in lines if line.startswith("hidden: ")]
        hidden = [name for name in render_metrics.OVERVIEW_COLUMNS if name not in headers[width]]
        assert footer == ([f"hidden: {', '.join(hidden)} (COLUMNS=200)"] if hidden else [])  # never silently
    assert headers[None] == list(render_metrics.OVERVIEW_COLUMNS)  # piped: every column
    assert headers[80] == list(render_metrics.OVERVIEW_COLUMNS[:len(headers[80])])  # a prefix: the least important go
    assert headers[120] == list(render_metrics.OVERVIEW_COLUMNS[:len(headers[120])])
    assert 3 <= len(headers[80]) < len(headers[120]) < len(headers[None])
    assert "24h change" in headers[80]


def test_fitting_columns_never_drops_the_first_three() -> None:
    widths = dict.fromkeys(render_metrics.OVERVIEW_COLUMNS, 30)
    assert render_metrics.fitting_columns(widths, 10) == list(render_metrics.OVERVIEW_COLUMNS[:3])
    assert render_metrics.fitting_columns(widths, 1000) == list(render_metrics.OVERVIEW_COLUMNS)


def test_the_sparkline_is_one_glyph_per_hour_of_the_last_24() -> None:
    end = datetime(2026, 11, 20, 12, 5, tzinfo=UTC)
    hourly = [(end - timedelta(hours=h), 100.0 + h) for h in range(30, -1, -1)]  # 31 hourly samples
    closes = hourly_closes(hourly, end)
    assert len(closes) == 24 and closes[-1] == 100.0 and closes[0] == 123.0  # one an hour, oldest first
    assert len(render_metrics.hour_sparkline(closes)) == 24
    every_minute = [(end - timedelta(minutes=m), 50.0) for m in range(24 * 60 - 1, -1, -1)]
    assert render_metrics.hour_sparkline(hourly_closes(every_minute, end)) == "▁" * 24  # flat: 24, not 1,440
    gap = [(t, p) for t, p in hourly if not end - timedelta(hours=8) < t <= end - timedelta(hours=5)]
    drawn = render_metrics.hour_sparkline(hourly_closes(gap, end))
    assert len(drawn) == 24 and drawn[16:19] == "   "  # the hours without a sample show as a gap
    assert render_metrics.hour_sparkline([None] * 24) == " " * 24


@pytest.mark.parametrize(("value", "text"), [(87654.321, "87,654.32"), (21.85123456, "21.8512"),
                                            (1.2e-08, "0.000000012"), (0.52013, "0.52013"), (0.0, "0"),
                                            (1e-12, "0.000000000001"), (100.0, "100"), (None, "–")])
def test_numbers_never_use_exponent_notation(value: float | None, text: str) -> None:
    assert render.number(value) == text


def test_the_chart_ticks_fall_on_utc_midnights() -> None:
    from datetime import timedelta

    start = datetime(2026, 11, 17, 10, 30, tzinfo=UTC)
    prices = [(start + timedelta(hours=h), 100.0 + h % 7) for h in range(168)]
    chart = render_metrics.price_chart(prices, "x", 100, False)
    assert chart.splitlines()[-1].split() == " ".join(f"Nov {day}" for day in range(18, 25)).split()


def test_csv_cells_keep_every_digit_and_defuse_formulas() -> None:
    out = io.StringIO()
    row = {"a": 0.1 + 0.2, "b": None, "c": True, "d": "=HYPERLINK(1)", "e": "-5", "f": "ok\x1b[31m", "g": 7}
    render.write_csv([row], list(row), out)
    assert out.getvalue().splitlines()[1] == "0.30000000000000004,,true,'=HYPERLINK(1),'-5,ok\\x1b[31m,7"


def test_counts_take_their_noun_in_the_right_number() -> None:
    from mcdata.wording import plural

    assert [plural(n, "price row") for n in (0, 1, 2, 1234)] == ["0 price rows", "1 price row", "2 price rows",
                                                                "1,234 price rows"]
    assert plural(1, "candle closes", "candles close") == "1 candle closes"
    assert plural(3, "candle closes", "candles close") == "3 candles close"


@pytest.mark.parametrize("width", [80, None])
def test_a_long_overview_printed_in_chunks_is_the_same_table(width: int | None,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`show --all` lays out TABLE_CHUNK rows at a time (flat memory, the first rows at once): the lines
    are those of the one table, edges between chunks left out, the title first and the caption last."""
    view = overview()
    view.pairs = [{**row, "pair": f"{row['pair']}{copy}", "std_rank": index + 1}
                  for index, (copy, row) in enumerate((c, r) for c in range(3) for r in view.pairs)]
    view.ranked_pairs = {"kraken": len(view.pairs)}
    whole = drawn_view(view, width, monkeypatch)
    for chunk in (1, 4, len(view.pairs) - 1):
        monkeypatch.setattr(render_metrics, "TABLE_CHUNK", chunk)
        assert drawn_view(view, width, monkeypatch) == whole, chunk
    lines = whole.splitlines()
    bottom = max(index for index, line in enumerate(lines) if line.startswith("└"))
    assert lines[0].startswith("Metrics as of") and lines[bottom + 1].startswith("last run #12")
    assert sum(1 for line in lines if line.startswith(("┏", "└"))) == 2  # one top edge, one bottom edge
    assert sum(1 for line in lines if " btceur2 " in line) == 1 and len(view.pairs) == 27


def drawn_view(view: Overview, width: int | None, monkeypatch: pytest.MonkeyPatch) -> str:
    out: io.StringIO = io.StringIO() if width is None else Terminal()
    if width is not None:
        monkeypatch.setenv("COLUMNS", str(width))
        monkeypatch.setenv("NO_COLOR", "1")
    render_metrics.overview_table(view, out)
    return render.ANSI.sub("", out.getvalue())


def test_a_name_of_wide_characters_is_shown_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """The columns are laid out at fixed widths (chunk after chunk alike): a width is the cells' width on
    the terminal, where an East Asian character takes two, not their count of characters."""
    view = overview()
    view.pairs[0] = {**view.pairs[0], "pair": "ビットコイン円"}
    text = drawn_view(view, None, monkeypatch)
    assert "ビットコイン円" in text and "…" not in text
