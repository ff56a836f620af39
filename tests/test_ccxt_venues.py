"""The ccxt source against Binance's, Bitstamp's and Coinbase's recorded answers (tests/fake_venues.py), with Kraken
beside them, on both databases: markets, tickers in one request per venue, deep OHLCV history in
pages, throttling, an outage, a delisted market, and metrics per venue equal to the reference."""

from __future__ import annotations

import itertools
import json
import math
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata.cli import app
from mcdata.config import ORIGINAL_PAIRS
from mcdata.schema import metrics, raw_prices
from tests.fake_exchange import FakeExchange
from tests.helpers import assert_metrics_exact, query


@pytest.fixture
def ccxt_env(env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MCDATA_SOURCE", "ccxt")
    monkeypatch.setenv("MCDATA_PAIRS", "all")
    return env


def paths(exchange: FakeExchange, since: int = 0) -> list[str]:
    return [urlsplit(r).path for r in exchange.requests[since:]]


def stored(url: str, venue: str) -> dict[str, int]:
    rows = query(url, sa.select(raw_prices.c.pair, sa.func.count()).where(raw_prices.c.exchange == venue)
                 .group_by(raw_prices.c.pair))
    return {pair: count for pair, count in rows}


@pytest.mark.parametrize(("venue", "listed", "requests"), [
    ("binance", {"btcusdt": "BTC/USDT", "ethusdt": "ETH/USDT", "adausdt": "ADA/USDT", "btceur": "BTC/EUR",
                 "etheur": "ETH/EUR", "adaeur": "ADA/EUR"}, 1),
    ("bitstamp", {"btcusd": "BTC/USD", "btceur": "BTC/EUR", "ltcusd": "LTC/USD", "ethusd": "ETH/USD"}, 1),
    ("coinbase", {"btcusdc": "BTC/USDC", "btcusdt": "BTC/USDT", "ethusdt": "ETH/USDT"}, 2),  # spot, futures
])
def test_pairs_lists_the_venues_markets(ccxt_env: str, runner: CliRunner, fake_exchange: FakeExchange,
                                        venue: str, listed: dict[str, str], requests: int) -> None:
    result = runner.invoke(app, ["pairs", "json", "--exchange", venue])
    assert result.exit_code == 0, result.stderr
    shown = {row["pair"]: row["venue_symbol"] for row in json.loads(result.stdout)}
    assert shown == listed
    assert len(fake_exchange.requests) == requests  # the market lists only: no currencies


def test_three_venues_and_kraken_in_one_run_then_one_request_per_venue(
        ccxt_env: str, runner: CliRunner, fake_exchange: FakeExchange) -> None:
    venues = "binance,bitstamp,coinbase,kraken"
    result = runner.invoke(app, ["run", "--exchange", venues, "--backfill", "2d"])
    assert result.exit_code == 0, result.stderr
    assert set(stored(ccxt_env, "binance")) == {"btcusdt", "ethusdt", "adausdt", "btceur", "etheur", "adaeur"}
    assert set(stored(ccxt_env, "bitstamp")) == {"btcusd", "btceur", "ltcusd", "ethusd"}
    assert set(stored(ccxt_env, "coinbase")) == {"btcusdc", "btcusdt", "ethusdt"}
    assert "btceur" in stored(ccxt_env, "kraken")
    for venue in ("binance", "bitstamp", "coinbase"):  # 48 closed hourly candles and the ticker, per market
        assert set(stored(ccxt_env, venue).values()) == {49}
    as_of = query(ccxt_env, sa.select(sa.func.max(metrics.c.timestamp)))[0][0]
    assert_metrics_exact(ccxt_env, as_of)
    overview = json.loads(runner.invoke(app, ["show", "json"]).stdout)
    assert overview["ranked_pairs"]["binance"] == 6 and overview["ranked_pairs"]["bitstamp"] == 4

    before = len(fake_exchange.requests)
    again = runner.invoke(app, ["run", "--exchange", venues, "--backfill", "2d"])
    assert again.exit_code == 0, again.stderr
    assert sorted(paths(fake_exchange, before)) == ["/0/public/Ticker", "/api/v2/ticker/",
                                                     "/api/v3/brokerage/market/products", "/api/v3/ticker/24hr"]


def test_venues_are_fetched_at_the_same_time(ccxt_env: str, runner: CliRunner, fake_exchange: FakeExchange) -> None:
    venues = "binance,bitstamp,coinbase,kraken"
    assert runner.invoke(app, ["run", "--exchange", venues, "--backfill", "2d"]).exit_code == 0
    latency = 1.5  # every answer 1.5 s away: one venue after another would start 1.5 s apart at least
    fake_exchange.latency = latency
    before = len(fake_exchange.requests)
    again = runner.invoke(app, ["run", "--exchange", venues, "--backfill", "2d"])
    assert again.exit_code == 0, again.stderr
    asked = list(zip(paths(fake_exchange, before), fake_exchange.request_times[before:], strict=True))
    assert len(asked) == 4  # one ticker request per venue...
    starts = [at for _, at in asked]
    assert max(starts) - min(starts) < latency  # ...all asked before the first answer came: not one after another


@pytest.mark.parametrize(("venue", "pair", "symbol", "per_page"), [
    ("binance", "btcusdt", ("BTC", "USDT"), 500), ("coinbase", "btcusdt", ("BTC", "USDT"), 300)])
def test_a_year_of_history_comes_in_pages(ccxt_env: str, runner: CliRunner, fake_exchange: FakeExchange,
                                          venue: str, pair: str, symbol: tuple[str, str], per_page: int) -> None:
    result = runner.invoke(app, ["fetch", "--exchange", venue, "--pairs", pair, "--backfill", "365d"])
    assert result.exit_code == 0, result.stderr
    pages = sum(1 for path in paths(fake_exchange) if path.endswith(("/klines", "/candles")))
    candles = query(ccxt_env, sa.select(raw_prices.c.timestamp).where(raw_prices.c.kind == "candle")
                    .order_by(raw_prices.c.timestamp))
    times = [row[0] for row in candles]
    assert len(times) >= 365 * 24 - 1 and pages == math.ceil((len(times) + 1) / per_page)
    assert all(later - earlier == timedelta(hours=1) for earlier, later in itertools.pairwise(times))
    assert times[-1] <= datetime.now(UTC) and "serves hourly candles from" not in result.stderr
    if ccxt_env.startswith("postgresql"):  # the year's months got their partitions before the backfill wrote
        from mcdata import partitions
        assert query(ccxt_env, sa.text(f"SELECT count(*) FROM {partitions.DEFAULT}")) == [(0,)]
    # the candles are the venue's: each close equals the replayed series at the candle's close time
    venues = fake_exchange.venues
    for close_time, price in query(ccxt_env, sa.select(raw_prices.c.timestamp, raw_prices.c.price)
                                   .where(raw_prices.c.kind == "candle").limit(5)):
        assert price == pytest.approx(venues.series_price(venue, *symbol, close_time.timestamp()), rel=1e-8)


# per venue: its ticker path, its market-list path, a market to delist (venue symbol, mcdata name), the rest
VENUES = {
    "binance": ("/api/v3/ticker/24hr", "/api/v3/exchangeInfo", ("ADAUSDT", "adausdt"),
                {"btcusdt", "ethusdt", "btceur", "etheur", "adaeur"}),
    "bitstamp": ("/api/v2/ticker/", "/api/v2/markets/", ("ltcusd", "ltcusd"), {"btcusd", "btceur", "ethusd"}),
    "coinbase": ("/api/v3/brokerage/market/products", "/api/v3/brokerage/market/products",
                 ("ETH-USDT", "ethusdt"), {"btcusdc", "btcusdt"}),
}
OTHER = {"binance": "bitstamp", "bitstamp": "coinbase", "coinbase": "binance"}


@pytest.mark.parametrize("venue", sorted(VENUES))
def test_throttling_is_retried_and_an_outage_fails_that_venue_only(
        ccxt_env: str, runner: CliRunner, fake_exchange: FakeExchange, venue: str) -> None:
    tickers = VENUES[venue][0]
    assert runner.invoke(app, ["pairs", "--exchange", venue]).exit_code == 0  # markets cached
    before = len(fake_exchange.requests)
    fake_exchange.fail(tickers, "status", times=1, status=429, retry_after="1")
    throttled = runner.invoke(app, ["fetch", "--exchange", venue, "--backfill", "0"])
    assert throttled.exit_code == 0, throttled.stderr
    assert paths(fake_exchange, before) == [tickers, tickers]  # throttled, then answered
    assert "(HTTP 429); retry 1/2 in 1.0s" in throttled.stderr  # the venue's Retry-After, not the backoff

    fake_exchange.fail(tickers, "status", times=99, status=503)
    other = OTHER[venue]
    down = runner.invoke(app, ["fetch", "--exchange", f"{venue},{other}", "--backfill", "0"])
    assert down.exit_code == 3
    assert f"{venue}: ccxt {venue}: fetch_tickers failed after 3 attempts" in down.stderr
    assert set(stored(ccxt_env, other)) == VENUES[other][3] | {VENUES[other][2][1]}


@pytest.mark.parametrize("venue", sorted(VENUES))
def test_a_delisted_market_fails_alone(ccxt_env: str, runner: CliRunner, fake_exchange: FakeExchange,
                                       venue: str) -> None:
    _, listing, (symbol, pair), rest = VENUES[venue]
    assert runner.invoke(app, ["fetch", "--exchange", venue, "--backfill", "0"]).exit_code == 0
    lists_before = paths(fake_exchange).count(listing)
    fake_exchange.venues.delisted.add(symbol)  # Binance refuses the whole batched request for it
    named = runner.invoke(app, ["fetch", "--exchange", venue, "--backfill", "0", "--pairs", ",".join([*rest, pair])])
    assert named.exit_code == 3, named.stderr
    assert f"{pair}: no longer listed by {venue}" in named.stderr
    assert f"{len(rest)} of {len(rest) + 1} pairs stored" in named.stderr
    assert paths(fake_exchange).count(listing) > lists_before  # the market list was asked again
    every = runner.invoke(app, ["fetch", "--exchange", venue, "--backfill", "0"])  # `all`: it is gone
    assert every.exit_code == 0, every.stderr
    assert f"{len(rest)} of {len(rest)} pairs stored" in every.stderr and stored(ccxt_env, venue)[pair] == 1


def test_a_named_pair_comes_from_every_venue_that_lists_it(ccxt_env: str, runner: CliRunner) -> None:
    """Binance quotes in USDT and EUR, Kraken in USD and EUR: each venue fetches the named pairs it lists."""
    both = runner.invoke(app, ["run", "--exchange", "binance,kraken", "--pairs", "btceur,btcusdt", "--backfill", "0"])
    assert both.exit_code == 0, both.stderr
    assert set(stored(ccxt_env, "binance")) == {"btcusdt", "btceur"} and set(stored(ccxt_env, "kraken")) == {"btceur"}
    assert "not listed" not in both.stderr  # btcusdt is Binance's: Kraken not listing it is no news
    nowhere = runner.invoke(app, ["fetch", "--exchange", "binance,kraken", "--pairs", "btceur,btcusdx",
                                  "--backfill", "0"])
    assert nowhere.exit_code == 3
    assert "btcusdx: listed by none of binance, kraken" in nowhere.stderr
    assert "btcusdx: not listed by binance (did you mean btcusdt or btceur?)" in nowhere.stderr


def test_the_default_pairs_from_binance_and_kraken(env: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                   fake_exchange: FakeExchange) -> None:
    """The issue's command as it stands, no --pairs: each venue fetches the default pairs it lists, each its own
    series; the defaults a venue does not list are skipped (one line says which), not a failure."""
    monkeypatch.delenv("MCDATA_PAIRS", raising=False)
    result = runner.invoke(app, ["run", "--source", "ccxt", "--exchange", "binance,kraken", "--backfill", "1d"])
    assert result.exit_code == 0, result.stderr
    assert set(stored(env, "binance")) == {"btceur", "etheur", "adaeur"}
    kraken = {pair for pair, listed in fake_exchange.markets.items() if listed.status == "online"}
    assert set(stored(env, "kraken")) == kraken & set(ORIGINAL_PAIRS) and "waveseur" not in kraken
    assert {stored(env, "binance")["btceur"], *stored(env, "kraken").values()} == {25}  # 24 closed hours, a ticker
    assert_metrics_exact(env, query(env, sa.select(sa.func.max(metrics.c.timestamp)))[0][0])
    assert ("not listed by binance: btcusd, ltceur, solusd, xrpusd, waveseur, bateth, dogeusd (of the default "
            "pairs); skipped") in result.stderr  # one line, not seven
    assert "waveseur: not listed by kraken; skipped" in result.stderr

    # status only reads: it watches any venue, with the default source (kraken) as cron's shell would have it
    status = runner.invoke(app, ["status", "--exchange", "binance,kraken"])
    assert status.exit_code == 0, status.stderr
    assert re.search(r"│ binance +│ btceur +│", status.stdout) and re.search(r"│ kraken +│ btceur +│", status.stdout)
    one = json.loads(runner.invoke(app, ["status", "json", "--exchange", "binance"]).stdout)
    assert sorted(p["pair"] for p in one["pairs"]) == ["adaeur", "btceur", "etheur"]
    venues = {"MCDATA_EXCHANGE": "binance,kraken"}  # and so does every command that never asks the source
    shown = runner.invoke(app, ["show", "csv"], env=venues)
    assert shown.exit_code == 0, shown.stderr
    markets = {tuple(line.split(",")[:2]) for line in shown.stdout.split()}
    assert {("binance", "btceur"), ("kraken", "btceur")} <= markets
    refused = runner.invoke(app, ["fetch"], env=venues)  # while a fetch from them needs a source that serves them
    assert refused.exit_code == 2 and "the kraken source serves only the kraken venue" in refused.stderr
    never = runner.invoke(app, ["status", "--exchange", "kraken,bitstamp"])
    assert never.exit_code == 1
    assert "unhealthy: nothing stored for bitstamp: no run has fetched that venue" in never.stderr


@pytest.mark.parametrize(("kind", "said"), [("html", "an HTML page"), ("truncated", "JSON ccxt could not read")])
def test_an_answer_ccxt_cannot_read_is_one_line(ccxt_env: str, runner: CliRunner, fake_exchange: FakeExchange,
                                                kind: str, said: str) -> None:
    assert runner.invoke(app, ["pairs", "--exchange", "binance"]).exit_code == 0
    fake_exchange.fail("/api/v3/ticker/24hr", kind, times=9)
    result = runner.invoke(app, ["fetch", "--exchange", "binance", "--backfill", "0"])
    assert result.exit_code == 1
    assert f"error: ccxt binance: fetch_tickers: the venue answered {said}" in result.stderr
    assert "Traceback" not in result.stderr and "AttributeError" not in result.stderr
