"""Metrics computed in SQL equal an independent Python reference on edge-case data, on both databases."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcdata import metrics
from mcdata.schema import metadata, raw_price_edits
from mcdata.schema import metrics as metrics_table
from mcdata.store import PriceRow, insert_prices, prune
from tests.helpers import EXACT, FLOATS, assert_metrics_match, stored_metrics
from tests.reference import Sample, reference_metrics

T = datetime(2026, 11, 20, 12, 34, 56, 789000, tzinfo=UTC)


def edge_case_samples() -> list[Sample]:
    week, day, s = timedelta(days=7), timedelta(hours=24), timedelta(seconds=1)
    samples: list[Sample] = [
        # window bounds: T-7d is out, T-24h is out of the day (and is the 24 h reference), T is in, after T ignored
        ("kraken", "edgea", T - week, 50.0), ("kraken", "edgea", T - week + timedelta(microseconds=1), 10.0),
        ("kraken", "edgea", T - day, 20.0), ("kraken", "edgea", T - day + s, 30.0), ("kraken", "edgea", T, 40.0),
        ("kraken", "edgea", T + s, 1000.0),
        # the same pair on another venue is another series
        ("bitstamp", "edgea", T - timedelta(hours=3), 41.0), ("bitstamp", "edgea", T - timedelta(hours=2), 39.0),
        # one sample in 24 h: no deviation, no rank
        ("kraken", "single", T - timedelta(days=3), 5.0), ("kraken", "single", T - timedelta(hours=1), 6.0),
        # nothing at or before T-24h: no 24 h change
        ("kraken", "nobefore", T - timedelta(hours=20), 7.0), ("kraken", "nobefore", T - timedelta(hours=10), 7.5),
        ("kraken", "nobefore", T - timedelta(hours=1), 8.25),
        # constant prices: a deviation of exactly zero
        *[("kraken", "flat", T - timedelta(hours=h), 3.3) for h in (1, 5, 9, 13)],
        # large prices with small moves, and tiny prices
        *[("kraken", "huge", T - timedelta(hours=h), 1e9 + d) for h, d in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.3))],
        *[("kraken", "tiny", T - timedelta(hours=h), p) for h, p in ((1, 1.2e-8), (2, 1.1e-8), (30, 1.3e-8))],
        # only samples after T: no row; only samples older than the week: latest only
        ("kraken", "future", T + timedelta(hours=1), 9.0),
        ("kraken", "stale", T - timedelta(days=10), 11.0), ("kraken", "stale", T - timedelta(days=9), 12.0),
        # the newest sample at or before T older than the week, with later ones (a past as-of time): its
        # latest price comes from before the week (the hourly rollup, where the raw lookup stops at T - 7d)
        ("kraken", "stalelater", T - timedelta(days=10), 13.0), ("kraken", "stalelater", T - timedelta(days=9), 14.0),
        ("kraken", "stalelater", T + timedelta(minutes=20), 15.0),
        # the 24 h change's reference sample older than the week
        ("kraken", "oldref", T - timedelta(days=9, minutes=5), 16.0),
        ("kraken", "oldref", T - timedelta(hours=2), 17.0), ("kraken", "oldref", T - timedelta(hours=1), 17.5),
    ]
    # pairs with identical moves share a rank, even at another price level (tiec)
    for pair, level in (("tiea", 0.0), ("tieb", 0.0), ("tiec", 1000.0)):
        samples += [("kraken", pair, T - timedelta(hours=h), level + p) for h, p in ((2, 100.0), (4, 104.0), (6, 98.0))]
    rng = random.Random(7)
    for index in range(6):
        level = 10 ** rng.uniform(-4, 5)
        for _ in range(rng.randint(20, 300)):
            when = T - timedelta(seconds=rng.uniform(-3600, 9 * 86400))
            samples.append(("kraken", f"rand{index}", when, level * math.exp(rng.gauss(0, 0.05))))
    return samples


def store_samples(engine: sa.Engine, samples: list[Sample]) -> None:
    unique = {(e, p, ts): price for e, p, ts, price in samples}
    rows = [PriceRow(e, p, ts, price, None, "ticker", T) for (e, p, ts), price in unique.items()]
    with engine.begin() as connection:
        insert_prices(connection, rows)


def test_metrics_equal_the_reference_on_edge_cases(migrated_engine: sa.Engine) -> None:
    samples = edge_case_samples()
    store_samples(migrated_engine, samples)
    with migrated_engine.begin() as connection:
        count = metrics.compute(connection, T)
    expected = reference_metrics(samples, T)
    assert count == len(expected)
    actual = stored_metrics(migrated_engine, T)
    assert_metrics_match(actual, expected)
    # spot checks of the definitions themselves, independent of the reference
    edge = actual[("kraken", "edgea")]
    assert (edge["samples_7d"], edge["samples_24h"]) == (4, 2)
    assert edge["latest_price"] == 40.0 and edge["change_24h_pct"] == pytest.approx(100.0)
    assert edge["min_price"] == 10.0 and edge["max_price"] == 40.0
    assert actual[("kraken", "single")]["stddev_24h"] is None
    assert actual[("kraken", "single")]["std_rank"] is None
    assert actual[("kraken", "nobefore")]["change_24h_pct"] is None
    assert actual[("kraken", "flat")]["stddev_24h"] == 0.0
    assert actual[("kraken", "tiea")]["std_rank"] == actual[("kraken", "tieb")]["std_rank"] == \
        actual[("kraken", "tiec")]["std_rank"]
    assert actual[("kraken", "tiea")]["volatility_rank"] == actual[("kraken", "tieb")]["volatility_rank"]
    assert ("kraken", "future") not in actual
    stale = actual[("kraken", "stale")]
    assert (stale["latest_price"], stale["weekly_average"], stale["samples_7d"]) == (12.0, None, 0)
    ranks = sorted(r["std_rank"] for r in actual.values() if r["std_rank"] is not None)
    assert ranks[0] == 1


def test_recompute_for_the_same_as_of_replaces(migrated_engine: sa.Engine) -> None:
    samples = edge_case_samples()
    store_samples(migrated_engine, samples)
    later = T + timedelta(hours=1)
    with migrated_engine.begin() as connection:
        first = metrics.compute(connection, T)
        again = metrics.compute(connection, T)
        metrics.compute(connection, later)
    with migrated_engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(metrics_table)).scalar()
    assert first == again
    assert total == first + len(reference_metrics(samples, later))
    assert_metrics_match(stored_metrics(migrated_engine, later), reference_metrics(samples, later))


def test_the_original_documentation_query_works_verbatim(migrated_engine: sa.Engine) -> None:
    samples = [("kraken", "btceur", T - timedelta(hours=h), 24000.0 + h) for h in range(30)]
    store_samples(migrated_engine, samples)
    with migrated_engine.begin() as connection:
        metrics.compute(connection, T - timedelta(hours=2))
        metrics.compute(connection, T)
    query = ("select pair, min_price, std_rank from crypto_pair_metrics where pair = 'btceur' "
             "order by timestamp desc limit 1;")
    with migrated_engine.connect() as connection:
        row = connection.exec_driver_sql(query).one()
    expected = reference_metrics(samples, T)[("kraken", "btceur")]
    assert (row[0], row[1], row[2]) == ("btceur", expected["min_price"], 1)


prices = st.one_of(st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False),
                   st.sampled_from([1.0, 3.3, 1e7 - 0.5]))  # repeated prices: zero deviations, ties
offsets = st.one_of(st.integers(min_value=-7200, max_value=9 * 86400),  # seconds before the as-of time
                    st.sampled_from([0, 1, -1, 86399, 86400, 86401, 604799, 604800, 604801]))
snaps = st.sampled_from([None, "hour", "day"])  # move a sample to the start of its UTC hour or day


def snapped(moment: datetime, snap: str | None) -> datetime:
    if snap == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0) if snap == "hour" else moment


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(st.tuples(st.sampled_from(["aaa", "bbb", "ccc"]), offsets, prices, snaps),
                     min_size=1, max_size=60),
       shift=st.one_of(st.integers(min_value=0, max_value=86399), st.sampled_from([0, 3600, 86399])),
       batches=st.integers(min_value=1, max_value=4), seed=st.integers(min_value=0, max_value=1000))
def test_metrics_property(migrated_engine: sa.Engine, data: list[tuple[str, int, float, str | None]], shift: int,
                          batches: int, seed: int) -> None:
    """Irregular samples, some on hour and day boundaries, written in several batches in any order (the
    rollups merge them), and an as-of time anywhere in a day: the rollup query equals the reference and
    the raw-table query."""
    as_of = T.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(seconds=shift)
    samples = [("kraken", pair, snapped(as_of - timedelta(seconds=offset), snap), price)
               for pair, offset, price, snap in data]
    samples = list({(e, p, ts): (e, p, ts, v) for e, p, ts, v in samples}.values())
    random.Random(seed).shuffle(samples)
    with migrated_engine.begin() as connection:  # the raw table is append-only: wipe it as mcdata corrects
        connection.execute(raw_price_edits.insert().values(id=1, reason="test wipe"))
        for table in reversed(metadata.sorted_tables):
            if table is not raw_price_edits:
                connection.execute(table.delete())
        connection.execute(raw_price_edits.delete())
    for index in range(batches):
        store_samples(migrated_engine, samples[index::batches])
    with migrated_engine.begin() as connection:
        metrics.compute(connection, as_of)
    expected = reference_metrics(samples, as_of)
    assert_metrics_match(stored_metrics(migrated_engine, as_of), expected)
    with migrated_engine.begin() as connection:
        metrics.compute(connection, as_of, from_raw=True)
    assert_metrics_match(stored_metrics(migrated_engine, as_of), expected)


def test_dense_samples_at_every_kind_of_as_of_time(migrated_engine: sa.Engine) -> None:
    """Samples every 7 minutes for 9 days, stored in three interleaved batches: whole days, hours and raw
    edges all take part, and the as-of time falls inside an hour with later samples, on an hour, on a day."""
    rng = random.Random(7)
    start = T - timedelta(days=9)
    samples: list[Sample] = []
    for pair, level, move in (("walk", 100.0, 0.01), ("flat", 2.5, 0.0), ("heavy", 1e9, 1e-12)):
        price = level
        for step in range(9 * 24 * 60 // 7):
            price = price * math.exp(rng.gauss(0, move)) if move else price
            samples.append(("kraken", pair, start + timedelta(minutes=7 * step, seconds=step % 5), price))
    for batch in range(3):
        store_samples(migrated_engine, samples[batch::3])
    midnight = T.replace(hour=0, minute=0, second=0, microsecond=0)
    for as_of in (T, T.replace(minute=0, second=0, microsecond=0), midnight, midnight + timedelta(microseconds=1),
                  midnight - timedelta(minutes=3), T - timedelta(days=1, minutes=17)):
        with migrated_engine.begin() as connection:
            metrics.compute(connection, as_of)
        expected = reference_metrics(samples, as_of)
        assert_metrics_match(stored_metrics(migrated_engine, as_of), expected)
        assert expected[("kraken", "flat")]["stddev_24h"] == 0.0


def test_pruning_old_raw_rows_leaves_the_metrics_unchanged(migrated_engine: sa.Engine) -> None:
    samples = edge_case_samples()
    store_samples(migrated_engine, samples)
    with migrated_engine.begin() as connection:
        metrics.compute(connection, T)
    before = stored_metrics(migrated_engine, T)
    with migrated_engine.begin() as connection:
        assert prune(connection, T - timedelta(days=8)) > 0  # "stale" loses all its raw rows
        metrics.compute(connection, T)
    after = stored_metrics(migrated_engine, T)
    for market, row in before.items():
        for column in (*FLOATS, *EXACT):
            assert after[market][column] == row[column], (market, column)
