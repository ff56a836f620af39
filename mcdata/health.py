"""Is mcdata healthy, read from the database only: `mcdata status`, and the facts of the Prometheus
textfile that `run` writes (mcdata.monitoring writes it)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from mcdata import migrations, store
from mcdata.clock import CLOCK_TOLERANCE, utc_now
from mcdata.config import Settings
from mcdata.db import connect, engine_for
from mcdata.errors import McdataError, RunStatus, did_you_mean
from mcdata.monitoring import RunFacts
from mcdata.reading import reading
from mcdata.values import duration_text
from mcdata.views import PairFreshness, StatusView
from mcdata.wording import plural

log = logging.getLogger("mcdata")

DATA_COMMANDS = ("run", "fetch")  # the commands that bring prices
SCHEDULED = ("run",)  # what cron runs: a fetch typed by hand (a wrong URL, a test) says nothing of health


def _watched(connection: sa.Connection) -> tuple[str, ...]:
    """The scheduled job's runs; where `run` never ran (fetch and compute scheduled apart), the fetches."""
    return SCHEDULED if store.newest_run(connection, SCHEDULED, finished=False) else DATA_COMMANDS


def status(settings: Settings) -> StatusView:
    """Is mcdata healthy: a recent successful run, and every watched pair fresh. Only reads."""
    now = utc_now()
    with reading(settings) as (_, connection):
        samples = {venue: store.newest_samples(connection, venue) for venue in settings.venues}
        gone = {venue: store.delisted(connection, venue) for venue in settings.venues}
        watched = _watched(connection)
        view = StatusView(
            now=now, max_age=settings.max_age, revision=migrations.current_revision(connection),
            last_run=store.newest_run(connection, watched),
            last_success=store.newest_run(connection, watched, status=RunStatus.OK.value),
            running=store.newest_run(connection, watched, status=RunStatus.RUNNING.value, finished=False),
            pairs=[row for venue in settings.venues
                   for row in _freshness(settings, venue, samples[venue], gone[venue], now)],
            empty_venues=[venue for venue in settings.venues if not samples[venue]],
        )
        if view.empty_venues:
            view.stored_venues = sorted({venue for venue, _ in store.newest_samples(connection)})
    view.problems = _problems(view)
    return view


def _freshness(settings: Settings, venue: str, samples: dict[tuple[str, str], datetime],
               delisted: dict[str, datetime], now: datetime) -> list[PairFreshness]:
    """The watched pairs: every stored one with `all`, the named ones when named, and of the default list
    the ones ever stored (a default pair the source does not list is skipped by fetch, not stale). A pair
    the venue delisted is shown as such, never stale: no run can bring it new prices."""
    stored = sorted(pair for _, pair in samples)
    if settings.every_pair:
        pairs = stored
    elif settings.pairs_explicit:
        pairs = list(settings.pairs)
    else:
        pairs = [pair for pair in settings.pairs if pair in stored]
    rows = []
    for pair in pairs:
        last = samples.get((venue, pair))
        age = None if last is None else max(now - last, timedelta(0))
        gone = delisted.get(pair)
        rows.append(PairFreshness(venue, pair, last, age, gone is None and (age is None or age > settings.max_age),
                                  gone))
    return rows


def _problems(view: StatusView) -> list[str]:
    problems = []
    last = view.last_run
    if last is None or last["finished_at"] is None:
        problems.append("no run has finished yet")
    else:
        age = view.now - last["finished_at"]
        if age > view.max_age:
            problems.append(f"the last run ended {duration_text(age)} ago, "
                            f"more than --max-age {duration_text(view.max_age)}")
        if last["status"] in (RunStatus.FAILED, RunStatus.INTERRUPTED):
            why = (last["error_summary"] or "").strip().splitlines()
            problems.append(f"the last run (#{last['id']}) {last['status']} with exit {last['exit_code']}"
                            + (f": {why[0][:300]}" if why else ""))
    if view.empty_venues and last is not None:  # (before any run, that one problem says it)
        problems.append(f"nothing stored for {', '.join(view.empty_venues)}: "
                        f"no run has fetched {'that venue' if len(view.empty_venues) == 1 else 'those venues'}"
                        + "".join(f" ({hint})" for venue in view.empty_venues[:1]
                                  if (hint := did_you_mean(venue, view.stored_venues, "--exchange "))))
    stale = [p for p in view.pairs if p.stale]
    if stale:
        names = ", ".join(f"{p.exchange}:{p.pair}" if view.several_venues else p.pair for p in stale[:10])
        names += f" and {len(stale) - 10} more" if len(stale) > 10 else ""
        problems.append(f"{len(stale)} of {plural(len(view.pairs), 'pair')} "
                        f"{'has' if len(stale) == 1 else 'have'} no sample newer than "
                        f"{duration_text(view.max_age)}: {names}")
    return problems


def monitoring_facts(settings: Settings, started: datetime, finished: datetime, exit_code: int) -> RunFacts:
    """What the Prometheus textfile says about a run that ended: the database's record where it has one
    (a run whose database is down still gets a file, from what the process knows)."""
    facts = RunFacts(started, finished, exit_code)
    try:
        with engine_for(settings.database_url, read_only=True) as engine, connect(engine) as connection:
            facts.run = store.newest_run(connection, ("run",), since=started - timedelta(seconds=1))
            success = store.newest_run(connection, _watched(connection), status=RunStatus.OK.value)
            facts.last_success = success["finished_at"] if success else None
            facts.metrics = store.latest_metrics(connection, utc_now() + CLOCK_TOLERANCE)
            facts.last_samples = store.newest_samples(connection)
    except (sa.exc.SQLAlchemyError, McdataError) as exc:
        log.debug("the textfile gets no database facts: %s", exc)
    return facts
