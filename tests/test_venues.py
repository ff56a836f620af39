"""Several venues in one run (issue 15): each its own series, one down is a partial result, metrics per
market equal the reference, on both databases (through the Cryptowatch source, which serves any venue)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata.cli import app
from mcdata.schema import metrics, raw_prices
from tests.fake_exchange import FakeExchange
from tests.helpers import assert_metrics_exact, query

PAIRS = "btceur,etheur,dogeusd"


@pytest.fixture
def two_venues(env: str, fake_exchange: FakeExchange, monkeypatch: pytest.MonkeyPatch) -> str:
    fake_exchange.cw_other_venues["bitstamp"] = 1.01
    monkeypatch.setenv("MCDATA_SOURCE", "cryptowatch")
    monkeypatch.setenv("MCDATA_EXCHANGE", "kraken,bitstamp")
    monkeypatch.setenv("MCDATA_PAIRS", PAIRS)
    return env


def test_each_venue_is_its_own_series_and_the_metrics_are_exact(two_venues: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--backfill", "1d"])
    assert result.exit_code == 0, result.stderr
    assert "6 of 6 pairs stored" in result.stderr
    tickers = {(r.exchange, r.pair): r.price for r in query(two_venues, sa.select(raw_prices)
                                                             .where(raw_prices.c.kind == "ticker"))}
    assert set(tickers) == {(venue, pair) for venue in ("kraken", "bitstamp") for pair in PAIRS.split(",")}
    for pair in PAIRS.split(","):
        # fetched a moment apart (the fake prices move with the clock): 1 % apart, give or take 0.01 %
        assert tickers[("bitstamp", pair)] == pytest.approx(tickers[("kraken", pair)] * 1.01, rel=1e-4)
    as_of = query(two_venues, sa.select(sa.func.max(metrics.c.timestamp)))[0][0]
    assert_metrics_exact(two_venues, as_of)
    shown = runner.invoke(app, ["show", "btceur", "json", "--exchange", "bitstamp"])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["exchange"] == "bitstamp"
    assert json.loads(runner.invoke(app, ["show", "btceur", "json"]).stdout)["exchange"] == "kraken"  # the first
    status = json.loads(runner.invoke(app, ["status", "json"]).stdout)
    assert {(p["exchange"], p["pair"]) for p in status["pairs"]} == set(tickers)
    one = json.loads(runner.invoke(app, ["status", "json", "--exchange", "bitstamp"]).stdout)
    assert {p["exchange"] for p in one["pairs"]} == {"bitstamp"}


def test_ranks_are_among_the_pairs_of_one_venue(two_venues: str, runner: CliRunner) -> None:
    assert runner.invoke(app, ["run", "--backfill", "1d"]).exit_code == 0
    overview = json.loads(runner.invoke(app, ["show", "json"]).stdout)
    assert overview["ranked_pairs"] == {"kraken": 3, "bitstamp": 3}
    for venue in ("kraken", "bitstamp"):
        rows = [r for r in overview["pairs"] if r["exchange"] == venue]
        assert sorted(r["std_rank"] for r in rows) == [1, 2, 3]  # each venue ranks its own pairs from 1
        assert {r["std_rank_of"] for r in rows} == {3}
    only = json.loads(runner.invoke(app, ["show", "json", "--exchange", "bitstamp"]).stdout)
    assert {r["exchange"] for r in only["pairs"]} == {"bitstamp"} and only["ranked_pairs"] == {"bitstamp": 3}
    table = runner.invoke(app, ["show", "--exchange", "bitstamp"]).stdout
    assert "1/3" in table and "kraken" not in table
    missing = runner.invoke(app, ["show", "--exchange", "binance"])
    assert missing.exit_code == 2 and "there are metrics for bitstamp, kraken" in missing.stderr


def test_one_venue_down_is_exit_3_with_the_others_stored(two_venues: str, runner: CliRunner,
                                                          fake_exchange: FakeExchange) -> None:
    fake_exchange.fail("/markets/bitstamp", "status", times=99, status=503)
    result = runner.invoke(app, ["run", "--backfill", "0"])
    assert result.exit_code == 3, result.stderr
    assert "bitstamp: cryptowatch: GET" in result.stderr
    assert {r.exchange for r in query(two_venues, sa.select(raw_prices))} == {"kraken"}


def test_pairs_lists_one_venue_at_a_time(two_venues: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["pairs"])
    assert result.exit_code == 2 and "lists one venue at a time" in result.stderr
    assert runner.invoke(app, ["pairs", "--exchange", "bitstamp"]).exit_code == 0


def test_a_single_venue_source_refuses_several(env: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch", "--exchange", "kraken,bitstamp"])
    assert result.exit_code == 2 and "serves only the kraken venue" in result.stderr


def test_each_pairs_fate_is_recorded_once_per_venue(two_venues: str, fake_exchange: FakeExchange) -> None:
    """One record per venue and pair, as an enum: stored where a venue lists the pair, not listed where it
    does not; a pair no venue lists is one failure, not one per venue."""
    from mcdata import jobs
    from mcdata.config import load_settings
    from mcdata.jobs.ledger import Fate

    report = jobs.fetch(load_settings({"pairs": "btceur,etheur", "backfill": "0"}))
    assert report.exit_code == 0, report.errors
    assert {key: fate.fate for key, fate in report.fates.items()} == {
        (venue, pair): Fate.STORED for venue in ("kraken", "bitstamp") for pair in ("btceur", "etheur")}
    mixed = jobs.fetch(load_settings({"pairs": "btceur,zzzeur", "backfill": "0"}))
    assert mixed.exit_code == 3
    assert {key: fate.fate for key, fate in mixed.fates.items()} == {
        ("kraken", "btceur"): Fate.STORED, ("bitstamp", "btceur"): Fate.STORED, ("", "zzzeur"): Fate.FAILED}
    assert mixed.failures == {"zzzeur": "zzzeur: listed by none of kraken, bitstamp"}
