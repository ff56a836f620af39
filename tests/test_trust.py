"""The numbers cannot be made silently wrong (issue 11): whatever SQL runs against the raw table, the
rollups equal the raw rows (checked in Python, tests/test_store.py) and the metrics the exact reference
(tests/reference.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata import metrics, rollups
from mcdata.cli import app
from mcdata.schema import markets, price_rollup_hourly, raw_prices
from mcdata.store import prune
from tests.helpers import assert_metrics_exact, assert_metrics_match, raw_samples, stored_metrics
from tests.test_metrics import T, edge_case_samples, reference_metrics, store_samples
from tests.test_store import assert_rollups_match_the_raw_rows

KRAKEN = [s for s in edge_case_samples() if s[0] == "kraken" and s[2] <= T]  # one venue, nothing after T


@pytest.fixture
def stored(migrated_engine: sa.Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    store_samples(migrated_engine, KRAKEN)
    with migrated_engine.begin() as connection:
        metrics.compute(connection, T)
    monkeypatch.setenv("MCDATA_DATABASE_URL", db_url)
    return migrated_engine


def assert_all_exact(engine: sa.Engine, as_of: datetime = T) -> None:
    """Rollups equal the raw rows, and the stored metrics of `as_of` the reference on the raw rows."""
    assert_rollups_match_the_raw_rows(engine)
    assert_metrics_exact(engine, as_of)


RAW_TABLE = "raw_crypto_pair_price_history"
HAND_MADE = {
    "update": f"UPDATE {RAW_TABLE} SET price = price * 2 WHERE pair = 'flat'",
    "delete": f"DELETE FROM {RAW_TABLE} WHERE pair = 'flat'",
    "delete_all": f"DELETE FROM {RAW_TABLE}",
}
VALUES = "VALUES ('kraken', 'flat', :ts, 9.9, NULL, 'ticker', :ts)"
BY_DIALECT = {
    "postgresql": {"truncate": f"TRUNCATE {RAW_TABLE}",
                   "replace": f"INSERT INTO {RAW_TABLE} {VALUES} ON CONFLICT (exchange, pair, timestamp) "
                              "DO UPDATE SET price = excluded.price"},
    "sqlite": {"truncate": f"DELETE FROM {RAW_TABLE}",
               "replace": f"INSERT OR REPLACE INTO {RAW_TABLE} {VALUES}"},
}


@pytest.mark.parametrize("change", [*HAND_MADE, "truncate", "replace"])
def test_hand_made_changes_of_raw_prices_are_refused(stored: sa.Engine, change: str) -> None:
    dialect = stored.dialect.name
    flat = next(s for s in KRAKEN if s[1] == "flat")
    statement = HAND_MADE.get(change) or BY_DIALECT[dialect][change]
    ts = flat[2] if dialect == "postgresql" else \
        flat[2].replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    with pytest.raises(sa.exc.DBAPIError, match=r"append-only|stored already"), stored.begin() as connection:
        connection.execute(sa.text(statement), {"ts": ts})
    assert sorted(raw_samples(stored)) == sorted((e, p, ts, v) for e, p, ts, v in KRAKEN)
    assert_all_exact(stored)


def test_prices_delete_rebuilds_rollups_markets_and_metrics(stored: sa.Engine, runner: CliRunner) -> None:
    victim = sorted(s[2] for s in KRAKEN if s[1] == "rand0")
    since, until = victim[len(victim) // 3], victim[2 * len(victim) // 3]
    result = runner.invoke(app, ["prices", "delete", "rand0", "--since", since.isoformat(),
                                 "--until", until.isoformat()])
    assert result.exit_code == 0, result.stderr
    deleted = sum(1 for s in KRAKEN if s[1] == "rand0" and since <= s[2] <= until)
    assert f"{deleted:,} price rows deleted" in result.stderr and "1 metric snapshot recomputed" in result.stderr
    assert_all_exact(stored)
    # every price of a pair: it is new again (no markets row), and its metrics are gone from the snapshot
    assert runner.invoke(app, ["prices", "delete", "flat"]).exit_code == 0
    with stored.connect() as connection:
        assert connection.execute(sa.select(markets).where(markets.c.pair == "flat")).first() is None
        assert connection.execute(sa.select(price_rollup_hourly).where(price_rollup_hourly.c.pair == "flat")).first() \
            is None
    assert_all_exact(stored)


def test_prices_set_replaces_one_price_exactly(stored: sa.Engine, runner: CliRunner) -> None:
    at = max(s[2] for s in KRAKEN if s[1] == "huge")
    result = runner.invoke(app, ["prices", "set", "huge", "--at", at.isoformat(), "--price", "1000000000.75"])
    assert result.exit_code == 0, result.stderr
    assert ("kraken", "huge", at, 1000000000.75) in raw_samples(stored)
    new_time = T - timedelta(minutes=90)
    assert runner.invoke(app, ["prices", "set", "huge", "--at", new_time.isoformat(), "--price", "999999999"]) \
        .exit_code == 0
    assert_all_exact(stored)
    for bad in (["--price", "0"], ["--price", "1e13"], ["--price", "nan"]):
        outcome = runner.invoke(app, ["prices", "set", "huge", "--at", at.isoformat(), *bad])
        assert outcome.exit_code == 2, (bad, outcome.stderr)
    future = datetime.now(UTC) + timedelta(days=1)
    assert runner.invoke(app, ["prices", "set", "huge", "--at", future.isoformat(), "--price", "1"]).exit_code == 2


def test_check_finds_and_repairs_any_drift(stored: sa.Engine, runner: CliRunner) -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.stderr
    assert "every rollup and markets row agrees" in result.stderr
    with stored.begin() as connection:  # drift the way a data-only restore or disabled triggers leave it
        connection.execute(sa.text("UPDATE price_rollup_hourly SET samples = samples * 2, m2 = m2 * 2 "
                                   "WHERE pair = 'rand1'"))
        connection.execute(sa.text("DELETE FROM price_rollup_daily WHERE pair = 'tiny'"))
        connection.execute(sa.text("UPDATE price_rollup_quarterly SET max_price = max_price + 1 WHERE pair = 'tiny'"))
        connection.execute(sa.text("UPDATE price_rollup_two_hourly SET min_price = min_price - 1 WHERE pair = 'tiny'"))
        connection.execute(sa.text("UPDATE markets SET last_price = 1 WHERE pair = 'huge'"))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    hourly = len({(p, ts.replace(minute=0, second=0, microsecond=0)) for _, p, ts, _ in KRAKEN if p == "rand1"})
    tiny_days = len({ts.date() for _, p, ts, _ in KRAKEN if p == "tiny"})
    tiny_quarters = len({(ts.date(), ts.hour // 6) for _, p, ts, _ in KRAKEN if p == "tiny"})
    tiny_blocks = len({(ts.date(), ts.hour // 2) for _, p, ts, _ in KRAKEN if p == "tiny"})
    assert (f"{hourly:,} hourly, {tiny_blocks:,} two-hour, {tiny_quarters:,} quarter-day and {tiny_days:,} daily "
            f"rollup row{'' if tiny_days == 1 else 's'} and 1 markets row disagree") in result.stderr
    with stored.begin() as connection:  # one market's check (an import's) sees that market's drift only
        assert rollups.verify(connection, ("kraken", "tiny")) == rollups.Mismatches(0, tiny_blocks, tiny_quarters,
                                                                                    tiny_days, 0)
        assert rollups.verify(connection, ("kraken", "rand1")).hourly == hourly
        assert rollups.verify(connection, ("kraken", "huge")) == rollups.Mismatches(0, 0, 0, 0, 1)
        assert rollups.verify(connection, ("kraken", "flat")).total == 0
    assert runner.invoke(app, ["check", "--repair"]).exit_code == 0
    assert runner.invoke(app, ["check"]).exit_code == 0
    with stored.begin() as connection:
        metrics.compute(connection, T)
    assert_all_exact(stored)


def test_compute_refuses_as_of_times_that_need_pruned_rows(stored: sa.Engine, runner: CliRunner) -> None:
    with stored.begin() as connection:
        prune(connection, T - timedelta(days=8))
    mark = (T - timedelta(days=8)).replace(hour=0, minute=0, second=0, microsecond=0)
    earliest = mark + timedelta(days=7)
    before = stored_metrics(stored, T)
    result = runner.invoke(app, ["compute", "--as-of", (earliest - timedelta(seconds=1)).isoformat()])
    assert result.exit_code == 2
    assert f"the earliest exact as-of time is {earliest.isoformat().replace('+00:00', 'Z')}" in result.stderr
    assert runner.invoke(app, ["compute", "--as-of", T.isoformat()]).exit_code == 0
    after = stored_metrics(stored, T)
    assert after == {m: {**row, "computed_at": after[m]["computed_at"]} for m, row in before.items()}
    assert_metrics_match(after, reference_metrics(KRAKEN, T))  # the pruned rows still count through the rollups
    # a sample below the pruned history is refused: it could never be deleted again
    with pytest.raises(sa.exc.DBAPIError, match="pruned history"), stored.begin() as connection:
        connection.execute(raw_prices.insert().values(exchange="kraken", pair="flat", timestamp=mark - timedelta(1),
                                                      price=1.0, kind="ticker", fetched_at=T))


def test_samples_and_as_of_times_later_than_now_are_refused(stored: sa.Engine, runner: CliRunner) -> None:
    future = datetime.now(UTC) + timedelta(minutes=10)
    with pytest.raises(sa.exc.DBAPIError, match="later than now"), stored.begin() as connection:
        connection.execute(raw_prices.insert().values(exchange="kraken", pair="flat", timestamp=future, price=1.0,
                                                      kind="ticker", fetched_at=future))
    result = runner.invoke(app, ["compute", "--as-of", "2030-01-01"])
    assert result.exit_code == 2
    assert "is later than now" in result.stderr


@pytest.mark.parametrize("text", ["2025-11-31 10:00:00.000000", "2025-02-29 10:00:00.000000",
                                  "2025-11-30 24:00:00.000000", "2025-11-30 23:60:00.000000"])
def test_impossible_timestamps_are_refused(migrated_engine: sa.Engine, text: str) -> None:
    if migrated_engine.dialect.name == "postgresql" and " 24:" in text:  # ISO 8601's end of day: a real instant
        with migrated_engine.begin() as connection:
            connection.execute(sa.text(f"INSERT INTO {RAW_TABLE} VALUES ('kraken', 'btceur', :ts, 1.0, NULL, "
                                       "'ticker', :ts)"), {"ts": text.replace(" ", "T") + "Z"})
            stored = connection.execute(sa.select(raw_prices.c.timestamp)).scalar_one()
        assert stored == datetime(2025, 12, 1, tzinfo=UTC)
        return
    value = text if migrated_engine.dialect.name == "sqlite" else text.replace(" ", "T") + "Z"
    with pytest.raises(sa.exc.DBAPIError), migrated_engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO raw_crypto_pair_price_history VALUES "
                                   "('kraken', 'btceur', :ts, 1.0, NULL, 'ticker', :ts)"), {"ts": value})


def test_real_instants_at_the_edges_are_accepted(migrated_engine: sa.Engine) -> None:
    with migrated_engine.begin() as connection:
        connection.execute(raw_prices.insert(), [
            {"exchange": "kraken", "pair": "btceur", "timestamp": ts, "price": 1.0, "kind": "ticker", "fetched_at": ts}
            for ts in (datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC), datetime(2025, 12, 31, 23, 59, 59,
                                                                                     999999, tzinfo=UTC))])


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_inserts_work_from_a_session_with_an_empty_search_path(stored: sa.Engine) -> None:
    with stored.begin() as connection:
        connection.execute(sa.text("SET LOCAL search_path = ''"))
        connection.execute(sa.text(
            "INSERT INTO public.raw_crypto_pair_price_history VALUES "
            "('kraken', 'flat', :ts, 3.3, NULL, 'ticker', :ts)"), {"ts": T - timedelta(minutes=30)})
    with stored.begin() as connection:
        metrics.compute(connection, T)
    assert_all_exact(stored)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_data_only_restore_is_found_by_check_and_repaired(stored: sa.Engine, db_url: str, runner: CliRunner,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_dump --data-only | psql replays the raw rows through the insert trigger on top of the restored
    rollups: check finds every doubled bucket, --repair makes them exact again."""
    import shutil
    import subprocess

    from mcdata.db import make_engine
    from mcdata.migrations import upgrade

    assert shutil.which("pg_dump") and shutil.which("psql")
    source = sa.make_url(db_url)
    target = source.set(database=f"{source.database}_restored")
    plain = {"host": source.host or "127.0.0.1", "port": str(source.port or 5432), "user": source.username or "root"}
    admin = sa.create_engine(source.set(drivername="postgresql+psycopg", database="postgres"),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{target.database}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    restored_url = target.render_as_string(hide_password=False)
    try:
        engine = make_engine(restored_url)
        upgrade(engine)
        dump = subprocess.run(["pg_dump", "--data-only", "--exclude-table=alembic_version", "-h", plain["host"],
                               "-p", plain["port"], "-U", plain["user"], str(source.database)],
                              check=True, capture_output=True, text=True).stdout
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", plain["host"], "-p", plain["port"],
                        "-U", plain["user"], str(target.database)], input=dump, check=True, capture_output=True,
                       text=True)
        assert sorted(raw_samples(engine)) == sorted(raw_samples(stored))  # every raw row came back
        monkeypatch.setenv("MCDATA_DATABASE_URL", restored_url)
        result = runner.invoke(app, ["check"])
        assert result.exit_code == 1 and "disagree with the raw prices" in result.stderr
        assert runner.invoke(app, ["check", "--repair"]).exit_code == 0
        with engine.begin() as connection:
            metrics.compute(connection, T)
        assert_all_exact(engine)
        engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        admin.dispose()


def test_a_future_snapshot_does_not_hide_the_real_metrics_and_can_be_deleted(stored: sa.Engine,
                                                                              runner: CliRunner) -> None:
    """A snapshot stored for 2030 (by an older mcdata, or by hand) is neither shown nor in the way."""
    future = datetime(2030, 1, 1, tzinfo=UTC)
    with stored.begin() as connection:
        metrics.compute(connection, T)
        connection.execute(sa.text("INSERT INTO crypto_pair_metrics SELECT :future, exchange, pair, latest_price, "
                                   "latest_at, weekly_average, min_price, max_price, stddev_24h, std_rank, "
                                   "volatility_24h, volatility_rank, change_24h_pct, samples_24h, samples_7d, "
                                   "computed_at FROM crypto_pair_metrics WHERE timestamp = :t"),
                           {"future": future if stored.dialect.name == "postgresql" else "2030-01-01 00:00:00.000000",
                            "t": T if stored.dialect.name == "postgresql" else
                            T.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")})
    import json

    shown = runner.invoke(app, ["show", "json"])
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["as_of"] == T.isoformat().replace("+00:00", "Z")
    pair = runner.invoke(app, ["show", "flat", "json"])
    assert json.loads(pair.stdout)["as_of"] == T.isoformat().replace("+00:00", "Z")
    deleted = runner.invoke(app, ["compute", "--delete", "--as-of", "2030-01-01"])
    assert deleted.exit_code == 0, deleted.stderr
    pairs = len(stored_metrics(stored, T))
    assert f"metrics of {pairs} pairs as of 2030-01-01T00:00:00Z deleted" in deleted.stderr
    assert stored_metrics(stored, future) == {}
    assert runner.invoke(app, ["compute", "--delete", "--as-of", "2030-01-01"]).exit_code == 1
    assert runner.invoke(app, ["compute", "--delete"]).exit_code == 2
