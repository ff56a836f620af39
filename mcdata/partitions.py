"""PostgreSQL: the raw table is range-partitioned by time, a partition per UTC month, so that retention
drops whole months instead of deleting their rows one by one. SQLite keeps one table.

A DEFAULT partition takes what no month holds (history older than the partitions: an archive, a long
backfill). Every job creates last month's, this month's and the next two (MONTHS_AHEAD), so live samples
and a first backfill find theirs; a month whose rows already sit in the default partition is left to it (PostgreSQL
cannot create a partition over rows the default holds). Each partition carries the raw table's triggers
too: a statement-level trigger fires for the table a statement names, so an INSERT, UPDATE, DELETE or
TRUNCATE aimed at a partition meets the same rollups and guards as one aimed at the table.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa

from mcdata.triggers import RAW, postgres_raw_triggers

log = logging.getLogger("mcdata")

MONTHS_AHEAD = 2
DEFAULT = f"{RAW}_default"
MONTHLY = re.compile(rf"^{RAW}_y(\d{{4}})m(\d{{2}})$")


def is_partition_name(name: str | None) -> bool:
    """A partition of the raw table (schema comparisons leave them out: the metadata names the table)."""
    return bool(name) and (name == DEFAULT or MONTHLY.match(str(name)) is not None)


def is_partitioned(connection: sa.Connection) -> bool:
    return connection.dialect.name == "postgresql"


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def name_of(month: datetime) -> str:
    return f"{RAW}_y{month.year:04d}m{month.month:02d}"


def monthly(connection: sa.Connection) -> dict[datetime, str]:
    """The monthly partitions there are: month start -> table name."""
    if not is_partitioned(connection):
        return {}
    names = connection.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:parent AS regclass)"), {"parent": RAW}).scalars()
    found = {}
    for name in names:
        if match := MONTHLY.match(name):
            found[datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)] = name
    return found


def create_default(connection: sa.Connection) -> None:
    connection.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {DEFAULT} PARTITION OF {RAW} DEFAULT"))
    _guard(connection, DEFAULT)


def ensure(connection: sa.Connection, months: Iterable[datetime]) -> list[str]:
    """Create the months' partitions that are missing (and whose rows the default partition does not
    hold already); the names created."""
    if not is_partitioned(connection):
        return []
    there = monthly(connection)
    created = []
    for month in sorted({month_start(m) for m in months}):
        if month in there:
            continue
        end = next_month(month)
        held = connection.execute(sa.text(
            f"SELECT 1 FROM {DEFAULT} WHERE timestamp >= :start AND timestamp < :end LIMIT 1"),
            {"start": month, "end": end}).first()
        if held is not None:
            log.info("raw prices of %s are in the default partition: no partition of their own",
                     month.strftime("%Y-%m"))
            continue
        name = name_of(month)
        connection.execute(sa.text(f"CREATE TABLE {name} PARTITION OF {RAW} "
                                   f"FOR VALUES FROM ('{month.isoformat()}') TO ('{end.isoformat()}')"))
        _guard(connection, name)
        created.append(name)
    return created


def previous_month(month: datetime) -> datetime:
    return month.replace(year=month.year - (month.month == 1), month=(month.month - 2) % 12 + 1)


def ensure_ahead(connection: sa.Connection, now: datetime) -> list[str]:
    """Last month's partition (a first backfill reaches back into it), this month's and MONTHS_AHEAD more."""
    month = month_start(now)
    months = [previous_month(month), month]
    for _ in range(MONTHS_AHEAD):
        month = next_month(month)
        months.append(month)
    return ensure(connection, months)


def drop_before(connection: sa.Connection, cut: datetime) -> int:
    """Drop the monthly partitions that end at or before `cut` (prune's mark is written first); the rows
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


def _guard(connection: sa.Connection, name: str) -> None:
    """The raw table's triggers on one partition."""
    for statement in postgres_raw_triggers(name):
        connection.execute(sa.text(statement))


def install(connection: sa.Connection, now: datetime) -> None:
    """The default partition and the months ahead of a new partitioned table."""
    create_default(connection)
    ensure_ahead(connection, now)
