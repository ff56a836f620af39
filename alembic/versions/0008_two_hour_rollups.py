"""Two-hour rollups between the hourly and the quarter-day ones.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27

In the day that holds a window's start, compute read the hours after the start's hour up to the end of
its quarter day: up to 5 hourly rows per market and edge (both edges at half past noon: 5 each). With a
two-hour level it reads that hour's neighbour and the two-hour blocks after it: at most 3 (at 20,000
markets, 80,000 rows fewer; 285 -> 254 ms measured on a copy). Existing rows are built from the hourly
rollups, so history whose raw rows were pruned is kept. The functions and triggers are frozen copies of
mcdata.triggers as of this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

import mcdata.schema

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

RAW = "raw_crypto_pair_price_history"
COLUMNS = "samples, ref_price, mean_offset, m2, min_price, max_price, first_at, first_price, last_at, last_price"
PG_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
FUTURE = "5 minutes"


def sqlite_block(timestamp: str, hours: int) -> str:
    return (f"strftime('%Y-%m-%d ', {timestamp}) || printf('%02d', CAST(strftime('%H', {timestamp}) AS INTEGER) "
            f"/ {hours} * {hours}) || ':00:00.000000'")


COARSER = {
    "postgresql": {"two_hour": f"date_bin('2 hours', hour, {PG_ORIGIN})",
                   "quarter": f"date_bin('6 hours', hour, {PG_ORIGIN})", "day": f"date_bin('1 day', hour, {PG_ORIGIN})"},
    "sqlite": {"two_hour": sqlite_block("hour", 2), "quarter": sqlite_block("hour", 6),
               "day": "strftime('%Y-%m-%d 00:00:00.000000', hour)"},
}

def from_hours(source: str, bucket: str, expression: str) -> str:
    return f"""
    SELECT exchange, pair, {bucket}, SUM(samples) AS samples, MIN(bucket_ref) AS ref_price,
           MIN(bucket_mean) AS mean_offset, SUM(m2 + samples * (d - bucket_mean) * (d - bucket_mean)) AS m2,
           MIN(min_price) AS min_price, MAX(max_price) AS max_price, MIN(first_at) AS first_at,
           MIN(bucket_first_price) AS first_price, MAX(last_at) AS last_at, MIN(bucket_last_price) AS last_price
    FROM (
        SELECT offsets.*, SUM(samples * d) OVER whole_bucket / SUM(samples) OVER whole_bucket AS bucket_mean
        FROM (
            SELECT hours.*, (ref_price - first_value(ref_price) OVER by_hour) + mean_offset AS d,
                   first_value(ref_price) OVER by_hour AS bucket_ref,
                   first_value(first_price) OVER by_hour AS bucket_first_price,
                   last_value(last_price) OVER every_hour AS bucket_last_price
            FROM (SELECT {source}.*, {expression} AS {bucket} FROM {source}) hours
            WINDOW by_hour AS (PARTITION BY exchange, pair, {bucket} ORDER BY hour),
                   every_hour AS (PARTITION BY exchange, pair, {bucket} ORDER BY hour
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        ) offsets
        WINDOW whole_bucket AS (PARTITION BY exchange, pair, {bucket})
    ) merged
    GROUP BY exchange, pair, {bucket}"""


def _merge(source: str, table: str, bucket: str) -> str:
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


def postgres_rollup_function(search_path: str) -> str:
    header = ("CREATE OR REPLACE FUNCTION mcdata_rollup_inserted() RETURNS trigger LANGUAGE plpgsql SET jit = off "
              f"SET search_path = {search_path} AS $$")
    return f"""
{header}
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE timestamp > now() + interval '{FUTURE}') THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = 'mcdata: a price sample later than now is refused (is a clock ahead?)';
    END IF;
    IF EXISTS (SELECT 1 FROM inserted i JOIN retention r ON i.timestamp < r.pruned_before) THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = 'mcdata: a price sample older than the pruned history is refused';
    END IF;
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
    ), two_hourly AS MATERIALIZED ({from_hours("hourly", "two_hour", COARSER["postgresql"]["two_hour"])}
    ), quarterly AS MATERIALIZED ({from_hours("hourly", "quarter", COARSER["postgresql"]["quarter"])}
    ), daily AS MATERIALIZED ({from_hours("hourly", "day", COARSER["postgresql"]["day"])}
    ), hours_merged AS ({_merge("hourly", "price_rollup_hourly", "hour")}
    ), two_hours_merged AS ({_merge("two_hourly", "price_rollup_two_hourly", "two_hour")}
    ), quarters_merged AS ({_merge("quarterly", "price_rollup_quarterly", "quarter")}
    ), days_merged AS ({_merge("daily", "price_rollup_daily", "day")}
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


def _sqlite_row_upsert(table: str, bucket: str, bucket_of_new: str) -> str:
    offset = "(NEW.price - ref_price)"
    return f"""
    INSERT INTO {table} (exchange, pair, {bucket}, {COLUMNS})
    VALUES (NEW.exchange, NEW.pair, {bucket_of_new}, 1, NEW.price, 0.0, 0.0,
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
    {_sqlite_row_upsert("price_rollup_hourly", "hour", "strftime('%Y-%m-%d %H:00:00.000000', NEW.timestamp)")}
    {_sqlite_row_upsert("price_rollup_two_hourly", "two_hour", sqlite_block("NEW.timestamp", 2))}
    {_sqlite_row_upsert("price_rollup_quarterly", "quarter", sqlite_block("NEW.timestamp", 6))}
    {_sqlite_row_upsert("price_rollup_daily", "day", "strftime('%Y-%m-%d 00:00:00.000000', NEW.timestamp)")}
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
        "price_rollup_two_hourly",
        sa.Column("exchange", sa.String(length=40), nullable=False),
        sa.Column("pair", sa.String(length=40), nullable=False),
        sa.Column("two_hour", mcdata.schema.UTCDateTime(timezone=True), nullable=False,
                  comment="start of the UTC two hours [two_hour, two_hour + 2h)"),
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
        sa.PrimaryKeyConstraint("exchange", "pair", "two_hour", name=op.f("pk_price_rollup_two_hourly")),
        postgresql_with={"fillfactor": 50},
    )
    op.execute(f"INSERT INTO price_rollup_two_hourly (exchange, pair, two_hour, {COLUMNS}) SELECT exchange, pair, "
               f"two_hour, {COLUMNS} FROM ({from_hours('price_rollup_hourly', 'two_hour', COARSER[dialect]['two_hour'])}) b")
    op.create_index(op.f("ix_price_rollup_two_hourly_two_hour"), "price_rollup_two_hourly", ["two_hour"], unique=False)
    if dialect == "postgresql":
        schema = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
        op.execute(postgres_rollup_function(f"pg_catalog, {schema}, pg_temp"))
    else:
        op.execute("DROP TRIGGER raw_prices_rollup")
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        schema = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
        op.execute(context.script.get_revision("0006").module.postgres_rollup_function(f"pg_catalog, {schema}, pg_temp"))
    else:
        op.execute("DROP TRIGGER raw_prices_rollup")
        op.execute(context.script.get_revision("0006").module.SQLITE_TRIGGER)
    op.drop_index(op.f("ix_price_rollup_two_hourly_two_hour"), table_name="price_rollup_two_hourly")
    op.drop_table("price_rollup_two_hourly")
