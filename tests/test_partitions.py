"""Issue 27, time partitions: on PostgreSQL the raw table and the candles are partitioned by UTC month
(mcdata.partitions, migrations 0012 and 0013); an existing table upgrades without losing or changing a
row, writes aimed at a partition meet the table's guards and rollups, and prune drops whole months.
SQLite keeps one table each."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mcdata import partitions, rollups, store
from mcdata.db import make_engine
from mcdata.migrations import upgrade
from mcdata.schema import candles, raw_prices
from mcdata.triggers import RAW
from tests.conftest import _create_database, _drop_database
from tests.fake_exchange import FakeExchange

NOW = datetime.now(UTC).replace(microsecond=0)


def rows_at(times: list[datetime], pair: str = "btceur") -> list[store.PriceRow]:
    return [store.PriceRow("kraken", pair, t, 100 + i / 7, 1.5 if i % 2 else None, "candle" if i % 3 else "ticker",
                           NOW) for i, t in enumerate(times)]


def candles_at(times: list[datetime]) -> list[store.CandleRow]:
    return [store.CandleRow("kraken", "btceur", 3600, t.replace(minute=0, second=0) - timedelta(hours=1),
                            100.0 + i, 101.5 + i, 99.25 + i, 100.5 + i, None if i % 2 else 100.2 + i, 2.5, i, NOW)
            for i, t in enumerate(times)]


def every_row(engine: sa.Engine, table: sa.Table = raw_prices) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(sa.select(table).order_by(*table.primary_key.columns))]


def partition_names(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        return set(partitions.monthly(connection).values()) | (
            {partitions.DEFAULT} if partitions.DEFAULT in sa.inspect(connection).get_table_names() else set())


TIMES = [NOW - timedelta(days=d, hours=h) for d in range(0, 130, 5) for h in (0, 7)]


def test_an_existing_table_upgrades_without_losing_a_row(engine: sa.Engine) -> None:
    upgrade(engine, "0011")
    with engine.begin() as connection:
        store.insert_prices(connection, rows_at(TIMES) + rows_at(TIMES[::3], "etheur"))
        store.insert_candles(connection, candles_at(TIMES))
    before, candles_before = every_row(engine), every_row(engine, candles)
    upgrade(engine)
    assert every_row(engine) == before  # every row, every column, as it was
    assert every_row(engine, candles) == candles_before and len(candles_before) == len(TIMES)
    with engine.connect() as connection:
        assert rollups.verify(connection).total == 0  # the rollups were not merged twice
    if engine.dialect.name != "postgresql":
        assert partition_names(engine) == set()  # SQLite: one table
        return
    months = {partitions.name_of(partitions.month_start(t)) for t in TIMES}
    assert months | {partitions.DEFAULT} <= partition_names(engine)
    with engine.connect() as connection:
        held = dict(connection.execute(sa.text(
            f"SELECT tableoid::regclass::text, count(*) FROM {RAW} GROUP BY 1")).all())
    assert sum(held.values()) == len(before) and partitions.DEFAULT not in held  # each row in its month
    with engine.connect() as connection:
        assert len(partitions.monthly(connection, partitions.CANDLES)) >= 5  # candles by their open time


@pytest.fixture
def partitioned(postgres_admin: sa.Engine, migrated_postgres: str) -> Iterator[sa.Engine]:
    """A PostgreSQL database at head (partitions are PostgreSQL's; SQLite's one table is checked above)
    with rows over four months."""
    name = f"mcdata_partitions_{secrets.token_hex(4)}"
    engine = make_engine(_create_database(postgres_admin, name, migrated_postgres))
    with engine.begin() as connection:
        partitions.ensure(connection, TIMES)  # each month its partition, as an upgraded table has them
        store.insert_prices(connection, rows_at(TIMES))
        store.insert_candles(connection, candles_at(TIMES[:3]))
    yield engine
    engine.dispose()
    _drop_database(postgres_admin, name)


def test_writes_aimed_at_a_partition_meet_the_tables_guards_and_rollups(partitioned: sa.Engine) -> None:
    name = partitions.name_of(partitions.month_start(NOW))
    candle_month = partitions.CANDLES.name_of(partitions.month_start(NOW))
    for statement in (f"UPDATE {name} SET price = price * 2", f"DELETE FROM {name}", f"TRUNCATE {name}",
                      f"UPDATE {candle_month} SET close = close", f"DELETE FROM {candle_month}",
                      f"TRUNCATE {candle_month}"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), partitioned.begin() as connection:
            connection.execute(sa.text(statement))
    with partitioned.begin() as connection:  # an insert into the partition itself is merged into the rollups
        connection.execute(sa.text(f"INSERT INTO {name} (exchange, pair, timestamp, price, kind, fetched_at) "
                                   "VALUES ('kraken', 'solusd', :t, 21.5, 'ticker', :t)"),
                           {"t": partitions.month_start(NOW) + timedelta(minutes=1)})
    with partitioned.connect() as connection:
        assert rollups.verify(connection).total == 0
        assert connection.execute(sa.text("SELECT samples FROM markets JOIN price_rollup_daily USING (exchange, pair) "
                                          "WHERE pair = 'solusd'")).scalar_one() == 1


def test_prune_drops_whole_months_and_deletes_the_rest(partitioned: sa.Engine) -> None:
    cut = NOW - timedelta(days=45)
    expected = [r for r in every_row(partitioned) if r[2] >= cut.replace(hour=0, minute=0, second=0)]
    old_months = {partitions.name_of(partitions.month_start(t)) for t in TIMES
                  if partitions.next_month(partitions.month_start(t)) <= cut.replace(hour=0, minute=0, second=0)}
    assert old_months and old_months <= partition_names(partitioned)
    with partitioned.begin() as connection:
        removed = store.prune(connection, cut)
    assert removed == len(TIMES) - len(expected)
    assert every_row(partitioned) == expected
    assert not old_months & partition_names(partitioned)  # dropped, not emptied row by row
    with partitioned.connect() as connection:
        assert rollups.verify(connection).total == 0


def test_months_ahead_are_made_and_a_month_the_default_holds_is_left(partitioned: sa.Engine) -> None:
    far = partitions.month_start(NOW + timedelta(days=200))
    with partitioned.begin() as connection:
        made = partitions.ensure_ahead(connection, far)
    assert partitions.name_of(far) in made and len(made) == 2 * (2 + partitions.MONTHS_AHEAD)  # both tables
    long_ago = datetime(2013, 9, 10, tzinfo=UTC)  # older than every partition: the default holds it
    in_default = f"SELECT count(*) FROM {partitions.DEFAULT}"
    with partitioned.begin() as connection:
        before = connection.execute(sa.text(in_default)).scalar_one()
        store.insert_prices(connection, rows_at([long_ago], "xbteur"))
        assert partitions.ensure(connection, [long_ago]) == []  # its rows are the default's: left there
        assert connection.execute(sa.text(in_default)).scalar_one() == before + 1
        assert partitions.name_of(partitions.month_start(long_ago)) not in partitions.monthly(connection).values()


def test_a_reader_holding_a_table_does_not_wedge_a_job(partitioned: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new partition locks its table; a long export reading candles meanwhile must cost a job seconds,
    not its run: the job gives up on the partition with a warning and the next one makes it."""
    from typer.testing import CliRunner

    from mcdata.cli import app

    ahead = partitions.next_month(partitions.next_month(partitions.month_start(NOW)))
    with partitioned.begin() as connection:  # as if the months ahead had not been made yet
        connection.execute(sa.text(f"DROP TABLE {partitions.CANDLES.name_of(ahead)}"))
    url = partitioned.url.render_as_string(hide_password=False)
    monkeypatch.setenv("MCDATA_DATABASE_URL", url)
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=60s")  # were the job's own bound gone: a failure, not a hang
    reader = partitioned.connect()
    reader.execute(sa.text("SELECT count(*) FROM candles"))  # an export's cursor: its lock lasts the transaction
    started = time.monotonic()
    try:
        result = CliRunner().invoke(app, ["compute"])
        waited = time.monotonic() - started
    finally:
        reader.rollback()
        reader.close()
    assert result.exit_code == 0, result.stderr
    assert "the coming months' partitions were not created" in result.stderr
    assert waited < 30  # partitions.LOCK_WAIT (2 s), not the minute the session would wait
    assert CliRunner().invoke(app, ["compute"]).exit_code == 0  # no reader now: the next job makes it
    with partitioned.connect() as connection:
        assert partitions.CANDLES.name_of(ahead) in partitions.monthly(connection, partitions.CANDLES).values()


def test_the_hourly_run_makes_the_coming_months(partitioned: sa.Engine, fake_exchange: FakeExchange,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mcdata run` is all cron calls: it makes the months ahead as every other job does, or the month
    after them would fill the default partition and never get its own (nor be dropped whole by prune)."""
    from typer.testing import CliRunner

    from mcdata.cli import app

    ahead = partitions.next_month(partitions.next_month(partitions.month_start(NOW)))
    with partitioned.begin() as connection:  # as if the months ahead had not been made yet
        for spec in partitions.TABLES:
            connection.execute(sa.text(f"DROP TABLE {spec.name_of(ahead)}"))
    monkeypatch.setenv("MCDATA_DATABASE_URL", partitioned.url.render_as_string(hide_password=False))
    monkeypatch.setenv("MCDATA_API_URL", fake_exchange.url)
    monkeypatch.setenv("MCDATA_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["run", "--pairs", "btceur", "--backfill", "0"])
    assert result.exit_code == 0, result.stderr
    with partitioned.connect() as connection:
        for spec in partitions.TABLES:
            assert spec.name_of(ahead) in partitions.monthly(connection, spec).values()


def test_history_gets_every_month_from_the_floor_on(partitioned: sa.Engine) -> None:
    """A job about to write history asks for its months: every one from HISTORY_FLOOR (a timestamp of 0
    asks for 1970) to the months ahead, but for one whose rows the default partition holds already."""
    held = datetime(2015, 6, 10, tzinfo=UTC)
    with partitioned.begin() as connection:
        store.insert_prices(connection, rows_at([held], "xbteur"))  # no June 2015 yet: the default holds it
        partitions.ensure_ahead(connection, NOW, since=datetime(1970, 1, 1, tzinfo=UTC))
        for spec in partitions.TABLES:
            months = sorted(partitions.monthly(connection, spec))
            expected, month = [], partitions.HISTORY_FLOOR
            while month <= months[-1]:
                expected.append(month)
                month = partitions.next_month(month)
            missing = [partitions.month_start(held)] if spec is partitions.RAW_PRICES else []
            assert sorted(set(expected) - set(months)) == missing, spec.table
            assert months[-1] > NOW  # and the months ahead
