"""The Cryptowatch REST API (shut down in 2023; kept for compatible mirrors and the original contract).

`/markets/prices` gives every market's price in one call (`market:<venue>:<pair>` keys, or the older
`<venue>:<pair>`), paginated by cursor; `/markets/<venue>` lists a venue's markets; OHLC rows are
`[CloseTime, Open, High, Low, Close, Volume, QuoteVolume]`. Errors are `{"error": "..."}` bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mcdata.config import Settings
from mcdata.errors import ConfigError, PairError, SourceError
from mcdata.sources.base import (
    HOUR,
    Candle,
    ListedPair,
    PriceBatch,
    Quote,
    closed_candles,
    parse_price,
    parse_volume,
)
from mcdata.sources.http import HttpClient, OverHttp, Response, client_for
from mcdata.values import PAIR_PATTERN

log = logging.getLogger("mcdata.cryptowatch")

DEFAULT_URL = "https://api.cryptowat.ch"
MAX_PAGES = 100


class CryptowatchSource(OverHttp):
    name = "cryptowatch"
    max_history: timedelta | None = None

    def __init__(self, client: HttpClient, venue: str, now: Callable[[], datetime]) -> None:
        self.client = client
        self.venue = venue
        self.now = now

    @classmethod
    def create(cls, settings: Settings, now: Callable[[], datetime]) -> CryptowatchSource:
        if not settings.api_url:  # its owner shut the public API down: retrying it is 15 s of nothing
            raise ConfigError("--source cryptowatch needs api_url: Kraken shut the public Cryptowatch API down",
                              "set --api-url (MCDATA_API_URL) to a Cryptowatch-compatible mirror, or use the default "
                              "--source kraken")
        headers = {"X-CW-API-Key": settings.api_key} if settings.api_key else {}
        return cls(client_for(settings, DEFAULT_URL, headers), settings.exchange, now)

    def _get(self, path: str, params: dict[str, str | int] | None = None) -> Response:
        answer = self.client.get(path, params, ok_statuses=frozenset({200, 404}))
        body = answer.body
        if not isinstance(body, dict):
            raise SourceError(f"cryptowatch: GET {answer.url}: the answer is not a JSON object")
        allowance = body.get("allowance")
        if isinstance(allowance, dict):
            log.debug("cryptowatch: allowance cost %s, remaining %s", allowance.get("cost"),
                      allowance.get("remaining"))
        return answer

    def _result(self, answer: Response) -> Any:
        if answer.status != 200 or "result" not in answer.body:
            error = str(answer.body.get("error", "no `result` in the answer"))[:120]
            raise SourceError(f"cryptowatch: GET {answer.url} answered HTTP {answer.status} ({error})")
        return answer.body["result"]

    def list_pairs(self) -> list[ListedPair]:
        answer = self._get(f"/markets/{self.venue}")
        if answer.status == 404:
            raise SourceError(f"cryptowatch: venue {self.venue!r} not found ({answer.body.get('error')})",
                              "check --exchange")
        markets = self._result(answer)
        if not isinstance(markets, list):
            raise SourceError(f"cryptowatch: GET {answer.url}: `result` is not a list of markets")
        listed = {}
        for market in markets:
            if isinstance(market, dict) and PAIR_PATTERN.match(str(market.get("pair", ""))):
                pair = str(market["pair"])
                active = bool(market.get("active", True))
                listed[pair] = ListedPair(pair, pair, active, "online" if active else "inactive")
        return list(listed.values())

    def refresh_pairs(self) -> list[ListedPair]:
        return self.list_pairs()

    def latest_prices(self, pairs: Sequence[str]) -> PriceBatch:
        wanted = set(pairs)
        prefixes = (f"market:{self.venue}:", f"{self.venue}:")
        found: dict[str, Any] = {}
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            answer = self._get("/markets/prices", {"cursor": cursor} if cursor else None)
            prices = self._result(answer)
            if not isinstance(prices, dict):
                raise SourceError(f"cryptowatch: GET {answer.url}: `result` is not an object of prices")
            for key, value in prices.items():
                for prefix in prefixes:
                    if key.startswith(prefix) and key[len(prefix):] in wanted:
                        found.setdefault(key[len(prefix):], value)
            page = answer.body.get("cursor")
            if not (isinstance(page, dict) and page.get("hasMore") and page.get("last")):
                break
            cursor = str(page["last"])
        else:
            raise SourceError(f"cryptowatch: /markets/prices had more than {MAX_PAGES} pages")
        batch = PriceBatch()
        for pair in pairs:
            if pair not in found:
                batch.failures[pair] = PairError(pair, f"cryptowatch has no price for {self.venue}:{pair}")
                continue
            if found[pair] == 0 and not isinstance(found[pair], bool):  # real: markets that never traded
                batch.untraded[pair] = f"{pair}: {self.venue} shows no trade yet (a price of 0)"
                continue
            try:
                batch.quotes[pair] = Quote(pair, parse_price(found[pair]))
            except ValueError as exc:
                batch.failures[pair] = PairError(pair, f"cryptowatch /markets/prices: {exc}")
        return batch

    def candles(self, pair: str, since: datetime, interval: timedelta = HOUR) -> list[Candle]:
        period = int(interval.total_seconds())
        answer = self._get(f"/markets/{self.venue}/{pair}/ohlc",
                           {"periods": period, "after": int(since.timestamp())})
        if answer.status == 404:
            raise PairError(pair, f"cryptowatch: {answer.body.get('error', 'not found')}")
        result = self._result(answer)
        rows = result.get(str(period)) if isinstance(result, dict) else None
        if not isinstance(rows, list):
            raise PairError(pair, f"cryptowatch OHLC: no {period}s candles in the answer")
        candles = []
        for row in rows:
            try:
                if not isinstance(row, list) or len(row) < 6 or isinstance(row[0], bool):
                    raise ValueError(f"row {str(row)[:60]} is not [CloseTime, O, H, L, C, Volume, ...]")
                candles.append(Candle(pair, datetime.fromtimestamp(int(row[0]), UTC), parse_price(row[1]),
                                      parse_price(row[2]), parse_price(row[3]), parse_price(row[4]),
                                      parse_volume(row[5])))
            except (ValueError, TypeError, OverflowError, OSError) as exc:
                raise PairError(pair, f"cryptowatch OHLC: {exc}") from None
        return closed_candles(pair, candles, since, self.now())  # a close time after now: still forming
