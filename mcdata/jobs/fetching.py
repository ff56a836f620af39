"""The fetch job: which pairs of which venues, asked of each source, stored in one transaction per venue
with the gaps repaired from candles; and the pairs a source lists."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from mcdata import corrections, coverage, rollups, store
from mcdata.clock import CLOCK_TOLERANCE, CLOCK_WARNING, utc_now
from mcdata.config import Settings
from mcdata.db import connect
from mcdata.errors import (
    ConfigError,
    ExitCode,
    PairError,
    SourceError,
    did_you_mean,
    worst,
)
from mcdata.jobs.ledger import SKIPPED, UNLISTED, Fate, PairFate, Progress, Report, locked_step, no_progress, write
from mcdata.sources import make_source
from mcdata.sources.base import HOUR, Candle, ListedPair, PriceBatch, Quote, Source
from mcdata.views import ListedPairRow
from mcdata.wording import instant_text, plural

log = logging.getLogger("mcdata")

# Hourly runs leave samples an hour apart; a pair whose newest sample is older than this missed at
# least one run, and gets the missing hours from candles (so no gap exceeds an hour).
GAP_REPAIR_AFTER = timedelta(minutes=90)


# -- fetch --------------------------------------------------------------------------------------
def fetch(settings: Settings, progress: Progress = no_progress, *, now: datetime | None = None) -> Report:
    now = now or utc_now()
    return locked_step(settings, "fetch", settings.source,
                        lambda engine, still_held: fetch_venues(engine, settings, now, progress, still_held),
                        create_schema=True, history_since=backfill_since(settings, now))


def backfill_since(settings: Settings, now: datetime) -> datetime | None:
    """The oldest time a fetch may write: its --backfill back from now (an outage's gap is within it)."""
    return now - settings.backfill if settings.backfill else None


NONE_LISTED = "none of the configured pairs is listed by the source"


def fetch_venues(engine: Engine, settings: Settings, now: datetime, progress: Progress,
                  still_held: Callable[[], None]) -> Report:
    """Each venue its own fetch (its own source and transaction, its own series); with several, a venue that
    fails while another stores is a partial result (exit 3), and every problem names its venue. Venues list
    different markets (Binance quotes in USDT, Kraken in USD): a named pair is fetched from every venue
    that lists it, and fails only when none does."""
    if len(settings.venues) == 1:
        return _fetch(engine, settings, now, progress, still_held)
    named = _named(settings, one_of_several=False)
    report = Report("fetch")
    stored = False
    for venue, part in zip(settings.venues, _each_venue(engine, settings, now, progress, still_held), strict=True):
        stored = stored or part.pairs_stored > 0
        part.errors = [f"{venue}: {error}" for error in part.errors]
        report.merge(part)
    if named:
        nowhere = [pair for pair in settings.pairs
                   if all(report.fates.get((venue, pair), PairFate(Fate.CHOSEN)).fate in UNLISTED
                          for venue in settings.venues)]
        typo = len(nowhere) == len(settings.pairs)  # a usage error, not an outage: said even with --quiet
        for fate in (report.fates[venue, pair] for pair in nowhere for venue in settings.venues):
            if fate.fate is Fate.NOT_LISTED:  # each venue's "did you mean"
                log.log(logging.WARNING if typo else logging.INFO, "%s", fate.why)
        if typo:
            raise ConfigError(f"{', '.join(settings.pairs)}: listed by none of {', '.join(settings.venues)}",
                              "`mcdata pairs --exchange VENUE` lists a venue's pairs")
        for pair in nowhere:
            for venue in settings.venues:
                del report.fates[venue, pair]
            report.fates["", pair] = PairFate(Fate.FAILED, f"{pair}: listed by none of {', '.join(settings.venues)}")
            report.pairs_requested += 1
            report.exit_code = worst(report.exit_code, ExitCode.PARTIAL)
    if report.exit_code == ExitCode.FAILED and stored:
        report.exit_code = ExitCode.PARTIAL
    elif report.failures and not stored:
        report.exit_code = ExitCode.FAILED
    return report


def _each_venue(engine: Engine, settings: Settings, now: datetime, progress: Progress,
                still_held: Callable[[], None]) -> list[Report]:
    """Each venue's fetch at the same time (venues are independent: each its own source, rate limit and
    transaction): ten venues 50 ms away cost about one venue's time, not ten. Reports in venue order; the
    first venue's exception, if any, is raised once they have all ended. Ctrl-C cancels every source's
    waits at once."""
    sources = {venue: make_source(replace(settings, exchange=venue), lambda: now) for venue in settings.venues}
    one_bar = _OneBar(progress)
    pool = ThreadPoolExecutor(max_workers=min(len(sources), MAX_VENUES_AT_ONCE), thread_name_prefix="venue")
    try:
        futures = [pool.submit(_fetch, engine, replace(settings, exchange=venue), now, one_bar, still_held,
                               True, source) for venue, source in sources.items()]
        outcomes = [future.exception() or future.result() for future in futures]
    except BaseException:
        for source in sources.values():
            source.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [outcome for outcome in outcomes if isinstance(outcome, Report)]


MAX_VENUES_AT_ONCE = 16


class _OneBar:
    """A Progress that venues share: one progress bar at a time (a terminal holds one live display); a
    venue whose work starts while another's bar is up works without one."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.lock = threading.Lock()
        self.busy = False

    @contextmanager
    def __call__(self, total: int, label: str) -> Iterator[Callable[[], None]]:
        with self.lock:
            mine, self.busy = not self.busy, True
        if not mine:
            yield lambda: None
            return
        try:
            with self.progress(total, label) as advance:
                yield advance
        finally:
            with self.lock:
                self.busy = False


@dataclass
class PairPlan:
    """Each pair's fate in one venue's fetch, decided in one place: chosen, then stored or failed (why), or
    skipped (why: not trading, delisted, not listed; not counted as requested). The report's counts are
    read off it once, at the end."""

    venue: str
    fates: dict[str, PairFate] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # the venue's own list lacks them (delisted, if ever stored)
    listed: set[str] | None = None  # with `all`: every market the venue lists (the stored others are gone)

    def choose(self, pair: str) -> None:
        self.fates[pair] = PairFate(Fate.CHOSEN)

    def skip(self, pair: str, why: str, fate: Fate) -> None:
        assert fate in SKIPPED
        self.fates[pair] = PairFate(fate, why)

    def fail(self, pair: str, why: str) -> None:
        self.fates[pair] = PairFate(Fate.FAILED, why)

    def store(self, pairs: set[str]) -> None:
        for pair in pairs:
            self.fates[pair] = PairFate(Fate.STORED)

    def of(self, *fates: Fate) -> list[str]:
        return [pair for pair, fate in self.fates.items() if fate.fate in fates]

    @property
    def chosen(self) -> list[str]:
        return self.of(Fate.CHOSEN, Fate.STORED)

    def into(self, report: Report) -> None:
        report.pairs_requested = len(self.of(Fate.CHOSEN, Fate.STORED, Fate.FAILED))
        report.pairs_stored = len(self.of(Fate.STORED))
        report.fates.update({(self.venue, pair): fate for pair, fate in self.fates.items()})


def _named(settings: Settings, one_of_several: bool) -> bool:
    """A pair the venue does not list fails (named on purpose, for this venue alone), or is skipped (a
    default pair, or a venue among several: another may list it, _fetch_venues judges)."""
    return settings.pairs_explicit and not settings.every_pair and not one_of_several


def _plan(settings: Settings, source: Source, one_of_several: bool) -> PairPlan:
    """The configured pairs against the source's list: a pair named on purpose that is not listed fails,
    a default one is skipped (see _named)."""
    plan = PairPlan(source.venue)
    listing = {p.symbol: p for p in source.list_pairs()}
    if settings.every_pair:
        for pair in sorted(p.symbol for p in listing.values() if p.active):
            plan.choose(pair)
        plan.listed = set(listing)
        return plan
    if settings.pairs_explicit and any(p not in listing for p in settings.pairs):
        listing = {p.symbol: p for p in source.refresh_pairs()}  # the cached list may be stale
    plan.gone = {pair for pair in settings.pairs if pair not in listing}
    for pair in settings.pairs:
        problem = _unavailable(pair, listing, source)
        if problem is None:
            plan.choose(pair)
        elif _named(settings, one_of_several):
            plan.fail(pair, problem)
        else:
            plan.skip(pair, problem, Fate.NOT_LISTED if pair not in listing else Fate.NOT_TRADING)
    return plan


def _unavailable(pair: str, listing: dict[str, ListedPair], source: Source) -> str | None:
    listed = listing.get(pair)
    if listed is None:
        hint = did_you_mean(pair, [p for p, info in listing.items() if info.active])
        return f"{pair}: not listed by {source.venue}" + (f" ({hint})" if hint else "")
    if not listed.active:
        return f"{pair}: listed by {source.venue} but not trading"
    return None


def _fetch(engine: Engine, settings: Settings, now: datetime, progress: Progress,
           still_held: Callable[[], None], one_of_several: bool = False, source: Source | None = None) -> Report:
    """Fetch and store in one transaction; a source that fails as a whole is a failed report."""
    report = Report("fetch")
    source = source or make_source(settings, lambda: now)
    if source.max_history is not None and settings.backfill > source.max_history:
        raise ConfigError(f"--backfill {settings.backfill.days}d is longer than the "
                          f"{source.max_history.days} days of hourly candles {source.name} serves",
                          f"use --backfill {source.max_history.days}d or less")
    plan = PairPlan(source.venue)
    try:
        plan = _plan(settings, source, one_of_several)
        failed = {pair: plan.fates[pair].why for pair in plan.of(Fate.FAILED)}
        if _named(settings, one_of_several) and not plan.chosen and set(failed) <= plan.gone:
            raise ConfigError("; ".join(failed.values()),  # a typo is a usage error, not an outage
                              f"`mcdata pairs --exchange {source.venue}` lists them")
        rows: list[store.PriceRow] = []
        whole: list[store.CandleRow] = []
        answered: dict[str, tuple[datetime, datetime]] = {}
        if plan.chosen:
            batch = source.latest_prices(list(plan.chosen))
            _check_clock(source, now)
            _judge_answers(source, batch, plan, _named(settings, one_of_several))
            with connect(engine) as connection:
                spans = store.stored_spans(connection, source.venue, list(batch.quotes))
                pruned = rollups.pruned_before(connection)
            rows, whole, answered = _collect_rows(source, batch.quotes, spans, settings.backfill, now, plan,
                                                  progress, settings.backfill_workers, pruned)
        with write(engine, still_held) as connection:
            report.rows_written = store.insert_prices(connection, rows)
            store.insert_candles(connection, whole)
            coverage.record_spans(connection, source.venue, int(HOUR.total_seconds()), answered, now)
            if plan.listed is not None:
                plan.gone |= {pair for _, pair in store.newest_samples(connection, source.venue)} - plan.listed
            store.record_listing(connection, source.venue, plan.gone, {row.pair for row in rows}, now)
            corrections.refresh_filled(connection, [row.timestamp for row in rows if row.kind == "candle"], now)
        plan.store({row.pair for row in rows})
    except SourceError as error:
        report.errors.append(str(error))
        report.exceptions.append(error)
        report.exit_code = ExitCode.FAILED
        plan.into(report)
        with connect(engine) as connection:
            ever_stored = {pair for _, pair in store.newest_samples(connection, source.venue)}
        _count_unfetched(settings, plan, report, ever_stored)
        return report
    finally:
        report.http_requests = source.http_requests
    plan.into(report)
    # named pairs a venue among several does not list are another venue's: _fetch_venues judges them
    judged_across_venues = one_of_several and _named(settings, one_of_several=False)
    _log_skipped(plan, source.venue, defaults=not settings.pairs_explicit, never_listed_too=not judged_across_venues)
    if report.failures:
        report.exit_code = ExitCode.PARTIAL if report.pairs_stored else ExitCode.FAILED
    elif not plan.chosen and not judged_across_venues:
        report.exit_code = ExitCode.FAILED
        report.errors.append(f"{NONE_LISTED} ({source.venue}'s own: `mcdata pairs --source {settings.source} "
                             f"--exchange {source.venue}`; name them with --pairs)")
    return report


def _count_unfetched(settings: Settings, plan: PairPlan, report: Report, ever_stored: set[str]) -> None:
    """A source that failed as a whole failed every configured pair it was to fetch: the chosen ones, and
    those the plan had not judged yet (all of them when the pair list itself failed): the named ones, and
    of the default ones (or of `all`) those ever stored, as status watches them."""
    configured = settings.pairs_for(ever_stored)
    unplanned = [pair for pair in configured if pair not in plan.fates
                 and (settings.pairs_explicit or pair in ever_stored)]
    report.pairs_unfetched = len(plan.chosen) + len(unplanned)
    report.pairs_requested += len(unplanned)


def _log_skipped(plan: PairPlan, venue: str, defaults: bool, never_listed_too: bool = True) -> None:
    """A line per skipped pair, but the default pairs missing from a venue's market list in one line: on a
    venue that quotes in other currencies (Binance: USDT and EUR, no USD) they are most of them, every
    hour. A pair delisted since it was fetched keeps its own line."""
    not_listed = plan.of(Fate.NOT_LISTED)
    together = not_listed if defaults and len(not_listed) > 1 else []
    for pair in plan.of(*SKIPPED):
        if pair not in together and (never_listed_too or pair not in not_listed):
            log.info("%s; skipped", plan.fates[pair].why)
    if together:
        log.info("not listed by %s: %s (of the default pairs); skipped", venue, ", ".join(together))


def _check_clock(source: Source, now: datetime) -> None:
    """Compare this run's clock with the source's (the Date of its first answer): samples are stamped with
    this clock, so beyond CLOCK_TOLERANCE nothing is stored; beyond a minute, a warning."""
    if source.server_time is None:
        return
    skew = now - source.server_time
    if abs(skew) <= CLOCK_WARNING:
        return
    direction = "ahead of" if skew > timedelta(0) else "behind"
    text = f"this machine's clock is {abs(skew).total_seconds():.0f}s {direction} {source.name}'s"
    if abs(skew) > CLOCK_TOLERANCE:
        raise SourceError(f"{text}: its prices would be stored at the wrong time; nothing stored",
                          "set the clock right (NTP), then rerun")
    log.warning("warning: %s; set the clock right (NTP)", text)


def _judge_answers(source: Source, batch: PriceBatch, plan: PairPlan, named: bool) -> None:
    """The pairs the price answer left out: never traded (skipped), or failed. A failed pair may have been
    delisted since the pair list was cached: the list is asked again, and a delisted default pair is
    skipped, like one the list never had."""
    for pair, why in batch.untraded.items():
        plan.skip(pair, why, Fate.NOT_TRADING)
    if not batch.failures:
        return
    refreshed = {p.symbol: p for p in source.refresh_pairs()}
    listed = {symbol for symbol, p in refreshed.items() if p.active}
    plan.gone |= {pair for pair in batch.failures if pair not in refreshed}
    for pair, error in batch.failures.items():
        if pair in listed:
            plan.fail(pair, str(error))
        elif named:
            plan.fail(pair, f"{pair}: no longer listed by {source.venue}")
        else:
            plan.skip(pair, f"{pair}: no longer listed by {source.venue}", Fate.DELISTED)


def _collect_rows(
    source: Source,
    quotes: dict[str, Quote],
    spans: dict[str, tuple[datetime, datetime]],
    backfill: timedelta,
    now: datetime,
    plan: PairPlan,
    progress: Progress,
    workers: int,
    pruned: datetime | None = None,
) -> tuple[list[store.PriceRow], list[store.CandleRow], dict[str, tuple[datetime, datetime]]]:
    """One ticker row per pair, plus hourly candle closes (and the candles whole, for the candles table, and
    the span of open times each answer covered, for `mcdata coverage`):
    the --backfill history of a pair whose stored
    history starts later than that (a new pair, a first answer that was empty, a longer --backfill), and
    the missing hours of a pair whose newest sample is old (a missed run).

    Nothing older than the `pruned` mark is asked for or kept: the database refuses such a sample (it could
    never be pruned again), and one refused row would fail every run. Such candles are dropped here, in
    one line (an outage longer than the retention, a --backfill longer than it).

    Candle requests run on `workers` threads; the HTTP client keeps them within the rate limit.
    """
    sample_time = now.replace(microsecond=0)
    floor = pruned or datetime.min.replace(tzinfo=UTC)
    wanted_from = max(now - backfill, floor)
    history_from: dict[str, datetime] = {}
    for pair in quotes:
        first, last = spans.get(pair, (None, None))
        if backfill and (first is None or first - wanted_from > GAP_REPAIR_AFTER):
            history_from[pair] = wanted_from
        elif last is not None and now - last > GAP_REPAIR_AFTER:
            history_from[pair] = max(last, floor)
    short = sorted(pair for pair, since in history_from.items() if since == floor)
    if short:
        log.info("not fetching history before the pruned mark %s (%s): older samples are not kept",
                 instant_text(floor), ", ".join(short) if len(short) <= 5 else f"{len(short)} pairs")
    dropped = 0
    rows: list[store.PriceRow] = []
    whole: list[store.CandleRow] = []
    answered: dict[str, tuple[datetime, datetime]] = {}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill")
    try:
        with progress(len(history_from), "backfilling history") as advance:
            futures = {pool.submit(source.candles, pair, since): pair for pair, since in history_from.items()}
            for future in as_completed(futures):
                pair = futures[future]
                try:
                    candles = future.result()
                except (PairError, SourceError) as error:  # one pair's history failed: that pair only
                    plan.fail(pair, str(error) if isinstance(error, PairError) else f"{pair}: {error}")
                else:
                    kept = [c for c in candles if c.close_time >= floor]
                    dropped += len(candles) - len(kept)
                    rows.extend(store.PriceRow(source.venue, pair, c.close_time, c.close, c.volume, "candle", now)
                                for c in kept)
                    whole.extend(whole_candles(source.venue, pair, kept, now))
                    if kept:  # from its first candle to its last: a candle missing between had no trade
                        answered[pair] = (kept[0].close_time - HOUR, kept[-1].close_time)
                advance()
    except BaseException:  # Ctrl-C, SIGTERM: stop the other threads' waits instead of waiting for them
        source.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    if dropped:
        log.info("%s before the pruned history (%s): not stored", plural(dropped, "candle closes", "candles close"),
                 instant_text(floor))
    failed = set(plan.of(Fate.FAILED))
    for pair, quote in quotes.items():
        if pair not in failed:
            rows.append(store.PriceRow(source.venue, pair, sample_time, quote.price, None, "ticker", now))
    return (rows, [candle for candle in whole if candle.pair not in failed],
            {pair: span for pair, span in answered.items() if pair not in failed})


def whole_candles(venue: str, pair: str, candles: list[Candle], now: datetime) -> list[store.CandleRow]:
    """The candles as the candles table keeps them, keyed by their open time. One whose high and low do
    not hold its open and close is not a candle the table can keep (its check would fail the whole
    transaction): its close is still stored, the candle is left out, in one line."""
    kept, odd = [], []
    for c in candles:
        if c.high >= max(c.open, c.close) and min(c.open, c.close) >= c.low:
            kept.append(store.CandleRow(venue, pair, int(HOUR.total_seconds()), c.close_time - HOUR, c.open, c.high,
                                        c.low, c.close, c.vwap, c.volume, c.trades, now))
        else:
            odd.append(c)
    if odd:
        log.warning("warning: %s: %s whose high and low do not hold its open and close: only the close is "
                    "stored", pair, plural(len(odd), "candle", "candles"))
    return kept


def list_pairs(settings: Settings) -> list[ListedPairRow]:
    """The source's pairs (canonical and venue symbol, trading or not), marking the configured ones."""
    if len(settings.venues) > 1:
        raise ConfigError("`mcdata pairs` lists one venue at a time", f"name one: --exchange {settings.venues[0]}")
    source = make_source(settings, utc_now)
    return [
        ListedPairRow(pair=p.symbol, venue_symbol=p.venue_symbol, active=p.active, status=p.status,
                      configured=settings.configures(settings.venue, p.symbol)
                      and (p.active or not settings.every_pair))
        for p in sorted(source.list_pairs(), key=lambda p: p.symbol)
    ]
