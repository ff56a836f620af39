"""`mcdata run` (the hourly job) and `mcdata show`, end to end against the fake exchange, on both databases."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata.cli import app
from mcdata.db import make_engine
from mcdata.schema import metrics, raw_prices, runs
from tests.conftest import unstamped
from tests.fake_exchange import FakeExchange
from tests.helpers import query

PAIRS = {"adaeur", "bateth", "btceur", "btcusd", "dogeusd", "etheur", "ltceur", "solusd", "xrpusd"}


def latest_metric_rows(db_url: str) -> dict[str, sa.Row]:  # type: ignore[type-arg]
    newest = sa.select(sa.func.max(metrics.c.timestamp)).scalar_subquery()
    return {r.pair: r for r in query(db_url, sa.select(metrics).where(metrics.c.timestamp == newest))}


def test_run_on_a_brand_new_database(exchange_env: dict[str, str], runner: CliRunner) -> None:
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 0, result.stderr
    assert "new database: creating the schema" in result.stderr
    assert set(latest_metric_rows(exchange_env["MCDATA_DATABASE_URL"])) == PAIRS
    recorded = query(exchange_env["MCDATA_DATABASE_URL"], sa.select(runs))
    assert [(r.command, r.status, r.exit_code, r.pairs_stored) for r in recorded] == [("run", "ok", 0, 9)]
    assert recorded[0].as_of is not None and recorded[0].finished_at >= recorded[0].started_at


def test_quiet_run_is_silent_on_success(exchange_env: dict[str, str], runner: CliRunner) -> None:
    result = runner.invoke(app, ["--quiet", "run"])
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""


def test_partial_fetch_still_computes_and_exits_3(exchange_env: dict[str, str], fake_exchange: FakeExchange,
                                                  runner: CliRunner) -> None:
    fake_exchange.price_overrides["solusd"] = "NaN"
    result = runner.invoke(app, ["--quiet", "run"])
    assert result.exit_code == 3
    assert unstamped(result.stderr) == [
        "mcdata: warning: solusd: kraken Ticker: price 'NaN' is not a finite positive number"]
    assert set(latest_metric_rows(exchange_env["MCDATA_DATABASE_URL"])) == PAIRS - {"solusd"}
    run = query(exchange_env["MCDATA_DATABASE_URL"], sa.select(runs))[-1]
    assert (run.status, run.exit_code, run.pairs_failed) == ("partial", 3, 1)


def test_source_down_still_computes_from_stored_prices(exchange_env: dict[str, str], fake_exchange: FakeExchange,
                                                       runner: CliRunner) -> None:
    assert runner.invoke(app, ["run"]).exit_code == 0
    fake_exchange.fail("/0/public/Ticker", "status", status=502, times=99)
    time.sleep(1.1)  # a new as-of second
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 1
    assert "HTTP 502" in result.stderr
    rows = query(exchange_env["MCDATA_DATABASE_URL"], sa.select(runs).order_by(runs.c.id))
    assert [(r.status, r.exit_code) for r in rows] == [("ok", 0), ("failed", 1)]
    assert len({r.timestamp for r in query(exchange_env["MCDATA_DATABASE_URL"], sa.select(metrics))}) == 2


def test_run_refuses_a_database_that_is_not_empty_and_not_migrated(exchange_env: dict[str, str],
                                                                   runner: CliRunner) -> None:
    engine = make_engine(exchange_env["MCDATA_DATABASE_URL"])
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE runs (id INTEGER)"))
    engine.dispose()
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 4
    assert "run `mcdata migrate`" in result.stderr


@pytest.mark.slow
def test_two_concurrent_runs_one_works_one_exits_75(exchange_env: dict[str, str], fake_exchange: FakeExchange,
                                                    runner: CliRunner) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    fake_exchange.latency = 0.3  # the first run takes a few seconds
    child_env = {**os.environ, **exchange_env}
    command = [sys.executable, "-m", "mcdata", "--quiet", "run"]
    first = subprocess.Popen(command, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not fake_exchange.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    second = subprocess.run(command, env=child_env, capture_output=True, text=True, check=False, timeout=60)
    assert second.returncode == 75, second.stderr
    assert time.monotonic() - started < 5
    assert "another mcdata run holds the lock" in second.stderr
    assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    recorded = query(exchange_env["MCDATA_DATABASE_URL"], sa.select(runs))
    assert [(r.command, r.status) for r in recorded] == [("run", "ok")]


# -- show ---------------------------------------------------------------------------------------
@pytest.fixture
def after_run(exchange_env: dict[str, str], runner: CliRunner) -> str:
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 0, result.stderr
    return exchange_env["MCDATA_DATABASE_URL"]


def test_show_all_json_matches_the_database(after_run: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["show", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    stored = latest_metric_rows(after_run)
    assert {row["pair"] for row in data["pairs"]} == set(stored) == PAIRS
    assert data["ranked_pairs"] == {"kraken": 9}
    assert [row["std_rank"] for row in data["pairs"]] == sorted(row["std_rank"] for row in data["pairs"])
    for row in data["pairs"]:
        db = stored[row["pair"]]
        for column in ("latest_price", "weekly_average", "min_price", "max_price", "stddev_24h", "std_rank",
                       "volatility_24h", "change_24h_pct", "samples_24h", "samples_7d"):
            assert row[column] == getattr(db, column), column
        assert row["timestamp"].endswith("Z") and row["std_rank_of"] == 9
    assert data["last_run"]["status"] == "ok"


def test_show_all_csv_matches_the_database(after_run: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["show", "--format", "csv"])
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    stored = latest_metric_rows(after_run)
    assert {r["pair"] for r in rows} == PAIRS
    for row in rows:
        assert float(row["stddev_24h"]) == stored[row["pair"]].stddev_24h
        assert int(row["std_rank"]) == stored[row["pair"]].std_rank


def test_show_all_table(after_run: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["show"])
    assert result.exit_code == 0, result.stderr
    assert "ranked by 24 h stddev" in result.stdout
    for pair in PAIRS:
        assert pair in result.stdout
    assert "1/9" in result.stdout and "9/9" in result.stdout
    assert "last run #1 run: ok, " in result.stdout
    assert "\x1b[" not in result.stdout  # not a terminal: no escape sequences


def test_show_pair_table_json_csv(after_run: str, runner: CliRunner) -> None:
    table = runner.invoke(app, ["show", "btceur", "table"])
    assert table.exit_code == 0, table.stderr
    assert "btceur price, last 7 days (UTC)" in table.stdout
    assert "rank by 24h stddev" in table.stdout and "Recent metrics" in table.stdout
    assert "\x1b[" not in table.stdout

    data = json.loads(runner.invoke(app, ["show", "btceur", "json"]).stdout)
    db = latest_metric_rows(after_run)["btceur"]
    assert data["pair"] == "btceur" and data["exchange"] == "kraken"
    assert data["metrics"]["latest_price"] == db.latest_price
    assert data["metrics"]["std_rank"] == db.std_rank
    assert len(data["prices"]) == db.samples_7d
    assert len(data["history"]) == 1

    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["show", "btceur", "csv"]).stdout)))
    assert len(rows) == 1 and rows[0]["pair"] == "btceur"
    assert float(rows[0]["weekly_average"]) == db.weekly_average


def test_show_unknown_pair_suggests(after_run: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["show", "btcusdd"])
    assert result.exit_code == 2  # README: a pair name is a usage error
    assert "no metrics for btcusdd; did you mean btcusd" in result.stderr


def test_show_before_any_run(exchange_env: dict[str, str], runner: CliRunner) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    for args in (["show"], ["show", "btceur"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert "run `mcdata run` first" in result.stderr


def test_show_rejects_hostile_input(after_run: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["show", "\x1b[2Jbtceur"])
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr
    result = runner.invoke(app, ["show", "btceur", "xml"])
    assert result.exit_code == 2


def test_prune_keeps_rollups_and_metrics(exchange_env: dict[str, str], runner: CliRunner) -> None:
    from datetime import UTC, datetime, timedelta

    from mcdata import jobs
    from mcdata.config import load_settings

    assert runner.invoke(app, ["run", "--backfill", "20d"]).exit_code == 0
    as_of = datetime.now(UTC).replace(microsecond=0)
    assert jobs.compute(load_settings(), as_of=as_of).exit_code == 0
    at_as_of = sa.select(metrics).where(metrics.c.timestamp == as_of)
    before = {r.pair: r for r in query(exchange_env["MCDATA_DATABASE_URL"], at_as_of)}
    cut = (datetime.now(UTC) - timedelta(days=8)).replace(hour=0, minute=0, second=0, microsecond=0)
    older = query(exchange_env["MCDATA_DATABASE_URL"], sa.select(sa.func.count()).select_from(raw_prices)
                  .where(raw_prices.c.timestamp < cut))[0][0]
    result = runner.invoke(app, ["prune", "--keep", "8d"])
    assert result.exit_code == 0, result.stderr
    deleted = int(result.stderr.split("prune: ")[1].split(" raw price rows")[0].replace(",", ""))
    assert deleted == older >= 9 * 11 * 24  # whole UTC days before now - 8d: 11 to 12 days of nine pairs
    assert jobs.compute(load_settings(), as_of=as_of).exit_code == 0
    after = {r.pair: r for r in query(exchange_env["MCDATA_DATABASE_URL"], at_as_of)}
    for pair, row in before.items():
        for column in ("latest_price", "weekly_average", "min_price", "max_price", "stddev_24h", "std_rank",
                       "change_24h_pct", "samples_7d", "samples_24h"):
            assert getattr(after[pair], column) == getattr(row, column), (pair, column)


def test_prune_needs_at_least_eight_days(exchange_env: dict[str, str], runner: CliRunner) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["prune", "--keep", "3d"])
    assert result.exit_code == 2
    assert "keep at least 8d" in result.stderr
    assert runner.invoke(app, ["prune"]).exit_code == 2


@pytest.mark.parametrize("arguments", [["btceur", "json"], ["json", "btceur"], ["BTC/EUR", "json"],
                                       ["json", "btc-eur"], ["btc_eur", "--format", "json"]])
def test_show_takes_pair_and_format_in_either_order_and_as_users_write_pairs(after_run: str, runner: CliRunner,
                                                                            arguments: list[str]) -> None:
    result = runner.invoke(app, ["show", *arguments])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["pair"] == "btceur"


def test_summary_says_one_request_not_one_requests(after_run: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch"])
    assert result.exit_code == 0, result.stderr
    assert ", 1 HTTP request (run " in result.stderr


def test_debug_shows_the_traceback_of_a_source_error(exchange_env: dict[str, str], fake_exchange: FakeExchange,
                                                     runner: CliRunner) -> None:
    fake_exchange.fail("/0/public/Assets", "html", times=10)
    result = runner.invoke(app, ["--debug", "run"])
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "SourceError" in result.stderr
    assert "Traceback" not in runner.invoke(app, ["run"]).stderr


def test_show_check_status_and_alerts_only_read(after_run: str, runner: CliRunner) -> None:
    """On SQLite the file is opened read-only: not a byte of it changes (runs rows included)."""
    sqlite = after_run.startswith("sqlite")
    path = after_run.removeprefix("sqlite:///")
    before = os.stat(path).st_mtime_ns if sqlite else None
    runs_before = len(query(after_run, sa.select(runs)))
    for arguments in (["show"], ["show", "btceur"], ["check"], ["status"], ["alerts"], ["alerts", "history"]):
        assert runner.invoke(app, arguments).exit_code == 0, arguments
    assert len(query(after_run, sa.select(runs))) == runs_before
    if sqlite:
        assert os.stat(path).st_mtime_ns == before


def test_show_limits_sorts_and_filters_the_overview(after_run: str, runner: CliRunner,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    stored = latest_metric_rows(after_run)
    by_volatility = sorted(stored.values(), key=lambda r: (r.volatility_24h is None, -(r.volatility_24h or 0), r.pair))
    result = runner.invoke(app, ["show", "json", "--sort", "volatility", "--limit", "3"])
    assert result.exit_code == 0, result.stderr
    assert [r["pair"] for r in json.loads(result.stdout)["pairs"]] == [r.pair for r in by_volatility[:3]]
    table = runner.invoke(app, ["show", "--limit", "2"])
    ranked = sorted(stored.values(), key=lambda r: r.std_rank)
    assert table.exit_code == 0 and ranked[0].pair in table.stdout and ranked[2].pair not in table.stdout
    assert "showing 2 of 9 pairs: --limit N or --all for more" in table.stdout
    monkeypatch.setattr("mcdata.cli.OVERVIEW_ROWS", 4)  # the table's default
    assert "showing 4 of 9 pairs" in runner.invoke(app, ["show"]).stdout
    assert "showing" not in runner.invoke(app, ["show", "--all"]).stdout
    only = runner.invoke(app, ["show", "csv", "--pairs", "btceur,ETH/EUR"])
    assert only.exit_code == 0 and {r["pair"] for r in csv.DictReader(io.StringIO(only.stdout))} == {"btceur",
                                                                                                   "etheur"}
    wrong = runner.invoke(app, ["show", "--sort", "volatilty"])
    assert wrong.exit_code == 2 and "volatility" in wrong.stderr
    assert runner.invoke(app, ["show", "--pairs", "zzzeur"]).exit_code == 2


def test_show_json_is_streamed_and_the_same_as_built_whole(after_run: str, runner: CliRunner) -> None:
    from mcdata import reading, render, render_metrics
    from mcdata.config import load_settings

    streamed = runner.invoke(app, ["show", "json"])
    assert streamed.exit_code == 0, streamed.stderr
    settings = load_settings({"database_url": after_run})
    whole = io.StringIO()
    render.emit(render_metrics.overview_output(reading.overview(settings, sparklines=False)), "json", whole)
    assert streamed.stdout == whole.getvalue()  # the same bytes, row for row, without holding them
    csv_streamed = runner.invoke(app, ["show", "csv"]).stdout
    whole = io.StringIO()
    render.emit(render_metrics.overview_output(reading.overview(settings, sparklines=False)), "csv", whole)
    assert csv_streamed == whole.getvalue()
