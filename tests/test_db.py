"""Engine set-up and the one-writer lock on both databases."""

from __future__ import annotations

import math
import statistics

import pytest
import sqlalchemy as sa

from mcdata.db import make_engine, normalize_url, writer_lock
from mcdata.errors import DatabaseError, LockedError


@pytest.mark.parametrize(("raw", "driver"), [
    ("postgres://u:p@h/db", "postgresql+psycopg"),
    ("postgresql://u:p@h/db", "postgresql+psycopg"),
    ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg"),
    ("sqlite:////tmp/x.db", "sqlite"),
])
def test_url_normalisation(raw: str, driver: str) -> None:
    assert normalize_url(raw).drivername == driver


@pytest.mark.parametrize("raw", ["not a url", "mysql://u:p@h/db", "postgresql://u:p@h:notaport/db"])
def test_bad_urls_are_database_errors(raw: str) -> None:
    with pytest.raises(DatabaseError):
        normalize_url(raw)


def test_second_writer_is_refused_at_once(engine: sa.Engine) -> None:
    other = make_engine(str(engine.url.render_as_string(hide_password=False)))
    try:
        with writer_lock(engine):
            with pytest.raises(LockedError) as error, writer_lock(other):
                pass
            assert error.value.exit_code == 75
        with writer_lock(other):  # released when the holder leaves
            pass
    finally:
        other.dispose()


def test_sqlite_pragmas_and_portable_aggregates(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/deep/dir/m.db")  # the directory is created
    values = [1e9 + 0.1, 1e9 + 0.2, 1e9 + 0.4, 1e9 + 0.3]
    with engine.connect() as connection:
        assert connection.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(sa.text("PRAGMA busy_timeout")).scalar() >= 5000
        assert connection.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        connection.execute(sa.text("CREATE TABLE t (x REAL)"))
        connection.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": v} for v in values])
        stddev, root = connection.execute(sa.text("SELECT stddev_samp(x), sqrt(16.0) FROM t")).one()
        single = connection.execute(sa.text("SELECT stddev_samp(x) FROM t WHERE x < 1e9 + 0.15")).scalar()
        constant = connection.execute(sa.text("SELECT stddev_samp(1.5) FROM t")).scalar()
    engine.dispose()
    assert math.isclose(stddev, statistics.stdev(values), rel_tol=1e-9)
    assert root == 4.0
    assert single is None  # fewer than two samples
    assert constant == 0.0
