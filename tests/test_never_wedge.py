"""Issue 22: whatever a peer, a setting or an old decision does, the hourly job keeps collecting: it stores
what it can, computes, and exits within its budget. Real HTTP on loopback, SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata import alerts, corrections, jobs, migrations, notify, rollups, store
from mcdata import metrics as metrics_module
from mcdata.cli import app
from mcdata.config import load_settings
from mcdata.db import make_engine
from mcdata.schema import UTCDateTime, alert_events, raw_price_quarantine, raw_prices, runs
from mcdata.schema import metrics as metrics_table
from mcdata.store import PriceRow, insert_prices, prune
from tests.conftest import hour
from tests.fake_exchange import FakeExchange
from tests.helpers import assert_metrics_exact, assert_metrics_match, execute, query, stored_metrics
from tests.receiver import Receiver
from tests.reference import reference_metrics

T0 = datetime(2026, 11, 1, 12, 5, tzinfo=UTC)


def _run(fake: FakeExchange, at: datetime, **settings: str) -> jobs.Report:
    fake.clock = at.timestamp
    return jobs.run(load_settings({"retention": "8d", **settings}), now=at)


def _mark(url: str) -> datetime | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return rollups.pruned_before(connection)
    finally:
        engine.dispose()


def _times(url: str, pair: str) -> list[datetime]:
    return [r.timestamp for r in query(url, sa.select(raw_prices.c.timestamp).where(raw_prices.c.pair == pair)
                                       .order_by(raw_prices.c.timestamp))]


def test_history_behind_the_pruned_mark_never_stops_collection(env: str, fake_exchange: FakeExchange,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcdata")
    assert _run(fake_exchange, T0, pairs="btceur").exit_code == 0
    # an outage longer than the retention: the runs still compute and prune, so the mark passes the newest sample
    fake_exchange.fail("/0/public/", "status", times=1000, status=503)
    outage_end = T0 + timedelta(days=12)
    assert _run(fake_exchange, outage_end, pairs="btceur").exit_code == 1
    mark = _mark(env)
    assert mark == datetime(2026, 11, 5, tzinfo=UTC)
    assert _times(env, "btceur") == []
    fake_exchange.faults.clear()

    back = outage_end + timedelta(hours=1)
    caplog.clear()
    report = _run(fake_exchange, back, pairs="btceur")
    assert report.exit_code == 0, report.errors
    assert "not fetching history before the pruned mark 2026-11-05T00:00:00Z (btceur)" in caplog.text
    times = _times(env, "btceur")
    assert times[0] == mark + timedelta(hours=1) and times[-1] == back
    assert all(b - a <= timedelta(hours=1) for a, b in itertools.pairwise(times))

    # a new pair whose --backfill reaches behind the mark, and a pair left out longer than the retention
    later = back + timedelta(hours=1)
    report = _run(fake_exchange, later, pairs="btceur,etheur", backfill="25d")
    assert report.exit_code == 0, report.errors
    assert _times(env, "etheur")[0] == mark + timedelta(hours=1)
    assert report.metric_rows == 2
    assert_metrics_exact(env, later.replace(microsecond=0))


def test_a_prune_that_deletes_nothing_leaves_the_mark(migrated_engine: sa.Engine) -> None:
    with migrated_engine.begin() as connection:
        assert prune(connection, T0) == 0
        assert rollups.pruned_before(connection) is None


# -- pings: bounded in wall-clock time and bytes --------------------------------------------------------
def _spawn(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mcdata", *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_dripping_monitor_costs_a_run_seconds(env: str) -> None:
    with Receiver() as monitor:
        monitor.drip = 120.0
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "mcdata", "run", "--backfill", "0"], capture_output=True,
                              text=True, env={**os.environ, "MCDATA_PING_URL": f"{monitor.url}/ping/x"}, timeout=60,
                              check=False)
        took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 15, took  # two pings of at most 5 s each, and the run itself
    assert "the monitoring ping (start) failed: no answer within 5s (abandoned)" in done.stderr
    assert "the monitoring ping (0) failed: no answer within 5s (abandoned)" in done.stderr


@pytest.mark.slow
def test_sigterm_during_a_dripping_ping_ends_the_process_within_the_end_pings_budget(env: str) -> None:
    with Receiver() as monitor:
        monitor.drip = 120.0
        process = _spawn("run", "--backfill", "0", MCDATA_PING_URL=f"{monitor.url}/ping/x")
        deadline = time.monotonic() + 20
        while monitor.seen == 0 and time.monotonic() < deadline:  # inside the start ping
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - terminated
    assert process.returncode == 143, stderr
    assert took < 7, took  # the end ping's 5 s, not the monitor's two minutes
    assert [p.rsplit("/", 1)[1] for p in monitor.paths] == ["start", "143"]


# -- alerts: delivered once, by a process the run can abandon --------------------------------------------
def _pending_event(world: dict[str, Any]) -> None:
    now = world["clock"]["now"]
    execute(world["db"], alert_events.insert(), {
        "rule": "btc-spike", "exchange": "kraken", "pair": "btceur", "as_of": now, "value": 1.0, "baseline": 1.0,
        "message": "pending", "created_at": now, "attempts": 0})


def test_a_webhook_that_never_answers_gets_an_event_at_most_twice(hourly: dict[str, Any]) -> None:
    hour(hourly)
    _pending_event(hourly)
    hourly["receiver"].delay = notify.NOTIFY_TIMEOUT + 2  # slower than every timeout: the outcome is unknown
    for _ in range(4):
        hour(hourly)
    assert len(hourly["receiver"].bodies) == 2  # sent, unanswered; sent once more, then counted as taken
    [event] = query(hourly["db"], sa.select(alert_events))
    assert event.delivered_at is not None and event.attempts == 2


def test_events_wait_while_no_notify_url_is_set_and_go_out_when_one_is(hourly: dict[str, Any],
                                                                        runner: CliRunner) -> None:
    config = hourly["config"].read_text()
    hour(hourly)
    hourly["config"].write_text(config.split("\n", 1)[1])  # notify emptied
    _pending_event(hourly)
    hour(hourly)
    [event] = query(hourly["db"], sa.select(alert_events))
    assert event.delivered_at is None and event.attempts == 0 and hourly["receiver"].bodies == []
    hourly["config"].write_text(config)  # the URL is back
    hour(hourly)
    [event] = query(hourly["db"], sa.select(alert_events))
    assert event.delivered_at is not None and len(hourly["receiver"].bodies) == 1


@pytest.mark.slow
def test_a_dripping_webhook_cannot_keep_the_process_past_the_delivery_budget(hourly: dict[str, Any]) -> None:
    hour(hourly)
    hourly["clock"]["now"] = datetime.now(UTC).replace(microsecond=0)
    _pending_event(hourly)
    hourly["receiver"].drip = 300.0
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mcdata", "run"], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120, check=False)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < alerts.DELIVERY_BUDGET.total_seconds() + 10, took
    [event] = query(hourly["db"], sa.select(alert_events))
    assert event.delivered_at is None and event.attempts == 1 and event.delivered_to.startswith("?")
    assert "no answer before the delivery budget ended" in event.last_error


# -- a venue with more pairs than a statement can bind ----------------------------------------------------
def test_more_pairs_than_a_statement_can_bind(migrated_engine: sa.Engine) -> None:
    """PostgreSQL binds at most 65,535 values in one statement and SQLite 32,766: `--pairs all` on a venue
    that lists more failed every run."""
    pairs = [f"p{index:05d}usd" for index in range(70_000)]
    with migrated_engine.begin() as connection:
        insert_prices(connection, [PriceRow("big", pair, T0, 1.0 + i, None, "ticker", T0)
                                   for i, pair in enumerate(pairs)])
    with migrated_engine.connect() as connection:
        spans = store.stored_spans(connection, "big", [*pairs, "absent"])
        series = store.price_series(connection, [("big", pair) for pair in pairs], T0 - timedelta(hours=1), T0)
    assert len(spans) == 70_000 and spans["p69999usd"] == (T0, T0)
    assert len(series) == 70_000 and series[("big", "p12345usd")] == [(T0, 12346.0)]


# -- a database written by an older version ----------------------------------------------------------------
def test_rows_that_todays_checks_refuse_are_quarantined_by_the_migration(engine: sa.Engine) -> None:
    """An older version stored a price outside the band, an impossible SQLite date, a sample from a clock
    that was ahead: `migrate` used to fail on them (and every run after it exit 4)."""
    migrations.upgrade(engine, "0003")
    good = [("kraken", "btceur", T0 + timedelta(hours=h), 100.0 + h) for h in range(3)]
    bad = [("kraken", "btceur", "2026-11-01 15:05:00.000000", 1e13, "price outside 1e-12 .. 1e12"),
           ("kraken", "etheur", "2099-01-01 00:00:00.000000", 5.0, "later than the migration")]
    if engine.dialect.name == "sqlite":
        bad.append(("kraken", "etheur", "2026-11-31 10:00:00.000000", 7.0, "not a real instant"))
    insert = sa.text("INSERT INTO raw_crypto_pair_price_history (exchange, pair, timestamp, price, volume, kind, "
                     "fetched_at) VALUES (:exchange, :pair, :timestamp, :price, NULL, 'ticker', :timestamp)")
    with engine.begin() as connection:
        for exchange, pair, moment, price in good:
            connection.execute(insert.bindparams(sa.bindparam("timestamp", type_=UTCDateTime())),
                               {"exchange": exchange, "pair": pair, "timestamp": moment, "price": price})
        for exchange, pair, text, price, _ in bad:
            timestamp = text if engine.dialect.name == "sqlite" else datetime.fromisoformat(text + "+00:00")
            connection.execute(insert, {"exchange": exchange, "pair": pair, "timestamp": timestamp, "price": price})
    assert migrations.upgrade(engine)[1] == migrations.head_revision()
    with engine.connect() as connection:
        moved = connection.execute(sa.select(raw_price_quarantine.c.pair, raw_price_quarantine.c.timestamp,
                                             raw_price_quarantine.c.price, raw_price_quarantine.c.reason)).all()
        assert sorted(moved) == sorted((pair, text, price, reason) for _, pair, text, price, reason in bad)
        assert [(r.pair, r.price) for r in connection.execute(sa.select(raw_prices))] == \
            [("btceur", price) for _, _, _, price in good]
        assert rollups.verify(connection).total == 0  # the rollups and markets no longer count them
        assert set(store.newest_samples(connection)) == {("kraken", "btceur")}
    assert migrations.upgrade(engine)[1] == migrations.head_revision()  # nothing more to do


# -- health tells the truth --------------------------------------------------------------------------------
@pytest.mark.parametrize("pairs", ["", "all"])
def test_a_delisted_pair_is_shown_delisted_not_unhealthy(env: str, fake_exchange: FakeExchange, runner: CliRunner,
                                                         monkeypatch: pytest.MonkeyPatch, pairs: str) -> None:
    chosen = {"pairs": pairs} if pairs else {}
    earlier = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    assert _run(fake_exchange, earlier, **chosen).exit_code == 0
    fake_exchange.delist("etheur")
    now = datetime.now(UTC)
    assert _run(fake_exchange, now, **chosen).exit_code == 0
    if pairs:
        monkeypatch.setenv("MCDATA_PAIRS", pairs)
    result = runner.invoke(app, ["status", "json", "--max-age", "90m"])
    assert result.exit_code == 0, result.stderr
    shown = {row["pair"]: row for row in json.loads(result.stdout)["pairs"]}
    assert shown["etheur"]["delisted_since"] is not None and shown["etheur"]["stale"] is False
    assert not any(row["stale"] for row in shown.values())
    table = runner.invoke(app, ["status", "--max-age", "90m"])
    assert "delisted" in table.stdout


def test_health_follows_the_scheduled_job_and_usage_errors_are_no_runs(env: str, runner: CliRunner,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.invoke(app, ["run", "--backfill", "1d"]).exit_code == 0
    assert runner.invoke(app, ["fetch", "--backfill", "0", "--pairs", "btceur", "--api-url",
                               "http://127.0.0.1:9"]).exit_code == 1  # typed by hand, a wrong URL
    assert runner.invoke(app, ["fetch", "--backfill", "400d"]).exit_code == 2  # a usage error
    assert runner.invoke(app, ["prices", "set", "btceur", "1.0", "--at", "2000-01-01"]).exit_code == 2
    status = runner.invoke(app, ["status", "json"])
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["last_run"]["command"] == "run"
    commands = [(r.command, r.exit_code) for r in query(env, sa.select(runs).order_by(runs.c.id))]
    assert commands == [("run", 0), ("fetch", 1)]  # the usage errors did nothing: no run recorded


# -- alert rules: state belongs to the rule as defined; a bad rule breaks only what uses the rules ---------
NOTIFY_AND_PAIRS = 2  # the hourly fixture's config: a notify line and a pairs line, then its rule


def _rules(world: dict[str, Any], rules: str) -> None:
    head = world["config"].read_text().splitlines()[:NOTIFY_AND_PAIRS]
    world["config"].write_text("\n".join(head) + "\n" + rules)


ABOVE = '[[alerts]]\nname = "btc-high"\nrule = "above"\nprice = {price}\npairs = ["btceur"]\ncooldown = "1m"\n'


def test_a_rule_removed_then_added_back_or_changed_starts_fresh(hourly: dict[str, Any]) -> None:
    _rules(hourly, ABOVE.format(price=1))  # always above: it fires once, then stays firing
    assert len(hour(hourly).alerts_fired) == 1
    assert hour(hourly).alerts_fired == []
    _rules(hourly, "")  # removed for an hour ...
    hour(hourly)
    _rules(hourly, ABOVE.format(price=1))  # ... and back: a crossing while it was away is news
    assert len(hour(hourly).alerts_fired) == 1
    _rules(hourly, ABOVE.format(price=2))  # another threshold: another rule
    assert len(hour(hourly).alerts_fired) == 1
    assert hour(hourly).alerts_fired == []


def test_a_bad_rule_breaks_only_the_commands_that_use_rules(hourly: dict[str, Any], runner: CliRunner) -> None:
    hour(hourly)
    _rules(hourly, '[[alerts]]\nname = "bad"\nrule = "spike"\nfactor = 0.5\nwindow = "1h"\n')
    for command in (["show"], ["status"], ["config"], ["show", "btceur"]):
        result = runner.invoke(app, command)
        assert result.exit_code in (0, 1), (command, result.stderr)  # status may be stale on the fake clock
        assert 'warning: alert "bad": factor: must be greater than 1' in result.stderr
    for command in (["run"], ["alerts"]):
        assert runner.invoke(app, command).exit_code == 2


def test_rules_are_checked_against_the_configured_pairs_not_a_one_off_pairs(hourly: dict[str, Any],
                                                                           runner: CliRunner) -> None:
    hour(hourly)
    hourly["clock"]["now"] = datetime.now(UTC)
    _rules(hourly, ABOVE.format(price=1))  # names btceur, a configured pair
    result = runner.invoke(app, ["fetch", "--backfill", "0", "--pairs", "etheur,ltceur"])
    assert result.exit_code == 0, result.stderr


def test_a_window_longer_than_the_retention_is_refused(hourly: dict[str, Any], runner: CliRunner,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCDATA_RETENTION", "8d")
    _rules(hourly, '[[alerts]]\nname = "slow"\nrule = "change"\npct = 5\nwindow = "8d"\n')
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2
    assert 'alert "slow": window: 8d is longer than the retention (8d): its first prices would be pruned' \
        in result.stderr
    _rules(hourly, '[[alerts]]\nname = "slow"\nrule = "change"\npct = 5\nwindow = "7d"\n')
    assert [rule.name for rule in load_settings().alerts] == ["slow"]


# -- corrections reach every number they change ----------------------------------------------------------
END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _series(pair: str, start: datetime, end: datetime, level: float) -> list[tuple[str, str, datetime, float]]:
    hours = int((end - start) / timedelta(hours=1))
    return [("kraken", pair, start + timedelta(hours=h, minutes=5), level * (1 + 0.01 * ((h * 7) % 13)))
            for h in range(hours)]


Samples = list[tuple[str, str, datetime, float]]
MARK = datetime(2026, 11, 12, tzinfo=UTC)


def _snapshot_db(engine: sa.Engine, pruned: bool) -> tuple[sa.Engine, Samples, list[datetime]]:
    """12 days of hourly prices (ccc's stop after two), a snapshot every 6 hours of the last 11, and with
    `pruned` a prune to 8 days: the mark is MARK."""
    first = END - timedelta(days=12)
    samples = [*_series("aaa", first, END, 100.0), *_series("bbb", first, END, 7.0),
               *_series("ccc", first, END - timedelta(days=10), 3.0)]
    times = [END - timedelta(days=11) + timedelta(hours=6 * k) for k in range(44)]
    with engine.begin() as connection:
        insert_prices(connection, [PriceRow(*sample, None, "ticker", END) for sample in samples])
        for as_of in times:
            metrics_module.compute(connection, as_of)
        if pruned:
            assert prune(connection, END - timedelta(days=8)) > 0
            assert rollups.pruned_before(connection) == MARK
    return engine, samples, times


def _assert_every_snapshot_exact(engine: sa.Engine, samples: list[tuple[str, str, datetime, float]],
                                 times: list[datetime], dropped: set[datetime]) -> None:
    stored = {row.timestamp for row in query(engine, sa.select(metrics_table.c.timestamp).distinct())}
    assert stored == set(times) - dropped
    for as_of in sorted(stored):
        assert_metrics_match(stored_metrics(engine, as_of), reference_metrics(samples, as_of))


def test_a_set_price_reaches_every_snapshot_near_the_pruned_mark(migrated_engine: sa.Engine) -> None:
    engine, samples, times = _snapshot_db(migrated_engine, pruned=True)
    at = MARK + timedelta(days=1, hours=3, minutes=5)
    with engine.begin() as connection:
        corrections.set_price(connection, "kraken", "aaa", at, 555.0, END)
    fixed = [(e, p, t, 555.0 if (p, t) == ("aaa", at) else price) for e, p, t, price in samples]
    # the snapshots whose week holds `at` but also reaches pruned prices cannot be exact again: gone
    _assert_every_snapshot_exact(engine, fixed, times, {t for t in times if at <= t < MARK + timedelta(days=7)})


def test_a_deleted_market_leaves_every_snapshot(migrated_engine: sa.Engine) -> None:
    engine, samples, times = _snapshot_db(migrated_engine, pruned=False)
    with engine.begin() as connection:
        corrections.delete_prices(connection, "kraken", "bbb", None, None, END)
    _assert_every_snapshot_exact(engine, [s for s in samples if s[1] != "bbb"], times, set())
    assert not query(engine, sa.select(metrics_table).where(metrics_table.c.pair == "bbb"))


def test_a_deletion_down_to_the_pruned_history_leaves_its_latest_price(migrated_engine: sa.Engine) -> None:
    engine, samples, times = _snapshot_db(migrated_engine, pruned=True)
    with engine.begin() as connection:
        corrections.delete_prices(connection, "kraken", "bbb", None, None, END)  # what is left: its history
    left = [s for s in samples if s[1] != "bbb" or s[2] < MARK]
    first_deleted = MARK + timedelta(minutes=5)
    _assert_every_snapshot_exact(engine, left, times,
                                 {t for t in times if first_deleted <= t < MARK + timedelta(days=7)})


def test_a_late_price_set_is_the_latest_price_of_every_later_snapshot(migrated_engine: sa.Engine) -> None:
    """ccc's last sample is ten days old: it is the latest price of every snapshot since, far past REACH."""
    engine, samples, times = _snapshot_db(migrated_engine, pruned=False)
    last = max(s[2] for s in samples if s[1] == "ccc")
    with engine.begin() as connection:
        corrections.set_price(connection, "kraken", "ccc", last, 4.5, END)
    fixed = [(e, p, t, 4.5 if (p, t) == ("ccc", last) else price) for e, p, t, price in samples]
    _assert_every_snapshot_exact(engine, fixed, times, set())


def test_prices_refuses_what_does_not_exist_and_follows_the_configured_venue(
        env: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.invoke(app, ["run", "--backfill", "1d", "--pairs", "btceur,etheur"]).exit_code == 0
    at = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0).isoformat()
    refused = {
        ("set", "ethuer", "--at", at, "--price", "1"):
            "no prices are stored for ethuer on kraken; did you mean etheur?",
        ("set", "etheur", "--at", at, "--price", "1", "--exchange", "krakn"):
            "no prices are stored for the venue 'krakn'; did you mean --exchange kraken?",
        ("set", "etheur", "--at", "2020-01-01", "--price", "1"): "is long before the series' first sample",
        ("delete", "etheur", "--since", at, "--until", "2020-01-01"): "is after --until",
        ("delete", "etheur", "--until", "2020-01-01"): "no prices of etheur on kraken in that range: nothing deleted",
        ("delete", "zzzeur"): "no prices are stored for zzzeur on kraken",
    }
    for arguments, message in refused.items():
        result = runner.invoke(app, ["prices", *arguments])
        assert result.exit_code == 2, (arguments, result.stderr)
        assert message in result.stderr, (arguments, result.stderr)
    before = query(env, sa.select(sa.func.count()).select_from(raw_prices))[0][0]
    assert runner.invoke(app, ["prices", "set", "zzzeur", "--at", at, "--price", "2", "--new"]).exit_code == 0
    assert query(env, sa.select(sa.func.count()).select_from(raw_prices))[0][0] == before + 1
    monkeypatch.setenv("MCDATA_EXCHANGE", "elsewhere")  # prices follows the configured venue, as every command
    result = runner.invoke(app, ["prices", "delete", "zzzeur"])
    assert result.exit_code == 2 and "no prices are stored for the venue 'elsewhere'" in result.stderr


def test_gap_repair_recomputes_the_snapshots_computed_without_those_hours(env: str,
                                                                         fake_exchange: FakeExchange) -> None:
    start = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
    assert _run(fake_exchange, start, pairs="btceur,etheur").exit_code == 0
    fake_exchange.fail("/0/public/", "status", times=1000, status=503)
    outage = [start + timedelta(hours=h) for h in (1, 2, 3)]
    for moment in outage:  # each computes a snapshot from the stale prices
        assert _run(fake_exchange, moment, pairs="btceur,etheur").exit_code == 1
    fake_exchange.faults.clear()
    back = start + timedelta(hours=4)
    assert _run(fake_exchange, back, pairs="btceur,etheur").exit_code == 0
    for moment in [*outage, back]:
        assert_metrics_exact(env, moment)


def _alive(pids: list[int]) -> bool:
    def running(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().split(") ", 1)[1][0] != "Z"  # a zombie has ended
        except (FileNotFoundError, IndexError):
            return False
    return any(running(pid) for pid in pids)


@pytest.mark.slow
def test_the_notifier_never_outlives_the_run(hourly: dict[str, Any]) -> None:
    """SIGKILL of the run mid-delivery: the notifier process it started ends too (its stdin closes), and
    the next run sends the event once more (at most one repeat)."""
    hour(hourly)
    hourly["clock"]["now"] = datetime.now(UTC).replace(microsecond=0)
    _pending_event(hourly)
    hourly["receiver"].drip = 300.0
    run = _spawn("run")
    deadline = time.monotonic() + 30
    while not hourly["receiver"].bodies and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hourly["receiver"].bodies, "the webhook was never called"
    workers = [int(pid) for pid in subprocess.run(["ps", "-o", "pid=", "--ppid", str(run.pid)], capture_output=True,
                                                  text=True, check=False).stdout.split()]
    assert workers, "no notifier process"
    run.kill()
    run.wait()
    deadline = time.monotonic() + 10
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(workers)  # its stdin closed with the run: it ended too
    hourly["receiver"].drip = 0
    hourly["clock"]["now"] = datetime.now(UTC)
    assert jobs.run(load_settings(), now=hourly["clock"]["now"]).alerts_delivered == 1
    [event] = query(hourly["db"], sa.select(alert_events))
    assert event.delivered_at is not None and len(hourly["receiver"].bodies) == 2


def test_a_window_the_samples_do_not_reach_back_to_is_not_judged(migrated_engine: sa.Engine) -> None:
    """Three hours of a pair that doubled, under a 24-hour change rule: not a 100% change over 24 hours."""
    from mcdata.alert_rules import parse_rules

    at = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    [rule] = parse_rules([{"name": "day", "rule": "change", "pct": 5, "window": "24h"}], ("aaa",))
    with migrated_engine.begin() as connection:
        insert_prices(connection, [PriceRow("kraken", "aaa", at - timedelta(hours=h), 100.0 if h else 200.0, None,
                                            "ticker", at) for h in range(3)])
        metrics_module.compute(connection, at)
        assert alerts.evaluate(connection, [rule], "kraken", ("aaa",), at, at) == []
        insert_prices(connection, [PriceRow("kraken", "aaa", at - timedelta(hours=h), 100.0, None, "ticker", at)
                                   for h in range(3, 25)])  # now the samples reach back a day: judged
        metrics_module.compute(connection, at)
        assert len(alerts.evaluate(connection, [rule], "kraken", ("aaa",), at, at)) == 1
