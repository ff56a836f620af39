"""Coverage: per venue and pair, the first and last sample, how many, and each hole in the hourly samples,
told apart into hours the venue itself says had no trade (inside a span its answers covered, kept in
`venue_coverage`) and hours that were never collected.

Holes are read from the hourly rollups (one row per market and hour that has a sample, kept by the
database's triggers and checked against the raw rows by `mcdata check`): an hour [h, h + 1h) without a
row has no sample. A candle that opened at o closes, and is sampled, at o + 1h: the hour bucket o + 1h
holds its close, so a span of candle open times [s, e) vouches for the hour buckets [s + 1h, e + 1h).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mcdata.schema import UTCDateTime, candles, markets, price_rollup_daily, venue_coverage

HOUR = timedelta(hours=1)
HOURLY = 3600
NO_TRADES, NOT_COLLECTED = "no trades", "not collected"
Market = tuple[str, str]
Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class Hole:
    start: datetime  # the first hour without a sample
    end: datetime  # the end of the last one (exclusive)
    kind: str  # NO_TRADES or NOT_COLLECTED

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / HOUR)


@dataclass
class MarketCoverage:
    exchange: str
    pair: str
    first_at: datetime
    last_at: datetime
    samples: int
    holes: list[Hole] = field(default_factory=list)

    def hours_missing(self, kind: str) -> int:
        return sum(hole.hours for hole in self.holes if hole.kind == kind)


# -- spans ---------------------------------------------------------------------------------------
def record_spans(connection: sa.Connection, exchange: str, interval_s: int, spans: Mapping[str, Span],
                 now: datetime) -> None:
    """Add what answers covered, per pair, merged with the spans it overlaps or touches (they stay disjoint)."""
    table = venue_coverage.c
    for pair, (start, end) in spans.items():
        if end <= start:
            continue
        of_market = (table.exchange == exchange, table.pair == pair, table.interval_s == interval_s)
        touching = connection.execute(sa.select(table.start_at, table.end_at).where(
            *of_market, table.end_at >= start, table.start_at <= end)).all()
        merged_start = min([start, *(row.start_at for row in touching)])
        merged_end = max([end, *(row.end_at for row in touching)])
        if touching:
            connection.execute(sa.delete(venue_coverage).where(
                *of_market, table.start_at.in_([row.start_at for row in touching])))
        connection.execute(sa.insert(venue_coverage).values(
            exchange=exchange, pair=pair, interval_s=interval_s, start_at=merged_start, end_at=merged_end,
            recorded_at=now))


def spans_of(connection: sa.Connection, chosen: Iterable[Market], interval_s: int = HOURLY) -> dict[Market, list[Span]]:
    """Each market's covered spans, oldest first."""
    found: dict[Market, list[Span]] = {}
    table = venue_coverage.c
    for exchange, pair in chosen:
        rows = connection.execute(sa.select(table.start_at, table.end_at).where(
            table.exchange == exchange, table.pair == pair, table.interval_s == interval_s).order_by(table.start_at))
        found[(exchange, pair)] = [(row.start_at, row.end_at) for row in rows]
    return found


def split_hole(start: datetime, end: datetime, spans: Sequence[Span], candle_opens: Set[datetime]) -> list[Hole]:
    """The hour buckets [start, end) without a sample, cut into runs the venue vouched for (NO_TRADES: a
    span of candle open times [s, e) covers the buckets [s + 1h, e + 1h), and no candle of that hour is
    stored) and runs it did not (a stored candle whose close is missing was deleted or dropped, not
    untraded)."""
    holes: list[Hole] = []
    hour = start
    while hour < end:
        vouched = any(s[0] + HOUR <= hour < s[1] + HOUR for s in spans) and hour - HOUR not in candle_opens
        kind = NO_TRADES if vouched else NOT_COLLECTED
        if holes and holes[-1].kind == kind and holes[-1].end == hour:
            holes[-1] = Hole(holes[-1].start, hour + HOUR, kind)
        else:
            holes.append(Hole(hour, hour + HOUR, kind))
        hour += HOUR
    return holes


def _candle_opens(connection: sa.Connection, market: Market, first: datetime, last: datetime) -> set[datetime]:
    """The open times of the market's hourly candles with first <= open_time < last."""
    c = candles.c
    return set(connection.execute(sa.select(c.open_time).where(
        c.exchange == market[0], c.pair == market[1], c.interval_s == HOURLY, c.open_time >= first,
        c.open_time < last)).scalars())


# -- the report ----------------------------------------------------------------------------------
_NEXT_HOUR = {"postgresql": "prev_hour + INTERVAL '1 hour'",
              "sqlite": "datetime(prev_hour, '+1 hour') || '.000000'"}  # the stored text format


def _gaps(connection: sa.Connection, exchange: str | None, pair: str | None) -> list[Any]:
    """(exchange, pair, prev_hour, hour) of each two hour buckets with samples that have hours between."""
    where = " AND ".join(condition for condition, value in (("exchange = :exchange", exchange), ("pair = :pair", pair))
                         if value is not None) or "TRUE"
    # the conditions are fixed text; the venue and pair are bound parameters
    query = sa.text(f"""
        SELECT exchange, pair, prev_hour, hour FROM (
            SELECT exchange, pair, hour, LAG(hour) OVER (PARTITION BY exchange, pair ORDER BY hour) AS prev_hour
            FROM price_rollup_hourly WHERE {where}
        ) g
        WHERE prev_hour IS NOT NULL AND hour > {_NEXT_HOUR[connection.dialect.name]}
        ORDER BY exchange, pair, hour""").columns(
        sa.column("exchange"), sa.column("pair"), sa.column("prev_hour", UTCDateTime()),
        sa.column("hour", UTCDateTime()))
    return list(connection.execute(query, {"exchange": exchange, "pair": pair}))


def report(connection: sa.Connection, exchange: str | None = None, pair: str | None = None) -> list[MarketCoverage]:
    """Every market's coverage (of one venue, of one pair, or all), in order."""
    chosen = sa.select(markets).where(*(column == value for column, value in (
        (markets.c.exchange, exchange), (markets.c.pair, pair)) if value is not None))
    found = {(row.exchange, row.pair): MarketCoverage(row.exchange, row.pair, row.first_at, row.last_at, 0)
             for row in connection.execute(chosen.order_by(markets.c.exchange, markets.c.pair))}
    daily = price_rollup_daily.c
    counts = sa.select(daily.exchange, daily.pair, sa.func.sum(daily.samples).label("samples")).where(
        *(column == value for column, value in ((daily.exchange, exchange), (daily.pair, pair)) if value is not None)
    ).group_by(daily.exchange, daily.pair)
    for row in connection.execute(counts):
        if (row.exchange, row.pair) in found:
            found[(row.exchange, row.pair)].samples = int(row.samples)
    gaps = _gaps(connection, exchange, pair)
    spans = spans_of(connection, {(g.exchange, g.pair) for g in gaps})
    for gap in gaps:
        market = found.get((gap.exchange, gap.pair))
        if market is not None:
            key = (gap.exchange, gap.pair)
            start = gap.prev_hour + HOUR
            market.holes += split_hole(start, gap.hour, spans[key],
                                       _candle_opens(connection, key, start - HOUR, gap.hour) if spans[key] else set())
    return list(found.values())
