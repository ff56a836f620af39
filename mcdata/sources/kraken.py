"""Kraken's public REST API: AssetPairs + Assets for names, one Ticker call for all prices, OHLC.

Kraken answers errors, throttling included, with HTTP 200 and a non-empty `error` array. Result keys
(XXBTZEUR, XDGUSD, SOLUSD) are mapped to canonical symbols through AssetPairs and Assets, never
derived from the request string.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mcdata.config import Settings
from mcdata.errors import PairError, SourceError
from mcdata.sources.base import (
    HOUR,
    Candle,
    ListedPair,
    PriceBatch,
    Quote,
    Trade,
    TradePage,
    closed_candles,
    parse_price,
    parse_volume,
)
from mcdata.sources.cache import PairListCache
from mcdata.sources.http import HttpClient, OverHttp, client_for
from mcdata.values import PAIR_PATTERN

log = logging.getLogger("mcdata.kraken")

DEFAULT_URL = "https://api.kraken.com"
TRADES_PAGE = 1000  # trades a Trades answer holds at most
THROTTLING = ("EGeneral:Too many requests", "EAPI:Rate limit exceeded", "EService:")
UNKNOWN_PAIR = "EQuery:Unknown asset pair"
# Kraken's altnames that differ from the common ticker symbol
ASSET_ALIASES = {"xbt": "btc", "xdg": "doge"}
SAFE_KEY = re.compile(r"^[A-Za-z0-9._/-]{1,40}$")  # names echoed to terminals and sent back in URLs


@dataclass(frozen=True)
class KrakenPair:
    symbol: str
    key: str  # the result key of Ticker and OHLC, e.g. XXBTZEUR
    altname: str  # the request name, e.g. XBTEUR
    active: bool
    status: str = "online"


def _throttled(body: Any) -> str | None:
    errors = body.get("error") if isinstance(body, dict) else None
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, str) and error.startswith(THROTTLING):
                return f"throttled ({error})"
    return None


def canonical_asset(altname: str) -> str:
    name = altname.lower()
    return ASSET_ALIASES.get(name, name)


def build_catalog(assets: Any, pairs: Any) -> dict[str, KrakenPair]:
    """Canonical symbol -> pair, from the `result` of Assets and of AssetPairs (downloaded or cached)."""
    if not isinstance(assets, dict) or not isinstance(pairs, dict):
        raise SourceError("kraken: Assets or AssetPairs is not an object")
    catalog: dict[str, KrakenPair] = {}
    for key, info in sorted(pairs.items()):
        if not isinstance(info, dict) or key.endswith(".d") or not SAFE_KEY.match(key):
            continue
        base, quote = assets.get(info.get("base")), assets.get(info.get("quote"))
        if not isinstance(base, dict) or not isinstance(quote, dict):
            continue
        symbol = canonical_asset(str(base.get("altname", ""))) + canonical_asset(str(quote.get("altname", "")))
        if not PAIR_PATTERN.match(symbol):
            continue
        status = str(info.get("status", "online"))
        status = status if SAFE_KEY.match(status) else "unknown"
        active = status == "online"
        known = catalog.get(symbol)
        altname = str(info.get("altname", key))
        if (known is None or (active and not known.active)) and SAFE_KEY.match(altname):
            catalog[symbol] = KrakenPair(symbol, key, altname, active, status)
    if not catalog:
        raise SourceError("kraken: AssetPairs listed no pair that mcdata can name")
    return catalog


class KrakenSource(OverHttp):
    name = "kraken"
    venue = "kraken"
    # OHLC answers the newest 720 hourly rows whatever `since` asks (one still forming): 29 whole days fit
    max_history: timedelta | None = timedelta(days=29)

    def __init__(self, client: HttpClient, cache_dir: Path | None, now: Callable[[], datetime]) -> None:
        self.client = client
        self.cache = PairListCache(cache_dir, "kraken", client.base_url, now)
        self.now = now
        self._catalog: dict[str, KrakenPair] | None = None
        self._downloaded = False

    @classmethod
    def create(cls, settings: Settings, now: Callable[[], datetime]) -> KrakenSource:
        return cls(client_for(settings, DEFAULT_URL), settings.cache_dir, now)

    # -- requests -------------------------------------------------------------------------------
    def _result(self, path: str, params: dict[str, str | int] | None = None, pair: str | None = None) -> Any:
        answer = self.client.get(path, params, is_throttled=_throttled)
        body, url = answer.body, answer.url
        if not isinstance(body, dict) or not isinstance(body.get("error"), list):
            raise SourceError(f"kraken: GET {url}: the answer has no `error` array")
        if body["error"]:
            errors = ", ".join(map(str, body["error"]))[:200]
            if pair and any(str(e).startswith(UNKNOWN_PAIR) for e in body["error"]):
                raise PairError(pair, f"kraken does not know this pair ({errors})")
            raise SourceError(f"kraken: GET {url} answered {errors}")
        if not isinstance(body.get("result"), dict):
            raise SourceError(f"kraken: GET {url}: the answer has no `result` object")
        return body["result"]

    # -- pairs ----------------------------------------------------------------------------------
    def _load_cached(self) -> dict[str, KrakenPair] | None:
        return self.cache.load(lambda data: build_catalog(data["assets"], data["pairs"]))

    def _save_cache(self, assets: dict[str, Any], pairs: dict[str, Any]) -> None:
        """Keep what build_catalog reads of the two answers."""
        self.cache.save({
            "assets": {k: {"altname": v.get("altname")} for k, v in assets.items() if isinstance(v, dict)},
            "pairs": {k: {f: v.get(f) for f in ("altname", "base", "quote", "status")}
                      for k, v in pairs.items() if isinstance(v, dict)},
        })

    def _download_catalog(self) -> dict[str, KrakenPair]:
        assets = self._result("/0/public/Assets")
        pairs = self._result("/0/public/AssetPairs")
        catalog = build_catalog(assets, pairs)
        self._save_cache(assets, pairs)
        return catalog

    def catalog(self, refresh: bool = False) -> dict[str, KrakenPair]:
        """The pair list: cached, or downloaded; `refresh` downloads it unless this run already did."""
        if self._catalog is None or (refresh and not self._downloaded):
            cached = None if refresh else self._load_cached()
            if cached is None:
                cached = self._download_catalog()
                self._downloaded = True
            self._catalog = cached
        return self._catalog

    def list_pairs(self) -> list[ListedPair]:
        return [ListedPair(p.symbol, p.key, p.active, p.status) for p in self.catalog().values()]

    def refresh_pairs(self) -> list[ListedPair]:
        """Download the pair list again, bypassing the day-long cache."""
        self.catalog(refresh=True)
        return self.list_pairs()

    # -- prices ---------------------------------------------------------------------------------
    def latest_prices(self, pairs: Sequence[str]) -> PriceBatch:
        catalog = self.catalog()
        ticker = self._result("/0/public/Ticker")
        if any(pair in catalog and catalog[pair].key not in ticker for pair in pairs):
            catalog = self.catalog(refresh=True)  # a renamed pair key: the fresh list knows the new one
        batch = PriceBatch()
        for pair in pairs:
            entry = ticker.get(catalog[pair].key) if pair in catalog else None
            if not isinstance(entry, dict):
                batch.failures[pair] = PairError(pair, "kraken's Ticker has no price for this pair")
                continue
            try:
                last = entry.get("c")
                if not isinstance(last, list) or not last:
                    raise ValueError("the Ticker entry has no last trade `c`")
                batch.quotes[pair] = Quote(pair, parse_price(last[0]))
            except ValueError as exc:
                batch.failures[pair] = PairError(pair, f"kraken Ticker: {exc}")
        return batch

    def candles(self, pair: str, since: datetime, interval: timedelta = HOUR) -> list[Candle]:
        info = self.catalog()[pair]
        minutes = int(interval.total_seconds() // 60)
        result = self._result(
            "/0/public/OHLC",
            {"pair": info.altname, "interval": minutes, "since": int((since - interval).timestamp())},
            pair=pair,
        )
        rows = result.get(info.key)
        if rows is None:
            others = [k for k in result if k != "last"]
            rows = result.get(others[0]) if len(others) == 1 else None
        if not isinstance(rows, list):
            raise PairError(pair, "kraken OHLC: the answer has no rows for this pair")
        return closed_candles(pair, (self._candle(pair, row, interval) for row in rows), since, self.now())

    def trades(self, pair: str, since_ns: int) -> TradePage:
        """One page of Trades (up to TRADES_PAGE, oldest first) after the nanosecond cursor `since_ns`, and
        the cursor of the next page (Kraken's `last`)."""
        info = self.catalog()[pair]
        result = self._result("/0/public/Trades", {"pair": info.altname, "since": since_ns, "count": TRADES_PAGE},
                              pair=pair)
        rows = result.get(info.key)
        if rows is None:
            others = [k for k in result if k != "last"]
            rows = result.get(others[0]) if len(others) == 1 else None
        last = result.get("last")
        if type(last) is int:
            last = str(last)
        if not isinstance(rows, list) or not (isinstance(last, str) and last.isdigit() and len(last) <= 25):
            raise PairError(pair, "kraken Trades: the answer has no trades list and `last` cursor for this pair")
        try:
            trades = [_trade(row) for row in rows]
        except (ValueError, TypeError, OverflowError, OSError) as exc:
            raise PairError(pair, f"kraken Trades: {exc}") from None
        return TradePage(trades, int(last))

    @staticmethod
    def _candle(pair: str, row: Any, interval: timedelta) -> Candle:
        try:
            if not isinstance(row, list) or len(row) < 7 or isinstance(row[0], bool):
                raise ValueError(f"row {str(row)[:60]} is not [time, open, high, low, close, vwap, volume, count]")
            start = datetime.fromtimestamp(int(row[0]), UTC)
            trades = row[7] if len(row) > 7 and isinstance(row[7], int) and not isinstance(row[7], bool) else None
            return Candle(pair, start + interval, parse_price(row[1]), parse_price(row[2]), parse_price(row[3]),
                          parse_price(row[4]), parse_volume(row[6]), _vwap(row[5]), trades)
        except (ValueError, TypeError, OverflowError, OSError) as exc:
            raise PairError(pair, f"kraken OHLC: {exc}") from None


def _trade(row: Any) -> Trade:
    """[price, volume, time (seconds, a fraction of them), side, type, misc, trade id]"""
    if not isinstance(row, list) or len(row) < 3 or isinstance(row[2], bool) or not isinstance(row[2], int | float):
        raise ValueError(f"row {str(row)[:60]} is not [price, volume, time, ...]")
    return Trade(datetime.fromtimestamp(float(row[2]), UTC), parse_price(row[0]), parse_volume(row[1]))


def _vwap(value: Any) -> float | None:
    """Kraken's vwap: 0 where the interval had no trade (then it says nothing), else a price."""
    try:
        nothing = float(value) == 0
    except (TypeError, ValueError):
        nothing = False
    return None if nothing else parse_price(value)
