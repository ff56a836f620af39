"""The supported ways to change stored prices: delete a range, or set one price. Each rebuilds the market's
rollups and recomputes the metric snapshots the change reaches, in the same transaction.

The raw table refuses UPDATE and DELETE (its guards: mcdata.triggers) unless `raw_price_edits` has a row; it has one
only inside these transactions, so nobody else ever sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from mcdata import metrics, rollups
from mcdata.clock import utc_now
from mcdata.schema import MAX_PRICE, MIN_PRICE, markets, price_rollup_hourly, raw_price_edits, raw_prices
from mcdata.schema import metrics as metric_rows
from mcdata.wording import plural

log = logging.getLogger("mcdata")

# A price at time t is read by the 7-day window of every as-of time up to t + 7d, and as the 24-hour
# reference (p0) a day later still.
REACH = metrics.WEEK + metrics.DAY


@contextmanager
def _permitted(connection: sa.Connection, reason: str) -> Iterator[None]:
    connection.execute(raw_price_edits.delete())
    connection.execute(raw_price_edits.insert().values(id=1, reason=reason))
    yield
    connection.execute(raw_price_edits.delete())


def _market(exchange: str, pair: str) -> sa.ColumnElement[bool]:
    return sa.and_(raw_prices.c.exchange == exchange, raw_prices.c.pair == pair)


def delete_prices(connection: sa.Connection, exchange: str, pair: str, since: datetime | None,
                  until: datetime | None, computed_at: datetime) -> tuple[int, Recomputed]:
    """Delete the market's prices with since <= timestamp <= until; returns (rows deleted, what it did to
    the snapshots)."""
    where = _market(exchange, pair)
    if since is not None:
        where = sa.and_(where, raw_prices.c.timestamp >= since)
    if until is not None:
        where = sa.and_(where, raw_prices.c.timestamp <= until)
    span = connection.execute(sa.select(sa.func.min(raw_prices.c.timestamp),
                                        sa.func.max(raw_prices.c.timestamp)).where(where)).one()
    if span[0] is None:
        return 0, Recomputed()
    with _permitted(connection, f"delete {exchange}:{pair}"):
        deleted = int(connection.execute(raw_prices.delete().where(where)).rowcount)
        rollups.rebuild(connection, (exchange, pair))
    return deleted, recompute_snapshots(connection, span[0], span[1], computed_at, (exchange, pair))


def set_price(connection: sa.Connection, exchange: str, pair: str, at: datetime, price: float,
              computed_at: datetime) -> tuple[bool, Recomputed]:
    """Store `price` for the market at `at`, replacing a stored one; returns (replaced, what it did to the
    snapshots)."""
    if not MIN_PRICE <= price <= MAX_PRICE:
        raise ValueError(f"a price must be from {MIN_PRICE:g} to {MAX_PRICE:g}")
    key = sa.and_(_market(exchange, pair), raw_prices.c.timestamp == at)
    stored = connection.execute(sa.select(raw_prices.c.kind).where(key)).scalar()
    with _permitted(connection, f"set {exchange}:{pair}"):
        connection.execute(raw_prices.delete().where(key))
        connection.execute(raw_prices.insert().values(
            exchange=exchange, pair=pair, timestamp=at, price=price, volume=None, kind=stored or "ticker",
            fetched_at=computed_at))
        rollups.rebuild(connection, (exchange, pair))
    return stored is not None, recompute_snapshots(connection, at, at, computed_at, (exchange, pair))


@dataclass
class Recomputed:
    """What a change of raw prices did to the stored metric snapshots."""

    recomputed: int = 0
    dropped: int = 0  # snapshots whose windows reach pruned prices: they cannot be made exact again
    updated: int = 0  # later snapshots in which only the market's latest price changed

    @property
    def total(self) -> int:
        return self.recomputed + self.dropped + self.updated


def recompute_snapshots(connection: sa.Connection, first: datetime, last: datetime, computed_at: datetime,
                        market: tuple[str, str] | None = None) -> Recomputed:
    """Bring every stored snapshot that reads a sample in [first, last] back to the raw rows.

    A sample is read by the windows of every as-of time up to REACH later: those snapshots are computed
    again, or dropped when their week reaches pruned prices (the rollups keep no raw edge hour: the numbers
    could not be exact), except that a market with no sample left only leaves them. A `market`'s sample is
    also its latest price in every later snapshot until its next sample: there only latest_price and
    latest_at change (the market has no 24-hour or 7-day samples so far from its last one), or its rows go
    when no sample is left.
    """
    result = Recomputed()
    pruned = rollups.pruned_before(connection)
    exact_from = pruned + metrics.WEEK if pruned else first
    window_end = last + REACH
    snapshots = list(connection.execute(
        sa.select(metric_rows.c.timestamp).distinct()
        .where(metric_rows.c.timestamp >= first, metric_rows.c.timestamp <= window_end)
        .order_by(metric_rows.c.timestamp)).scalars())
    gone = market is not None and connection.execute(sa.select(markets.c.pair).where(
        markets.c.exchange == market[0], markets.c.pair == market[1])).first() is None
    for as_of in snapshots:
        if as_of >= exact_from:
            metrics.compute(connection, as_of, computed_at=computed_at)
            result.recomputed += 1
        elif gone and market is not None:  # no sample left: out of the snapshot, the others ranked again
            metrics.remove_market(connection, as_of, *market)
            result.updated += 1
        else:
            connection.execute(metric_rows.delete().where(metric_rows.c.timestamp == as_of))
            result.dropped += 1
    if market is not None:
        result.updated += _later_latest(connection, market, window_end)
    return result


def _later_latest(connection: sa.Connection, market: tuple[str, str], after: datetime) -> int:
    """The market's latest price in the snapshots after `after` and before its next sample."""
    exchange, pair = market
    newest = connection.execute(sa.select(raw_prices.c.timestamp, raw_prices.c.price)
                                .where(_market(exchange, pair), raw_prices.c.timestamp <= after)
                                .order_by(raw_prices.c.timestamp.desc()).limit(1)).first()
    following = connection.execute(sa.select(sa.func.min(raw_prices.c.timestamp))
                                   .where(_market(exchange, pair), raw_prices.c.timestamp > after)).scalar()
    rows = sa.and_(metric_rows.c.exchange == exchange, metric_rows.c.pair == pair, metric_rows.c.timestamp > after,
                   *([metric_rows.c.timestamp < following] if following is not None else []))
    if newest is None:  # pruned: the newest hour of its history
        hourly = price_rollup_hourly.c
        newest = connection.execute(sa.select(hourly.last_at, hourly.last_price).where(
            hourly.exchange == exchange, hourly.pair == pair, hourly.last_at <= after)
            .order_by(hourly.hour.desc()).limit(1)).first()
    if newest is None:
        return int(connection.execute(metric_rows.delete().where(rows)).rowcount)
    return int(connection.execute(metric_rows.update().where(rows).values(
        latest_at=newest[0], latest_price=newest[1])).rowcount)


def refresh_filled(connection: sa.Connection, filled: Sequence[datetime], last: datetime,
                   market: tuple[str, str] | None = None) -> None:
    """Candle closes fill hours that snapshots were computed without (a missed run, an outage, a new pair's
    history, an import, a repair): the snapshots that read [min(filled), last] are computed again (and a
    `market`'s later latest price brought up to date), so that every stored number agrees with the raw rows."""
    if filled:
        done = recompute_snapshots(connection, min(filled), last, utc_now(), market)
        if done.total:
            log.info("%s recomputed with the hours the candles filled%s", plural(done.recomputed, "metric snapshot"),
                     f"; {done.dropped} that read pruned prices deleted" if done.dropped else "")
