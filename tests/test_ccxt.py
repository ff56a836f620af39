"""The ccxt source (issue 15, first part): Kraken through ccxt against the same fake Kraken the native
client reads, on both databases: the same names and prices as the native source, one request in the
steady state, faults mapped to mcdata's exit codes, the extra missing is exit 2."""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata import jobs
from mcdata.cli import app
from mcdata.config import load_settings
from mcdata.db import make_engine
from mcdata.migrations import upgrade
from mcdata.schema import raw_prices
from tests.fake_exchange import FakeExchange
from tests.helpers import query

NOW = datetime(2026, 11, 20, 10, 30, 15, tzinfo=UTC)


def stored_rows(url: str) -> list[tuple[Any, ...]]:
    return [(r.exchange, r.pair, r.timestamp, r.price, r.volume, r.kind) for r in query(url, sa.select(raw_prices)
            .order_by(raw_prices.c.pair, raw_prices.c.timestamp))]


def test_the_ccxt_path_stores_what_the_native_client_stores(db_url: str, tmp_path: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """One fake Kraken on a fixed clock; a fetch through each path into its own database."""
    other = f"sqlite:///{tmp_path / 'native.db'}"
    with FakeExchange(clock=NOW.timestamp) as exchange:
        for name, value in {"MCDATA_API_URL": exchange.url, "MCDATA_RATE_LIMIT": "1000", "MCDATA_BACKFILL": "2d",
                            "MCDATA_HTTP_BACKOFF": "0.01", "MCDATA_CACHE_DIR": str(tmp_path / "cache")}.items():
            monkeypatch.setenv(name, value)
        for url, source in ((other, "kraken"), (db_url, "ccxt")):
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
            monkeypatch.setenv("MCDATA_DATABASE_URL", url)
            report = jobs.fetch(load_settings({"source": source}), now=NOW)
            assert report.exit_code == 0, report.errors
            assert report.pairs_stored == 9
    native, through_ccxt = stored_rows(other), stored_rows(db_url)
    assert len(native) == 9 * (48 + 1)  # 48 hourly candles and a ticker per pair
    assert through_ccxt == native


@pytest.fixture
def ccxt_env(exchange_env: dict[str, str], env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MCDATA_SOURCE", "ccxt")
    return env


def test_the_steady_state_is_one_request(ccxt_env: str, runner: CliRunner, fake_exchange: FakeExchange) -> None:
    first = runner.invoke(app, ["fetch", "--backfill", "0"])
    assert first.exit_code == 0, first.stderr
    before = len(fake_exchange.requests)
    second = runner.invoke(app, ["fetch", "--backfill", "0"])
    assert second.exit_code == 0, second.stderr
    assert [r.split("?")[0] for r in fake_exchange.requests[before:]] == ["/0/public/Ticker"]  # markets: cached


def test_pairs_lists_the_venues_markets_by_mcdata_name(ccxt_env: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["pairs", "csv"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "btceur,BTC/EUR,true,online,true" in lines
    assert "dogeusd,DOGE/USD,true,online,true" in lines  # Kraken's XDG, named as the native client names it


def test_an_outage_is_exit_1_after_retries(ccxt_env: str, runner: CliRunner, fake_exchange: FakeExchange) -> None:
    assert runner.invoke(app, ["pairs"]).exit_code == 0  # the markets are cached
    fake_exchange.fail("/0/public/Ticker", "kraken_error", times=99, message="EService:Unavailable")
    result = runner.invoke(app, ["fetch", "--backfill", "0"])
    assert result.exit_code == 1
    assert "ccxt kraken: fetch_tickers failed after 3 attempts: ExchangeNotAvailable" in result.stderr
    assert query(ccxt_env, sa.select(sa.func.count()).select_from(raw_prices))[0][0] == 0


def test_throttling_is_retried(ccxt_env: str, runner: CliRunner, fake_exchange: FakeExchange) -> None:
    assert runner.invoke(app, ["pairs"]).exit_code == 0
    fake_exchange.fail("/0/public/Ticker", "kraken_error", times=1, message="EAPI:Rate limit exceeded")
    fake_exchange.fail("/0/public/Ticker", "html", times=1, status=503)  # a gateway's page: an outage
    result = runner.invoke(app, ["fetch", "--backfill", "0"])
    assert result.exit_code == 0, result.stderr


def test_a_bad_price_fails_its_pair_only(ccxt_env: str, runner: CliRunner, fake_exchange: FakeExchange) -> None:
    fake_exchange.price_overrides["btceur"] = "1e200"
    result = runner.invoke(app, ["fetch", "--backfill", "0", "--pairs", "btceur,etheur"])
    assert result.exit_code == 3
    assert "btceur: kraken ticker: price 1e+200 is outside the band" in result.stderr
    assert {r.pair for r in query(ccxt_env, sa.select(raw_prices))} == {"etheur"}


def test_an_unknown_venue_and_a_missing_extra_are_exit_2(ccxt_env: str, runner: CliRunner,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = runner.invoke(app, ["pairs", "--exchange", "binanse"])
    assert unknown.exit_code == 2 and "ccxt has no exchange 'binanse'; did you mean binance" in unknown.stderr
    real_import = builtins.__import__

    def without_ccxt(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ccxt" or name.startswith("ccxt."):
            raise ImportError("No module named 'ccxt'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_ccxt)
    missing = runner.invoke(app, ["pairs"])
    assert missing.exit_code == 2
    assert "--source ccxt needs ccxt, an optional extra of mcdata; install it: pip install '.[ccxt]' in your clone" in (
        missing.stderr)


def test_a_venue_that_serves_less_history_says_so(ccxt_env: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch", "--pairs", "btceur", "--backfill", "40d"])
    assert result.exit_code == 0, result.stderr
    assert "btceur: kraken serves hourly candles from" in result.stderr and "only (asked from" in result.stderr
    candles = query(ccxt_env, sa.select(sa.func.count()).select_from(raw_prices).where(raw_prices.c.kind == "candle"))
    assert candles[0][0] == 719  # Kraken's newest 720 rows, the one still forming left out


@pytest.mark.parametrize(("kind", "options"), [
    ("body", {"message": '{"error": [], "result": {}}'}),  # a list that names nothing
    ("body", {"message": "{}"}),
    ("html", {}),  # a maintenance page
    ("truncated", {}),
])
def test_a_market_list_that_names_nothing_is_never_cached(ccxt_env: str, runner: CliRunner,
                                                          fake_exchange: FakeExchange, kind: str,
                                                          options: dict[str, str]) -> None:
    fake_exchange.fail("/0/public/AssetPairs", kind, **options)  # type: ignore[arg-type]
    failed = runner.invoke(app, ["fetch", "--backfill", "0"])
    assert failed.exit_code == 1
    assert "ccxt kraken: " in failed.stderr and "unexpected" not in failed.stderr
    listings = fake_exchange.count("/0/public/AssetPairs")
    result = runner.invoke(app, ["fetch", "--backfill", "0"])  # the next run asks again, and stores
    assert result.exit_code == 0, result.stderr
    assert fake_exchange.count("/0/public/AssetPairs") == listings + 1
    assert len(query(ccxt_env, sa.select(raw_prices))) == 9
