"""Hostile strings in every input are refused before any request or SQL, and echoed back escaped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unstamped
from tests.reliability.conftest import Harness

pytestmark = pytest.mark.slow  # subprocesses, soak, restarts: `-m "not slow"` skips them while working

PAYLOADS = [
    "btceur'; drop table runs; --",
    "btceur\"); DELETE FROM raw_crypto_pair_price_history; --",
    "$(touch /tmp/mcdata-pwned)",
    "`touch /tmp/mcdata-pwned`",
    "\x1b[2J\x1b[31mred",
    "\x07\x08\x7f",
    "b" * 5000,
    "ünïcødé",
    "btc eur",
]


def assert_safe(harness: Harness, code: int, stderr: str, expected: int = 2) -> None:
    assert code == expected, stderr
    assert unstamped(stderr)[0].startswith("mcdata: error: ")
    assert len(stderr.strip().splitlines()) == 1
    assert "\x1b" not in stderr and "\x07" not in stderr
    assert len(stderr) < 500  # a long value is cut, not echoed whole
    assert harness.exchange.requests == []
    assert not Path("/tmp/mcdata-pwned").exists()


@pytest.fixture
def migrated(harness: Harness) -> Harness:
    assert harness.invoke("migrate")[0] == 0
    return harness


def tables_intact(harness: Harness) -> None:
    names = {r[0] for r in harness.query(
        "SELECT name FROM sqlite_master WHERE type = 'table'" if harness.db_url.startswith("sqlite")
        else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"raw_crypto_pair_price_history", "crypto_pair_metrics", "runs"} <= names


@pytest.mark.parametrize("payload", PAYLOADS)
def test_pair_names_from_flag_env_and_config(migrated: Harness, payload: str, tmp_path: Path) -> None:
    assert_safe(migrated, *migrated.invoke("fetch", "--pairs", payload)[::2])
    assert_safe(migrated, *migrated.invoke("fetch", env={"MCDATA_PAIRS": payload})[::2])
    config = tmp_path / "config.toml"
    config.write_text(f"pairs = {payload!r}\n".replace("\\x", "\\u00"), encoding="utf-8")
    assert_safe(migrated, *migrated.invoke("--config", str(config), "fetch")[::2])
    assert_safe(migrated, *migrated.invoke("show", payload)[::2])
    tables_intact(migrated)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_times_urls_and_venues(migrated: Harness, payload: str) -> None:
    assert_safe(migrated, *migrated.invoke("compute", "--as-of", payload)[::2])
    assert_safe(migrated, *migrated.invoke("fetch", "--api-url", payload)[::2])
    assert_safe(migrated, *migrated.invoke("fetch", "--source", "cryptowatch", "--exchange", payload)[::2])
    assert_safe(migrated, *migrated.invoke("show", "btceur", payload)[::2])
    assert_safe(migrated, *migrated.invoke("--database-url", payload, "show")[::2], expected=4)
    tables_intact(migrated)


def test_non_utf8_environment(migrated: Harness) -> None:
    import os

    env = {**os.environ, **migrated.env}
    env_bytes = {k.encode(): v.encode() for k, v in env.items()}
    env_bytes[b"MCDATA_PAIRS"] = b"btc\xff\xfeeur"
    done = subprocess.run([sys.executable, "-m", "mcdata", "fetch"], env=env_bytes, capture_output=True, check=False)
    assert done.returncode == 2
    assert b"\\udcff" in done.stderr and b"\xff" not in done.stderr
    assert migrated.exchange.requests == []


def test_hostile_names_and_errors_from_the_api_never_reach_the_terminal(migrated: Harness) -> None:
    from tests.fake_exchange import Market

    exchange = migrated.exchange
    exchange.assets["EVIL"] = "EV\x1b[2JIL"
    exchange.markets["evil"] = Market("evil", "EVIL\x1b[31mUSD", "EVILUSD", "EVIL", "ZUSD", 1.0)
    exchange.markets["evil2"] = Market("evil2", "EVILZUSD", "EVIL\x1b]0;pwned\x07", "XXBT", "ZUSD", 1.0)
    exchange.cw_listing.append({"id": 1, "exchange": "kraken", "pair": "evil\x1b[31m", "active": True})
    for args in (["pairs"], ["pairs", "csv"], ["pairs", "--source", "cryptowatch"]):
        code, out, err = migrated.invoke(*args)
        assert code == 0, err
        assert "\x1b" not in out + err and "\x07" not in out + err
    exchange.fail("/0/public/Ticker", "kraken_error", message="EGeneral:\x1b[2Jboom\x07")
    code, out, err = migrated.invoke("fetch", "--backfill", "0")
    assert code == 1
    assert "EGeneral:\\x1b[2Jboom\\x07" in err and "\x1b" not in err
