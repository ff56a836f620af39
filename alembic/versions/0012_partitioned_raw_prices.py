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

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

RAW = "raw_crypto_pair_price_history"
OLD = f"{RAW}_unpartitioned"
PK = f"pk_{RAW}"
MONTHS_AHEAD = 2
CHECKSUM = (f"SELECT count(*), COALESCE(sum(hashtextextended(exchange || '|' || pair || '|' || "
            "timestamp::text || '|' || price::text || '|' || COALESCE(volume::text, '') || '|' || kind || '|' || "
            "fetched_at::text, 0)), 0) FROM {table}")


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


def _swap(connection: sa.Connection, partitioned: bool) -> None:
    """Rename the table, make its replacement LIKE it, copy the rows month by month, check, drop."""
    connection.execute(sa.text(f"ALTER TABLE {RAW} RENAME TO {OLD}"))
    connection.execute(sa.text(f"ALTER INDEX {PK} RENAME TO pk_{OLD}"))
    like = (f"CREATE TABLE {RAW} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS "
            "INCLUDING STORAGE)")
    connection.execute(sa.text(like + (" PARTITION BY RANGE (timestamp)" if partitioned else "")))
    connection.execute(sa.text(f"ALTER TABLE {RAW} ADD CONSTRAINT {PK} PRIMARY KEY (exchange, pair, timestamp) "
                               "INCLUDE (price)"))
    first, now = connection.execute(sa.text(f"SELECT min(timestamp), now() FROM {OLD}")).one()
    tables = [RAW]
    if partitioned:
        connection.execute(sa.text(f"CREATE TABLE {RAW}_default PARTITION OF {RAW} DEFAULT"))
        tables.append(f"{RAW}_default")
        for month in _months(first, now):
            name = f"{RAW}_y{month.year:04d}m{month.month:02d}"
            connection.execute(sa.text(f"CREATE TABLE {name} PARTITION OF {RAW} FOR VALUES FROM "
                                       f"('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"))
            tables.append(name)
    if first is not None:  # a month at a time: no statement holds the whole table's rows at once
        for month in _months(first, now):
            connection.execute(sa.text(f"INSERT INTO {RAW} SELECT * FROM {OLD} WHERE timestamp >= :start "
                                       "AND timestamp < :end"), {"start": month, "end": _next_month(month)})
    before = connection.execute(sa.text(CHECKSUM.format(table=OLD))).one()
    after = connection.execute(sa.text(CHECKSUM.format(table=RAW))).one()
    if tuple(before) != tuple(after):
        raise RuntimeError(f"copying the raw prices changed them ({tuple(before)} rows and checksum before, "
                           f"{tuple(after)} after): nothing was migrated")
    connection.execute(sa.text(f"DROP TABLE {OLD}"))  # its triggers go with it
    for table in tables:
        for statement in raw_triggers(table):
            connection.execute(sa.text(statement))


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _swap(op.get_bind(), partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _swap(op.get_bind(), partitioned=False)
