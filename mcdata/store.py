"""Reads and writes of raw prices and runs (the SQL beside the schema it uses)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mcdata.schema import raw_prices, runs


@dataclass(frozen=True)
class PriceRow:
    exchange: str
    pair: str
    timestamp: datetime
    price: float
    volume: float | None
    kind: str  # ticker | candle
    fetched_at: datetime


def newest_timestamps(connection: sa.Connection, exchange: str, pairs: Sequence[str]) -> dict[str, datetime]:
    """The newest stored sample time of each pair that has one."""
    if not pairs:
        return {}
    query = (
        sa.select(raw_prices.c.pair, sa.func.max(raw_prices.c.timestamp).label("newest"))
        .where(raw_prices.c.exchange == exchange, raw_prices.c.pair.in_(sa.bindparam("pairs", expanding=True)))
        .group_by(raw_prices.c.pair)
    )
    return {row.pair: row.newest for row in connection.execute(query, {"pairs": list(pairs)})}


def insert_prices(connection: sa.Connection, rows: Iterable[PriceRow]) -> int:
    """Insert in bulk, skipping rows whose (exchange, pair, timestamp) is stored; returns rows added."""
    values = [vars(row) for row in rows]
    if not values:
        return 0
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(raw_prices).on_conflict_do_nothing(
        index_elements=["exchange", "pair", "timestamp"]
    ).returning(raw_prices.c.pair)
    return len(connection.execute(statement, values).all())


def start_run(connection: sa.Connection, command: str, source: str | None, started_at: datetime) -> int:
    statement = runs.insert().values(command=command, source=source, started_at=started_at, status="running")
    return int(connection.execute(statement.returning(runs.c.id)).scalar_one())


def finish_run(connection: sa.Connection, run_id: int, **fields: Any) -> None:
    connection.execute(runs.update().where(runs.c.id == run_id).values(**fields))


def last_run(connection: sa.Connection) -> sa.Row[Any] | None:
    return connection.execute(sa.select(runs).order_by(runs.c.id.desc()).limit(1)).first()
