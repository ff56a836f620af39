"""Migrations: empty -> head on both databases, idempotent, one head, no drift."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from mcdata import migrations
from mcdata.schema import metadata


def test_empty_to_head_creates_every_table(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        assert migrations.is_empty(connection)
    before, after = migrations.upgrade(engine)
    assert (before, after) == (None, migrations.head_revision())
    with engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        assert tables == {"raw_crypto_pair_price_history", "crypto_pair_metrics", "runs", "alembic_version",
                          "price_rollup_hourly", "markets"}
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
        context = MigrationContext.configure(connection, opts={"compare_type": True})
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
