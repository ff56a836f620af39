"""Shared fixtures: one test suite, two databases, and a fake exchange on loopback.

PostgreSQL cases use the server named by MCDATA_TEST_POSTGRES_URL (a fresh database per test
session, created and dropped here). Without it they skip locally; under CI (`CI` set) a skipped
test fails the run instead.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata import jobs
from mcdata.config import load_settings
from mcdata.db import normalize_url
from tests.fake_exchange import FakeExchange
from tests.receiver import Receiver

POSTGRES_ENV = "MCDATA_TEST_POSTGRES_URL"
# Every secret any test hands to mcdata: no command's output, in any test, may contain one.
SECRETS = ("TopSecret99", "hunter22", "cw-key-123", "Sup3r-S3cret-Pw9", "cw-S3cret-ApiKey7")


STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


def unstamped(stderr: str) -> list[str]:
    """stderr's lines without the UTC time mcdata puts before each line when stderr is not a terminal."""
    lines = stderr.splitlines()
    assert all(STAMP.match(line) for line in lines if line.startswith(("mcdata", "20"))), stderr
    return [STAMP.sub("", line) for line in lines]


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (a skip is a failure under CI)")
    pytest.skip(reason)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("CI") and exitstatus == 0 and reporter and reporter.stats.get("skipped"):
        reporter.write_line("CI: skipped tests count as failures", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the user's config, data or cache, or an MCDATA_* variable of the caller."""
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if name.startswith("MCDATA_") and name != POSTGRES_ENV:
            monkeypatch.delenv(name)
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache")):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def no_secret_in_any_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrap CliRunner.invoke so that every CLI output of the suite is searched for the secrets."""
    original = CliRunner.invoke

    def invoke(self: CliRunner, *args: object, **kwargs: object) -> object:
        result = original(self, *args, **kwargs)  # type: ignore[arg-type]
        leaked = [secret for secret in SECRETS if secret in result.output]
        assert not leaked, f"a secret leaked into the output: {result.output[:500]}"
        return result

    monkeypatch.setattr(CliRunner, "invoke", invoke)


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    """A connection to the PostgreSQL of POSTGRES_ENV that creates and drops the tests' databases."""
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        _skip_or_fail(f"{POSTGRES_ENV} is not set")
    assert admin_url
    admin = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    yield admin
    admin.dispose()


def _create_database(admin: sa.Engine, name: str, template: str | None = None) -> str:
    """A new database (a copy of `template` if given, else empty), replacing one of that name; its URL."""
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    return admin.url.set(database=name).render_as_string(hide_password=False)


def _drop_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_database(postgres_admin: sa.Engine) -> Iterator[str]:
    name = f"mcdata_test_{secrets.token_hex(4)}"
    try:
        url = _create_database(postgres_admin, name)
    except sa.exc.OperationalError as exc:
        _skip_or_fail(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {exc.orig}")
    yield url
    _drop_database(postgres_admin, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or the session's PostgreSQL database wiped clean."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mcdata.db'}"
    url: str = request.getfixturevalue("postgres_database")
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    from mcdata.db import make_engine

    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated_engine(engine: sa.Engine) -> sa.Engine:
    from mcdata.migrations import upgrade

    upgrade(engine)
    return engine


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def fake_exchange() -> Iterator[FakeExchange]:
    with FakeExchange() as exchange:
        yield exchange


@pytest.fixture
def exchange_env(db_url: str, fake_exchange: FakeExchange, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point mcdata, by environment, at the test database and the fake exchange: fast retries, no pacing."""
    values = {
        "MCDATA_DATABASE_URL": db_url, "MCDATA_API_URL": fake_exchange.url, "MCDATA_RATE_LIMIT": "1000",
        "MCDATA_HTTP_BACKOFF": "0.01", "MCDATA_HTTP_TIMEOUT": "2", "MCDATA_HTTP_RETRIES": "2",
        "MCDATA_CACHE_DIR": str(tmp_path / "cache"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def _migrate(url: str) -> None:
    from mcdata.db import make_engine
    from mcdata.migrations import upgrade

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once a session: tests that start migrated start from a copy of it."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    _migrate(f"sqlite:///{path}")
    assert not path.with_name(path.name + "-wal").exists()  # all of it is in the one file
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres_admin: sa.Engine, postgres_database: str) -> Iterator[str]:
    """A PostgreSQL database migrated once a session, the template of those that start migrated."""
    name = f"{sa.make_url(postgres_database).database}_migrated"
    _migrate(_create_database(postgres_admin, name))
    yield name
    _drop_database(postgres_admin, name)


@pytest.fixture
def env(exchange_env: dict[str, str], db_url: str, request: pytest.FixtureRequest) -> str:
    """The exchange_env, on a migrated database (its URL): a copy of the session's migrated one, as
    alembic would leave it (migrating each test's database took a fifth of the suite's time)."""
    if db_url.startswith("sqlite:///"):
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), db_url.removeprefix("sqlite:///"))
        return db_url
    name = sa.make_url(db_url).database
    assert name
    _create_database(request.getfixturevalue("postgres_admin"), name, request.getfixturevalue("migrated_postgres"))
    return db_url


HOUR = timedelta(hours=1)


@pytest.fixture
def hourly(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Runs an hour apart on a controlled clock (the exchange's prices and Date follow it), with a spike rule
    on btceur and a JSON webhook receiver."""
    clock = {"now": datetime.now(UTC).replace(microsecond=0) - 8 * HOUR}
    with FakeExchange(clock=lambda: clock["now"].timestamp()) as exchange, Receiver() as receiver:
        config = tmp_path / "config.toml"
        config.write_text(f'notify = ["json://127.0.0.1:{receiver.url.rsplit(":", 1)[1]}/hook"]\n'
                          'pairs = ["btceur", "etheur"]\n'
                          '[[alerts]]\nname = "btc-spike"\nrule = "spike"\nfactor = 3\nwindow = "1h"\n'
                          'pairs = ["btceur"]\n')
        for name, value in {"MCDATA_DATABASE_URL": db_url, "MCDATA_API_URL": exchange.url, "MCDATA_CONFIG": str(config),
                            "MCDATA_RATE_LIMIT": "1000", "MCDATA_HTTP_BACKOFF": "0.01", "MCDATA_BACKFILL": "3h",
                            "MCDATA_CACHE_DIR": str(tmp_path / "cache")}.items():
            monkeypatch.setenv(name, value)
        yield {"clock": clock, "exchange": exchange, "receiver": receiver, "config": config, "db": db_url}


def hour(world: dict[str, Any], price: float | None = None) -> jobs.Report:
    """One hourly run; `price` overrides btceur's ticker."""
    world["clock"]["now"] += HOUR
    world["exchange"].price_overrides.clear()
    if price is not None:
        world["exchange"].price_overrides["btceur"] = str(price)
    report = jobs.run(load_settings(), now=world["clock"]["now"])
    assert report.exit_code == 0, report.errors
    return report
