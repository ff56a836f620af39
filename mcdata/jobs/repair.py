"""`mcdata coverage --repair`: fetch what the venue can still serve of the holes never collected.

A hole within the venue's reach of hourly candles (Kraken's newest 720) is asked of its OHLC once per
pair; an older one, on Kraken, is bridged from the Trades endpoint: pages of up to 1,000 trades after a
nanosecond cursor (`since`; each answer's `last` is the next), at most one request a second, built into
hourly candles. Each page's whole hours are committed with the span they cover (`venue_coverage`), so a
walk cut short (Ctrl-C, an outage) resumes where it stopped: the hours it stored are no hole any more.
Only closes inside a hole go to the raw prices (an hour that has a sample keeps it alone); every candle
an answer returns is stored whole.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from mcdata import corrections, coverage, store
from mcdata.clock import utc_now
from mcdata.config import Settings
from mcdata.db import connect
from mcdata.errors import ExitCode, PairError, SourceError
from mcdata.jobs.fetching import whole_candles
from mcdata.jobs.ledger import Progress, Report, ensure_partitions, locked_step, no_progress, write
from mcdata.sources import make_source
from mcdata.sources.base import Candle, Source, Trade, TradePage
from mcdata.wording import instant_text, plural

log = logging.getLogger("mcdata")

HOUR = timedelta(hours=1)
TRADES_PACE = 1.0  # seconds between two Trades requests at least: Kraken's public limit for it
DEFAULT_BUDGET = timedelta(minutes=45)  # of walking trades in one repair: within the hour between two runs


def repair(settings: Settings, pair: str | None, progress: Progress = no_progress,
           budget: timedelta = DEFAULT_BUDGET) -> Report:
    """Fill the holes never collected, for at most `budget` of walking trades (it holds the writer lock: an
    hourly run that starts meanwhile exits 75 and the next one repairs its hour); the rest waits for the
    same command again."""
    source = make_source(settings, utc_now)
    deadline = time.monotonic() + budget.total_seconds()
    return locked_step(settings, "repair", settings.source,
                       lambda engine, still_held: _repair(engine, still_held, source, pair, progress, deadline))


def _repair(engine: Engine, still_held: Callable[[], None], source: Source, pair: str | None,
            progress: Progress, deadline: float) -> Report:
    report = Report("repair")
    now = utc_now()
    with connect(engine) as connection:
        markets = coverage.report(connection, source.venue, pair)
    holes = [(m.pair, hole) for m in markets for hole in m.holes if hole.kind == coverage.NOT_COLLECTED]
    report.pairs_requested = len({p for p, _ in holes})
    if not holes:
        log.info("%s: no hole that was not collected", pair or source.venue)
        return report
    ensure_partitions(engine, still_held, min(hole.start for _, hole in holes))  # the holes' months
    reach = now - source.max_history if source.max_history is not None else None
    recent = [(p, h) for p, h in holes if reach is None or h.start - HOUR >= reach]
    older = [(p, h) for p, h in holes if (p, h) not in recent]
    bridge: Callable[[str, int], TradePage] | None = getattr(source, "trades", None)  # Kraken's only
    stored: set[str] = set()
    try:
        for pair_name in sorted({p for p, _ in recent}):
            mine = [h for p, h in recent if p == pair_name]
            try:
                if _from_candles(engine, still_held, source, pair_name, mine, now, report):
                    stored.add(pair_name)
            except (PairError, SourceError) as error:
                report.errors.append(f"{pair_name}: {error}")
        if bridge is None:
            for pair_name, hole in older:
                report.errors.append(f"{pair_name}: {instant_text(hole.start)} .. {instant_text(hole.end)} is older "
                                     f"than the {source.name} source serves")
        elif older:
            hours = sum(h.hours for _, h in older)
            with progress(hours, "bridging from trades") as advance:
                for pair_name, hole in older:
                    if time.monotonic() >= deadline:
                        report.errors.append(f"{pair_name}: {instant_text(hole.start)} .. {instant_text(hole.end)} "
                                             "not bridged yet (the time budget ran out): run the same command again")
                        continue
                    try:
                        if _from_trades(engine, still_held, source, bridge, pair_name, hole, now, report,
                                        advance, deadline):
                            stored.add(pair_name)
                    except (PairError, SourceError) as error:
                        report.errors.append(f"{pair_name}: {error}")
    finally:
        report.http_requests = source.http_requests
    report.pairs_stored = len(stored)
    if report.errors:
        report.exit_code = ExitCode.PARTIAL if report.rows_written or report.candles_written else ExitCode.FAILED
    return report


def _store(engine: Engine, still_held: Callable[[], None], venue: str, pair: str, candles: list[Candle],
           hole_hours: list[coverage.Hole], covered: tuple[datetime, datetime] | None, now: datetime,
           report: Report) -> int:
    """One transaction: the candles whole, the closes that fall in the holes, and the span covered."""
    closes = [store.PriceRow(venue, pair, c.close_time, c.close, c.volume, "candle", now) for c in candles
              if any(h.start <= c.close_time < h.end for h in hole_hours)]
    with write(engine, still_held) as connection:
        added = store.insert_prices(connection, closes)
        report.candles_written += store.insert_candles(connection, whole_candles(venue, pair, candles, now))
        if covered is not None:
            coverage.record_spans(connection, venue, int(HOUR.total_seconds()), {pair: covered}, now)
        times = [row.timestamp for row in closes]
        corrections.refresh_filled(connection, times, max(times, default=now), (venue, pair))
    report.rows_written += added
    return added


def _from_candles(engine: Engine, still_held: Callable[[], None], source: Source, pair: str,
                  holes: list[coverage.Hole], now: datetime, report: Report) -> int:
    """The holes of one pair within the venue's reach: one OHLC request from the oldest."""
    candles = source.candles(pair, min(h.start for h in holes) - HOUR - timedelta(seconds=1))
    covered = (candles[0].close_time - HOUR, candles[-1].close_time) if candles else None
    added = _store(engine, still_held, source.venue, pair, candles, holes, covered, now, report)
    log.info("%s: %s filled from %s's candles", pair, plural(added, "hour"), source.venue)
    return added


def _from_trades(engine: Engine, still_held: Callable[[], None], source: Source,
                 trades_after: Callable[[str, int], TradePage], pair: str,
                 hole: coverage.Hole, now: datetime, report: Report, advance: Callable[[], None],
                 deadline: float) -> int:
    """One hole from the Trades endpoint: the candles of the hours whose closes it lacks (open times
    [hole.start - 1h, hole.end - 1h)), a page at a time, each page's whole hours committed."""
    first, end = hole.start - HOUR, hole.end - HOUR
    cursor = int(first.timestamp()) * 10**9
    pending: dict[datetime, list[Trade]] = {}
    done_until = first
    added = 0
    last_request = 0.0
    previous: datetime | None = None
    while time.monotonic() < deadline:
        wait = TRADES_PACE - (time.monotonic() - last_request)
        if wait > 0:
            _sleep(wait)
        page = trades_after(pair, cursor)
        last_request = time.monotonic()  # from the answer: the venue sees a second between two requests
        for trade in page.trades:
            if first <= trade.time < end:
                pending.setdefault(_hour_of(trade.time), []).append(trade)
        newest = max((t.time for t in page.trades), default=None)
        if newest is not None and (page.next_cursor <= cursor or (previous is not None and newest <= previous)):
            raise SourceError(f"{source.venue} Trades: the cursor does not move forward ({page.next_cursor})")
        previous = newest
        finished = newest is None or newest >= end
        reached = end if finished else max(first, min(end, _hour_of(newest)))  # type: ignore[arg-type]
        whole = [_candle(pair, hour, pending.pop(hour)) for hour in sorted(h for h in pending if h < reached)]
        if reached > done_until:
            added += _store(engine, still_held, source.venue, pair, whole, [hole], (first, reached), now, report)
            for _ in range(int((reached - done_until) / HOUR)):
                advance()
            done_until = reached
        if finished:
            break
        cursor = page.next_cursor
    else:
        report.errors.append(f"{pair}: {instant_text(done_until + HOUR)} .. {instant_text(hole.end)} not bridged yet "
                             "(the time budget ran out): run the same command again")
    log.info("%s: %s filled from %s's trades (%s .. %s)", pair, plural(added, "hour"), source.venue,
             instant_text(hole.start), instant_text(hole.end))
    return added


_stop = threading.Event()  # never set: an interruptible sleep (Ctrl-C ends it at once)


def _sleep(seconds: float) -> None:
    _stop.wait(seconds)


def _hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _candle(pair: str, hour: datetime, trades: list[Trade]) -> Candle:
    ordered = sorted(trades, key=lambda t: t.time)
    volume = sum(t.volume for t in ordered)
    prices = [t.price for t in ordered]
    vwap = sum(t.price * t.volume for t in ordered) / volume if volume > 0 else None
    return Candle(pair, hour + HOUR, prices[0], max(prices), min(prices), prices[-1], volume, vwap, len(ordered))
