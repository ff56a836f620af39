"""PostgreSQL: the candle table partitioned by its open time, a partition per UTC month and a default one,
like the raw table (revision 0012). SQLite keeps one table (this revision does nothing there).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

Converted by revision 0012's own conversion (`swap`), as it converts the raw table: renamed, a partitioned table made LIKE it with its key again,
a partition per month from its oldest candle (or last month) to two months ahead and a default one, rows
copied a month at a time, counted and checksummed before the old table is dropped (a difference aborts
the migration), then its guards on the table and on every partition. Frozen copies of the candle guard
statements as of this revision.
"""

from __future__ import annotations

from alembic import context, op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLE = "candles"
KEY = "(exchange, pair, interval_s, open_time)"


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


def _swap(partitioned: bool) -> None:
    """Revision 0012's conversion (its frozen copy), applied to the candles."""
    if op.get_bind().dialect.name == "postgresql":
        context.script.get_revision("0012").module.swap(op.get_bind(), TABLE, "open_time", KEY, guards,
                                                        partitioned)


def upgrade() -> None:
    _swap(partitioned=True)


def downgrade() -> None:
    _swap(partitioned=False)
