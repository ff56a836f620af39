"""The metrics of DESIGN §5, computed inside the database in one set-based statement.

Windows are half-open: 7 days is `T - 7d < timestamp <= T`, 24 hours `T - 24h < timestamp <= T`.
The 24-hour standard deviation is taken of `price - latest_price`: the same value (a shift does not
change a deviation), but without the cancellation that ruins it when prices are large and moves
small. Means and deviations aggregate NUMERIC on PostgreSQL: exact sums, so identical series get
identical values (and share a rank) whatever order the rows are read in; SQLite gets an exactly
rounded `stddev_samp` from mcdata.db, so the statement is the same on both databases.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from mcdata.schema import UTCDateTime, metrics

WEEK = timedelta(days=7)
DAY = timedelta(hours=24)

METRIC_COLUMNS = (
    "timestamp", "exchange", "pair", "latest_price", "latest_at", "weekly_average", "min_price", "max_price",
    "stddev_24h", "std_rank", "volatility_24h", "volatility_rank", "change_24h_pct", "samples_24h",
    "samples_7d", "computed_at",
)



def mean(expression: str) -> str:
    return f"CAST(AVG(CAST({expression} AS NUMERIC)) AS DOUBLE PRECISION)"


def stddev(expression: str) -> str:
    return f"CAST(stddev_samp(CAST({expression} AS NUMERIC)) AS DOUBLE PRECISION)"


_COMPUTE = sa.text(f"""
INSERT INTO crypto_pair_metrics ({", ".join(METRIC_COLUMNS)})
WITH newest AS (
    SELECT exchange, pair, MAX(timestamp) AS latest_at
    FROM raw_crypto_pair_price_history
    WHERE timestamp <= :as_of
    GROUP BY exchange, pair
), latest AS (
    SELECT r.exchange, r.pair, r.timestamp AS latest_at, r.price AS latest_price
    FROM raw_crypto_pair_price_history r
    JOIN newest n ON r.exchange = n.exchange AND r.pair = n.pair AND r.timestamp = n.latest_at
), week AS (
    SELECT exchange, pair, {mean("price")} AS weekly_average, MIN(price) AS min_price, MAX(price) AS max_price,
           COUNT(*) AS samples_7d
    FROM raw_crypto_pair_price_history
    WHERE timestamp > :week_start AND timestamp <= :as_of
    GROUP BY exchange, pair
), day AS (
    SELECT r.exchange, r.pair, {stddev("r.price - l.latest_price")} AS stddev_24h, {mean("r.price")} AS mean_24h,
           COUNT(*) AS samples_24h
    FROM raw_crypto_pair_price_history r
    JOIN latest l ON r.exchange = l.exchange AND r.pair = l.pair
    WHERE r.timestamp > :day_start AND r.timestamp <= :as_of
    GROUP BY r.exchange, r.pair
), day_before AS (
    SELECT exchange, pair, MAX(timestamp) AS at
    FROM raw_crypto_pair_price_history
    WHERE timestamp <= :day_start
    GROUP BY exchange, pair
), reference AS (
    SELECT r.exchange, r.pair, r.price AS p0
    FROM raw_crypto_pair_price_history r
    JOIN day_before b ON r.exchange = b.exchange AND r.pair = b.pair AND r.timestamp = b.at
), joined AS (
    SELECT l.exchange, l.pair, l.latest_price, l.latest_at,
           w.weekly_average, w.min_price, w.max_price, COALESCE(w.samples_7d, 0) AS samples_7d,
           d.stddev_24h, d.stddev_24h / d.mean_24h * 100 AS volatility_24h,
           COALESCE(d.samples_24h, 0) AS samples_24h,
           (l.latest_price / p.p0 - 1) * 100 AS change_24h_pct
    FROM latest l
    LEFT JOIN week w ON w.exchange = l.exchange AND w.pair = l.pair
    LEFT JOIN day d ON d.exchange = l.exchange AND d.pair = l.pair
    LEFT JOIN reference p ON p.exchange = l.exchange AND p.pair = l.pair
)
SELECT :as_of, exchange, pair, latest_price, latest_at, weekly_average, min_price, max_price,
       stddev_24h,
       CASE WHEN stddev_24h IS NULL THEN NULL
            ELSE RANK() OVER (PARTITION BY stddev_24h IS NULL ORDER BY stddev_24h DESC) END,
       volatility_24h,
       CASE WHEN volatility_24h IS NULL THEN NULL
            ELSE RANK() OVER (PARTITION BY volatility_24h IS NULL ORDER BY volatility_24h DESC) END,
       change_24h_pct, samples_24h, samples_7d, :computed_at
FROM joined
""").bindparams(
    *(sa.bindparam(name, type_=UTCDateTime()) for name in ("as_of", "week_start", "day_start", "computed_at"))
)


def compute(connection: sa.Connection, as_of: datetime, computed_at: datetime | None = None) -> int:
    """Replace the metrics of `as_of` with a fresh computation; returns the number of pairs."""
    connection.execute(metrics.delete().where(metrics.c.timestamp == as_of))
    connection.execute(_COMPUTE, {
        "as_of": as_of,
        "week_start": as_of - WEEK,
        "day_start": as_of - DAY,
        "computed_at": computed_at or as_of,
    })
    count = connection.execute(
        sa.select(sa.func.count()).select_from(metrics).where(metrics.c.timestamp == as_of)
    ).scalar_one()
    return int(count)
