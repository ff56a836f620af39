"""The jobs behind the commands: migrate, fetch, compute and run, each under the writer lock and
recorded as one row in `runs`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mcdata import alerts, corrections, metrics, migrations, rollups, store
from mcdata.config import Settings
from mcdata.db import connect, display_url, make_engine, writer_lock
from mcdata.errors import (
    ConfigError,
    DatabaseError,
    ExitCode,
    McdataError,
    PairError,
    RunStatus,
    SourceError,
    classify,
    did_you_mean,
    exit_code_of,
    masked_service_url,
    worst,
)
from mcdata.sources import make_source
from mcdata.sources.base import ListedPair, PriceBatch, Quote, Source
from mcdata.views import ListedPairRow, Overview, PairView, hourly_closes
from mcdata.wording import instant_text, plural

log = logging.getLogger("mcdata")

# Hourly runs leave samples an hour apart; a pair whose newest sample is older than this missed at
# least one run, and gets the missing hours from candles (so no gap exceeds an hour).
GAP_REPAIR_AFTER = timedelta(minutes=90)
# How far ahead of now a time may be (as-of times, corrections; the database refuses later samples with the
# same margin), and how far this machine's clock may be from the source's before its samples are refused.
CLOCK_TOLERANCE = timedelta(minutes=5)
CLOCK_WARNING = timedelta(minutes=1)


@dataclass
class Report:
    command: str
    exit_code: ExitCode = ExitCode.OK
    pairs_requested: int = 0
    pairs_stored: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    unlisted: set[str] = field(default_factory=set)  # of the skipped: the venue does not (or no longer) list them
    not_in_list: set[str] = field(default_factory=set)  # of those: the ones its market list lacks
    pairs_unfetched: int = 0  # configured pairs a source that failed as a whole never answered for: failed too
    rows_written: int = 0
    metric_rows: int = 0
    rows_deleted: int = 0
    http_requests: int = 0
    alerts_fired: list[str] = field(default_factory=list)  # the messages of this run's new events
    alerts_delivered: int = 0
    alerts_undelivered: int = 0
    as_of: datetime | None = None
    errors: list[str] = field(default_factory=list)
    exceptions: list[BaseException] = field(default_factory=list)  # behind `errors`, for --debug
    run_id: int | None = None

    def merge(self, other: Report) -> None:
        self.exit_code = worst(self.exit_code, other.exit_code)
        for name in ("pairs_requested", "pairs_stored", "pairs_unfetched", "rows_written", "metric_rows",
                     "rows_deleted", "http_requests", "alerts_delivered", "alerts_undelivered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.alerts_fired.extend(other.alerts_fired)
        self.failures.update(other.failures)
        self.skipped.update(other.skipped)
        self.unlisted |= other.unlisted
        self.not_in_list |= other.not_in_list
        self.as_of = other.as_of or self.as_of
        self.errors.extend(other.errors)
        self.exceptions.extend(other.exceptions)


# How long work shows itself: called with the number of steps and a label, it gives a context whose value
# is called once per step done (the CLI passes a progress bar; the core never draws anything).
Progress = Callable[[int, str], AbstractContextManager[Callable[[], None]]]


@contextmanager
def no_progress(_total: int, _label: str) -> Iterator[Callable[[], None]]:
    yield lambda: None


def utc_now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def engine_for(settings: Settings, read_only: bool = False) -> Iterator[Engine]:
    """The settings' engine; a database-level failure inside names the database (its password hidden)."""
    engine = make_engine(settings.database_url, read_only=read_only)
    log.debug("database: %s%s", display_url(engine.url), " (read-only)" if read_only else "")
    try:
        yield engine
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if getattr(exc.orig, "sqlstate", None) is None and engine.dialect.name == "sqlite":
            raise DatabaseError(f"{display_url(engine.url)}: {str(exc.orig).strip().splitlines()[0]}",
                                "check the file's and its folder's permissions") from exc
        raise
    finally:
        engine.dispose()


def migrate(settings: Settings, revision: str = "head") -> tuple[str | None, str | None]:
    from alembic.util import CommandError

    with engine_for(settings) as engine:
        try:
            return migrations.upgrade(engine, revision)
        except CommandError as exc:
            raise ConfigError(f"--revision {revision[:40]!r}: {str(exc).splitlines()[0]}",
                              f"revisions go from base to {migrations.head_revision()}") from None


def _require_head(engine: Engine) -> None:
    with connect(engine) as connection:
        migrations.require_head(connection)


def _locked_step(settings: Settings, command: str, source: str | None,
                 step: Callable[[Engine, Callable[[], None]], Report], *, create_schema: bool = False) -> Report:
    """One step on a migrated database (`create_schema`: a brand-new one is migrated first, as `run`
    does), under the writer lock, recorded as a `runs` row."""
    with engine_for(settings) as engine:
        if not create_schema:
            _require_head(engine)
        with writer_lock(engine) as still_held:
            if create_schema:
                _create_schema_if_new(engine)
            return _recorded(engine, command, source, lambda: step(engine, still_held),
                             _source_url(settings) if source else None)


def _create_schema_if_new(engine: Engine) -> None:
    """Under the writer lock: a brand-new database gets the schema; any other must be at the head."""
    with connect(engine) as connection:
        brand_new = migrations.is_empty(connection)
    if brand_new:
        log.info("new database: creating the schema")
        migrations.upgrade(engine, locked=True)
    _require_head(engine)


@contextmanager
def _write(engine: Engine, still_held: Callable[[], None]) -> Iterator[sa.Connection]:
    """A write transaction that commits only if the run still holds the writer lock at its end."""
    with engine.begin() as connection:
        yield connection
        still_held()


def _source_url(settings: Settings) -> str:
    """Where a fetch asks, as `runs` records it: the api_url (password hidden), or the source's default."""
    return masked_service_url(settings.api_url) if settings.api_url else f"the {settings.source} default"


def _recorded(engine: Engine, command: str, source: str | None, work: Callable[[], Report],
              source_url: str | None = None) -> Report:
    """Run `work` with a `runs` row that tells the truth, whatever happens."""
    with engine.begin() as connection:
        closed = store.close_abandoned_runs(connection, utc_now())  # we hold the lock: no other run is alive
        if source is not None and source_url is not None:
            _say_if_elsewhere(connection, source, source_url)
        run_id = store.start_run(connection, command, source, utc_now(), source_url)
    if closed:
        log.info("closed %s left `running` by a process that ended without recording", plural(closed, "run record"))
    try:
        report = work()
    except BaseException as error:
        message = classify(error)[1]
        exit_code = exit_code_of(error)
        if exit_code == ExitCode.USAGE:  # a mistyped command did nothing: it is no run, and no health problem
            _forget_run(engine, run_id)
            raise
        _record_end(engine, run_id, status=RunStatus.of(exit_code).value, exit_code=exit_code,
                    error_summary=message[:2000])
        raise
    report.run_id = run_id
    problems = [*report.failures.values(), *report.errors]
    _record_end(engine, run_id, status=RunStatus.of(report.exit_code).value, exit_code=int(report.exit_code),
                as_of=report.as_of, pairs_requested=report.pairs_requested, pairs_stored=report.pairs_stored,
                pairs_failed=len(report.failures) + report.pairs_unfetched,
                rows_written=report.rows_written + report.metric_rows, http_requests=report.http_requests,
                error_summary="; ".join(problems)[:2000] or None)
    return report


def _say_if_elsewhere(connection: sa.Connection, source: str, source_url: str) -> None:
    """A fetch that asks elsewhere than the runs that stored this source's prices (the offline demo's fake
    exchange, then the live API) would mix two series under one name: say so."""
    last = store.last_source(connection, source)
    if last is not None and last[1] != source_url:
        log.warning("warning: the %s prices stored here came from %s (run #%d); this run asks %s: the two "
                    "mix in one series (a demo belongs in a database of its own)", source, last[1], last[0],
                    source_url)


def _forget_run(engine: Engine, run_id: int) -> None:
    try:
        with engine.begin() as connection:
            store.delete_run(connection, run_id)
    except sa.exc.DBAPIError as exc:
        log.debug("could not forget run %s: %s", run_id, exc)


def _record_end(engine: Engine, run_id: int, **fields: object) -> None:
    try:
        with engine.begin() as connection:
            store.finish_run(connection, run_id, finished_at=utc_now(), **fields)
    except sa.exc.DBAPIError as exc:  # the database went away; the original error matters more
        log.debug("could not record the end of run %s: %s", run_id, exc)


# -- fetch --------------------------------------------------------------------------------------
def fetch(settings: Settings, progress: Progress = no_progress, *, now: datetime | None = None) -> Report:
    return _locked_step(settings, "fetch", settings.source,
                        lambda engine, still_held: _fetch_venues(engine, settings, now or utc_now(), progress,
                                                                 still_held), create_schema=True)


NONE_LISTED = "none of the configured pairs is listed by the source"


def _fetch_venues(engine: Engine, settings: Settings, now: datetime, progress: Progress,
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
    not_listed: dict[str, list[str]] = {}  # a named pair: why each venue that does not list it said so
    for venue in settings.venues:
        part = _fetch(engine, replace(settings, exchange=venue), now, progress, still_held,
                      one_of_several=True)
        stored = stored or part.pairs_stored > 0
        for pair in part.not_in_list:
            not_listed.setdefault(pair, []).append(part.skipped[pair])
        part.failures = {f"{venue}:{pair}": f"{venue}: {why}" for pair, why in part.failures.items()}
        part.skipped = {f"{venue}:{pair}": f"{venue}: {why}" for pair, why in part.skipped.items()}
        part.unlisted = {f"{venue}:{pair}" for pair in part.unlisted}
        part.not_in_list = {f"{venue}:{pair}" for pair in part.not_in_list}
        part.errors = [f"{venue}: {error}" for error in part.errors]
        report.merge(part)
    if named:
        nowhere = [pair for pair in settings.pairs
                   if all(f"{venue}:{pair}" in report.unlisted for venue in settings.venues)]
        typo = len(nowhere) == len(settings.pairs)  # a usage error, not an outage: said even with --quiet
        for why in (why for pair in nowhere for why in not_listed.get(pair, [])):
            log.log(logging.WARNING if typo else logging.INFO, "%s", why)  # each venue's "did you mean"
        if typo:
            raise ConfigError(f"{', '.join(settings.pairs)}: listed by none of {', '.join(settings.venues)}",
                              "`mcdata pairs --exchange VENUE` lists a venue's pairs")
        for pair in nowhere:
            for venue in settings.venues:
                key = f"{venue}:{pair}"
                del report.skipped[key]
                report.unlisted.discard(key)
                report.not_in_list.discard(key)
            report.failures[pair] = f"{pair}: listed by none of {', '.join(settings.venues)}"
            report.pairs_requested += 1
            report.exit_code = worst(report.exit_code, ExitCode.PARTIAL)
    if report.exit_code == ExitCode.FAILED and stored:
        report.exit_code = ExitCode.PARTIAL
    elif report.failures and not stored:
        report.exit_code = ExitCode.FAILED
    return report


@dataclass
class PairPlan:
    """Each pair's fate in one fetch, decided in one place: chosen to fetch, skipped (a default pair the
    source does not list or no longer lists, a pair never traded: not counted as requested), failed (why)
    or stored. The report's counts are read off it once, at the end."""

    chosen: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unlisted: set[str] = field(default_factory=set)  # skipped because the venue does not (or no longer) list them
    not_in_list: list[str] = field(default_factory=list)  # of those, the ones its market list lacks
    failed: dict[str, str] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)  # the venue's own list lacks them (delisted, if ever stored)
    listed: set[str] | None = None  # with `all`: every market the venue lists (the stored others are gone)

    def skip(self, pair: str, why: str, *, unlisted: bool = False, never_listed: bool = False) -> None:
        """`unlisted`: the venue no longer lists it; `never_listed`: its market list lacks it."""
        self._drop(pair)
        self.skipped[pair] = why
        if unlisted or never_listed:
            self.unlisted.add(pair)
        if never_listed:
            self.not_in_list.append(pair)

    def fail(self, pair: str, why: str) -> None:
        self._drop(pair)
        self.failed[pair] = why

    def _drop(self, pair: str) -> None:
        if pair in self.chosen:
            self.chosen.remove(pair)

    def into(self, report: Report) -> None:
        report.pairs_requested = len(self.chosen) + len(self.failed)
        report.pairs_stored = len(self.stored)
        report.failures.update(self.failed)
        report.skipped.update(self.skipped)
        report.unlisted |= self.unlisted
        report.not_in_list |= set(self.not_in_list)


def _named(settings: Settings, one_of_several: bool) -> bool:
    """A pair the venue does not list fails (named on purpose, for this venue alone), or is skipped (a
    default pair, or a venue among several: another may list it, _fetch_venues judges)."""
    return settings.pairs_explicit and settings.pairs != ("all",) and not one_of_several


def _plan(settings: Settings, source: Source, one_of_several: bool) -> PairPlan:
    """The configured pairs against the source's list: a pair named on purpose that is not listed fails,
    a default one is skipped (see _named)."""
    plan = PairPlan()
    listing = {p.symbol: p for p in source.list_pairs()}
    if settings.pairs == ("all",):
        plan.chosen = sorted(p.symbol for p in listing.values() if p.active)
        plan.listed = set(listing)
        return plan
    if settings.pairs_explicit and any(p not in listing for p in settings.pairs):
        listing = {p.symbol: p for p in source.refresh_pairs()}  # the cached list may be stale
    plan.gone = {pair for pair in settings.pairs if pair not in listing}
    for pair in settings.pairs:
        problem = _unavailable(pair, listing, source)
        if problem is None:
            plan.chosen.append(pair)
        elif _named(settings, one_of_several):
            plan.fail(pair, problem)
        else:
            plan.skip(pair, problem, never_listed=pair not in listing)
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
           still_held: Callable[[], None], one_of_several: bool = False) -> Report:
    """Fetch and store in one transaction; a source that fails as a whole is a failed report."""
    report = Report("fetch")
    source = make_source(settings, lambda: now)
    if source.max_history is not None and settings.backfill > source.max_history:
        raise ConfigError(f"--backfill {settings.backfill.days}d is longer than the "
                          f"{source.max_history.days} days of hourly candles {source.name} serves",
                          f"use --backfill {source.max_history.days}d or less")
    plan = PairPlan()
    try:
        plan = _plan(settings, source, one_of_several)
        if _named(settings, one_of_several) and not plan.chosen and set(plan.failed) <= plan.gone:
            raise ConfigError("; ".join(plan.failed.values()),  # a typo is a usage error, not an outage
                              f"`mcdata pairs --exchange {source.venue}` lists them")
        rows: list[store.PriceRow] = []
        if plan.chosen:
            batch = source.latest_prices(list(plan.chosen))
            _check_clock(source, now)
            _judge_answers(source, batch, plan, _named(settings, one_of_several))
            with connect(engine) as connection:
                spans = store.stored_spans(connection, source.venue, list(batch.quotes))
                pruned = rollups.pruned_before(connection)
            rows = _collect_rows(source, batch.quotes, spans, settings.backfill, now, plan, progress,
                                 settings.backfill_workers, pruned)
        with _write(engine, still_held) as connection:
            report.rows_written = store.insert_prices(connection, rows)
            if plan.listed is not None:
                plan.gone |= {pair for _, pair in store.newest_samples(connection, source.venue)} - plan.listed
            store.record_listing(connection, source.venue, plan.gone, {row.pair for row in rows}, now)
            _refresh_snapshots(connection, rows, now)
        plan.stored = {row.pair for row in rows}
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


def _refresh_snapshots(connection: sa.Connection, rows: list[store.PriceRow], now: datetime) -> None:
    """Candles fill hours that snapshots were computed without (a missed run, an outage, a new pair's
    history): those snapshots are computed again, so that every stored number agrees with the raw rows."""
    filled = [row.timestamp for row in rows if row.kind == "candle"]
    if filled:
        done = corrections.recompute_snapshots(connection, min(filled), now, utc_now())
        if done.total:
            log.info("%s recomputed with the hours the candles filled%s", plural(done.recomputed, "metric snapshot"),
                     f"; {done.dropped} that read pruned prices deleted" if done.dropped else "")


def _count_unfetched(settings: Settings, plan: PairPlan, report: Report, ever_stored: set[str]) -> None:
    """A source that failed as a whole failed every configured pair it was to fetch: the chosen ones, and
    those the plan had not judged yet (all of them when the pair list itself failed): the named ones, and
    of the default ones (or of `all`) those ever stored, as status watches them."""
    configured = sorted(ever_stored) if settings.pairs == ("all",) else settings.pairs
    unplanned = [pair for pair in configured if pair not in plan.chosen and pair not in plan.failed
                 and pair not in plan.skipped and (settings.pairs_explicit or pair in ever_stored)]
    report.pairs_unfetched = len(plan.chosen) + len(unplanned)
    report.pairs_requested += len(unplanned)


def _log_skipped(plan: PairPlan, venue: str, defaults: bool, never_listed_too: bool = True) -> None:
    """A line per skipped pair, but the default pairs missing from a venue's market list in one line: on a
    venue that quotes in other currencies (Binance: USDT and EUR, no USD) they are most of them, every
    hour. A pair delisted since it was fetched keeps its own line."""
    together = plan.not_in_list if defaults and len(plan.not_in_list) > 1 else []
    for pair, problem in plan.skipped.items():
        if pair not in together and (never_listed_too or pair not in plan.not_in_list):
            log.info("%s; skipped", problem)
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
        plan.skip(pair, why)
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
            plan.skip(pair, f"{pair}: no longer listed by {source.venue}", unlisted=True)


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
) -> list[store.PriceRow]:
    """One ticker row per pair, plus hourly candle closes: the --backfill history of a pair whose stored
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
                advance()
    except BaseException:  # Ctrl-C, SIGTERM: stop the other threads' waits instead of waiting for them
        source.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    if dropped:
        log.info("%s before the pruned history (%s): not stored", plural(dropped, "candle closes", "candles close"),
                 instant_text(floor))
    for pair, quote in quotes.items():
        if pair not in plan.failed:
            rows.append(store.PriceRow(source.venue, pair, sample_time, quote.price, None, "ticker", now))
    return rows


# -- pairs --------------------------------------------------------------------------------------
def known_pairs(settings: Settings) -> list[str]:
    """The pairs stored in the database (for shell completion), else the configured ones."""
    stored: set[str] = set()
    with contextlib.suppress(McdataError, sa.exc.SQLAlchemyError), engine_for(settings, read_only=True) as engine, \
            connect(engine) as connection:
        stored = {pair for _, pair in store.newest_samples(connection)}
    return sorted(stored) or [pair for pair in settings.pairs if pair != "all"]


def list_pairs(settings: Settings) -> list[ListedPairRow]:
    """The source's pairs (canonical and venue symbol, trading or not), marking the configured ones."""
    if len(settings.venues) > 1:
        raise ConfigError("`mcdata pairs` lists one venue at a time", f"name one: --exchange {settings.venues[0]}")
    source = make_source(settings, utc_now)
    every = settings.pairs == ("all",)
    return [
        ListedPairRow(pair=p.symbol, venue_symbol=p.venue_symbol, active=p.active, status=p.status,
                      configured=(every and p.active) or p.symbol in settings.pairs)
        for p in sorted(source.list_pairs(), key=lambda p: p.symbol)
    ]


# -- show ---------------------------------------------------------------------------------------
def _no_metrics(engine: Engine) -> McdataError:
    return McdataError(f"there are no metrics yet in {display_url(engine.url)}", "run `mcdata run` first")


def overview(settings: Settings, exchange: str | None = None) -> Overview:
    """The latest metrics of every pair (of one venue or all), ranked, with each pair's last 24 hours of
    prices."""
    with engine_for(settings, read_only=True) as engine, connect(engine) as connection:
        migrations.require_head(connection)
        rows = store.latest_metrics(connection, utc_now() + CLOCK_TOLERANCE, exchange)
        if not rows:
            venues = store.exchanges_with_metrics(connection)
            if exchange is not None and venues:
                raise ConfigError(f"no metrics for {exchange[:40]}",
                                  did_you_mean(exchange, venues, "--exchange ")
                                  or f"there are metrics for {', '.join(venues)}")
            raise _no_metrics(engine)
        as_of: datetime = rows[0]["timestamp"]
        markets = [(str(r["exchange"]), str(r["pair"])) for r in rows]
        series = store.price_series(connection, markets, as_of - metrics.DAY, as_of)
        return Overview(as_of, store.ranked_counts(connection, as_of, exchange), rows,
                        {m: hourly_closes(points, as_of) for m, points in series.items()},
                        store.last_run(connection), _unconfigured(settings, markets))


def _unconfigured(settings: Settings, markets: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The markets of a snapshot that no configured venue and pair fetches any more (their numbers stop at
    their last fetch): `show` marks them."""
    every = settings.pairs == ("all",)
    return {(venue, pair) for venue, pair in markets
            if venue not in settings.venues or not (every or pair in settings.pairs)}


def pair_view(settings: Settings, pair: str, exchange: str | None, history: int = 24) -> PairView:
    """One pair's latest metrics, its last 7 days of prices and its recent metric history."""
    with engine_for(settings, read_only=True) as engine, connect(engine) as connection:
        migrations.require_head(connection)
        exchanges = store.exchanges_with_pair(connection, pair)
        if not exchanges:
            known = store.pairs_with_metrics(connection)
            if not known:
                raise _no_metrics(engine)
            raise ConfigError(f"no metrics for {pair}", did_you_mean(pair, known)
                              or "`mcdata show` lists the pairs; the formats are table, json and csv")
        venue = exchange or (exchanges[0] if len(exchanges) == 1 else settings.venue)
        if venue not in exchanges:
            raise ConfigError(f"no metrics for {pair} on {venue}", f"it has metrics on {', '.join(exchanges)}")
        rows = store.metric_history(connection, venue, pair, history, utc_now() + CLOCK_TOLERANCE)
        if not rows:
            raise _no_metrics(engine)
        latest = rows[0]
        as_of: datetime = latest["timestamp"]
        prices = store.price_series(connection, [(venue, pair)], as_of - metrics.WEEK, as_of)[(venue, pair)]
        ranked = store.ranked_counts(connection, as_of, venue).get(venue, 0)
        return PairView(venue, pair, as_of, ranked, latest, rows, prices, store.last_run(connection))


# -- compute ------------------------------------------------------------------------------------
def compute(settings: Settings, *, as_of: datetime | None = None) -> Report:
    now = utc_now()
    if as_of is not None and as_of > now + CLOCK_TOLERANCE:  # it would hide the real metrics from `show`
        raise ConfigError(f"--as-of {instant_text(as_of)} is later than now "
                          f"({instant_text(now.replace(microsecond=0))})",
                          "metrics can only be computed for the past")
    moment = as_of or now.replace(microsecond=0)
    return _locked_step(settings, "compute", None,
                        lambda engine, still_held: _compute(engine, moment, still_held))


def _compute(engine: Engine, as_of: datetime, still_held: Callable[[], None],
             settings: Settings | None = None) -> Report:
    """Compute the metrics of `as_of`; with `settings` (the hourly run), judge the alert rules on them in
    the same transaction, so an event exists exactly when the metrics it is based on do."""
    report = Report("compute", as_of=as_of)
    with _write(engine, still_held) as connection:
        pruned = rollups.pruned_before(connection)
        if pruned is not None and as_of - metrics.WEEK < pruned:
            raise ConfigError(
                f"metrics as of {instant_text(as_of)} read the raw prices from {instant_text(as_of - metrics.WEEK)}; "
                f"those before {instant_text(pruned)} were deleted by prune",
                f"the earliest exact as-of time is {instant_text(pruned + metrics.WEEK)}")
        report.metric_rows = metrics.compute(connection, as_of, computed_at=utc_now())
        if settings is not None:
            alerts.forget_removed(connection, settings.alerts)
        if settings is not None and settings.alerts and report.metric_rows:
            report.alerts_fired = [event.message for venue in settings.venues for event in alerts.evaluate(
                connection, settings.alerts, venue, settings.pairs, as_of, utc_now())]
    if not report.metric_rows:
        report.errors.append(f"no prices at or before {instant_text(as_of)}: no metrics computed")
        report.exit_code = ExitCode.FAILED
    return report


def delete_metrics(settings: Settings, as_of: datetime) -> Report:
    """Delete the metric snapshot of one as-of time (a mistaken `compute --as-of`, a future one)."""
    def work(engine: Engine, still_held: Callable[[], None]) -> Report:
        report = Report("compute", as_of=as_of)
        with _write(engine, still_held) as connection:
            report.rows_deleted = store.delete_metrics(connection, as_of)
        if not report.rows_deleted:
            report.errors.append(f"no metrics as of {instant_text(as_of)} to delete")
            report.exit_code = ExitCode.FAILED
        return report

    return _locked_step(settings, "compute", None, work)


# -- prune --------------------------------------------------------------------------------------
def prune(settings: Settings, *, now: datetime | None = None) -> Report:
    """Delete raw prices older than the retention; rollups keep the history, metrics are unchanged."""
    return _locked_step(settings, "prune", None,
                        lambda engine, still_held: _prune(engine, settings.retention, now or utc_now(), still_held))


def _prune(engine: Engine, keep: timedelta, now: datetime, still_held: Callable[[], None]) -> Report:
    report = Report("prune")
    with _write(engine, still_held) as connection:
        report.rows_deleted = store.prune(connection, now - keep)
    return report


# -- check and corrections ------------------------------------------------------------------------
@dataclass
class CheckResult:
    mismatches: rollups.Mismatches
    repaired: bool
    report: Report | None = None


def check(settings: Settings, repair: bool = False) -> CheckResult:
    """Verify the rollups and the markets list against the raw rows; with `repair`, rebuild them."""
    with engine_for(settings, read_only=True) as engine:
        _require_head(engine)
        with connect(engine) as connection:
            found = rollups.verify(connection)
    if not repair or not found.total:
        return CheckResult(found, repaired=False)

    def rebuild(engine: Engine, still_held: Callable[[], None]) -> Report:
        report = Report("check")
        with _write(engine, still_held) as connection:
            rollups.rebuild(connection)
            report.rows_written = found.total
        return report

    return CheckResult(found, repaired=True, report=_locked_step(settings, "check", None, rebuild))


def _correction_times(connection: sa.Connection, *times: datetime | None) -> None:
    pruned = rollups.pruned_before(connection)
    now = utc_now()
    for moment in times:
        if moment is not None and moment > now + CLOCK_TOLERANCE:
            raise ConfigError(f"{instant_text(moment)} is later than now", "prices can only be changed in the past")
        if moment is not None and pruned is not None and moment < pruned:
            raise ConfigError(f"{instant_text(moment)} is before the pruned history ({instant_text(pruned)})",
                              "only prices that are still stored can be changed")


def _existing_series(connection: sa.Connection, exchange: str, pair: str) -> tuple[datetime, datetime]:
    """The series' first and newest sample; a series that does not exist is a usage error with a
    did-you-mean (a typo would create a market that shifts every rank)."""
    span = store.stored_spans(connection, exchange, [pair]).get(pair)
    if span is not None:
        return span
    series = store.newest_samples(connection)
    if not any(venue == exchange for venue, _ in series):
        venues = sorted({venue for venue, _ in series})
        raise ConfigError(f"no prices are stored for the venue {exchange!r}",
                          did_you_mean(exchange, venues, "--exchange ")
                          or f"the venues: {', '.join(venues) or 'none yet'}; --new creates a series")
    raise ConfigError(f"no prices are stored for {pair} on {exchange}",
                      did_you_mean(pair, sorted(p for venue, p in series if venue == exchange))
                      or "--new creates the series")


def _snapshots_changed(report: Report, done: corrections.Recomputed) -> None:
    report.metric_rows = done.recomputed + done.updated
    if done.dropped:
        log.warning("warning: %s pruned prices in the changed window and cannot be made exact again: deleted",
                    plural(done.dropped, "metric snapshot reads", "metric snapshots read"))


def delete_prices(settings: Settings, exchange: str, pair: str, since: datetime | None,
                  until: datetime | None) -> Report:
    if since is not None and until is not None and since > until:
        raise ConfigError(f"--since {instant_text(since)} is after --until {instant_text(until)}")

    def work(engine: Engine, still_held: Callable[[], None]) -> Report:
        report = Report("prices delete")
        with _write(engine, still_held) as connection:
            _correction_times(connection, since, until)
            _existing_series(connection, exchange, pair)
            report.rows_deleted, done = corrections.delete_prices(connection, exchange, pair, since, until,
                                                                  utc_now())
            if not report.rows_deleted:
                raise ConfigError(f"no prices of {pair} on {exchange} in that range: nothing deleted")
            _snapshots_changed(report, done)
        return report

    return _locked_step(settings, "prices delete", None, work)


def set_price(settings: Settings, exchange: str, pair: str, at: datetime, price: float, *,
              new: bool = False) -> Report:
    def work(engine: Engine, still_held: Callable[[], None]) -> Report:
        report = Report("prices set")
        with _write(engine, still_held) as connection:
            _correction_times(connection, at)
            if not new:
                first, _ = _existing_series(connection, exchange, pair)
                if at < first - metrics.DAY:
                    raise ConfigError(f"--at {instant_text(at)} is long before the series' first sample "
                                      f"({instant_text(first)})", "--new if it is meant to start the series")
            try:
                replaced, done = corrections.set_price(connection, exchange, pair, at, price, utc_now())
            except ValueError as exc:
                raise ConfigError(f"--price {price!r}: {exc}") from None
            _snapshots_changed(report, done)
            report.rows_written = 1
            report.rows_deleted = int(replaced)
        return report

    return _locked_step(settings, "prices set", None, work)


# -- run ----------------------------------------------------------------------------------------
def run(settings: Settings, progress: Progress = no_progress, *, now: datetime | None = None,
        started: Callable[[], object] = lambda: None) -> Report:
    """The hourly job: migrate a brand-new database, fetch, then compute, under one lock. `started` is
    called once the lock is held (a run skipped by the lock never starts)."""
    now = now or utc_now()
    with engine_for(settings) as engine, writer_lock(engine) as still_held:
        started()
        _create_schema_if_new(engine)

        def work() -> Report:
            report = Report("run")
            report.merge(_fetch_venues(engine, settings, now, progress, still_held))  # a failed fetch still computes
            report.merge(_compute(engine, now.replace(microsecond=0), still_held, settings))
            if settings.retention:
                report.merge(_prune(engine, settings.retention, now, still_held))
            _deliver_alerts(engine, settings, report, still_held)
            return report

        return _recorded(engine, "run", settings.source, work, _source_url(settings))


def _deliver_alerts(engine: Engine, settings: Settings, report: Report, still_held: Callable[[], None]) -> None:
    """After commit: each new event is a line on stderr (cron mail is a channel too), then the outbox goes
    to the notify URLs. A failed delivery stays pending for the next runs; it never fails the run."""
    for message in report.alerts_fired:
        log.warning("alert: %s", message)
    if not settings.alerts and not settings.notify:
        return
    report.alerts_delivered, report.alerts_undelivered = alerts.deliver(
        lambda: _write(engine, still_held), settings.notify, utc_now)
