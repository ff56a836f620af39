"""Issue 26, `mcdata coverage` and `--repair`: holes in the hourly samples told apart into hours the venue
said had no trade and hours never collected, on crafted holes; repairs from OHLC within the venue's reach
and from Kraken's Trades endpoint (nanosecond cursor, pages, pacing, resuming) beyond, checked against
the fake exchange's own trades and series (the exact reference), on both databases."""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata.cli import app
from mcdata.jobs import repair
from mcdata.schema import candles, metrics, raw_prices
from tests.fake_exchange import FakeExchange
from tests.helpers import assert_metrics_exact, query
from tests.test_history_import import ohlcvt

HOUR = timedelta(hours=1)
NOW_HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = NOW_HOUR - timedelta(days=40)
ARCHIVE_HOURS = 48


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def hole_rows(runner: CliRunner, *args: str) -> list[tuple[str, str, int, str]]:
    result = runner.invoke(app, ["coverage", "btceur", "csv", *args])
    assert result.exit_code == 0, result.stderr
    return [(r["hole_start"], r["hole_end"], int(r["hole_hours"]), r["hole_kind"])
            for r in csv.DictReader(io.StringIO(result.stdout)) if r["hole_start"]]


def reference_holes(env: str) -> list[tuple[datetime, datetime]]:
    """The hours without a sample between the first and the last, from the raw rows themselves."""
    times = [r.timestamp for r in query(env, sa.select(raw_prices.c.timestamp).where(raw_prices.c.pair == "btceur"))]
    hours = {t.replace(minute=0, second=0, microsecond=0) for t in times}
    holes: list[tuple[datetime, datetime]] = []
    hour = min(hours)
    while hour <= max(hours):
        if hour not in hours:
            if holes and holes[-1][1] == hour:
                holes[-1] = (holes[-1][0], hour + HOUR)
            else:
                holes.append((hour, hour + HOUR))
        hour += HOUR
    return holes


@pytest.fixture
def history(env: str, runner: CliRunner, fake_exchange: FakeExchange, tmp_path: Path) -> dict[str, Any]:
    """Two days of archive 40 days ago (two hours without trades), then a fetch: it repairs the gap from
    the archive's end with Kraken's newest 720 candles, which leave about 8 days that nobody collected."""
    folder = tmp_path / "ohlcvt"
    folder.mkdir()
    (folder / "XBTEUR_60.csv").write_text(ohlcvt(START, ARCHIVE_HOURS, HOUR, 50_000.0, skip={5, 6}))
    assert runner.invoke(app, ["import", "kraken-ohlcvt", str(folder)]).exit_code == 0
    result = runner.invoke(app, ["fetch", "--pairs", "btceur", "--backfill", "3d"])
    assert result.exit_code == 0, result.stderr
    first_live = min(t for (t,) in query(env, sa.select(raw_prices.c.timestamp).where(
        raw_prices.c.timestamp > START + ARCHIVE_HOURS * HOUR)))
    return {"first_live": first_live, "exchange": fake_exchange}


def test_coverage_tells_no_trades_from_not_collected(env: str, runner: CliRunner, history: dict[str, Any]) -> None:
    gap_end = history["first_live"].replace(minute=0, second=0, microsecond=0)
    holes = hole_rows(runner)
    assert holes == [
        (iso(START + 6 * HOUR), iso(START + 8 * HOUR), 2, "no trades"),  # the archive has no candle 5 and 6
        (iso(START + (ARCHIVE_HOURS + 1) * HOUR), iso(gap_end), int((gap_end - START) / HOUR) - ARCHIVE_HOURS - 1,
         "not collected")]
    assert [(h[0], h[1]) for h in holes] == [(iso(a), iso(b)) for a, b in reference_holes(env)]
    document = json.loads(runner.invoke(app, ["coverage", "--format", "json"]).stdout)
    [market] = document
    samples = len(query(env, sa.select(raw_prices.c.timestamp)))
    assert (market["exchange"], market["pair"], market["samples"], market["hours_without_trades"]) == (
        "kraken", "btceur", samples, 2)
    assert market["first_at"] == iso(START + HOUR)  # the first candle's close
    table = runner.invoke(app, ["coverage"])
    assert table.exit_code == 0 and "not collected" in table.stdout and "no trades" in table.stdout


def test_a_deleted_hour_inside_an_answer_is_not_collected_and_repair_refetches_it(
        env: str, runner: CliRunner, history: dict[str, Any]) -> None:
    fake: FakeExchange = history["exchange"]
    assert runner.invoke(app, ["compute"]).exit_code == 0
    [as_of] = [t for (t,) in query(env, sa.select(sa.func.max(metrics.c.timestamp)))]
    first, last = NOW_HOUR - 30 * HOUR, NOW_HOUR - 28 * HOUR
    result = runner.invoke(app, ["prices", "delete", "btceur", "--since", first.isoformat(), "--until",
                                 last.isoformat()])
    assert result.exit_code == 0, result.stderr
    # the OHLC answer covered these hours and their candles are stored: the samples were deleted, not untraded
    assert (iso(first), iso(last + HOUR), 3, "not collected") in hole_rows(runner)
    monkey_pace = pytest.MonkeyPatch()
    monkey_pace.setattr(repair, "TRADES_PACE", 0.0)
    try:
        fixed = runner.invoke(app, ["coverage", "btceur", "--repair", "--format", "csv"])
    finally:
        monkey_pace.undo()
    assert fixed.exit_code == 0, fixed.stderr
    restored = {r.timestamp: r.price for r in query(env, sa.select(raw_prices).where(
        raw_prices.c.timestamp >= first, raw_prices.c.timestamp <= last))}
    assert restored == {first + k * HOUR: float(f"{fake.price_at('btceur', (first + k * HOUR).timestamp()):.10g}")
                        for k in range(3)}
    assert all(kind == "no trades" for *_, kind in hole_rows(runner))
    assert runner.invoke(app, ["check"]).exit_code == 0
    assert_metrics_exact(env, as_of)  # the snapshot that read the refilled hours agrees with them again


def reference_candle(fake: FakeExchange, hour: datetime) -> tuple[float, float, float, float, float, int] | None:
    """The hour's candle from the fake's own trades: open, high, low, close, volume, count."""
    times = fake.trade_times("btceur", int(hour.timestamp()))
    prices = [float(f"{fake.price_at('btceur', ns / 10**9):.10g}") for ns in times]
    if not prices:
        return None
    return prices[0], max(prices), min(prices), prices[-1], 0.0125 * len(prices), len(prices)


def test_repair_bridges_an_old_hole_from_trades(env: str, runner: CliRunner, history: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake: FakeExchange = history["exchange"]
    fake.trades_page = 100  # several pages, each after the `last` cursor of the one before
    quiet = START + 100 * HOUR
    fake.quiet_hours = {int(quiet.timestamp())}
    monkeypatch.setattr(repair, "TRADES_PACE", 0.0)
    result = runner.invoke(app, ["coverage", "btceur", "--repair"])
    assert result.exit_code == 0, result.stderr
    trades_asked = [r for r in fake.requests if r.startswith("/0/public/Trades")]
    assert len(trades_asked) > 3
    cursors = [int(r.split("since=")[1].split("&")[0]) for r in trades_asked]
    assert cursors[0] == int((START + ARCHIVE_HOURS * HOUR).timestamp()) * 10**9 and cursors == sorted(cursors)
    gap_end = history["first_live"].replace(minute=0, second=0, microsecond=0)
    stored = {r.open_time: r for r in query(env, sa.select(candles).where(
        candles.c.open_time >= START + ARCHIVE_HOURS * HOUR, candles.c.open_time < gap_end - HOUR))}
    hour = START + ARCHIVE_HOURS * HOUR
    while hour < gap_end - HOUR:
        expected = reference_candle(fake, hour)
        got = stored.get(hour)
        if expected is None:
            assert got is None, hour
        else:
            assert got is not None, hour
            assert (got.open, got.high, got.low, got.close, got.trades) == (*expected[:4], expected[5])
            assert got.volume == pytest.approx(expected[4], rel=1e-12)
        hour += HOUR
    closes = {r.timestamp: r.price for r in query(env, sa.select(raw_prices))}
    assert closes[START + 60 * HOUR] == stored[START + 59 * HOUR].close  # the close at the close time
    assert hole_rows(runner) == [  # the archive's and the walk's no-trade hours; nothing uncollected
        (iso(START + 6 * HOUR), iso(START + 8 * HOUR), 2, "no trades"),
        (iso(quiet + HOUR), iso(quiet + 2 * HOUR), 1, "no trades")]
    assert runner.invoke(app, ["check"]).exit_code == 0
    again = runner.invoke(app, ["coverage", "btceur", "--repair"])
    assert again.exit_code == 0 and "no hole that was not collected" in again.stderr


def test_trades_are_asked_at_most_once_a_second(env: str, runner: CliRunner, history: dict[str, Any]) -> None:
    fake: FakeExchange = history["exchange"]
    fake.trades_per_hour = 1  # about 190 trades in the hole, in pages of 50
    fake.trades_page = 50
    result = runner.invoke(app, ["coverage", "btceur", "--repair", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    times = [t for r, t in zip(fake.requests, fake.request_times, strict=True) if r.startswith("/0/public/Trades")]
    assert len(times) >= 3
    assert min(b - a for a, b in itertools.pairwise(times)) >= repair.TRADES_PACE - 0.02  # where they arrive


def test_a_walk_cut_short_resumes_where_it_stopped(env: str, runner: CliRunner, history: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake: FakeExchange = history["exchange"]
    fake.trades_page = 100
    real = fake.trades_after
    calls = {"n": 0}

    def nan_on_third_page(pair: str, since_ns: int, count: int) -> list[tuple[int, list[Any]]]:
        calls["n"] += 1
        found = real(pair, since_ns, count)
        if calls["n"] == 3:  # a NaN price: that page is refused, what came before stays
            found[0][1][0] = "NaN"
        return found

    monkeypatch.setattr(fake, "trades_after", nan_on_third_page)
    monkeypatch.setattr(repair, "TRADES_PACE", 0.0)
    result = runner.invoke(app, ["coverage", "btceur", "--repair"])
    assert result.exit_code == 3, result.stderr  # partial: two pages' hours stored
    assert "NaN" in result.stderr
    left = [h for h in hole_rows(runner) if h[3] == "not collected"]
    [(start, _, hours, _)] = left
    assert datetime.fromisoformat(start) > START + ARCHIVE_HOURS * HOUR  # it moved forward
    second = runner.invoke(app, ["coverage", "btceur", "--repair"])
    assert second.exit_code == 0, second.stderr
    resumed = [r for r in fake.requests if r.startswith("/0/public/Trades")][3:]
    first_cursor = int(resumed[0].split("since=")[1].split("&")[0])
    assert first_cursor == int((datetime.fromisoformat(start) - HOUR).timestamp()) * 10**9  # from where it stopped
    assert not [h for h in hole_rows(runner) if h[3] == "not collected"] and hours > 0
    assert runner.invoke(app, ["check"]).exit_code == 0


def test_a_cursor_that_does_not_move_ends_the_walk(env: str, runner: CliRunner, history: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fake: FakeExchange = history["exchange"]
    since = int((START + ARCHIVE_HOURS * HOUR).timestamp())
    same_page = json.dumps({"error": [], "result": {
        "XXBTZEUR": [["50000.1", "0.5", since + 60.25, "b", "l", "", 1]], "last": str((since + 60) * 10**9)}})
    fake.fail("/0/public/Trades", "body", times=50, message=same_page)
    monkeypatch.setattr(repair, "TRADES_PACE", 0.0)
    result = runner.invoke(app, ["coverage", "btceur", "--repair"])
    assert result.exit_code == 1 and "does not move forward" in result.stderr  # nothing was stored
    assert len([r for r in fake.requests if r.startswith("/0/public/Trades")]) == 2  # not fifty


def test_the_time_budget_stops_a_walk_that_the_next_repair_finishes(env: str, runner: CliRunner,
                                                                    history: dict[str, Any],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake: FakeExchange = history["exchange"]
    fake.trades_page = 100
    monkeypatch.setattr(repair, "TRADES_PACE", 0.4)
    result = runner.invoke(app, ["coverage", "btceur", "--repair", "--max-time", "1s"])
    assert result.exit_code == 3 and "run the same command again" in result.stderr
    asked = len([r for r in fake.requests if r.startswith("/0/public/Trades")])
    assert 1 <= asked <= 4
    monkeypatch.setattr(repair, "TRADES_PACE", 0.0)
    assert runner.invoke(app, ["coverage", "btceur", "--repair"]).exit_code == 0
    assert not [h for h in hole_rows(runner) if h[3] == "not collected"]


def test_coverage_usage(env: str, runner: CliRunner, history: dict[str, Any]) -> None:
    assert runner.invoke(app, ["coverage", "zzzeur"]).exit_code == 1
    result = runner.invoke(app, ["coverage", "btceur", "--repair", "--max-time", "soon"])
    assert result.exit_code == 2 and "--max-time" in result.stderr
    assert runner.invoke(app, ["coverage", "btceur", "xml"]).exit_code == 2


@pytest.mark.parametrize("fault", [
    {"kind": "kraken_error", "message": "EGeneral:Too many requests"},  # Kraken's HTTP-200 throttling
    {"kind": "status", "status": 503},
    {"kind": "html", "status": 502},
    {"kind": "truncated"},
])
def test_a_misbehaving_trades_answer_is_retried_or_resumed(env: str, runner: CliRunner, history: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           fault: dict[str, Any]) -> None:
    fake: FakeExchange = history["exchange"]
    fake.trades_page = 200
    monkeypatch.setattr(repair, "TRADES_PACE", 0.0)
    options = {k: v for k, v in fault.items() if k != "kind"}
    fake.fail("/0/public/Trades", fault["kind"], times=1, **options)
    first = runner.invoke(app, ["coverage", "btceur", "--repair"])
    if first.exit_code != 0:  # not retried (a malformed 200 is no passing fault): said, and resumed next time
        assert first.exit_code == 1 and "btceur: kraken: GET" in first.stderr
        again = runner.invoke(app, ["coverage", "btceur", "--repair"])
        assert again.exit_code == 0, again.stderr
    else:
        assert fault["kind"] != "truncated"
    assert not [h for h in hole_rows(runner) if h[3] == "not collected"]
    assert runner.invoke(app, ["check"]).exit_code == 0


def test_an_unreachable_trades_endpoint_stores_nothing_and_says_so(env: str, runner: CliRunner,
                                                                   history: dict[str, Any],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake: FakeExchange = history["exchange"]
    monkeypatch.setattr(repair, "TRADES_PACE", 0.0)
    before = hole_rows(runner)
    fake.fail("/0/public/Trades", "html", times=50, status=502)
    result = runner.invoke(app, ["coverage", "btceur", "--repair"])
    assert result.exit_code == 1 and "btceur:" in result.stderr
    assert hole_rows(runner) == before  # nothing recorded as covered, nothing half-written
    from mcdata.schema import runs
    [run] = [r for r in query(env, sa.select(runs)) if r.command == "repair"]
    assert (run.status, run.exit_code, run.rows_written) == ("failed", 1, 0)
