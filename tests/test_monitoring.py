"""Watching the watcher (issue 14): cron-monitor pings, the Prometheus textfile, `mcdata status` and
`mcdata config`, on both databases, with a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from mcdata.cli import app
from mcdata.db import make_engine, writer_lock
from mcdata.migrations import head_revision
from mcdata.schema import markets, metrics, runs
from tests.conftest import unstamped
from tests.helpers import execute, query
from tests.receiver import Receiver

PING_TOKEN = "5f1e-check-uuid"  # part of the ping URL: a secret, never printed


@pytest.fixture
def monitor(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with Receiver() as receiver:
        monkeypatch.setenv("MCDATA_PING_URL", f"{receiver.url}/ping/{PING_TOKEN}")
        yield receiver


@pytest.fixture
def textfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "textfile" / "mcdata.prom"
    monkeypatch.setenv("MCDATA_METRICS_FILE", str(path))
    return path


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def source_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCDATA_API_URL", closed_port_url())
    monkeypatch.setenv("MCDATA_HTTP_RETRIES", "0")


def run(runner: CliRunner, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["run", "--backfill", "1d", *args])
    assert PING_TOKEN not in result.output
    return result.exit_code, result.stderr


# -- pings ------------------------------------------------------------------------------------------
def test_a_run_pings_start_then_its_exit_code(env: str, runner: CliRunner, monitor: Receiver) -> None:
    assert run(runner)[0] == 0
    assert monitor.paths == [f"/ping/{PING_TOKEN}/start", f"/ping/{PING_TOKEN}/0"]


def test_a_failing_run_pings_its_exit_code(env: str, runner: CliRunner, monitor: Receiver,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    source_down(monkeypatch)
    assert run(runner)[0] == 1
    assert monitor.paths == [f"/ping/{PING_TOKEN}/start", f"/ping/{PING_TOKEN}/1"]


def test_a_run_skipped_by_the_lock_pings_nothing_and_writes_no_textfile(env: str, runner: CliRunner,
                                                                         monitor: Receiver, textfile: Path) -> None:
    engine = make_engine(env)
    with writer_lock(engine):
        assert run(runner)[0] == 75
    engine.dispose()
    assert monitor.paths == []
    assert not textfile.exists()


def test_a_monitor_that_is_down_changes_neither_the_exit_code_nor_the_data(
        env: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.monotonic()
    assert run(runner, "--pairs", "btceur")[0] == 0
    usual = time.monotonic() - started
    monkeypatch.setenv("MCDATA_PING_URL", f"{closed_port_url()}/{PING_TOKEN}")
    time.sleep(1)  # a second sample time
    started = time.monotonic()
    code, stderr = run(runner, "--pairs", "btceur")
    took = time.monotonic() - started
    assert code == 0
    assert took < usual + 3, (usual, took)
    assert [line for line in unstamped(stderr) if "monitoring ping" in line] == [
        "mcdata: warning: the monitoring ping (start) failed: ConnectionError; the run is not affected",
        "mcdata: warning: the monitoring ping (0) failed: ConnectionError; the run is not affected"]
    assert len(query(env, sa.select(runs).where(runs.c.status == "ok"))) == 2


def test_a_monitor_answering_an_error_is_one_warning(env: str, runner: CliRunner, monitor: Receiver) -> None:
    monitor.answers = [(404, {}, b"not found")]
    code, stderr = run(runner)
    assert code == 0
    assert "the monitoring ping (start) was answered with HTTP 404" in stderr


# -- the textfile -----------------------------------------------------------------------------------
def families(path: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = path.read_text()
    parsed = {family.name: family for family in text_string_to_metric_families(text)}
    for name, family in parsed.items():  # HELP and TYPE on every family
        assert f"# HELP {name} " in text and f"# TYPE {name} gauge" in text and family.documentation
    return {name: [(s.labels, s.value) for s in family.samples] for name, family in parsed.items()}


def test_the_textfile_says_what_the_runs_row_and_the_metrics_say(env: str, runner: CliRunner,
                                                                  textfile: Path) -> None:
    assert run(runner)[0] == 0
    found = families(textfile)
    row = query(env, sa.select(runs).order_by(runs.c.id.desc()).limit(1))[0]
    assert found["mcdata_last_run_exit_code"] == [({}, 0.0)]
    assert found["mcdata_last_run_timestamp_seconds"] == [({}, row.finished_at.timestamp())]
    assert found["mcdata_last_success_timestamp_seconds"] == [({}, row.finished_at.timestamp())]
    assert found["mcdata_run_duration_seconds"] == [({}, (row.finished_at - row.started_at).total_seconds())]
    assert found["mcdata_pairs_stored"] == [({}, row.pairs_stored)]
    assert found["mcdata_pairs_failed"] == [({}, row.pairs_failed)]
    assert found["mcdata_http_requests"] == [({}, row.http_requests)]
    latest = query(env, sa.select(metrics).where(metrics.c.timestamp == row.as_of))
    assert len(latest) == row.pairs_stored > 0
    prices = {(labels["exchange"], labels["pair"]): value for labels, value in found["mcdata_price"]}
    assert prices == {(m.exchange, m.pair): m.latest_price for m in latest}
    ranks = {(labels["exchange"], labels["pair"]): value for labels, value in found["mcdata_std_rank"]}
    assert ranks == {(m.exchange, m.pair): m.std_rank for m in latest if m.std_rank is not None}
    for column in ("stddev_24h", "volatility_24h", "change_24h_pct"):  # per pair, as the snapshot says
        shown = {(labels["exchange"], labels["pair"]): value for labels, value in found.get(f"mcdata_{column}", [])}
        assert shown == {(m.exchange, m.pair): getattr(m, column) for m in latest if getattr(m, column) is not None}
    assert found["mcdata_stddev_24h"]  # a day of candles: every pair has one
    samples = {(labels["exchange"], labels["pair"]): value
               for labels, value in found["mcdata_last_sample_timestamp_seconds"]}
    assert samples == {(m.exchange, m.pair): m.last_at.timestamp() for m in query(env, sa.select(markets))}


def test_a_failed_run_still_writes_the_textfile(env: str, runner: CliRunner, textfile: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(runner)[0] == 0
    success = families(textfile)["mcdata_last_success_timestamp_seconds"]
    source_down(monkeypatch)
    assert run(runner)[0] == 1
    found = families(textfile)
    assert found["mcdata_last_run_exit_code"] == [({}, 1.0)]
    assert found["mcdata_last_success_timestamp_seconds"] == success  # the last success is the earlier run
    assert found["mcdata_pairs_stored"] == [({}, 0.0)]
    assert found["mcdata_pairs_failed"] == [({}, 9.0)]  # the configured pairs the source never answered for


def test_a_run_whose_database_is_down_still_writes_the_textfile(runner: CliRunner, textfile: Path,
                                                                  exchange_env: dict[str, str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCDATA_DATABASE_URL", "postgresql://mcdata@127.0.0.1:1/mcdata")
    assert run(runner)[0] == 4
    found = families(textfile)
    assert found["mcdata_last_run_exit_code"] == [({}, 4.0)]
    assert "mcdata_last_success_timestamp_seconds" not in found


# -- status -----------------------------------------------------------------------------------------
def status(runner: CliRunner, *args: str) -> tuple[int, dict[str, object], str]:
    result = runner.invoke(app, ["status", "json", *args])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}, result.stderr


def test_status_is_healthy_after_a_good_run(env: str, runner: CliRunner) -> None:
    assert run(runner)[0] == 0
    code, view, stderr = status(runner)
    assert code == 0, stderr
    assert view["healthy"] is True and view["problems"] == []
    assert view["schema_revision"] == head_revision()
    assert {p["pair"] for p in view["pairs"]} == {"adaeur", "bateth", "btceur", "btcusd", "dogeusd", "etheur",  # type: ignore[attr-defined,index]
                                                  "ltceur", "solusd", "xrpusd"}
    assert not any(p["stale"] for p in view["pairs"])  # type: ignore[attr-defined,index]


def test_status_is_unhealthy_after_a_failed_run(env: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(runner)[0] == 0
    source_down(monkeypatch)
    assert run(runner)[0] == 1
    code, view, stderr = status(runner)
    assert code == 1
    assert view["healthy"] is False
    assert "failed with exit 1" in str(view["problems"])
    assert "mcdata: unhealthy: the last run (#2) failed with exit 1" in stderr


def test_status_names_the_pairs_older_than_max_age(env: str, runner: CliRunner,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCDATA_PAIRS", "btceur,etheur")
    assert run(runner)[0] == 0
    assert status(runner)[0] == 0
    monkeypatch.setenv("MCDATA_PAIRS", "btceur,etheur,ltceur")  # ltceur was never stored
    code, view, _ = status(runner)
    assert code == 1
    assert view["problems"] == ["1 of 3 pairs has no sample newer than 2h: ltceur"]
    time.sleep(1.1)
    code, view, _ = status(runner, "--max-age", "1s")
    assert code == 1
    assert any("3 of 3 pairs have no sample newer than 1s: btceur, etheur, ltceur" in p
               for p in view["problems"])  # type: ignore[attr-defined]


def test_status_before_any_run_and_with_the_database_down_or_behind(env: str, runner: CliRunner,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, view, _ = status(runner)
    assert code == 1 and view["problems"] == ["no run has finished yet"]
    monkeypatch.setenv("MCDATA_DATABASE_URL", "postgresql://mcdata@127.0.0.1:1/mcdata")
    assert status(runner)[0] == 4


def test_status_exits_4_on_a_database_behind_the_newest_schema(db_url: str, runner: CliRunner,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCDATA_DATABASE_URL", db_url)
    assert runner.invoke(app, ["migrate", "--revision", "0003"]).exit_code == 0
    code, _, stderr = status(runner)
    assert code == 4
    assert "run `mcdata migrate`" in stderr


def test_status_only_reads_and_works_while_a_run_holds_the_lock(env: str, runner: CliRunner) -> None:
    assert run(runner)[0] == 0
    before = query(env, sa.select(sa.func.count()).select_from(runs))
    engine = make_engine(env)
    with writer_lock(engine):
        assert status(runner)[0] == 0
        assert runner.invoke(app, ["status"]).exit_code == 0  # the table too
    engine.dispose()
    assert query(env, sa.select(sa.func.count()).select_from(runs)) == before


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_status_works_for_a_user_who_may_only_read(env: str, runner: CliRunner,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(runner)[0] == 0
    execute(env, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mcdata_reader') THEN "
                 "CREATE ROLE mcdata_reader LOGIN; END IF; END $$")
    execute(env, "GRANT USAGE ON SCHEMA public TO mcdata_reader")
    execute(env, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO mcdata_reader")
    monkeypatch.setenv("MCDATA_DATABASE_URL", sa.make_url(env).set(username="mcdata_reader")
                       .render_as_string(hide_password=False))
    code, view, stderr = status(runner)
    assert code == 0, stderr
    assert view["healthy"] is True


# -- config -----------------------------------------------------------------------------------------
def test_config_says_where_every_setting_came_from_and_shows_no_secret(
        env: str, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text('backfill_workers = 3\nbackfill = "3d"\n')
    key_file = tmp_path / "api_key"
    key_file.write_text("cw-S3cret-ApiKey7")
    key_file.chmod(0o600)
    monkeypatch.setenv("MCDATA_CONFIG", str(config_file))
    monkeypatch.setenv("MCDATA_BACKFILL", "2d")  # the env var wins over the file
    monkeypatch.setenv("MCDATA_API_KEY_FILE", str(key_file))
    monkeypatch.setenv("MCDATA_PING_URL", f"https://hc-ping.example/{PING_TOKEN}")
    result = runner.invoke(app, ["--database-url", "postgresql://mcdata:Sup3r-S3cret-Pw9@db.example/mcdata",
                                 "config", "json"])
    assert result.exit_code == 0, result.stderr
    assert PING_TOKEN not in result.output
    view = json.loads(result.stdout)
    rows = {row["name"]: row for row in view["settings"]}
    assert view["config_file"] == str(config_file) and view["config_file_exists"] is True
    assert view["database"] == "postgresql://mcdata:***@db.example/mcdata"
    assert rows["database_url"]["origin"] == "--database-url"
    assert (rows["backfill"]["value"], rows["backfill"]["origin"]) == ("2d", "MCDATA_BACKFILL")
    assert (rows["backfill_workers"]["value"], rows["backfill_workers"]["origin"]) == (
        "3", f"{config_file} (backfill_workers)")
    assert (rows["api_key"]["value"], rows["api_key"]["origin"]) == ("***", "MCDATA_API_KEY_FILE")
    assert rows["ping_url"]["value"] == "https://hc-ping.example/***"
    assert (rows["source"]["value"], rows["source"]["origin"]) == ("kraken", "default")
    assert set(rows) == {"database_url", "source", "api_url", "api_key", "exchange", "pairs", "backfill",
                         "backfill_workers", "retention", "http_timeout", "http_retries", "http_backoff",
                         "rate_limit", "retry_after_max", "fetch_timeout", "cache_dir", "max_age", "ping_url",
                         "metrics_file", "notify", "alerts"}
    table = runner.invoke(app, ["config"])
    assert table.exit_code == 0 and "MCDATA_BACKFILL" in table.stdout and PING_TOKEN not in table.output
