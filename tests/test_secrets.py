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
