"""The raw table becomes append-only and its derived tables trustworthy whatever SQL runs against it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

The rollup triggers follow only INSERT; an UPDATE, a DELETE other than prune's, a TRUNCATE or SQLite's
INSERT OR REPLACE used to leave rollups and `markets` silently stale. Now the raw table refuses them
(mcdata's own corrections and `prune` are let through, see `retention` and `raw_price_edits`), and
refuses samples later than now + 5 minutes or before the pruned history. Prices outside the band a real
market can have (1e-12 .. 1e12) are refused by the CHECK. On SQLite the timestamp CHECK also demands a
real instant (no 2026-11-31, no hour 24). On PostgreSQL the trigger functions pin their search_path, so
an insert from a session with another search path (pg_dump's restore, a tool) works the same. `runs`
gains the status `interrupted`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

import mcdata.schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RAW = "raw_crypto_pair_price_history"
FUTURE = "5 minutes"
REFUSED = ("mcdata: raw prices are append-only (rollups, markets and metrics are derived from them); "
           "change them with `mcdata prices delete` or `mcdata prices set`, delete old ones with `mcdata prune`")
PRICE_BAND = "price >= 1e-12 AND price <= 1000000000000.0"
VOLUME_BAND = "volume IS NULL OR (volume >= 0 AND volume <= 1e+18)"
SQLITE_TIME = ("timestamp GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9]."
               "[0-9][0-9][0-9][0-9][0-9][0-9]' AND "
               "IFNULL(strftime('%Y-%m-%d %H:%M:%S', substr(timestamp, 1, 19), '+0 seconds'), '') = substr(timestamp, 1, 19)")
OLD_PRICE = "price > 0 AND price <= 1.7976931348623157e308"
OLD_VOLUME = "volume IS NULL OR (volume >= 0 AND volume <= 1.7976931348623157e308)"
OLD_TIME = ("timestamp GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9]."
            "[0-9][0-9][0-9][0-9][0-9][0-9]'")
STATUSES = "status IN ('running', 'ok', 'partial', 'failed', 'interrupted')"
OLD_STATUSES = "status IN ('running', 'ok', 'partial', 'failed')"


def postgres_guard(search_path: str) -> str:
    return f"""
CREATE FUNCTION mcdata_guard_raw_prices() RETURNS trigger LANGUAGE plpgsql SET search_path = {search_path} AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM raw_price_edits) THEN
        RETURN NULL;  -- mcdata's own correction: it rebuilds the rollups in this transaction
    END IF;
    IF TG_OP = 'DELETE' THEN  -- nested: plpgsql does not short-circuit, and TRUNCATE has no `changed`
        IF NOT EXISTS (SELECT 1 FROM changed c WHERE c.timestamp >= COALESCE(
                (SELECT pruned_before FROM retention), '-infinity'::timestamptz)) THEN
            RETURN NULL;  -- prune: rows before the pruned mark; the rollups keep their history
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        IF NOT EXISTS (SELECT 1 FROM changed) THEN
            RETURN NULL;
        END IF;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'restrict_violation', MESSAGE = '{REFUSED}';
END $$"""


def postgres_rollup_function(search_path: str) -> str:
    """0003's rollup function, frozen there, with the ingest guards first and a pinned search_path."""
    previous = context.script.get_revision("0003").module.POSTGRES_FUNCTION
    guards = f"""BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE timestamp > now() + interval '{FUTURE}') THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = 'mcdata: a price sample later than now is refused (is a clock ahead?)';
    END IF;
    IF EXISTS (SELECT 1 FROM inserted i JOIN retention r ON i.timestamp < r.pruned_before) THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = 'mcdata: a price sample older than the pruned history is refused';
    END IF;
"""
    marker = "SET jit = off AS $$\nBEGIN\n"
    assert previous.count(marker) == 1
    return previous.replace(marker, f"SET jit = off SET search_path = {search_path} AS $$\n" + guards)


SQLITE_GUARDS = [
    f"""CREATE TRIGGER raw_prices_guard_insert BEFORE INSERT ON {RAW} FOR EACH ROW BEGIN
    SELECT RAISE(ABORT, 'mcdata: a price of this market at this time is stored already; {REFUSED[7:]}')
    WHERE EXISTS (SELECT 1 FROM {RAW} WHERE exchange = NEW.exchange AND pair = NEW.pair
                  AND timestamp = NEW.timestamp);
    SELECT RAISE(ABORT, 'mcdata: a price sample later than now is refused (is a clock ahead?)')
    WHERE NEW.timestamp > strftime('%Y-%m-%d %H:%M:%f', 'now', '+{FUTURE}');
    SELECT RAISE(ABORT, 'mcdata: a price sample older than the pruned history is refused')
    WHERE NEW.timestamp < (SELECT pruned_before FROM retention);
END""",
    f"""CREATE TRIGGER raw_prices_guard_update BEFORE UPDATE ON {RAW} FOR EACH ROW
WHEN NOT EXISTS (SELECT 1 FROM raw_price_edits) BEGIN
    SELECT RAISE(ABORT, '{REFUSED}');
END""",
    f"""CREATE TRIGGER raw_prices_guard_delete BEFORE DELETE ON {RAW} FOR EACH ROW
WHEN NOT EXISTS (SELECT 1 FROM raw_price_edits) AND OLD.timestamp >= IFNULL((SELECT pruned_before FROM retention), '')
BEGIN
    SELECT RAISE(ABORT, '{REFUSED}');
END""",
]


def _search_path() -> str:
    schema = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
    return f"pg_catalog, {schema}, pg_temp"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "retention",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pruned_before", mcdata.schema.UTCDateTime(timezone=True), nullable=False, comment="a UTC midnight"),
        sa.CheckConstraint("id = 1", name=op.f("ck_retention_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention")),
    )
    op.create_table(
        "raw_price_edits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_price_edits")),
    )
    _mark_pruned_history()
    _quarantine_refused_rows(dialect)
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("status", type_="check")
        batch.create_check_constraint("status", sa.text(STATUSES))
    if dialect == "postgresql":
        op.execute("COMMENT ON COLUMN runs.status IS 'running | ok | partial | failed | interrupted'")
        path = _search_path()
        op.execute(f"ALTER TABLE {RAW} DROP CONSTRAINT ck_{RAW}_price_finite_positive, "
                   f"DROP CONSTRAINT ck_{RAW}_volume_finite, "
                   f"ADD CONSTRAINT ck_{RAW}_price_band CHECK ({PRICE_BAND}), "
                   f"ADD CONSTRAINT ck_{RAW}_volume_band CHECK ({VOLUME_BAND})")
        op.execute(postgres_rollup_function(path))
        op.execute(postgres_guard(path))
        op.execute(f"CREATE TRIGGER raw_prices_guard_update AFTER UPDATE ON {RAW} REFERENCING OLD TABLE AS changed "
                   "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_raw_prices()")
        op.execute(f"CREATE TRIGGER raw_prices_guard_delete AFTER DELETE ON {RAW} REFERENCING OLD TABLE AS changed "
                   "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_raw_prices()")
        op.execute(f"CREATE TRIGGER raw_prices_guard_truncate BEFORE TRUNCATE ON {RAW} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_raw_prices()")
    else:
        _sqlite_checks(PRICE_BAND, VOLUME_BAND, SQLITE_TIME, ("price_finite_positive", "volume_finite"),
                       ("price_band", "volume_band"))
        op.execute(context.script.get_revision("0003").module.SQLITE_TRIGGER)  # the batch dropped it
        for guard in SQLITE_GUARDS:
            op.execute(guard)


def create_quarantine() -> None:
    """mcdata.schema.raw_price_quarantine as of this revision (0009 creates it where 0004 ran before)."""
    op.create_table(
        "raw_price_quarantine",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("exchange", sa.String(length=40), nullable=False),
        sa.Column("pair", sa.String(length=40), nullable=False),
        sa.Column("timestamp", sa.Text(), nullable=False, comment="as it was stored"),
        sa.Column("price", sa.Double(), nullable=True),
        sa.Column("volume", sa.Double(), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rollups_rebuilt", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_price_quarantine")),
    )


def _quarantine_refused_rows(dialect: str) -> None:
    """Rows an older version stored that the checks below refuse are moved to raw_price_quarantine, so
    that the migration (and every run after it) never fails on them; mcdata.migrations rebuilds the rollups
    without them at the head revision. A sample later than now (a clock that was ahead) would pin the
    pair's newest sample and stop gap repair: it is moved too."""
    create_quarantine()
    later = (f"timestamp > strftime('%Y-%m-%d %H:%M:%f', 'now', '+{FUTURE}')" if dialect == "sqlite"
             else f"timestamp > now() + interval '{FUTURE}'")
    reasons = [(f"NOT ({PRICE_BAND})", "price outside 1e-12 .. 1e12"),
               (f"NOT ({VOLUME_BAND})", "volume outside 0 .. 1e18"),
               (later, "later than the migration")]
    if dialect == "sqlite":
        reasons.insert(0, (f"NOT ({SQLITE_TIME})", "not a real instant"))
    cast_time = "timestamp" if dialect == "sqlite" else "to_char(timestamp AT TIME ZONE 'UTC', " \
        "'YYYY-MM-DD HH24:MI:SS.US')"
    for condition, reason in reasons:
        op.execute(f"INSERT INTO raw_price_quarantine (exchange, pair, timestamp, price, volume, kind, reason) "
                   f"SELECT exchange, pair, {cast_time}, price, volume, kind, '{reason}' FROM {RAW} "
                   f"WHERE {condition}")
        op.execute(f"DELETE FROM {RAW} WHERE {condition}")


def _mark_pruned_history() -> None:
    """A database pruned before this revision has rollups older than its raw rows: they become history
    from the first whole UTC day of raw rows on."""
    from datetime import timedelta

    bind = op.get_bind()
    instant = mcdata.schema.UTCDateTime()
    oldest_raw = instant.process_result_value(bind.execute(sa.text(f"SELECT MIN(timestamp) FROM {RAW}")).scalar(),
                                              bind.dialect)
    oldest_rollup = instant.process_result_value(
        bind.execute(sa.text("SELECT MIN(first_at) FROM price_rollup_hourly")).scalar(), bind.dialect)
    if oldest_raw is None or oldest_rollup is None or oldest_rollup >= oldest_raw:
        return
    midnight = oldest_raw.replace(hour=0, minute=0, second=0, microsecond=0)
    if midnight < oldest_raw:
        midnight += timedelta(days=1)
    table = sa.table("retention", sa.column("id"), sa.column("pruned_before", mcdata.schema.UTCDateTime()))
    op.execute(table.insert().values(id=1, pruned_before=midnight))


def _sqlite_checks(price: str, volume: str, time: str, drop: tuple[str, str], create: tuple[str, str]) -> None:
    with op.batch_alter_table(RAW) as batch:  # rebuilds the table, dropping its triggers
        for name in (*drop, "timestamp_format"):
            batch.drop_constraint(name, type_="check")
        batch.create_check_constraint(create[0], sa.text(price))
        batch.create_check_constraint(create[1], sa.text(volume))
        batch.create_check_constraint("timestamp_format", sa.text(time))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for event in ("update", "delete", "truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS raw_prices_guard_{event} ON {RAW}")
        op.execute("DROP FUNCTION IF EXISTS mcdata_guard_raw_prices()")
        op.execute(context.script.get_revision("0003").module.POSTGRES_FUNCTION)
        op.execute("COMMENT ON COLUMN runs.status IS 'running | ok | partial | failed'")
        op.execute(f"ALTER TABLE {RAW} DROP CONSTRAINT ck_{RAW}_price_band, DROP CONSTRAINT ck_{RAW}_volume_band, "
                   f"ADD CONSTRAINT ck_{RAW}_price_finite_positive CHECK ({OLD_PRICE}), "
                   f"ADD CONSTRAINT ck_{RAW}_volume_finite CHECK ({OLD_VOLUME})")
    else:
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS raw_prices_guard_{name}")
        _sqlite_checks(OLD_PRICE, OLD_VOLUME, OLD_TIME, ("price_band", "volume_band"),
                       ("price_finite_positive", "volume_finite"))
        op.execute(context.script.get_revision("0003").module.SQLITE_TRIGGER)
    op.execute("UPDATE runs SET status = 'failed' WHERE status = 'interrupted'")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("status", type_="check")
        batch.create_check_constraint("status", sa.text(OLD_STATUSES))
    op.drop_table("raw_price_edits")
    op.drop_table("retention")
    op.execute("DROP TABLE IF EXISTS raw_price_quarantine")
