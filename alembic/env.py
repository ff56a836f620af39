"""Alembic environment: runs on the connection mcdata hands over, or on the URL from alembic.ini."""

from __future__ import annotations

from sqlalchemy import engine_from_config, pool

from alembic import context
from mcdata.partitions import is_partition_name
from mcdata.schema import metadata

config = context.config


def run_on(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # the raw table's monthly partitions belong to it (mcdata.partitions), not to the metadata
        include_name=lambda name, kind, _parent: not (kind == "table" and is_partition_name(name)),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:  # the plain `alembic` command line, for developers
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as connection:
        run_on(connection)
