"""A fake exchange on 127.0.0.1 that speaks Kraken's and Cryptowatch's documented REST shapes (and
Binance's and Bitstamp's recorded ones, tests/fake_venues.py, for the ccxt source).

It serves a deterministic hourly price series per market, counts every request, and misbehaves on
request (5xx, 429 with Retry-After, Kraken's HTTP-200 throttling, HTML pages, truncated JSON, hangs,
NaN prices, delisted pairs). Kraken names and keys follow shared/reference/exchange-apis.md §2.6;
the Cryptowatch listing and price payloads are the recordings in tests/fixtures/cryptowatch.

Run it by hand for a demo: `python -m tests.fake_exchange --port 8765`, then
`MCDATA_API_URL=http://127.0.0.1:8765 mcdata run`. Steer it to watch an alert fire offline: from its
command line (`--price btceur=100000`, `--scale etheur=3`) or while it runs, through its control route
(`curl 'http://127.0.0.1:8765/_control/scale?pair=btceur&factor=3'`, `.../_control/price?pair=btceur&value=1`,
`.../_control/reset`).
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import gzip
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fake_venues import Venues

FIXTURES = Path(__file__).parent / "fixtures" / "cryptowatch"
HOUR = 3600


@dataclass
class Market:
    pair: str  # canonical, e.g. btceur
    key: str  # Kraken result key, e.g. XXBTZEUR
    altname: str  # Kraken request name, e.g. XBTEUR
    base: str  # Kraken asset id, e.g. XXBT
    quote: str
    price: float  # level of the synthetic series
    status: str = "online"


# (pair, Kraken key, altname, base asset, quote asset, price on 19 Aug 2023 where recorded)
KRAKEN_MARKETS = [
    Market("btceur", "XXBTZEUR", "XBTEUR", "XXBT", "ZEUR", 24067.9),
    Market("btcusd", "XXBTZUSD", "XBTUSD", "XXBT", "ZUSD", 26115.1),
    Market("btcgbp", "XXBTZGBP", "XBTGBP", "XXBT", "ZGBP", 20500.0),
    Market("etheur", "XETHZEUR", "ETHEUR", "XETH", "ZEUR", 1547.27),
    Market("ethusd", "XETHZUSD", "ETHUSD", "XETH", "ZUSD", 1680.5),
    Market("ltceur", "XLTCZEUR", "LTCEUR", "XLTC", "ZEUR", 59.07),
    Market("ltcusd", "XLTCZUSD", "LTCUSD", "XLTC", "ZUSD", 64.1),
    Market("solusd", "SOLUSD", "SOLUSD", "SOL", "ZUSD", 21.85),
    Market("xrpusd", "XXRPZUSD", "XRPUSD", "XXRP", "ZUSD", 0.52013),
    Market("xrpeur", "XXRPZEUR", "XRPEUR", "XXRP", "ZEUR", 0.4791),
    Market("adaeur", "ADAEUR", "ADAEUR", "ADA", "ZEUR", 0.247456),
    Market("bateth", "BATETH", "BATETH", "BAT", "XETH", 0.0001021),
    Market("dogeusd", "XDGUSD", "XDGUSD", "XXDG", "ZUSD", 0.0637336),
    Market("dogeeur", "XDGEUR", "XDGEUR", "XXDG", "ZEUR", 0.0587),
    Market("eth2.seth", "ETH2.SETH", "ETH2.SETH", "ETH2.S", "XETH", 0.99),
    Market("lunausd", "LUNAUSD", "LUNAUSD", "LUNA", "ZUSD", 0.0001, status="cancel_only"),
]
KRAKEN_ASSETS = {
    "XXBT": "XBT", "XETH": "ETH", "XLTC": "LTC", "XXRP": "XRP", "XXDG": "XDG", "ZEUR": "EUR",
    "ZUSD": "USD", "ZGBP": "GBP", "SOL": "SOL", "ADA": "ADA", "BAT": "BAT", "ETH2.S": "ETH2.S",
    "LUNA": "LUNA",
}


def series_price(level: float, pair: str, t: float) -> float:
    """A deterministic, always positive price for `pair` at unix time t."""
    phase = sum(map(ord, pair)) % 97
    return level * (1 + 0.03 * math.sin(t / 7200 + phase) + 0.01 * math.sin(t / 1100 + phase * 3))


@functools.lru_cache(maxsize=4)
def gzipped_zeros(megabytes: float) -> bytes:
    return gzip.compress(bytes(int(megabytes * 1024 * 1024)), compresslevel=9)


@dataclass
class Fault:
    """One misbehaviour, served to the next `times` requests whose path starts with `path`."""

    path: str
    # status | kraken_error | html | truncated | nested | hang | huge | endless | drip | redirect | bomb | body
    kind: str
    times: int = 1
    status: int = 500
    message: str = "EGeneral:Too many requests"
    retry_after: str | None = None
    seconds: float = 30.0


@dataclass
class FakeExchange:
    clock: Callable[[], float] = time.time
    latency: float = 0.0
    cw_page_size: int | None = None  # None: one page, as the real /markets/prices answered
    markets: dict[str, Market] = field(default_factory=lambda: {m.pair: m for m in KRAKEN_MARKETS})
    price_overrides: dict[str, Any] = field(default_factory=dict)  # pair -> value served as the last price
    faults: list[Fault] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # of each request, in order
    request_times: list[float] = field(default_factory=list)  # time.monotonic() of each request, in order
    cw_legacy_keys: bool = False  # serve the 2016 `<venue>:<pair>` keys instead of `market:<venue>:<pair>`
    synthetic_markets: int = 0  # extra markets a0001usd, ... on Kraken and each ccxt venue (scale benchmarks)
    ohlc_rows: Callable[[str, list[list[Any]]], list[list[Any]]] | None = None  # (pair, rows) -> rows served
    # Kraken's Trades: this many trades an hour per market, none in the quiet hours (unix hour starts), and
    # at most trades_page per answer (Kraken's own page is 1000)
    trades_per_hour: int = 4
    quiet_hours: set[int] = field(default_factory=set)
    trades_page: int = 1000
    # Cryptowatch venues besides kraken: venue -> factor on Kraken's prices (the same markets, their own series)
    cw_other_venues: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.assets = dict(KRAKEN_ASSETS)
        for index in range(1, self.synthetic_markets + 1):
            asset = f"A{index:04d}"
            self.assets[asset] = asset
            self.markets[f"a{index:04d}usd"] = Market(f"a{index:04d}usd", f"{asset}USD", f"{asset}USD", asset, "ZUSD",
                                                     1.0 + index / 10)
        listing = json.loads((FIXTURES / "markets_kraken.json").read_text())["body"]
        self.cw_listing: list[dict[str, Any]] = listing["result"]
        recorded = json.loads((FIXTURES / "markets_prices.json").read_text())["body"]
        self.cw_prices: dict[str, float] = recorded["result"]
        self.cw_allowance = recorded["allowance"]
        self.venues = Venues(series_price, self._now, self.synthetic_markets)  # ccxt venues: tests/fake_venues.py
        self._server: ThreadingHTTPServer | None = None

    # -- control --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, path: str, kind: str, times: int = 1, **options: Any) -> None:
        if kind in ("bomb", "redirect"):
            gzipped_zeros(options.get("seconds", 30.0))  # made now: the answer must not be slow to come
        with self._lock:
            self.faults.append(Fault(path, kind, times, **options))

    def delist(self, pair: str) -> None:
        self.markets.pop(pair, None)
        self.cw_listing = [m for m in self.cw_listing if m["pair"] != pair]

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if urlsplit(r).path == path)

    def price_at(self, pair: str, t: float) -> float:
        return series_price(self.markets[pair].price if pair in self.markets else 1.0, pair, t)

    def __enter__(self) -> FakeExchange:
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        # a short poll: shutdown() waits for it, and the suite starts a few hundred of these servers
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # -- routing --------------------------------------------------------------------------------
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if path.startswith(fault.path) and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def steer(self, prices: dict[str, str] | None = None, scales: dict[str, float] | None = None) -> None:
        """Serve `prices` as the pairs' last prices, and multiply the pairs' series by `scales`."""
        for pair, value in (prices or {}).items():
            self.price_overrides[pair] = value
        for pair, factor in (scales or {}).items():
            if pair not in self.markets:
                raise ValueError(f"no market {pair!r}")
            market = self.markets[pair]  # a copy: the markets are shared with every other fake
            self.markets[pair] = dataclasses.replace(market, price=market.price * factor)

    def _control(self, action: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        try:
            if action == "price":
                self.steer(prices={query["pair"]: query["value"]})
            elif action == "scale":
                self.steer(scales={query["pair"]: float(query["factor"])})
            elif action == "reset":
                self.price_overrides.clear()
                self.markets.update({m.pair: dataclasses.replace(m) for m in KRAKEN_MARKETS})
            else:
                return 404, {"error": f"no control {action!r}: price, scale or reset"}, {}
        except (KeyError, ValueError) as exc:
            return 400, {"error": f"{action}: {exc}"}, {}
        return 200, {"overrides": self.price_overrides,
                     "levels": {pair: m.price for pair, m in sorted(self.markets.items())}}, {}

    def route(self, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if path.startswith("/_control/"):
            return self._control(path.removeprefix("/_control/"), query)
        if path.startswith("/0/public/"):
            return self._kraken(path.removeprefix("/0/public/"), query)
        if path.startswith("/markets"):
            return self._cryptowatch(path, query)
        return self.venues.route(path, query) or (404, {"error": "Route not found"}, {})

    def _now(self) -> float:
        return self.clock()

    def _last_price(self, market: Market) -> Any:
        return self.price_overrides.get(market.pair, self.price_at(market.pair, self._now()))

    # Kraken: HTTP 200 always; errors in the `error` array
    def _kraken(self, endpoint: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        online = {m.key: m for m in self.markets.values()}
        if endpoint == "Assets":
            return 200, {"error": [], "result": {
                asset: {"aclass": "currency", "altname": alt, "decimals": 10, "display_decimals": 5,
                        "status": "enabled"} for asset, alt in self.assets.items()}}, {}
        if endpoint == "AssetPairs":
            return 200, {"error": [], "result": {
                m.key: {"altname": m.altname, "wsname": f"{m.altname[:-3]}/{m.altname[-3:]}",
                        "aclass_base": "currency", "base": m.base, "aclass_quote": "currency",
                        "quote": m.quote, "lot": "unit", "cost_decimals": 5, "pair_decimals": 5,
                        "lot_decimals": 8, "lot_multiplier": 1, "leverage_buy": [], "leverage_sell": [],
                        "fees": [[0, 0.26], [50000, 0.24]], "fees_maker": [[0, 0.16], [50000, 0.14]],
                        "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
                        "ordermin": "0.0001", "costmin": "0.5", "tick_size": "0.00001", "status": m.status}
                for m in online.values()}}, {}
        if endpoint == "Ticker":
            chosen = list(online.values())
            if "pair" in query:  # a comma list, as Kraken takes it; one unknown name fails the request
                asked = query["pair"].upper().split(",")
                chosen = [m for m in chosen if m.key in asked or m.altname in asked]
                if len(chosen) < len(asked):
                    return 200, {"error": ["EQuery:Unknown asset pair"]}, {}
            result = {}
            for m in chosen:
                last = self._last_price(m)
                text = last if isinstance(last, str) else f"{last:.10g}"
                result[m.key] = {"a": [text, "1", "1.000"], "b": [text, "1", "1.000"], "c": [text, "0.0005"],
                                 "v": ["100.5", "250.25"], "p": [text, text], "t": [120, 300],
                                 "l": [text, text], "h": [text, text], "o": text}
            return 200, {"error": [], "result": result}, {}
        if endpoint == "OHLC":
            market = next((m for m in online.values() if query.get("pair", "").upper() in (m.key, m.altname)),
                          None)
            if market is None:
                return 200, {"error": ["EQuery:Unknown asset pair"]}, {}
            if query.get("interval", "1") != "60":
                return 200, {"error": ["EGeneral:Invalid arguments"]}, {}
            forming = int(self._now()) // HOUR * HOUR
            since = int(query.get("since", "0"))
            starts = [t for t in range(forming - 719 * HOUR, forming + 1, HOUR) if t > since]
            rows = []
            for start in starts:
                close = self.price_at(market.pair, start + HOUR)
                o = self.price_at(market.pair, start)
                rows.append([start, f"{o:.10g}", f"{max(o, close):.10g}", f"{min(o, close):.10g}",
                             f"{close:.10g}", f"{(o + close) / 2:.10g}", "12.50000000", 42])
            if self.ohlc_rows is not None:
                rows = self.ohlc_rows(market.pair, rows)
            return 200, {"error": [], "result": {market.key: rows, "last": forming - HOUR}}, {}
        if endpoint == "Trades":
            market = next((m for m in online.values() if query.get("pair", "").upper() in (m.key, m.altname)),
                          None)
            if market is None:
                return 200, {"error": ["EQuery:Unknown asset pair"]}, {}
            since = int(query.get("since", "0") or 0)
            since_ns = since * 10**9 if since < 10**12 else since  # Kraken takes seconds or nanoseconds
            count = min(int(query.get("count", "1000")), 1000, self.trades_page)
            trades = self.trades_after(market.pair, since_ns, count)
            last = str(trades[-1][0]) if trades else str(since_ns)
            return 200, {"error": [], "result": {market.key: [row for _, row in trades], "last": last}}, {}
        return 200, {"error": ["EGeneral:Unknown method"]}, {}

    def trade_times(self, pair: str, hour: int) -> list[int]:
        """The nanosecond times of a market's trades in the hour starting at `hour` (unix seconds)."""
        if hour in self.quiet_hours:
            return []
        phase = sum(map(ord, pair)) % 300
        step = HOUR // max(self.trades_per_hour, 1)
        return [(hour + phase + k * step) * 10**9 + 123_456_789 for k in range(self.trades_per_hour)]

    def trades_after(self, pair: str, since_ns: int, count: int) -> list[tuple[int, list[Any]]]:
        """Up to `count` trades after `since_ns` and up to now, oldest first, as (ns, Kraken's row)."""
        now_ns = int(self._now() * 10**9)
        found: list[tuple[int, list[Any]]] = []
        hour = since_ns // 10**9 // HOUR * HOUR
        while len(found) < count and hour * 10**9 <= now_ns:
            for ns in self.trade_times(pair, hour):
                if since_ns < ns <= now_ns and len(found) < count:
                    price = self.price_at(pair, ns / 10**9)
                    found.append((ns, [f"{price:.10g}", "0.01250000", ns / 10**9, "b" if ns % 2 else "s", "l", "",
                                       ns // 10**6]))
            hour += HOUR
        return found

    # Cryptowatch: result/error envelope with allowance; 404 for unknown venues and pairs
    def _cryptowatch(self, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        parts = [p for p in path.split("/") if p]
        allowance = {"allowance": self.cw_allowance}
        listed = {m["pair"] for m in self.cw_listing}
        if parts == ["markets", "prices"]:
            prices = dict(self.cw_prices)
            for item in self.cw_listing:  # listed Kraken markets move with the fake clock
                market = self.markets.get(item["pair"])
                level = market.price if market else prices.get(f"market:kraken:{item['pair']}", 1.0)
                if item["pair"] in self.price_overrides:
                    prices[f"market:kraken:{item['pair']}"] = self.price_overrides[item["pair"]]
                elif level and item["pair"] in {m.pair for m in KRAKEN_MARKETS} | {"waveseur"}:
                    prices[f"market:kraken:{item['pair']}"] = series_price(level or 1.0, item["pair"],
                                                                           self._now())
            for key in [k for k in prices if k.startswith("market:kraken:") and k[14:] not in listed]:
                del prices[key]
            for venue, factor in self.cw_other_venues.items():
                for key, value in list(prices.items()):
                    if key.startswith("market:kraken:"):
                        prices[f"market:{venue}:{key[14:]}"] = float(value) * factor if isinstance(
                            value, int | float) else value
            if self.cw_legacy_keys:
                prices = {k.removeprefix("market:"): v for k, v in prices.items()}
            keys = sorted(prices)
            start = int(query.get("cursor", "0") or 0)
            size = self.cw_page_size or len(keys)
            page = keys[start:start + size]
            more = start + size < len(keys)
            return 200, {"result": {k: prices[k] for k in page},
                         "cursor": {"last": str(start + size), "hasMore": more}, **allowance}, {}
        venues = {"kraken", *self.cw_other_venues}
        if len(parts) == 2:
            if parts[1] not in venues:
                return 404, {"error": "Exchange not found", **allowance}, {}
            return 200, {"result": self.cw_listing, **allowance}, {}
        if len(parts) == 4 and parts[3] == "ohlc":
            if parts[1] not in venues:
                return 404, {"error": "Exchange not found", **allowance}, {}
            if parts[2] not in listed:
                return 404, {"error": "Instrument not found", **allowance}, {}
            level = self.markets[parts[2]].price if parts[2] in self.markets else \
                self.cw_prices.get(f"market:kraken:{parts[2]}", 1.0) or 1.0
            level *= self.cw_other_venues.get(parts[1], 1.0)
            now = int(self._now())
            after = int(query.get("after", "0"))
            rows = []
            for close_time in range(now // HOUR * HOUR + HOUR - 999 * HOUR, now // HOUR * HOUR + 2 * HOUR, HOUR):
                if close_time < after:
                    continue
                c = series_price(level, parts[2], close_time)
                o = series_price(level, parts[2], close_time - HOUR)
                rows.append([close_time, o, max(o, c), min(o, c), c, 12.5, 12.5 * c])
            return 200, {"result": {"3600": rows}, **allowance}, {}
        return 404, {"error": "Route not found", **allowance}, {}


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up (timeouts, size caps) is part of the tests


def _handler_for(exchange: FakeExchange) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: Nagle and delayed ACKs cost 40 ms

        def log_message(self, *args: object) -> None:
            pass

        def date_time_string(self, timestamp: float | None = None) -> str:  # the Date header: the fake's clock
            return email.utils.formatdate(exchange.clock() if timestamp is None else timestamp, usegmt=True)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            exchange.requests.append(self.path)
            exchange.request_times.append(time.monotonic())
            exchange.headers.append(dict(self.headers.items()))
            if exchange.latency:
                time.sleep(exchange.latency)
            fault = exchange._take_fault(parts.path)
            if fault is not None and self._misbehave(fault):
                return
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            status, body, headers = exchange.route(parts.path, query)
            self._send(status, json.dumps(body).encode(), headers)

        def _send(self, status: int, payload: bytes, headers: dict[str, str],
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def _misbehave(self, fault: Fault) -> bool:
            """Serve the fault; False when the fault is only a delay before the real answer."""
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            if fault.kind == "status":
                message = {429: "Out of allowance", 404: "Instrument not found"}.get(fault.status, "Internal error")
                body = {"error": message}
                self._send(fault.status, json.dumps(body).encode(), headers)
            elif fault.kind == "redirect":  # to `message`, with a gzip body of `seconds` MB of zeros
                body = gzipped_zeros(fault.seconds)
                self._send(fault.status if fault.status != 500 else 302, body,
                           {"Location": fault.message, "Content-Encoding": "gzip"})
            elif fault.kind == "bomb":  # HTTP 200, a gzip body that inflates to `seconds` MB of zeros
                self._send(200, gzipped_zeros(fault.seconds), {"Content-Encoding": "gzip"})
            elif fault.kind == "body":  # HTTP `status` (200 unless given), `message` as the JSON body
                self._send(fault.status if fault.status != 500 else 200, fault.message.encode(), headers)
            elif fault.kind == "kraken_error":
                self._send(200, json.dumps({"error": [fault.message]}).encode(), headers)
            elif fault.kind == "html":
                page = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>"
                self._send(fault.status if fault.status != 500 else 200, page, headers, "text/html")
            elif fault.kind == "nested":
                self._send(200, b"[" * 200_000 + b"]" * 200_000, headers)
            elif fault.kind == "truncated":
                self._send(200, b'{"error": [], "result": {"XXBTZEUR": {"a": ["2406', headers)
            elif fault.kind == "hang":
                time.sleep(fault.seconds)
                return False
            elif fault.kind == "huge":
                size = int(fault.seconds * 1024 * 1024)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                chunk = b" " * 65536
                try:
                    for _ in range(size // len(chunk)):
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            elif fault.kind in ("endless", "drip"):  # no length: the body ends when the server hangs up
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                chunk = b" " * (1 << 20) if fault.kind == "endless" else b" "
                deadline = time.monotonic() + fault.seconds
                try:
                    while time.monotonic() < deadline:
                        self.wfile.write(chunk)
                        if fault.kind == "drip":
                            time.sleep(0.05)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True
            else:
                raise ValueError(f"unknown fault {fault.kind}")
            return True

    return Handler


def _pair_value(text: str) -> tuple[str, str]:
    pair, _, value = text.partition("=")
    if not pair or not value:
        raise SystemExit(f"expected PAIR=VALUE, got {text!r}")
    return pair.lower(), value


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--price", action="append", default=[], metavar="PAIR=P",
                        help="serve P as PAIR's last price (e.g. btceur=100000); repeatable")
    parser.add_argument("--scale", action="append", default=[], metavar="PAIR=F",
                        help="multiply PAIR's price series by F (e.g. etheur=3: a spike); repeatable")
    args = parser.parse_args()
    exchange = FakeExchange()
    exchange.steer(dict(_pair_value(text) for text in args.price),
                   {pair: float(value) for pair, value in map(_pair_value, args.scale)})
    server = _QuietServer(("127.0.0.1", args.port), _handler_for(exchange))
    print(f"fake exchange on http://127.0.0.1:{args.port} (Kraken /0/public/..., Cryptowatch /markets/...)")
    server.serve_forever()


if __name__ == "__main__":
    main()

