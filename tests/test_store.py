"""The bulk store path: new rows, rows stored already, duplicates in a batch, bad rows; the rollups it feeds."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from mcdata.schema import markets, metrics, price_rollup_daily, price_rollup_hourly, raw_prices
from mcdata.store import PriceRow, insert_prices, metric_history

START = datetime(2026, 11, 20, 22, 50, tzinfo=UTC)


def rows(pair: str, minutes: range, level: float = 100.0) -> list[PriceRow]:
    return [PriceRow("kraken", pair, START + timedelta(minutes=m), level + (m * 37 % 11) / 4, None, "candle", START)
            for m in minutes]


def stored(engine: sa.Engine) -> list[tuple[str, datetime, float]]:
    query = sa.select(raw_prices.c.pair, raw_prices.c.timestamp, raw_prices.c.price).order_by("pair", "timestamp")
    with engine.connect() as connection:
        return [(r.pair, r.timestamp, r.price) for r in connection.execute(query)]


def assert_rollups_match_the_raw_rows(engine: sa.Engine,
                                      ever_stored: list[tuple[str, datetime, float]] | None = None) -> None:
    """Every hourly and daily rollup equals its bucket's raw rows: count, mean, M2, min, max, first, last.
    `ever_stored`: (pair, time, price) of every row ever stored, pruned ones too (the rollups keep them)."""
    with engine.connect() as connection:
        raw = ever_stored if ever_stored is not None else connection.execute(
            sa.select(raw_prices.c.pair, raw_prices.c.timestamp, raw_prices.c.price)).all()
        hour = {"minute": 0, "second": 0, "microsecond": 0}
        for table, bucket, floor in ((price_rollup_hourly, "hour", lambda t: t.replace(**hour)),
                                     (price_rollup_daily, "day", lambda t: t.replace(hour=0, **hour))):
            buckets: dict[tuple[str, datetime], list[tuple[datetime, float]]] = defaultdict(list)
            for pair, ts, price in raw:
                buckets[(pair, floor(ts))].append((ts, price))
            rolled = {(r["pair"], r[bucket]): r for r in connection.execute(sa.select(table)).mappings()}
            assert set(rolled) == set(buckets), table
            for key, points in buckets.items():
                prices = [price for _, price in sorted(points)]
                mean = math.fsum(prices) / len(prices)
                row = rolled[key]
                assert row["samples"] == len(prices)
                assert row["ref_price"] + row["mean_offset"] == pytest.approx(mean, rel=1e-13)
                assert row["m2"] == pytest.approx(math.fsum((p - mean) ** 2 for p in prices), rel=1e-9, abs=1e-9)
                assert (row["min_price"], row["max_price"]) == (min(prices), max(prices))
                assert (row["first_price"], row["last_price"]) == (prices[0], prices[-1])


def test_new_rows_then_a_batch_that_overlaps_what_is_stored(migrated_engine: sa.Engine) -> None:
    with migrated_engine.begin() as connection:
        assert insert_prices(connection, rows("btceur", range(0, 120)) + rows("etheur", range(0, 60), 2.0)) == 180
    overlapping = rows("btceur", range(100, 200)) + rows("btceur", range(150, 160)) + rows("xrpeur", range(5), 0.5)
    with migrated_engine.begin() as connection:
        assert insert_prices(connection, overlapping) == 80 + 5  # 100..119 stored, 150..159 twice in the batch
    assert len(stored(migrated_engine)) == 200 + 60 + 5
    assert_rollups_match_the_raw_rows(migrated_engine)
    with migrated_engine.connect() as connection:
        newest = {row.pair: row.last_at for row in connection.execute(sa.select(markets))}
    assert newest["btceur"] == START + timedelta(minutes=199)


def test_batches_in_any_order_merge_into_the_same_rollups(migrated_engine: sa.Engine) -> None:
    everything = rows("btceur", range(0, 1500, 7), 24000.0)
    for batch in (everything[2::3], everything[0::3], everything[1::3]):  # later samples first: anchors differ
        with migrated_engine.begin() as connection:
            insert_prices(connection, batch)
    assert len(stored(migrated_engine)) == len(everything)
    assert_rollups_match_the_raw_rows(migrated_engine)


def test_a_bad_row_writes_nothing(migrated_engine: sa.Engine) -> None:
    bad = rows("btceur", range(0, 50))
    bad[25] = PriceRow("kraken", "btceur", START + timedelta(minutes=25), float("nan"), None, "candle", START)
    with pytest.raises(sa.exc.IntegrityError), migrated_engine.begin() as connection:
        insert_prices(connection, bad)
    assert stored(migrated_engine) == []
    with migrated_engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM price_rollup_hourly")).scalar_one() == 0


def test_a_pairs_history_skips_the_snapshots_without_it(migrated_engine: sa.Engine) -> None:
    """metric_history walks the snapshots from the newest: a pair missing from the newest ones (delisted,
    or in another venue) still gets its older rows, newest first, none later than `now`."""
    snapshots = [START + timedelta(hours=h) for h in range(5)]
    present = {("kraken", "btceur"): snapshots, ("kraken", "ltceur"): snapshots[:2] + snapshots[3:4],
               ("binance", "ltceur"): snapshots}
    with migrated_engine.begin() as connection:
        connection.execute(metrics.insert(), [
            {"timestamp": at, "exchange": exchange, "pair": pair, "latest_price": 100.0 + hour, "latest_at": at,
             "samples_24h": 1, "samples_7d": 1, "computed_at": at}
            for (exchange, pair), times in present.items() for hour, at in enumerate(times)])
    with migrated_engine.connect() as connection:
        def history(exchange: str, pair: str, limit: int, now: datetime) -> list[datetime]:
            return [row["timestamp"] for row in metric_history(connection, exchange, pair, limit, now)]

        assert history("kraken", "ltceur", 10, snapshots[-1]) == [snapshots[3], snapshots[1], snapshots[0]]
        assert history("kraken", "ltceur", 2, snapshots[2]) == [snapshots[1], snapshots[0]]
        assert history("kraken", "btceur", 2, snapshots[-1]) == [snapshots[4], snapshots[3]]
        assert history("kraken", "btceur", 10, START - timedelta(seconds=1)) == []
        assert history("kraken", "ethbtc", 10, snapshots[-1]) == []
        newest = metric_history(connection, "binance", "ltceur", 1, snapshots[-1])
        assert [row["latest_price"] for row in newest] == [104.0]
