"""Daily rollups beside the hourly ones, and a cheaper rollup trigger.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

compute reads a week as seven daily rows per market instead of 168 hourly ones. The PostgreSQL trigger
now sorts the inserted rows once (it sorted them three times), buckets them with date_bin (date_trunc
with a time zone costs more than the rest of the aggregation), merges rollups whose anchor prices
differ instead of looking the stored anchor up, and merges the day from the batch's hours. The SQLite
row trigger gains the daily upsert. On PostgreSQL the raw table's key index carries the price. Existing daily rows are built from the hourly rollups, so history
whose raw rows were pruned is kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

import mcdata.schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RAW = "raw_crypto_pair_price_history"
COLUMNS = "samples, ref_price, mean_offset, m2, min_price, max_price, first_at, first_price, last_at, last_price"
PG_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
DAY = {"postgresql": f"date_bin('1 day', hour, {PG_ORIGIN})", "sqlite": "strftime('%Y-%m-%d 00:00:00.000000', hour)"}


def days_from_hours(source: str, day: str) -> str:
    """Hourly rollup rows of `source` merged into days (Chan's formula about each day's first anchor)."""
    return f"""
    SELECT exchange, pair, day, SUM(samples) AS samples, MIN(day_ref) AS ref_price, MIN(day_mean) AS mean_offset,
           SUM(m2 + samples * (d - day_mean) * (d - day_mean)) AS m2, MIN(min_price) AS min_price,
           MAX(max_price) AS max_price, MIN(first_at) AS first_at, MIN(day_first_price) AS first_price,
           MAX(last_at) AS last_at, MIN(day_last_price) AS last_price
    FROM (
        SELECT offsets.*, SUM(samples * d) OVER whole_day / SUM(samples) OVER whole_day AS day_mean
        FROM (
            SELECT hours.*, (ref_price - first_value(ref_price) OVER by_hour) + mean_offset AS d,
                   first_value(ref_price) OVER by_hour AS day_ref,
                   first_value(first_price) OVER by_hour AS day_first_price,
                   last_value(last_price) OVER every_hour AS day_last_price
            FROM (SELECT {source}.*, {day} AS day FROM {source}) hours
            WINDOW by_hour AS (PARTITION BY exchange, pair, day ORDER BY hour),
                   every_hour AS (PARTITION BY exchange, pair, day ORDER BY hour
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        ) offsets
        WINDOW whole_day AS (PARTITION BY exchange, pair, day)
    ) merged
    GROUP BY exchange, pair, day"""


def merge(source: str, table: str, bucket: str) -> str:
    """Upsert `source`'s rows into a rollup table: Chan's parallel formula when the bucket exists (anchors
    may differ)."""
    delta = "((excluded.ref_price - r.ref_price) + excluded.mean_offset - r.mean_offset)"
    return f"""
    INSERT INTO {table} AS r (exchange, pair, {bucket}, {COLUMNS})
    SELECT exchange, pair, {bucket}, {COLUMNS} FROM {source}
    ON CONFLICT (exchange, pair, {bucket}) DO UPDATE SET
        samples = r.samples + excluded.samples,
        mean_offset = r.mean_offset + {delta} * excluded.samples / (r.samples + excluded.samples),
        m2 = r.m2 + excluded.m2 + {delta} * {delta} * r.samples * excluded.samples / (r.samples + excluded.samples),
        min_price = LEAST(r.min_price, excluded.min_price),
        max_price = GREATEST(r.max_price, excluded.max_price),
        first_price = CASE WHEN excluded.first_at < r.first_at THEN excluded.first_price ELSE r.first_price END,
        first_at = LEAST(r.first_at, excluded.first_at),
        last_price = CASE WHEN excluded.last_at > r.last_at THEN excluded.last_price ELSE r.last_price END,
        last_at = GREATEST(r.last_at, excluded.last_at)"""


# One sort of the inserted rows: each hour's first price is its anchor and first_price; lead() marks its last.
# No JIT: compiling these statements took 40 ms, forty times the work of an hourly batch, whenever the
# table statistics were stale.
POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION mcdata_rollup_inserted() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    WITH hourly AS MATERIALIZED (
        SELECT exchange, pair, hour, count(*) AS samples, min(ref) AS ref_price, avg(price - ref) AS mean_offset,
               var_pop(price - ref) * count(*) AS m2, min(price) AS min_price, max(price) AS max_price,
               min(timestamp) AS first_at, min(ref) AS first_price,
               max(timestamp) AS last_at, min(price) FILTER (WHERE is_last) AS last_price
        FROM (
            SELECT exchange, pair, hour, timestamp, price,
                   first_value(price) OVER by_time AS ref, lead(timestamp) OVER by_time IS NULL AS is_last
            FROM (SELECT exchange, pair, timestamp, price, date_bin('1 hour', timestamp, {PG_ORIGIN}) AS hour
                  FROM inserted) rows
            WINDOW by_time AS (PARTITION BY exchange, pair, hour ORDER BY timestamp)
        ) ordered
        GROUP BY exchange, pair, hour
    ), daily AS MATERIALIZED ({days_from_hours("hourly", DAY["postgresql"])}
    ), hours_merged AS ({merge("hourly", "price_rollup_hourly", "hour")}
    ), days_merged AS ({merge("daily", "price_rollup_daily", "day")}
    )
    INSERT INTO markets AS m (exchange, pair, first_at, last_at, last_price)
    SELECT DISTINCT ON (exchange, pair) exchange, pair,
           min(first_at) OVER (PARTITION BY exchange, pair), last_at, last_price
    FROM daily ORDER BY exchange, pair, last_at DESC
    ON CONFLICT (exchange, pair) DO UPDATE SET
        first_at = LEAST(m.first_at, excluded.first_at),
        last_price = CASE WHEN excluded.last_at > m.last_at THEN excluded.last_price ELSE m.last_price END,
        last_at = GREATEST(m.last_at, excluded.last_at);
    RETURN NULL;
END $$
"""


def sqlite_row_upsert(table: str, bucket: str, bucket_format: str) -> str:
    """One Welford step per inserted row (SQLite has no statement-level triggers)."""
    offset = "(NEW.price - ref_price)"
    return f"""
    INSERT INTO {table} (exchange, pair, {bucket}, {COLUMNS})
    VALUES (NEW.exchange, NEW.pair, strftime('{bucket_format}', NEW.timestamp), 1, NEW.price, 0.0, 0.0,
            NEW.price, NEW.price, NEW.timestamp, NEW.price, NEW.timestamp, NEW.price)
    ON CONFLICT (exchange, pair, {bucket}) DO UPDATE SET
        samples = samples + 1,
        mean_offset = mean_offset + ({offset} - mean_offset) / (samples + 1),
        m2 = m2 + ({offset} - mean_offset) * ({offset} - mean_offset) * samples / (samples + 1),
        min_price = MIN(min_price, NEW.price),
        max_price = MAX(max_price, NEW.price),
        first_price = CASE WHEN NEW.timestamp < first_at THEN NEW.price ELSE first_price END,
        first_at = MIN(first_at, NEW.timestamp),
        last_price = CASE WHEN NEW.timestamp > last_at THEN NEW.price ELSE last_price END,
        last_at = MAX(last_at, NEW.timestamp);"""


SQLITE_TRIGGER = f"""
CREATE TRIGGER raw_prices_rollup AFTER INSERT ON {RAW} FOR EACH ROW BEGIN
    {sqlite_row_upsert("price_rollup_hourly", "hour", "%Y-%m-%d %H:00:00.000000")}
    {sqlite_row_upsert("price_rollup_daily", "day", "%Y-%m-%d 00:00:00.000000")}
    INSERT INTO markets (exchange, pair, first_at, last_at, last_price)
    VALUES (NEW.exchange, NEW.pair, NEW.timestamp, NEW.timestamp, NEW.price)
    ON CONFLICT (exchange, pair) DO UPDATE SET
        first_at = MIN(first_at, NEW.timestamp),
        last_price = CASE WHEN NEW.timestamp > last_at THEN NEW.price ELSE last_price END,
        last_at = MAX(last_at, NEW.timestamp);
END
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "price_rollup_daily",
        sa.Column("exchange", sa.String(length=40), nullable=False),
        sa.Column("pair", sa.String(length=40), nullable=False),
        sa.Column("day", mcdata.schema.UTCDateTime(timezone=True), nullable=False,
                  comment="start of the UTC day [day, day + 1d)"),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("ref_price", sa.Double(), nullable=False, comment="the anchor of mean_offset"),
        sa.Column("mean_offset", sa.Double(), nullable=False, comment="mean of price - ref_price"),
        sa.Column("m2", sa.Double(), nullable=False, comment="sum of squared deviations from the mean"),
        sa.Column("min_price", sa.Double(), nullable=False),
        sa.Column("max_price", sa.Double(), nullable=False),
        sa.Column("first_at", mcdata.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_price", sa.Double(), nullable=False),
        sa.Column("last_at", mcdata.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_price", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "pair", "day", name=op.f("pk_price_rollup_daily")),
    )
    op.execute(f"INSERT INTO price_rollup_daily (exchange, pair, day, {COLUMNS}) "
               f"SELECT exchange, pair, day, {COLUMNS} FROM ({days_from_hours('price_rollup_hourly', DAY[dialect])}) d")
    if dialect == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        # compute reads the edge hours of its windows by index-only scans (rebuilds the index: a minute for
        # 20M rows, during which the table is locked)
        op.execute(f"ALTER TABLE {RAW} DROP CONSTRAINT pk_{RAW}, "
                   f"ADD CONSTRAINT pk_{RAW} PRIMARY KEY (exchange, pair, timestamp) INCLUDE (price)")
    else:
        op.execute("DROP TRIGGER raw_prices_rollup")
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    previous = context.script.get_revision("0002").module  # restore 0002's triggers from the file itself
    if op.get_bind().dialect.name == "postgresql":
        op.execute(previous.POSTGRES_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
        op.execute(f"ALTER TABLE {RAW} DROP CONSTRAINT pk_{RAW}, "
                   f"ADD CONSTRAINT pk_{RAW} PRIMARY KEY (exchange, pair, timestamp)")
    else:
        op.execute("DROP TRIGGER raw_prices_rollup")
        op.execute(previous.SQLITE_TRIGGER)
    op.drop_table("price_rollup_daily")
