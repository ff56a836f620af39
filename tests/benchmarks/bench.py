"""mcdata at scale: ingest, compute, the hourly steady state and peak memory, against baselines.

    .venv/bin/python tests/benchmarks/bench.py            # the full run (PostgreSQL at 20.16M rows)
    .venv/bin/python tests/benchmarks/bench.py --quick    # a few minutes less: smaller data sets

Every figure is measured in the same run as its baseline, so the ratios hold on a noisy machine. It
creates (and drops) a scratch PostgreSQL database on MCDATA_BENCH_POSTGRES_URL (default: the local
server) and SQLite files in a temporary directory. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import compileall
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mcdata import metrics  # noqa: E402
from mcdata.db import make_engine, normalize_url  # noqa: E402
from mcdata.migrations import upgrade  # noqa: E402
from mcdata.schema import raw_prices  # noqa: E402
from mcdata.store import PriceRow, insert_prices  # noqa: E402
from tests.fake_exchange import FakeExchange  # noqa: E402

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
RESULTS: list[tuple[str, str, str, str]] = []  # what, figure, target, verdict


def report(what: str, figure: str, target: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("met" if ok else "MISSED")
    RESULTS.append((what, figure, target, verdict))
    print(f"  {what}: {figure}" + (f"  (target {target}: {verdict})" if target else ""), flush=True)


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


# -- databases ----------------------------------------------------------------------------------
class Scratch:
    """A fresh PostgreSQL database, dropped on exit."""

    def __init__(self, server_url: str) -> None:
        self.admin = sa.create_engine(normalize_url(server_url), isolation_level="AUTOCOMMIT")
        self.name = f"mcdata_bench_{secrets.token_hex(3)}"
        self.url = normalize_url(server_url).set(database=self.name).render_as_string(hide_password=False)

    def __enter__(self) -> str:
        with self.admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        return self.url

    def __exit__(self, *exc: object) -> None:
        with self.admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def migrated(url: str) -> sa.Engine:
    engine = make_engine(url)
    upgrade(engine)
    return engine


# -- 1. ingest ----------------------------------------------------------------------------------
def backfill_rows(pairs: int, minutes: int, end: datetime = NOW) -> Iterator[PriceRow]:
    start = end - timedelta(minutes=minutes)
    for p in range(pairs):
        for m in range(minutes):
            ts = start + timedelta(minutes=m)
            yield PriceRow("kraken", f"b{p:04d}usd", ts, 100.0 + p + (m % 97) / 10, None, "candle", NOW)


def bench_ingest(label: str, url: str, rows: int, baseline_rows: int) -> None:
    engine = migrated(url)
    pairs = 100
    with engine.begin() as connection:  # warm-up: staging table, caches
        insert_prices(connection, [replace(row, pair="warmup") for row in backfill_rows(1, 10)])
    shift = timedelta(minutes=rows // pairs // 10)  # the overlap run below moves the rows this much later
    data = list(backfill_rows(pairs, rows // pairs, end=NOW - shift))  # made before the clock starts
    seconds = timed(lambda: _ingest(engine, iter(data)))
    bulk = rows / seconds
    baseline_data = list(backfill_rows(1, baseline_rows))
    statement = raw_prices.insert()

    def row_by_row() -> None:
        for row in baseline_data:
            with engine.begin() as connection:
                connection.execute(statement, {**{c: getattr(row, c) for c in row.__slots__}, "pair": "zbaseline"})

    baseline = baseline_rows / timed(row_by_row)
    # the same rows again with the newest 10% new: rows stored already send the batch through staging
    overlap = [replace(row, timestamp=row.timestamp + shift) for row in data]  # ends at NOW: no future row
    overlapping = rows / timed(lambda: _ingest(engine, iter(overlap)))
    engine.dispose()
    report(f"{label} ingest, {rows:,}-row backfill", f"{bulk:,.0f} rows/s ({seconds:.1f} s)",
           ">= 200,000 rows/s" if label == "PostgreSQL" else "", bulk >= 200_000 if label == "PostgreSQL" else None)
    report(f"{label} row-by-row, commit per row (baseline)", f"{baseline:,.0f} rows/s")
    report(f"{label} ingest speed-up", f"{bulk / baseline:,.0f}x", ">= 40x" if label == "PostgreSQL" else "",
           bulk / baseline >= 40 if label == "PostgreSQL" else None)
    report(f"{label} ingest of {rows:,} rows, 90% of them stored already", f"{overlapping:,.0f} rows/s")


def _ingest(engine: sa.Engine, rows: Iterator[PriceRow]) -> None:
    with engine.begin() as connection:
        insert_prices(connection, rows)


# -- 2. compute ---------------------------------------------------------------------------------
def fill_minutes(engine: sa.Engine, pairs: int, days: int = 7, chunk: timedelta = timedelta(hours=2)) -> int:
    """pairs x days of 1-minute samples, generated inside the database (through the rollup trigger) in time
    order, every pair's sample of one minute beside the others', as an every-minute fetch writes them."""
    start = NOW - timedelta(days=days)
    while start < NOW:
        end = min(NOW, start + chunk)
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(sa.text("""
                    INSERT INTO raw_crypto_pair_price_history (exchange, pair, timestamp, price, kind, fetched_at)
                    SELECT 'kraken', 'c' || lpad(p::text, 4, '0') || 'usd', ts,
                           100 + p + 5 * sin(extract(epoch FROM ts) / 3600 + p), 'candle', ts
                    FROM generate_series(CAST(:start AS timestamptz) + interval '1 minute',
                                         CAST(:end AS timestamptz), interval '1 minute') ts,
                         generate_series(0, CAST(:pairs AS integer) - 1) p
                    ORDER BY ts, p"""), {"start": start, "end": end, "pairs": pairs})
            else:
                connection.execute(sa.text("""
                    WITH RECURSIVE p(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM p WHERE i < :pairs - 1),
                    m(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM m WHERE j < :minutes)
                    INSERT INTO raw_crypto_pair_price_history (exchange, pair, timestamp, price, kind, fetched_at)
                    SELECT 'kraken', 'c' || substr('0000' || i, -4) || 'usd',
                           strftime('%Y-%m-%d %H:%M:%S.000000', :start, '+' || j || ' minutes'),
                           100 + i + 5 * sin(j / 60.0 + i), 'candle', :start
                    FROM m, p ORDER BY j, i"""),
                    {"pairs": pairs, "minutes": (end - start) // timedelta(minutes=1),
                     "start": start.replace(tzinfo=None).isoformat(" ")})
        start = end
    if engine.dialect.name == "postgresql":  # what autovacuum does to a table this size in production
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE"))
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(raw_prices)).scalar_one())


def bench_compute(label: str, url: str, pairs: int, target_ms: float | None) -> None:
    engine = migrated(url)
    started = time.perf_counter()
    stored = fill_minutes(engine, pairs)
    print(f"  ({label}: {stored:,} rows generated in {time.perf_counter() - started:.0f} s)", flush=True)

    def run(as_of: datetime, from_raw: bool = False) -> float:
        with engine.begin() as connection:
            return timed(lambda: metrics.compute(connection, as_of, from_raw=from_raw))

    run(NOW)  # warm the caches
    rollup = statistics.median(run(NOW) for _ in range(5))
    # recomputing the past: the as-of time falls inside an hour with later samples, so the hours that
    # hold the window's edges are read from the raw table (the worst case)
    past = NOW - timedelta(days=1, minutes=29, seconds=30)
    inside = statistics.median(run(past) for _ in range(3))
    raw = statistics.median(run(NOW, from_raw=True) for _ in range(2))
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM crypto_pair_metrics")).scalar_one()
    engine.dispose()
    report(f"{label} compute, {pairs:,} pairs x 7 days of 1-minute samples ({stored / 1e6:.2f}M rows)",
           f"{rollup * 1000:,.0f} ms", f"<= {target_ms:.0f} ms" if target_ms else "",
           rollup * 1000 <= target_ms if target_ms else None)
    report(f"{label} compute from the raw table (baseline)", f"{raw * 1000:,.0f} ms")
    report(f"{label} compute speed-up", f"{raw / rollup:,.1f}x", ">= 10x", raw / rollup >= 10)
    report(f"{label} compute of a past as-of time inside an hour (edge hours read raw)", f"{inside * 1000:,.0f} ms")
    assert count > 0


def fill_hours(engine: sa.Engine, venues: int, pairs: int, days: int, end: datetime) -> int:
    """venues x pairs markets with an hourly sample each (a candle close on the hour) for `days` days up to
    `end`, inserted through the rollup trigger hour by hour as hourly fetches write them."""
    for hours_before in range(days * 24 - 1, -1, -1):
        with engine.begin() as connection:
            connection.execute(sa.text("""
                INSERT INTO raw_crypto_pair_price_history (exchange, pair, timestamp, price, kind, fetched_at)
                SELECT 'venue' || v, 'c' || lpad(p::text, 4, '0') || 'usd', ts,
                       100 + p + 5 * sin(extract(epoch FROM ts) / 3600 + p + v), 'candle', ts
                FROM (SELECT CAST(:ts AS timestamptz) AS ts) hour,
                     generate_series(0, CAST(:venues AS integer) - 1) v,
                     generate_series(0, CAST(:pairs AS integer) - 1) p
                ORDER BY v, p"""), {"ts": end - timedelta(hours=hours_before), "venues": venues, "pairs": pairs})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(raw_prices)).scalar_one())


DUCKDB_METRICS = """
SELECT exchange, pair, arg_max(price, timestamp) AS latest_price,
       avg(price) FILTER (WHERE timestamp > $week_start) AS weekly_average,
       min(price) FILTER (WHERE timestamp > $week_start) AS min_price,
       max(price) FILTER (WHERE timestamp > $week_start) AS max_price,
       stddev_samp(price) FILTER (WHERE timestamp > $day_start) AS stddev_24h
FROM raw WHERE timestamp <= $as_of GROUP BY exchange, pair"""


def duckdb_peer(engine: sa.Engine, as_of: datetime, tmp: Path) -> float | None:
    """DuckDB (in memory) scanning the same raw rows with one GROUP BY: what a user could pick instead.
    The rows are copied out of PostgreSQL first (not timed). None without the bench extra."""
    try:
        import duckdb
    except ImportError:
        return None
    export = tmp / "raw.csv"
    with engine.connect() as connection, export.open("wb") as out:
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy("COPY (SELECT exchange, pair, timestamp, price FROM raw_crypto_pair_price_history) "
                         "TO STDOUT WITH (FORMAT csv)") as copy:
            for chunk in copy:
                out.write(chunk)
    database = duckdb.connect()
    database.execute(f"CREATE TABLE raw AS SELECT * FROM read_csv('{export}', header = false, "
                     "columns = {'exchange': 'VARCHAR', 'pair': 'VARCHAR', 'timestamp': 'TIMESTAMPTZ', "
                     "'price': 'DOUBLE'})")
    window = {"as_of": as_of, "week_start": as_of - metrics.WEEK, "day_start": as_of - metrics.DAY}
    database.execute(DUCKDB_METRICS, window).fetchall()  # warm
    seconds = statistics.median(timed(lambda: database.execute(DUCKDB_METRICS, window).fetchall()) for _ in range(5))
    database.close()
    export.unlink()
    return seconds


def bench_compute_hourly(url: str, venues: int, pairs: int, tmp: Path) -> None:
    """Many markets sampled hourly (several venues): compute at 30 minutes past the newest hour, which
    falls at noon UTC, so both windows' starts lie inside a day (an hour, two two-hour blocks and a quarter
    to read after each)."""
    engine = migrated(url)
    end = NOW.replace(hour=12, minute=0) - (timedelta(days=1) if NOW.hour < 12 else timedelta())
    started = time.perf_counter()
    stored = fill_hours(engine, venues, pairs, days=8, end=end)
    markets = venues * pairs
    print(f"  (PostgreSQL: {stored:,} hourly rows of {markets:,} markets generated in "
          f"{time.perf_counter() - started:.0f} s)", flush=True)

    def run(as_of: datetime, from_raw: bool = False) -> float:
        with engine.begin() as connection:
            return timed(lambda: metrics.compute(connection, as_of, from_raw=from_raw))

    as_of = end + timedelta(minutes=30)
    run(as_of)  # warm the caches
    # a new as-of time each run, as each hourly run has
    rollup = statistics.median(run(as_of + timedelta(seconds=s)) for s in range(1, 6))
    raw = statistics.median(run(as_of + timedelta(seconds=s), from_raw=True) for s in range(10, 12))
    peer = duckdb_peer(engine, as_of, tmp)
    engine.dispose()
    label = f"{markets:,} markets ({venues} venues) x 8 days hourly ({stored / 1e6:.2f}M rows)"
    report(f"PostgreSQL compute, {label}", f"{rollup * 1000:,.0f} ms", "<= 300 ms", rollup <= 0.3)
    report("PostgreSQL compute from the raw table (baseline)", f"{raw * 1000:,.0f} ms")
    report("PostgreSQL compute speed-up at that scale", f"{raw / rollup:,.1f}x", ">= 15x", raw / rollup >= 15)
    report("DuckDB, one GROUP BY over the same raw rows in memory (peer)",
           "not installed (pip install '.[bench]')" if peer is None else f"{peer * 1000:,.0f} ms")
    bench_show(url, markets, tmp)


def bench_show(url: str, markets: int, tmp: Path) -> None:
    """The read side at that scale, each command in a child process (time includes its start-up, as a
    user sees it; the median of three runs), against the start-up alone: `mcdata COMMAND --help` (Python,
    typer and the command's options, parsed, nothing else) and the import of the database libraries."""
    env = {**os.environ, "MCDATA_DATABASE_URL": url, "MCDATA_CACHE_DIR": str(tmp / "cache-show"), "COLUMNS": "200"}
    for args, target_s, target_mb in ((["show"], 1.5, 150), (["show", "--all"], None, None),
                                      (["show", "json"], 2.0, 150), (["show", "--exchange", "venue3"], 0.5, None),
                                      (["show", "c0003usd", "--exchange", "venue3"], None, None),
                                      (["status", "--exchange", "venue3"], None, None)):
        code, wall, rss = mcdata_median(["--quiet", *args], env, runs=1 if "--all" in args else 3)
        target = " and ".join(t for t in (f"<= {target_s} s" if target_s else "",
                                          f"<= {target_mb} MB" if target_mb else "") if t)
        ok = None if not target else (wall <= (target_s or wall) and rss / 1024 <= (target_mb or rss))
        report(f"`mcdata {' '.join(args)}`, {markets:,} markets", f"{wall:.2f} s, {rss / 1024:.0f} MB (exit {code})",
               target, ok)
    bench_compute_cli(env, markets)


def bench_compute_cli(env: dict[str, str], markets: int) -> None:
    """`mcdata compute` as cron runs it, and the same command taken apart in one child process: the
    imports it needs beyond the CLI's, the job (connection, head check, lock, partitions, runs row) and
    the metric statement inside it. The start-up is `mcdata compute --help` and typer's pydantic import for
    the options, which --help skips."""
    _, help_wall, _ = mcdata_median(["compute", "--help"], env)
    startup = help_wall + import_seconds("import mcdata.cli", "import typer._adapters")
    code, wall, _ = mcdata_median(["--quiet", "compute"], env)
    parts = [compute_parts(env) for _ in range(3)]
    imports, stack, job, statement = (statistics.median(p[i] for p in parts) for i in range(4))
    beyond = wall - startup
    report(f"`mcdata compute`, {markets:,} markets", f"{wall:.2f} s (exit {code})")
    report("  its start-up (`mcdata compute --help`, and typer's pydantic for the options)", f"{startup * 1000:.0f} ms")
    report("  beyond the start-up", f"{beyond * 1000:.0f} ms", "<= 350 ms", beyond <= 0.35)
    report("    the imports it needs beyond the CLI's (SQLAlchemy, psycopg, mcdata's SQL)", f"{imports * 1000:.0f} ms")
    report("    the metric statement", f"{statement * 1000:.0f} ms")
    report("    the rest of the job: connection, head check, lock, partitions, runs row",
           f"{(job - statement) * 1000:.0f} ms")
    # What no implementation of the command avoids: the fixed stack's imports, the rows it must write, the
    # job around the statement. The rest of the 350 ms is what reading and ranking both windows may take.
    write = writing_alone(env["MCDATA_DATABASE_URL"])
    floor = stack + write + (job - statement)
    report("    of the imports: SQLAlchemy, psycopg and SQLAlchemy's dialect for it", f"{stack * 1000:.0f} ms")
    report(f"    of the statement: writing the {markets:,} rows alone (nothing read or computed)",
           f"{write * 1000:.0f} ms")
    report("  the floor (those three and the rest of the job); left of 350 ms for reading and ranking",
           f"{floor * 1000:.0f} ms; {(0.35 - floor) * 1000:.0f} ms "
           f"(the statement takes {(statement - write) * 1000:.0f} ms)")
    report("    reading the rollup rows both windows need, grouped by market, nothing else (one query)",
           f"{reading_alone(env['MCDATA_DATABASE_URL']) * 1000:.0f} ms")


def writing_alone(url: str) -> float:
    """The median seconds PostgreSQL takes to insert one metric row per market, each taken from the markets
    list without reading a price: the write the compute statement ends with, on its own."""
    columns = ", ".join(metrics.METRIC_COLUMNS)
    placeholders = "m.last_price, m.last_at, m.last_price, m.last_price, m.last_price, 0.0, 1, 0.0, 1, 0.0, 1, 1"
    statement = sa.text(f"INSERT INTO crypto_pair_metrics ({columns}) "
                        f"SELECT :at, m.exchange, m.pair, {placeholders}, :at FROM markets m")
    # after every snapshot, as a new one is: appended to the key
    return rolled_back(url, statement, {"at": datetime.now(UTC) + timedelta(days=1)})


def reading_alone(url: str) -> float:
    """The median seconds PostgreSQL takes to read every rollup row both windows of an as-of time of now
    need (the week's whole days and T's day, the quarters and hours after each window's start) and group
    them by market in one aggregate, nothing joined, ranked or written: less than the statement can do."""
    level = "SELECT exchange, pair, samples, ref_price, mean_offset, m2, min_price, max_price FROM "
    statement = sa.text(f"""
        SELECT COUNT(*) FROM (
            SELECT exchange, pair, SUM(samples), SUM(samples * (ref_price + mean_offset)), SUM(m2),
                   MIN(min_price), MAX(max_price)
            FROM ({level} price_rollup_daily WHERE day > :week_start_day AND day <= :as_of_day
                  UNION ALL {level} price_rollup_quarterly WHERE quarter > :week_start_quarter
                    AND quarter < :week_start_day_end
                  UNION ALL {level} price_rollup_hourly WHERE hour > :week_start_hour
                    AND hour < :week_start_two_hour_end
                  UNION ALL {level} price_rollup_quarterly WHERE quarter > :day_start_quarter
                    AND quarter < :day_start_day_end
                  UNION ALL {level} price_rollup_hourly WHERE hour >= :day_start_hour
                    AND hour < :day_start_two_hour_end) parts
            GROUP BY exchange, pair) markets""")
    return rolled_back(url, statement, metrics.window_bounds(datetime.now(UTC)))


def rolled_back(url: str, statement: sa.TextClause, parameters: Mapping[str, object]) -> float:
    """The median seconds of `statement` over five runs after a warm-up, each in a transaction rolled back,
    with the planner settings compute uses."""
    engine = make_engine(url)
    spent = []
    with engine.connect() as connection:
        for _ in range(6):
            with connection.begin() as transaction:
                connection.execute(metrics.PLANNER_SETTINGS)
                spent.append(timed(lambda: connection.execute(statement, parameters)))
                transaction.rollback()
    engine.dispose()
    return statistics.median(spent[1:])


COMPUTE_PARTS = """
import sys, time
import mcdata.cli, typer._adapters
loaded = time.perf_counter()
import psycopg, sqlalchemy.dialects.postgresql.psycopg
stack = time.perf_counter() - loaded
import mcdata.jobs.maintain as maintain, mcdata.metrics as metrics
imports = time.perf_counter() - loaded
spent = {}
def timed(module, name, key):
    work = getattr(module, name)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return work(*args, **kwargs)
        finally:
            spent[key] = time.perf_counter() - started
    setattr(module, name, wrapper)
timed(metrics, "compute", "statement")
timed(maintain, "compute", "job")
sys.argv = ["mcdata", "--quiet", "compute"]
try:
    mcdata.cli.main()
except SystemExit as exit:
    assert not exit.code, exit.code
print(imports, stack, spent["job"], spent["statement"])
"""


def compute_parts(env: dict[str, str]) -> tuple[float, float, float, float]:
    """One `mcdata compute` in a child process, timed inside: (imports, the fixed stack's share of them,
    job, statement) in seconds."""
    done = subprocess.run([sys.executable, "-c", COMPUTE_PARTS], env=env, capture_output=True, text=True,
                          check=True, cwd=ROOT)
    imports, stack, job, statement = (float(figure) for figure in done.stdout.split())
    return imports, stack, job, statement


def import_seconds(before: str, imports: str) -> float:
    """The median time Python takes for `imports` after `before`, each in a child process."""
    def child(source: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", source], check=True, cwd=ROOT)
        return time.perf_counter() - started
    return statistics.median(child(f"{before}; {imports}") - child(before) for _ in range(5))


# -- 3. the hourly steady state ------------------------------------------------------------------
def mcdata(args: list[str], env: dict[str, str]) -> tuple[int, float, int]:
    """Run mcdata in a child process: (exit code, wall seconds, peak RSS in KiB)."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec from the (large) parent
    probe = ("import runpy, sys; sys.argv = ['mcdata', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('mcdata', run_name='__main__')\n"
             "except SystemExit as exit:\n    code = exit.code\nelse:\n    code = 0\n"
             "hwm = next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
             "print(hwm, code, file=sys.stderr)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - started
    rss, code = done.stderr.strip().splitlines()[-1].split()
    return int(code or 0), wall, int(rss)


def mcdata_median(args: list[str], env: dict[str, str], runs: int = 3) -> tuple[int, float, int]:
    """mcdata() `runs` times: the last exit code, the median wall seconds, the largest peak RSS."""
    done = [mcdata(args, env) for _ in range(runs)]
    return done[-1][0], statistics.median(wall for _, wall, _ in done), max(rss for _, _, rss in done)


def second_run(exchange: FakeExchange, env: dict[str, str]) -> tuple[int, float, int, int]:
    """The hourly run after a first one (schema, pair or market lists cached): exit code, wall seconds,
    peak RSS in KiB, HTTP requests."""
    code, _, _ = mcdata(["--quiet", "run", "--backfill", "0"], env)
    assert code == 0, code
    time.sleep(1)
    before = len(exchange.requests)
    # the same --backfill as the first run: a longer one would (rightly) backfill every pair now
    code, wall, rss = mcdata(["--quiet", "run", "--backfill", "0"], env)
    return code, wall, rss, len(exchange.requests) - before


def bench_steady_state(server_url: str, pairs: int, tmp: Path) -> None:
    with FakeExchange(latency=0.05, synthetic_markets=pairs) as exchange, Scratch(server_url) as url:
        env = {**os.environ, "MCDATA_DATABASE_URL": url, "MCDATA_API_URL": exchange.url,
               "MCDATA_CACHE_DIR": str(tmp / "cache"), "MCDATA_PAIRS": "all"}
        code, wall, rss_run, requests = second_run(exchange, env)
        listed = sum(1 for m in exchange.markets.values() if m.status == "online" and "." not in m.pair)
        report(f"steady-state `mcdata run`, {listed:,} pairs, 50 ms per request", f"{wall:.2f} s (exit {code})",
               "<= 3 s", wall <= 3 and code == 0)
        report("HTTP requests of that run", str(requests), "<= 2", requests <= 2)
        return_rss(url, env, rss_run, "small database")


def bench_steady_state_venues(server_url: str, pairs: int, tmp: Path) -> None:
    """The hourly run over three ccxt venues (Binance, Bitstamp, Coinbase replayed) of `pairs` markets each,
    50 ms per request: one ticker request per venue once the market lists are cached."""
    venues = "binance,bitstamp,coinbase"
    with FakeExchange(latency=0.05, synthetic_markets=pairs) as exchange, Scratch(server_url) as url:
        env = {**os.environ, "MCDATA_DATABASE_URL": url, "MCDATA_API_URL": exchange.url, "MCDATA_SOURCE": "ccxt",
               "MCDATA_EXCHANGE": venues, "MCDATA_CACHE_DIR": str(tmp / "cache-venues"), "MCDATA_PAIRS": "all"}
        code, wall, rss, requests = second_run(exchange, env)
    markets = sum(len(v) for v in (exchange.venues.binance["symbols"], exchange.venues.bitstamp["markets"],
                                   exchange.venues.coinbase["products"]))
    report(f"steady-state `mcdata run --source ccxt`, 3 venues, {markets:,} markets, 50 ms per request",
           f"{wall:.2f} s (exit {code})", "<= 5 s", wall <= 5 and code == 0)
    report("HTTP requests of that run", str(requests), "3 (one per venue)", requests == 3)
    report("peak RSS of that run (ccxt loaded)", f"{rss / 1024:.0f} MB", "<= 200 MB", rss / 1024 <= 200)


def return_rss(url: str, env: dict[str, str], rss_run: int, label: str) -> None:
    _, _, rss_compute = mcdata(["compute"], env)
    report(f"peak RSS of run (fetch + compute), {label}", f"{rss_run / 1024:.0f} MB", "<= 200 MB",
           rss_run / 1024 <= 200)
    report(f"peak RSS of compute, {label}", f"{rss_compute / 1024:.0f} MB", "<= 200 MB", rss_compute / 1024 <= 200)


def bench_memory_flat(url: str, tmp: Path, stored: str) -> None:
    """Peak RSS of fetch and compute on the big database: flat in the number of stored rows."""
    with FakeExchange(synthetic_markets=0) as exchange:
        env = {**os.environ, "MCDATA_DATABASE_URL": url, "MCDATA_API_URL": exchange.url,
               "MCDATA_CACHE_DIR": str(tmp / "cache-big"), "MCDATA_RATE_LIMIT": "100"}
        code, _, rss_fetch = mcdata(["--quiet", "fetch"], env)
        assert code in (0, 3), code
        _, _, rss_compute = mcdata(["compute"], env)
    report(f"peak RSS of fetch (9 pairs, 7-day backfill), {stored}-row database", f"{rss_fetch / 1024:.0f} MB",
           "<= 200 MB", rss_fetch / 1024 <= 200)
    report(f"peak RSS of compute, {stored}-row database", f"{rss_compute / 1024:.0f} MB", "<= 200 MB",
           rss_compute / 1024 <= 200)


def bench_import(server_url: str, tmp: Path) -> None:
    """`mcdata import kraken-ohlcvt` of a year of one pair hourly (8,760 candles), against storing the same
    closes alone with insert_prices (the raw ingest), in the same run."""
    from mcdata.clock import utc_now
    from mcdata.config import load_settings
    from mcdata.jobs.history_import import import_kraken_ohlcvt
    from mcdata.sources.kraken import KrakenSource

    start = (NOW - timedelta(days=400)).replace(minute=0)
    folder = tmp / "ohlcvt"
    folder.mkdir()
    hours = [start + timedelta(hours=i) for i in range(8760)]
    (folder / "XBTEUR_60.csv").write_text("".join(
        f"{int(t.timestamp())},{50_000 + i / 10:.2f},{50_001 + i / 10:.2f},{49_999 + i / 10:.2f},"
        f"{50_000.05 + i / 10:.2f},1.5,{i % 40}\n" for i, t in enumerate(hours)))
    with FakeExchange() as exchange, Scratch(server_url) as url, Scratch(server_url) as baseline_url:
        settings = load_settings({"database_url": url}, env={"MCDATA_API_URL": exchange.url,
                                                              "MCDATA_CACHE_DIR": str(tmp / "cache")})
        migrated(url).dispose()
        KrakenSource.create(settings, utc_now).catalog()  # the day-long pair cache, as an import finds it
        took = timed(lambda: import_kraken_ohlcvt(settings, [folder]))
        again = timed(lambda: import_kraken_ohlcvt(settings, [folder]))
        engine = migrated(baseline_url)
        rows = [PriceRow("kraken", "btceur", t + timedelta(hours=1), 50_000.05 + i / 10, 1.5, "candle", NOW)
                for i, t in enumerate(hours)]
        with engine.begin() as connection:
            closes = timed(lambda: insert_prices(connection, rows))
        engine.dispose()
    report("import a year of one pair hourly (PostgreSQL)", f"{took:.2f} s, again {again:.2f} s "
           f"({took / closes:.1f}x storing the closes alone: {closes:.2f} s)", "< 1 s", took < 1.0)


# -- 6. export -----------------------------------------------------------------------------------
def fill_candles(url: str, markets: int, hours: int) -> int:
    """`markets` markets of `hours` hourly candles each (and one raw close each, so that the markets list
    names them), by the server itself."""
    engine = migrated(url)
    start = (NOW - timedelta(hours=hours + 1)).replace(minute=0)
    values = {"markets": markets, "hours": hours, "start": start}
    pair = "'p' || lpad(m::text, 5, '0') || 'usd'"
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO candles (exchange, pair, interval_s, open_time, open, high, low, close, vwap, volume, trades,"
            f" fetched_at) SELECT 'kraken', {pair}, 3600, :start + h * interval '1 hour', 100 + m + h / 1000.0, "
            "101 + m + h / 1000.0, 99 + m + h / 1000.0, 100.5 + m + h / 1000.0, NULL, 1.5, 10, now() "
            "FROM generate_series(1, :markets) m, generate_series(0, :hours - 1) h"), values)
        connection.execute(sa.text(
            "INSERT INTO raw_crypto_pair_price_history (exchange, pair, timestamp, price, volume, kind, fetched_at) "
            f"SELECT 'kraken', {pair}, :start + interval '1 hour', 100.5 + m, 1.5, 'candle', now() "
            "FROM generate_series(1, :markets) m"), values)
    engine.dispose()
    return markets * hours


def copy_baseline(url: str) -> float:
    """The database's own fastest read of the same rows: COPY of the ordered candles to nowhere."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        started = time.perf_counter()
        with connection.cursor().copy("COPY (SELECT * FROM candles ORDER BY exchange, pair, open_time) TO STDOUT") \
                as copy:
            for _ in copy:
                pass
        return time.perf_counter() - started


def bench_export(server_url: str, tmp: Path, small: int, big: int) -> None:
    """`mcdata export all` of a year of hourly candles per market, at two sizes: its peak RSS stays flat
    (rows stream), its time against the COPY baseline of the same rows."""
    rss: dict[int, int] = {}
    for markets in (small, big):
        with Scratch(server_url) as url:
            rows = fill_candles(url, markets, 8760)
            env = {**os.environ, "MCDATA_DATABASE_URL": url}
            code, wall, rss[markets] = mcdata(["--quiet", "export", "all", "-f", "parquet", "-o",
                                               str(tmp / f"export-{markets}.parquet")], env)
            baseline = copy_baseline(url)
            size = (tmp / f"export-{markets}.parquet").stat().st_size
            report(f"export {markets:,} markets x a year hourly ({rows / 1e6:.2f}M candles) to Parquet",
                   f"{wall:.1f} s, {rows / wall / 1e3:,.0f}k rows/s (exit {code}; {wall / baseline:.1f}x the "
                   f"database's own COPY of the rows: {baseline:.1f} s), {size / 1e6:.0f} MB file")
            if markets == big:
                code, wall, rss_ft = mcdata(["--quiet", "export", "all", "--layout", "freqtrade", "-o",
                                             str(tmp / "freqtrade")], env)
                report(f"export the same in freqtrade's layout ({markets:,} Feather files)",
                       f"{wall:.1f} s (exit {code}), peak RSS {rss_ft / 1024:.0f} MB", "<= 300 MB",
                       rss_ft / 1024 <= 300)
    report(f"peak RSS of the export, {small:,} and {big:,} markets", f"{rss[small] / 1024:.0f} MB and "
           f"{rss[big] / 1024:.0f} MB ({rss[big] / rss[small]:.2f}x for {big // small}x the rows)",
           "<= 300 MB, flat", rss[big] / 1024 <= 300)


# -- 7. prune with and without partitions ----------------------------------------------------------
def bench_prune(server_url: str, venues: int, pairs: int) -> None:
    """The same 40 days of hourly rows in a table as revision 0011 left it and in the monthly partitions
    revision 0012 converts it to (the conversion timed too); prune to this month's start in both."""
    from mcdata import store
    from mcdata.partitions import month_start

    with Scratch(server_url) as plain_url:
        engine = make_engine(plain_url)
        upgrade(engine, "0011")
        stored = fill_hours(engine, venues, pairs, days=40, end=NOW.replace(minute=0))
        engine.dispose()
        name = sa.make_url(plain_url).database
        with Scratch(server_url) as partitioned_url:
            admin = sa.create_engine(normalize_url(server_url), isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE "{sa.make_url(partitioned_url).database}"'))
                connection.execute(sa.text(f'CREATE DATABASE "{sa.make_url(partitioned_url).database}" '
                                           f'TEMPLATE "{name}"'))
            admin.dispose()
            engine = make_engine(partitioned_url)
            converted = timed(lambda: upgrade(engine))
            cut = month_start(NOW)
            times = {}
            for label, url in (("partitioned", partitioned_url), ("one table", plain_url)):
                engine = make_engine(url)
                with engine.begin() as connection:
                    started = time.perf_counter()
                    deleted = store.prune(connection, cut)
                    times[label] = time.perf_counter() - started
                engine.dispose()
    report(f"revision 0012 converting {stored / 1e6:.2f}M raw rows into monthly partitions", f"{converted:.1f} s")
    report(f"prune of {deleted:,} rows (the months before this one), monthly partitions",
           f"{times['partitioned']:.2f} s ({times['one table'] / times['partitioned']:.0f}x faster than "
           f"deleting them from one table: {times['one table']:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data sets (a sanity check, not the targets)")
    args = parser.parse_args()
    # as `pip install .` leaves it: the child processes timed below read bytecode, not source
    compileall.compile_dir(ROOT / "mcdata", quiet=1)
    server = os.environ.get("MCDATA_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres")
    pg_pairs, sqlite_pairs, ingest_rows = (200, 20, 200_000) if args.quick else (2000, 200, 1_000_000)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        print("1. ingest", flush=True)
        with Scratch(server) as url:
            bench_ingest("PostgreSQL", url, ingest_rows, 2000)
        bench_ingest("SQLite", f"sqlite:///{tmp / 'ingest.db'}", ingest_rows, 2000)
        print("2. compute", flush=True)
        with Scratch(server) as url:
            bench_compute("PostgreSQL", url, pg_pairs, 300)
            print("4. memory", flush=True)
            bench_memory_flat(url, tmp, f"{pg_pairs * 10_080 / 1e6:.2f}M")
        bench_compute("SQLite", f"sqlite:///{tmp / 'compute.db'}", sqlite_pairs, None)
        venues, venue_pairs = (2, 500) if args.quick else (10, 2000)
        with Scratch(server) as url:
            bench_compute_hourly(url, venues, venue_pairs, tmp)
        print("3. steady state", flush=True)
        bench_steady_state(server, 2000, tmp)
        bench_steady_state_venues(server, 1000, tmp)
        print("5. history import", flush=True)
        bench_import(server, tmp)
        print("6. export", flush=True)
        bench_export(server, tmp, *((5, 50) if args.quick else (20, 200)))
        print("7. prune", flush=True)
        bench_prune(server, *((2, 100) if args.quick else (2, 1000)))
    width = max(len(r[0]) for r in RESULTS)
    print("\n| measurement | figure | target | |\n|---|---|---|---|")
    for what, figure, target, verdict in RESULTS:
        print(f"| {what:<{width}} | {figure} | {target} | {verdict} |")


if __name__ == "__main__":
    main()
