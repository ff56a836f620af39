"""Alembic, driven from code: no dependency on the working directory or on alembic.ini."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mcdata.db import connect, display_url, writer_lock
from mcdata.errors import NotMigratedError
from mcdata.schema import metadata
from mcdata.wording import plural

log = logging.getLogger("mcdata")

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory


def script_location() -> Path:
    """`mcdata/alembic` inside an installed wheel; the checkout's `alembic/` in an editable install."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / "alembic", package_dir.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(f"Alembic scripts not found beside {package_dir}")


def alembic_config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


# The newest revision in alembic/versions, written down so that every command's head check needs neither
# alembic (a tenth of a second to import) nor the compiled scripts; tests/test_migrations.py keeps it
# equal to the scripts' head.
HEAD_REVISION = "0013"
VERSION_TABLE = sa.table("alembic_version", sa.column("version_num", sa.String()))


def head_revision() -> str:
    return HEAD_REVISION


def scripts_head() -> str | None:
    """The head revision of the migration scripts themselves (alembic reads them)."""
    return _scripts().get_current_head()


def current_revision(connection: sa.Connection) -> str | None:
    """The revision alembic recorded (None: no version table, or no row in it), read without alembic."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    revisions = connection.execute(sa.select(VERSION_TABLE.c.version_num)).scalars().all()
    return revisions[0] if len(revisions) == 1 else None


def is_empty(connection: sa.Connection) -> bool:
    """No mcdata table and no alembic_version: a brand-new database."""
    names = set(sa.inspect(connection).get_table_names())
    return not names & (set(metadata.tables) | {"alembic_version"})


def upgrade(engine: Engine, revision: str = "head", *, locked: bool = False) -> tuple[str | None, str | None]:
    """Upgrade under the writer lock (`locked`: the caller holds it); returns (before, after)."""
    if not locked:
        with writer_lock(engine):
            return upgrade(engine, revision, locked=True)
    from alembic import command

    with connect(engine) as connection:
        before = current_revision(connection)
        connection.rollback()
        with connection.begin():
            command.upgrade(alembic_config(connection), revision)
            if current_revision(connection) == head_revision():
                _rebuild_after_quarantine(connection)
        after = current_revision(connection)
        connection.rollback()
    return before, after


def _rebuild_after_quarantine(connection: sa.Connection) -> None:
    """Rows that migration 0004 moved to the quarantine still count in the rollups and the markets list
    that were built with them: rebuild those once, at the head revision (whose rollup code this is)."""
    from mcdata import rollups
    from mcdata.schema import raw_price_quarantine as quarantine

    moved = connection.execute(sa.select(quarantine.c.id).where(quarantine.c.rollups_rebuilt.is_(False))).all()
    if not moved:
        return
    log.warning("warning: %s that today's checks refuse moved to raw_price_quarantine; "
                "rebuilding the rollups without them", plural(len(moved), "raw price row"))
    rollups.rebuild(connection)
    connection.execute(quarantine.update().values(rollups_rebuilt=True))


def require_head(connection: sa.Connection) -> None:
    """Refuse to work on a database that is not at the newest schema (exit 4)."""
    current = current_revision(connection)
    head = head_revision()
    if current != head:
        where = display_url(connection.engine.url)
        if current is None and is_empty(connection):
            raise NotMigratedError(f"the database {where} has no mcdata tables yet",
                                   "run `mcdata run` (fetches too) or `mcdata migrate` first")
        if current is None:
            raise NotMigratedError(f"the database {where} has tables but no mcdata schema version",
                                   "run `mcdata migrate`")
        raise NotMigratedError(f"the database {where} is at revision {current}, not {head}",
                               "run `mcdata migrate` first")
