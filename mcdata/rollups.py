"""The derived tables (hourly, two-hour, quarter-day and daily rollups, markets) recomputed from the raw rows: to
verify them and to rebuild them (`mcdata check`, and every correction of raw prices).

The triggers (mcdata.triggers) keep the rollups as prices are inserted; the raw table refuses every
other change (its guards, also in mcdata.triggers) except prune's and mcdata's own corrections, which call
`rebuild` in the same transaction. Rollups before `retention.pruned_before` (a UTC midnight) have no raw
rows any more: they are history, neither verified nor rebuilt.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from mcdata.schema import UTCDateTime, retention
from mcdata.triggers import COARSER, COLUMNS, LEVELS, PG_ORIGIN, RAW, from_hours

HOUR = {"postgresql": f"date_bin('1 hour', timestamp, {PG_ORIGIN})",
        "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', timestamp)"}
EARLIEST = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
# Rebuilt values equal the trigger-kept ones up to the order of floating-point sums.
TOLERANCE = 1e-9


def _scope(alias: str, market: bool) -> str:
    where = f"{alias}.exchange = :exchange AND {alias}.pair = :pair AND " if market else ""
    return where


def hours_from_raw(dialect: str, market: bool) -> str:
    """Hourly rollup rows from the raw rows at or after :since: the anchor is each hour's first price, the
    mean and M2 are taken in two passes about it (as exact as the trigger's merges): the hour's mean offset
    by a window over the hour, then the squared deviations from it. Windows, not a join of the rows with
    their hour's aggregates: SQLite joins two subqueries by a nested loop (12 s for a year of one pair)."""
    return f"""
    SELECT exchange, pair, hour, COUNT(*) AS samples, MIN(ref) AS ref_price, MIN(mean_offset) AS mean_offset,
           SUM((from_ref - mean_offset) * (from_ref - mean_offset)) AS m2,
           MIN(price) AS min_price, MAX(price) AS max_price, MIN(timestamp) AS first_at, MIN(ref) AS first_price,
           MAX(timestamp) AS last_at, MIN(last_p) AS last_price
    FROM (
        SELECT exchange, pair, hour, timestamp, price, ref, last_p, price - ref AS from_ref,
               AVG(price - ref) OVER (PARTITION BY exchange, pair, hour) AS mean_offset
        FROM (
            SELECT r.exchange, r.pair, r.timestamp, r.price, {HOUR[dialect]} AS hour,
                   FIRST_VALUE(r.price) OVER by_time AS ref,
                   LAST_VALUE(r.price) OVER (by_time ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
                       AS last_p
            FROM {RAW} r
            WHERE {_scope("r", market)}r.timestamp >= :since
            WINDOW by_time AS (PARTITION BY r.exchange, r.pair, {HOUR[dialect]} ORDER BY r.timestamp)
        ) ordered
    ) centred
    GROUP BY exchange, pair, hour"""


def coarser_from(hours: str, dialect: str, bucket: str) -> str:
    """The two-hour, quarter-day or daily rows of the hourly rollup rows that the query `hours` selects, as the trigger
    merges them."""
    return f"WITH hourly AS ({hours}) {from_hours('hourly', bucket, COARSER[dialect][bucket])}"


def markets_from_hours(market: bool) -> str:
    """One row per series: its first and newest sample, from every hourly rollup (pruned history too)."""
    return f"""
    SELECT exchange, pair, first_at, last_at, last_price FROM (
        SELECT h.exchange, h.pair, MIN(h.first_at) OVER (PARTITION BY h.exchange, h.pair) AS first_at,
               h.last_at, h.last_price,
               ROW_NUMBER() OVER (PARTITION BY h.exchange, h.pair ORDER BY h.last_at DESC) AS newest
        FROM price_rollup_hourly h
        WHERE {_scope("h", market)}1 = 1
    ) ranked
    WHERE newest = 1"""


def pruned_before(connection: sa.Connection) -> datetime | None:
    value = connection.execute(sa.select(retention.c.pruned_before)).scalar()
    return value if isinstance(value, datetime) else None


def _parameters(connection: sa.Connection, market: tuple[str, str] | None) -> dict[str, object]:
    since = pruned_before(connection) or EARLIEST
    values: dict[str, object] = {"since": since}
    if market:
        values.update(exchange=market[0], pair=market[1])
    return values


def _text(sql: str) -> sa.TextClause:
    return sa.text(sql).bindparams(sa.bindparam("since", type_=UTCDateTime()))


def rebuild(connection: sa.Connection, market: tuple[str, str] | None = None) -> None:
    """Recompute every rollup at or after the prune mark (of one market, or all) and the markets list."""
    dialect = connection.dialect.name
    values = _parameters(connection, market)
    for table, bucket in LEVELS:
        connection.execute(_text(f"DELETE FROM {table} WHERE {_scope(table, bool(market))}{bucket} >= :since"),
                           values)
    expected_hours = hours_from_raw(dialect, bool(market))
    connection.execute(_text(f"INSERT INTO price_rollup_hourly (exchange, pair, hour, {COLUMNS}) "
                             f"SELECT exchange, pair, hour, {COLUMNS} FROM ({expected_hours}) x"), values)
    hours = f"SELECT * FROM price_rollup_hourly h WHERE {_scope('h', bool(market))}h.hour >= :since"
    for table, bucket in LEVELS[1:]:
        connection.execute(_text(f"INSERT INTO {table} (exchange, pair, {bucket}, {COLUMNS}) "
                                 f"SELECT exchange, pair, {bucket}, {COLUMNS} "
                                 f"FROM ({coarser_from(hours, dialect, bucket)}) x"), values)
    scope_m = _scope("markets", bool(market))
    connection.execute(sa.text(f"DELETE FROM markets WHERE {scope_m}1 = 1"), values)
    connection.execute(sa.text("INSERT INTO markets (exchange, pair, first_at, last_at, last_price) "
                               f"SELECT exchange, pair, first_at, last_at, last_price "
                               f"FROM ({markets_from_hours(bool(market))}) x"), values)


@dataclass(frozen=True)
class Mismatches:
    hourly: int
    two_hourly: int
    quarterly: int
    daily: int
    markets: int

    @property
    def total(self) -> int:
        return self.hourly + self.two_hourly + self.quarterly + self.daily + self.markets


def _differs(a: str, b: str) -> str:
    """Two rollup rows disagree: counts, times, extremes exactly; means and M2 beyond TOLERANCE."""
    def far(x: str, y: str, scale: str) -> str:
        return f"ABS(({x}) - ({y})) > {TOLERANCE} * ({scale})"

    mean_a, mean_b = f"{a}.ref_price + {a}.mean_offset", f"{b}.ref_price + {b}.mean_offset"
    return (f"({a}.samples <> {b}.samples OR {a}.min_price <> {b}.min_price OR {a}.max_price <> {b}.max_price "
            f"OR {a}.first_at <> {b}.first_at OR {a}.last_at <> {b}.last_at OR {a}.first_price <> {b}.first_price "
            f"OR {a}.last_price <> {b}.last_price OR {far(mean_a, mean_b, f'{a}.max_price')} "
            f"OR {far(f'{a}.m2', f'{b}.m2', f'{b}.m2 + {a}.max_price * {a}.max_price * 1e-12')})")


def _mismatch_counts(table: str, bucket: str, expected: str, market: bool) -> str:
    """Two counts, as one SQL expression: the rows of `expected` missing from `table` or wrong in it, and
    the rows of `table` that `expected` lacks."""
    key = f"e.exchange = a.exchange AND e.pair = a.pair AND e.{bucket} = a.{bucket}"
    missing_or_wrong = (f"SELECT COUNT(*) FROM ({expected}) e LEFT JOIN {table} a ON {key} "
                        f"WHERE a.exchange IS NULL OR {_differs('a', 'e')}")
    # the rows of `table` that `expected` lacks: all of them but those it has (each side's keys are unique),
    # so that every join looks up `table`'s key (a join that probes a subquery is a nested loop on SQLite)
    stored = f"SELECT COUNT(*) FROM {table} a WHERE {_scope('a', market)}a.{bucket} >= :since"
    matched = f"SELECT COUNT(*) FROM ({expected}) e JOIN {table} a ON {key}"
    return f"({missing_or_wrong}) + ({stored}) - ({matched})"


# computed once, however often the statement reads it (SQLite 3.35 has the keyword; older ones may compute
# it again for each reader, which is slower, never wrong)
_MATERIALIZED = "MATERIALIZED" if sqlite3.sqlite_version_info >= (3, 35) else ""


def verify(connection: sa.Connection, market: tuple[str, str] | None = None) -> Mismatches:
    """How many rollup and markets rows (of one market, or all) differ from what the raw rows say
    (missing, extra or wrong). One statement: the hourly rows the raw rows make are computed once (a CTE
    read four times is computed once) and every level is compared with them."""
    dialect = connection.dialect.name
    one = market is not None
    values = _parameters(connection, market)
    if one and dialect == "postgresql":
        # one market's expected rows are few, and the planner then nests a loop that computes them again
        # for every rollup row it joins (minutes for a year of one pair); hash joins take a fraction of that
        connection.execute(sa.text("SET LOCAL enable_nestloop = off"))
    hours = "SELECT * FROM expected_hours"
    levels = [_mismatch_counts("price_rollup_hourly", "hour", hours, one)] + [
        _mismatch_counts(table, bucket, coarser_from(hours, dialect, bucket), one) for table, bucket in LEVELS[1:]]
    counts = connection.execute(_text(
        f"WITH expected_hours AS {_MATERIALIZED} ({hours_from_raw(dialect, one)}) SELECT "
        + ", ".join(f"{level} AS level_{index}" for index, level in enumerate(levels))), values).one()
    hourly, two_hourly, quarterly, daily = (int(count) for count in counts)
    key = "e.exchange = a.exchange AND e.pair = a.pair"
    wrong = "e.first_at <> a.first_at OR e.last_at <> a.last_at OR e.last_price <> a.last_price"
    markets = int(connection.execute(sa.text(
        f"SELECT COUNT(*) FROM ({markets_from_hours(one)}) e LEFT JOIN markets a ON {key} "
        f"WHERE a.exchange IS NULL OR {wrong}"), values).scalar_one()) + int(connection.execute(sa.text(
            f"SELECT COUNT(*) FROM markets a LEFT JOIN ({markets_from_hours(one)}) e ON {key} "
            f"WHERE {_scope('a', one)}e.exchange IS NULL"), values).scalar_one())
    return Mismatches(hourly, two_hourly, quarterly, daily, markets)
