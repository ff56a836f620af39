"""The supported ways to change stored prices: delete a range, or set one price. Each rebuilds the market's
rollups and recomputes the metric snapshots the change reaches, in the same transaction.

The raw table refuses UPDATE and DELETE (migration 0004) unless `raw_price_edits` has a row; it has one
only inside these transactions, so nobody else ever sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa

from mcdata import metrics, rollups
from mcdata.schema import MAX_PRICE, MIN_PRICE, raw_price_edits, raw_prices
from mcdata.schema import metrics as metric_rows

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
                  until: datetime | None, computed_at: datetime) -> tuple[int, int]:
    """Delete the market's prices with since <= timestamp <= until; returns (rows deleted, snapshots redone)."""
    where = _market(exchange, pair)
    if since is not None:
        where = sa.and_(where, raw_prices.c.timestamp >= since)
    if until is not None:
        where = sa.and_(where, raw_prices.c.timestamp <= until)
    span = connection.execute(sa.select(sa.func.min(raw_prices.c.timestamp),
                                        sa.func.max(raw_prices.c.timestamp)).where(where)).one()
    if span[0] is None:
        return 0, 0
    with _permitted(connection, f"delete {exchange}:{pair}"):
        deleted = int(connection.execute(raw_prices.delete().where(where)).rowcount)
        rollups.rebuild(connection, (exchange, pair))
    return deleted, recompute_snapshots(connection, span[0], span[1], computed_at)


def set_price(connection: sa.Connection, exchange: str, pair: str, at: datetime, price: float,
              computed_at: datetime) -> tuple[bool, int]:
    """Store `price` for the market at `at`, replacing a stored one; returns (replaced, snapshots redone)."""
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
    return stored is not None, recompute_snapshots(connection, at, at, computed_at)


def recompute_snapshots(connection: sa.Connection, first: datetime, last: datetime, computed_at: datetime) -> int:
    """Recompute every stored metric snapshot whose windows reach a sample in [first, last]."""
    pruned = rollups.pruned_before(connection)
    earliest_exact = pruned + metrics.WEEK if pruned else first
    query = (sa.select(metric_rows.c.timestamp).distinct()
             .where(metric_rows.c.timestamp >= max(first, earliest_exact),
                    metric_rows.c.timestamp <= last + REACH)
             .order_by(metric_rows.c.timestamp))
    snapshots = list(connection.execute(query).scalars())
    for as_of in snapshots:
        metrics.compute(connection, as_of, computed_at=computed_at)
    return len(snapshots)
