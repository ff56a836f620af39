"""Hourly rollups and the markets list, maintained by triggers on the raw price table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Every insert into raw_crypto_pair_price_history, by mcdata or by hand, updates the hour's rollup
(count, mean and M2 merged with Chan's parallel formula, min, max, first and last) and the market's
first/last sample time, in the same transaction. PostgreSQL uses one statement-level trigger (one
merge per INSERT, however many rows); SQLite a row-level trigger (a Welford step per row).
Existing rows are replayed through the triggers, so the rollups start complete.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mcdata.schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RAW = "raw_crypto_pair_price_history"
# 'YYYY-MM-DD HH:MM:SS.ffffff', frozen here (0004 tightened it)
SQLITE_TIME_GLOB = (
    "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]"
)

POSTGRES_FUNCTION = """
CREATE FUNCTION mcdata_rollup_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH batch AS MATERIALIZED (  -- the inserted rows, per market and hour
        SELECT b.exchange, b.pair, b.hour, count(*) AS n, min(b.ref) AS ref, avg(b.price - b.ref) AS mean_offset,
               var_pop(b.price - b.ref) * count(*) AS m2, min(b.price) AS lo, max(b.price) AS hi,
               min(b.timestamp) AS first_at, (array_agg(b.price ORDER BY b.timestamp))[1] AS first_price,
               max(b.timestamp) AS last_at, (array_agg(b.price ORDER BY b.timestamp DESC))[1] AS last_price
        FROM (
            SELECT i.exchange, i.pair, i.timestamp, i.price, date_trunc('hour', i.timestamp, 'UTC') AS hour,
                   COALESCE(r.ref_price, first_value(i.price) OVER (
                       PARTITION BY i.exchange, i.pair, date_trunc('hour', i.timestamp, 'UTC')
                       ORDER BY i.timestamp)) AS ref
            FROM inserted i
            LEFT JOIN price_rollup_hourly r
              ON r.exchange = i.exchange AND r.pair = i.pair AND r.hour = date_trunc('hour', i.timestamp, 'UTC')
        ) b
        GROUP BY b.exchange, b.pair, b.hour
    ), rolled AS (
        INSERT INTO price_rollup_hourly AS h (exchange, pair, hour, samples, ref_price, mean_offset, m2,
                                              min_price, max_price, first_at, first_price, last_at, last_price)
        SELECT exchange, pair, hour, n, ref, mean_offset, m2, lo, hi, first_at, first_price, last_at, last_price
        FROM batch
        ON CONFLICT (exchange, pair, hour) DO UPDATE SET
            samples = h.samples + excluded.samples,
            mean_offset = h.mean_offset + (excluded.mean_offset - h.mean_offset)
                          * excluded.samples / (h.samples + excluded.samples),
            m2 = h.m2 + excluded.m2 + (excluded.mean_offset - h.mean_offset) ^ 2
                 * h.samples::float8 * excluded.samples / (h.samples + excluded.samples),
            min_price = LEAST(h.min_price, excluded.min_price),
            max_price = GREATEST(h.max_price, excluded.max_price),
            first_price = CASE WHEN excluded.first_at < h.first_at THEN excluded.first_price ELSE h.first_price END,
            first_at = LEAST(h.first_at, excluded.first_at),
            last_price = CASE WHEN excluded.last_at > h.last_at THEN excluded.last_price ELSE h.last_price END,
            last_at = GREATEST(h.last_at, excluded.last_at)
    )
    INSERT INTO markets AS m (exchange, pair, first_at, last_at, last_price)
    SELECT DISTINCT ON (exchange, pair) exchange, pair,
           min(first_at) OVER (PARTITION BY exchange, pair), last_at, last_price
    FROM batch ORDER BY exchange, pair, last_at DESC
    ON CONFLICT (exchange, pair) DO UPDATE SET
        first_at = LEAST(m.first_at, excluded.first_at),
        last_price = CASE WHEN excluded.last_at > m.last_at THEN excluded.last_price ELSE m.last_price END,
        last_at = GREATEST(m.last_at, excluded.last_at);
    RETURN NULL;
END $$
"""

# The rank key of compute: a value rounded to `digits` significant digits (SQLite: mcdata.db registers it).
POSTGRES_ROUND_SIG = """
CREATE FUNCTION mcdata_round_sig(value float8, digits integer) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN value = 0 OR value IN ('Infinity', '-Infinity', 'NaN') THEN value
                ELSE round(value::numeric, digits - 1 - floor(log(abs(value)))::integer)::float8 END
$$
"""

POSTGRES_TRIGGER = f"""
CREATE TRIGGER raw_prices_rollup AFTER INSERT ON {RAW}
REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION mcdata_rollup_inserted()
"""

# SQLite stores timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text (SQLAlchemy's format): the hour keeps it.
SQLITE_TRIGGER = f"""
CREATE TRIGGER raw_prices_rollup AFTER INSERT ON {RAW} FOR EACH ROW BEGIN
    INSERT INTO price_rollup_hourly (exchange, pair, hour, samples, ref_price, mean_offset, m2,
                                     min_price, max_price, first_at, first_price, last_at, last_price)
    VALUES (NEW.exchange, NEW.pair, strftime('%Y-%m-%d %H:00:00.000000', NEW.timestamp), 1, NEW.price, 0.0, 0.0,
            NEW.price, NEW.price, NEW.timestamp, NEW.price, NEW.timestamp, NEW.price)
    ON CONFLICT (exchange, pair, hour) DO UPDATE SET
        samples = samples + 1,
        mean_offset = mean_offset + ((NEW.price - ref_price) - mean_offset) / (samples + 1),
        m2 = m2 + ((NEW.price - ref_price) - mean_offset) * ((NEW.price - ref_price) - mean_offset)
                  * samples / (samples + 1),
        min_price = MIN(min_price, NEW.price),
        max_price = MAX(max_price, NEW.price),
        first_price = CASE WHEN NEW.timestamp < first_at THEN NEW.price ELSE first_price END,
        first_at = MIN(first_at, NEW.timestamp),
        last_price = CASE WHEN NEW.timestamp > last_at THEN NEW.price ELSE last_price END,
        last_at = MAX(last_at, NEW.timestamp);
    INSERT INTO markets (exchange, pair, first_at, last_at, last_price)
    VALUES (NEW.exchange, NEW.pair, NEW.timestamp, NEW.timestamp, NEW.price)
    ON CONFLICT (exchange, pair) DO UPDATE SET
        first_at = MIN(first_at, NEW.timestamp),
        last_price = CASE WHEN NEW.timestamp > last_at THEN NEW.price ELSE last_price END,
        last_at = MAX(last_at, NEW.timestamp);
END
"""


def upgrade() -> None:
    op.create_table(
        "price_rollup_hourly",
        sa.Column("exchange", sa.String(length=40), nullable=False),
        sa.Column("pair", sa.String(length=40), nullable=False),
        sa.Column("hour", mcdata.schema.UTCDateTime(timezone=True), nullable=False,
                  comment="start of the UTC hour [hour, hour + 1h)"),
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
        sa.PrimaryKeyConstraint("exchange", "pair", "hour", name=op.f("pk_price_rollup_hourly")),
    )
    op.create_table(
        "markets",
        sa.Column("exchange", sa.String(length=40), nullable=False),
        sa.Column("pair", sa.String(length=40), nullable=False),
        sa.Column("first_at", mcdata.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_at", mcdata.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_price", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "pair", name=op.f("pk_markets")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
        op.execute(POSTGRES_ROUND_SIG)
    else:
        with op.batch_alter_table(RAW) as batch:  # SQLite compares timestamps as text: one format only
            batch.create_check_constraint(
                "timestamp_format", sa.text(f"timestamp GLOB '{SQLITE_TIME_GLOB}'"))
        op.execute(SQLITE_TRIGGER)  # after the batch operation, which rebuilds the table
    # replay the stored prices through the triggers, oldest first
    op.execute(f"CREATE TEMPORARY TABLE mcdata_replay AS SELECT * FROM {RAW}")
    op.execute(f"DELETE FROM {RAW}")
    op.execute(f"INSERT INTO {RAW} SELECT * FROM mcdata_replay ORDER BY exchange, pair, timestamp")
    op.execute("DROP TABLE mcdata_replay")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS raw_prices_rollup ON {RAW}")
        op.execute("DROP FUNCTION IF EXISTS mcdata_rollup_inserted()")
        op.execute("DROP FUNCTION IF EXISTS mcdata_round_sig(float8, integer)")
    else:
        op.execute("DROP TRIGGER IF EXISTS raw_prices_rollup")
    op.drop_table("markets")
    op.drop_table("price_rollup_hourly")
