"""Whole candles: every candle a source returns, stored as it came (open, high, low, close, vwap, volume,
trades), keyed by venue, pair, interval and open time.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

The raw table keeps only each candle's close; this table keeps the candle. It is append-only like the raw
table: a guard refuses UPDATE, DELETE and TRUNCATE unless mcdata's own correction has put a row in
`raw_price_edits`, and a candle that closes later than now. The checks refuse a price outside the band, a
high below the open or close, a low above them, and (SQLite) a time that is not a real instant. The guard
functions and triggers are frozen copies of mcdata.triggers as of this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mcdata.schema

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FUTURE = "5 minutes"
MIN_PRICE, MAX_PRICE, MAX_VOLUME = 1e-12, 1e12, 1e18
REFUSED = ("mcdata: candles are append-only (each is the record a venue keeps of one interval); "
           "only the corrections of mcdata change them")
SQLITE_TIME_GLOB = (
    "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]"
)
OPEN_TIME_EXACT = (f"open_time GLOB '{SQLITE_TIME_GLOB}' AND IFNULL(strftime('%Y-%m-%d %H:%M:%S', "
                   "substr(open_time, 1, 19), '+0 seconds'), '') = substr(open_time, 1, 19)")


def postgres_guard_function(search_path: str) -> str:
    return f"""
CREATE FUNCTION mcdata_guard_candles() RETURNS trigger LANGUAGE plpgsql SET search_path = {search_path} AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN  -- nested: plpgsql does not short-circuit, and each operation has its own table
        IF EXISTS (SELECT 1 FROM inserted WHERE open_time + make_interval(secs => interval_s)
                   > now() + INTERVAL '{FUTURE}') THEN
            RAISE EXCEPTION USING ERRCODE = 'check_violation',
                MESSAGE = 'mcdata: a candle that closes later than now is refused (is a clock ahead?)';
        END IF;
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM raw_price_edits) THEN
        RETURN NULL;  -- mcdata's own correction
    END IF;
    IF TG_OP <> 'TRUNCATE' THEN
        IF NOT EXISTS (SELECT 1 FROM changed) THEN
            RETURN NULL;
        END IF;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'restrict_violation', MESSAGE = '{REFUSED}';
END $$"""


POSTGRES_TRIGGERS = [
    # statement-level, like the raw table's: one check per INSERT however many candles (an import's year)
    "CREATE TRIGGER candles_guard_insert AFTER INSERT ON candles REFERENCING NEW TABLE AS inserted "
    "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
    "CREATE TRIGGER candles_guard_update AFTER UPDATE ON candles REFERENCING OLD TABLE AS changed "
    "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
    "CREATE TRIGGER candles_guard_delete AFTER DELETE ON candles REFERENCING OLD TABLE AS changed "
    "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
    "CREATE TRIGGER candles_guard_truncate BEFORE TRUNCATE ON candles "
    "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
]
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER candles_guard_insert BEFORE INSERT ON candles FOR EACH ROW BEGIN
    SELECT RAISE(ABORT, 'mcdata: this candle is stored already; {REFUSED[7:]}')
    WHERE EXISTS (SELECT 1 FROM candles WHERE exchange = NEW.exchange AND pair = NEW.pair
                  AND interval_s = NEW.interval_s AND open_time = NEW.open_time);
    SELECT RAISE(ABORT, 'mcdata: a candle that closes later than now is refused (is a clock ahead?)')
    WHERE datetime(NEW.open_time, '+' || NEW.interval_s || ' seconds') > datetime('now', '+{FUTURE}');
END""",
    f"""CREATE TRIGGER candles_guard_update BEFORE UPDATE ON candles FOR EACH ROW
WHEN NOT EXISTS (SELECT 1 FROM raw_price_edits) BEGIN
    SELECT RAISE(ABORT, '{REFUSED}');
END""",
    f"""CREATE TRIGGER candles_guard_delete BEFORE DELETE ON candles FOR EACH ROW
WHEN NOT EXISTS (SELECT 1 FROM raw_price_edits) BEGIN
    SELECT RAISE(ABORT, '{REFUSED}');
END""",
]


def _band(column: str) -> str:
    return f"{column} >= {MIN_PRICE!r} AND {column} <= {MAX_PRICE!r}"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "candles",
        sa.Column("exchange", sa.String(length=40), nullable=False),
        sa.Column("pair", sa.String(length=40), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False, comment="the candle's length in seconds: 3600 hourly"),
        sa.Column("open_time", mcdata.schema.UTCDateTime(timezone=True), nullable=False,
                  comment="UTC start of the candle"),
        sa.Column("open", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("close", sa.Double(), nullable=False),
        sa.Column("vwap", sa.Double(), nullable=True, comment="volume-weighted average price, where the source says"),
        sa.Column("volume", sa.Double(), nullable=True, comment="base volume"),
        sa.Column("trades", sa.Integer(), nullable=True, comment="number of trades, where the source says"),
        sa.Column("fetched_at", mcdata.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "pair", "interval_s", "open_time", name=op.f("pk_candles")),
        *(sa.CheckConstraint(_band(column), name=op.f(f"ck_candles_{column}_band"))
          for column in ("open", "high", "low", "close")),
        sa.CheckConstraint("high >= open AND high >= close AND low <= open AND low <= close",
                           name=op.f("ck_candles_ohlc_order")),
        sa.CheckConstraint(f"vwap IS NULL OR (vwap >= 0 AND vwap <= {MAX_PRICE!r})", name=op.f("ck_candles_vwap_band")),
        sa.CheckConstraint(f"volume IS NULL OR (volume >= 0 AND volume <= {MAX_VOLUME!r})",
                           name=op.f("ck_candles_volume_band")),
        sa.CheckConstraint("trades IS NULL OR trades >= 0", name=op.f("ck_candles_trades_count")),
        sa.CheckConstraint("interval_s > 0", name=op.f("ck_candles_interval_positive")),
        *([sa.CheckConstraint(OPEN_TIME_EXACT, name=op.f("ck_candles_open_time_format"))] if dialect == "sqlite"
          else []),
    )
    if dialect == "postgresql":
        schema = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
        op.execute(postgres_guard_function(f"pg_catalog, {schema}, pg_temp"))
        for statement in POSTGRES_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("candles")  # its triggers go with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION mcdata_guard_candles()")
