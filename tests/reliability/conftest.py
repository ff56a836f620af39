"""Reliability fixtures: every output of these tests is kept and searched for the secrets in play."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata.cli import app
from tests.fake_exchange import FakeExchange
from tests.helpers import query

PASSWORD = "Sup3r-S3cret-Pw9"  # PostgreSQL here trusts loopback: any password connects
API_KEY = "cw-S3cret-ApiKey7"


@dataclass
class Harness:
    """Runs mcdata (in process or as a child) against one database and one fake exchange."""

    db_url: str
    exchange: FakeExchange
    tmp: Path
    outputs: list[str] = field(default_factory=list)
    runner: CliRunner = field(default_factory=CliRunner)

    @property
    def env(self) -> dict[str, str]:
        return {
            "MCDATA_DATABASE_URL": self.db_url, "MCDATA_API_URL": self.exchange.url, "MCDATA_RATE_LIMIT": "1000",
            "MCDATA_HTTP_BACKOFF": "0.01", "MCDATA_HTTP_TIMEOUT": "1", "MCDATA_HTTP_RETRIES": "1",
            "MCDATA_CACHE_DIR": str(self.tmp / "cache"), "MCDATA_API_KEY": API_KEY,
        }

    def invoke(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        result = self.runner.invoke(app, list(args), env={**self.env, **(env or {})})
        self.outputs += [result.stdout, result.stderr]
        return result.exit_code, result.stdout, result.stderr

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "mcdata", *args], env={**os.environ, **self.env, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self, process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
        out, err = process.communicate(timeout=timeout)
        self.outputs += [out, err]
        return process.returncode, out, err

    def query(self, statement: str) -> list[sa.Row]:  # type: ignore[type-arg]
        return query(self.db_url, statement)


@pytest.fixture
def harness(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    url = sa.make_url(db_url)
    if url.drivername.startswith("postgresql"):
        db_url = url.set(password=PASSWORD).render_as_string(hide_password=False)
    with FakeExchange() as exchange:
        rig = Harness(db_url, exchange, tmp_path)
        yield rig
    try:
        stored = [str(tuple(row)) for row in rig.query("SELECT * FROM runs")]
    except sa.exc.DBAPIError:  # never migrated
        stored = []
    for text in [*rig.outputs, *stored]:
        assert PASSWORD not in text, "the database password leaked"
        assert API_KEY not in text, "the API key leaked"
