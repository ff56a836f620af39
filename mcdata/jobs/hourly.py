"""The hourly job: migrate a brand-new database, fetch, compute, prune, deliver the alerts, under one lock."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from mcdata import alerts, health, monitoring
from mcdata.clock import utc_now
from mcdata.config import Settings
from mcdata.db import engine_for, writer_lock
from mcdata.errors import LockedError, exit_code_of
from mcdata.jobs.fetching import backfill_since, fetch_venues
from mcdata.jobs.ledger import (
    Progress,
    Report,
    no_progress,
    prepare,
    recorded,
    source_url_of,
    write,
)
from mcdata.jobs.maintain import compute_step, prune_step

log = logging.getLogger("mcdata")


# -- run ----------------------------------------------------------------------------------------
def run(settings: Settings, progress: Progress = no_progress, *, now: datetime | None = None,
        started: Callable[[], object] = lambda: None) -> Report:
    """The hourly job: migrate a brand-new database, fetch, then compute, under one lock. `started` is
    called once the lock is held (a run skipped by the lock never starts)."""
    now = now or utc_now()
    with engine_for(settings.database_url) as engine, writer_lock(engine) as still_held:
        started()
        prepare(engine, still_held, create_schema=True, history_since=backfill_since(settings, now))

        def work() -> Report:
            report = Report("run")
            report.merge(fetch_venues(engine, settings, now, progress, still_held))  # a failed fetch still computes
            report.merge(compute_step(engine, now.replace(microsecond=0), still_held, settings))
            if settings.retention:
                report.merge(prune_step(engine, settings.retention, now, still_held))
            _deliver_alerts(engine, settings, report, still_held)
            return report

        return recorded(engine, "run", settings.source, work, source_url_of(settings))


def _deliver_alerts(engine: Engine, settings: Settings, report: Report, still_held: Callable[[], None]) -> None:
    """After commit: each new event is a line on stderr (cron mail is a channel too), then the outbox goes
    to the notify URLs. A failed delivery stays pending for the next runs; it never fails the run."""
    for message in report.alerts_fired:
        log.warning("alert: %s", message)
    if not settings.alerts and not settings.notify:
        return
    report.alerts_delivered, report.alerts_undelivered = alerts.deliver(
        lambda: write(engine, still_held), settings.notify, utc_now)


def monitored_run(settings: Settings, progress: Progress = no_progress) -> Report:
    """`run` as cron calls it: the cron monitor is pinged when the lock is held (<url>/start) and when the
    run ends (<url>/<exit code>), and the Prometheus textfile is rewritten, whatever the end; a run skipped
    by the lock does neither. Neither monitor can change the run's exit code."""
    began = utc_now()

    def started() -> None:
        if settings.ping_url:
            monitoring.ping(settings.ping_url, "start")

    try:
        report = run(settings, progress, started=started)
    except LockedError:
        raise
    except BaseException as error:
        _after_run(settings, began, exit_code_of(error))
        raise
    _after_run(settings, began, int(report.exit_code))
    return report


def _after_run(settings: Settings, began: datetime, code: int) -> None:
    if settings.metrics_file:
        facts = health.monitoring_facts(settings, began, utc_now(), code)
        try:
            monitoring.write_textfile(settings.metrics_file, facts)
        except OSError as exc:
            log.warning("warning: cannot write the metrics file %s: %s", settings.metrics_file, exc.strerror or exc)
    if settings.ping_url:
        monitoring.ping(settings.ping_url, str(code))
