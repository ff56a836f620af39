"""Issue 23, the third security pass: no credential in any form reaches any output, the config file is a
private file, every venue name is checked, alert rules are bounded.

Real subprocesses; each planted secret is searched for in stdout, stderr, a dump of every table and the
Prometheus textfile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mcdata.schema import metadata
from tests.conftest import hour
from tests.fake_exchange import FakeExchange
from tests.helpers import query

TOKEN = "Tok3nOnlyUser77"  # a credential given as a URL's user name alone
MIRROR_PASSWORD = "M1rrorPassw0rd"
QUERY_PASSWORD = "Qu3ryPassw0rd"
SSL_PASSWORD = "SslKeyPassw0rd"
PASSFILE = "/tmp/pgpass-S3cretName"
PLANTED = (TOKEN, MIRROR_PASSWORD, QUERY_PASSWORD, SSL_PASSWORD, PASSFILE)


def mcdata(*args: str, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcdata", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env, **extra}, check=False)


def dump(db_url: str) -> str:
    """Every row of every table, as text."""
    return "\n".join(repr(row) for table in metadata.sorted_tables for row in query(db_url, sa.select(table)))


def leaks(*texts: str) -> list[str]:
    return [secret for secret in PLANTED if any(secret in text for text in texts)]


# -- credentials in URLs ----------------------------------------------------------------------------
@pytest.mark.parametrize("userinfo", [f"mirroruser:{MIRROR_PASSWORD}", TOKEN], ids=["password", "user-only"])
def test_api_url_credentials_never_reach_config_errors_or_runs(env: str, exchange_env: dict[str, str],
                                                               fake_exchange: FakeExchange, userinfo: str) -> None:
    secret_url = fake_exchange.url.replace("http://", f"http://{userinfo}@")
    for output_format in ("table", "json", "csv"):
        shown = mcdata("config", output_format, env=exchange_env, MCDATA_API_URL=secret_url)
        assert shown.returncode == 0, shown.stderr
        assert not leaks(shown.stdout, shown.stderr) and "***@127.0.0.1" in shown.stdout, output_format
    fake_exchange.fail("/0/public/Assets", "status", status=503, times=50)
    failed = mcdata("--verbose", "--debug", "fetch", env=exchange_env, MCDATA_API_URL=secret_url)
    assert failed.returncode == 1
    assert "http://***@127.0.0.1" in failed.stderr
    assert not leaks(failed.stdout, failed.stderr, dump(env))
    assert fake_exchange.headers[-1].get("Authorization", "").startswith("Basic ")  # the mirror still got them


def test_an_api_url_that_does_not_parse_is_hidden(exchange_env: dict[str, str]) -> None:
    for bad in (f"http://{TOKEN}@mirror example", f"ftp://user:{MIRROR_PASSWORD}@mirror.example"):
        result = mcdata("fetch", env=exchange_env, MCDATA_API_URL=bad)
        assert result.returncode == 2 and "invalid value (hidden)" in result.stderr
        assert not leaks(result.stdout, result.stderr)


def test_postgres_passwords_in_the_query_are_masked_everywhere(exchange_env: dict[str, str]) -> None:
    admin = os.environ.get("MCDATA_TEST_POSTGRES_URL")
    if not admin:
        pytest.skip("needs MCDATA_TEST_POSTGRES_URL") if not os.environ.get("CI") else pytest.fail("no PostgreSQL")
    assert admin
    working = f"{admin}?password={QUERY_PASSWORD}&sslpassword={SSL_PASSWORD}&passfile={PASSFILE}"
    for args in (["--verbose", "--debug", "status"], ["config"], ["config", "json"]):
        result = mcdata(*args, env=exchange_env, MCDATA_DATABASE_URL=working)
        assert not leaks(result.stdout, result.stderr), args
        assert "password=***" in result.stdout + result.stderr, args
    unreachable = f"postgresql://root@127.0.0.1:1/none?password={QUERY_PASSWORD}&sslpassword={SSL_PASSWORD}"
    for flag in ([], ["--debug"]):
        result = mcdata(*flag, "--database-url", unreachable, "show", env=exchange_env)
        assert result.returncode == 4 and not leaks(result.stdout, result.stderr), result.stderr


# -- notification errors --------------------------------------------------------------------------
TOPIC = "ntfyTop1cS3cret"


def test_a_notification_error_carries_no_part_of_the_notify_url(hourly: dict[str, Any],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    receiver = hourly["receiver"]
    port = receiver.url.rsplit(":", 1)[1]
    hourly["config"].write_text(hourly["config"].read_text().replace(
        f"json://127.0.0.1:{port}/hook", f"ntfy://127.0.0.1:{port}/{TOPIC}"))
    hour(hourly)
    normal = hourly["exchange"].price_at("btceur", hourly["clock"]["now"].timestamp())
    receiver.answers = [(500, {}, json.dumps({"error": f"topic {TOPIC} is not allowed"}).encode())]
    report = hour(hourly, price=normal * 20)  # the notifier is a process of its own, as in production
    assert report.alerts_undelivered == 1 and TOPIC.encode() in receiver.bodies[-1]  # sent, and refused
    history = mcdata("alerts", "history", "json", env={})
    tested = mcdata("alerts", "test", env={})
    assert tested.returncode == 1 and "notify URL #1 ntfy://***: failed" in tested.stderr
    [event] = json.loads(history.stdout)["events"]
    assert event["last_error"] and "500" in event["last_error"], event
    for text in (caplog.text, history.stdout, history.stderr, tested.stderr, dump(hourly["db"])):
        assert TOPIC not in text, text[-800:]


# -- alert rules are bounded ----------------------------------------------------------------------------
def rules_json(count: int, **keys: Any) -> str:
    return json.dumps([{"name": f"r{i}", "rule": "spike", "factor": 3, "window": "1h", **keys} for i in range(count)])


def test_alert_rules_are_bounded(env: str, exchange_env: dict[str, str]) -> None:
    from mcdata.alert_rules import MAX_RULES

    cases = {
        "too many": (rules_json(MAX_RULES + 1), f"alerts: {MAX_RULES + 1:,} rules; at most {MAX_RULES:,}"),
        "window": (rules_json(1, window="36500d"), 'alert "r0": window: at most 90d'),
        "after": (json.dumps([{"name": "s", "rule": "stale", "after": "1000d"}]), 'alert "s": after: at most 90d'),
        "nested": ("[" * 50_000 + "]" * 50_000, "MCDATA_ALERTS: invalid value"),  # under the 128 kB of one env var
    }
    for case, (value, message) in cases.items():
        result = mcdata("alerts", env=exchange_env, MCDATA_ALERTS=value)
        assert result.returncode == 2 and message in result.stderr, (case, result.stderr[-500:])
        assert "RecursionError" not in result.stderr and len(result.stderr.splitlines()) == 1, case
    assert mcdata("alerts", env=exchange_env, MCDATA_ALERTS=rules_json(MAX_RULES)).returncode == 0


def test_a_deeply_nested_config_file_is_a_usage_error(exchange_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "deep.toml"
    for text in ("alerts = " + "[" * 5000 + "]" * 5000,
                 '[[alerts]]\nname = "x"\nrule = "above"\nprice = 1\npairs = ' + "[" * 3000 + "]" * 3000):
        config.write_text(text)
        config.chmod(0o600)
        result = mcdata("alerts", env=exchange_env, MCDATA_CONFIG=str(config))
        assert result.returncode == 2 and "nested too deeply" in result.stderr, result.stderr[-300:]


def test_every_rule_reads_its_window_from_one_read(migrated_engine: sa.Engine) -> None:
    from datetime import UTC, datetime, timedelta

    from mcdata import alerts, metrics
    from mcdata.alert_rules import parse_rules
    from mcdata.schema import raw_prices
    from mcdata.store import PriceRow, insert_prices

    t = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    with migrated_engine.begin() as connection:
        insert_prices(connection, [PriceRow("kraken", pair, t - timedelta(hours=h), 100.0 + h, None, "ticker", t)
                                   for pair in ("aaa", "bbb") for h in range(0, 30 * 24)])
    tables = [{"name": f"r{days}", "rule": "change", "pct": 50, "window": f"{days}d"} for days in range(1, 11)]
    rules = parse_rules(tables, ("aaa", "bbb"))
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if raw_prices.name in statement and statement.lstrip().upper().startswith("SELECT"):
            reads.append(statement)

    with migrated_engine.begin() as connection:
        metrics.compute(connection, t)
        sa.event.listen(migrated_engine, "before_cursor_execute", count)
        try:
            fired = alerts.evaluate(connection, rules, "kraken", ("aaa", "bbb"), t, t)
        finally:
            sa.event.remove(migrated_engine, "before_cursor_execute", count)
    assert len(reads) == 1, reads
    # and each rule saw its own window: the oldest sample of a d-day window is d days (+ jitter) back
    fired_rules = {event.message.split(":")[0] for event in fired}
    # (from 100 + 24 d at its start to 100 now: a change of -24 d / (100 + 24 d), >= 50 % from 5 days on)
    expected = {f"r{days}" for days in range(1, 11) if abs(100.0 / (100.0 + days * 24) - 1) * 100 >= 50}
    assert fired_rules == expected


# -- the config file is a private file -------------------------------------------------------------------
def test_a_config_file_others_can_write_is_refused(env: str, exchange_env: dict[str, str], tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for file_mode, folder_mode in ((0o666, 0o700), (0o620, 0o700), (0o600, 0o777)):
        folder = tmp_path / f"conf-{file_mode:o}-{folder_mode:o}"
        folder.mkdir()
        config = folder / "config.toml"
        config.write_text(f'metrics_file = "{victim}"\n')
        config.chmod(file_mode)
        folder.chmod(folder_mode)
        result = mcdata("--quiet", "run", "--backfill", "0", env=exchange_env, MCDATA_CONFIG=str(config))
        assert result.returncode == 2, (oct(file_mode), oct(folder_mode), result.stderr)
        assert "writable by other users" in result.stderr and len(result.stderr.splitlines()) == 1
        assert victim.read_text() == "precious\n"
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp: nobody can replace a file of ours there
    (sticky / "config.toml").write_text('pairs = "btceur"\n')
    (sticky / "config.toml").chmod(0o644)
    assert mcdata("config", env=exchange_env, MCDATA_CONFIG=str(sticky / "config.toml")).returncode == 0


def test_a_config_file_holding_a_secret_that_others_can_read_is_warned_about(
        exchange_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    expectations = [('notify = ["json://127.0.0.1:9/hook"]\n', True),
                    (f'database_url = "postgresql://u:{MIRROR_PASSWORD}@127.0.0.1:9/x"\n', True),
                    (f'api_url = "http://{TOKEN}@127.0.0.1:9"\n', True),
                    ('database_url = "sqlite:////data/mcdata.db"\n', False)]  # the image's: a path is no secret
    for text, warned in expectations:
        config.write_text(text)
        for mode, expected in ((0o644, warned), (0o600, False)):
            config.chmod(mode)
            result = mcdata("config", "json", env=exchange_env, MCDATA_CONFIG=str(config))
            assert result.returncode == 0, result.stderr
            assert ("can be read by other users; chmod 600 it" in result.stderr) is expected, (text, oct(mode))
            assert not leaks(result.stdout, result.stderr)


# -- venue names ----------------------------------------------------------------------------------------
def test_every_venue_name_is_checked_and_the_textfile_never_carries_control_characters(
        env: str, exchange_env: dict[str, str], tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from mcdata.store import PriceRow, insert_prices

    hostile = "kr\x1b[2Jak\x07en"
    for words in (["prices", "set", "btceur", "--at", "2026-11-01T00:00", "--price", "1", "--new",
                   "--exchange", hostile],
                  ["prices", "delete", "btceur", "--exchange", hostile], ["show", "--exchange", hostile],
                  ["status", "--exchange", hostile], ["fetch", "--exchange", hostile]):
        result = mcdata(*words, env=exchange_env)
        assert result.returncode == 2 and "invalid value 'kr\\x1b[2Jak\\x07en'" in result.stderr, words
        assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    # a name stored by an older version, or by hand: the Prometheus textfile escapes it
    now = datetime.now(UTC).replace(microsecond=0)
    engine = sa.create_engine(env)
    with engine.begin() as connection:
        insert_prices(connection, [PriceRow(hostile, "btceur", now - timedelta(minutes=m), 100.0 + m, None,
                                            "ticker", now) for m in (1, 30)])
    engine.dispose()
    textfile = tmp_path / "mcdata.prom"
    assert mcdata("run", "--backfill", "0", env=exchange_env, MCDATA_METRICS_FILE=str(textfile)).returncode == 0
    text = textfile.read_text()
    assert 'exchange="kr\\\\x1b[2Jak\\\\x07en"' in text  # written out as text, not as the bytes
    assert "\x1b" not in text and "\x07" not in text


# -- credentials on the command line ----------------------------------------------------------------------
def test_a_flag_carrying_a_credential_is_warned_about_once(env: str, exchange_env: dict[str, str],
                                                           fake_exchange: FakeExchange) -> None:
    with_token = fake_exchange.url.replace("http://", f"http://{TOKEN}@")
    cases = [(["--database-url", f"postgresql://u:{MIRROR_PASSWORD}@127.0.0.1:1/x", "show"], "--database-url",
              "MCDATA_DATABASE_URL_FILE"),
             (["fetch", "--backfill", "0", "--api-url", with_token], "--api-url", "MCDATA_API_URL")]
    for words, flag, instead in cases:
        result = mcdata(*words, env=exchange_env)
        warnings = [line for line in result.stderr.splitlines() if "every local user can read in `ps`" in line]
        assert len(warnings) == 1 and flag in warnings[0] and instead in warnings[0], result.stderr
        assert not leaks(result.stdout, result.stderr)
    quiet = mcdata("fetch", "--backfill", "0", env=exchange_env, MCDATA_API_URL=with_token)  # the env var: fine
    assert quiet.returncode == 0 and "`ps`" not in quiet.stderr
    plain = mcdata("--database-url", env, "show", env=exchange_env)  # no credential in it: nothing to say
    assert "`ps`" not in plain.stderr
