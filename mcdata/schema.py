"""The tables, in SQLAlchemy Core: the one source of truth for the schema and its migrations.

The two original tables keep their names and columns (users query them with SQL) and gain more.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from mcdata.errors import RunStatus

# The band of prices a real market can have: from a satoshi-sized fraction of a fraction (1e-12; the
# smallest quoted crypto prices are ~1e-10) to a million million (BTC in the weakest fiat currencies is
# ~3e9). Squares and sums of prices in the band never overflow a double, and tiny ones keep their
# digits; NaN (stored as NULL by SQLite, refused by NOT NULL) and infinities are outside it too.
MIN_PRICE = 1e-12
MAX_PRICE = 1e12
MAX_VOLUME = 1e18
PRICE_BAND = f"{{col}} >= {MIN_PRICE!r} AND {{col}} <= {MAX_PRICE!r}"

SQLITE_TIME_GLOB = (  # 'YYYY-MM-DD HH:MM:SS.ffffff'
    "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]"
)
# ...and a real instant: SQLite's own normalised reading of the text (a modifier makes it normalise; the
# fraction is left out, which it would round) must give the text back, so 2026-11-31 (read as 12-01) and
# hour 24 are refused. IFNULL: a CHECK that is NULL would pass.
def sqlite_time_exact(column: str) -> str:
    return (f"{column} GLOB '{SQLITE_TIME_GLOB}' AND IFNULL(strftime('%Y-%m-%d %H:%M:%S', "
            f"substr({column}, 1, 19), '+0 seconds'), '') = substr({column}, 1, 19)")


SQLITE_TIME_EXACT = sqlite_time_exact("timestamp")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC instant on both databases.

    Aware datetimes are converted to UTC before they are written; SQLite keeps no offset, so UTC is
    attached again on read. Naive datetimes are refused: they would be a guess.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} refused: mcdata stores UTC instants only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        instant = datetime.fromisoformat(value) if isinstance(value, str) else value  # SQLite text
        if not isinstance(instant, datetime):
            raise TypeError(f"expected a timestamp, read {instant!r}")
        return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


raw_prices = sa.Table(
    "raw_crypto_pair_price_history",
    metadata,
    sa.Column("exchange", sa.String(40), nullable=False, comment="market venue, e.g. kraken"),
    sa.Column("pair", sa.String(40), nullable=False, comment="canonical lowercase base+quote, e.g. btceur"),
    sa.Column("timestamp", UTCDateTime(), nullable=False, comment="sample time, UTC; candle close"),
    sa.Column("price", sa.Double(), nullable=False),
    sa.Column("volume", sa.Double(), nullable=True, comment="base volume of a candle; NULL for tickers"),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("fetched_at", UTCDateTime(), nullable=False),
    # PostgreSQL keeps the price in the key's index too, so compute reads a window's edge hours from the
    # index alone (without a visit to the table for each row)
    sa.PrimaryKeyConstraint("exchange", "pair", "timestamp", postgresql_include=["price"]),
    sa.CheckConstraint(PRICE_BAND.format(col="price"), name="price_band"),
    sa.CheckConstraint(f"volume IS NULL OR (volume >= 0 AND volume <= {MAX_VOLUME!r})", name="volume_band"),
    sa.CheckConstraint("kind IN ('ticker', 'candle')", name="kind"),
    # SQLite compares timestamps as text: one format only ('YYYY-MM-DD HH:MM:SS.ffffff', UTC), so that
    # rows written by hand in another format fail loudly instead of sorting wrongly.
    sa.CheckConstraint(SQLITE_TIME_EXACT, name="timestamp_format").ddl_if(dialect="sqlite"),
    # PostgreSQL: a partition per UTC month (mcdata.partitions), so retention drops months whole
    postgresql_partition_by="RANGE (timestamp)",
)

# Every candle a source returns, whole (Kraken's OHLC rows carry all of it; ccxt's OHLCV and Cryptowatch's
# rows what they have), at no extra request: the raw table keeps only the close. Append-only like the raw
# table (mcdata.triggers guards it) and checked like it: real instants, the price band, and
# high >= max(open, close) >= min(open, close) >= low.
candles = sa.Table(
    "candles",
    metadata,
    sa.Column("exchange", sa.String(40), nullable=False),
    sa.Column("pair", sa.String(40), nullable=False),
    sa.Column("interval_s", sa.Integer(), nullable=False, comment="the candle's length in seconds: 3600 hourly"),
    sa.Column("open_time", UTCDateTime(), nullable=False, comment="UTC start of the candle"),
    sa.Column("open", sa.Double(), nullable=False),
    sa.Column("high", sa.Double(), nullable=False),
    sa.Column("low", sa.Double(), nullable=False),
    sa.Column("close", sa.Double(), nullable=False),
    sa.Column("vwap", sa.Double(), nullable=True, comment="volume-weighted average price, where the source says"),
    sa.Column("volume", sa.Double(), nullable=True, comment="base volume"),
    sa.Column("trades", sa.Integer(), nullable=True, comment="number of trades, where the source says"),
    sa.Column("fetched_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("exchange", "pair", "interval_s", "open_time"),
    *(sa.CheckConstraint(PRICE_BAND.format(col=column), name=f"{column}_band")
      for column in ("open", "high", "low", "close")),
    sa.CheckConstraint("high >= open AND high >= close AND low <= open AND low <= close", name="ohlc_order"),
    sa.CheckConstraint(f"vwap IS NULL OR (vwap >= 0 AND vwap <= {MAX_PRICE!r})", name="vwap_band"),
    sa.CheckConstraint(f"volume IS NULL OR (volume >= 0 AND volume <= {MAX_VOLUME!r})", name="volume_band"),
    sa.CheckConstraint("trades IS NULL OR trades >= 0", name="trades_count"),
    sa.CheckConstraint("interval_s > 0", name="interval_positive"),
    sa.CheckConstraint(sqlite_time_exact("open_time"), name="open_time_format").ddl_if(dialect="sqlite"),
    postgresql_partition_by="RANGE (open_time)",  # PostgreSQL: a partition per UTC month (mcdata.partitions)
)

# What a venue's own answers covered, per market and interval, merged into disjoint spans [start_at, end_at)
# of candle open times: an archive file from its first row to its last, an OHLC answer from its first
# candle to its last, a walk of Kraken's Trades from where it started to the hour it reached. An interval
# inside a span without a candle is one the venue itself says had no trade; a hole outside every span was
# not collected (`mcdata coverage`). The trades walk resumes from the end of its span.
venue_coverage = sa.Table(
    "venue_coverage",
    metadata,
    sa.Column("exchange", sa.String(40), nullable=False),
    sa.Column("pair", sa.String(40), nullable=False),
    sa.Column("interval_s", sa.Integer(), nullable=False),
    sa.Column("start_at", UTCDateTime(), nullable=False, comment="open time of the first interval covered"),
    sa.Column("end_at", UTCDateTime(), nullable=False, comment="end (exclusive) of the last interval covered"),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("exchange", "pair", "interval_s", "start_at"),
    sa.CheckConstraint("end_at > start_at", name="span_order"),
    sa.CheckConstraint("interval_s > 0", name="interval_positive"),
    sa.CheckConstraint(sqlite_time_exact("start_at") + " AND " + sqlite_time_exact("end_at"),
                       name="time_format").ddl_if(dialect="sqlite"),
)

metrics = sa.Table(
    "crypto_pair_metrics",
    metadata,
    sa.Column("timestamp", UTCDateTime(), nullable=False, comment="the as-of time T"),
    sa.Column("exchange", sa.String(40), nullable=False),
    sa.Column("pair", sa.String(40), nullable=False),
    sa.Column("latest_price", sa.Double(), nullable=False),
    sa.Column("latest_at", UTCDateTime(), nullable=False),
    sa.Column("weekly_average", sa.Double(), nullable=True),
    sa.Column("min_price", sa.Double(), nullable=True),
    sa.Column("max_price", sa.Double(), nullable=True),
    sa.Column("stddev_24h", sa.Double(), nullable=True),
    sa.Column("std_rank", sa.Integer(), nullable=True),
    sa.Column("volatility_24h", sa.Double(), nullable=True),
    sa.Column("volatility_rank", sa.Integer(), nullable=True),
    sa.Column("change_24h_pct", sa.Double(), nullable=True),
    sa.Column("samples_24h", sa.Integer(), nullable=False),
    sa.Column("samples_7d", sa.Integer(), nullable=False),
    sa.Column("computed_at", UTCDateTime(), nullable=False),
    # Keyed by time first: each compute appends its snapshot at the key's end (a key led by the market
    # put each of its rows at another place of the index: 20,000 random index inserts cost 75 ms), and
    # one key serves every lookup of a snapshot; a pair's history walks the snapshots (store.metric_history).
    sa.PrimaryKeyConstraint("timestamp", "exchange", "pair"),
)

# Per market per UTC hour, two hours, quarter day (6 hours) and day, maintained by database triggers on
# every insert into the raw table (mcdata.triggers), so rows written by anyone, mcdata or SQL, are
# counted once. Pruning raw rows keeps them. `mean_offset` and `m2` are taken of `price - ref_price` (a
# price of the bucket): Chan's merge stays exact to the last digits even for large prices that move little.
def _rollup(name: str, bucket: str, span: str, length: str, fillfactor: int) -> sa.Table:
    """A rollup level; its time index lets compute read one bucket time of every market in one range scan.
    Room left in each page (`fillfactor`, PostgreSQL) lets the triggers rewrite a bucket's row in place
    (a HOT update: no index change), so one bucket time of every market stays in a few pages."""
    return sa.Table(
        name,
        metadata,
        sa.Column("exchange", sa.String(40), nullable=False),
        sa.Column("pair", sa.String(40), nullable=False),
        sa.Column(bucket, UTCDateTime(), nullable=False,
                  comment=f"start of the UTC {span} [{bucket}, {bucket} + {length})"),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("ref_price", sa.Double(), nullable=False, comment="the anchor of mean_offset"),
        sa.Column("mean_offset", sa.Double(), nullable=False, comment="mean of price - ref_price"),
        sa.Column("m2", sa.Double(), nullable=False, comment="sum of squared deviations from the mean"),
        sa.Column("min_price", sa.Double(), nullable=False),
        sa.Column("max_price", sa.Double(), nullable=False),
        sa.Column("first_at", UTCDateTime(), nullable=False),
        sa.Column("first_price", sa.Double(), nullable=False),
        sa.Column("last_at", UTCDateTime(), nullable=False),
        sa.Column("last_price", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "pair", bucket),
        sa.Index(None, bucket),
        postgresql_with={"fillfactor": fillfactor} if fillfactor < 100 else {},
    )


# Two hours', a quarter's and a day's rows, like markets', are rewritten by the fetches of their later
# hours, all of them in one statement: only half-full pages have room for a new version of each row. An
# hour's row is rewritten only by later samples of the same hour (never when sampled hourly): its pages
# stay full.
FILLFACTOR = {"hourly": 100, "two_hourly": 50, "quarterly": 50, "daily": 50, "markets": 50}
price_rollup_hourly = _rollup("price_rollup_hourly", "hour", "hour", "1h", FILLFACTOR["hourly"])
price_rollup_two_hourly = _rollup("price_rollup_two_hourly", "two_hour", "two hours", "2h", FILLFACTOR["two_hourly"])
price_rollup_quarterly = _rollup("price_rollup_quarterly", "quarter", "quarter day", "6h", FILLFACTOR["quarterly"])
price_rollup_daily = _rollup("price_rollup_daily", "day", "day", "1d", FILLFACTOR["daily"])

# One row per series ever stored (trigger-maintained): the set compute iterates over, and each series'
# newest sample (time and price) for compute and for fetch's gap repair, without scanning the raw table.
markets = sa.Table(
    "markets",
    metadata,
    sa.Column("exchange", sa.String(40), nullable=False),
    sa.Column("pair", sa.String(40), nullable=False),
    sa.Column("first_at", UTCDateTime(), nullable=False),
    sa.Column("last_at", UTCDateTime(), nullable=False),
    sa.Column("last_price", sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint("exchange", "pair"),
    postgresql_with={"fillfactor": FILLFACTOR["markets"]},  # every row is rewritten by each fetch
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
    # the command: fetch, compute, run, prune, check, `prices delete` or `prices set` (the column's comment,
    # which a migration created, names the first three)
    sa.Column("command", sa.String(16), nullable=False, comment="fetch | compute | run"),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, comment=" | ".join(RunStatus)),
    sa.Column("exit_code", sa.Integer(), nullable=True),
    sa.Column("source", sa.String(16), nullable=True),
    sa.Column("source_url", sa.String(300), nullable=True,
              comment="where a fetch asked (password hidden): a demo's fake prices never pass for real ones"),
    sa.Column("as_of", UTCDateTime(), nullable=True),
    sa.Column("pairs_requested", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("pairs_stored", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("pairs_failed", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("rows_written", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("http_requests", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("error_summary", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.CheckConstraint(f"status IN ({', '.join(repr(str(status)) for status in RunStatus)})", name="status"),
    sa.Index(None, "started_at"),
)

# Raw prices before `pruned_before` were deleted by `mcdata prune`; the rollups keep their history, so
# rollups before it are frozen and compute refuses as-of times whose windows need the deleted rows.
retention = sa.Table(
    "retention",
    metadata,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("pruned_before", UTCDateTime(), nullable=False, comment="a UTC midnight"),
    sa.PrimaryKeyConstraint("id"),
    sa.CheckConstraint("id = 1", name="one_row"),
)

# The raw table is append-only: UPDATE, DELETE (other than prune's) and TRUNCATE are refused by triggers
# unless this table has a row, which only mcdata's own corrections insert (and delete) inside the
# transaction that also rebuilds the rollups, so no one else ever sees it.
raw_price_edits = sa.Table(
    "raw_price_edits",
    metadata,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("reason", sa.String(80), nullable=False),
    sa.PrimaryKeyConstraint("id"),
)

# Alerts (mcdata.alerts): each rule's state per market, so cron runs, restarts and concurrent commands
# never fire one twice or forget that it fired.
alert_state = sa.Table(
    "alert_state",
    metadata,
    sa.Column("rule", sa.String(40), nullable=False),
    sa.Column("exchange", sa.String(40), nullable=False),
    sa.Column("pair", sa.String(40), nullable=False),
    sa.Column("firing", sa.Boolean(), nullable=False, comment="the condition held at the last judgement"),
    sa.Column("last_fired_at", UTCDateTime(), nullable=True, comment="as-of time of the last event"),
    sa.Column("judged_at", UTCDateTime(), nullable=False),
    sa.Column("definition", sa.String(16), nullable=True,
              comment="fingerprint of the rule as defined when judged: a changed rule starts fresh"),
    sa.PrimaryKeyConstraint("rule", "exchange", "pair"),
)

# The outbox: one row per firing, written in the transaction of the metrics it is based on, delivered
# after commit (and retried by later runs until delivered_at is set, attempts reach the cap or it is too old).
alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
    sa.Column("rule", sa.String(40), nullable=False),
    sa.Column("exchange", sa.String(40), nullable=False),
    sa.Column("pair", sa.String(40), nullable=False),
    sa.Column("as_of", UTCDateTime(), nullable=False),
    sa.Column("value", sa.Double(), nullable=False),
    sa.Column("baseline", sa.Double(), nullable=True),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("delivered_to", sa.Text(), nullable=True, comment="fingerprints of the notify URLs that took it"),
    sa.PrimaryKeyConstraint("id"),
    sa.Index(None, "created_at"),
)

# Markets the venue's own list says it no longer lists, found by a fetch: `status` shows them delisted,
# not stale. A fetch that stores the market again removes its row.
delisted_markets = sa.Table(
    "delisted_markets",
    metadata,
    sa.Column("exchange", sa.String(40), nullable=False),
    sa.Column("pair", sa.String(40), nullable=False),
    sa.Column("since", UTCDateTime(), nullable=False, comment="the first fetch that found it gone"),
    sa.PrimaryKeyConstraint("exchange", "pair"),
)

# Raw rows an older mcdata stored that today's checks refuse (a price outside the band, an impossible
# SQLite date, a time later than the migration): migration 0004 moves them here, as they were, instead of
# failing; the rollups are rebuilt without them once the database reaches the head revision.
raw_price_quarantine = sa.Table(
    "raw_price_quarantine",
    metadata,
    sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
    sa.Column("exchange", sa.String(40), nullable=False),
    sa.Column("pair", sa.String(40), nullable=False),
    sa.Column("timestamp", sa.Text(), nullable=False, comment="as it was stored"),
    sa.Column("price", sa.Double(), nullable=True),
    sa.Column("volume", sa.Double(), nullable=True),
    sa.Column("kind", sa.String(8), nullable=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("rollups_rebuilt", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.PrimaryKeyConstraint("id"),
)
