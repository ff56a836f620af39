"""Overlapping runs, a reader during a write, a writer killed mid-write, PostgreSQL restarted mid-run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.reliability.conftest import Harness

pytestmark = pytest.mark.slow  # subprocesses, soak, restarts: `-m "not slow"` skips them while working


def wait_for_requests(harness: Harness, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(harness.exchange.requests) < count:
        assert time.monotonic() < deadline, f"only {len(harness.exchange.requests)} requests arrived"
        time.sleep(0.01)


def counts(harness: Harness) -> tuple[int, int]:
    """Raw rows, and the samples the rollups count (the hourly and the daily level must agree)."""
    raw = harness.query("SELECT count(*) FROM raw_crypto_pair_price_history")[0][0]
    hourly = harness.query("SELECT coalesce(sum(samples), 0) FROM price_rollup_hourly")[0][0]
    daily = harness.query("SELECT coalesce(sum(samples), 0) FROM price_rollup_daily")[0][0]
    assert hourly == daily
    return int(raw), int(hourly)


@pytest.mark.slow
def test_eight_runs_at_once_one_works(harness: Harness) -> None:
    assert harness.invoke("migrate")[0] == 0
    harness.exchange.latency = 0.2  # the winner takes a few seconds
    started = time.monotonic()
    children = [harness.spawn("--quiet", "run") for _ in range(8)]
    finished: list[tuple[int, float]] = []
    for child in children:
        code, _, err = harness.wait(child)
        finished.append((code, time.monotonic() - started))
        assert code in (0, 75), err
    assert sorted(code for code, _ in finished) == [0] + [75] * 7
    assert all(elapsed < 15 for code, elapsed in finished if code == 75)
    assert [r.status for r in harness.query("SELECT status FROM runs")] == ["ok"]


@pytest.mark.slow
def test_show_works_while_a_run_writes(harness: Harness) -> None:
    assert harness.invoke("run")[0] == 0
    harness.exchange.latency = 0.05
    before = len(harness.exchange.requests)
    writer = harness.spawn("fetch", "--pairs", "all", "--backfill", "29d")  # a long backfill
    wait_for_requests(harness, before + 4)
    code, out, err = harness.invoke("show", "json")
    assert code == 0, err
    assert '"pairs"' in out
    assert harness.wait(writer)[0] in (0, 3)


def clear_of_the_hour(margin: float = 90) -> None:
    """Waits out the top of the hour when it is near: a run that crosses it rightly leaves the candle that
    closes there to the next run, so a count of whole hours would move under a test that asserts one."""
    to_the_hour = -time.time() % 3600
    if to_the_hour < margin:
        time.sleep(to_the_hour + 1)


def big_backfill(harness: Harness) -> subprocess.Popen[str]:
    return harness.spawn("fetch", "--pairs", "all", "--backfill", "29d", env={"MCDATA_BACKFILL_WORKERS": "8"})


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
def test_a_fetch_killed_while_writing_leaves_all_or_nothing(harness: Harness, delay: float) -> None:
    from tests.fake_exchange import FakeExchange

    harness.exchange.markets.update(FakeExchange(synthetic_markets=150).markets)
    harness.exchange.assets.update({f"A{i:04d}": f"A{i:04d}" for i in range(1, 151)})
    assert harness.invoke("migrate")[0] == 0
    listed = sum(1 for m in harness.exchange.markets.values() if m.status == "online" and "." not in m.pair)
    clear_of_the_hour()
    child = big_backfill(harness)
    wait_for_requests(harness, 3 + listed)  # Assets, AssetPairs, Ticker, then one OHLC per pair
    time.sleep(delay)  # into the write
    child.send_signal(signal.SIGKILL)
    harness.wait(child)
    raw, rolled = counts(harness)
    full = listed * (29 * 24 + 1)
    assert raw in (0, full), raw  # one transaction: all of it or none of it
    assert rolled == raw  # the rollups were written in the same transaction
    time.sleep(1.1)  # the next run's tickers fall in another second
    code, _, err = harness.wait(big_backfill(harness))
    assert code == 0, err
    assert counts(harness) == (full + (listed if raw else 0), full + (listed if raw else 0))


def pg_ctlcluster() -> list[str] | None:
    version = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    tool = shutil.which("pg_ctlcluster")
    return [tool, "--skip-systemctl-redirect", version[-1], "main"] if tool and version and os.geteuid() == 0 else None


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgres_restarted_during_a_run(harness: Harness) -> None:
    command = pg_ctlcluster()
    assert command, "needs root and pg_ctlcluster to restart PostgreSQL"
    assert harness.invoke("migrate")[0] == 0
    assert harness.invoke("run")[0] == 0
    stored = counts(harness)[0]
    harness.exchange.latency = 1.0  # a slow Ticker: time to restart the server under the run
    child = harness.spawn("run")
    wait_for_requests(harness, len(harness.exchange.requests) + 1)
    subprocess.run([*command, "restart", "-m", "fast"], check=True, capture_output=True)
    code, _, err = harness.wait(child)
    assert code == 4, err
    assert "database" in err and len(err.strip().splitlines()) <= 2
    harness.exchange.latency = 0
    time.sleep(1.1)
    assert harness.invoke("run")[0] == 0
    assert counts(harness)[0] == stored + 9  # nothing lost; the next run stored its prices
    statuses = [(r.status, r.exit_code) for r in harness.query("SELECT status, exit_code FROM runs ORDER BY id")]
    assert statuses[-2:] == [("failed", 4), ("ok", 0)]

