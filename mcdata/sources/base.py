"""The small interface every source implements, and the records it returns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from mcdata.errors import PairError

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class ListedPair:
    symbol: str  # canonical, e.g. btceur
    venue_symbol: str  # the source's own name, e.g. XXBTZEUR
    active: bool


@dataclass(frozen=True)
class Quote:
    pair: str
    price: float


@dataclass(frozen=True)
class Candle:
    pair: str
    close_time: datetime  # UTC, the end of the candle
    open: float
    high: float
    low: float
    close: float
    volume: float | None


@dataclass
class PriceBatch:
    quotes: dict[str, Quote] = field(default_factory=dict)
    failures: dict[str, PairError] = field(default_factory=dict)


class Source(Protocol):
    name: str
    venue: str

    @property
    def http_requests(self) -> int: ...

    def list_pairs(self) -> list[ListedPair]: ...

    def refresh_pairs(self) -> list[ListedPair]:
        """The pair list fetched again, bypassing any cache."""
        ...

    def latest_prices(self, pairs: Sequence[str]) -> PriceBatch: ...

    def candles(self, pair: str, since: datetime, interval: timedelta = HOUR) -> list[Candle]:
        """Closed candles whose close time is after `since`, oldest first."""
        ...


def parse_price(value: Any) -> float:
    """A finite, positive number given as a JSON number or a decimal string; ValueError otherwise."""
    return _parse_number(value, "price", minimum_allowed=False)


def parse_volume(value: Any) -> float:
    """A finite number >= 0; ValueError otherwise."""
    return _parse_number(value, "volume", minimum_allowed=True)


def _parse_number(value: Any, what: str, minimum_allowed: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what} {_shown(value)} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{what} {_shown(value)} is not a number") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not minimum_allowed):
        bound = "non-negative" if minimum_allowed else "positive"
        raise ValueError(f"{what} {_shown(value)} is not a finite {bound} number")
    return number


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
