"""The small interface every source implements, and the records it returns."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from mcdata.errors import PairError
from mcdata.schema import MAX_PRICE, MAX_VOLUME, MIN_PRICE
from mcdata.wording import instant_text

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class ListedPair:
    symbol: str  # canonical, e.g. btceur
    venue_symbol: str  # the source's own name, e.g. XXBTZEUR
    active: bool
    status: str = "online"  # the venue's word: online, cancel_only, post_only, limit_only, reduce_only, ...


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
    vwap: float | None = None  # where the source says (Kraken's OHLC rows do)
    trades: int | None = None


@dataclass(frozen=True)
class Trade:
    time: datetime  # UTC
    price: float
    volume: float


@dataclass(frozen=True)
class TradePage:
    trades: list[Trade]  # oldest first
    next_cursor: int  # the venue's cursor of the page after this one (Kraken's `last`, in nanoseconds)


@dataclass
class PriceBatch:
    quotes: dict[str, Quote] = field(default_factory=dict)
    failures: dict[str, PairError] = field(default_factory=dict)
    untraded: dict[str, str] = field(default_factory=dict)  # listed, never traded (a price of 0): skipped


class Source(Protocol):
    name: str
    venue: str
    max_history: timedelta | None  # the oldest hourly candle the source can serve; None: no known limit

    @property
    def http_requests(self) -> int: ...

    @property
    def server_time(self) -> datetime | None:
        """The source's clock when it first answered (its Date header), if it said."""
        ...

    def cancel(self) -> None:
        """Abandon the requests under way (Ctrl-C): waits end at once, later requests fail."""
        ...

    def list_pairs(self) -> list[ListedPair]: ...

    def refresh_pairs(self) -> list[ListedPair]:
        """The pair list fetched again, bypassing any cache."""
        ...

    def latest_prices(self, pairs: Sequence[str]) -> PriceBatch: ...

    def candles(self, pair: str, since: datetime, interval: timedelta = HOUR) -> list[Candle]:
        """Closed candles whose close time is after `since`, oldest first."""
        ...


def closed_candles(pair: str, candles: Iterable[Candle], since: datetime, now: datetime) -> list[Candle]:
    """The candles that closed after `since` and by `now`, oldest first, decided by time, never by position
    (a still-forming candle closes after now wherever the answer puts it). A candle sent twice counts once;
    two different candles closing at the same time are a PairError: neither can be trusted."""
    by_close: dict[datetime, Candle] = {}
    for candle in candles:
        if not since < candle.close_time <= now:
            continue
        known = by_close.setdefault(candle.close_time, candle)
        if known != candle:
            raise PairError(pair, f"two different candles close at {instant_text(candle.close_time)}")
    return [by_close[close] for close in sorted(by_close)]


def parse_price(value: Any) -> float:
    """A price in the band a real market can have (schema.MIN_PRICE .. MAX_PRICE), given as a JSON number
    or a decimal string; ValueError otherwise."""
    return _parse_number(value, "price", MIN_PRICE, MAX_PRICE)


def parse_volume(value: Any) -> float:
    """A volume from 0 to schema.MAX_VOLUME; ValueError otherwise."""
    return _parse_number(value, "volume", 0.0, MAX_VOLUME)


def _parse_number(value: Any, what: str, lowest: float, highest: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what} {_shown(value)} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: a JSON integer of hundreds of digits
        raise ValueError(f"{what} {_shown(value)} is not a number a market can have") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and lowest > 0):
        bound = "positive" if lowest > 0 else "non-negative"
        raise ValueError(f"{what} {_shown(value)} is not a finite {bound} number")
    if not lowest <= number <= highest:
        raise ValueError(f"{what} {_shown(value)} is outside the band a market can have ({lowest:g} .. {highest:g})")
    return number


def _shown(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 200:
        return f"(an integer of {len(str(value))} digits)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
