"""The schema on both databases: UTC round-trips and the price CHECK."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from mcdata.schema import raw_prices, runs


def price_row(price: float, ts: datetime, volume: float | None = None) -> dict[str, object]:
    return {"exchange": "kraken", "pair": "btceur", "timestamp": ts, "price": price, "volume": volume,
            "kind": "ticker", "fetched_at": ts}


def test_aware_datetimes_round_trip_as_the_same_utc_instant(migrated_engine: sa.Engine) -> None:
    plus_two = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    with migrated_engine.begin() as connection:
        connection.execute(raw_prices.insert(), price_row(100.0, plus_two))
    with migrated_engine.connect() as connection:
        stored = connection.execute(sa.select(raw_prices.c.timestamp, raw_prices.c.fetched_at)).one()
    assert stored.timestamp == plus_two
    assert stored.timestamp.utcoffset() == timedelta(0)
    assert stored.timestamp.hour == 23  # 01:30+02:00 is 23:30 UTC the day before
    assert stored.fetched_at.tzinfo is not None


def test_naive_datetimes_are_refused(migrated_engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), migrated_engine.begin() as connection:
        connection.execute(raw_prices.insert(), price_row(100.0, datetime(2026, 1, 1)))  # noqa: DTZ001


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), 0.0, -1.0])
def test_check_rejects_non_finite_and_non_positive_prices(migrated_engine: sa.Engine, bad: float) -> None:
    now = datetime.now(UTC)
    with pytest.raises(sa.exc.IntegrityError), migrated_engine.begin() as connection:
        connection.execute(raw_prices.insert(), price_row(bad, now))
    with migrated_engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(raw_prices)).scalar() == 0


@pytest.mark.parametrize(("price", "volume"), [(1.0, float("inf")), (1.0, 1e19), (5e-324, None), (1.7e308, None),
                                               (9.9e-13, None), (1.01e12, None)])
def test_check_refuses_prices_and_volumes_outside_the_band(migrated_engine: sa.Engine, price: float,
                                                           volume: float | None) -> None:
    now = datetime.now(UTC) - timedelta(days=1)
    with pytest.raises(sa.exc.IntegrityError, match="band"), migrated_engine.begin() as connection:
        connection.execute(raw_prices.insert(), price_row(price, now, volume=volume))


def test_check_accepts_the_edges_of_the_band(migrated_engine: sa.Engine) -> None:
    now = datetime.now(UTC) - timedelta(days=1)
    with migrated_engine.begin() as connection:
        connection.execute(raw_prices.insert(), [price_row(1e-12, now, volume=1e18),
                                                 price_row(1e12, now + timedelta(hours=1), volume=0.0)])
        assert connection.execute(sa.select(sa.func.count()).select_from(raw_prices)).scalar() == 2


def test_runs_ids_are_generated(migrated_engine: sa.Engine) -> None:
    now = datetime.now(UTC)
    with migrated_engine.begin() as connection:
        first = connection.execute(runs.insert().values(command="fetch", started_at=now, status="running")
                                   .returning(runs.c.id)).scalar_one()
        second = connection.execute(runs.insert().values(command="fetch", started_at=now, status="ok")
                                    .returning(runs.c.id)).scalar_one()
    assert second > first


def test_sqlite_refuses_timestamps_in_another_text_format(migrated_engine: sa.Engine) -> None:
    if migrated_engine.dialect.name != "sqlite":
        with migrated_engine.begin() as connection:  # PostgreSQL parses any ISO 8601 text itself
            connection.execute(sa.text("INSERT INTO raw_crypto_pair_price_history VALUES "
                                       "('kraken', 'btceur', '2026-11-24T12:00:00Z', 1.0, NULL, 'ticker', now())"))
            stored = connection.execute(sa.select(raw_prices.c.timestamp)).scalar_one()
        assert stored == datetime(2026, 11, 24, 12, tzinfo=UTC)
        return
    with pytest.raises(sa.exc.IntegrityError, match="timestamp_format"), migrated_engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO raw_crypto_pair_price_history VALUES "
                                   "('kraken', 'btceur', '2026-11-24T12:00:00Z', 1.0, NULL, 'ticker', "
                                   "'2026-11-24 12:00:00.000000')"))


def test_rows_inserted_by_hand_update_the_rollups(migrated_engine: sa.Engine) -> None:
    now = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
    with migrated_engine.begin() as connection:
        connection.execute(raw_prices.insert(), [price_row(p, now + timedelta(minutes=m))
                                                 for m, p in ((0, 10.0), (10, 12.0), (20, 14.0))])
        rollup = connection.execute(sa.text("SELECT samples, min_price, max_price, m2, first_price, last_price "
                                            "FROM price_rollup_hourly")).one()
        market = connection.execute(sa.text("SELECT last_price FROM markets")).scalar_one()
    assert tuple(rollup) == (3, 10.0, 14.0, pytest.approx(8.0), 10.0, 14.0)
    assert market == 14.0
