"""Overlapping runs, a reader during a write, a writer killed mid-write, PostgreSQL restarted mid-run."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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


class PrivatePostgres:
    """A PostgreSQL server of this test's own (initdb in a temporary folder, a free port, trust auth): it can
    be restarted under a run without touching the server that the other tests, maybe in parallel, use."""

    def __init__(self, folder: Path) -> None:
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        self.pg_ctl = str(Path(bindir) / "pg_ctl")
        self.data = folder / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        owner = pwd.getpwnam("postgres")
        folder.chmod(0o755)  # the server's user must reach its data folder
        os.chown(folder, owner.pw_uid, owner.pw_gid)  # and write its log beside it
        self.data.mkdir(mode=0o700)
        os.chown(self.data, owner.pw_uid, owner.pw_gid)
        self._as_postgres([str(Path(bindir) / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "root",
                           "--no-sync", "--no-instructions"])
        self.options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.control("start")

    @property
    def url(self) -> str:
        return f"postgresql://root@127.0.0.1:{self.port}/postgres"

    def control(self, action: str) -> None:
        log = self.data.parent / "server.log"  # the server's output: a pipe of ours would be held open by it
        self._as_postgres([self.pg_ctl, "-D", str(self.data), "-o", self.options, "-l", str(log), "-m", "fast",
                           "-w", action])

    def _as_postgres(self, command: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=60)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if os.geteuid() != 0 or not shutil.which("pg_config") or not shutil.which("runuser"):
        pytest.fail("needs root, pg_config and runuser to run a PostgreSQL server of its own")
    folder = Path(tempfile.mkdtemp(prefix="mcdata-postgres-"))  # not under pytest's 0700 folder of root's
    try:
        server = PrivatePostgres(folder)
        try:
            yield server
        finally:
            server.control("stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_postgres_restarted_during_a_run(private_postgres: PrivatePostgres, tmp_path: Path) -> None:
    from tests.fake_exchange import FakeExchange

    with FakeExchange() as exchange:
        harness = Harness(private_postgres.url, exchange, tmp_path)
        _restarted_during_a_run(harness, private_postgres)


def _restarted_during_a_run(harness: Harness, server: PrivatePostgres) -> None:
    assert harness.invoke("migrate")[0] == 0
    assert harness.invoke("run")[0] == 0
    stored = counts(harness)[0]
    harness.exchange.latency = 1.0  # a slow Ticker: time to restart the server under the run
    child = harness.spawn("run")
    wait_for_requests(harness, len(harness.exchange.requests) + 1)
    server.control("restart")
    code, _, err = harness.wait(child)
    assert code == 4, err
    assert "database" in err and len(err.strip().splitlines()) <= 2
    harness.exchange.latency = 0
    time.sleep(1.1)
    assert harness.invoke("run")[0] == 0
    assert counts(harness)[0] == stored + 9  # nothing lost; the next run stored its prices
    statuses = [(r.status, r.exit_code) for r in harness.query("SELECT status, exit_code FROM runs ORDER BY id")]
    assert statuses[-2:] == [("failed", 4), ("ok", 0)]

