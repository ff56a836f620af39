"""PostgreSQL: the raw price table and the candle table are range-partitioned by time, a partition per UTC
month, so that retention drops whole months of raw prices instead of deleting their rows one by one, and
a candle export reads only the months it asks for. SQLite keeps one table each.

A DEFAULT partition takes what no month holds. Every job creates last month's, this month's and the next
MONTHS_AHEAD months' partitions, so live samples and a first backfill find theirs, and a job about to
write history (a long backfill, an archive, a repair) creates the months it reaches first, so that prune
can drop them whole; a month whose rows already sit in the default partition is left to it (PostgreSQL
cannot create a partition over rows the default holds). Each partition carries
its table's triggers too: a statement-level trigger fires for the table a statement names, so an INSERT,
UPDATE, DELETE or TRUNCATE aimed at a partition meets the same rollups and guards as one aimed at the table.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from mcdata.triggers import RAW, postgres_candle_triggers, postgres_raw_triggers

log = logging.getLogger("mcdata")

MONTHS_AHEAD = 2
# History gets monthly partitions from here on: no crypto pair traded before Bitcoin's first block, and a
# bad first row (a timestamp of 0) must not make 600 months; anything older goes to the default partition.
HISTORY_FLOOR = datetime(2009, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Partitioned:
    table: str
    column: str  # the time it is partitioned by
    triggers: Callable[[str], list[str]]  # the table's triggers, on a table of that name

    @property
    def default(self) -> str:
        return f"{self.table}_default"

    def name_of(self, month: datetime) -> str:
        return f"{self.table}_y{month.year:04d}m{month.month:02d}"

    def is_partition(self, name: str) -> bool:
        return name == self.default or re.fullmatch(rf"{self.table}_y\d{{4}}m\d{{2}}", name) is not None


RAW_PRICES = Partitioned(RAW, "timestamp", postgres_raw_triggers)
CANDLES = Partitioned("candles", "open_time", postgres_candle_triggers)
TABLES = (RAW_PRICES, CANDLES)
DEFAULT = RAW_PRICES.default


def name_of(month: datetime) -> str:
    """A raw price partition's name."""
    return RAW_PRICES.name_of(month)


def is_partition_name(name: str | None) -> bool:
    """A partition of a partitioned table (schema comparisons leave them out: the metadata names the table)."""
    return bool(name) and any(t.is_partition(str(name)) for t in TABLES)


def is_partitioned(connection: sa.Connection) -> bool:
    return connection.dialect.name == "postgresql"


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def previous_month(month: datetime) -> datetime:
    return month.replace(year=month.year - (month.month == 1), month=(month.month - 2) % 12 + 1)


def monthly(connection: sa.Connection, spec: Partitioned = RAW_PRICES) -> dict[datetime, str]:
    """A table's monthly partitions: month start -> table name."""
    if not is_partitioned(connection):
        return {}
    names = connection.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:parent AS regclass)"), {"parent": spec.table}).scalars()
    found = {}
    for name in names:
        if match := re.fullmatch(rf"{spec.table}_y(\d{{4}})m(\d{{2}})", name):
            found[datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)] = name
    return found


def ensure(connection: sa.Connection, months: Iterable[datetime], spec: Partitioned = RAW_PRICES) -> list[str]:
    """Create the months' partitions of a table that are missing (and whose rows its default partition does
    not hold already); the names created."""
    if not is_partitioned(connection):
        return []
    there = monthly(connection, spec)
    missing = sorted({month_start(m) for m in months} - there.keys())
    if not missing:
        return []
    held = _held_by_default(connection, spec, missing[0], next_month(missing[-1]))
    created = []
    for month in missing:
        if month in held:
            log.info("%s of %s are in the default partition: no partition of their own", spec.table,
                     month.strftime("%Y-%m"))
            continue
        name = spec.name_of(month)
        connection.execute(sa.text(f"CREATE TABLE {name} PARTITION OF {spec.table} "
                                   f"FOR VALUES FROM ('{month.isoformat()}') TO ('{next_month(month).isoformat()}')"))
        _guard(connection, spec, name)
        created.append(name)
    return created


def _held_by_default(connection: sa.Connection, spec: Partitioned, start: datetime, end: datetime) -> set[datetime]:
    """The months between `start` and `end` that the default partition holds rows of: one pass over it (it
    has no index on time), however many months are asked."""
    months = connection.execute(sa.text(
        f"SELECT DISTINCT date_trunc('month', {spec.column}, 'UTC') FROM {spec.default} "
        f"WHERE {spec.column} >= :start AND {spec.column} < :end"), {"start": start, "end": end}).scalars()
    return {month_start(month) for month in months}


LOCK_WAIT = "2s"  # a new partition locks its table: a reader holding it (a long export) must not wedge a run


def ensure_ahead(connection: sa.Connection, now: datetime, since: datetime | None = None) -> list[str]:
    """Every partitioned table's partitions of last month (a first backfill reaches back into it), this
    month and MONTHS_AHEAD more; with `since` (the oldest time a job is about to write: a long backfill, an
    archive), every month from its month on too, so that history lands in its own months and prune drops
    it whole. Creating one waits at most LOCK_WAIT for its table (then PostgreSQL raises
    lock_not_available, SQLSTATE 55P03, and the caller tries again next time: the months ahead are months
    ahead, and history written meanwhile goes to the default partition, stored all the same)."""
    if is_partitioned(connection):
        connection.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
    month = previous_month(month_start(now))
    if since is not None:
        month = min(month, month_start(max(since, HISTORY_FLOOR)))
    last = month_start(now)
    for _ in range(MONTHS_AHEAD):
        last = next_month(last)
    months = []
    while month <= last:
        months.append(month)
        month = next_month(month)
    return [name for spec in TABLES for name in ensure(connection, months, spec)]


def drop_before(connection: sa.Connection, cut: datetime) -> int:
    """Drop the raw price partitions that end at or before `cut` (prune's mark is written first); the rows
    they held."""
    if not is_partitioned(connection):
        return 0
    dropped = 0
    for month, name in sorted(monthly(connection).items()):
        if next_month(month) <= cut:
            dropped += int(connection.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one())
            connection.execute(sa.text(f"ALTER TABLE {RAW} DETACH PARTITION {name}"))
            connection.execute(sa.text(f"DROP TABLE {name}"))
    return dropped


def _guard(connection: sa.Connection, spec: Partitioned, name: str) -> None:
    """The table's triggers on one of its partitions."""
    for statement in spec.triggers(name):
        connection.execute(sa.text(statement))


def install(connection: sa.Connection, now: datetime) -> None:
    """The default partitions and the months around now of new partitioned tables."""
    for spec in TABLES:
        connection.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {spec.default} PARTITION OF {spec.table} DEFAULT"))
        _guard(connection, spec, spec.default)
    ensure_ahead(connection, now)
