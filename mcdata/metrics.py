"""The metrics of DESIGN §5, computed inside the database in one set-based statement.

Windows are half-open: 7 days is `T - 7d < timestamp <= T`, 24 hours `T - 24h < timestamp <= T`.
Each window is cut at the UTC days that hold its edges: whole daily rollups between them; in the day that
holds the window's start, the quarter days (6 hours) after the start's quarter, the two-hour blocks after
its block in that quarter, the hour after its hour in that block, and the start's hour whole or, where it
has samples on both sides, its raw rows; in T's day, its daily row when the market has no sample later
than T (the hourly steady state), else its quarters, hours and raw rows up to T. Each of these is read
for every market at once by a range scan of its level's time index, so a week costs about 16 rollup rows
per market whatever the sampling rate.
The parts are merged with Chan's parallel formula; the result equals the raw-table definition
(`RAW_QUERY`, kept as the reference and the baseline).

The 24 hours' deviations are taken from each pair's latest price (a shift changes no deviation, and
removes the cancellation that ruins large prices with small moves); the rollups keep theirs about an
anchor price for the same reason. The week needs only counts, sums and extremes. SQLite gets
`stddev_samp`, `sqrt` and `mcdata_round_sig` from mcdata.db; the statements differ between the databases
only in how the rank key is rounded.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from mcdata.schema import UTCDateTime, metrics, raw_prices

WEEK = timedelta(days=7)
DAY = timedelta(hours=24)
QUARTER = timedelta(hours=6)
TWO_HOURS = timedelta(hours=2)

# The table's columns in its own order: the two INSERT ... SELECT statements below select them in it.
METRIC_COLUMNS = tuple(column.name for column in metrics.columns)
RAW = raw_prices.name


def mean(expression: str) -> str:
    return f"CAST(AVG(CAST({expression} AS NUMERIC)) AS DOUBLE PRECISION)"


def stddev(expression: str) -> str:
    return f"CAST(stddev_samp(CAST({expression} AS NUMERIC)) AS DOUBLE PRECISION)"


def _time_range(table: str, bucket: str, after: str, before: str) -> str:
    return f"{table} b WHERE b.{bucket} > :{after} AND b.{bucket} < :{before}"


def _edge(edge: str, p0: bool) -> str:
    """The part of the window after `edge` (a window's start, T - 7d or T - 24h) within the UTC day that
    holds it: the quarters after the edge's quarter, the two-hour blocks after its block within that
    quarter, the hour after the edge's hour within that block, and the edge's own hour whole when all its
    samples are later, else its raw rows after the edge. Each level is read for every market at once
    through its time index. Rows: exchange, pair, n, the mean as ref + off (kept apart: a deviation from
    another price is exact only when taken of ref first), m2, lo, hi; and with `p0`, rows of n = 0 whose
    p0 is the price of the newest sample at or before the edge, where the edge's hour holds it."""
    p0_row = f" OR b.last_at <= :{edge}" if p0 else ""
    return f"""
    SELECT b.exchange, b.pair, b.samples AS n, b.ref_price AS ref, b.mean_offset AS off, b.m2,
           b.min_price AS lo, b.max_price AS hi, CAST(NULL AS DOUBLE PRECISION) AS p0
    FROM {_time_range("price_rollup_quarterly", "quarter", f"{edge}_quarter", f"{edge}_day_end")}
    UNION ALL
    SELECT b.exchange, b.pair, b.samples, b.ref_price, b.mean_offset, b.m2, b.min_price, b.max_price, NULL
    FROM price_rollup_two_hourly b WHERE b.two_hour >= :{edge}_two_hour_end AND b.two_hour < :{edge}_quarter_end
    UNION ALL
    SELECT b.exchange, b.pair, CASE WHEN b.first_at > :{edge} THEN b.samples ELSE 0 END,
           b.ref_price, b.mean_offset, b.m2, b.min_price, b.max_price,
           CASE WHEN b.last_at <= :{edge} THEN b.last_price END
    FROM price_rollup_hourly b
    WHERE b.hour >= :{edge}_hour AND b.hour < :{edge}_two_hour_end
      AND (b.hour > :{edge}_hour OR b.first_at > :{edge}{p0_row})
    UNION ALL  -- the edge's hour has samples on both sides of it: its raw rows after the edge
    SELECT r.exchange, r.pair, 1, r.price, 0.0, 0.0, r.price, r.price, NULL
    FROM price_rollup_hourly b
    JOIN {RAW} r ON r.exchange = b.exchange AND r.pair = b.pair AND r.timestamp > :{edge}
     AND r.timestamp <= b.last_at
    WHERE b.hour = :{edge}_hour AND b.first_at <= :{edge} AND b.last_at > :{edge}"""


def _as_of_side() -> str:
    """The part of both windows in the UTC day that holds T: its daily row whole when the market has no
    sample later than T (the hourly steady state), else its quarters and hours before T's quarter and hour,
    and T's hour whole or by its raw rows at or before T. Rows: market, n, d (the mean as a deviation from
    the latest price), m2, lo, hi."""
    def row(alias: str) -> str:
        return (f"l.market, {alias}.samples AS n, ({alias}.ref_price - l.latest_price) + {alias}.mean_offset AS d, "
                f"{alias}.m2, {alias}.min_price AS lo, {alias}.max_price AS hi")
    return f"""
    SELECT {row("b")} FROM latest l
    JOIN price_rollup_daily b ON b.exchange = l.exchange AND b.pair = l.pair AND b.day = :as_of_day
    WHERE NOT l.later_samples
    UNION ALL
    SELECT {row("b")} FROM latest l
    JOIN price_rollup_quarterly b ON b.exchange = l.exchange AND b.pair = l.pair
     AND b.quarter >= :as_of_day AND b.quarter < :as_of_quarter
    WHERE l.later_samples
    UNION ALL
    SELECT {row("b")} FROM latest l
    JOIN price_rollup_hourly b ON b.exchange = l.exchange AND b.pair = l.pair
     AND b.hour >= :as_of_quarter AND b.hour <= :as_of_hour AND (b.hour < :as_of_hour OR b.last_at <= :as_of)
    WHERE l.later_samples
    UNION ALL
    SELECT l.market, 1, r.price - l.latest_price, 0.0, r.price, r.price FROM latest l
    JOIN price_rollup_hourly b ON b.exchange = l.exchange AND b.pair = l.pair AND b.hour = :as_of_hour
     AND b.first_at <= :as_of AND b.last_at > :as_of
    JOIN {RAW} r ON r.exchange = b.exchange AND r.pair = b.pair AND r.timestamp >= :as_of_hour
     AND r.timestamp <= :as_of
    WHERE l.later_samples"""


# The windows, each cut at the UTC days that hold its edges. The week: the whole days between the day of
# T - 7d and the day of T, that first day after T - 7d (`_edge`), and T's day up to T (`_as_of_side`).
# The 24 hours: the day of T - 24h after it, and T's day up to T. The week needs only counts, sums and
# extremes, summed by market without the latest price; the 24 hours' deviations are taken from it.
_PARTS = f"""
week_only AS (
    SELECT exchange, pair, SUM(n) AS n, SUM(n * x) AS sx, MIN(lo) AS lo, MAX(hi) AS hi
    FROM (
        SELECT b.exchange, b.pair, b.samples AS n, b.ref_price + b.mean_offset AS x, b.min_price AS lo,
               b.max_price AS hi
        FROM {_time_range("price_rollup_daily", "day", "week_start_day", "as_of_day")}
        UNION ALL
        SELECT exchange, pair, n, ref + off, lo, hi FROM ({_edge("week_start", p0=False)}) edge
    ) parts
    GROUP BY exchange, pair
), day_parts AS (
    SELECT l.market, FALSE AS in_week, e.n, (e.ref - l.latest_price) + e.off AS d, e.m2, e.lo, e.hi, e.p0
    FROM ({_edge("day_start", p0=True)}) e
    JOIN latest l ON l.exchange = e.exchange AND l.pair = e.pair
    UNION ALL
    SELECT market, TRUE, n, d, m2, lo, hi, NULL FROM ({_as_of_side()}) t
), day_sums AS (  -- per market: count n, s1 = sum of deviations d, s2 = sum of squared deviations
    SELECT market, SUM(n) AS day_n, SUM(n * d) FILTER (WHERE n > 0) AS day_s1,
           SUM(m2 + n * d * d) FILTER (WHERE n > 0) AS day_s2, MAX(p0) AS p0,
           SUM(n) FILTER (WHERE in_week) AS week_n, SUM(n * d) FILTER (WHERE in_week) AS week_s1,
           MIN(lo) FILTER (WHERE in_week) AS lo, MAX(hi) FILTER (WHERE in_week) AS hi
    FROM day_parts
    GROUP BY market
)"""


# Ranks are among the pairs of the same venue (the `exchange` column): prices of one venue are one
# market's view, and with one venue this is DESIGN §5's "all pairs of the as-of time". They compare values
# rounded to 12 significant digits, so that series with identical prices tie even when floating-point sums
# in a different order differ in the last bit. PostgreSQL rounds in floating point (the 12-digit mantissa,
# scaled back): the SQL function it used, STRICT (so never inlined) and rounding through NUMERIC, cost
# 2 µs a call, 80 ms over 20,000 markets.
ROUND_SIG_12 = {
    "postgresql": "round({x} * power(CAST(10 AS DOUBLE PRECISION), 11 - floor(log({x})))) "
                  "/ power(CAST(10 AS DOUBLE PRECISION), 11 - floor(log({x})))",
    "sqlite": "mcdata_round_sig({x}, 12)",
}
# A value that is NULL sorts after every other of its venue, so it moves no rank, and gets none.
_RANKS = """
       CASE WHEN stddev_24h IS NOT NULL THEN RANK() OVER (PARTITION BY exchange ORDER BY {std_key} DESC NULLS LAST) END,
       volatility_24h,
       CASE WHEN volatility_24h IS NOT NULL
            THEN RANK() OVER (PARTITION BY exchange ORDER BY {volatility_key} DESC NULLS LAST) END"""


def _per_dialect(sql: str, times: tuple[str, ...]) -> dict[str, sa.TextClause]:
    """The statement for each database: the rank keys written in its SQL, the times bound as UTC."""
    def key(dialect: str, column: str) -> str:
        # zero has no logarithm; NULL stays NULL
        return f"CASE WHEN {column} > 0 THEN {ROUND_SIG_12[dialect].format(x=column)} WHEN {column} = 0 THEN 0 END"
    return {dialect: sa.text(sql.replace("{RANKS}", _RANKS.format(std_key=key(dialect, "stddev_24h"),
                                                                  volatility_key=key(dialect, "volatility_24h"))))
            .bindparams(*(sa.bindparam(name, type_=UTCDateTime()) for name in times))
            for dialect in ROUND_SIG_12}


_TIMES = ("as_of", "week_start", "day_start", "computed_at")
# The UTC day, quarter and hour that hold each edge, and the ends of the edge's day, quarter and two-hour block.
_EDGE_TIMES = ("week_start_day", *(f"{edge}_{part}" for edge in ("week_start", "day_start")
                                   for part in ("day_end", "quarter", "quarter_end", "two_hour_end", "hour")))
_AS_OF_TIMES = ("as_of_day", "as_of_quarter", "as_of_hour")


def _newest(column: str, at_most: str) -> str:
    """`column` of the market's newest sample at or before `at_most`: from the raw table if it lies after
    T - 7d, else (older, or its rows pruned) from the newest hourly rollup that ends by then. Both give the
    same sample: one older than T - 7d lies at least a day before `at_most` (T or T - 24h), so its hour
    ends by then, and it is that hour's last sample at or before it. The constant lower bound lets
    PostgreSQL leave older monthly partitions out of the plan (each one cost 0.3 ms of planning)."""
    rolled = "last_price" if column == "price" else "last_at"
    return (f"COALESCE((SELECT r.{column} FROM {RAW} r WHERE r.exchange = m.exchange AND r.pair = m.pair "
            f"AND r.timestamp <= :{at_most} AND r.timestamp > :week_start ORDER BY r.timestamp DESC LIMIT 1), "
            f"(SELECT h.{rolled} FROM price_rollup_hourly h "
            f"WHERE h.exchange = m.exchange AND h.pair = m.pair AND h.last_at <= :{at_most} "
            "ORDER BY h.hour DESC LIMIT 1))")


def _smaller(a: str, b: str, op: str) -> str:
    """The smaller (op `<`) or larger (`>`) of two values that may be NULL (SQLite's min(a, b) is NULL then)."""
    return f"CASE WHEN {b} IS NULL OR {a} {op} {b} THEN {a} ELSE {b} END"


QUERY = _per_dialect(f"""
INSERT INTO crypto_pair_metrics ({", ".join(METRIC_COLUMNS)})
WITH latest AS MATERIALIZED (  -- markets holds each series' newest sample; an earlier as-of time looks it up
    SELECT * FROM (
        SELECT row_number() OVER () AS market, m.exchange, m.pair, m.last_at > :as_of AS later_samples,
               CASE WHEN m.last_at <= :as_of THEN m.last_at ELSE {_newest("timestamp", "as_of")} END AS latest_at,
               CASE WHEN m.last_at <= :as_of THEN m.last_price ELSE {_newest("price", "as_of")} END AS latest_price
        FROM markets m
        WHERE m.first_at <= :as_of
    ) newest
    WHERE latest_at IS NOT NULL
),{_PARTS},
joined AS (
    SELECT m.exchange, m.pair, m.latest_price, m.latest_at,
           COALESCE(w.n, 0) + COALESCE(s.week_n, 0) AS samples_7d,
           (COALESCE(w.sx, 0) + COALESCE(s.week_n * m.latest_price + s.week_s1, 0))
               / NULLIF(COALESCE(w.n, 0) + COALESCE(s.week_n, 0), 0) AS weekly_average,
           {_smaller("s.lo", "w.lo", "<")} AS min_price, {_smaller("s.hi", "w.hi", ">")} AS max_price,
           CASE WHEN s.day_n >= 2 THEN sqrt(CASE WHEN s.day_s2 - s.day_s1 * s.day_s1 / s.day_n > 0
                                                 THEN (s.day_s2 - s.day_s1 * s.day_s1 / s.day_n) / (s.day_n - 1)
                                                 ELSE 0.0 END) END AS stddev_24h,
           m.latest_price + s.day_s1 / NULLIF(s.day_n, 0) AS mean_24h,
           COALESCE(s.day_n, 0) AS samples_24h,
           -- p0 is most often the last sample of the hour that holds T - 24h: looked up only where it is not
           (m.latest_price / COALESCE(s.p0, {_newest("price", "day_start")}) - 1) * 100 AS change_24h_pct
    FROM latest m
    LEFT JOIN day_sums s ON s.market = m.market
    LEFT JOIN week_only w ON w.exchange = m.exchange AND w.pair = m.pair
), measured AS MATERIALIZED (  -- once per market: the rank keys repeat each value several times
    SELECT joined.*, stddev_24h / mean_24h * 100 AS volatility_24h FROM joined
)
SELECT :as_of, exchange, pair, latest_price, latest_at, weekly_average, min_price, max_price, stddev_24h,{{RANKS}},
       change_24h_pct, samples_24h, samples_7d, :computed_at
FROM measured
""", (*_TIMES, *_EDGE_TIMES, *_AS_OF_TIMES))

# The same metrics straight from the raw table: the definition, read row by row (reference and baseline).
RAW_QUERY = _per_dialect(f"""
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
SELECT :as_of, exchange, pair, latest_price, latest_at, weekly_average, min_price, max_price, stddev_24h,{{RANKS}},
       change_24h_pct, samples_24h, samples_7d, :computed_at
FROM measured
""", _TIMES)


# The planner cannot estimate the size of the CTEs: it would sort the window's parts to group them (half
# the run time) and compile the plan (JIT) for longer than it takes to run. Hashing is right at any size.
PLANNER_SETTINGS = sa.text("SELECT set_config('jit', 'off', true), set_config('enable_sort', 'off', true), "
                           "set_config('work_mem', '64MB', true)")


def _block(hour: datetime, hours: int) -> datetime:
    """The start of the block of `hours` hours of the UTC day that holds `hour` (as the rollup levels cut it)."""
    return hour.replace(hour=hour.hour // hours * hours)


def _cuts(moment: datetime) -> tuple[datetime, datetime, datetime]:
    """The UTC day, quarter day (6 hours) and hour that hold `moment`."""
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour.replace(hour=0), _block(hour, 6), hour


# The ranks of one snapshot again from its stored deviations (a market removed from it moves the others').
RERANK = _per_dialect("""
WITH r (exchange, pair, std_rank, volatility, volatility_rank) AS (
    SELECT exchange, pair,{RANKS} FROM crypto_pair_metrics WHERE timestamp = :as_of)
UPDATE crypto_pair_metrics SET std_rank = r.std_rank, volatility_rank = r.volatility_rank
FROM r WHERE crypto_pair_metrics.timestamp = :as_of AND crypto_pair_metrics.exchange = r.exchange
    AND crypto_pair_metrics.pair = r.pair
""", ("as_of",))


def remove_market(connection: sa.Connection, as_of: datetime, exchange: str, pair: str) -> None:
    """Take a market that has no samples any more out of one snapshot, and rank the others again: no other
    market's numbers read it."""
    connection.execute(metrics.delete().where(metrics.c.timestamp == as_of, metrics.c.exchange == exchange,
                                              metrics.c.pair == pair))
    connection.execute(RERANK[connection.dialect.name], {"as_of": as_of})


def window_bounds(as_of: datetime) -> dict[str, datetime]:
    """T, the window starts, and the UTC days, quarters, two-hour blocks and hours that hold them."""
    bounds = {"as_of": as_of, "week_start": as_of - WEEK, "day_start": as_of - DAY}
    for edge in ("week_start", "day_start"):
        day, quarter, hour = _cuts(bounds[edge])
        bounds |= {f"{edge}_day": day, f"{edge}_day_end": day + DAY, f"{edge}_quarter": quarter,
                   f"{edge}_quarter_end": quarter + QUARTER, f"{edge}_hour": hour,
                   f"{edge}_two_hour_end": _block(hour, 2) + TWO_HOURS}
    bounds["as_of_day"], bounds["as_of_quarter"], bounds["as_of_hour"] = _cuts(as_of)
    return bounds


def compute(connection: sa.Connection, as_of: datetime, computed_at: datetime | None = None,
            *, from_raw: bool = False) -> int:
    """Replace the metrics of `as_of` with a fresh computation; returns the number of pairs.

    `from_raw` reads every sample from the raw table instead of the hourly rollups (same result).
    """
    connection.execute(metrics.delete().where(metrics.c.timestamp == as_of))
    if connection.dialect.name == "postgresql":
        connection.execute(PLANNER_SETTINGS)
    statement = (RAW_QUERY if from_raw else QUERY)[connection.dialect.name]
    connection.execute(statement, {**window_bounds(as_of), "computed_at": computed_at or as_of})
    count = connection.execute(
        sa.select(sa.func.count()).select_from(metrics).where(metrics.c.timestamp == as_of)
    ).scalar_one()
    return int(count)
