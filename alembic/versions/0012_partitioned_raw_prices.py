"""PostgreSQL: the raw table partitioned by time, a partition per UTC month and a default one, so that
retention drops whole months. SQLite keeps one table (this revision does nothing there).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

The table is converted in place of the old one: renamed, a partitioned table made LIKE it (columns,
defaults, checks, comments; the key with its INCLUDE again), a partition per month from its oldest row
(or last month) to two months ahead, the rows copied a month at a time, counted and checksummed before the old table is
dropped (any difference aborts the migration, which changes nothing then). The triggers are installed
after the copy, so the rollups, which already hold every row, are not merged twice; every partition gets
them too (a statement trigger fires for the table a statement names). Frozen copies of mcdata.partitions
and of the raw table's trigger statements as of this revision.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

RAW = "raw_crypto_pair_price_history"
MONTHS_AHEAD = 2
# every column of every row, in the table's order (a LIKE copy keeps it): the same rows give the same sum
CHECKSUM = "SELECT count(*), COALESCE(sum(hashtextextended(t::text, 0)), 0) FROM {table} t"


def raw_triggers(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER raw_prices_rollup AFTER INSERT ON {table} REFERENCING NEW TABLE AS inserted "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_rollup_inserted()",
        f"CREATE TRIGGER raw_prices_guard_update AFTER UPDATE ON {table} REFERENCING OLD TABLE AS changed "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_raw_prices()",
        f"CREATE TRIGGER raw_prices_guard_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS changed "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_raw_prices()",
        f"CREATE TRIGGER raw_prices_guard_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_raw_prices()",
    ]


def _next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def _months(first: datetime | None, now: datetime) -> list[datetime]:
    """From the oldest row's month (or last month, which a first backfill reaches) to MONTHS_AHEAD ahead."""
    last = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    previous = last.replace(year=last.year - (last.month == 1), month=(last.month - 2) % 12 + 1)
    month = min(previous, (first or now).astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0))
    for _ in range(MONTHS_AHEAD):
        last = _next_month(last)
    months = []
    while month <= last:
        months.append(month)
        month = _next_month(month)
    return months


def swap(connection: sa.Connection, table: str, column: str, key: str, triggers: Callable[[str], list[str]],
         partitioned: bool) -> None:
    """Rename `table`, make its replacement LIKE it (partitioned by month on `column`, or not), with its
    primary `key` again, copy the rows month by month, check count and checksum, drop the old table, and
    install `triggers` on the new table and every partition. Revision 0013 converts the candles with it."""
    old, pk = f"{table}_unpartitioned", f"pk_{table}"
    connection.execute(sa.text(f"ALTER TABLE {table} RENAME TO {old}"))
    connection.execute(sa.text(f"ALTER INDEX {pk} RENAME TO pk_{old}"))
    like = (f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS "
            "INCLUDING STORAGE)")
    connection.execute(sa.text(like + (f" PARTITION BY RANGE ({column})" if partitioned else "")))
    connection.execute(sa.text(f"ALTER TABLE {table} ADD CONSTRAINT {pk} PRIMARY KEY {key}"))
    first, now = connection.execute(sa.text(f"SELECT min({column}), now() FROM {old}")).one()
    tables = [table]
    if partitioned:
        connection.execute(sa.text(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT"))
        tables.append(f"{table}_default")
        for month in _months(first, now):
            name = f"{table}_y{month.year:04d}m{month.month:02d}"
            connection.execute(sa.text(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM "
                                       f"('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"))
            tables.append(name)
    if first is not None:  # a month at a time: no statement holds the whole table's rows at once
        for month in _months(first, now):
            connection.execute(sa.text(f"INSERT INTO {table} SELECT * FROM {old} WHERE {column} >= :start "
                                       f"AND {column} < :end"), {"start": month, "end": _next_month(month)})
    before = connection.execute(sa.text(CHECKSUM.format(table=old))).one()
    after = connection.execute(sa.text(CHECKSUM.format(table=table))).one()
    if tuple(before) != tuple(after):
        raise RuntimeError(f"copying {table} changed it ({tuple(before)} rows and checksum before, "
                           f"{tuple(after)} after): nothing was migrated")
    connection.execute(sa.text(f"DROP TABLE {old}"))  # its triggers go with it
    for name in tables:
        for statement in triggers(name):
            connection.execute(sa.text(statement))


RAW_KEY = "(exchange, pair, timestamp) INCLUDE (price)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        swap(op.get_bind(), RAW, "timestamp", RAW_KEY, raw_triggers, partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        swap(op.get_bind(), RAW, "timestamp", RAW_KEY, raw_triggers, partitioned=False)
