"""Any exchange ccxt speaks, one venue per source (`--source ccxt --exchange binance`), through ccxt's
unified API: its markets, `fetch_tickers` (one request for every pair where the venue has it) and
`fetch_ohlcv` (hourly candles, paged from `since`).

ccxt is an optional extra (`pip install '.[ccxt]'` in a clone; the distribution is mcdata-collector): this
module imports it only when the source is made, and says how to install it when it is missing (exit 2).

Names: a market's unified base and quote (BTC/EUR, DOGE/USD: ccxt already turns Kraken's XBT and XDG
into BTC and DOGE) joined and lower-cased, as the native sources name them (btceur, dogeusd). Two spot
markets that would get one name are both refused (listed as not trading, `ambiguous`), never merged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, cast
from urllib.parse import urlsplit

from mcdata.config import Settings
from mcdata.errors import ConfigError, PairError, SourceError, did_you_mean, masked_service_url
from mcdata.sources.base import HOUR, Candle, ListedPair, PriceBatch, Quote, closed_candles, parse_price, parse_volume
from mcdata.sources.cache import PairListCache
from mcdata.sources.http import MAX_ANSWER_BYTES, BoundedSession, Budget, Retryable, retry_after_seconds, retrying
from mcdata.values import PAIR_PATTERN
from mcdata.wording import instant_text

log = logging.getLogger("mcdata.ccxt")

INSTALL = "pip install '.[ccxt]' in your clone of mcdata (the distribution mcdata-collector, extra ccxt)"
MAX_PAGES = 200  # of candles per pair and request of history: far more than any backfill needs


def _ccxt() -> Any:
    try:
        import ccxt
    except ImportError:
        raise ConfigError("--source ccxt needs ccxt, an optional extra of mcdata", f"install it: {INSTALL}") from None
    return ccxt


def _pointed_at(api: Any, base_url: str) -> Any:
    """ccxt's API URLs with their scheme and host replaced by `base_url`'s (paths kept): a mirror or a
    replay server that serves the venue's own paths."""
    target = urlsplit(base_url)
    if isinstance(api, dict):
        return {key: _pointed_at(value, base_url) for key, value in api.items()}
    if isinstance(api, str) and api.startswith(("http://", "https://")):
        parts = urlsplit(api)
        path = target.path.rstrip("/") + parts.path
        return parts._replace(scheme=target.scheme, netloc=target.netloc, path=path).geturl()
    return api


class CcxtSource:
    name = "ccxt"
    max_history: timedelta | None = None  # per venue; a venue that serves less is told (candles)

    def __init__(self, exchange: Any, venue: str, settings: Settings, now: Callable[[], datetime],
                 budget: Budget) -> None:
        self.exchange = exchange
        self.budget = budget
        self.venue = venue
        self.now = now
        self.retries = settings.http_retries
        self.backoff = settings.http_backoff
        self.retry_after_max = settings.retry_after_max.total_seconds()
        self.requests = 0
        self.server_time: datetime | None = None
        self._listing: dict[str, ListedPair] | None = None
        self._downloaded = False
        shown = masked_service_url(settings.api_url) if settings.api_url else venue
        self.cache = PairListCache(settings.cache_dir, f"ccxt-{venue}", shown, now, kind="markets")
        fetch = exchange.fetch

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            answer = fetch(*args, **kwargs)
            if self.server_time is None:
                self.server_time = _http_date(getattr(exchange, "last_response_headers", None))
            return answer

        exchange.fetch = counted

    @classmethod
    def create(cls, settings: Settings, now: Callable[[], datetime]) -> CcxtSource:
        ccxt = _ccxt()
        venue = settings.exchange
        if venue not in ccxt.exchanges:
            raise ConfigError(f"ccxt has no exchange {venue!r}",
                              did_you_mean(venue, ccxt.exchanges)
                              or "`python -c 'import ccxt; print(ccxt.exchanges)'` lists them")
        # ccxt's own HTTP calls go through a session with the native client's bounds (no redirect, a byte cap
        # after decompression, a deadline per answer and for the whole fetch)
        budget = Budget(f"ccxt {venue}", settings.fetch_timeout.total_seconds())
        session = BoundedSession(budget, settings.http_timeout, MAX_ANSWER_BYTES)
        options: dict[str, Any] = {"enableRateLimit": True, "timeout": int(settings.http_timeout * 1000),
                                   "session": session}
        if settings.origins.get("rate_limit", "default") != "default":  # else ccxt's own pace for the venue
            options["rateLimit"] = 1000 / settings.rate_limit
        exchange = getattr(ccxt, venue)(options)
        # mcdata reads spot markets only: no currency list, no derivative market lists (Binance's futures
        # lists are two more requests, and two more ways for the market list to fail)
        exchange.has["fetchCurrencies"] = False
        listing_options = exchange.options.get("fetchMarkets")
        if isinstance(listing_options, dict) and "types" in listing_options:
            listing_options["types"] = ["spot"]
        if settings.api_url:
            exchange.urls["api"] = _pointed_at(exchange.urls["api"], settings.api_url)
        return cls(exchange, venue, settings, now, budget)

    @property
    def http_requests(self) -> int:
        return self.requests

    def cancel(self) -> None:
        self.budget.cancelled.set()

    # -- calls --------------------------------------------------------------------------------------
    def _call(self, what: str, call: Callable[[], Any], pair: str | None = None, *, batch: bool = False) -> Any:
        """One ccxt call with mcdata's retries: network trouble, throttling and outages are retried, then a
        SourceError; a symbol the venue does not know is that pair's PairError (in a `batch`, _Refused)."""
        import ccxt

        def attempt() -> Any:
            self.budget.check()
            try:
                return call()
            except ccxt.BadSymbol as exc:
                if batch:
                    raise _Refused(_first_line(exc)) from None
                if pair is None:
                    raise SourceError(f"ccxt {self.venue}: {what}: {_first_line(exc)}") from None
                raise PairError(pair, f"{self.venue} does not know this market ({_first_line(exc)})") from None
            except ccxt.BaseError as exc:
                # timeouts, outages and throttling: ccxt's NetworkError family, or an HTTP 429 or 5xx that a
                # venue's own error parsing turned into another class (Bitstamp's and Coinbase's do)
                status, retry_after = _http_answer(exc, self.retry_after_max)
                if not (isinstance(exc, ccxt.NetworkError) or status == 429 or (status or 0) >= 500):
                    if pair is not None:
                        raise PairError(pair, f"{self.venue}: {_first_line(exc)}") from None
                    raise SourceError(f"ccxt {self.venue}: {what}: {exc.__class__.__name__}: "
                                      f"{_first_line(exc)}") from None
                answered = f" (HTTP {status})" if status else ""
                raise Retryable(f"{exc.__class__.__name__}{answered}", retry_after, _first_line(exc)) from None
            except (ValueError, TypeError, KeyError, AttributeError):  # an answer ccxt could not read
                raise SourceError(f"ccxt {self.venue}: {what}: the venue answered "
                                  f"{_unreadable(getattr(self.exchange, 'last_http_response', None))}",
                                  "the next run will try again") from None

        return retrying(attempt, retries=self.retries, base=self.backoff, budget=self.budget,
                        said=f"ccxt {self.venue}: {what}", failed=f"ccxt {self.venue}: {what}",
                        hint="the venue may be down or throttling; the next run will try again")

    # -- pairs --------------------------------------------------------------------------------------
    def _markets(self, refresh: bool) -> dict[str, ListedPair]:
        """The venue's spot markets by mcdata name: from the cache, else downloaded. A list is cached only
        once it names a market (an HTML page, `{}` or an error body read as an empty list would silence
        the venue for a day), and a cached one is checked the same way."""
        if not refresh:
            cached = self.cache.load(self._use_cached)
            if cached is not None:
                return cast(dict[str, ListedPair], cached)
        markets = self._call("load_markets", lambda: self.exchange.load_markets(reload=True))
        listing = _listing(markets, self.venue)
        self._downloaded = True
        self.cache.save({"markets": markets})
        return listing

    def _use_cached(self, data: dict[str, Any]) -> dict[str, ListedPair]:
        markets = data["markets"]
        if not isinstance(markets, dict) or not all(
                isinstance(m, dict) and isinstance(m.get("symbol"), str) for m in markets.values()):
            raise ValueError("not a ccxt market list")
        listing = _listing(markets, self.venue)
        self.exchange.set_markets(markets)
        return listing

    def _list(self, refresh: bool = False) -> dict[str, ListedPair]:
        if self._listing is None or (refresh and not self._downloaded):
            self._listing = self._markets(refresh)
        return self._listing

    def list_pairs(self) -> list[ListedPair]:
        return list(self._list().values())

    def refresh_pairs(self) -> list[ListedPair]:
        return list(self._list(refresh=True).values())

    # -- prices -------------------------------------------------------------------------------------
    def latest_prices(self, pairs: Sequence[str]) -> PriceBatch:
        listing = self._list()
        tickers: dict[str, Any] = {}
        if self.exchange.has.get("fetchTickers"):
            try:
                tickers = self._tickers(listing, pairs)
            except _Refused:  # a market delisted since the list was cached fails the whole request on some venues
                listing = self._list(refresh=True)
                try:
                    tickers = self._tickers(listing, pairs)
                except _Refused:
                    tickers = self._each_ticker(listing, pairs)
        else:
            tickers = self._each_ticker(listing, pairs)
        batch = PriceBatch()
        for pair in pairs:
            listed = listing.get(pair)
            if listed is None:
                batch.failures[pair] = PairError(pair, f"{self.venue} no longer lists this market")
                continue
            ticker = tickers.get(listed.venue_symbol)
            if isinstance(ticker, PairError):
                batch.failures[pair] = ticker
                continue
            last = ticker.get("last") if isinstance(ticker, dict) else None
            last = ticker.get("close") if last is None and isinstance(ticker, dict) else last
            if last is None:
                batch.failures[pair] = PairError(pair, f"{self.venue} has no last price for this market")
                continue
            if last == 0:
                batch.untraded[pair] = f"{pair}: {self.venue} shows no trade yet (a price of 0)"
                continue
            try:
                batch.quotes[pair] = Quote(pair, parse_price(last))
            except ValueError as exc:
                batch.failures[pair] = PairError(pair, f"{self.venue} ticker: {exc}")
        return batch

    def _tickers(self, listing: dict[str, ListedPair], pairs: Sequence[str]) -> dict[str, Any]:
        """Every asked market's ticker in one request."""
        symbols = [listing[p].venue_symbol for p in pairs if p in listing]
        return dict(self._call("fetch_tickers", lambda: self.exchange.fetch_tickers(symbols), batch=True))

    def _each_ticker(self, listing: dict[str, ListedPair], pairs: Sequence[str]) -> dict[str, Any]:
        """One request per market, within the rate limit (a venue without fetchTickers, or a refused batch)."""
        tickers = {}
        for pair in pairs:
            if pair in listing:
                symbol = listing[pair].venue_symbol
                try:
                    tickers[symbol] = self._call("fetch_ticker", self._ticker_of(symbol), pair)
                except PairError as refused:
                    tickers[symbol] = refused
        return tickers

    def candles(self, pair: str, since: datetime, interval: timedelta = HOUR) -> list[Candle]:
        """Hourly candles closing after `since`, paged forward with `since` (candle open times) until now."""
        symbol = self._list()[pair].venue_symbol
        step = int(interval.total_seconds() * 1000)
        cursor = int((since - interval).timestamp() * 1000)
        rows: list[Any] = []
        for _ in range(MAX_PAGES):
            page = self._call("fetch_ohlcv", self._page_of(symbol, cursor), pair)
            fresh = [r for r in page if isinstance(r, list) and r and isinstance(r[0], int | float) and r[0] >= cursor]
            if not fresh:
                break
            rows += fresh
            cursor = int(max(r[0] for r in fresh)) + step
            if cursor + step > self.now().timestamp() * 1000:
                break
        candles = closed_candles(pair, (self._candle(pair, row, interval) for row in rows), since, self.now())
        if candles and candles[0].close_time - since > 2 * interval and since < self.now() - 2 * interval:
            log.warning("warning: %s: %s serves hourly candles from %s only (asked from %s)", pair, self.venue,
                        instant_text(candles[0].close_time), instant_text(since))
        return candles

    def _ticker_of(self, symbol: str) -> Callable[[], Any]:
        return lambda: self.exchange.fetch_ticker(symbol)

    def _page_of(self, symbol: str, since_ms: int) -> Callable[[], Any]:
        return lambda: self.exchange.fetch_ohlcv(symbol, "1h", since=since_ms)

    def _candle(self, pair: str, row: list[Any], interval: timedelta) -> Candle:
        try:
            if len(row) < 6:
                raise ValueError(f"row {str(row)[:60]} is not [time, open, high, low, close, volume]")
            start = datetime.fromtimestamp(row[0] / 1000, UTC)
            volume = parse_volume(row[5]) if row[5] is not None else None
            return Candle(pair, start + interval, parse_price(row[1]), parse_price(row[2]), parse_price(row[3]),
                          parse_price(row[4]), volume)
        except (ValueError, TypeError, OverflowError, OSError) as exc:
            raise PairError(pair, f"{self.venue} OHLCV: {exc}") from None


class _Refused(Exception):
    """The venue refused a symbol of a batched request."""


def _listing(markets: dict[str, Any], venue: str) -> dict[str, ListedPair]:
    """Spot markets by mcdata name; two markets with one name are both refused."""
    by_name: dict[str, list[Any]] = {}
    for market in markets.values():
        if not isinstance(market, dict) or market.get("spot") is False or market.get("type") not in (None, "spot"):
            continue
        base, quote = market.get("base"), market.get("quote")
        if not isinstance(base, str) or not isinstance(quote, str):
            continue
        name = (base + quote).lower()
        if PAIR_PATTERN.match(name):
            by_name.setdefault(name, []).append(market)
    listing = {}
    for name, found in sorted(by_name.items()):
        if len(found) > 1:
            symbols = " and ".join(sorted(str(m.get("symbol")) for m in found))
            listing[name] = ListedPair(name, symbols, False, "ambiguous")
            log.warning("warning: %s is the name of %s: neither is fetched", name, symbols)
            continue
        market = found[0]
        active = market.get("active") is not False
        listing[name] = ListedPair(name, str(market["symbol"]), active, "online" if active else "inactive")
    if not listing:
        raise SourceError(f"ccxt {venue}: the market list names no spot market mcdata can name; not cached",
                          "the next run asks again")
    return listing


def _http_date(headers: Any) -> datetime | None:
    value = headers.get("Date") if hasattr(headers, "get") else None
    try:
        moment = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
    return moment.astimezone(UTC) if moment and moment.tzinfo else None


def _http_answer(error: BaseException, cap: float) -> tuple[int | None, float | None]:
    """The HTTP status and Retry-After (seconds) of the answer behind a ccxt error, if one is behind it:
    ccxt raises its errors while handling the HTTP library's, which keeps the answer."""
    seen: BaseException | None = error
    for _ in range(5):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        answer = getattr(seen, "response", None)
        status = getattr(answer, "status_code", None)
        if answer is not None and isinstance(status, int):
            return status, retry_after_seconds(answer.headers.get("Retry-After"), cap)
    return None, None


def _unreadable(body: object) -> str:
    """What an answer ccxt could not read looked like (a gateway's page, a cut or odd JSON document)."""
    text = body.lstrip()[:1] if isinstance(body, str) else ""
    if not text:
        return "nothing ccxt could read"
    return "an HTML page" if text == "<" else "JSON ccxt could not read (truncated, or not the venue's shape)"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else error.__class__.__name__
