"""The SQL of the jobs and the read side, beside the schema it uses: raw prices (insert, prune, spans), the
venues' listings, the `runs` ledger, and the metric snapshots and series that `show` and `status` read."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import sqlalchemy as sa

from mcdata.errors import RunStatus
from mcdata.schema import UTCDateTime, candles, delisted_markets, markets, metrics, raw_prices, retention, runs
from mcdata.views import MetricRow, RunRow

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PriceRow:
    exchange: str
    pair: str
    timestamp: datetime
    price: float
    volume: float | None
    kind: str  # ticker | candle
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class CandleRow:
    exchange: str
    pair: str
    interval_s: int
    open_time: datetime
    open: float
    high: float
    low: float
    close: float
    vwap: float | None
    volume: float | None
    trades: int | None
    fetched_at: datetime


CANDLE_COLUMNS = tuple(column.name for column in candles.columns)


def insert_candles(connection: sa.Connection, rows: Iterable[CandleRow]) -> int:
    """Insert whole candles, skipping those stored already (a candle is the venue's record: the first one
    stored stays; importing or fetching twice changes nothing); returns the candles added."""
    if connection.dialect.name == "postgresql":
        return _stage_candles(connection, list(rows))
    return _sqlite_insert_new(connection, _SQLITE_INSERT_NEW_CANDLE, CANDLE_COLUMNS, rows)


def _sqlite_insert_new(connection: sa.Connection, statement: sa.TextClause, columns: Sequence[str],
                       rows: Iterable[Any]) -> int:
    """SQLite: executemany of an INSERT that skips stored keys, in chunks; the rows added."""
    inserted = 0
    for chunk in chunked(rows, 20_000):
        values = [{column: getattr(row, column) for column in columns} for row in chunk]
        inserted += int(connection.execute(statement, values).rowcount)
    return inserted


_CANDLE_COPY_TYPES = ["text", "text", "int4", "timestamptz", *["float8"] * 6, "int4", "timestamptz"]


def _stage_candles(connection: sa.Connection, rows: list[CandleRow]) -> int:
    """PostgreSQL: COPY (binary) into a staging table, then one INSERT of the new ones (a year of hourly
    candles: an executemany with ON CONFLICT took 2.4 s, this a fraction of it)."""
    if not rows:
        return 0
    columns = ", ".join(CANDLE_COLUMNS)
    key = "exchange, pair, interval_s, open_time"
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS mcdata_candle_staging (LIKE candles INCLUDING DEFAULTS) "
                       "ON COMMIT DELETE ROWS")
        with cursor.copy(f"COPY mcdata_candle_staging ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_CANDLE_COPY_TYPES)
            for row in rows:
                copy.write_row(tuple(getattr(row, column) for column in CANDLE_COLUMNS))
        cursor.execute(f"INSERT INTO candles ({columns}) SELECT DISTINCT ON ({key}) {columns} "
                       "FROM mcdata_candle_staging s WHERE NOT EXISTS (SELECT 1 FROM candles c WHERE "
                       "c.exchange = s.exchange AND c.pair = s.pair AND c.interval_s = s.interval_s "
                       f"AND c.open_time = s.open_time) ORDER BY {key}")
        inserted = int(cursor.rowcount)
        cursor.execute("TRUNCATE mcdata_candle_staging")
        return inserted
    finally:
        cursor.close()


# SQLite: the candles' guard refuses a stored key before ON CONFLICT could skip it (INSERT OR REPLACE would
# delete the stored candle): stored ones are skipped by the statement itself.
_SQLITE_INSERT_NEW_CANDLE = sa.text(
    f"INSERT INTO candles ({', '.join(CANDLE_COLUMNS)}) SELECT {', '.join(':' + c for c in CANDLE_COLUMNS)} "
    "WHERE NOT EXISTS (SELECT 1 FROM candles WHERE exchange = :exchange AND pair = :pair "
    "AND interval_s = :interval_s AND open_time = :open_time)"
).bindparams(sa.bindparam("open_time", type_=UTCDateTime()), sa.bindparam("fetched_at", type_=UTCDateTime()))


# Values bound in one statement at most: PostgreSQL takes 65,535 parameters, SQLite 32,766, and a venue
# can list more pairs than that (`--pairs all`).
MAX_BOUND = 10_000


def chunked(values: Iterable[T], size: int = MAX_BOUND) -> Iterator[list[T]]:
    iterator = iter(values)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def stored_spans(connection: sa.Connection, exchange: str,
                 pairs: Sequence[str]) -> dict[str, tuple[datetime, datetime]]:
    """The oldest and newest stored sample time of each pair that has one (from the trigger-kept markets list)."""
    query = sa.select(markets.c.pair, markets.c.first_at, markets.c.last_at).where(
        markets.c.exchange == exchange, markets.c.pair.in_(sa.bindparam("pairs", expanding=True))
    )
    return {row.pair: (row.first_at, row.last_at)
            for chunk in chunked(pairs) for row in connection.execute(query, {"pairs": chunk})}


PRICE_COLUMNS = ("exchange", "pair", "timestamp", "price", "volume", "kind", "fetched_at")


def insert_prices(connection: sa.Connection, rows: Iterable[PriceRow]) -> int:
    """Insert in bulk, skipping rows whose (exchange, pair, timestamp) is stored; returns rows added.

    PostgreSQL: COPY (binary) straight into the table, which is right whenever no row is stored yet (a
    backfill, the hourly sample); should one be, that COPY fails as a whole and the rows go through a
    staging table that filters them. SQLite: executemany. Either way inside the caller's transaction.
    """
    if connection.dialect.name == "postgresql":
        return _copy_insert(connection, list(rows))
    return _sqlite_insert_new(connection, _SQLITE_INSERT_NEW, PRICE_COLUMNS, rows)


# The raw table refuses a row whose key is stored already (its guards, mcdata.triggers: INSERT OR REPLACE would bypass
# the rollups), so stored rows are skipped here rather than by ON CONFLICT.
_SQLITE_INSERT_NEW = sa.text(
    f"INSERT INTO raw_crypto_pair_price_history ({', '.join(PRICE_COLUMNS)}) "
    f"SELECT {', '.join(':' + c for c in PRICE_COLUMNS)} "
    "WHERE NOT EXISTS (SELECT 1 FROM raw_crypto_pair_price_history "
    "WHERE exchange = :exchange AND pair = :pair AND timestamp = :timestamp)"
).bindparams(sa.bindparam("timestamp", type_=UTCDateTime()), sa.bindparam("fetched_at", type_=UTCDateTime()))


_COPY_TYPES = ["text", "text", "timestamptz", "float8", "float8", "text", "timestamptz"]


def _copy(cursor: Any, table: str, rows: list[PriceRow]) -> int:
    with cursor.copy(f"COPY {table} ({', '.join(PRICE_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_COPY_TYPES)
        for row in rows:  # aware datetimes of any offset are sent as the same instant
            copy.write_row((row.exchange, row.pair, row.timestamp, row.price, row.volume, row.kind, row.fetched_at))
    return int(cursor.rowcount)


def _copy_insert(connection: sa.Connection, rows: list[PriceRow]) -> int:
    import psycopg  # here: the SQLite default never loads the driver

    if not rows:
        return 0
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        return _copy_or_stage(connection, cursor, rows)
    except psycopg.Error as error:  # as SQLAlchemy raises it everywhere else (IntegrityError, OperationalError...)
        raise sa.exc.DBAPIError.instance("COPY", None, error, psycopg.Error) from error
    finally:
        cursor.close()


def _copy_or_stage(connection: sa.Connection, cursor: Any, rows: list[PriceRow]) -> int:
    import psycopg

    try:
        with connection.begin_nested():  # a savepoint: a failed COPY leaves nothing behind
            return _copy(cursor, "raw_crypto_pair_price_history", rows)
    except psycopg.errors.UniqueViolation:
        pass  # some row is stored already (or twice in the batch): filter them
    cursor.execute(
        "CREATE TEMPORARY TABLE IF NOT EXISTS mcdata_staging "
        "(LIKE raw_crypto_pair_price_history INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    _copy(cursor, "mcdata_staging", rows)
    # Rows already stored are filtered out by an anti-join and duplicates in the batch by DISTINCT ON:
    # a plain sorted insert is ~1.7x faster than ON CONFLICT's speculative insertion, and the writer
    # lock keeps other mcdata writers out.
    columns = ", ".join(PRICE_COLUMNS)
    cursor.execute(
        f"INSERT INTO raw_crypto_pair_price_history ({columns}) "
        f"SELECT DISTINCT ON (exchange, pair, timestamp) {columns} FROM mcdata_staging s "
        "WHERE NOT EXISTS (SELECT 1 FROM raw_crypto_pair_price_history r "
        "WHERE r.exchange = s.exchange AND r.pair = s.pair AND r.timestamp = s.timestamp) "
        "ORDER BY exchange, pair, timestamp"
    )
    inserted = int(cursor.rowcount)
    cursor.execute("TRUNCATE mcdata_staging")
    return max(inserted, 0)


def prune(connection: sa.Connection, older_than: datetime) -> int:
    """Delete raw samples before the UTC midnight at or before the cut; rollups and markets keep their history.

    The pruned mark is written first, in the same transaction: the raw table lets deletes below it
    through, and rollups below it are history (whole days: no rollup is left half raw, half pruned).
    A prune with nothing to delete leaves the mark where it is: the mark refuses every older sample, and
    moving it for no row would refuse the history a new pair may still backfill.
    """
    cut = older_than.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    older = sa.select(raw_prices.c.timestamp).where(raw_prices.c.timestamp < cut).limit(1)
    if connection.execute(older).first() is None:
        return 0
    current = connection.execute(sa.select(retention.c.pruned_before)).scalar()
    if current is None:
        connection.execute(retention.insert().values(id=1, pruned_before=cut))
    elif cut > current:
        connection.execute(retention.update().values(pruned_before=cut))
    result = connection.execute(raw_prices.delete().where(raw_prices.c.timestamp < cut))
    return int(result.rowcount)


def record_listing(connection: sa.Connection, exchange: str, gone: Iterable[str], stored: Iterable[str],
                   now: datetime) -> None:
    """The venue's list lacks `gone`: those with stored prices are delisted from now (if not already);
    the markets just `stored` are listed again."""
    for chunk in chunked(stored):
        connection.execute(delisted_markets.delete().where(delisted_markets.c.exchange == exchange,
                                                           delisted_markets.c.pair.in_(chunk)))
    for chunk in chunked(gone):
        known = set(connection.execute(sa.select(delisted_markets.c.pair).where(
            delisted_markets.c.exchange == exchange, delisted_markets.c.pair.in_(chunk))).scalars())
        new = [pair for pair in stored_spans(connection, exchange, chunk) if pair not in known]
        if new:
            connection.execute(delisted_markets.insert(), [{"exchange": exchange, "pair": pair, "since": now}
                                                          for pair in new])


def delisted(connection: sa.Connection, exchange: str) -> dict[str, datetime]:
    """The venue's markets its list says are gone, and since when."""
    query = sa.select(delisted_markets.c.pair, delisted_markets.c.since).where(delisted_markets.c.exchange == exchange)
    return {row.pair: row.since for row in connection.execute(query)}


def start_run(connection: sa.Connection, command: str, source: str | None, started_at: datetime,
              source_url: str | None = None) -> int:
    statement = runs.insert().values(command=command, source=source, started_at=started_at,
                                     status=RunStatus.RUNNING.value, source_url=source_url)
    return int(connection.execute(statement.returning(runs.c.id)).scalar_one())


def last_source(connection: sa.Connection, source: str) -> tuple[int, str] | None:
    """The id and URL of the newest finished run of `source` that stored prices and recorded its URL."""
    row = connection.execute(sa.select(runs.c.id, runs.c.source_url).where(
        runs.c.source == source, runs.c.pairs_stored > 0, runs.c.source_url.is_not(None),
        runs.c.finished_at.is_not(None)).order_by(runs.c.id.desc()).limit(1)).first()
    return (int(row.id), str(row.source_url)) if row else None


def close_abandoned_runs(connection: sa.Connection, now: datetime) -> int:
    """Mark `running` rows as interrupted: called under the writer lock, so their processes are gone."""
    statement = runs.update().where(runs.c.status == RunStatus.RUNNING.value).values(
        status=RunStatus.INTERRUPTED.value, finished_at=now,
        error_summary="the process ended without recording its outcome (killed, or its database connection lost)")
    return int(connection.execute(statement).rowcount)


def delete_run(connection: sa.Connection, run_id: int) -> None:
    connection.execute(runs.delete().where(runs.c.id == run_id))


def finish_run(connection: sa.Connection, run_id: int, **fields: Any) -> None:
    connection.execute(runs.update().where(runs.c.id == run_id).values(**fields))


def last_run(connection: sa.Connection) -> RunRow | None:
    row = connection.execute(sa.select(runs).order_by(runs.c.id.desc()).limit(1)).first()
    return cast(RunRow, dict(row._mapping)) if row else None


def newest_run(connection: sa.Connection, commands: Sequence[str], *, status: str | None = None,
               finished: bool = True, since: datetime | None = None) -> RunRow | None:
    """The newest `runs` row of these commands (finished ones, of one status, started at or after `since`)."""
    query = sa.select(runs).where(runs.c.command.in_(commands))
    if finished:
        query = query.where(runs.c.finished_at.is_not(None))
    if status is not None:
        query = query.where(runs.c.status == status)
    if since is not None:
        query = query.where(runs.c.started_at >= since)
    row = connection.execute(query.order_by(runs.c.id.desc()).limit(1)).first()
    return cast(RunRow, dict(row._mapping)) if row else None


def _of_venue(table: sa.Table, exchange: str | None) -> list[sa.ColumnElement[bool]]:
    """The condition that keeps one venue's rows, or none for every venue."""
    return [] if exchange is None else [table.c.exchange == exchange]


def newest_samples(connection: sa.Connection, exchange: str | None = None) -> dict[tuple[str, str], datetime]:
    """Each series' newest sample time (from `markets`, which the triggers keep), of one venue or all."""
    query = sa.select(markets.c.exchange, markets.c.pair, markets.c.last_at).where(*_of_venue(markets, exchange))
    return {(r.exchange, r.pair): r.last_at for r in connection.execute(query)}


def _metric_dicts(result: sa.CursorResult[Any]) -> list[MetricRow]:
    return [cast(MetricRow, dict(row._mapping)) for row in result]


def latest_metrics(connection: sa.Connection, now: datetime, exchange: str | None = None) -> list[MetricRow]:
    """Every pair's metrics (of one venue or all) at the newest as-of time not after `now`, ranked within
    each venue (unranked pairs last)."""
    venue = _of_venue(metrics, exchange)
    newest = sa.select(sa.func.max(metrics.c.timestamp)).where(metrics.c.timestamp <= now, *venue).scalar_subquery()
    query = (
        sa.select(metrics)
        .where(metrics.c.timestamp == newest, *venue)
        .order_by(metrics.c.exchange, metrics.c.std_rank.is_(None), metrics.c.std_rank, metrics.c.pair)
    )
    return _metric_dicts(connection.execute(query))


def metric_history(connection: sa.Connection, exchange: str, pair: str, limit: int,
                   now: datetime) -> list[MetricRow]:
    """A pair's metric rows not after `now`, newest first.

    The table is keyed by time: this walks the snapshot times from the newest down, each found by the key
    (a recursive query), and looks the pair up in each, so it costs one lookup per snapshot however many
    markets each holds."""
    snapshots = sa.select(sa.func.max(metrics.c.timestamp).label("at")).where(metrics.c.timestamp <= now) \
        .cte("snapshots", recursive=True)
    earlier = sa.select(sa.func.max(metrics.c.timestamp)).where(metrics.c.timestamp < snapshots.c.at)
    snapshots = snapshots.union_all(sa.select(earlier.scalar_subquery()).where(snapshots.c.at.is_not(None)))
    query = (
        sa.select(metrics)
        .join(snapshots, metrics.c.timestamp == snapshots.c.at)
        .where(metrics.c.exchange == exchange, metrics.c.pair == pair)
        .order_by(metrics.c.timestamp.desc())
        .limit(limit)
    )
    return _metric_dicts(connection.execute(query))


def delete_metrics(connection: sa.Connection, as_of: datetime) -> int:
    """Delete the metric snapshot of one as-of time; returns the rows deleted."""
    return int(connection.execute(metrics.delete().where(metrics.c.timestamp == as_of)).rowcount)


def ranked_counts(connection: sa.Connection, as_of: datetime, exchange: str | None = None) -> dict[str, int]:
    """How many pairs of each venue (or of one) have a std_rank at that as-of time (the N of `k/N`)."""
    venue = _of_venue(metrics, exchange)
    query = (sa.select(metrics.c.exchange, sa.func.count(metrics.c.std_rank))
             .where(metrics.c.timestamp == as_of, *venue).group_by(metrics.c.exchange))
    return {exchange: int(count) for exchange, count in connection.execute(query)}


def exchanges_with_pair(connection: sa.Connection, pair: str) -> list[str]:
    query = sa.select(metrics.c.exchange).where(metrics.c.pair == pair).distinct().order_by(metrics.c.exchange)
    return list(connection.execute(query).scalars())


def exchanges_with_metrics(connection: sa.Connection) -> list[str]:
    return list(connection.execute(sa.select(metrics.c.exchange).distinct().order_by(metrics.c.exchange)).scalars())


def pairs_with_metrics(connection: sa.Connection) -> list[str]:
    return list(connection.execute(sa.select(metrics.c.pair).distinct().order_by(metrics.c.pair)).scalars())


def price_series(
    connection: sa.Connection, markets: Sequence[tuple[str, str]], since: datetime, until: datetime
) -> dict[tuple[str, str], list[tuple[datetime, float]]]:
    """Prices of the given (exchange, pair) markets with since < timestamp <= until, oldest first."""
    series: dict[tuple[str, str], list[tuple[datetime, float]]] = {market: [] for market in markets}
    pairs = sorted({pair for _, pair in markets})
    if not pairs:
        return series
    query = (
        sa.select(raw_prices.c.exchange, raw_prices.c.pair, raw_prices.c.timestamp, raw_prices.c.price)
        .where(raw_prices.c.pair.in_(sa.bindparam("pairs", expanding=True)),
               raw_prices.c.timestamp > since, raw_prices.c.timestamp <= until)
        .order_by(raw_prices.c.exchange, raw_prices.c.pair, raw_prices.c.timestamp)
    )
    for chunk in chunked(pairs):
        for row in connection.execute(query, {"pairs": chunk}):
            if (row.exchange, row.pair) in series:
                series[(row.exchange, row.pair)].append((row.timestamp, row.price))
    return series
