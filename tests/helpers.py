"""What many tests need: one way to read and write a test database, and one comparison of stored
metrics with the exact reference (tests/reference.py) — never with mcdata's own SQL."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mcdata.db import make_engine
from mcdata.schema import metrics, raw_prices
from tests.reference import Sample, reference_metrics

# The metric columns read off the table (a new metric is compared without touching this file): the
# measured ones within a tolerance, the counted ones, ranks and times exactly; the key and computed_at are
# not measurements.
FLOATS = tuple(c.name for c in metrics.columns if isinstance(c.type, sa.Double))
EXACT = tuple(c.name for c in metrics.columns
              if not isinstance(c.type, sa.Double) and c.name not in ("timestamp", "exchange", "pair", "computed_at"))
Database = str | sa.Engine  # a URL (an engine is made and disposed of) or an engine


def _statement(statement: sa.Executable | str) -> sa.Executable:
    return sa.text(statement) if isinstance(statement, str) else statement


def _run(database: Database, statement: sa.Executable | str, values: Any, commit: bool) -> list[Any]:
    engine = make_engine(database) if isinstance(database, str) else database
    try:
        with engine.begin() if commit else engine.connect() as connection:
            result = connection.execute(_statement(statement), values)
            return list(result) if result.returns_rows else []
    finally:
        if isinstance(database, str):
            engine.dispose()


def query(database: Database, statement: sa.Executable | str, values: Any = None) -> list[Any]:
    """The rows of one statement (SQL text or Core), read in its own connection."""
    return _run(database, statement, values, commit=False)


def execute(database: Database, statement: sa.Executable | str, values: Any = None) -> list[Any]:
    """One statement in its own committed transaction; its rows, if it returns any."""
    return _run(database, statement, values, commit=True)


def count_rows(database: Database, table: sa.Table) -> int:
    return int(query(database, sa.select(sa.func.count()).select_from(table))[0][0])


def raw_samples(database: Database, since: datetime | None = None) -> list[Sample]:
    """Every raw row; with `since`, the rows after it and each market's newest at or before it: all the
    reference reads for an as-of time at least 7 days after `since` (its week and its day, and the latest
    price and the price before the day however old they are), without reading years of rows each time."""
    raw = raw_prices.c
    columns = (raw.exchange, raw.pair, raw.timestamp, raw.price)
    if since is None:
        return [tuple(row) for row in query(database, sa.select(*columns))]
    newest = (sa.select(raw.exchange, raw.pair, sa.func.max(raw.timestamp).label("newest"))
              .where(raw.timestamp <= since).group_by(raw.exchange, raw.pair).subquery())
    older = sa.select(*columns).join(newest, sa.and_(raw.exchange == newest.c.exchange, raw.pair == newest.c.pair,
                                                     raw.timestamp == newest.c.newest))
    recent = sa.select(*columns).where(raw.timestamp > since)
    return [tuple(row) for statement in (older, recent) for row in query(database, statement)]


def stored_metrics(database: Database, as_of: datetime) -> dict[tuple[str, str], dict[str, Any]]:
    rows = query(database, sa.select(metrics).where(metrics.c.timestamp == as_of))
    return {(r.exchange, r.pair): dict(r._mapping) for r in rows}


def assert_metrics_match(actual: dict[tuple[str, str], dict[str, Any]],
                         expected: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Same markets; counts, times and ranks equal; every float within 1e-9 of the exact value."""
    assert set(actual) == set(expected)
    for market, want in expected.items():
        got = actual[market]
        for column in EXACT:
            assert got[column] == want[column], (market, column)
        for column in FLOATS:
            if want[column] is None:
                assert got[column] is None, (market, column)
            else:
                assert got[column] is not None, (market, column)
                assert math.isclose(got[column], want[column], rel_tol=1e-9, abs_tol=0), (
                    market, column, got[column], want[column])


def assert_metrics_exact(database: Database, as_of: datetime) -> None:
    """The metrics stored for `as_of` equal the reference computed from the raw rows stored now."""
    samples = raw_samples(database, since=as_of - timedelta(days=8))
    assert_metrics_match(stored_metrics(database, as_of), reference_metrics(samples, as_of))
