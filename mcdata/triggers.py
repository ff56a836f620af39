"""The code that runs inside the database, as the head revision installs it: the rollup triggers and the
raw table's guards.

This module is the one readable home of today's definitions. The migrations keep frozen copies (a
migration must create what it created the day it was written); tests/test_database_code.py builds a
schema from this module and `schema.metadata` and compares it with a database migrated to head, object
by object, on both databases, so the two cannot drift apart.

Every insert into the raw table, by mcdata or by hand, merges its rows into the hourly, two-hour,
quarter-day (6 hours) and daily rollups (count, mean and M2 about an anchor price with Chan's parallel
formula, min, max, first, last) and the markets list, in the same transaction. PostgreSQL uses
statement-level triggers (one merge per INSERT, however many rows); SQLite row-level ones (a Welford
step per row). The raw table refuses every other change, except prune's (rows before the pruned mark)
and mcdata's own corrections (see
`raw_price_edits`), which rebuild the rollups in the same transaction (mcdata.rollups).
"""

from __future__ import annotations

import sqlalchemy as sa

RAW = "raw_crypto_pair_price_history"
COLUMNS = "samples, ref_price, mean_offset, m2, min_price, max_price, first_at, first_price, last_at, last_price"
PG_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"


def sqlite_block(timestamp: str, hours: int) -> str:
    """The start of the block of `hours` hours (2 or 6) of the UTC day that holds a SQLite timestamp."""
    hour = f"CAST(strftime('%H', {timestamp}) AS INTEGER)"
    return f"strftime('%Y-%m-%d ', {timestamp}) || printf('%02d', {hour} / {hours} * {hours}) || ':00:00.000000'"


# The rollup levels, finest first: each table and its bucket column.
LEVELS = (("price_rollup_hourly", "hour"), ("price_rollup_two_hourly", "two_hour"),
          ("price_rollup_quarterly", "quarter"), ("price_rollup_daily", "day"))
# Each bucket of a SQLite timestamp.
SQLITE_BUCKET = {
    "hour": lambda timestamp: f"strftime('%Y-%m-%d %H:00:00.000000', {timestamp})",
    "two_hour": lambda timestamp: sqlite_block(timestamp, 2),
    "quarter": lambda timestamp: sqlite_block(timestamp, 6),
    "day": lambda timestamp: f"strftime('%Y-%m-%d 00:00:00.000000', {timestamp})",
}
# The levels above the hour, each bucket as an expression of an hourly rollup row's `hour`.
COARSER = {
    "postgresql": {bucket: f"date_bin('{span}', hour, {PG_ORIGIN})"
                   for bucket, span in (("two_hour", "2 hours"), ("quarter", "6 hours"), ("day", "1 day"))},
    "sqlite": {bucket: SQLITE_BUCKET[bucket]("hour") for _, bucket in LEVELS[1:]},
}


def _level(table: str) -> str:
    """A level's name in the trigger's statements (price_rollup_daily: daily)."""
    return table.removeprefix("price_rollup_")
# Samples may be this far ahead of the database's clock (the source's clock may be a little ahead).
FUTURE = "5 minutes"
REFUSED = ("mcdata: raw prices are append-only (rollups, markets and metrics are derived from them); "
           "change them with `mcdata prices delete` or `mcdata prices set`, delete old ones with `mcdata prune`")


def from_hours(source: str, bucket: str, expression: str) -> str:
    """Hourly rollup rows of the table or CTE `source` merged into coarser buckets named `bucket`, each
    hour's bucket being `expression` of its `hour` (Chan's formula about each bucket's first anchor)."""
    return f"""
    SELECT exchange, pair, {bucket}, SUM(samples) AS samples, MIN(bucket_ref) AS ref_price,
           MIN(bucket_mean) AS mean_offset, SUM(m2 + samples * (d - bucket_mean) * (d - bucket_mean)) AS m2,
           MIN(min_price) AS min_price, MAX(max_price) AS max_price, MIN(first_at) AS first_at,
           MIN(bucket_first_price) AS first_price, MAX(last_at) AS last_at, MIN(bucket_last_price) AS last_price
    FROM (
        SELECT offsets.*, SUM(samples * d) OVER whole_bucket / SUM(samples) OVER whole_bucket AS bucket_mean
        FROM (
            SELECT hours.*, (ref_price - first_value(ref_price) OVER by_hour) + mean_offset AS d,
                   first_value(ref_price) OVER by_hour AS bucket_ref,
                   first_value(first_price) OVER by_hour AS bucket_first_price,
                   last_value(last_price) OVER every_hour AS bucket_last_price
            FROM (SELECT {source}.*, {expression} AS {bucket} FROM {source}) hours
            WINDOW by_hour AS (PARTITION BY exchange, pair, {bucket} ORDER BY hour),
                   every_hour AS (PARTITION BY exchange, pair, {bucket} ORDER BY hour
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        ) offsets
        WINDOW whole_bucket AS (PARTITION BY exchange, pair, {bucket})
    ) merged
    GROUP BY exchange, pair, {bucket}"""


def _merge(source: str, table: str, bucket: str) -> str:
    """Upsert `source`'s rows into a rollup table: Chan's parallel formula when the bucket exists (anchors
    may differ)."""
    delta = "((excluded.ref_price - r.ref_price) + excluded.mean_offset - r.mean_offset)"
    return f"""
    INSERT INTO {table} AS r (exchange, pair, {bucket}, {COLUMNS})
    SELECT exchange, pair, {bucket}, {COLUMNS} FROM {source}
    ON CONFLICT (exchange, pair, {bucket}) DO UPDATE SET
        samples = r.samples + excluded.samples,
        mean_offset = r.mean_offset + {delta} * excluded.samples / (r.samples + excluded.samples),
        m2 = r.m2 + excluded.m2 + {delta} * {delta} * r.samples * excluded.samples / (r.samples + excluded.samples),
        min_price = LEAST(r.min_price, excluded.min_price),
        max_price = GREATEST(r.max_price, excluded.max_price),
        first_price = CASE WHEN excluded.first_at < r.first_at THEN excluded.first_price ELSE r.first_price END,
        first_at = LEAST(r.first_at, excluded.first_at),
        last_price = CASE WHEN excluded.last_at > r.last_at THEN excluded.last_price ELSE r.last_price END,
        last_at = GREATEST(r.last_at, excluded.last_at)"""


# -- PostgreSQL --------------------------------------------------------------------------------------
def postgres_rollup_function(search_path: str) -> str:
    """One sort of the inserted rows: each hour's first price is its anchor and first_price; lead() marks
    its last. No JIT: compiling these statements took 40 ms, forty times the work of an hourly batch,
    whenever the table statistics were stale. The search_path is pinned so that an insert from a session
    with another one (pg_dump's restore, a tool) works the same."""
    header = ("CREATE OR REPLACE FUNCTION mcdata_rollup_inserted() RETURNS trigger LANGUAGE plpgsql SET jit = off "
              f"SET search_path = {search_path} AS $$")
    coarser = "".join(
        f"\n    ), {_level(table)} AS MATERIALIZED ({from_hours('hourly', bucket, COARSER['postgresql'][bucket])}"
        for table, bucket in LEVELS[1:])
    merged = "".join(f"\n    ), {bucket}s_merged AS ({_merge(_level(table), table, bucket)}"
                     for table, bucket in LEVELS)
    return f"""
{header}
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE timestamp > now() + interval '{FUTURE}') THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = 'mcdata: a price sample later than now is refused (is a clock ahead?)';
    END IF;
    IF EXISTS (SELECT 1 FROM inserted i JOIN retention r ON i.timestamp < r.pruned_before) THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = 'mcdata: a price sample older than the pruned history is refused';
    END IF;
    WITH hourly AS MATERIALIZED (
        SELECT exchange, pair, hour, count(*) AS samples, min(ref) AS ref_price, avg(price - ref) AS mean_offset,
               var_pop(price - ref) * count(*) AS m2, min(price) AS min_price, max(price) AS max_price,
               min(timestamp) AS first_at, min(ref) AS first_price,
               max(timestamp) AS last_at, min(price) FILTER (WHERE is_last) AS last_price
        FROM (
            SELECT exchange, pair, hour, timestamp, price,
                   first_value(price) OVER by_time AS ref, lead(timestamp) OVER by_time IS NULL AS is_last
            FROM (SELECT exchange, pair, timestamp, price, date_bin('1 hour', timestamp, {PG_ORIGIN}) AS hour
                  FROM inserted) rows
            WINDOW by_time AS (PARTITION BY exchange, pair, hour ORDER BY timestamp)
        ) ordered
        GROUP BY exchange, pair, hour{coarser}{merged}
    )
    INSERT INTO markets AS m (exchange, pair, first_at, last_at, last_price)
    SELECT DISTINCT ON (exchange, pair) exchange, pair,
           min(first_at) OVER (PARTITION BY exchange, pair), last_at, last_price
    FROM daily ORDER BY exchange, pair, last_at DESC
    ON CONFLICT (exchange, pair) DO UPDATE SET
        first_at = LEAST(m.first_at, excluded.first_at),
        last_price = CASE WHEN excluded.last_at > m.last_at THEN excluded.last_price ELSE m.last_price END,
        last_at = GREATEST(m.last_at, excluded.last_at);
    RETURN NULL;
END $$
"""


def postgres_guard_function(search_path: str) -> str:
    """Refuses UPDATE, TRUNCATE and DELETE of rows at or after the pruned mark, unless mcdata's own
    correction has put a row in raw_price_edits (it rebuilds the rollups in the same transaction)."""
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


# (no apostrophe: it is written into SQL string literals)
CANDLES_REFUSED = ("mcdata: candles are append-only (each is the record a venue keeps of one interval); "
                   "only the corrections of mcdata change them")


def postgres_candle_guard_function(search_path: str) -> str:
    """Refuses a candle that closes later than now, and every UPDATE, DELETE and TRUNCATE of candles
    unless mcdata's own correction has put a row in raw_price_edits."""
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
    RAISE EXCEPTION USING ERRCODE = 'restrict_violation', MESSAGE = '{CANDLES_REFUSED}';
END $$"""


def postgres_raw_triggers(table: str) -> list[str]:
    """The raw table's triggers, on the table or on one of its partitions (mcdata.partitions: a statement
    trigger fires for the table the statement names, so each partition carries them too)."""
    return [
        f"""
CREATE TRIGGER raw_prices_rollup AFTER INSERT ON {table}
REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION mcdata_rollup_inserted()
""",
        f"CREATE TRIGGER raw_prices_guard_update AFTER UPDATE ON {table} REFERENCING OLD TABLE AS changed "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_raw_prices()",
        f"CREATE TRIGGER raw_prices_guard_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS changed "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_raw_prices()",
        f"CREATE TRIGGER raw_prices_guard_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_raw_prices()",
    ]


def postgres_candle_triggers(table: str) -> list[str]:
    """The candle table's guards, on the table or on one of its partitions; statement-level, like the raw
    table's: one check per INSERT however many candles (an import's year)."""
    return [
        f"CREATE TRIGGER candles_guard_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS inserted "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
        f"CREATE TRIGGER candles_guard_update AFTER UPDATE ON {table} REFERENCING OLD TABLE AS changed "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
        f"CREATE TRIGGER candles_guard_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS changed "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
        f"CREATE TRIGGER candles_guard_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION mcdata_guard_candles()",
    ]


POSTGRES_TRIGGERS = [
    *postgres_raw_triggers(RAW),
    *postgres_candle_triggers("candles"),
]


def postgres_search_path(connection: sa.Connection) -> str:
    """The path the trigger functions pin: the catalog, the schema mcdata's tables are in, nothing else."""
    schema = connection.execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
    return f"pg_catalog, {schema}, pg_temp"


# -- SQLite ------------------------------------------------------------------------------------------
def _sqlite_row_upsert(table: str, bucket: str, bucket_of_new: str) -> str:
    """One Welford step per inserted row (SQLite has no statement-level triggers)."""
    offset = "(NEW.price - ref_price)"
    return f"""
    INSERT INTO {table} (exchange, pair, {bucket}, {COLUMNS})
    VALUES (NEW.exchange, NEW.pair, {bucket_of_new}, 1, NEW.price, 0.0, 0.0,
            NEW.price, NEW.price, NEW.timestamp, NEW.price, NEW.timestamp, NEW.price)
    ON CONFLICT (exchange, pair, {bucket}) DO UPDATE SET
        samples = samples + 1,
        mean_offset = mean_offset + ({offset} - mean_offset) / (samples + 1),
        m2 = m2 + ({offset} - mean_offset) * ({offset} - mean_offset) * samples / (samples + 1),
        min_price = MIN(min_price, NEW.price),
        max_price = MAX(max_price, NEW.price),
        first_price = CASE WHEN NEW.timestamp < first_at THEN NEW.price ELSE first_price END,
        first_at = MIN(first_at, NEW.timestamp),
        last_price = CASE WHEN NEW.timestamp > last_at THEN NEW.price ELSE last_price END,
        last_at = MAX(last_at, NEW.timestamp);"""


# SQLite stores timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text (SQLAlchemy's format): the buckets keep it.
_SQLITE_UPSERTS = "\n    ".join(_sqlite_row_upsert(table, bucket, SQLITE_BUCKET[bucket]("NEW.timestamp"))
                               for table, bucket in LEVELS)
SQLITE_TRIGGERS = [
    f"""
CREATE TRIGGER raw_prices_rollup AFTER INSERT ON {RAW} FOR EACH ROW BEGIN
    {_SQLITE_UPSERTS}
    INSERT INTO markets (exchange, pair, first_at, last_at, last_price)
    VALUES (NEW.exchange, NEW.pair, NEW.timestamp, NEW.timestamp, NEW.price)
    ON CONFLICT (exchange, pair) DO UPDATE SET
        first_at = MIN(first_at, NEW.timestamp),
        last_price = CASE WHEN NEW.timestamp > last_at THEN NEW.price ELSE last_price END,
        last_at = MAX(last_at, NEW.timestamp);
END
""",
    # INSERT OR REPLACE would delete the stored row without a DELETE trigger: refuse duplicates first
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
    # INSERT OR REPLACE would delete the stored candle without a DELETE trigger: refuse duplicates first
    f"""CREATE TRIGGER candles_guard_insert BEFORE INSERT ON candles FOR EACH ROW BEGIN
    SELECT RAISE(ABORT, 'mcdata: this candle is stored already; {CANDLES_REFUSED[7:]}')
    WHERE EXISTS (SELECT 1 FROM candles WHERE exchange = NEW.exchange AND pair = NEW.pair
                  AND interval_s = NEW.interval_s AND open_time = NEW.open_time);
    SELECT RAISE(ABORT, 'mcdata: a candle that closes later than now is refused (is a clock ahead?)')
    WHERE datetime(NEW.open_time, '+' || NEW.interval_s || ' seconds') > datetime('now', '+{FUTURE}');
END""",
    f"""CREATE TRIGGER candles_guard_update BEFORE UPDATE ON candles FOR EACH ROW
WHEN NOT EXISTS (SELECT 1 FROM raw_price_edits) BEGIN
    SELECT RAISE(ABORT, '{CANDLES_REFUSED}');
END""",
    f"""CREATE TRIGGER candles_guard_delete BEFORE DELETE ON candles FOR EACH ROW
WHEN NOT EXISTS (SELECT 1 FROM raw_price_edits) BEGIN
    SELECT RAISE(ABORT, '{CANDLES_REFUSED}');
END""",
]


def install(connection: sa.Connection) -> None:
    """Create every function and trigger on tables made from `schema.metadata` (what head has), and on
    PostgreSQL the raw table's partitions (mcdata.partitions)."""
    if connection.dialect.name == "postgresql":
        from mcdata import partitions
        from mcdata.clock import utc_now

        path = postgres_search_path(connection)
        for statement in (postgres_rollup_function(path), postgres_guard_function(path),
                          postgres_candle_guard_function(path), *POSTGRES_TRIGGERS):
            connection.execute(sa.text(statement))
        partitions.install(connection, utc_now())
    else:
        for statement in SQLITE_TRIGGERS:
            connection.execute(sa.text(statement))
