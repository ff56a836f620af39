"""500 simulated hourly runs with random faults: nothing lost, duplicated or left half-written.

A controllable clock drives both mcdata and the fake exchange (whose prices move with it). Each hour
draws a fault: 5xx (once or for good), 429 with Retry-After, Kraken's throttling, a timeout,
truncated JSON, an HTML page, a NaN price, a failing candle request, a pair delisted for good, the
machine being off for a few hours, hand-made UPDATE/DELETE/TRUNCATE (refused), this machine's clock 10
or 20 minutes off the source's (nothing stored), a price corrected with `mcdata prices set`, or an alert
rule edited (it starts fresh: it fires at once). Once, the source is down for longer than the 8-day
retention while the runs go on (and prune past the newest sample). After every run: the exit code is a
documented one, the `runs` row says what happened, every metric equals an exact recomputation from every
price ever stored (kept here: prune deletes raw rows, the rollups keep their history). At the end: no
duplicate, no gap over an hour in any pair while it was listed, and every rollup equals its raw rows."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mcdata import jobs, rollups
from mcdata.config import Settings, load_settings
from mcdata.db import make_engine
from mcdata.errors import ExitCode
from mcdata.migrations import upgrade
from mcdata.schema import alert_events, metrics, raw_prices, runs
from tests.fake_exchange import FakeExchange
from tests.helpers import assert_metrics_match, count_rows, stored_metrics
from tests.reference import reference_metrics
from tests.test_store import assert_rollups_match_the_raw_rows

pytestmark = pytest.mark.slow  # subprocesses, soak, restarts: `-m "not slow"` skips them while working

RUNS = 500
START = datetime(2026, 6, 1, 0, 30, tzinfo=UTC)
FAULTS = [
    ("none", 40), ("ticker_5xx_once", 6), ("ticker_5xx_down", 4), ("rate_limited", 5), ("kraken_throttle", 5),
    ("timeout", 3), ("truncated", 4), ("html", 4), ("nan_price", 6), ("ohlc_fails", 4), ("machine_off", 4),
    ("hand_update", 2), ("hand_delete", 2), ("hand_truncate", 2), ("clock_skew", 3), ("price_corrected", 3),
    ("rule_edited", 2),
]
RETENTION = timedelta(days=8)
OUTAGE = timedelta(days=9, hours=12)  # longer than the retention: its runs prune past the newest sample
HAND_MADE = {
    "hand_update": "UPDATE raw_crypto_pair_price_history SET price = price * 2 WHERE pair = 'btceur'",
    "hand_delete": "DELETE FROM raw_crypto_pair_price_history WHERE pair = 'etheur'",
    "hand_truncate": "DELETE FROM raw_crypto_pair_price_history",
}


def tamper(engine: sa.Engine, fault: str) -> None:
    """SQL by hand against the raw table: refused, and nothing changes."""
    statement = HAND_MADE[fault]
    if fault == "hand_truncate" and engine.dialect.name == "postgresql":
        statement = "TRUNCATE raw_crypto_pair_price_history"
    before = count_rows(engine, raw_prices)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(sa.text(statement))
    assert count_rows(engine, raw_prices) == before


History = dict[tuple[str, str, datetime], float]


def correct_a_price(engine: sa.Engine, settings: Settings, rng: random.Random, now: datetime,
                    history: History) -> None:
    """The supported correction: one stored price of the last day replaced; rollups and snapshots follow."""
    with engine.connect() as connection:
        candidates = connection.execute(sa.select(raw_prices.c.pair, raw_prices.c.timestamp, raw_prices.c.price)
                                        .where(raw_prices.c.timestamp > now - timedelta(days=1))
                                        .order_by(raw_prices.c.pair, raw_prices.c.timestamp)).all()
    if candidates:
        pair, at, price = rng.choice(candidates)
        assert jobs.set_price(settings, "kraken", pair, at, price * 1.01).exit_code == ExitCode.OK
        history[("kraken", pair, at)] = price * 1.01


def remember(engine: sa.Engine, history: History, now: datetime) -> None:
    """Every row this run stored (they carry its time as fetched_at): the prices ever stored, kept here."""
    with engine.connect() as connection:
        for row in connection.execute(sa.select(raw_prices).where(raw_prices.c.fetched_at == now)):
            history[(row.exchange, row.pair, row.timestamp)] = row.price


def assert_metrics_exact_on_history(engine: sa.Engine, history: History, as_of: datetime) -> None:
    samples = [(exchange, pair, at, price) for (exchange, pair, at), price in history.items() if at <= as_of]
    assert_metrics_match(stored_metrics(engine, as_of), reference_metrics(samples, as_of))


def edit_the_rule(monkeypatch: pytest.MonkeyPatch, edits: int) -> Settings:
    """A rule that always holds for btceur, with another threshold each edit: a changed rule starts fresh."""
    monkeypatch.setenv("MCDATA_ALERTS", json.dumps([{"name": "btc-high", "rule": "above", "price": 1 + edits,
                                                     "pairs": ["btceur"]}]))
    return load_settings()


def inject(fault: str, exchange: FakeExchange, rng: random.Random) -> None:
    ticker = "/0/public/Ticker"
    if fault == "ticker_5xx_once":
        exchange.fail(ticker, "status", status=rng.choice([500, 502, 503, 504]))
    elif fault == "ticker_5xx_down":
        exchange.fail(ticker, "status", status=503, times=10)
    elif fault == "rate_limited":
        exchange.fail(ticker, "status", status=429, retry_after="0")
    elif fault == "kraken_throttle":
        exchange.fail(ticker, "kraken_error", message="EGeneral:Too many requests")
    elif fault == "timeout":
        exchange.fail(ticker, "hang", seconds=0.6, times=10)
    elif fault == "truncated":
        exchange.fail(ticker, "truncated")
    elif fault == "html":
        exchange.fail(ticker, "html", status=502, times=10)
    elif fault == "nan_price":
        exchange.price_overrides[rng.choice(sorted(exchange.markets))] = "NaN"
    elif fault == "ohlc_fails":
        exchange.fail("/0/public/OHLC", "status", status=500, times=10)


@pytest.mark.slow
def test_five_hundred_hourly_runs_with_faults(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20261124)
    clock = {"now": START}
    skew = {"source": timedelta(0)}
    exchange = FakeExchange(clock=lambda: (clock["now"] + skew["source"]).timestamp())
    pairs = ["btceur", "etheur", "dogeusd", "solusd", "xrpusd"]
    for name, value in {
        "MCDATA_DATABASE_URL": db_url, "MCDATA_PAIRS": ",".join(pairs), "MCDATA_RATE_LIMIT": "1000",
        "MCDATA_HTTP_BACKOFF": "0.001", "MCDATA_HTTP_TIMEOUT": "0.2", "MCDATA_HTTP_RETRIES": "1",
        "MCDATA_CACHE_DIR": str(tmp_path / "cache"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MCDATA_RETENTION", "8d")
    engine = make_engine(db_url)
    upgrade(engine)
    delisted_at: dict[str, datetime] = {}
    history: History = {}
    edits = 0
    codes: Counter[int] = Counter()
    faults: Counter[str] = Counter()
    with exchange:
        monkeypatch.setenv("MCDATA_API_URL", exchange.url)
        settings = edit_the_rule(monkeypatch, edits)
        while sum(codes.values()) < RUNS:
            fault = rng.choices([f for f, _ in FAULTS], [w for _, w in FAULTS])[0]
            if sum(codes.values()) == RUNS // 2 and not delisted_at:
                fault = "delist"
            if sum(codes.values()) == RUNS // 4 and not faults["long_outage"]:
                fault = "long_outage"
            faults[fault] += 1
            exchange.faults.clear()
            exchange.price_overrides.clear()
            if fault == "machine_off":
                clock["now"] += timedelta(hours=rng.randint(1, 30))
                continue
            if fault == "delist":
                exchange.delist("solusd")
                delisted_at["solusd"] = clock["now"]
            if fault in HAND_MADE:
                tamper(engine, fault)
            if fault == "price_corrected":
                correct_a_price(engine, settings, rng, clock["now"], history)
            if fault == "long_outage":
                codes[long_outage(engine, settings, exchange, clock, history)] += 1
                continue
            fired_before = count_rows(engine, alert_events)
            if fault == "rule_edited":
                edits += 1
                settings = edit_the_rule(monkeypatch, edits)
            skew["source"] = timedelta(minutes=rng.choice([-20, 10])) if fault == "clock_skew" else timedelta(0)
            inject(fault, exchange, rng)
            rows_before = count_rows(engine, raw_prices)
            report = jobs.run(settings, now=clock["now"])
            codes[report.exit_code] += 1
            assert report.exit_code in (ExitCode.OK, ExitCode.FAILED, ExitCode.PARTIAL), (clock["now"], fault)
            check_run_row(engine, report, rows_before, clock["now"])
            remember(engine, history, clock["now"])
            assert_metrics_exact_on_history(engine, history, clock["now"].replace(microsecond=0))
            if fault == "rule_edited":
                assert count_rows(engine, alert_events) == fired_before + 1  # fresh: it holds, so it fires
            clock["now"] += timedelta(hours=1)
    check_no_gaps(engine, pairs, delisted_at)
    assert_rollups_match_the_raw_rows(engine, [(pair, at, price) for (_, pair, at), price in history.items()])
    rows = count_rows(engine, raw_prices)
    engine.dispose()
    print(f"\nsoak on {engine.dialect.name}: {sum(codes.values())} runs, exit codes {dict(codes)}, "
          f"faults {dict(faults)}, {rows} price rows, 0 duplicates, no gap over an hour")
    assert codes[ExitCode.OK] > RUNS // 3 and codes[ExitCode.FAILED] and codes[ExitCode.PARTIAL]
    assert all(faults[f] for f, _ in FAULTS) and faults["long_outage"] == 1


def long_outage(engine: sa.Engine, settings: Settings, exchange: FakeExchange, clock: dict[str, datetime],
                history: History) -> ExitCode:
    """The source down for longer than the retention, the runs going on every 6 hours (each computes and
    prunes: the pruned mark passes the newest sample), then the first run after it: it stores from the mark
    on (nothing older is asked for), and computes."""
    for _ in range(int(OUTAGE / timedelta(hours=6))):
        exchange.fail("/0/public/", "status", status=503, times=1000)
        assert jobs.run(settings, now=clock["now"]).exit_code == ExitCode.FAILED
        exchange.faults.clear()
        clock["now"] += timedelta(hours=6)
    with engine.connect() as connection:
        newest = connection.execute(sa.select(sa.func.max(raw_prices.c.timestamp))).scalar()
        mark = rollups.pruned_before(connection)
    assert newest is None and mark is not None and mark > clock["now"] - OUTAGE
    report = jobs.run(settings, now=clock["now"])
    assert report.exit_code == ExitCode.OK, report.errors
    remember(engine, history, clock["now"])
    assert_metrics_exact_on_history(engine, history, clock["now"].replace(microsecond=0))
    clock["now"] += timedelta(hours=1)
    return report.exit_code


def check_run_row(engine: sa.Engine, report: jobs.Report, rows_before: int, now: datetime) -> None:
    """The runs row tells the truth: status, code, pairs and rows written match what is stored."""
    with engine.connect() as connection:
        row = connection.execute(sa.select(runs).where(runs.c.id == report.run_id)).one()
        tickers = connection.execute(
            sa.select(sa.func.count()).select_from(raw_prices)
            .where(raw_prices.c.timestamp == now.replace(microsecond=0), raw_prices.c.kind == "ticker")
        ).scalar_one()
        metric_rows = connection.execute(
            sa.select(sa.func.count()).select_from(metrics).where(metrics.c.timestamp == now.replace(microsecond=0))
        ).scalar_one()
    assert row.command == "run" and row.finished_at is not None
    if row.status == "failed" and "clock" in (row.error_summary or ""):
        assert row.pairs_stored == 0
    assert row.exit_code == report.exit_code
    assert row.status == {0: "ok", 3: "partial"}.get(report.exit_code, "failed")
    assert row.pairs_stored == tickers
    assert row.pairs_failed == len(report.failures) + report.pairs_unfetched
    assert row.rows_written == (count_rows(engine, raw_prices) - rows_before + report.rows_deleted) + metric_rows
    assert (row.error_summary is None) == (report.exit_code == ExitCode.OK)


def check_no_gaps(engine: sa.Engine, pairs: list[str], delisted_at: dict[str, datetime]) -> None:
    with engine.connect() as connection:
        duplicates = connection.execute(sa.text(
            "SELECT exchange, pair, timestamp FROM raw_crypto_pair_price_history "
            "GROUP BY exchange, pair, timestamp HAVING COUNT(*) > 1")).all()
        assert duplicates == []
        for pair in pairs:
            times = list(connection.execute(
                sa.select(raw_prices.c.timestamp).where(raw_prices.c.pair == pair).order_by(raw_prices.c.timestamp)
            ).scalars())
            until = delisted_at.get(pair)
            listed = [t for t in times if until is None or t < until]
            worst = max((b - a for a, b in itertools.pairwise(listed)), default=timedelta(0))
            assert worst <= timedelta(hours=1), (pair, worst)
