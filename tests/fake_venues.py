"""Binance's, Bitstamp's and Coinbase's public REST answers, served by the fake exchange for the ccxt source.

The shapes are recorded ones (tests/fixtures/ccxt, each file names its source): the market lists are
the raw entries ccxt keeps of the real APIs, tickers and candles follow the recorded answers field for
field. Prices are the fake's deterministic series (each venue a little apart, its own series), so any
hour of any day can be asked for: the venues serve deep hourly history, in pages (Coinbase 350 a page).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"
HOUR = 3600
# the series' level by base asset, and each venue's factor on it
LEVELS = {"BTC": 26115.1, "ETH": 1680.5, "ADA": 0.26, "LTC": 64.1, "EUR": 0.92}
FACTORS = {"binance": 1.002, "bitstamp": 0.998, "coinbase": 1.001}
COINBASE_PAGE = 350
Answer = tuple[int, Any, dict[str, str]]


def _text(value: float) -> str:
    return f"{value:.8f}"


class Venues:
    """The routes of the venues besides Kraken and Cryptowatch. `series(level, name, t)` is the fake's price
    series."""

    def __init__(self, series: Callable[[float, str, float], float], now: Callable[[], float],
                 synthetic: int = 0) -> None:
        self.series = series
        self.now = now
        self.binance = json.loads((FIXTURES / "binance.json").read_text())
        self.bitstamp = json.loads((FIXTURES / "bitstamp.json").read_text())
        self.coinbase = json.loads((FIXTURES / "coinbase.json").read_text())
        # Binance lists its coins in EUR too (BTCEUR, ETHEUR, ADAEUR are real markets): the recorded USDT
        # entries re-quoted, so the default pairs meet it as they meet the real venue
        self.binance["symbols"] += [{**s, "symbol": f"{s['baseAsset']}EUR", "quoteAsset": "EUR"}
                                    for s in self.binance["symbols"]]
        for index in range(1, synthetic + 1):  # scale benchmarks: the recorded first entry, renamed
            base = f"A{index:04d}"
            self.binance["symbols"].append({**self.binance["symbols"][0], "symbol": f"{base}USDT", "baseAsset": base})
            self.bitstamp["markets"].append({**self.bitstamp["markets"][0], "name": f"{base}/USD",
                                             "market_symbol": f"{base.lower()}usd", "base_currency": base})
            self.coinbase["products"].append({**self.coinbase["products"][1], "product_id": f"{base}-USDT",
                                              "display_name": f"{base}-USDT", "base_currency_id": base,
                                              "base_display_symbol": base})
        self.delisted: set[str] = set()  # venue symbols (BTCUSDT, btcusd) the venues refuse now

    def series_price(self, venue: str, base: str, quote: str, t: float) -> float:
        level = LEVELS.get(base, 1.0) / LEVELS.get(quote, 1.0) * FACTORS[venue]
        return self.series(level, f"{venue}:{base}/{quote}@{level}".lower(), t)  # each market its own phase

    def route(self, path: str, query: dict[str, str]) -> Answer | None:
        if path.startswith("/api/v3/brokerage/market/"):
            return self._coinbase(path.removeprefix("/api/v3/brokerage/market/"), query)
        if path.startswith("/api/v3/"):
            return self._binance(path.removeprefix("/api/v3/"), query)
        if path.startswith("/api/v2/"):
            return self._bitstamp(path.removeprefix("/api/v2/").strip("/"), query)
        return None

    # -- Binance: errors are HTTP 4xx with {"code", "msg"} ---------------------------------------
    def _binance_symbols(self) -> dict[str, dict[str, Any]]:
        return {s["symbol"]: s for s in self.binance["symbols"] if s["symbol"] not in self.delisted}

    def _binance(self, endpoint: str, query: dict[str, str]) -> Answer:
        symbols = self._binance_symbols()
        now = self.now()
        if endpoint == "exchangeInfo":
            return 200, {"timezone": "UTC", "serverTime": int(now * 1000), "rateLimits": [], "exchangeFilters": [],
                         "symbols": list(symbols.values())}, {}
        if endpoint == "ticker/24hr":
            asked = json.loads(query["symbols"]) if "symbols" in query else list(symbols)
            if any(name not in symbols for name in asked):  # one unknown symbol fails the whole request
                return 400, self.binance["invalid_symbol"], {}
            return 200, [self._binance_ticker(symbols[name], now) for name in asked], {}
        if endpoint == "klines":
            symbol = symbols.get(query.get("symbol", ""))
            if symbol is None:
                return 400, self.binance["invalid_symbol"], {}
            limit = min(int(query.get("limit", "500")), 1000)
            start = -(-int(query.get("startTime", "0")) // (HOUR * 1000)) * HOUR  # the first open time at or after
            start = max(start, int(now) // HOUR * HOUR - 1000 * 24 * HOUR)  # about three years of history
            opens = range(start, int(now) + 1, HOUR)[:limit]  # the forming hour last, as Binance serves it
            return 200, [self._binance_kline(symbol, t) for t in opens], {}
        return 404, {"code": -5000, "msg": "Path not found"}, {}

    def _binance_ticker(self, symbol: dict[str, Any], now: float) -> dict[str, Any]:
        base, quote = symbol["baseAsset"], symbol["quoteAsset"]
        last, open_ = (self.series_price("binance", base, quote, t) for t in (now, now - 24 * HOUR))
        return {**self.binance["ticker"], "symbol": symbol["symbol"], "lastPrice": _text(last),
                "openPrice": _text(open_), "highPrice": _text(max(last, open_)), "lowPrice": _text(min(last, open_)),
                "weightedAvgPrice": _text((last + open_) / 2), "priceChange": _text(last - open_),
                "priceChangePercent": f"{(last / open_ - 1) * 100:.3f}", "openTime": int((now - 24 * HOUR) * 1000),
                "closeTime": int(now * 1000)}

    def _binance_kline(self, symbol: dict[str, Any], start: int) -> list[Any]:
        base, quote = symbol["baseAsset"], symbol["quoteAsset"]
        o, c = (self.series_price("binance", base, quote, t) for t in (start, start + HOUR))
        recorded = self.binance["kline"]
        return [start * 1000, _text(o), _text(max(o, c)), _text(min(o, c)), _text(c), recorded[5],
                (start + HOUR) * 1000 - 1, *recorded[7:]]

    # -- Bitstamp --------------------------------------------------------------------------------
    def _bitstamp_markets(self) -> dict[str, dict[str, Any]]:
        return {m["market_symbol"]: m for m in self.bitstamp["markets"] if m["market_symbol"] not in self.delisted}

    def _bitstamp(self, endpoint: str, query: dict[str, str]) -> Answer:
        markets = self._bitstamp_markets()
        now = self.now()
        if endpoint == "markets":
            return 200, list(markets.values()), {}
        if endpoint == "ticker":
            return 200, [self._bitstamp_ticker(m, now) for m in markets.values()], {}
        if endpoint.startswith("ohlc/"):
            market = markets.get(endpoint.removeprefix("ohlc/"))
            if market is None:
                return 404, {"errors": [{"field": "pair", "message": "Invalid pair.", "code": "not_found"}]}, {}
            step = int(query.get("step", "60"))
            start = -(-int(query.get("start", "0")) // step) * step
            end = min(int(query.get("end", str(int(now)))), int(now))
            opens = range(max(start, int(now) // step * step - 1000 * 24 * HOUR), end + 1, step)
            opens = opens[:min(int(query.get("limit", "1000")), 1000)]
            return 200, {"data": {"pair": market["name"],
                                  "ohlc": [self._bitstamp_candle(market, t, step) for t in opens]}}, {}
        return 404, {"status": "error", "reason": "Not found"}, {}

    def _bitstamp_ticker(self, market: dict[str, Any], now: float) -> dict[str, Any]:
        base, quote = market["base_currency"], market["counter_currency"]
        last, open_ = (self.series_price("bitstamp", base, quote, t) for t in (now, now - 24 * HOUR))
        return {**self.bitstamp["ticker"], "timestamp": str(int(now)), "open": _text(open_), "last": _text(last),
                "high": _text(max(last, open_)), "low": _text(min(last, open_)), "vwap": _text((last + open_) / 2),
                "bid": _text(last), "ask": _text(last), "open_24": _text(open_),
                "percent_change_24": f"{(last / open_ - 1) * 100:.2f}", "pair": market["name"]}

    def _bitstamp_candle(self, market: dict[str, Any], start: int, step: int) -> dict[str, str]:
        base, quote = market["base_currency"], market["counter_currency"]
        o, c = (self.series_price("bitstamp", base, quote, t) for t in (start, start + step))
        recorded = self.bitstamp["ohlc"]["data"]["ohlc"][0]
        return {**recorded, "timestamp": str(start), "open": _text(o), "high": _text(max(o, c)),
                "low": _text(min(o, c)), "close": _text(c)}

    # -- Coinbase (Advanced Trade, public market data) ----------------------------------------------
    def _coinbase(self, endpoint: str, query: dict[str, str]) -> Answer:
        products = {p["product_id"]: p for p in self.coinbase["products"] if p["product_id"] not in self.delisted}
        now = self.now()
        if endpoint == "products":  # the market list and, with each product's price, the tickers
            listed = [] if query.get("product_type") == "FUTURE" else list(products.values())
            return 200, {"products": [self._coinbase_product(p, now) for p in listed],
                         "num_products": len(listed)}, {}
        if endpoint.startswith("products/") and endpoint.endswith("/candles"):
            product = products.get(endpoint.split("/")[1])
            if product is None:
                return 404, {"error": "NOT_FOUND", "error_details": "ProductID is invalid",
                             "message": "ProductID is invalid"}, {}
            if query.get("granularity") != "ONE_HOUR":
                return 400, {"error": "INVALID_ARGUMENT", "message": "granularity"}, {}
            start = -(-int(query.get("start", "0")) // HOUR) * HOUR
            end = min(int(query.get("end", str(int(now)))), int(now))
            opens = range(max(start, int(now) // HOUR * HOUR - 1000 * 24 * HOUR), end + 1, HOUR)
            if len(opens) > COINBASE_PAGE:
                return 400, {"error": "INVALID_ARGUMENT", "message": "number of candles requested should be less "
                             f"than {COINBASE_PAGE}"}, {}
            return 200, {"candles": [self._coinbase_candle(product, t) for t in reversed(opens)]}, {}  # newest first
        return 404, {"error": "NOT_FOUND", "message": "Not Found"}, {}

    def _coinbase_product(self, product: dict[str, Any], now: float) -> dict[str, Any]:
        base, quote = product["base_currency_id"], product["quote_currency_id"]
        last, open_ = (self.series_price("coinbase", base, quote, t) for t in (now, now - 24 * HOUR))
        return {**product, "price": _text(last), "price_percentage_change_24h": f"{(last / open_ - 1) * 100:.14f}"}

    def _coinbase_candle(self, product: dict[str, Any], start: int) -> dict[str, str]:
        base, quote = product["base_currency_id"], product["quote_currency_id"]
        o, c = (self.series_price("coinbase", base, quote, t) for t in (start, start + HOUR))
        return {**self.coinbase["candle"], "start": str(start), "open": _text(o), "high": _text(max(o, c)),
                "low": _text(min(o, c)), "close": _text(c)}
