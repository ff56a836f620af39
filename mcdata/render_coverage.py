"""`mcdata coverage` in every format: JSON (each market with its holes), CSV (one row per hole; a market
without a hole has one row without one), and tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from mcdata.coverage import NO_TRADES, NOT_COLLECTED, MarketCoverage
from mcdata.errors import printable
from mcdata.render import Output, console
from mcdata.wording import instant_text, plural

COLUMNS = ["exchange", "pair", "first_at", "last_at", "samples", "hole_start", "hole_end", "hole_hours", "hole_kind"]
HOLES_SHOWN = 30  # per market in the table: JSON and CSV list every one


def coverage_output(found: Sequence[MarketCoverage]) -> Output:
    document = [{"exchange": m.exchange, "pair": m.pair, "first_at": m.first_at, "last_at": m.last_at,
                 "samples": m.samples, "hours_without_trades": m.hours_missing(NO_TRADES),
                 "hours_not_collected": m.hours_missing(NOT_COLLECTED),
                 "holes": [{"start": h.start, "end": h.end, "hours": h.hours, "kind": h.kind} for h in m.holes]}
                for m in found]
    rows: list[dict[str, Any]] = []
    for m in found:
        market = {"exchange": m.exchange, "pair": m.pair, "first_at": m.first_at, "last_at": m.last_at,
                  "samples": m.samples}
        rows += [{**market, "hole_start": h.start, "hole_end": h.end, "hole_hours": h.hours, "hole_kind": h.kind}
                 for h in m.holes] or [{**market, "hole_start": None, "hole_end": None, "hole_hours": None,
                                        "hole_kind": None}]
    return Output(document, rows, COLUMNS, lambda out: _tables(found, out))


def _tables(found: Sequence[MarketCoverage], out: TextIO) -> None:
    from rich.table import Table

    summary = Table(title=f"coverage of {plural(len(found), 'market')} (hourly samples)", title_justify="left")
    for column in ("exchange", "pair", "first sample", "last sample", "samples", "no-trade hours",
                   "hours not collected"):
        summary.add_column(column, justify="right" if "hours" in column or column == "samples" else "left")
    for m in found:
        summary.add_row(printable(m.exchange), printable(m.pair), instant_text(m.first_at), instant_text(m.last_at),
                        f"{m.samples:,}", f"{m.hours_missing(NO_TRADES):,}", f"{m.hours_missing(NOT_COLLECTED):,}")
    terminal = console(out)
    terminal.print(summary)
    for m in found:
        if not m.holes:
            continue
        holes = Table(title=f"{printable(m.exchange)} {printable(m.pair)}: {plural(len(m.holes), 'hole')}",
                      title_justify="left")
        for column in ("from", "to", "hours", "kind"):
            holes.add_column(column, justify="right" if column == "hours" else "left")
        for hole in m.holes[:HOLES_SHOWN]:
            holes.add_row(instant_text(hole.start), instant_text(hole.end), f"{hole.hours:,}", hole.kind)
        if len(m.holes) > HOLES_SHOWN:
            holes.add_row("…", "", "", f"{len(m.holes) - HOLES_SHOWN:,} more: json and csv list every hole")
        terminal.print(holes)
