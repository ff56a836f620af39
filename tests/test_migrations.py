"""Migrations: empty -> head on both databases, idempotent, one head, no drift."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from mcdata import migrations
from mcdata.partitions import is_partition_name
from mcdata.schema import metadata


def test_empty_to_head_creates_every_table(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        assert migrations.is_empty(connection)
    before, after = migrations.upgrade(engine)
    assert (before, after) == (None, migrations.head_revision())
    with engine.connect() as connection:
        tables = {t for t in sa.inspect(connection).get_table_names() if not is_partition_name(t)}
        assert tables == {"raw_crypto_pair_price_history", "crypto_pair_metrics", "runs", "alembic_version",
                          "price_rollup_hourly", "price_rollup_two_hourly", "price_rollup_quarterly",
                          "price_rollup_daily", "markets", "retention", "raw_price_edits", "alert_state",
                          "alert_events", "delisted_markets", "raw_price_quarantine", "candles",
                          "venue_coverage"}
        migrations.require_head(connection)
        assert not migrations.is_empty(connection)


def test_second_upgrade_is_a_no_op(engine: sa.Engine) -> None:
    migrations.upgrade(engine)
    schema_before = describe(engine)
    assert migrations.upgrade(engine) == (migrations.head_revision(), migrations.head_revision())
    assert describe(engine) == schema_before


def describe(engine: sa.Engine) -> dict[str, list[tuple[str, str, bool]]]:
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        return {t: [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(t)]
                for t in inspector.get_table_names()}


def test_exactly_one_head() -> None:
    scripts = ScriptDirectory.from_config(migrations.alembic_config())
    assert len(scripts.get_heads()) == 1


def test_no_drift_between_schema_and_migrations(migrated_engine: sa.Engine) -> None:
    with migrated_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,  # the raw table's partitions are the table's (mcdata.partitions)
            "include_name": lambda name, kind, _parent: not (kind == "table" and is_partition_name(name))})
        assert compare_metadata(context, metadata) == []


def test_downgrade_to_base_and_back(migrated_engine: sa.Engine) -> None:
    migrations.upgrade(migrated_engine, "head")
    from alembic import command

    with migrated_engine.begin() as connection:
        command.downgrade(migrations.alembic_config(connection), "base")
    with migrated_engine.connect() as connection:
        assert set(sa.inspect(connection).get_table_names()) <= {"alembic_version"}
    migrations.upgrade(migrated_engine)
    with migrated_engine.connect() as connection:
        migrations.require_head(connection)


def test_daily_rollups_are_built_from_the_hourly_history(engine: sa.Engine) -> None:
    """Prices stored before revision 0003 (daily), 0006 (quarter-day) and 0008 (two-hour) are in those
    rollups after them,
    equal to what the raw rows say, and compute reads them."""
    from datetime import UTC, datetime, timedelta

    from mcdata import metrics, rollups
    from mcdata.schema import raw_prices
    from tests.reference import reference_metrics

    migrations.upgrade(engine, "0002")
    as_of = datetime(2026, 11, 20, 12, 34, 56, tzinfo=UTC)
    samples = [("kraken", pair, as_of - timedelta(minutes=37 * step), level + (step * 7919 % 113) / 10)
               for pair, level in (("btceur", 24000.0), ("etheur", 1.5)) for step in range(400)]
    with engine.begin() as connection:
        connection.execute(raw_prices.insert(), [
            {"exchange": e, "pair": p, "timestamp": ts, "price": v, "volume": None, "kind": "ticker", "fetched_at": ts}
            for e, p, ts, v in samples])
    migrations.upgrade(engine)
    with engine.begin() as connection:
        days = connection.execute(sa.text("SELECT pair, count(*), sum(samples), min(min_price), max(max_price) "
                                          "FROM price_rollup_daily GROUP BY pair ORDER BY pair")).all()
        assert rollups.verify(connection).total == 0
        for level in ("price_rollup_two_hourly", "price_rollup_quarterly"):
            assert connection.execute(sa.text(f"SELECT sum(samples) FROM {level}")).scalar_one() == 800
        metrics.compute(connection, as_of)
        stored = {row.pair: row for row in connection.execute(sa.text("SELECT * FROM crypto_pair_metrics"))}
    assert [tuple(day) for day in days] == [
        (pair, 11, 400, min(v for _, p, _, v in samples if p == pair), max(v for _, p, _, v in samples if p == pair))
        for pair in ("btceur", "etheur")]
    expected = reference_metrics(samples, as_of)
    for (_, pair), want in expected.items():
        assert stored[pair].samples_7d == want["samples_7d"]
        assert stored[pair].weekly_average == pytest.approx(want["weekly_average"], rel=1e-12)
        assert stored[pair].stddev_24h == pytest.approx(want["stddev_24h"], rel=1e-9)


def test_the_written_head_is_the_scripts_head() -> None:
    # every command checks the database against migrations.HEAD_REVISION without loading alembic: a new
    # migration must move it
    assert migrations.head_revision() == migrations.scripts_head()
