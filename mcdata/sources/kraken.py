"""Kraken's public REST API: AssetPairs + Assets for names, one Ticker call for all prices, OHLC.

Kraken answers errors, throttling included, with HTTP 200 and a non-empty `error` array. Result keys
(XXBTZEUR, XDGUSD, SOLUSD) are mapped to canonical symbols through AssetPairs and Assets, never
derived from the request string.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mcdata.config import PAIR_PATTERN
from mcdata.errors import PairError, SourceError
from mcdata.sources.base import HOUR, Candle, ListedPair, PriceBatch, Quote, parse_price, parse_volume
from mcdata.sources.http import HttpClient

log = logging.getLogger("mcdata.kraken")

DEFAULT_URL = "https://api.kraken.com"
CATALOG_MAX_AGE = timedelta(days=1)
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


class KrakenSource:
    name = "kraken"
    venue = "kraken"

    def __init__(self, client: HttpClient, cache_dir: Path | None, now: Callable[[], datetime]) -> None:
        self.client = client
        self.cache_dir = cache_dir
        self.now = now
        self._catalog: dict[str, KrakenPair] | None = None

    @property
    def http_requests(self) -> int:
        return self.client.requests

    # -- requests -------------------------------------------------------------------------------
    def _result(self, path: str, params: dict[str, str | int] | None = None, pair: str | None = None) -> Any:
        body = self.client.get(path, params, is_throttled=_throttled).body
        url = f"{self.client.base_url}{path}"
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
    def _cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(self.client.base_url.encode()).hexdigest()[:12]
        return self.cache_dir / f"kraken-pairs-{digest}.json"

    def _load_cached(self) -> dict[str, KrakenPair] | None:
        path = self._cache_file()
        try:
            if path is None or not path.exists():
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
            fetched = datetime.fromisoformat(data["fetched_at"])
            if not timedelta(0) <= self.now() - fetched < CATALOG_MAX_AGE:
                return None
            return {p["symbol"]: KrakenPair(**p) for p in data["pairs"]}
        except (OSError, ValueError, KeyError, TypeError):
            log.debug("kraken: ignoring an unreadable pair cache %s", path)
            return None

    def _save_cache(self, catalog: dict[str, KrakenPair]) -> None:
        path = self._cache_file()
        if path is None:
            return
        data = {"fetched_at": self.now().isoformat(), "pairs": [vars(p) for p in catalog.values()]}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
                json.dump(data, tmp)
            os.replace(tmp.name, path)
        except OSError as exc:
            log.debug("kraken: cannot write the pair cache %s: %s", path, exc)

    def _download_catalog(self) -> dict[str, KrakenPair]:
        assets = self._result("/0/public/Assets")
        pairs = self._result("/0/public/AssetPairs")
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
            active = info.get("status", "online") == "online"
            known = catalog.get(symbol)
            altname = str(info.get("altname", key))
            if (known is None or (active and not known.active)) and SAFE_KEY.match(altname):
                catalog[symbol] = KrakenPair(symbol, key, altname, active)
        if not catalog:
            raise SourceError("kraken: AssetPairs listed no pair that mcdata can name")
        return catalog

    def catalog(self, refresh: bool = False) -> dict[str, KrakenPair]:
        if self._catalog is None or refresh:
            cached = None if refresh else self._load_cached()
            if cached is None:
                cached = self._download_catalog()
                self._save_cache(cached)
            self._catalog = cached
        return self._catalog

    def list_pairs(self) -> list[ListedPair]:
        return [ListedPair(p.symbol, p.key, p.active) for p in self.catalog().values()]

    def refresh_pairs(self) -> list[ListedPair]:
        """Download the pair list again, bypassing the day-long cache."""
        self.catalog(refresh=True)
        return self.list_pairs()

    # -- prices ---------------------------------------------------------------------------------
    def latest_prices(self, pairs: Sequence[str]) -> PriceBatch:
        catalog = self.catalog()
        ticker = self._result("/0/public/Ticker")
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
        now = self.now()
        candles = []
        for row in rows[:-1]:  # the last row is the candle still forming
            candle = self._candle(pair, row, interval)
            if since < candle.close_time <= now:
                candles.append(candle)
        return sorted(candles, key=lambda c: c.close_time)

    @staticmethod
    def _candle(pair: str, row: Any, interval: timedelta) -> Candle:
        try:
            if not isinstance(row, list) or len(row) < 7 or isinstance(row[0], bool):
                raise ValueError(f"row {str(row)[:60]} is not [time, open, high, low, close, vwap, volume, count]")
            start = datetime.fromtimestamp(int(row[0]), UTC)
            return Candle(pair, start + interval, parse_price(row[1]), parse_price(row[2]), parse_price(row[3]),
                          parse_price(row[4]), parse_volume(row[6]))
        except (ValueError, TypeError, OverflowError, OSError) as exc:
            raise PairError(pair, f"kraken OHLC: {exc}") from None
