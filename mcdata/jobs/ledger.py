"""The ledger of the jobs: each step under the writer lock, recorded as one `runs` row that tells the truth
whatever happens; the Report a step gives back."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mcdata import migrations, partitions, store
from mcdata.clock import utc_now
from mcdata.config import Settings
from mcdata.db import connect, engine_for, writer_lock
from mcdata.errors import (
    ConfigError,
    ExitCode,
    RunStatus,
    classify,
    exit_code_of,
    masked_service_url,
    worst,
)
from mcdata.wording import plural

log = logging.getLogger("mcdata")


class Fate(StrEnum):
    """What became of one configured pair in one venue's fetch."""

    CHOSEN = "chosen"  # to be fetched (and then stored or failed; still chosen when the whole source failed)
    STORED = "stored"
    FAILED = "failed"  # asked for and not stored: counted as requested
    NOT_TRADING = "not trading"  # skipped: listed but not traded, or never traded
    DELISTED = "delisted"  # skipped: the venue listed it when the run began, and no longer does
    NOT_LISTED = "not listed"  # skipped: the venue's market list lacks it


SKIPPED = frozenset({Fate.NOT_TRADING, Fate.DELISTED, Fate.NOT_LISTED})  # not counted as requested
UNLISTED = frozenset({Fate.DELISTED, Fate.NOT_LISTED})


@dataclass(frozen=True)
class PairFate:
    fate: Fate
    why: str = ""  # a failure's or a skip's one line


@dataclass
class Report:
    """What one step did, as its `runs` row records it and its summary line says it: the exit code (the
    worst of its parts), the pairs asked for and stored, each pair's fate per venue (`fates`: stored,
    failed or skipped, with why), the rows written and deleted, the metric snapshot (`as_of`,
    `metric_rows`), the alerts fired and delivered, the errors that did not end it (with their exceptions,
    for --debug) and its run id. `run` merges its steps' reports into one."""

    command: str
    exit_code: ExitCode = ExitCode.OK
    pairs_requested: int = 0
    pairs_stored: int = 0
    fates: dict[tuple[str, str], PairFate] = field(default_factory=dict)  # (venue, pair); venue "": all of them
    pairs_unfetched: int = 0  # configured pairs a source that failed as a whole never answered for: failed too
    rows_written: int = 0
    candles_written: int = 0  # whole candles (an import; a fetch's are counted by its price rows)
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
        for name in ("pairs_requested", "pairs_stored", "pairs_unfetched", "rows_written", "candles_written",
                     "metric_rows",
                     "rows_deleted", "http_requests", "alerts_delivered", "alerts_undelivered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.alerts_fired.extend(other.alerts_fired)
        self.fates.update(other.fates)
        self.as_of = other.as_of or self.as_of
        self.errors.extend(other.errors)
        self.exceptions.extend(other.exceptions)


    def of(self, fates: frozenset[Fate] | Fate) -> dict[str, str]:
        """The pairs whose fate is one of `fates`, each with why; when the report holds several venues,
        keyed `venue:pair` and each why names its venue."""
        wanted = fates if isinstance(fates, frozenset) else frozenset({fates})
        several = len({venue for venue, _ in self.fates if venue}) > 1
        return {f"{venue}:{pair}" if several and venue else pair: f"{venue}: {fate.why}" if several and venue
                else fate.why for (venue, pair), fate in self.fates.items() if fate.fate in wanted}

    @property
    def failures(self) -> dict[str, str]:
        return self.of(Fate.FAILED)


# How long work shows itself: called with the number of steps and a label, it gives a context whose value
# is called once per step done (the CLI passes a progress bar; the core never draws anything).
Progress = Callable[[int, str], AbstractContextManager[Callable[[], None]]]


@contextmanager
def no_progress(_total: int, _label: str) -> Iterator[Callable[[], None]]:
    yield lambda: None


def migrate(settings: Settings, revision: str = "head") -> tuple[str | None, str | None]:
    from alembic.util import CommandError

    with engine_for(settings.database_url) as engine:
        try:
            return migrations.upgrade(engine, revision)
        except CommandError as exc:
            raise ConfigError(f"--revision {revision[:40]!r}: {str(exc).splitlines()[0]}",
                              f"revisions go from base to {migrations.head_revision()}") from None


def require_head(engine: Engine) -> None:
    with connect(engine) as connection:
        migrations.require_head(connection)


def locked_step(settings: Settings, command: str, source: str | None,
                step: Callable[[Engine, Callable[[], None]], Report], *, create_schema: bool = False,
                history_since: datetime | None = None) -> Report:
    """One step on a migrated database (`create_schema`: a brand-new one is migrated first, as `run`
    does), under the writer lock, recorded as a `runs` row; `history_since`: the oldest time it may write,
    whose months get their partitions first."""
    with engine_for(settings.database_url) as engine:
        if not create_schema:
            require_head(engine)
        with writer_lock(engine) as still_held:
            prepare(engine, still_held, create_schema=create_schema, history_since=history_since)
            return recorded(engine, command, source, lambda: step(engine, still_held),
                             source_url_of(settings) if source else None)


def prepare(engine: Engine, still_held: Callable[[], None], *, create_schema: bool,
            history_since: datetime | None = None) -> None:
    """What every job does under the writer lock before its work: a brand-new database migrated first
    (`create_schema`), and the months' partitions it may write made."""
    if create_schema:
        create_schema_if_new(engine)
    ensure_partitions(engine, still_held, history_since)


def ensure_partitions(engine: Engine, still_held: Callable[[], None], since: datetime | None = None) -> None:
    """PostgreSQL: the months' partitions around now, and from `since` on (history about to be written),
    in a short transaction of its own: a new partition locks its whole table until commit. A reader
    holding a table (a long export) makes this give up after partitions.LOCK_WAIT, with a warning: the
    job goes on, the next one tries again."""
    try:
        with write(engine, still_held) as connection:
            partitions.ensure_ahead(connection, utc_now(), since)
    except sa.exc.OperationalError as error:
        if getattr(error.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        log.warning("warning: the coming months' partitions were not created (a reader held the table "
                    "for %s); the next job tries again", partitions.LOCK_WAIT)


def create_schema_if_new(engine: Engine) -> None:
    """Under the writer lock: a brand-new database gets the schema; any other must be at the head."""
    with connect(engine) as connection:
        brand_new = migrations.is_empty(connection)
    if brand_new:
        log.info("new database: creating the schema")
        migrations.upgrade(engine, locked=True)
    require_head(engine)


# SQLite has one writer at a time, and a transaction that read before it writes fails at once (not after
# the busy timeout) when another wrote meanwhile: the venues a fetch writes from several threads take turns.
_SQLITE_WRITER = threading.Lock()


@contextmanager
def write(engine: Engine, still_held: Callable[[], None]) -> Iterator[sa.Connection]:
    """A write transaction that commits only if the run still holds the writer lock at its end."""
    with _SQLITE_WRITER if engine.dialect.name == "sqlite" else contextlib.nullcontext(), \
            engine.begin() as connection:
        yield connection
        still_held()


def source_url_of(settings: Settings) -> str:
    """Where a fetch asks, as `runs` records it: the api_url (password hidden), or the source's default."""
    return masked_service_url(settings.api_url) if settings.api_url else f"the {settings.source} default"


def recorded(engine: Engine, command: str, source: str | None, work: Callable[[], Report],
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
