"""PostgreSQL: the candle table partitioned by its open time, a partition per UTC month and a default one,
like the raw table (revision 0012). SQLite keeps one table (this revision does nothing there).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

Converted as 0012 converts the raw table: renamed, a partitioned table made LIKE it with its key again,
a partition per month from its oldest candle (or last month) to two months ahead and a default one, rows
copied a month at a time, counted and checksummed before the old table is dropped (a difference aborts
the migration), then its guards on the table and on every partition. Frozen copies of the candle guard
statements as of this revision.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLE = "candles"
OLD = f"{TABLE}_unpartitioned"
PK = f"pk_{TABLE}"
MONTHS_AHEAD = 2
CHECKSUM = ("SELECT count(*), COALESCE(sum(hashtextextended(exchange || '|' || pair || '|' || interval_s::text || "
            "'|' || open_time::text || '|' || open::text || '|' || high::text || '|' || low::text || '|' || "
            "close::text || '|' || COALESCE(vwap::text, '') || '|' || COALESCE(volume::text, '') || '|' || "
            "COALESCE(trades::text, '') || '|' || fetched_at::text, 0)), 0) FROM {table}")


def guards(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER candles_guard_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS inserted "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
        f"CREATE TRIGGER candles_guard_update AFTER UPDATE ON {table} REFERENCING OLD TABLE AS changed "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
        f"CREATE TRIGGER candles_guard_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS changed "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
        f"CREATE TRIGGER candles_guard_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
    ]


def _next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def _months(first: datetime | None, now: datetime) -> list[datetime]:
    """From the oldest candle's month (or last month) to MONTHS_AHEAD ahead."""
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
    connection.execute(sa.text(f"ALTER TABLE {TABLE} RENAME TO {OLD}"))
    connection.execute(sa.text(f"ALTER INDEX {PK} RENAME TO pk_{OLD}"))
    like = (f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS "
            "INCLUDING STORAGE)")
    connection.execute(sa.text(like + (" PARTITION BY RANGE (open_time)" if partitioned else "")))
    connection.execute(sa.text(f"ALTER TABLE {TABLE} ADD CONSTRAINT {PK} "
                               "PRIMARY KEY (exchange, pair, interval_s, open_time)"))
    first, now = connection.execute(sa.text(f"SELECT min(open_time), now() FROM {OLD}")).one()
    tables = [TABLE]
    if partitioned:
        connection.execute(sa.text(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT"))
        tables.append(f"{TABLE}_default")
        for month in _months(first, now):
            name = f"{TABLE}_y{month.year:04d}m{month.month:02d}"
            connection.execute(sa.text(f"CREATE TABLE {name} PARTITION OF {TABLE} FOR VALUES FROM "
                                       f"('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"))
            tables.append(name)
    if first is not None:
        for month in _months(first, now):
            connection.execute(sa.text(f"INSERT INTO {TABLE} SELECT * FROM {OLD} WHERE open_time >= :start "
                                       "AND open_time < :end"), {"start": month, "end": _next_month(month)})
    before = connection.execute(sa.text(CHECKSUM.format(table=OLD))).one()
    after = connection.execute(sa.text(CHECKSUM.format(table=TABLE))).one()
    if tuple(before) != tuple(after):
        raise RuntimeError(f"copying the candles changed them ({tuple(before)} rows and checksum before, "
                           f"{tuple(after)} after): nothing was migrated")
    connection.execute(sa.text(f"DROP TABLE {OLD}"))  # its triggers go with it
    for table in tables:
        for statement in guards(table):
            connection.execute(sa.text(statement))


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _swap(op.get_bind(), partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _swap(op.get_bind(), partitioned=False)
