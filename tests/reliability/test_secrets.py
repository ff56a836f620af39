"""The database password and the API key appear in no output, traceback or `runs` row.

Every output of the reliability tests is searched by the harness fixture (conftest); these tests add
the paths where a secret is most likely to slip out: --debug tracebacks, failed connections, secrets
given by flag, environment variable and *_FILE.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.reliability.conftest import API_KEY, PASSWORD, Harness

pytestmark = pytest.mark.slow  # subprocesses, soak, restarts: `-m "not slow"` skips them while working

UNREACHABLE = f"postgresql://mcdata:{PASSWORD}@127.0.0.1:9/nowhere"


@pytest.mark.parametrize("how", ["flag", "env", "file"])
def test_unreachable_database_with_debug(harness: Harness, tmp_path: Path, how: str) -> None:
    secret_file = tmp_path / "url"
    secret_file.write_text(UNREACHABLE)
    args, env = {
        "flag": (["--debug", "--database-url", UNREACHABLE, "run"], {}),
        "env": (["--debug", "run"], {"MCDATA_DATABASE_URL": UNREACHABLE}),
        "file": (["--debug", "run"], {"MCDATA_DATABASE_URL": "", "MCDATA_DATABASE_URL_FILE": str(secret_file)}),
    }[how]
    code, out, err = harness.invoke(*args, env=env)
    assert code == 4
    assert "Traceback" in err and "mcdata:***@127.0.0.1:9" in err
    child = harness.spawn(*args, env=env)  # a real process too: nothing printed by Python itself
    code, out, err = harness.wait(child)
    assert code == 4 and PASSWORD not in out + err


def test_secrets_in_a_working_setup_stay_out_of_everything(harness: Harness) -> None:
    """PostgreSQL runs with a password in its URL; on both databases the API key is in play."""
    assert harness.invoke("--verbose", "--debug", "run")[0] == 0
    assert harness.invoke("--debug", "show", "json")[0] == 0
    harness.exchange.fail("/markets/prices", "status", status=500, times=10)
    code, _out, _err = harness.invoke("--verbose", "--debug", "fetch", "--source", "cryptowatch")
    assert code == 1
    assert {h.get("X-CW-API-Key") for h in harness.exchange.headers if "X-CW-API-Key" in h} == {API_KEY}
    runs = harness.query("SELECT error_summary FROM runs WHERE status = 'failed'")
    assert runs and all(PASSWORD not in (r[0] or "") and API_KEY not in (r[0] or "") for r in runs)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_database_error_mid_run_is_reported_without_the_password(harness: Harness) -> None:
    assert harness.invoke("migrate")[0] == 0
    engine = sa.create_engine(sa.make_url(harness.db_url).set(drivername="postgresql+psycopg"))
    with engine.begin() as connection:  # make the compute step fail inside the database
        connection.execute(sa.text("ALTER TABLE crypto_pair_metrics RENAME COLUMN std_rank TO rank_gone"))
    engine.dispose()
    code, _out, err = harness.invoke("--debug", "run")
    assert code == 1
    assert "std_rank" in err
