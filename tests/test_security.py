"""Nothing from the network, a shared folder or the database gets further than it should (issue 16).

Redirects, credentials in the API URL, planted caches and locks, markup and formulas in stored data,
server text with terminal escapes, secret-file modes and odd setting values: each on a real HTTP server
on loopback and, where a database is involved, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata.cli import app
from mcdata.db import make_engine
from mcdata.render import write_csv
from mcdata.schema import metrics, raw_prices, runs
from tests.conftest import SECRETS, unstamped
from tests.fake_exchange import FakeExchange
from tests.helpers import execute, query

ROOT = Path(__file__).resolve().parent.parent
API_KEY = SECRETS[2]  # cw-key-123
PASSWORD = SECRETS[3]  # Sup3r-S3cret-Pw9
NOBODY = 65534


@pytest.fixture
def elsewhere() -> Iterator[FakeExchange]:
    """A second server, on another port: where a redirect would take the request (it logs headers)."""
    with FakeExchange() as other:
        yield other


# -- 1. redirects -------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_a_source_error_and_the_api_key_stays_home(
        env: str, fake_exchange: FakeExchange, elsewhere: FakeExchange, runner: CliRunner,
        monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    monkeypatch.setenv("MCDATA_API_KEY", API_KEY)
    fake_exchange.fail("/markets", "redirect", times=50, status=status, message=f"{elsewhere.url}/markets/kraken")
    result = runner.invoke(app, ["fetch", "--source", "cryptowatch"])
    assert result.exit_code == 1, result.stderr
    assert elsewhere.requests == []  # not followed: the key never reached the other host
    assert len(fake_exchange.requests) == 1  # not retried either: a redirect is no transient fault
    assert f"answered HTTP {status}, a redirect to http://127.0.0.1; mcdata follows no redirects; set --api-url" \
        in result.stderr


def test_a_redirect_with_a_gzip_bomb_is_not_read(env: str, fake_exchange: FakeExchange, elsewhere: FakeExchange,
                                                 runner: CliRunner) -> None:
    fake_exchange.fail("/0/public/Assets", "redirect", message=f"https://{elsewhere.url[7:]}/x", seconds=40)
    result = runner.invoke(app, ["fetch"])
    assert result.exit_code == 1
    assert "a redirect to https://127.0.0.1" in result.stderr
    assert elsewhere.requests == []


# -- 2. credentials in api_url ------------------------------------------------------------------
def test_a_password_in_the_api_url_is_never_printed_or_stored(
        env: str, fake_exchange: FakeExchange, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    url = fake_exchange.url.replace("http://", f"http://reader:{PASSWORD}@")
    monkeypatch.setenv("MCDATA_API_URL", url)
    fake_exchange.fail("/0/public/Assets", "status", status=503, times=10)
    result = runner.invoke(app, ["--verbose", "fetch"])  # the autouse fixture searches the output for PASSWORD
    assert result.exit_code == 1
    assert "http://***@127.0.0.1" in result.stderr  # the user name too: it may be a token (issue 23)
    summaries = [row.error_summary for row in query(env, sa.select(runs.c.error_summary))]
    assert summaries and all(PASSWORD not in (s or "") for s in summaries)
    assert any("http://***@" in (s or "") for s in summaries)
    # and the mirror did get the credentials it needs
    assert fake_exchange.headers[-1].get("Authorization", "").startswith("Basic ")


def test_an_invalid_api_url_with_a_password_is_masked(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch", "--api-url", f"ftp://reader:{PASSWORD}@mirror.example"])
    assert result.exit_code == 2
    assert "--api-url: invalid value (hidden)" in result.stderr


# -- 3. the pair cache --------------------------------------------------------------------------
def run_fetch(runner: CliRunner, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["fetch", "--backfill", "0", *args])
    return result.exit_code, result.stderr


def cache_file(cache_dir: Path) -> Path:
    files = [p for p in cache_dir.glob("kraken-pairs-*.json")]
    assert len(files) == 1, files
    return files[0]


def plant_eth_as_btc(path: Path) -> None:
    """A well-formed cache whose btceur is XETHZEUR: stored prices would be ETH's under BTC's name."""
    data = json.loads(path.read_text())
    data["pairs"]["XXBTZEUR"]["base"] = "XETH"
    data["pairs"]["XETHZEUR"]["base"] = "XXBT"
    data["assets"]["XXBT"]["altname"] = "ETH"
    data["assets"]["XETH"]["altname"] = "XBT"
    data["pairs"]["EVIL"] = {"altname": "EVIL", "base": "X\x1b[2J", "quote": "ZEUR", "status": "online"}
    data["assets"]["X\x1b[2J"] = {"altname": "=cmd|' /C calc'!A0"}
    path.write_text(json.dumps(data))


def btceur_prices(db_url: str) -> list[float]:
    return [r.price for r in query(db_url, sa.select(raw_prices.c.price).where(raw_prices.c.pair == "btceur"))]


def test_the_cache_is_written_private_even_with_umask_000(env: str, exchange_env: dict[str, str],
                                                         runner: CliRunner) -> None:
    cache_dir = Path(exchange_env["MCDATA_CACHE_DIR"]) / "deeper"
    os.environ["MCDATA_CACHE_DIR"] = str(cache_dir)  # monkeypatched by exchange_env: restored after the test
    old = os.umask(0)
    try:
        assert run_fetch(runner)[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache_dir.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache_file(cache_dir).stat().st_mode) == 0o600


@pytest.mark.parametrize("plant", ["other_user", "group_writable"])
def test_a_planted_cache_is_ignored_with_one_warning(env: str, exchange_env: dict[str, str], runner: CliRunner,
                                                     fake_exchange: FakeExchange, plant: str) -> None:
    if plant == "other_user" and os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    cache_dir = Path(exchange_env["MCDATA_CACHE_DIR"])
    assert run_fetch(runner)[0] == 0
    path = cache_file(cache_dir)
    plant_eth_as_btc(path)
    if plant == "other_user":
        os.chown(path, NOBODY, NOBODY)
    else:
        path.chmod(0o664)
    before = fake_exchange.count("/0/public/AssetPairs")
    code, stderr = run_fetch(runner)
    assert code == 0, stderr
    assert stderr.count("ignoring the pair cache") == 1
    assert fake_exchange.count("/0/public/AssetPairs") == before + 1  # downloaded again
    level = fake_exchange.markets["btceur"].price
    assert all(0.9 * level < price < 1.1 * level for price in btceur_prices(env))  # BTC's price, not ETH's


def test_a_cache_of_our_own_is_checked_like_a_download(env: str, exchange_env: dict[str, str],
                                                       runner: CliRunner) -> None:
    """Names with escapes or formulas are dropped exactly as from Kraken's own answer."""
    cache_dir = Path(exchange_env["MCDATA_CACHE_DIR"])
    assert run_fetch(runner)[0] == 0
    plant_eth_as_btc(cache_file(cache_dir))
    result = runner.invoke(app, ["pairs", "json"])
    assert result.exit_code == 0
    names = {row["pair"] for row in json.loads(result.stdout)} | {row["venue_symbol"] for row in
                                                                    json.loads(result.stdout)}
    assert all(re.fullmatch(r"[A-Za-z0-9./]+", name) for name in names)


@pytest.mark.parametrize("content", ["nested", "huge", "garbage", "naive_time"])
def test_a_broken_cache_is_ignored_and_replaced(env: str, exchange_env: dict[str, str], runner: CliRunner,
                                                content: str) -> None:
    cache_dir = Path(exchange_env["MCDATA_CACHE_DIR"])
    assert run_fetch(runner)[0] == 0
    path = cache_file(cache_dir)
    if content == "nested":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif content == "huge":
        with path.open("wb") as file:  # sparse: 200 MB that take no disk
            file.truncate(200 * 1024 * 1024)
    elif content == "garbage":
        path.write_text('{"fetched_at": 5, "assets": [], "pairs": "x"}')
    else:
        data = json.loads(path.read_text())
        data["fetched_at"] = datetime.now(UTC).replace(tzinfo=None).isoformat()
        path.write_text(json.dumps(data))
    code, stderr = run_fetch(runner)
    assert code == 0, stderr
    assert stderr.count("ignoring the pair cache") == 1
    assert len(stderr.strip().splitlines()) <= 3
    assert path.stat().st_size < 1024 * 1024  # replaced by a good one
    assert run_fetch(runner)[1].count("ignoring the pair cache") == 0


def test_a_cache_folder_others_can_write_is_not_used(env: str, tmp_path: Path, runner: CliRunner,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     fake_exchange: FakeExchange) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("MCDATA_CACHE_DIR", str(shared))
    code, stderr = run_fetch(runner)
    assert code == 0
    assert "not caching the pair list" in stderr and "writable by other users" in stderr
    assert list(shared.iterdir()) == []
    shared.chmod(0o777 | stat.S_ISVTX)  # sticky, like /tmp: our own file there is fine
    code, stderr = run_fetch(runner)
    assert code == 0 and "not caching" not in stderr
    assert len(list(shared.glob("kraken-pairs-*.json"))) == 1
    before = fake_exchange.count("/0/public/AssetPairs")
    assert run_fetch(runner)[0] == 0
    assert fake_exchange.count("/0/public/AssetPairs") == before  # read from the cache


# -- 3b. the SQLite lock --------------------------------------------------------------------------
def test_the_sqlite_lock_and_files_are_private_and_not_followed(tmp_path: Path, exchange_env: dict[str, str],
                                                                 runner: CliRunner,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "new" / "data"
    database = folder / "mcdata.db"
    monkeypatch.setenv("MCDATA_DATABASE_URL", f"sqlite:///{database}")
    old = os.umask(0)
    try:
        result = runner.invoke(app, ["run", "--backfill", "0"])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in (database, Path(f"{database}.lock")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # a symlink planted where the lock goes is never followed
    lock = Path(f"{database}.lock")
    lock.unlink()
    lock.symlink_to(tmp_path / "elsewhere")
    result = runner.invoke(app, ["fetch", "--backfill", "0"])
    assert result.exit_code == 4
    assert f"cannot use the lock file {lock}" in result.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_a_database_folder_others_can_write_is_refused(tmp_path: Path, exchange_env: dict[str, str],
                                                       runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    monkeypatch.setenv("MCDATA_DATABASE_URL", f"sqlite:///{folder / 'mcdata.db'}")
    result = runner.invoke(app, ["run", "--backfill", "0"])
    assert result.exit_code == 4
    assert "writable by other users" in result.stderr and str(folder) in result.stderr


def test_a_symlink_to_the_database_takes_the_same_lock(tmp_path: Path) -> None:
    from mcdata.db import writer_lock
    from mcdata.errors import LockedError

    real = tmp_path / "real.db"
    link = tmp_path / "link.db"
    first, second = make_engine(f"sqlite:///{real}"), make_engine(f"sqlite:///{real}")
    link.symlink_to(real)
    second = make_engine(f"sqlite:///{link}")
    try:
        with writer_lock(first), pytest.raises(LockedError), writer_lock(second):
            pass
    finally:
        first.dispose()
        second.dispose()


# -- 5, 6. markup and formulas in stored data ---------------------------------------------------
HOSTILE_NAMES = ["[link=http://evil.example]x[/link]", "[/oops]", "=HYPERLINK(\"http://e\")", "+1+2", "@SUM(A1)",
                 "-2+3", "\x1b]0;pwned\x07bad"]


def plant_metrics(db_url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [{"timestamp": now, "exchange": "kraken", "pair": name, "latest_price": 1.0 + i, "latest_at": now,
             "weekly_average": 1.0, "min_price": 1.0, "max_price": 2.0, "stddev_24h": 0.5, "std_rank": i + 1,
             "volatility_24h": 0.1, "volatility_rank": i + 1, "change_24h_pct": -1.5, "samples_24h": 2,
             "samples_7d": 2, "computed_at": now} for i, name in enumerate(HOSTILE_NAMES)]
    execute(db_url, metrics.insert(), rows)


def test_markup_in_stored_names_is_printed_as_text(env: str, runner: CliRunner) -> None:
    plant_metrics(env)
    result = runner.invoke(app, ["show"])
    assert result.exit_code == 0, result.stderr
    assert "[link=http://evil.example]x[/link]" in result.stdout
    assert "[/oops]" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_csv_cells_cannot_be_formulas(env: str, runner: CliRunner) -> None:
    plant_metrics(env)
    result = runner.invoke(app, ["show", "csv"])
    assert result.exit_code == 0
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    pairs = {row["pair"] for row in rows}
    assert "'=HYPERLINK(\"http://e\")" in pairs and "'+1+2" in pairs and "'@SUM(A1)" in pairs and "'-2+3" in pairs
    assert all(not cell.startswith(("=", "+", "@")) for row in rows for cell in row.values())
    assert {row["change_24h_pct"] for row in rows} == {"-1.5"}  # numbers stay numbers
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_csv_writer_neutralises_text_only() -> None:
    import io

    out = io.StringIO()
    write_csv([{"a": "=1+1", "b": -2.5, "c": "\tx", "d": "ok", "e": "\x1b[2J"}], ["a", "b", "c", "d", "e"], out)
    assert out.getvalue().splitlines()[1] == "'=1+1,-2.5,'\\tx,ok,\\x1b[2J"


# -- 7. server text ----------------------------------------------------------------------------
def test_server_text_reaches_no_terminal_raw(env: str, fake_exchange: FakeExchange, runner: CliRunner) -> None:
    fake_exchange.fail("/0/public/Assets", "kraken_error", message="EService:Busy \x1b[2J\x1b]0;pwned\x07", times=1)
    fake_exchange.fail("/0/public/AssetPairs", "kraken_error", message="EGeneral:Bad \x1b[31mred\x07", times=5)
    for command in ("fetch", "pairs"):  # a failed report, and an error raised through --debug's traceback
        result = runner.invoke(app, ["--verbose", "--debug", command])
        assert result.exit_code == 1
        assert "\x1b" not in result.stderr and "\x07" not in result.stderr
        assert "\\x1b[31mred" in result.stderr
    assert "Traceback" in result.stderr
    fake_exchange.faults.clear()
    fake_exchange.fail("/0/public/Assets", "kraken_error", message="EService:Busy \x1b[2J", times=1)
    result = runner.invoke(app, ["--verbose", "pairs"])
    assert result.exit_code == 0 and "retry 1/" in result.stderr and "EService:Busy \\x1b[2J" in result.stderr


# -- 8. secrets hygiene -------------------------------------------------------------------------
def test_a_secret_file_others_can_read_is_warned_about(tmp_path: Path, runner: CliRunner,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "database_url"
    secret.write_text(f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("MCDATA_DATABASE_URL_FILE", str(secret))
    secret.chmod(0o644)
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0
    assert f"{secret} (MCDATA_DATABASE_URL_FILE) can be read by other users" in result.stderr
    secret.chmod(0o600)
    assert "can be read by other users" not in runner.invoke(app, ["migrate"]).stderr


def test_container_files_keep_secrets_out() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "secrets", "*.db"):
        assert entry in ignore
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert bases and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", b) for b in bases)
    assert "install -d -m 0700 -o mcdata /data" in dockerfile
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "umask 077" in compose


def test_dependency_floors_are_past_known_advisories() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {re.split(r"[\[>=<]", d)[0]: d for d in dependencies}
    assert floors["requests"].startswith("requests>=2.32.4")
    assert floors["urllib3"].startswith("urllib3>=2.6.3")


# -- 9. odd values ------------------------------------------------------------------------------
@pytest.mark.parametrize(("variable", "value"), [
    ("MCDATA_RETENTION", "99999999999d"), ("MCDATA_RETRY_AFTER_MAX", "99999999999d"),
    ("MCDATA_BACKFILL", "99999999999d"), ("MCDATA_BACKFILL", "1000000000d"), ("MCDATA_RATE_LIMIT", "1e-6"),
    ("MCDATA_RATE_LIMIT", "nan"), ("MCDATA_FETCH_TIMEOUT", "25h"),
])
def test_odd_setting_values_are_usage_errors(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, variable: str,
                                             value: str) -> None:
    monkeypatch.setenv(variable, value)
    result = runner.invoke(app, ["fetch"])
    assert result.exit_code == 2, result.stderr
    assert unstamped(result.stderr)[0].startswith("mcdata: error: ") and len(result.stderr.splitlines()) == 1
    assert variable in result.stderr and "invalid value" in result.stderr


@pytest.mark.parametrize("arguments", [["prune", "--keep", "99999999d"], ["compute", "--as-of", "0001-01-01"],
                                       ["fetch", "--backfill", "1000000000d"]])
def test_odd_flag_values_are_usage_errors(runner: CliRunner, arguments: list[str]) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2, result.stderr
    assert "unexpected" not in result.stderr


def test_a_slow_rate_limit_cannot_hold_the_lock_past_the_fetch_timeout(env: str, runner: CliRunner,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCDATA_RATE_LIMIT", "0.01")  # one request per 100 s
    monkeypatch.setenv("MCDATA_FETCH_TIMEOUT", "5s")
    started = datetime.now(UTC)
    result = runner.invoke(app, ["fetch", "--backfill", "0"])
    assert datetime.now(UTC) - started < timedelta(seconds=5)
    assert result.exit_code == 1
    assert "would pass the fetch's time limit of 5s" in result.stderr
