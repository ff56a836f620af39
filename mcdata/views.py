"""The typed shapes that travel from the database to the screen: a metric row, a run row, a listed pair,
and the views `show` draws. The core fills them; `render` only reads them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypedDict

from mcdata.schema import metrics, runs


class MetricRow(TypedDict):
    """One row of crypto_pair_metrics (tests/test_views.py keeps the keys equal to the table's columns)."""

    timestamp: datetime
    exchange: str
    pair: str
    latest_price: float
    latest_at: datetime
    weekly_average: float | None
    min_price: float | None
    max_price: float | None
    stddev_24h: float | None
    std_rank: int | None
    volatility_24h: float | None
    volatility_rank: int | None
    change_24h_pct: float | None
    samples_24h: int
    samples_7d: int
    computed_at: datetime


class RunRow(TypedDict):
    """One row of `runs`."""

    id: int
    command: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    exit_code: int | None
    source: str | None
    source_url: str | None
    as_of: datetime | None
    pairs_requested: int
    pairs_stored: int
    pairs_failed: int
    rows_written: int
    http_requests: int
    error_summary: str | None


class ListedPairRow(TypedDict):
    """One line of `mcdata pairs`."""

    pair: str
    venue_symbol: str
    active: bool
    status: str
    configured: bool


# The market and the as-of time first, then the other columns: the order CSV and JSON have always had
# (the table is keyed by time first since revision 0007).
MARKET_AND_TIME = ("exchange", "pair", "timestamp")
SHOWN_METRIC_ORDER: tuple[str, ...] = (*MARKET_AND_TIME,
                                       *(c.name for c in metrics.columns if c.name not in MARKET_AND_TIME))
RUN_COLUMNS: tuple[str, ...] = tuple(column.name for column in runs.columns)


@dataclass
class Overview:
    as_of: datetime
    ranked_pairs: dict[str, int]  # per venue: ranks are among the pairs of one venue
    pairs: list[MetricRow]
    sparklines: dict[tuple[str, str], list[float | None]]  # one close per hour of the last 24, oldest first
    last_run: RunRow | None
    unconfigured: set[tuple[str, str]] = field(default_factory=set)  # stored, no longer fetched: marked
    total: int = 0  # the pairs of the snapshot (with the filters): `pairs` may be the first of them only


@dataclass
class PairView:
    exchange: str
    pair: str
    as_of: datetime
    ranked_pairs: int
    metrics: MetricRow
    history: list[MetricRow]
    prices: list[tuple[datetime, float]]
    last_run: RunRow | None


@dataclass
class PairFreshness:
    exchange: str
    pair: str
    last_sample: datetime | None
    age: timedelta | None  # None: never stored
    stale: bool
    delisted_since: datetime | None = None  # the venue's list said it is gone: shown, never stale


@dataclass
class StatusView:
    now: datetime
    max_age: timedelta
    revision: str | None
    last_run: RunRow | None  # the newest finished run or fetch
    last_success: RunRow | None
    running: RunRow | None  # a run under way, if any
    pairs: list[PairFreshness]
    empty_venues: list[str] = field(default_factory=list)  # watched venues without a single stored sample
    stored_venues: list[str] = field(default_factory=list)  # every venue with samples, for a did-you-mean
    problems: list[str] = field(default_factory=list)  # why it is unhealthy; empty when healthy

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def several_venues(self) -> bool:
        """The same pair may then be two series: every name shown says its venue."""
        return len({pair.exchange for pair in self.pairs}) > 1


def hourly_closes(points: Sequence[tuple[datetime, float]], end: datetime, hours: int = 24) -> list[float | None]:
    """One value per hour of the `hours` before `end`, oldest first: the last price of that hour, or None
    for an hour without a sample (a gap shows as a gap)."""
    closes: list[float | None] = [None] * hours
    start = end - timedelta(hours=hours)
    for moment, price in points:  # oldest first: a later sample of an hour replaces an earlier one
        if start < moment <= end:
            closes[math.ceil((moment - start) / timedelta(hours=1)) - 1] = price  # hours end-inclusive
    return closes
