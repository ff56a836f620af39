"""Alerts (issue 13), on both databases: every rule kind fires and does not on edge data, fire once /
re-arm / cool down, the outbox delivered through apprise to a real HTTP receiver on loopback, retried
when the receiver is down, never twice; bad rules are exit 2 before anything is fetched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata import alerts, jobs, metrics
from mcdata.alert_rules import AlertRule, parse_rules
from mcdata.cli import app
from mcdata.config import load_settings
from mcdata.errors import ConfigError
from mcdata.schema import alert_events, alert_state, raw_prices
from mcdata.store import PriceRow, insert_prices
from tests.conftest import HOUR, hour
from tests.fake_exchange import FakeExchange
from tests.helpers import count_rows, execute, query
from tests.receiver import Receiver

T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def store(engine: sa.Engine, pair: str, samples: list[tuple[timedelta, float]]) -> None:
    """Samples at T + offset."""
    with engine.begin() as connection:
        insert_prices(connection, [PriceRow("kraken", pair, T + offset, price, None, "ticker", T)
                                   for offset, price in samples])


def judge_at(engine: sa.Engine, rule: AlertRule, as_of: datetime = T, now: datetime | None = None,
             pairs: tuple[str, ...] = ("aaa",)) -> list[Any]:
    """Compute the metrics of `as_of`, judge the rule on them; the events it fired."""
    with engine.begin() as connection:
        metrics.compute(connection, as_of)
        fired = [event.id for event in alerts.evaluate(connection, [rule], "kraken", pairs, as_of, now or as_of)]
        return list(connection.execute(sa.select(alert_events).where(alert_events.c.id.in_(fired))))


def state(engine: sa.Engine, rule: str, pair: str = "aaa") -> Any:
    rows = query(engine, sa.select(alert_state).where(alert_state.c.rule == rule, alert_state.c.pair == pair))
    return rows[0] if rows else None


def rule(kind: str, **keys: Any) -> AlertRule:
    return parse_rules([{"name": kind, "rule": kind, **keys}], ("aaa", "bbb"))[0]


# -- each kind, on edge data ------------------------------------------------------------------------
SPIKE = {"factor": 3, "window": "1h"}
BEFORE = [(-70 * timedelta(minutes=1), 1000.0), (-30 * timedelta(minutes=1), 100.0)]  # only the second is in


@pytest.mark.parametrize(("latest", "fires"), [(300.000001, True), (300.0, False)])
def test_spike_compares_with_the_mean_of_the_window_before_the_latest_sample(
        migrated_engine: sa.Engine, latest: float, fires: bool) -> None:
    store(migrated_engine, "aaa", [*BEFORE, (timedelta(0), latest)])
    events = judge_at(migrated_engine, rule("spike", **SPIKE))
    assert len(events) == int(fires)
    if fires:
        assert (events[0].value, events[0].baseline) == (latest, 100.0)
        assert "aaa" in events[0].message and "300" in events[0].message and "100" in events[0].message
    assert state(migrated_engine, "spike").firing is fires


@pytest.mark.parametrize(("edge", "inside"), [(timedelta(0), True), (timedelta(microseconds=-1), False)])
def test_the_window_starts_at_window_plus_five_minutes_before_the_latest_sample(
        migrated_engine: sa.Engine, edge: timedelta, inside: bool) -> None:
    store(migrated_engine, "aaa", [(-65 * timedelta(minutes=1) + edge, 1000.0), (-30 * timedelta(minutes=1), 100.0),
                                   (timedelta(0), 301.0)])
    events = judge_at(migrated_engine, rule("spike", **SPIKE))
    assert len(events) == (0 if inside else 1)  # with 1000 in the window the mean is 550


def test_a_spike_with_too_few_samples_is_not_judged(migrated_engine: sa.Engine) -> None:
    store(migrated_engine, "aaa", [(-2 * HOUR, 1.0), (timedelta(0), 500.0)])  # nothing in the window
    assert judge_at(migrated_engine, rule("spike", **SPIKE)) == []
    assert state(migrated_engine, "spike") is None
    store(migrated_engine, "bbb", [(-30 * timedelta(minutes=1), 1.0), (-10 * timedelta(minutes=1), 1.0),
                                   (timedelta(0), 500.0)])
    two = rule("spike", **SPIKE, min_samples=3)
    assert judge_at(migrated_engine, two, pairs=("bbb",)) == []  # two samples, three needed


@pytest.mark.parametrize(("latest", "fires"), [(33.3, True), (33.34, False)])
def test_drop(migrated_engine: sa.Engine, latest: float, fires: bool) -> None:
    store(migrated_engine, "aaa", [*BEFORE, (timedelta(0), latest)])
    assert len(judge_at(migrated_engine, rule("drop", **SPIKE))) == int(fires)


@pytest.mark.parametrize(("kind", "latest", "fires"), [
    ("above", 100.5, True), ("above", 100.0, False), ("below", 99.5, True), ("below", 100.0, False)])
def test_above_and_below(migrated_engine: sa.Engine, kind: str, latest: float, fires: bool) -> None:
    store(migrated_engine, "aaa", [(timedelta(0), latest)])
    events = judge_at(migrated_engine, rule(kind, price=100))
    assert len(events) == int(fires)
    assert state(migrated_engine, kind).firing is fires


@pytest.mark.parametrize(("latest", "pct", "fires"), [(125.0, 25, True), (125.0, 25.0001, False),
                                                      (75.0, 25, True), (80.0, 25, False)])
def test_change_compares_with_the_oldest_sample_of_the_window(migrated_engine: sa.Engine, latest: float,
                                                              pct: float, fires: bool) -> None:
    store(migrated_engine, "aaa", [(-2 * HOUR, 1.0), (-60 * timedelta(minutes=1), 100.0),
                                   (-30 * timedelta(minutes=1), 110.0), (timedelta(0), latest)])
    events = judge_at(migrated_engine, rule("change", pct=pct, window="1h"))
    assert len(events) == int(fires)
    if fires:
        assert events[0].baseline == 100.0 and events[0].value == pytest.approx((latest / 100 - 1) * 100)


def test_volatility_by_percent_and_by_rank(migrated_engine: sa.Engine) -> None:
    store(migrated_engine, "aaa", [(-2 * HOUR, 100.0), (-HOUR, 120.0), (timedelta(0), 90.0)])  # volatile
    store(migrated_engine, "bbb", [(-2 * HOUR, 50.0), (-HOUR, 50.0), (timedelta(0), 50.0)])  # flat: 0 %
    fired = judge_at(migrated_engine, rule("volatility", pct=1), pairs=("aaa", "bbb"))
    assert [e.pair for e in fired] == ["aaa"]
    by_rank = judge_at(migrated_engine, AlertRule("by-rank", "volatility", None, rank=1), pairs=("aaa", "bbb"))
    assert [e.pair for e in by_rank] == ["aaa"]
    assert state(migrated_engine, "by-rank", "bbb").firing is False


def test_volatility_without_a_24h_deviation_is_not_judged(migrated_engine: sa.Engine) -> None:
    store(migrated_engine, "aaa", [(timedelta(0), 100.0)])
    assert judge_at(migrated_engine, rule("volatility", pct=0.001)) == []
    assert state(migrated_engine, "volatility") is None


@pytest.mark.parametrize(("after", "fires"), [("3h", True), ("4h", False)])
def test_stale(migrated_engine: sa.Engine, after: str, fires: bool) -> None:
    store(migrated_engine, "aaa", [(-4 * HOUR, 100.0)])  # exactly 4h old: not more than 4h
    events = judge_at(migrated_engine, rule("stale", after=after), now=T)
    assert len(events) == int(fires)


def test_fire_once_rearm_and_cool_down(migrated_engine: sa.Engine) -> None:
    above = rule("above", price=100, cooldown="4h")
    prices = [101, 102, 99, 103, 98, 104]  # one an hour: true, true, false, true (in cooldown), false, true
    fired_at = []
    for step, price in enumerate(prices):
        store(migrated_engine, "aaa", [(step * HOUR, float(price))])
        fired_at += [step for _ in judge_at(migrated_engine, above, as_of=T + step * HOUR)]
    assert fired_at == [0, 5]  # hour 3 is within 4h of hour 0: firing, without an event
    assert state(migrated_engine, "above").last_fired_at == T + 5 * HOUR


# -- bad rules ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("tables", "message"), [
    ([{"name": "x", "rule": "moon"}], 'alert "x": rule: \'moon\' is not a kind of rule'),
    ([{"name": "x", "rule": "spike", "window": "1h"}], 'alert "x": factor: missing'),
    ([{"name": "x", "rule": "spike", "factor": 1, "window": "1h"}], 'alert "x": factor: must be greater than 1'),
    ([{"name": "x", "rule": "spike", "factor": 3, "window": "30m"}], 'alert "x": window: 30m is shorter than'),
    ([{"name": "x", "rule": "above", "price": 1, "pairs": ["dogeeur"]}], 'alert "x": pairs: dogeeur is not one of'),
    ([{"name": "x", "rule": "above", "price": 1}, {"name": "x", "rule": "below", "price": 1}],
     'alert "x": name: used by two rules'),
    ([{"name": "x", "rule": "above", "price": 1, "factor": 2}], 'alert "x": factor: not a key of a above rule'),
    ([{"name": "X Y", "rule": "above", "price": 1}], "alert #1: name:"),
    ([{"name": "x", "rule": "volatility"}], 'alert "x": pct: missing'),
])
def test_bad_rules_are_one_line_naming_the_rule_and_the_key(tables: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_rules(tables, ("btceur", "btcusd"))


def test_a_bad_rule_is_exit_2_before_anything_is_fetched(env: str, runner: CliRunner, fake_exchange: FakeExchange,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[alerts]]\nname = "s"\nrule = "spike"\nfactor = 0.5\nwindow = "1h"\n')
    monkeypatch.setenv("MCDATA_CONFIG", str(config))
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2
    assert 'alert "s": factor: must be greater than 1' in result.stderr
    assert fake_exchange.requests == []


def test_notify_urls_are_checked_and_never_shown(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCDATA_NOTIFY", "tgram://123456789:hunter22-token/42, nosuchservice://x/hunter22")
    for command in (["run"], ["alerts", "test"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2
        assert "notify: URL #2 (nosuchservice://…) is not a notification URL apprise accepts" in result.stderr
    result = runner.invoke(app, ["config"])  # config shows the settings, and says what is wrong
    assert result.exit_code == 0
    assert "warning: notify: URL #2 (nosuchservice://…) is not a notification URL apprise accepts" in result.stderr
    monkeypatch.setenv("MCDATA_NOTIFY", "tgram://123456789:hunter22-token/42")
    shown = runner.invoke(app, ["config", "json"])
    assert shown.exit_code == 0
    assert {r["name"]: r["value"] for r in json.loads(shown.stdout)["settings"]}["notify"] == "tgram://***"


# -- end to end: hourly runs, a receiver on loopback ------------------------------------------------
def notifications(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(body) for body in receiver.bodies]


def test_a_spike_fires_once_rearms_and_fires_again_after_the_cooldown(hourly: dict[str, Any]) -> None:
    exchange, receiver = hourly["exchange"], hourly["receiver"]
    hour(hourly)
    normal = exchange.price_at("btceur", hourly["clock"]["now"].timestamp())
    assert notifications(receiver) == []
    report = hour(hourly, price=round(normal * 20, 1))  # a spike
    sent = notifications(receiver)
    assert len(sent) == 1 and report.alerts_delivered == 1
    assert sent[0]["title"] == "mcdata alert: btc-spike"
    assert "btceur" in sent[0]["message"] and f"{round(normal * 20, 1):g}" in sent[0]["message"]
    event = query(hourly["db"], sa.select(alert_events))[0]
    assert event.value == round(normal * 20, 1) and event.baseline == pytest.approx(normal, rel=0.01)
    assert f"{event.baseline:g}" in sent[0]["message"]
    # read hours later maybe (an outbox): when, in which currency, how far, over which window; a warning
    assert f" at {event.as_of:%Y-%m-%d %H:%M} UTC: " in sent[0]["message"]
    move = (event.value / event.baseline - 1) * 100
    assert sent[0]["message"].endswith(f"(prices in EUR; {move:+.2f}%; window 1h)")
    assert sent[0]["type"] == "warning"
    hour(hourly, price=round(normal * 20, 1))  # still high: nothing
    hour(hourly)  # back to normal: re-armed
    assert len(notifications(receiver)) == 1
    hour(hourly, price=round(normal * 30, 1))  # spikes again, 3 h after the first: past the 1 h cooldown
    assert len(notifications(receiver)) == 2
    assert count_rows(hourly["db"], alert_events) == 2


def test_a_receiver_that_is_down_leaves_the_event_pending_and_the_next_run_delivers_it_once(
        hourly: dict[str, Any]) -> None:
    receiver = hourly["receiver"]
    hour(hourly)
    normal = hourly["exchange"].price_at("btceur", hourly["clock"]["now"].timestamp())
    receiver.answers = [(503, {}, b"down")]
    rows_before = count_rows(hourly["db"], raw_prices)
    report = hour(hourly, price=normal * 20)
    assert (len(report.alerts_fired), report.alerts_delivered, report.alerts_undelivered) == (1, 0, 1)
    assert count_rows(hourly["db"], raw_prices) == rows_before + 2  # the run's data is all stored
    pending = query(hourly["db"], sa.select(alert_events))[0]
    assert pending.delivered_at is None and pending.attempts == 1 and "503" in pending.last_error
    tried = len(receiver.bodies)
    receiver.answers = [(200, {}, b"{}")]
    report = hour(hourly)
    assert report.alerts_delivered == 1
    assert len(receiver.bodies) == tried + 1
    delivered = query(hourly["db"], sa.select(alert_events))[0]
    assert delivered.delivered_at is not None and delivered.attempts == 2
    hour(hourly)
    assert len(receiver.bodies) == tried + 1  # once


def test_two_concurrent_runs_never_deliver_one_event_twice(hourly: dict[str, Any]) -> None:
    receiver = hourly["receiver"]
    hour(hourly)
    normal = hourly["exchange"].price_at("btceur", hourly["clock"]["now"].timestamp())
    receiver.answers = [(503, {}, b"down")]
    hour(hourly, price=normal * 20)
    failed_tries = len(receiver.bodies)
    receiver.answers = [(200, {}, b"{}")]
    receiver.delay = 1.0  # the delivery is slow: the two runs overlap
    env = {**os.environ, "MCDATA_API_URL": "http://127.0.0.1:9", "MCDATA_HTTP_RETRIES": "0"}
    runs = [subprocess.Popen([sys.executable, "-m", "mcdata", "run"], env=env, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    codes = sorted(process.wait(timeout=60) for process in runs)
    assert len(receiver.bodies) == failed_tries + 1, codes
    assert query(hourly["db"], sa.select(alert_events))[0].delivered_at is not None


def test_alerts_commands(hourly: dict[str, Any], runner: CliRunner) -> None:
    hour(hourly)
    normal = hourly["exchange"].price_at("btceur", hourly["clock"]["now"].timestamp())
    hour(hourly, price=normal * 20)
    listed = runner.invoke(app, ["alerts", "json"])
    assert listed.exit_code == 0, listed.stderr
    [row] = json.loads(listed.stdout)["alerts"]
    assert (row["rule"], row["pair"], row["state"]) == ("btc-spike", "btceur", "firing")
    history = runner.invoke(app, ["alerts", "history", "csv", "--since", "1d"])
    assert history.exit_code == 0 and history.stdout.count("\n") == 2 and ",delivered," in history.stdout
    assert runner.invoke(app, ["alerts", "test"]).exit_code == 0
    assert hourly["receiver"].bodies[-1].startswith(b'{"version"')
    hourly["receiver"].answers = [(500, {}, b"no")]
    failed = runner.invoke(app, ["alerts", "test", "btc-spike"])
    assert failed.exit_code == 1 and "notify URL #1 json://***: failed" in failed.stderr
    assert runner.invoke(app, ["alerts", "test", "nope"]).exit_code == 2


def test_compute_as_of_never_fires(hourly: dict[str, Any], runner: CliRunner) -> None:
    hour(hourly)
    normal = hourly["exchange"].price_at("btceur", hourly["clock"]["now"].timestamp())
    hourly["clock"]["now"] += HOUR
    hourly["exchange"].price_overrides["btceur"] = str(normal * 20)
    assert jobs.fetch(load_settings(), now=hourly["clock"]["now"]).exit_code == 0
    as_of = hourly["clock"]["now"].isoformat()
    assert runner.invoke(app, ["compute", "--as-of", as_of]).exit_code == 0
    assert count_rows(hourly["db"], alert_events) == 0 and hourly["receiver"].bodies == []


def test_without_notify_urls_an_alert_is_recorded_and_printed_even_with_quiet(
        hourly: dict[str, Any], runner: CliRunner) -> None:
    hourly["config"].write_text('pairs = ["btceur", "etheur"]\n[[alerts]]\nname = "btc-spike"\nrule = "spike"\n'
                                'factor = 3\nwindow = "1h"\npairs = ["btceur"]\n')
    hourly["clock"]["now"] = datetime.now(UTC).replace(microsecond=0) - 2 * HOUR
    hour(hourly)  # an hour ago
    hourly["clock"]["now"] = datetime.now(UTC)  # the CLI's run is now
    normal = hourly["exchange"].price_at("btceur", hourly["clock"]["now"].timestamp())
    hourly["exchange"].price_overrides["btceur"] = str(normal * 20)
    result = runner.invoke(app, ["--quiet", "run"])
    assert result.exit_code == 0, result.stderr
    assert "mcdata: alert: btc-spike: btceur on kraken at " in result.stderr
    [event] = query(hourly["db"], sa.select(alert_events))
    # nobody to tell is its own state: never "delivered", and the event waits for a notify URL
    assert event.delivered_at is None and event.last_error is None and event.attempts == 0
    assert hourly["receiver"].bodies == []
    history = runner.invoke(app, ["alerts", "history", "json"])
    assert history.exit_code == 0
    [shown] = next(iter(json.loads(history.stdout).values()))
    assert shown["delivery"] == "no notify URL"


def test_an_event_is_not_sent_after_the_attempt_cap_or_the_age_limit(migrated_engine: sa.Engine) -> None:
    store(migrated_engine, "aaa", [(timedelta(0), 101.0)])
    judge_at(migrated_engine, rule("above", price=100))
    with migrated_engine.begin() as connection:
        assert len(alerts.pending(connection, T)) == 1
        assert alerts.pending(connection, T + alerts.MAX_AGE + timedelta(seconds=1)) == []
        connection.execute(alert_events.update().values(attempts=alerts.MAX_ATTEMPTS))
        assert alerts.pending(connection, T) == []


def test_a_slow_receiver_cannot_hold_the_run_past_the_delivery_budget(
        hourly: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    hour(hourly)
    event = {"rule": "btc-spike", "exchange": "kraken", "pair": "btceur", "as_of": hourly["clock"]["now"],
             "value": 1.0, "baseline": 1.0, "message": "pending", "created_at": hourly["clock"]["now"], "attempts": 0}
    execute(hourly["db"], alert_events.insert(), [event, event])
    hourly["receiver"].delay = 3
    monkeypatch.setattr(alerts, "DELIVERY_BUDGET", timedelta(seconds=6))
    started = time.monotonic()
    report = hour(hourly)
    assert time.monotonic() - started < 9
    assert (report.alerts_delivered, report.alerts_undelivered) == (1, 1)  # the second waits for the next run
    second = query(hourly["db"], sa.select(alert_events).order_by(alert_events.c.id))[1]
    assert second.delivered_to.startswith("?") and second.delivered_at is None  # sent, never answered
    hourly["receiver"].delay = 0
    assert hour(hourly).alerts_delivered == 1
    assert len(hourly["receiver"].bodies) == 3  # the unanswered one once more: at most one repeat


def test_a_kind_is_looked_up_never_guessed() -> None:
    """An unknown kind is an error wherever it is judged, described or parsed: never a silent `stale`."""
    from mcdata.alert_kinds import KINDS, Market

    unknown = AlertRule(name="x", kind="nope", pairs=None)
    market = Market("kraken", "aaa", 1.0, T, None, None)
    with pytest.raises(KeyError):
        alerts.judge(unknown, market, [], T)
    with pytest.raises(KeyError):
        unknown.describe()
    with pytest.raises(ConfigError, match="is not a kind of rule"):
        parse_rules([{"name": "x", "rule": "nope"}], ("aaa",))
    assert set(KINDS) == {"spike", "drop", "above", "below", "change", "volatility", "stale"}
