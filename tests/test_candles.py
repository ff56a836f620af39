"""Issue 26, whole candles: every candle a source returns is stored whole in `candles`, at no extra request,
keyed by venue, pair, interval and open time, idempotent, append-only and checked like the raw table. On
both databases, against the fake exchange's OHLC answers read back over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata import store
from mcdata.cli import app
from mcdata.schema import candles, raw_prices
from tests.fake_exchange import FakeExchange
from tests.helpers import count_rows, execute, query

HOUR = timedelta(hours=1)


def served_candles(exchange: FakeExchange, pair: str) -> dict[datetime, list[Any]]:
    """The fake exchange's OHLC rows for a pair, by open time, as Kraken writes them."""
    altname = {"btceur": "XBTEUR", "etheur": "ETHEUR"}[pair]
    answer = requests.get(f"{exchange.url}/0/public/OHLC", params={"pair": altname, "interval": 60}, timeout=5)
    rows = next(value for key, value in answer.json()["result"].items() if key != "last")
    return {datetime.fromtimestamp(row[0], UTC): row for row in rows}


def test_every_candle_is_stored_whole_and_its_close_in_the_raw_table(env: str, runner: CliRunner,
                                                                    fake_exchange: FakeExchange) -> None:
    result = runner.invoke(app, ["fetch", "--pairs", "btceur,etheur", "--backfill", "1d"])
    assert result.exit_code == 0, result.stderr
    served = served_candles(fake_exchange, "btceur")
    stored = query(env, sa.select(candles).where(candles.c.pair == "btceur").order_by(candles.c.open_time))
    closes = {r.timestamp: r.price for r in query(env, sa.select(raw_prices).where(
        raw_prices.c.pair == "btceur", raw_prices.c.kind == "candle"))}
    assert len(stored) == len(closes) >= 23
    requests_before = len(fake_exchange.requests)
    for candle in stored:
        row = served[candle.open_time]
        assert (candle.exchange, candle.interval_s) == ("kraken", 3600)
        assert (candle.open, candle.high, candle.low, candle.close) == tuple(float(v) for v in row[1:5])
        assert (candle.vwap, candle.volume, candle.trades) == (float(row[5]), float(row[6]), row[7])
        assert closes[candle.open_time + HOUR] == candle.close  # the raw table keeps the close at the close time
    assert len(fake_exchange.requests) == requests_before  # (reading the fake back asked nothing of mcdata)


def test_fetching_again_changes_nothing(env: str, runner: CliRunner, fake_exchange: FakeExchange) -> None:
    assert runner.invoke(app, ["fetch", "--pairs", "btceur", "--backfill", "1d"]).exit_code == 0
    before = query(env, sa.select(candles).order_by(candles.c.open_time))
    engine = sa.create_engine(env)
    try:
        with engine.begin() as connection:
            again = [store.CandleRow(r.exchange, r.pair, r.interval_s, r.open_time, r.open, r.high, r.low, r.close,
                                     r.vwap, r.volume, r.trades, r.fetched_at) for r in before]
            assert store.insert_candles(connection, again) == 0
    finally:
        engine.dispose()
    assert query(env, sa.select(candles).order_by(candles.c.open_time)) == before


def _candle(**values: Any) -> dict[str, Any]:
    start = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    return {"exchange": "kraken", "pair": "btceur", "interval_s": 3600, "open_time": start, "open": 100.0,
            "high": 110.0, "low": 90.0, "close": 105.0, "vwap": 101.0, "volume": 3.0, "trades": 7,
            "fetched_at": datetime.now(UTC), **values}


@pytest.mark.parametrize("values", [
    {"high": 104.0},  # below the close
    {"low": 101.0},  # above the open
    {"open": 0.0, "low": 0.0},  # outside the price band
    {"volume": -1.0},
    {"trades": -1},
    {"open_time": datetime.now(UTC) + timedelta(hours=2)},  # closes in the future
], ids=["high-below-close", "low-above-open", "zero-price", "negative-volume", "negative-trades", "future"])
def test_the_database_refuses_a_candle_that_cannot_be(env: str, values: dict[str, Any]) -> None:
    with pytest.raises(sa.exc.DBAPIError):
        execute(env, candles.insert().values(**_candle(**values)))
    assert count_rows(env, candles) == 0


def test_candles_are_append_only(env: str) -> None:
    execute(env, candles.insert().values(**_candle()))
    for statement in (candles.update().values(close=106.0), candles.delete()):
        with pytest.raises(sa.exc.DBAPIError, match="candles are append-only"):
            execute(env, statement)
    assert [r.close for r in query(env, sa.select(candles))] == [105.0]


def test_a_candle_whose_high_and_low_do_not_hold_it_keeps_only_its_close(
        env: str, runner: CliRunner, fake_exchange: FakeExchange) -> None:
    def swap_high_and_low(pair: str, rows: list[list[Any]]) -> list[list[Any]]:
        return [[*row[:2], row[3], row[2], *row[4:]] if i == 0 else row for i, row in enumerate(rows)]

    fake_exchange.ohlc_rows = swap_high_and_low
    result = runner.invoke(app, ["fetch", "--pairs", "btceur", "--backfill", "1d"])
    assert result.exit_code == 0, result.stderr
    assert "whose high and low do not hold its open and close: only the close is stored" in result.stderr
    raw_candles = count_rows(env, raw_prices) - 1  # less the ticker
    assert count_rows(env, candles) == raw_candles - 1
