"""What the migrations install at head equals what the code says: a schema built from `schema.metadata`
and `mcdata.triggers` is compared with a database migrated to head, object by object (functions,
triggers, constraints with their CHECK text, indexes with PostgreSQL's INCLUDE, columns, comments).

compare_metadata (tests/test_migrations.py) sees tables and columns only; this sees the rest.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from mcdata import triggers
from mcdata.db import make_engine
from mcdata.schema import metadata

Catalog = dict[str, dict[str, object]]

POSTGRES_QUERIES = {
    "functions": """SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
                    WHERE p.pronamespace = CAST(:schema AS regnamespace)""",
    "triggers": """SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                   WHERE c.relnamespace = CAST(:schema AS regnamespace) AND NOT t.tgisinternal""",
    "constraints": """SELECT c.relname || '.' || k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k
                      JOIN pg_class c ON c.oid = k.conrelid WHERE c.relnamespace = CAST(:schema AS regnamespace)""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :schema",
    "storage": """SELECT relname, array_to_string(reloptions, ',') FROM pg_class
                  WHERE relnamespace = CAST(:schema AS regnamespace) AND reloptions IS NOT NULL""",
    "columns": """SELECT table_name || '.' || column_name,
                         concat_ws(' ', data_type, is_nullable, column_default, is_identity, identity_generation,
                                   col_description(CAST(quote_ident(table_schema) || '.' || quote_ident(table_name)
                                                        AS regclass), ordinal_position))
                  FROM information_schema.columns WHERE table_schema = :schema""",
}


def _postgres_catalog(connection: sa.Connection, schema: str) -> Catalog:
    def neutral(text: str) -> str:  # the schema's name appears in qualified names and the pinned search_path
        return re.sub(rf"\b{re.escape(schema)}\b", "<schema>", text)

    return {kind: {name: neutral(str(definition))
                   for name, definition in connection.execute(sa.text(query), {"schema": schema})
                   if not str(name).startswith("alembic_version")}
            for kind, query in POSTGRES_QUERIES.items()}


def _sqlite_catalog(connection: sa.Connection) -> Catalog:
    inspector = sa.inspect(connection)
    tables = [t for t in inspector.get_table_names() if t != "alembic_version"]
    objects = connection.execute(sa.text("SELECT type, name, sql FROM sqlite_master WHERE type IN "
                                         "('trigger', 'index') AND sql IS NOT NULL")).all()

    def spaced(text: str) -> str:
        return " ".join(text.split())

    return {
        "triggers": {name: sql.strip() for kind, name, sql in objects if kind == "trigger"},
        "indexes": {name: spaced(sql) for kind, name, sql in objects if kind == "index"},
        "checks": {f"{t}.{c['name']}": spaced(c["sqltext"])
                   for t in tables for c in inspector.get_check_constraints(t)},
        "keys": {t: inspector.get_pk_constraint(t)["constrained_columns"] for t in tables},
        "columns": {f"{t}.{c['name']}": (str(c["type"]), c["nullable"], c.get("default"))
                    for t in tables for c in inspector.get_columns(t)},
    }


def _built_from_code(connection: sa.Connection) -> None:
    metadata.create_all(connection)
    triggers.install(connection)


def test_head_installs_exactly_what_the_code_defines(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    if migrated_engine.dialect.name == "postgresql":
        with migrated_engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA IF EXISTS from_code CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA from_code"))
            connection.execute(sa.text("SET LOCAL search_path TO from_code"))
            _built_from_code(connection)
            connection.execute(sa.text("SET LOCAL search_path TO pg_catalog"))  # every name comes qualified
            migrated = _postgres_catalog(connection, "public")
            from_code = _postgres_catalog(connection, "from_code")
            connection.execute(sa.text("DROP SCHEMA from_code CASCADE"))
        assert migrated["functions"]["mcdata_rollup_inserted"].count("SET search_path TO") == 1
    else:
        code_engine = make_engine(f"sqlite:///{tmp_path / 'from_code.db'}")
        with code_engine.begin() as connection:
            _built_from_code(connection)
            from_code = _sqlite_catalog(connection)
        code_engine.dispose()
        with migrated_engine.connect() as connection:
            migrated = _sqlite_catalog(connection)
    for kind in from_code:
        assert migrated[kind].keys() == from_code[kind].keys(), kind
        for name, definition in from_code[kind].items():
            assert migrated[kind][name] == definition, f"{kind} {name} differs between head and the code"
    candle_guards = [name for name in from_code["triggers"] if name.startswith("candles_guard")]
    assert len(from_code["triggers"]) - len(candle_guards) == 4  # the rollup and the three guards of the raw table
    assert len(candle_guards) >= 2  # the candles' guards: insert, update and delete (and truncate)
