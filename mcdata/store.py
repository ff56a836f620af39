"""The SQL of the jobs and the read side, beside the schema it uses: raw prices (insert, prune, spans), the
venues' listings, the `runs` ledger, and the metric snapshots and series that `show` and `status` read."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import sqlalchemy as sa

from mcdata import partitions
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


@dataclass(frozen=True)
class _Bulk:
    """A table that rows are inserted into in bulk, skipping those whose key is stored: its columns (in the
    row dataclass's order), their COPY types, its key and its time columns (SQLite binds them as text)."""

    table: str
    columns: tuple[str, ...]
    copy_types: tuple[str, ...]
    key: tuple[str, ...]
    times: tuple[str, ...]

    @property
    def values_of(self) -> Callable[[Any], tuple[Any, ...]]:
        return operator.attrgetter(*self.columns)

    def sqlite_insert_new(self) -> sa.TextClause:
        """The table's guards refuse a stored key before ON CONFLICT could skip it (INSERT OR REPLACE would
        delete the stored row, bypassing the rollups): stored rows are skipped by the statement itself."""
        return sa.text(
            f"INSERT INTO {self.table} ({', '.join(self.columns)}) SELECT {', '.join(':' + c for c in self.columns)} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.table} WHERE {' AND '.join(f'{c} = :{c}' for c in self.key)})"
        ).bindparams(*(sa.bindparam(column, type_=UTCDateTime()) for column in self.times))


PRICE_COLUMNS = ("exchange", "pair", "timestamp", "price", "volume", "kind", "fetched_at")
RAW_BULK = _Bulk(raw_prices.name, PRICE_COLUMNS,
                 ("text", "text", "timestamptz", "float8", "float8", "text", "timestamptz"),
                 ("exchange", "pair", "timestamp"), ("timestamp", "fetched_at"))
CANDLE_BULK = _Bulk(candles.name, tuple(column.name for column in candles.columns),
                    ("text", "text", "int4", "timestamptz", *["float8"] * 6, "int4", "timestamptz"),
                    ("exchange", "pair", "interval_s", "open_time"), ("open_time", "fetched_at"))
_SQLITE_INSERT_NEW = {bulk.table: bulk.sqlite_insert_new() for bulk in (RAW_BULK, CANDLE_BULK)}


def insert_prices(connection: sa.Connection, rows: Iterable[PriceRow]) -> int:
    """Insert raw prices in bulk, skipping those whose (exchange, pair, timestamp) is stored; the rows added."""
    return _insert_new(connection, RAW_BULK, rows)


def insert_candles(connection: sa.Connection, rows: Iterable[CandleRow]) -> int:
    """Insert whole candles, skipping those stored already (a candle is the venue's record: the first one
    stored stays; importing or fetching twice changes nothing); the candles added."""
    return _insert_new(connection, CANDLE_BULK, rows)


def _insert_new(connection: sa.Connection, bulk: _Bulk, rows: Iterable[Any]) -> int:
    """PostgreSQL: COPY (binary) straight into the table, which is right whenever no row is stored yet (a
    backfill, the hourly sample); should one be, that COPY fails as a whole and the rows go through a
    staging table that filters them. SQLite: executemany. Either way inside the caller's transaction."""
    if connection.dialect.name == "postgresql":
        return _copy_insert(connection, bulk, list(rows))
    inserted = 0
    for chunk in chunked(rows, 20_000):
        values = [dict(zip(bulk.columns, bulk.values_of(row), strict=True)) for row in chunk]
        inserted += int(connection.execute(_SQLITE_INSERT_NEW[bulk.table], values).rowcount)
    return inserted


def _copy(cursor: Any, table: str, bulk: _Bulk, rows: list[Any]) -> int:
    values_of = bulk.values_of
    with cursor.copy(f"COPY {table} ({', '.join(bulk.columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(bulk.copy_types))
        for row in rows:  # aware datetimes of any offset are sent as the same instant
            copy.write_row(values_of(row))
    return int(cursor.rowcount)


def _copy_insert(connection: sa.Connection, bulk: _Bulk, rows: list[Any]) -> int:
    import psycopg  # here: the SQLite default never loads the driver

    if not rows:
        return 0
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        return _copy_or_stage(connection, cursor, bulk, rows)
    except psycopg.Error as error:  # as SQLAlchemy raises it everywhere else (IntegrityError, OperationalError...)
        raise sa.exc.DBAPIError.instance("COPY", None, error, psycopg.Error) from error
    finally:
        cursor.close()


def _copy_or_stage(connection: sa.Connection, cursor: Any, bulk: _Bulk, rows: list[Any]) -> int:
    import psycopg

    try:
        with connection.begin_nested():  # a savepoint: a failed COPY leaves nothing behind
            return _copy(cursor, bulk.table, bulk, rows)
    except psycopg.errors.UniqueViolation:
        pass  # some row is stored already (or twice in the batch): filter them
    staging = f"mcdata_staging_{bulk.table}"
    cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} (LIKE {bulk.table} INCLUDING DEFAULTS) "
                   "ON COMMIT DELETE ROWS")
    _copy(cursor, staging, bulk, rows)
    # Rows already stored are filtered out by an anti-join and duplicates in the batch by DISTINCT ON:
    # a plain sorted insert is ~1.7x faster than ON CONFLICT's speculative insertion, and the writer
    # lock keeps other mcdata writers out.
    columns, key = ", ".join(bulk.columns), ", ".join(bulk.key)
    cursor.execute(
        f"INSERT INTO {bulk.table} ({columns}) SELECT DISTINCT ON ({key}) {columns} FROM {staging} s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {bulk.table} t WHERE {' AND '.join(f't.{c} = s.{c}' for c in bulk.key)}) "
        f"ORDER BY {key}"
    )
    inserted = int(cursor.rowcount)
    cursor.execute(f"TRUNCATE {staging}")
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
    dropped = partitions.drop_before(connection, cut)  # PostgreSQL: whole months go at once
    result = connection.execute(raw_prices.delete().where(raw_prices.c.timestamp < cut))
    return dropped + int(result.rowcount)


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


# How `show` orders the overview: by rank within each venue (the default), or by a metric, largest first
# (rows without it last), or by name.
METRIC_SORTS: dict[str, tuple[sa.ColumnElement[Any], ...]] = {
    "rank": (metrics.c.exchange, metrics.c.std_rank.is_(None), metrics.c.std_rank, metrics.c.pair),
    "volatility": (metrics.c.volatility_24h.is_(None), metrics.c.volatility_24h.desc(), metrics.c.exchange,
                   metrics.c.pair),
    "change": (metrics.c.change_24h_pct.is_(None), metrics.c.change_24h_pct.desc(), metrics.c.exchange,
               metrics.c.pair),
    "stddev": (metrics.c.stddev_24h.is_(None), metrics.c.stddev_24h.desc(), metrics.c.exchange, metrics.c.pair),
    "price": (metrics.c.latest_price.desc(), metrics.c.exchange, metrics.c.pair),
    "pair": (metrics.c.pair, metrics.c.exchange),
}


def _snapshot(now: datetime, exchange: str | None, pairs: Sequence[str] | None) -> list[sa.ColumnElement[bool]]:
    """The rows of the newest snapshot not after `now` (of one venue, or all; of some pairs, or all)."""
    venue = _of_venue(metrics, exchange)
    newest = sa.select(sa.func.max(metrics.c.timestamp)).where(metrics.c.timestamp <= now, *venue).scalar_subquery()
    chosen = [metrics.c.pair.in_(list(pairs))] if pairs else []
    return [metrics.c.timestamp == newest, *venue, *chosen]


def latest_metrics(connection: sa.Connection, now: datetime, exchange: str | None = None, *,
                   pairs: Sequence[str] | None = None, sort: str = "rank", limit: int | None = None) -> list[MetricRow]:
    """Every pair's metrics (of one venue or all, of some pairs or all) at the newest as-of time not after
    `now`, in the `sort` order (METRIC_SORTS), the first `limit` of them."""
    query = sa.select(metrics).where(*_snapshot(now, exchange, pairs)).order_by(*METRIC_SORTS[sort]).limit(limit)
    return _metric_dicts(connection.execute(query))


def stream_latest_metrics(connection: sa.Connection, now: datetime, exchange: str | None = None, *,
                          pairs: Sequence[str] | None = None, sort: str = "rank",
                          size: int = 2_000) -> Iterator[MetricRow]:
    """latest_metrics read through a server-side cursor, `size` rows at a time: memory stays flat."""
    query = sa.select(metrics).where(*_snapshot(now, exchange, pairs)).order_by(*METRIC_SORTS[sort])
    for row in connection.execution_options(stream_results=True, yield_per=size).execute(query):
        yield cast(MetricRow, dict(row._mapping))


def count_latest_metrics(connection: sa.Connection, now: datetime, exchange: str | None = None, *,
                         pairs: Sequence[str] | None = None) -> int:
    return int(connection.execute(sa.select(sa.func.count()).select_from(metrics).where(
        *_snapshot(now, exchange, pairs))).scalar_one())


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
    """Prices of the given (exchange, pair) markets with since < timestamp <= until, oldest first: one
    query per venue, each a range of the key (venue, pair, time) per pair (a pair list without its venue
    read every venue's rows of those pairs, the whole table at 20,000 markets)."""
    series: dict[tuple[str, str], list[tuple[datetime, float]]] = {market: [] for market in markets}
    query = (
        sa.select(raw_prices.c.exchange, raw_prices.c.pair, raw_prices.c.timestamp, raw_prices.c.price)
        .where(raw_prices.c.exchange == sa.bindparam("exchange"),
               raw_prices.c.pair.in_(sa.bindparam("pairs", expanding=True)),
               raw_prices.c.timestamp > since, raw_prices.c.timestamp <= until)
        .order_by(raw_prices.c.exchange, raw_prices.c.pair, raw_prices.c.timestamp)
    )
    by_venue: dict[str, list[str]] = {}
    for exchange, pair in markets:
        by_venue.setdefault(exchange, []).append(pair)
    for exchange, pairs in sorted(by_venue.items()):
        for chunk in chunked(sorted(set(pairs))):
            for row in connection.execute(query, {"exchange": exchange, "pairs": chunk}):
                series[(row.exchange, row.pair)].append((row.timestamp, row.price))
    return series


# -- export -----------------------------------------------------------------------------------------
Market = tuple[str, str]


def export_markets(connection: sa.Connection, exchange: str | None, pairs: Sequence[str] | None) -> list[Market]:
    """The (exchange, pair) markets with stored prices or candles, of one venue or all, of the given pairs
    or all, in order. Hourly candles always come with raw closes, so the markets list has their markets;
    other intervals' candles (an archive's daily file) are looked for in the candles table."""
    found: set[Market] = set()
    for table, extra in ((markets, []), (candles, [candles.c.interval_s != 3600])):
        query = sa.select(table.c.exchange, table.c.pair).distinct().where(*_of_venue(table, exchange), *extra)
        if pairs is None:
            found |= {(row.exchange, row.pair) for row in connection.execute(query)}
            continue
        chosen = query.where(table.c.pair.in_(sa.bindparam("pairs", expanding=True)))
        found |= {(row.exchange, row.pair)
                  for chunk in chunked(pairs) for row in connection.execute(chosen, {"pairs": chunk})}
    return sorted(found)


def epoch_ms(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[int]:
    """A stored instant as integer milliseconds since the epoch, computed by the database: a row of
    numbers costs the export no datetime objects (SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff', UTC)."""
    if dialect == "sqlite":
        return (sa.cast(sa.func.strftime("%s", column), sa.BigInteger) * 1000
                + sa.cast(sa.func.substr(column, 21, 3), sa.BigInteger))
    return sa.cast(sa.func.round(sa.extract("epoch", column) * 1000), sa.BigInteger)


def _streamed(connection: sa.Connection, query: sa.Select[Any], chosen: Sequence[Market], every: bool,
              size: int) -> Iterator[tuple[Market, list[tuple[Any, ...]]]]:
    """Rows of `query` (exchange and pair first, ordered by them and time) in chunks of at most `size` rows
    of one market each, for the `chosen` markets (all of them at once when `every`), read through a
    server-side cursor, as plain tuples."""
    streaming = connection.execution_options(stream_results=True, yield_per=size)
    batches = [list(chosen)] if every else list(chunked(chosen, MAX_BOUND // 2))
    for batch in batches:
        selected = query if every else query.where(
            sa.tuple_(query.selected_columns.exchange, query.selected_columns.pair).in_(batch))
        for partition in streaming.execute(selected).partitions():
            for market, rows in itertools.groupby(partition, key=operator.itemgetter(0, 1)):
                yield market, [tuple(row) for row in rows]


def stream_candles(connection: sa.Connection, chosen: Sequence[Market] | str | None, interval_s: int,
                   since: datetime | None, until: datetime | None,
                   size: int) -> Iterator[tuple[Market, list[tuple[Any, ...]]]]:
    """The chosen markets' candles of one interval with since <= open_time < until, as export rows
    (exchange, pair, open_ms, close_ms, open, high, low, close, vwap, volume, trades), times in epoch
    milliseconds; `chosen` is a list of markets, or a venue's name or None for all of its, or every, market."""
    every = chosen is None or isinstance(chosen, str)
    c = candles.c
    opened = epoch_ms(c.open_time, connection.dialect.name)
    query = sa.select(c.exchange, c.pair, opened.label("open_ms"), (opened + interval_s * 1000).label("close_ms"),
                      c.open, c.high, c.low, c.close, c.vwap, c.volume, c.trades).where(
        c.interval_s == interval_s, *_of_venue(candles, chosen if isinstance(chosen, str) else None)).order_by(
        c.exchange, c.pair, c.open_time)
    if since is not None:
        query = query.where(c.open_time >= since)
    if until is not None:
        query = query.where(c.open_time < until)
    return _streamed(connection, query, [] if every else chosen, every, size)  # type: ignore[arg-type]


def stream_closes(connection: sa.Connection, chosen: Sequence[Market], since: datetime | None,
                  until: datetime | None, size: int) -> Iterator[tuple[Market, list[tuple[Any, ...]]]]:
    """The chosen markets' raw prices with since <= timestamp < until, as export rows without an open."""
    r = raw_prices.c
    nothing = sa.null()
    query = sa.select(r.exchange, r.pair, nothing.label("open_ms"),
                      epoch_ms(r.timestamp, connection.dialect.name).label("close_ms"), nothing.label("open"),
                      nothing.label("high"), nothing.label("low"), r.price, nothing.label("vwap"), r.volume,
                      nothing.label("trades")).order_by(r.exchange, r.pair, r.timestamp)
    if since is not None:
        query = query.where(r.timestamp >= since)
    if until is not None:
        query = query.where(r.timestamp < until)
    return _streamed(connection, query, chosen, False, size)
