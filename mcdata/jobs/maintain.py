"""The jobs that keep the data: compute (and delete) a metric snapshot, prune, check the rollups, and
correct stored prices."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mcdata import alerts, corrections, metrics, rollups, store
from mcdata.clock import CLOCK_TOLERANCE, utc_now
from mcdata.config import Settings
from mcdata.errors import (
    ConfigError,
    ExitCode,
    did_you_mean,
)
from mcdata.jobs.ledger import Report, locked_step, write
from mcdata.reading import reading
from mcdata.wording import instant_text, plural

log = logging.getLogger("mcdata")


# -- compute ------------------------------------------------------------------------------------
def compute(settings: Settings, *, as_of: datetime | None = None) -> Report:
    now = utc_now()
    if as_of is not None and as_of > now + CLOCK_TOLERANCE:  # it would hide the real metrics from `show`
        raise ConfigError(f"--as-of {instant_text(as_of)} is later than now "
                          f"({instant_text(now.replace(microsecond=0))})",
                          "metrics can only be computed for the past")
    moment = as_of or now.replace(microsecond=0)
    return locked_step(settings, "compute", None,
                        lambda engine, still_held: compute_step(engine, moment, still_held))


def compute_step(engine: Engine, as_of: datetime, still_held: Callable[[], None],
             settings: Settings | None = None) -> Report:
    """Compute the metrics of `as_of`; with `settings` (the hourly run), judge the alert rules on them in
    the same transaction, so an event exists exactly when the metrics it is based on do."""
    report = Report("compute", as_of=as_of)
    with write(engine, still_held) as connection:
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
        with write(engine, still_held) as connection:
            report.rows_deleted = store.delete_metrics(connection, as_of)
        if not report.rows_deleted:
            report.errors.append(f"no metrics as of {instant_text(as_of)} to delete")
            report.exit_code = ExitCode.FAILED
        return report

    return locked_step(settings, "compute", None, work)


# -- prune --------------------------------------------------------------------------------------
def prune(settings: Settings, *, now: datetime | None = None) -> Report:
    """Delete raw prices older than the retention; rollups keep the history, metrics are unchanged."""
    return locked_step(settings, "prune", None,
                        lambda engine, still_held: prune_step(engine, settings.retention, now or utc_now(), still_held))


def prune_step(engine: Engine, keep: timedelta, now: datetime, still_held: Callable[[], None]) -> Report:
    report = Report("prune")
    with write(engine, still_held) as connection:
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
    with reading(settings) as (_, connection):
        found = rollups.verify(connection)
    if not repair or not found.total:
        return CheckResult(found, repaired=False)

    def rebuild(engine: Engine, still_held: Callable[[], None]) -> Report:
        report = Report("check")
        with write(engine, still_held) as connection:
            rollups.rebuild(connection)
            report.rows_written = found.total
        return report

    return CheckResult(found, repaired=True, report=locked_step(settings, "check", None, rebuild))


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
        with write(engine, still_held) as connection:
            _correction_times(connection, since, until)
            _existing_series(connection, exchange, pair)
            report.rows_deleted, done = corrections.delete_prices(connection, exchange, pair, since, until,
                                                                  utc_now())
            if not report.rows_deleted:
                raise ConfigError(f"no prices of {pair} on {exchange} in that range: nothing deleted")
            _snapshots_changed(report, done)
        return report

    return locked_step(settings, "prices delete", None, work)


def set_price(settings: Settings, exchange: str, pair: str, at: datetime, price: float, *,
              new: bool = False) -> Report:
    def work(engine: Engine, still_held: Callable[[], None]) -> Report:
        report = Report("prices set")
        with write(engine, still_held) as connection:
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

    return locked_step(settings, "prices set", None, work)
