"""`mcdata fetch` against the fake exchange, on both databases: what is stored, what is asked, what fails."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata import jobs
from mcdata.cli import app
from mcdata.config import load_settings
from mcdata.schema import raw_prices, runs
from tests.conftest import unstamped
from tests.fake_exchange import FakeExchange
from tests.helpers import execute, query

LISTED_DEFAULTS = ["adaeur", "bateth", "btceur", "btcusd", "dogeusd", "etheur", "ltceur", "solusd", "xrpusd"]
WEEK_OF_HOURS = 7 * 24


def stored(db_url: str) -> list[sa.Row]:  # type: ignore[type-arg]
    return query(db_url, sa.select(raw_prices).order_by(raw_prices.c.pair, raw_prices.c.timestamp))


def last_run(db_url: str) -> sa.Row:  # type: ignore[type-arg]
    return query(db_url, sa.select(runs).order_by(runs.c.id.desc()).limit(1))[0]


def by_pair(rows: list[sa.Row], kind: str) -> dict[str, int]:  # type: ignore[type-arg]
    counts: dict[str, int] = {}
    for row in rows:
        if row.kind == kind:
            counts[row.pair] = counts.get(row.pair, 0) + 1
    return counts


def test_first_fetch_backfills_a_week_with_one_ticker_request(env: str, fake_exchange: FakeExchange,
                                                              runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch"])
    assert result.exit_code == 0, result.stderr
    rows = stored(env)
    assert sorted(by_pair(rows, "ticker")) == LISTED_DEFAULTS
    assert set(by_pair(rows, "ticker").values()) == {1}
    assert by_pair(rows, "candle") == dict.fromkeys(LISTED_DEFAULTS, WEEK_OF_HOURS)
    assert fake_exchange.count("/0/public/Ticker") == 1
    assert fake_exchange.count("/0/public/OHLC") == len(LISTED_DEFAULTS)
    assert "waveseur: not listed by kraken" in result.stderr
    run = last_run(env)
    assert (run.command, run.status, run.exit_code) == ("fetch", "ok", 0)
    assert (run.pairs_requested, run.pairs_stored, run.pairs_failed) == (9, 9, 0)
    assert run.rows_written == len(rows) == 9 * (WEEK_OF_HOURS + 1)


def test_candles_are_closed_hourly_closes_at_candle_close_time(env: str, fake_exchange: FakeExchange) -> None:
    now = datetime(2026, 11, 20, 10, 30, 15, tzinfo=UTC)
    fake_exchange.clock = now.timestamp
    jobs.fetch(load_settings({"pairs": "btceur"}), now=now)
    candles = [r for r in stored(env) if r.kind == "candle"]
    times = [r.timestamp for r in candles]
    assert times[-1] == datetime(2026, 11, 20, 10, tzinfo=UTC)  # the 10:00-11:00 candle is still forming
    assert times[0] == datetime(2026, 11, 13, 11, tzinfo=UTC)  # first close after now - 7 days
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(times))
    # the stored price is the candle's close, which the fake exchange defines at close time
    assert candles[-1].price == pytest.approx(fake_exchange.price_at("btceur", times[-1].timestamp()), rel=1e-9)
    ticker = next(r for r in stored(env) if r.kind == "ticker")
    assert ticker.timestamp == now.replace(microsecond=0)


def test_second_fetch_adds_one_row_per_pair_with_one_request(env: str, fake_exchange: FakeExchange,
                                                             runner: CliRunner) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    fake_exchange.clock = start.timestamp
    assert jobs.fetch(load_settings(), now=start).exit_code == 0
    before = len(stored(env))
    requests_before = len(fake_exchange.requests)
    later = start + timedelta(seconds=5)
    report = jobs.fetch(load_settings(), now=later)
    assert report.exit_code == 0
    assert len(stored(env)) == before + 9
    assert fake_exchange.requests[requests_before:] == ["/0/public/Ticker"]  # the pair list is cached


def test_fetch_in_the_same_second_stores_nothing_twice(env: str, fake_exchange: FakeExchange) -> None:
    now = datetime.now(UTC)
    jobs.fetch(load_settings(), now=now)
    before = stored(env)
    report = jobs.fetch(load_settings(), now=now + timedelta(microseconds=1))
    assert report.exit_code == 0 and report.rows_written == 0
    assert stored(env) == before


def test_gap_repair_after_three_days_off(env: str, fake_exchange: FakeExchange) -> None:
    start = datetime(2026, 11, 1, 12, 5, tzinfo=UTC)
    fake_exchange.clock = start.timestamp
    jobs.fetch(load_settings({"pairs": "btceur,etheur"}), now=start)
    back = start + timedelta(days=3, minutes=20)
    fake_exchange.clock = back.timestamp
    report = jobs.fetch(load_settings({"pairs": "btceur,etheur"}), now=back)
    assert report.exit_code == 0
    for pair in ("btceur", "etheur"):
        times = [r.timestamp for r in stored(env) if r.pair == pair]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= timedelta(hours=1), pair
        assert times[-1] == back


def test_backfill_zero_and_custom_length(env: str, fake_exchange: FakeExchange, runner: CliRunner) -> None:
    assert runner.invoke(app, ["fetch", "--pairs", "btceur", "--backfill", "0"]).exit_code == 0
    assert by_pair(stored(env), "candle") == {}
    assert runner.invoke(app, ["fetch", "--pairs", "etheur", "--backfill", "12h"]).exit_code == 0
    assert by_pair(stored(env), "candle") == {"etheur": 12}


def test_kraken_names_map_to_canonical_symbols(env: str, fake_exchange: FakeExchange, runner: CliRunner) -> None:
    result = runner.invoke(app, ["pairs", "json"])
    assert result.exit_code == 0, result.stderr
    import json

    listed = {row["pair"]: row for row in json.loads(result.stdout)}
    assert listed["btceur"]["venue_symbol"] == "XXBTZEUR"
    assert listed["dogeusd"]["venue_symbol"] == "XDGUSD"
    assert listed["bateth"]["venue_symbol"] == "BATETH"
    assert listed["lunausd"]["active"] is False
    assert "eth2.seth" not in listed and "waveseur" not in listed
    assert listed["btceur"]["configured"] is True and listed["btcgbp"]["configured"] is False


def test_pairs_csv_for_cryptowatch_uses_the_recorded_listing(env: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["pairs", "--source", "cryptowatch", "--format", "csv"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "pair,venue_symbol,active,status,configured"
    assert "waveseur,waveseur,true,online,true" in lines
    assert len(lines) == 1 + 718


def test_all_pairs(env: str, fake_exchange: FakeExchange, runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch", "--pairs", "all", "--backfill", "0"])
    assert result.exit_code == 0, result.stderr
    assert sorted(by_pair(stored(env), "ticker")) == sorted(
        m.pair for m in fake_exchange.markets.values() if m.status == "online" and "." not in m.pair)


def test_unknown_pair_is_partial_with_suggestions(env: str, fake_exchange: FakeExchange, runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch", "--pairs", "btceur,btcusdd,waveseur"])
    assert result.exit_code == 3, result.stderr
    assert "btcusdd: not listed by kraken (did you mean btcusd" in result.stderr
    assert "waveseur: not listed by kraken" in result.stderr
    assert set(by_pair(stored(env), "ticker")) == {"btceur"}
    run = last_run(env)
    assert (run.status, run.pairs_requested, run.pairs_stored, run.pairs_failed) == ("partial", 3, 1, 2)
    assert "btcusdd" in run.error_summary


def test_only_unknown_pairs_are_a_usage_error(env: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch", "--pairs", "nosuchpair"])
    assert result.exit_code == 2  # a typo, not an outage (exit 1)
    assert stored(env) == []


@pytest.mark.parametrize("bad_price", ["NaN", "Infinity", "-5", "0", "abc", ""])
def test_a_bad_price_rejects_that_pair_only(env: str, fake_exchange: FakeExchange, runner: CliRunner,
                                            bad_price: str) -> None:
    fake_exchange.price_overrides["etheur"] = bad_price
    result = runner.invoke(app, ["fetch"])
    assert result.exit_code == 3, result.stderr
    assert "etheur: kraken Ticker: price" in result.stderr
    pairs = by_pair(stored(env), "ticker")
    assert "etheur" not in pairs and "etheur" not in by_pair(stored(env), "candle")
    assert len(pairs) == 8


def test_bad_cryptowatch_prices(env: str, fake_exchange: FakeExchange, runner: CliRunner) -> None:
    fake_exchange.price_overrides["btceur"] = float("nan")
    fake_exchange.price_overrides["etheur"] = 0
    result = runner.invoke(app, ["fetch", "--source", "cryptowatch", "--backfill", "0"])
    assert result.exit_code == 3, result.stderr
    assert set(by_pair(stored(env), "ticker")) == {"btcusd", "ltceur", "solusd", "xrpusd", "adaeur", "waveseur",
                                                   "bateth", "dogeusd"}
    assert "etheur: kraken shows no trade yet (a price of 0); skipped" in result.stderr


def test_an_untraded_cryptowatch_market_is_skipped_with_a_note(env: str, fake_exchange: FakeExchange,
                                                               runner: CliRunner) -> None:
    """Cryptowatch answered 0 for 1,043 of its 14,461 recorded markets: markets that never traded."""
    fake_exchange.price_overrides["etheur"] = 0
    result = runner.invoke(app, ["fetch", "--source", "cryptowatch", "--backfill", "0"])
    assert result.exit_code == 0, result.stderr
    assert "etheur: kraken shows no trade yet (a price of 0); skipped" in result.stderr
    assert "etheur" not in by_pair(stored(env), "ticker")
    assert last_run(env).pairs_requested == 9


def test_pairs_carry_the_venue_status(env: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["pairs", "json"])
    assert result.exit_code == 0
    status = {row["pair"]: row["status"] for row in json.loads(result.stdout)}
    assert status["btceur"] == "online" and status["lunausd"] == "cancel_only"
    csv_text = runner.invoke(app, ["pairs", "csv"]).stdout
    assert csv_text.splitlines()[0] == "pair,venue_symbol,active,status,configured"
    assert "lunausd,LUNAUSD,false,cancel_only,false" in csv_text


def test_cryptowatch_fetch_pages_through_cursors(env: str, fake_exchange: FakeExchange, runner: CliRunner,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake_exchange.cw_page_size = 4000
    monkeypatch.setenv("MCDATA_API_KEY", "cw-key-123")
    result = runner.invoke(app, ["fetch", "--source", "cryptowatch"])
    assert result.exit_code == 0, result.stderr
    assert fake_exchange.count("/markets/prices") == 4  # 14,461 recorded prices in pages of 4,000
    rows = stored(env)
    assert len(by_pair(rows, "ticker")) == 10  # waveseur was still listed on Cryptowatch
    assert set(by_pair(rows, "candle").values()) == {WEEK_OF_HOURS}
    assert {r.exchange for r in rows} == {"kraken"}


def test_cryptowatch_sends_the_api_key_and_reads_legacy_keys(env: str, fake_exchange: FakeExchange,
                                                             runner: CliRunner,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fake_exchange.cw_legacy_keys = True
    monkeypatch.setenv("MCDATA_API_KEY", "cw-key-123")
    result = runner.invoke(app, ["--verbose", "fetch", "--source", "cryptowatch", "--backfill", "0"])
    assert result.exit_code == 0, result.stderr
    assert len(by_pair(stored(env), "ticker")) == 10
    assert {h.get("X-CW-API-Key") for h in fake_exchange.headers} == {"cw-key-123"}
    assert all(h["User-Agent"].startswith("mcdata/") for h in fake_exchange.headers)
    assert "allowance cost" in result.stderr  # logged at debug level
    assert "cw-key-123" not in result.output


def test_kraken_never_sends_the_cryptowatch_key(env: str, fake_exchange: FakeExchange, runner: CliRunner,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCDATA_API_KEY", "cw-key-123")
    assert runner.invoke(app, ["fetch", "--backfill", "0"]).exit_code == 0
    assert not any("X-CW-API-Key" in h for h in fake_exchange.headers)


@pytest.mark.parametrize(("fault", "options", "message"), [
    ("status", {"status": 429, "times": 99}, "HTTP 429 (Out of allowance)"),
    ("status", {"status": 500, "times": 99}, "HTTP 500"),
    ("html", {}, "an HTML page, not JSON"),
    ("truncated", {}, "truncated or malformed JSON"),
])
def test_cryptowatch_faults_fail_the_run_and_write_nothing(env: str, fake_exchange: FakeExchange,
                                                          runner: CliRunner, fault: str,
                                                          options: dict[str, object], message: str) -> None:
    fake_exchange.fail("/markets/prices", fault, **options)  # type: ignore[arg-type]
    result = runner.invoke(app, ["fetch", "--source", "cryptowatch"])
    assert result.exit_code == 1, result.stderr
    assert message in result.stderr and "/markets/prices" in result.stderr
    assert stored(env) == []


def test_cryptowatch_unknown_pair_candles_fail_that_pair(env: str, fake_exchange: FakeExchange,
                                                        runner: CliRunner) -> None:
    fake_exchange.fail("/markets/kraken/etheur/ohlc", "status", status=404)
    result = runner.invoke(app, ["fetch", "--source", "cryptowatch"])
    assert result.exit_code == 3, result.stderr
    assert "etheur: cryptowatch: Instrument not found" in result.stderr
    assert "etheur" not in by_pair(stored(env), "ticker")
    assert len(by_pair(stored(env), "ticker")) == 9


def test_cryptowatch_unknown_venue_fails(env: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch", "--source", "cryptowatch", "--exchange", "nosuchvenue"])
    assert result.exit_code == 1
    assert "venue 'nosuchvenue' not found" in result.stderr


@pytest.mark.parametrize(("fault", "options", "message"), [
    ("status", {"status": 503, "times": 99}, "failed after 3 attempts: HTTP 503"),
    ("kraken_error", {"times": 99}, "throttled (EGeneral:Too many requests)"),
    ("kraken_error", {"message": "EGeneral:Internal error"}, "answered EGeneral:Internal error"),
    ("html", {}, "answered an HTML page, not JSON"),
    ("truncated", {}, "answered truncated or malformed JSON"),
    pytest.param("hang", {"seconds": 3, "times": 99}, "no answer within 2s", marks=pytest.mark.slow),
    ("huge", {"seconds": 80}, "more than the 67,108,864 allowed"),
])
def test_a_failed_ticker_request_fails_the_run_and_writes_nothing(
    env: str, fake_exchange: FakeExchange, runner: CliRunner, fault: str, options: dict[str, object], message: str
) -> None:
    fake_exchange.fail("/0/public/Ticker", fault, **options)  # type: ignore[arg-type]
    result = runner.invoke(app, ["fetch"])
    assert result.exit_code == 1, result.stderr
    errors = [line for line in unstamped(result.stderr) if line.startswith("mcdata: error: ")]
    assert len(errors) == 1  # one line: what failed, where, what to do
    assert message in errors[0] and "/0/public/Ticker" in errors[0]
    assert stored(env) == []
    run = last_run(env)
    assert (run.status, run.exit_code) == ("failed", 1)
    assert message in run.error_summary


@pytest.mark.parametrize(("fault", "options"), [
    ("status", {"status": 500, "times": 2}),
    ("status", {"status": 429, "retry_after": "0"}),
    ("kraken_error", {"message": "EAPI:Rate limit exceeded", "times": 2}),
    ("kraken_error", {"message": "EService:Busy"}),
])
def test_transient_faults_are_retried(env: str, fake_exchange: FakeExchange, runner: CliRunner, fault: str,
                                      options: dict[str, object]) -> None:
    fake_exchange.fail("/0/public/Ticker", fault, **options)  # type: ignore[arg-type]
    result = runner.invoke(app, ["fetch", "--backfill", "0"])
    assert result.exit_code == 0, result.stderr
    assert len(by_pair(stored(env), "ticker")) == 9
    retries = int(options.get("times", 1))  # type: ignore[call-overload]
    assert fake_exchange.count("/0/public/Ticker") == 1 + retries
    # each retry is one line on a terminal without --verbose (and none with --quiet)
    assert [line for line in unstamped(result.stderr) if "; retry " in line][-1].endswith(f"retry {retries}/2 in 0.0s")


def test_retry_after_is_honoured_but_capped(env: str, fake_exchange: FakeExchange, runner: CliRunner,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("MCDATA_RETRY_AFTER_MAX", "1s")
    fake_exchange.fail("/0/public/Ticker", "status", status=429, retry_after="3600")
    started = time.monotonic()
    result = runner.invoke(app, ["fetch", "--backfill", "0"])
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    assert 1.0 <= elapsed < 10


def test_a_failed_candle_request_rejects_that_pair(env: str, fake_exchange: FakeExchange, runner: CliRunner) -> None:
    fake_exchange.fail("/0/public/OHLC", "kraken_error", message="EQuery:Unknown asset pair")
    result = runner.invoke(app, ["fetch"])
    assert result.exit_code == 3, result.stderr
    assert "kraken does not know this pair" in result.stderr
    assert len(by_pair(stored(env), "ticker")) == 8  # the failed pair gets no ticker either: next run retries


def test_a_pair_delisted_since_the_cache_was_written(env: str, fake_exchange: FakeExchange, runner: CliRunner) -> None:
    assert runner.invoke(app, ["fetch", "--backfill", "0"]).exit_code == 0
    fake_exchange.delist("solusd")
    before = len(fake_exchange.requests)
    result = runner.invoke(app, ["fetch", "--backfill", "0"])  # the default pairs: skipped, like waveseur
    assert result.exit_code == 0, result.stderr
    assert "solusd: no longer listed by kraken; skipped" in result.stderr
    assert sorted(fake_exchange.requests[before:]) == ["/0/public/AssetPairs", "/0/public/Assets", "/0/public/Ticker"]
    result = runner.invoke(app, ["fetch", "--backfill", "0", "--pairs", "btceur,solusd"])  # named: a failure
    assert result.exit_code == 3
    assert "solusd: not listed by kraken" in result.stderr


def test_a_listed_pair_without_a_price_is_still_a_failure(env: str, fake_exchange: FakeExchange,
                                                         runner: CliRunner) -> None:
    fake_exchange.price_overrides["btceur"] = "NaN"
    result = runner.invoke(app, ["fetch", "--backfill", "0"])
    assert result.exit_code == 3
    assert "btceur: kraken Ticker: price 'NaN'" in result.stderr


@pytest.mark.parametrize("hostile", ["btceur'; drop table runs; --", "$(touch /tmp/pwned)", "\x1b[2Jbtc", "b" * 500])
def test_hostile_pair_names_are_refused_before_any_request(env: str, fake_exchange: FakeExchange,
                                                           runner: CliRunner, hostile: str) -> None:
    result = runner.invoke(app, ["fetch", "--pairs", hostile])
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr
    assert fake_exchange.requests == []
    assert stored(env) == []


def test_fetch_creates_the_schema_of_a_brand_new_database_as_run_does(db_url: str, runner: CliRunner,
                                                                      fake_exchange: FakeExchange) -> None:
    result = runner.invoke(app, ["--database-url", db_url, "fetch", "--api-url", fake_exchange.url, "--backfill", "0"])
    assert result.exit_code == 0, result.stderr
    assert "new database: creating the schema" in result.stderr
    assert len(stored(db_url)) == len(LISTED_DEFAULTS)


def test_a_database_with_tables_but_no_mcdata_schema_says_migrate(db_url: str, runner: CliRunner,
                                                                   fake_exchange: FakeExchange) -> None:
    execute(db_url, "CREATE TABLE runs (id INTEGER)")  # someone else's table
    result = runner.invoke(app, ["--database-url", db_url, "fetch", "--api-url", fake_exchange.url])
    assert result.exit_code == 4
    shown = sa.make_url(db_url).render_as_string(hide_password=True).replace("postgresql://", "postgresql+psycopg://")
    assert f"the database {shown} has tables but no mcdata schema version; run `mcdata migrate`" in result.stderr
    assert fake_exchange.requests == []
