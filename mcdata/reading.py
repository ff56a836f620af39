"""The read side: what `show` and completion read, from a database at the newest schema, never locked."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mcdata import metrics, migrations, store
from mcdata.clock import CLOCK_TOLERANCE, utc_now
from mcdata.config import Settings
from mcdata.db import connect, display_url, engine_for
from mcdata.errors import (
    ConfigError,
    McdataError,
    did_you_mean,
)
from mcdata.views import MetricRow, Overview, PairView, hourly_closes
from mcdata.wording import FORMAT_NAMES, in_words

log = logging.getLogger("mcdata")


@contextmanager
def reading(settings: Settings) -> Iterator[tuple[Engine, sa.Connection]]:
    """A read-only connection to the settings' database, which must be at the newest schema (exit 4 else);
    never locked, so it works while a run writes."""
    with engine_for(settings.database_url, read_only=True) as engine, connect(engine) as connection:
        migrations.require_head(connection)
        yield engine, connection


def known_pairs(settings: Settings) -> list[str]:
    """The pairs stored in the database (for shell completion), else the configured ones."""
    stored: set[str] = set()
    with contextlib.suppress(McdataError, sa.exc.SQLAlchemyError), reading(settings) as (_, connection):
        stored = {pair for _, pair in store.newest_samples(connection)}
    return sorted(stored) or [pair for pair in settings.pairs if pair != "all"]


# -- show ---------------------------------------------------------------------------------------
def _no_metrics(engine: Engine) -> McdataError:
    return McdataError(f"there are no metrics yet in {display_url(engine.url)}", "run `mcdata run` first")


def overview(settings: Settings, exchange: str | None = None, *, pairs: Sequence[str] | None = None,
             sort: str = "rank", limit: int | None = None, sparklines: bool = True) -> Overview:
    """The latest metrics of every pair (of one venue or all, of some pairs or all), in `sort` order, the
    first `limit` of them, with each shown pair's last 24 hours of prices (`sparklines`)."""
    with reading(settings) as (engine, connection):
        now = utc_now() + CLOCK_TOLERANCE
        rows = store.latest_metrics(connection, now, exchange, pairs=pairs, sort=sort, limit=limit)
        if not rows:
            raise _nothing_shown(engine, connection, exchange, pairs)
        as_of: datetime = rows[0]["timestamp"]
        total = len(rows) if limit is None or len(rows) < limit else store.count_latest_metrics(
            connection, now, exchange, pairs=pairs)
        markets = [(str(r["exchange"]), str(r["pair"])) for r in rows]
        series = store.price_series(connection, markets, as_of - metrics.DAY, as_of) if sparklines else {}
        return Overview(as_of, store.ranked_counts(connection, as_of, exchange), rows,
                        {m: hourly_closes(points, as_of) for m, points in series.items()},
                        store.last_run(connection), _unconfigured(settings, markets), total)


@contextmanager
def streamed_overview(settings: Settings, exchange: str | None = None, *, pairs: Sequence[str] | None = None,
                      sort: str = "rank") -> Iterator[tuple[Overview, Iterator[MetricRow]]]:
    """The overview's head (its rows empty) and every row, read as they are written out: JSON and CSV of
    20,000 markets in flat memory. Rows of markets no longer configured are in head.unconfigured as read."""
    with reading(settings) as (engine, connection):
        now = utc_now() + CLOCK_TOLERANCE
        first = store.latest_metrics(connection, now, exchange, pairs=pairs, sort=sort, limit=1)
        if not first:
            raise _nothing_shown(engine, connection, exchange, pairs)
        as_of: datetime = first[0]["timestamp"]
        head = Overview(as_of, store.ranked_counts(connection, as_of, exchange), [], {}, store.last_run(connection),
                        set(), store.count_latest_metrics(connection, now, exchange, pairs=pairs))

        def rows() -> Iterator[MetricRow]:
            for row in store.stream_latest_metrics(connection, now, exchange, pairs=pairs, sort=sort):
                if not settings.configures(row["exchange"], row["pair"]):
                    head.unconfigured.add((row["exchange"], row["pair"]))
                yield row

        yield head, rows()


def _nothing_shown(engine: Engine, connection: sa.Connection, exchange: str | None,
                   pairs: Sequence[str] | None) -> McdataError:
    venues = store.exchanges_with_metrics(connection)
    if exchange is not None and venues and exchange not in venues:
        return ConfigError(f"no metrics for {exchange[:40]}", did_you_mean(exchange, venues, "--exchange ")
                           or f"there are metrics for {', '.join(venues)}")
    if pairs and venues:
        known = store.pairs_with_metrics(connection)
        return ConfigError(f"no metrics for {', '.join(pairs[:5])}" + (f" on {exchange}" if exchange else ""),
                           did_you_mean(pairs[0], known) or "`mcdata show` lists the pairs")
    return _no_metrics(engine)


def _unconfigured(settings: Settings, markets: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The markets of a snapshot that no configured venue and pair fetches any more (their numbers stop at
    their last fetch): `show` marks them."""
    return {(venue, pair) for venue, pair in markets if not settings.configures(venue, pair)}


def pair_view(settings: Settings, pair: str, exchange: str | None, history: int = 24) -> PairView:
    """One pair's latest metrics, its last 7 days of prices and its recent metric history."""
    with reading(settings) as (engine, connection):
        exchanges = store.exchanges_with_pair(connection, pair)
        if not exchanges:
            known = store.pairs_with_metrics(connection)
            if not known:
                raise _no_metrics(engine)
            raise ConfigError(f"no metrics for {pair}", did_you_mean(pair, known)
                              or f"`mcdata show` lists the pairs; the formats are {in_words(FORMAT_NAMES, 'and')}")
        venue = exchange or (exchanges[0] if len(exchanges) == 1 else settings.venue)
        if venue not in exchanges:
            raise ConfigError(f"no metrics for {pair} on {venue}", f"it has metrics on {', '.join(exchanges)}")
        rows = store.metric_history(connection, venue, pair, history, utc_now() + CLOCK_TOLERANCE)
        if not rows:
            raise _no_metrics(engine)
        latest = rows[0]
        as_of: datetime = latest["timestamp"]
        prices = store.price_series(connection, [(venue, pair)], as_of - metrics.WEEK, as_of)[(venue, pair)]
        ranked = store.ranked_counts(connection, as_of, venue).get(venue, 0)
        return PairView(venue, pair, as_of, ranked, latest, rows, prices, store.last_run(connection))
