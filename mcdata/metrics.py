"""The metrics of DESIGN §5, computed inside the database in one set-based statement.

Windows are half-open: 7 days is `T - 7d < timestamp <= T`, 24 hours `T - 24h < timestamp <= T`.
Whole hours inside a window come from `price_rollup_hourly` (count, mean, M2 per hour); only the two
partial hours at its edges are read from the raw table. The hours are merged with Chan's parallel
formula, so the cost depends on pairs x window hours, not on how often prices were sampled, and the
result equals the raw-table definition (`RAW_QUERY`, kept as the reference and the benchmark baseline).

Deviations are taken from each pair's latest price (a shift changes no deviation, and removes the
cancellation that ruins large prices with small moves); the rollups keep theirs about an anchor price
for the same reason. SQLite gets `stddev_samp`, `sqrt` and `mcdata_round_sig` from mcdata.db, PostgreSQL
`mcdata_round_sig` from migration 0002; the statements are the same on both databases.
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
    """CTE `<name>`: per pair the sample count n, s1 = sum of deviations d from the latest price,
    s2 = sum of squared deviations, min and max; whole hours from the rollup, edge samples from the
    raw table. M2 = s2 - s1^2/n: the deviations are small next to the price, so nothing cancels."""
    return f"""
{name} AS (
    SELECT exchange, pair, SUM(n) AS n, SUM(n * d) AS s1, SUM(m2 + n * d * d) AS s2, MIN(lo) AS lo, MAX(hi) AS hi
    FROM (
        SELECT h.exchange, h.pair, h.samples AS n, (h.ref_price - l.latest_price) + h.mean_offset AS d, h.m2,
               h.min_price AS lo, h.max_price AS hi
        FROM price_rollup_hourly h
        JOIN latest l ON h.exchange = l.exchange AND h.pair = l.pair
        WHERE h.hour >= :{full_from} AND h.hour < :tail_from
        UNION ALL
        SELECT r.exchange, r.pair, 1, r.price - l.latest_price, 0.0, r.price, r.price
        FROM {RAW} r
        JOIN latest l ON r.exchange = l.exchange AND r.pair = l.pair
        WHERE r.timestamp > :{start} AND r.timestamp < :{full_from}
        UNION ALL
        SELECT r.exchange, r.pair, 1, r.price - l.latest_price, 0.0, r.price, r.price
        FROM {RAW} r
        JOIN latest l ON r.exchange = l.exchange AND r.pair = l.pair
        WHERE r.timestamp >= :tail_from AND r.timestamp <= :as_of
    ) parts
    GROUP BY exchange, pair
)"""


# Ranks compare values rounded to 12 significant digits, so that series with identical prices tie even
# when floating-point sums in a different order differ in the last bit.
_RANKS = """
       CASE WHEN stddev_24h IS NULL THEN NULL
            ELSE RANK() OVER (PARTITION BY stddev_24h IS NULL
                              ORDER BY mcdata_round_sig(stddev_24h, 12) DESC) END,
       volatility_24h,
       CASE WHEN volatility_24h IS NULL THEN NULL
            ELSE RANK() OVER (PARTITION BY volatility_24h IS NULL
                              ORDER BY mcdata_round_sig(volatility_24h, 12) DESC) END"""

_TIMES = ("as_of", "week_start", "day_start", "week_full_from", "day_full_from", "tail_from", "day_tail_from",
          "computed_at")


def _newest_rolled(column: str, before: str) -> str:
    """`column` of the series' newest rollup hour before `before` (where raw rows were pruned)."""
    return (f"(SELECT h.{column} FROM price_rollup_hourly h WHERE h.exchange = s.exchange AND h.pair = s.pair "
            f"AND h.hour < :{before} ORDER BY h.hour DESC LIMIT 1)")


def _raw_price(at: str) -> str:
    return f"(SELECT r.price FROM {RAW} r WHERE r.exchange = s.exchange AND r.pair = s.pair AND r.timestamp = {at})"


QUERY = sa.text(f"""
INSERT INTO crypto_pair_metrics ({", ".join(METRIC_COLUMNS)})
WITH series AS MATERIALIZED (
    -- markets holds each series' newest sample; older as-of times (or pruned rows) need a lookup
    SELECT m.exchange, m.pair, m.last_at, m.last_price,
           CASE WHEN m.last_at > :as_of THEN
               (SELECT MAX(r.timestamp) FROM {RAW} r
                 WHERE r.exchange = m.exchange AND r.pair = m.pair AND r.timestamp <= :as_of) END AS raw_at,
           (SELECT MAX(r.timestamp) FROM {RAW} r
             WHERE r.exchange = m.exchange AND r.pair = m.pair AND r.timestamp <= :day_start) AS raw_p0_at
    FROM markets m
    WHERE m.first_at <= :as_of
), latest AS MATERIALIZED (
    SELECT s.exchange, s.pair,
           CASE WHEN s.last_at <= :as_of THEN s.last_at
                WHEN s.raw_at IS NOT NULL THEN s.raw_at
                ELSE {_newest_rolled("last_at", "tail_from")} END AS latest_at,
           CASE WHEN s.last_at <= :as_of THEN s.last_price
                WHEN s.raw_at IS NOT NULL THEN {_raw_price("s.raw_at")}
                ELSE {_newest_rolled("last_price", "tail_from")} END AS latest_price,
           CASE WHEN s.raw_p0_at IS NOT NULL THEN {_raw_price("s.raw_p0_at")}
                ELSE {_newest_rolled("last_price", "day_tail_from")} END AS p0
    FROM series s
),{_window("week", "week_start", "week_full_from")},{_window("day", "day_start", "day_full_from")},
joined AS (
    SELECT l.exchange, l.pair, l.latest_price, l.latest_at,
           l.latest_price + w.s1 / w.n AS weekly_average,
           w.lo AS min_price, w.hi AS max_price, COALESCE(w.n, 0) AS samples_7d,
           CASE WHEN d.n >= 2 THEN sqrt(CASE WHEN d.s2 - d.s1 * d.s1 / d.n > 0
                                             THEN (d.s2 - d.s1 * d.s1 / d.n) / (d.n - 1) ELSE 0.0 END) END
               AS stddev_24h,
           l.latest_price + d.s1 / d.n AS mean_24h,
           COALESCE(d.n, 0) AS samples_24h,
           (l.latest_price / l.p0 - 1) * 100 AS change_24h_pct
    FROM latest l
    LEFT JOIN week w ON w.exchange = l.exchange AND w.pair = l.pair
    LEFT JOIN day d ON d.exchange = l.exchange AND d.pair = l.pair
    WHERE l.latest_at IS NOT NULL
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
    if connection.dialect.name == "postgresql":  # room to sort and hash the window's hours in memory
        connection.execute(sa.text("SELECT set_config('work_mem', '64MB', true)"))
    connection.execute(RAW_QUERY if from_raw else QUERY, {**window_bounds(as_of), "computed_at": computed_at or as_of})
    count = connection.execute(
        sa.select(sa.func.count()).select_from(metrics).where(metrics.c.timestamp == as_of)
    ).scalar_one()
    return int(count)
