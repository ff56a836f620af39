"""The metrics of DESIGN §5, computed inside the database in one set-based statement.

Windows are half-open: 7 days is `T - 7d < timestamp <= T`, 24 hours `T - 24h < timestamp <= T`.
Each window is read at the coarsest level that fits it: a daily rollup whose samples (first_at ..
last_at) all lie inside the window counts whole; a day that straddles an edge is read by its hours, and
an hour that straddles an edge by its raw rows. A week is about seven daily rows per market, plus the
hours and raw rows of the one or two hours that hold a window's edge, so the cost depends on the number
of markets, not on how often prices were sampled. The parts are merged with Chan's parallel formula;
the result equals the raw-table definition (`RAW_QUERY`, kept as the reference and the baseline).

Deviations are taken from each pair's latest price (a shift changes no deviation, and removes the
cancellation that ruins large prices with small moves); the rollups keep theirs about an anchor price
for the same reason. SQLite gets `stddev_samp`, `sqrt` and `mcdata_round_sig` from mcdata.db, PostgreSQL
`mcdata_round_sig` from mcdata.triggers; the statements are the same on both databases.
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
RAW = "raw_crypto_pair_price_history"


def mean(expression: str) -> str:
    return f"CAST(AVG(CAST({expression} AS NUMERIC)) AS DOUBLE PRECISION)"


def stddev(expression: str) -> str:
    return f"CAST(stddev_samp(CAST({expression} AS NUMERIC)) AS DOUBLE PRECISION)"


def _inside(window_start: str) -> str:
    """The rollup row's samples all lie in the window (window_start, as_of]."""
    return f"(b.first_at > :{window_start} AND b.last_at <= :as_of)"


def _straddles(window_start: str) -> str:
    """The rollup row has samples on both sides of an edge of (window_start, as_of]."""
    return f"(b.last_at > :{window_start} AND b.first_at <= :as_of AND NOT {_inside(window_start)})"


def _level(table: str, bucket: str, parent: str | None) -> str:
    """Rollup rows with flags: `in_*` the row counts whole for that window, `open_*` it must be read finer.
    Without a parent: the daily rows of the week; with one: the rows inside the parent's open buckets.
    `d` is the row's mean as a deviation from the market's latest price."""
    if parent is None:
        source = (f"{table} b JOIN latest l ON b.exchange = l.exchange AND b.pair = l.pair "
                  f"AND b.{bucket} >= :week_first_day AND b.{bucket} <= :as_of")
        week, day, up = "", "", "l"
    else:
        source = (f"{parent} p JOIN {table} b ON b.exchange = p.exchange AND b.pair = p.pair "
                  f"AND b.{bucket} >= p.bucket AND b.{bucket} <= p.last_at WHERE p.open_week OR p.open_day")
        week, day, up = "p.open_week AND ", "p.open_day AND ", "p"
    return f"""
    SELECT {up}.market, b.exchange, b.pair, {up}.latest_price, b.{bucket} AS bucket, b.last_at,
           b.samples AS n, (b.ref_price - {up}.latest_price) + b.mean_offset AS d, b.m2,
           b.min_price AS lo, b.max_price AS hi,
           {week}{_inside("week_start")} AS in_week, {day}{_inside("day_start")} AS in_day,
           {week}{_straddles("week_start")} AS open_week, {day}{_straddles("day_start")} AS open_day
    FROM {source}"""


_PARTS = f"""
days AS MATERIALIZED ({_level("price_rollup_daily", "day", None)}
), hours AS MATERIALIZED ({_level("price_rollup_hourly", "hour", "days")}
), parts AS (
    SELECT market, in_week, in_day, n, d, m2, lo, hi FROM days WHERE in_week OR in_day
    UNION ALL
    SELECT market, in_week, in_day, n, d, m2, lo, hi FROM hours WHERE in_week OR in_day
    UNION ALL  -- an hour holding an edge: its raw rows inside the window(s) it straddles
    SELECT h.market, h.open_week, h.open_day, 1, r.price - h.latest_price, 0.0, r.price, r.price
    FROM hours h
    JOIN {RAW} r ON r.exchange = h.exchange AND r.pair = h.pair AND r.timestamp <= :as_of
     AND r.timestamp > CASE WHEN h.open_week THEN :week_start ELSE :day_start END
     AND r.timestamp >= h.bucket AND r.timestamp <= h.last_at
    WHERE h.open_week OR h.open_day
), windows AS (  -- per market: count n, s1 = sum of deviations d, s2 = sum of squared deviations, min, max
    SELECT market,
           SUM(n) FILTER (WHERE in_week) AS week_n, SUM(n * d) FILTER (WHERE in_week) AS week_s1,
           MIN(lo) FILTER (WHERE in_week) AS lo, MAX(hi) FILTER (WHERE in_week) AS hi,
           SUM(n) FILTER (WHERE in_day) AS day_n, SUM(n * d) FILTER (WHERE in_day) AS day_s1,
           SUM(m2 + n * d * d) FILTER (WHERE in_day) AS day_s2
    FROM parts
    GROUP BY market
)"""


# Ranks are among the pairs of the same venue (the `exchange` column): prices of one venue are one
# market's view, and with one venue this is DESIGN §5's "all pairs of the as-of time". They compare values
# rounded to 12 significant digits, so that series with identical prices tie even when floating-point sums
# in a different order differ in the last bit.
_RANKS = """
       CASE WHEN stddev_24h IS NULL THEN NULL
            ELSE RANK() OVER (PARTITION BY exchange, stddev_24h IS NULL
                              ORDER BY mcdata_round_sig(stddev_24h, 12) DESC) END,
       volatility_24h,
       CASE WHEN volatility_24h IS NULL THEN NULL
            ELSE RANK() OVER (PARTITION BY exchange, volatility_24h IS NULL
                              ORDER BY mcdata_round_sig(volatility_24h, 12) DESC) END"""

_TIMES = ("as_of", "week_start", "day_start", "week_first_day", "computed_at")


def _newest(column: str, at_most: str) -> str:
    """`column` of the market's newest sample at or before `at_most`: from the raw table, or where its
    rows were pruned, from the newest hourly rollup that ends by then."""
    rolled = "last_price" if column == "price" else "last_at"
    return (f"COALESCE((SELECT r.{column} FROM {RAW} r WHERE r.exchange = m.exchange AND r.pair = m.pair "
            f"AND r.timestamp <= :{at_most} ORDER BY r.timestamp DESC LIMIT 1), "
            f"(SELECT h.{rolled} FROM price_rollup_hourly h "
            f"WHERE h.exchange = m.exchange AND h.pair = m.pair AND h.last_at <= :{at_most} "
            "ORDER BY h.hour DESC LIMIT 1))")


QUERY = sa.text(f"""
INSERT INTO crypto_pair_metrics ({", ".join(METRIC_COLUMNS)})
WITH latest AS MATERIALIZED (  -- markets holds each series' newest sample; an earlier as-of time looks it up
    SELECT * FROM (
        SELECT row_number() OVER () AS market, m.exchange, m.pair,
               CASE WHEN m.last_at <= :as_of THEN m.last_at ELSE {_newest("timestamp", "as_of")} END AS latest_at,
               CASE WHEN m.last_at <= :as_of THEN m.last_price ELSE {_newest("price", "as_of")} END AS latest_price,
               {_newest("price", "day_start")} AS p0
        FROM markets m
        WHERE m.first_at <= :as_of
    ) newest
    WHERE latest_at IS NOT NULL
),{_PARTS},
joined AS (
    SELECT l.exchange, l.pair, l.latest_price, l.latest_at,
           l.latest_price + w.week_s1 / w.week_n AS weekly_average,
           w.lo AS min_price, w.hi AS max_price, COALESCE(w.week_n, 0) AS samples_7d,
           CASE WHEN w.day_n >= 2 THEN sqrt(CASE WHEN w.day_s2 - w.day_s1 * w.day_s1 / w.day_n > 0
                                                 THEN (w.day_s2 - w.day_s1 * w.day_s1 / w.day_n) / (w.day_n - 1)
                                                 ELSE 0.0 END) END AS stddev_24h,
           l.latest_price + w.day_s1 / w.day_n AS mean_24h,
           COALESCE(w.day_n, 0) AS samples_24h,
           (l.latest_price / l.p0 - 1) * 100 AS change_24h_pct
    FROM latest l
    LEFT JOIN windows w ON w.market = l.market
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


# The planner cannot estimate the size of the CTEs: it would sort the window's parts to group them (half
# the run time) and compile the plan (JIT) for longer than it takes to run. Hashing is right at any size.
PLANNER_SETTINGS = sa.text("SELECT set_config('jit', 'off', true), set_config('enable_sort', 'off', true), "
                           "set_config('work_mem', '64MB', true)")


def window_bounds(as_of: datetime) -> dict[str, datetime]:
    """T, the window starts, and the UTC day that holds the start of the week."""
    week_start = as_of - WEEK
    return {"as_of": as_of, "week_start": week_start, "day_start": as_of - DAY,
            "week_first_day": week_start.replace(hour=0, minute=0, second=0, microsecond=0)}


def compute(connection: sa.Connection, as_of: datetime, computed_at: datetime | None = None,
            *, from_raw: bool = False) -> int:
    """Replace the metrics of `as_of` with a fresh computation; returns the number of pairs.

    `from_raw` reads every sample from the raw table instead of the hourly rollups (same result).
    """
    connection.execute(metrics.delete().where(metrics.c.timestamp == as_of))
    if connection.dialect.name == "postgresql":
        connection.execute(PLANNER_SETTINGS)
    connection.execute(RAW_QUERY if from_raw else QUERY, {**window_bounds(as_of), "computed_at": computed_at or as_of})
    count = connection.execute(
        sa.select(sa.func.count()).select_from(metrics).where(metrics.c.timestamp == as_of)
    ).scalar_one()
    return int(count)
