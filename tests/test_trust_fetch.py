"""Issue 11, the fetch and the run ledger: no quote can crash a run, candles cannot lose history, the clock
cannot pin the present, the lock cannot be lost and every `runs` row ends in a true final state. Real HTTP
on loopback, SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata import jobs
from mcdata.cli import app
from mcdata.config import load_settings
from mcdata.db import make_engine
from mcdata.schema import runs
from mcdata.sources.base import parse_price
from tests.fake_exchange import FakeExchange
from tests.helpers import execute
from tests.test_fetch import by_pair, last_run, stored

NOW = datetime(2026, 11, 20, 10, 30, 15, tzinfo=UTC)


# -- 4. values at the edges of a double ----------------------------------------------------------
@pytest.mark.parametrize("bad", ["1e200", "5e-324", "1" + "0" * 400, "-0.0"])
def test_a_price_outside_the_band_fails_one_pair_and_the_run_still_computes(
        env: str, fake_exchange: FakeExchange, runner: CliRunner, bad: str) -> None:
    fake_exchange.price_overrides["btceur"] = bad
    result = runner.invoke(app, ["run", "--backfill", "0"])
    assert result.exit_code == 3, result.stderr
    assert "btceur: kraken Ticker: price" in result.stderr
    assert sorted(by_pair(stored(env), "ticker")) == ["adaeur", "bateth", "btcusd", "dogeusd", "etheur", "ltceur",
                                                      "solusd", "xrpusd"]
    assert execute(env, "SELECT count(*) FROM crypto_pair_metrics")[0][0] == 8


def test_numbers_no_double_can_hold_are_value_errors() -> None:
    for value in (10**400, -(10**400), "1e400", float("nan"), 1e13, 1e-13):
        with pytest.raises(ValueError, match="price"):
            parse_price(value)


def test_deeply_nested_json_is_one_line(env: str, fake_exchange: FakeExchange, runner: CliRunner) -> None:
    fake_exchange.fail("/0/public/Assets", "nested")
    result = runner.invoke(app, ["run", "--backfill", "0"])
    assert result.exit_code == 1
    assert "answered JSON nested too deeply" in result.stderr
    assert "unexpected" not in result.stderr


# -- 7. candles ------------------------------------------------------------------------------------
def candle_closes(db_url: str, pair: str) -> list[datetime]:
    return [r.timestamp for r in stored(db_url) if r.pair == pair and r.kind == "candle"]


def assert_no_gap(closes: list[datetime]) -> None:
    assert closes and all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(closes))


def test_candles_in_any_order_lose_no_hour(env: str, fake_exchange: FakeExchange) -> None:
    fake_exchange.clock = NOW.timestamp
    fake_exchange.ohlc_rows = lambda pair, rows: list(reversed(rows))  # the forming candle comes first
    assert jobs.fetch(load_settings({"pairs": "btceur"}), now=NOW).exit_code == 0
    closes = candle_closes(env, "btceur")
    assert len(closes) == 7 * 24 and closes[-1] == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert_no_gap(closes)


def test_two_different_candles_for_one_hour_fail_that_pair(env: str, fake_exchange: FakeExchange) -> None:
    def conflicting(pair: str, rows: list[list[Any]]) -> list[list[Any]]:
        if pair != "btceur":
            return rows
        twin = list(rows[5])
        twin[4] = str(float(twin[4]) * 1.5)
        return [*rows[:6], twin, *rows[6:]]

    fake_exchange.clock = NOW.timestamp
    fake_exchange.ohlc_rows = conflicting
    report = jobs.fetch(load_settings({"pairs": "btceur,etheur"}), now=NOW)
    assert report.exit_code == 3
    assert "two different candles close at" in report.failures["btceur"]
    assert candle_closes(env, "btceur") == [] and len(candle_closes(env, "etheur")) == 7 * 24


def test_an_empty_first_answer_is_backfilled_on_the_next_run(env: str, fake_exchange: FakeExchange) -> None:
    fake_exchange.clock = NOW.timestamp
    fake_exchange.ohlc_rows = lambda pair, rows: []
    assert jobs.fetch(load_settings({"pairs": "btceur"}), now=NOW).exit_code == 0
    assert candle_closes(env, "btceur") == []
    fake_exchange.ohlc_rows = None
    later = NOW + timedelta(hours=1)
    fake_exchange.clock = later.timestamp
    assert jobs.fetch(load_settings({"pairs": "btceur"}), now=later).exit_code == 0
    closes = candle_closes(env, "btceur")
    assert len(closes) == 7 * 24
    assert_no_gap(closes)
    before = fake_exchange.count("/0/public/OHLC")  # the history is whole now: no more candle requests
    again = later + timedelta(hours=1)
    fake_exchange.clock = again.timestamp
    assert jobs.fetch(load_settings({"pairs": "btceur"}), now=again).exit_code == 0
    assert fake_exchange.count("/0/public/OHLC") == before


def test_a_longer_backfill_extends_history_and_kraken_refuses_more_than_it_serves(
        env: str, fake_exchange: FakeExchange, runner: CliRunner) -> None:
    fake_exchange.clock = NOW.timestamp
    assert jobs.fetch(load_settings({"pairs": "btceur", "backfill": "2d"}), now=NOW).exit_code == 0
    assert len(candle_closes(env, "btceur")) == 2 * 24
    assert jobs.fetch(load_settings({"pairs": "btceur", "backfill": "5d"}), now=NOW).exit_code == 0
    closes = candle_closes(env, "btceur")
    assert len(closes) == 5 * 24
    assert_no_gap(closes)
    result = runner.invoke(app, ["fetch", "--backfill", "30d"])
    assert result.exit_code == 2
    assert "longer than the 29 days of hourly candles kraken serves" in result.stderr


def test_a_renamed_kraken_pair_key_costs_no_partial_run(env: str, fake_exchange: FakeExchange,
                                                       runner: CliRunner) -> None:
    assert runner.invoke(app, ["fetch", "--backfill", "0"]).exit_code == 0
    renamed = dataclasses.replace(fake_exchange.markets["btceur"], key="XBT.EUR")
    fake_exchange.markets["btceur"] = renamed  # the cached pair list still says XXBTZEUR
    before = len(fake_exchange.requests)
    result = runner.invoke(app, ["fetch", "--backfill", "0"])
    assert result.exit_code == 0, result.stderr
    assert sorted(fake_exchange.requests[before:]) == ["/0/public/AssetPairs", "/0/public/Assets", "/0/public/Ticker"]
    run = last_run(env)
    assert (run.pairs_stored, run.pairs_failed) == (9, 0) and "btceur" not in result.stderr


# -- 3. the clock ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("ahead", "code"), [(timedelta(seconds=30), 0), (timedelta(minutes=2), 0),
                                             (timedelta(minutes=10), 1), (-timedelta(hours=3), 1)])
def test_this_clock_is_compared_with_the_source(env: str, fake_exchange: FakeExchange, ahead: timedelta,
                                                code: int) -> None:
    fake_exchange.clock = (NOW - ahead).timestamp
    report = jobs.fetch(load_settings({"pairs": "btceur", "backfill": "0"}), now=NOW)
    assert report.exit_code == code
    rows = stored(env)
    if code:
        assert rows == [] and "nothing stored" in report.errors[0]
        assert f"{abs(ahead).total_seconds():.0f}s {'ahead of' if ahead > timedelta(0) else 'behind'} kraken's" \
            in report.errors[0]
    else:
        assert len(rows) == 1


# -- 9. the run ledger ------------------------------------------------------------------------------
def _ctrl_c_as_at_a_terminal() -> None:
    """A shell without job control starts background jobs with SIGINT ignored (so does a CI runner that
    puts the suite in the background); the child gets the default back, as a command at a terminal has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(env_values: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mcdata", *args], env={**os.environ, **env_values},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_at_a_terminal)


@pytest.mark.slow
def test_sigterm_ends_the_run_as_interrupted_and_writes_nothing(env: str, exchange_env: dict[str, str],
                                                                fake_exchange: FakeExchange) -> None:
    fake_exchange.latency = 0.4
    child = spawn(exchange_env, "run")
    deadline = time.monotonic() + 20
    while fake_exchange.count("/0/public/OHLC") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _out, err = child.communicate(timeout=30)
    assert child.returncode == 143, err
    assert "interrupted by SIGTERM; nothing was written by the interrupted step" in err
    assert stored(env) == []
    run = last_run(env)
    assert (run.status, run.exit_code) == ("interrupted", 143) and run.finished_at is not None


@pytest.mark.slow
def test_ctrl_c_mid_backfill_stops_within_a_second(env: str, exchange_env: dict[str, str],
                                                   fake_exchange: FakeExchange) -> None:
    fake_exchange.latency = 0.6  # each candle request is still under way when Ctrl-C comes
    child = spawn({**exchange_env, "MCDATA_RATE_LIMIT": "2"}, "run")  # and the others wait for their slot
    deadline = time.monotonic() + 20
    while fake_exchange.count("/0/public/OHLC") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    _out, err = child.communicate(timeout=30)
    took = time.monotonic() - sent
    assert child.returncode == 130, err
    assert took < 1.0, took
    assert "interrupted by Ctrl-C; nothing was written" in err
    assert stored(env) == []
    run = last_run(env)
    assert (run.status, run.exit_code) == ("interrupted", 130)


def test_a_running_row_left_by_a_killed_process_is_closed_by_the_next_run(env: str, runner: CliRunner) -> None:
    execute(env, "INSERT INTO runs (command, started_at, status) VALUES ('run', :t, 'running')",
            {"t": NOW if "postgresql" in env else NOW.replace(tzinfo=None).isoformat(sep=" ")})
    result = runner.invoke(app, ["run", "--backfill", "0"])
    assert result.exit_code == 0, result.stderr
    engine = make_engine(env)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(runs.c.status, runs.c.error_summary).order_by(runs.c.id)).all()
    engine.dispose()
    assert [r.status for r in rows] == ["interrupted", "ok"]
    assert "ended without recording" in rows[0].error_summary


@pytest.mark.slow
# -- 8, 11. PostgreSQL: the lock and the server's refusals -------------------------------------------
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_lock_holds_no_transaction_open_through_the_http_work(env: str, fake_exchange: FakeExchange,
                                                                  runner: CliRunner) -> None:
    name = sa.make_url(env).database
    execute(env, f'ALTER DATABASE "{name}" SET idle_in_transaction_session_timeout = 300')
    try:
        fake_exchange.latency = 0.15  # ~1.8 s of HTTP work: 6 times the timeout
        result = runner.invoke(app, ["run"])
        assert result.exit_code == 0, result.stderr
    finally:
        execute(env, f'ALTER DATABASE "{name}" RESET idle_in_transaction_session_timeout')


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_lost_lock_writes_nothing(env: str, fake_exchange: FakeExchange, runner: CliRunner) -> None:
    fake_exchange.latency = 0.2
    killed = threading.Event()

    def kill_the_lock_holder() -> None:
        while not killed.is_set():
            rows = execute(env, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
            if rows:
                killed.set()
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_lock_holder, daemon=True)
    killer.start()
    result = runner.invoke(app, ["fetch"])
    killed.set()
    killer.join()
    assert result.exit_code == 4, result.stderr
    assert "lost the database connection that held the run's lock; nothing was written" in result.stderr
    assert stored(env) == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_permission_denied_and_read_only_are_exit_4(env: str, fake_exchange: FakeExchange, runner: CliRunner,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    name = sa.make_url(env).database
    execute(env, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mcdata_reader') THEN "
                 "CREATE ROLE mcdata_reader LOGIN; END IF; END $$")
    execute(env, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO mcdata_reader")
    execute(env, "GRANT USAGE ON SCHEMA public TO mcdata_reader")
    reader = sa.make_url(env).set(username="mcdata_reader").render_as_string(hide_password=False)
    monkeypatch.setenv("MCDATA_DATABASE_URL", reader)
    result = runner.invoke(app, ["fetch", "--backfill", "0"])
    assert result.exit_code == 4, result.stderr
    assert "database refused: permission denied" in result.stderr
    monkeypatch.setenv("MCDATA_DATABASE_URL", env)
    execute(env, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        result = runner.invoke(app, ["fetch", "--backfill", "0"])
        assert result.exit_code == 4, result.stderr
        assert "read-only" in result.stderr
    finally:
        execute(env, f'SET TRANSACTION READ WRITE; ALTER DATABASE "{name}" SET default_transaction_read_only = off')

