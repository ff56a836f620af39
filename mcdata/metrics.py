"""The metrics of DESIGN §5, computed inside the database in one set-based statement.

Windows are half-open: 7 days is `T - 7d < timestamp <= T`, 24 hours `T - 24h < timestamp <= T`.
Whole hours inside a window come from `price_rollup_hourly` (count, mean, M2 per hour); only the two
partial hours at its edges are read from the raw table. The hours are merged with Chan's parallel
formula, so the cost depends on pairs x window hours, not on how often prices were sampled, and the
result equals the raw-table definition (`RAW_QUERY`, kept as the reference and the benchmark baseline).

Deviations are taken from each pair's latest price (a shift changes no deviation, and removes the
cancellation that ruins large prices with small moves). Sums are NUMERIC on PostgreSQL: exact, so
identical series get identical values (and share a rank) whatever order rows are read in. SQLite gets
`stddev_samp` and `sqrt` from mcdata.db; the statements are the same on both databases.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from mcdata.schema import UTCDateTime, metrics

WEEK = timedelta(days=7)
DAY = timedelta(hours=24)
HOUR = timedelta(hours=1)

METRIC_COLUMNS = (
    "timestamp", "exchange", "pair", "latest_price", "latest_at", "weekly_average", "min_price", "max_price",
    "stddev_24h", "std_rank", "volatility_24h", "volatility_rank", "change_24h_pct", "samples_24h",
    "samples_7d", "computed_at",
)
RAW = "raw_crypto_pair_price_history"


def mean(expression: str) -> str:
    return f"CAST(AVG(CAST({expression} AS NUMERIC)) AS DOUBLE PRECISION)"


def stddev(expression: str) -> str:
    return f"CAST(stddev_samp(CAST({expression} AS NUMERIC)) AS DOUBLE PRECISION)"


def _window(name: str, start: str, full_from: str) -> str:
    """CTEs `<name>_parts` (whole hours from the rollup, edge samples from the raw table, each as
    n / mean deviation d from the latest price / M2 / min / max) and `<name>` (merged per pair)."""
    return f"""
{name}_parts AS (
    SELECT h.exchange, h.pair, h.samples AS n,
           CAST(h.ref_price - l.latest_price AS NUMERIC) + CAST(h.mean_offset AS NUMERIC) AS d,
           CAST(h.m2 AS NUMERIC) AS m2, h.min_price AS lo, h.max_price AS hi
    FROM price_rollup_hourly h
    JOIN latest l ON h.exchange = l.exchange AND h.pair = l.pair
    WHERE h.hour >= :{full_from} AND h.hour < :tail_from
    UNION ALL
    SELECT r.exchange, r.pair, 1, CAST(r.price - l.latest_price AS NUMERIC), 0, r.price, r.price
    FROM {RAW} r
    JOIN latest l ON r.exchange = l.exchange AND r.pair = l.pair
    WHERE r.timestamp > :{start} AND r.timestamp < :{full_from}
    UNION ALL
    SELECT r.exchange, r.pair, 1, CAST(r.price - l.latest_price AS NUMERIC), 0, r.price, r.price
    FROM {RAW} r
    JOIN latest l ON r.exchange = l.exchange AND r.pair = l.pair
    WHERE r.timestamp >= :tail_from AND r.timestamp <= :as_of
), {name}_sums AS (
    SELECT exchange, pair, SUM(n) AS n, SUM(n * d) / (SUM(n) * 1.0) AS mean_d, SUM(m2) AS m2_within,
           MIN(lo) AS lo, MAX(hi) AS hi
    FROM {name}_parts
    GROUP BY exchange, pair
), {name} AS (
    SELECT s.exchange, s.pair, s.n, s.mean_d, s.lo, s.hi,
           s.m2_within + SUM(p.n * (p.d - s.mean_d) * (p.d - s.mean_d)) AS m2
    FROM {name}_sums s
    JOIN {name}_parts p ON p.exchange = s.exchange AND p.pair = s.pair
    GROUP BY s.exchange, s.pair, s.n, s.mean_d, s.lo, s.hi, s.m2_within
)"""


_RANKS = """
       CASE WHEN stddev_24h IS NULL THEN NULL
            ELSE RANK() OVER (PARTITION BY stddev_24h IS NULL ORDER BY stddev_24h DESC) END,
       volatility_24h,
       CASE WHEN volatility_24h IS NULL THEN NULL
            ELSE RANK() OVER (PARTITION BY volatility_24h IS NULL ORDER BY volatility_24h DESC) END"""

_TIMES = ("as_of", "week_start", "day_start", "week_full_from", "day_full_from", "tail_from", "day_tail_from",
          "computed_at")

QUERY = sa.text(f"""
INSERT INTO crypto_pair_metrics ({", ".join(METRIC_COLUMNS)})
WITH series AS (
    SELECT m.exchange, m.pair,
           (SELECT MAX(r.timestamp) FROM {RAW} r
             WHERE r.exchange = m.exchange AND r.pair = m.pair AND r.timestamp <= :as_of) AS raw_at,
           (SELECT MAX(h.hour) FROM price_rollup_hourly h
             WHERE h.exchange = m.exchange AND h.pair = m.pair AND h.hour < :tail_from) AS rolled_hour,
           (SELECT MAX(r.timestamp) FROM {RAW} r
             WHERE r.exchange = m.exchange AND r.pair = m.pair AND r.timestamp <= :day_start) AS raw_p0_at,
           (SELECT MAX(h.hour) FROM price_rollup_hourly h
             WHERE h.exchange = m.exchange AND h.pair = m.pair AND h.hour < :day_tail_from) AS rolled_p0_hour
    FROM markets m
    WHERE m.first_at <= :as_of
), latest AS (
    -- the newest sample at or before T: in the raw table, or (pruned) the last of the newest hour
    SELECT s.exchange, s.pair,
           CASE WHEN s.raw_at IS NOT NULL THEN s.raw_at ELSE h.last_at END AS latest_at,
           CASE WHEN s.raw_at IS NOT NULL THEN r.price ELSE h.last_price END AS latest_price,
           CASE WHEN s.raw_p0_at IS NOT NULL THEN r0.price ELSE h0.last_price END AS p0
    FROM series s
    LEFT JOIN {RAW} r ON r.exchange = s.exchange AND r.pair = s.pair AND r.timestamp = s.raw_at
    LEFT JOIN price_rollup_hourly h ON h.exchange = s.exchange AND h.pair = s.pair AND h.hour = s.rolled_hour
    LEFT JOIN {RAW} r0 ON r0.exchange = s.exchange AND r0.pair = s.pair AND r0.timestamp = s.raw_p0_at
    LEFT JOIN price_rollup_hourly h0
           ON h0.exchange = s.exchange AND h0.pair = s.pair AND h0.hour = s.rolled_p0_hour
    WHERE s.raw_at IS NOT NULL OR s.rolled_hour IS NOT NULL
),{_window("week", "week_start", "week_full_from")},{_window("day", "day_start", "day_full_from")},
joined AS (
    SELECT l.exchange, l.pair, l.latest_price, l.latest_at,
           l.latest_price + CAST(w.mean_d AS DOUBLE PRECISION) AS weekly_average,
           w.lo AS min_price, w.hi AS max_price, COALESCE(w.n, 0) AS samples_7d,
           CASE WHEN d.n >= 2 THEN sqrt(CAST(d.m2 AS DOUBLE PRECISION) / (d.n - 1)) END AS stddev_24h,
           l.latest_price + CAST(d.mean_d AS DOUBLE PRECISION) AS mean_24h,
           COALESCE(d.n, 0) AS samples_24h,
           (l.latest_price / l.p0 - 1) * 100 AS change_24h_pct
    FROM latest l
    LEFT JOIN week w ON w.exchange = l.exchange AND w.pair = l.pair
    LEFT JOIN day d ON d.exchange = l.exchange AND d.pair = l.pair
), measured AS (
    SELECT joined.*, stddev_24h / mean_24h * 100 AS volatility_24h FROM joined
)
SELECT :as_of, exchange, pair, latest_price, latest_at, weekly_average, min_price, max_price, stddev_24h,{_RANKS},
       change_24h_pct, samples_24h, samples_7d, :computed_at
FROM measured
""").bindparams(*(sa.bindparam(name, type_=UTCDateTime()) for name in _TIMES))

# The same metrics straight from the raw table: the definition, read row by row (reference and baseline).
RAW_QUERY = sa.text(f"""
INSERT INTO crypto_pair_metrics ({", ".join(METRIC_COLUMNS)})
WITH newest AS (
    SELECT exchange, pair, MAX(timestamp) AS latest_at FROM {RAW} WHERE timestamp <= :as_of GROUP BY exchange, pair
), latest AS (
    SELECT r.exchange, r.pair, r.timestamp AS latest_at, r.price AS latest_price
    FROM {RAW} r JOIN newest n ON r.exchange = n.exchange AND r.pair = n.pair AND r.timestamp = n.latest_at
), week AS (
    SELECT exchange, pair, {mean("price")} AS weekly_average, MIN(price) AS min_price, MAX(price) AS max_price,
           COUNT(*) AS samples_7d
    FROM {RAW} WHERE timestamp > :week_start AND timestamp <= :as_of GROUP BY exchange, pair
), day AS (
    SELECT r.exchange, r.pair, {stddev("r.price - l.latest_price")} AS stddev_24h, {mean("r.price")} AS mean_24h,
           COUNT(*) AS samples_24h
    FROM {RAW} r JOIN latest l ON r.exchange = l.exchange AND r.pair = l.pair
    WHERE r.timestamp > :day_start AND r.timestamp <= :as_of
    GROUP BY r.exchange, r.pair
), day_before AS (
    SELECT exchange, pair, MAX(timestamp) AS at FROM {RAW} WHERE timestamp <= :day_start GROUP BY exchange, pair
), reference AS (
    SELECT r.exchange, r.pair, r.price AS p0
    FROM {RAW} r JOIN day_before b ON r.exchange = b.exchange AND r.pair = b.pair AND r.timestamp = b.at
), measured AS (
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
SELECT :as_of, exchange, pair, latest_price, latest_at, weekly_average, min_price, max_price, stddev_24h,{_RANKS},
       change_24h_pct, samples_24h, samples_7d, :computed_at
FROM measured
""").bindparams(*(sa.bindparam(name, type_=UTCDateTime()) for name in ("as_of", "week_start", "day_start",
                                                                       "computed_at")))


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def window_bounds(as_of: datetime) -> dict[str, datetime]:
    """T, the window starts, where each window's whole hours begin, and the partial hours at T and T - 24h."""
    week_start, day_start = as_of - WEEK, as_of - DAY
    return {
        "as_of": as_of, "week_start": week_start, "day_start": day_start,
        "week_full_from": floor_hour(week_start) + HOUR, "day_full_from": floor_hour(day_start) + HOUR,
        "tail_from": floor_hour(as_of), "day_tail_from": floor_hour(day_start),
    }


def compute(connection: sa.Connection, as_of: datetime, computed_at: datetime | None = None,
            *, from_raw: bool = False) -> int:
    """Replace the metrics of `as_of` with a fresh computation; returns the number of pairs.

    `from_raw` reads every sample from the raw table instead of the hourly rollups (same result).
    """
    connection.execute(metrics.delete().where(metrics.c.timestamp == as_of))
    connection.execute(RAW_QUERY if from_raw else QUERY, {**window_bounds(as_of), "computed_at": computed_at or as_of})
    count = connection.execute(
        sa.select(sa.func.count()).select_from(metrics).where(metrics.c.timestamp == as_of)
    ).scalar_one()
    return int(count)
