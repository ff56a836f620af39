"""Issue 26, `mcdata import kraken-ohlcvt`: Kraken's OHLCVT archive files (made here in Kraken's exact format:
no header, timestamp,open,high,low,close,volume,trades, UTC seconds at the candle's open) in a folder and a
zip, mapped through the fake Kraken's catalog, on both databases."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata.cli import app
from mcdata.schema import candles, raw_prices, runs
from tests.fake_exchange import FakeExchange
from tests.helpers import count_rows, query

HOUR = timedelta(hours=1)
START = (datetime.now(UTC) - timedelta(days=60)).replace(minute=0, second=0, microsecond=0)


def ohlcvt(start: datetime, count: int, step: timedelta, base: float, skip: set[int] = frozenset()) -> str:
    """`count` candles from `start`, `step` apart, as Kraken writes them (an interval without trades has no
    row: `skip`)."""
    lines = []
    for i in range(count):
        if i in skip:
            continue
        o, c = base * (1 + i / 1000), base * (1 + i / 1000 + 0.0005)
        lines.append(f"{int((start + i * step).timestamp())},{o:.6f},{c * 1.01:.6f},{o * 0.99:.6f},{c:.6f},"
                     f"{1.25 + i},{3 + i}")
    return "\n".join(lines) + "\n"


def archive(folder: Path) -> Path:
    folder.mkdir()
    (folder / "XBTEUR_60.csv").write_text(ohlcvt(START, 48, HOUR, 50_000.0, skip={5, 6}))
    (folder / "XBTEUR_1440.csv").write_text(ohlcvt(START, 3, timedelta(days=1), 50_000.0))
    (folder / "XDGUSD_60.csv").write_text(ohlcvt(START, 24, HOUR, 0.1))
    (folder / "README.txt").write_text("Kraken's OHLCVT archive\n")  # not Kraken's data: left alone
    return folder


def test_an_archive_folder_is_imported_whole_and_twice_changes_nothing(env: str, runner: CliRunner,
                                                                       fake_exchange: FakeExchange,
                                                                       tmp_path: Path) -> None:
    folder = archive(tmp_path / "ohlcvt")
    result = runner.invoke(app, ["import", "kraken-ohlcvt", str(folder)])
    assert result.exit_code == 0, result.stderr
    assert "import: 73 candles and 70 hourly closes stored, of 2 pairs" in result.stderr
    stored = query(env, sa.select(candles).order_by(candles.c.pair, candles.c.interval_s, candles.c.open_time))
    hourly_btc = [r for r in stored if r.pair == "btceur" and r.interval_s == 3600]
    assert len(hourly_btc) == 46 and {r.pair for r in stored} == {"btceur", "dogeusd"}  # XBT is btc, XDG doge
    first = hourly_btc[0]
    line = (folder / "XBTEUR_60.csv").read_text().splitlines()[0].split(",")
    assert (first.open_time, first.open, first.high, first.low, first.close, first.volume, first.trades) == (
        datetime.fromtimestamp(int(line[0]), UTC), *(float(v) for v in line[1:6]), int(line[6]))
    assert len([r for r in stored if r.interval_s == 86_400]) == 3
    closes = {r.timestamp: r.price for r in query(env, sa.select(raw_prices).where(raw_prices.c.pair == "btceur"))}
    assert len(closes) == 46 and closes[START + HOUR] == float(line[4])  # the close at the close time
    assert START + 6 * HOUR not in closes  # no trades in that hour: no row, no sample
    assert max(r.fetched_at for r in stored) <= datetime.now(UTC)  # when it was stored, never later
    [run] = query(env, sa.select(runs).where(runs.c.command == "import"))
    assert (run.pairs_requested, run.pairs_stored, run.exit_code) == (2, 2, 0)  # btceur's two files are one pair
    assert runner.invoke(app, ["check"]).exit_code == 0  # the rollups agree with what was imported
    again = runner.invoke(app, ["import", "kraken-ohlcvt", str(folder)])
    assert again.exit_code == 0 and "import: 0 candles and 0 hourly closes stored" in again.stderr
    assert count_rows(env, candles) == len(stored) and count_rows(env, raw_prices) == 70


def test_a_zip_imports_like_its_folder(env: str, runner: CliRunner, fake_exchange: FakeExchange,
                                       tmp_path: Path) -> None:
    folder = archive(tmp_path / "ohlcvt")
    bundle = tmp_path / "Kraken_OHLCVT.zip"
    with zipfile.ZipFile(bundle, "w") as zipped:
        for file in folder.iterdir():
            zipped.write(file, f"Kraken_OHLCVT/{file.name}")
    result = runner.invoke(app, ["import", "kraken-ohlcvt", str(bundle)])
    assert result.exit_code == 0, result.stderr
    assert count_rows(env, candles) == 73


def test_what_the_api_stored_wins_and_a_disagreement_is_said(env: str, runner: CliRunner,
                                                             fake_exchange: FakeExchange, tmp_path: Path) -> None:
    assert runner.invoke(app, ["fetch", "--pairs", "btceur", "--backfill", "1d"]).exit_code == 0
    api = {r.open_time: r for r in query(env, sa.select(candles))}
    start = min(api)
    folder = tmp_path / "ohlcvt"
    folder.mkdir()
    (folder / "XBTEUR_60.csv").write_text(ohlcvt(start - 2 * HOUR, 4, HOUR, 7.0))  # 2 new hours, 2 stored ones
    result = runner.invoke(app, ["import", "kraken-ohlcvt", str(folder)])
    assert result.exit_code == 3, result.stderr
    assert "disagree with the archive (the stored ones are kept)" in result.stderr
    after = {r.open_time: r for r in query(env, sa.select(candles))}
    assert all(after[t] == api[t] for t in api)  # the API's candles are untouched
    assert len(after) == len(api) + 2


def test_a_file_that_is_not_kraken_ohlcvt_is_a_usage_error_and_nothing_is_written(
        env: str, runner: CliRunner, fake_exchange: FakeExchange, tmp_path: Path) -> None:
    folder = tmp_path / "ohlcvt"
    folder.mkdir()
    (folder / "XBTEUR_60.csv").write_text(ohlcvt(START, 3, HOUR, 100.0) + "1700000000,1,2,3\n")
    result = runner.invoke(app, ["import", "kraken-ohlcvt", str(folder)])
    assert result.exit_code == 2 and "XBTEUR_60.csv, line 4: 4 columns, not 7" in result.stderr
    assert count_rows(env, candles) == 0 and count_rows(env, raw_prices) == 0
    (folder / "XBTEUR_60.csv").unlink()
    (folder / "ZZZEUR_60.csv").write_text(ohlcvt(START, 3, HOUR, 100.0))
    unknown = runner.invoke(app, ["import", "kraken-ohlcvt", str(folder)])
    assert unknown.exit_code == 2 and "kraken lists none of ZZZEUR" in unknown.stderr
    assert runner.invoke(app, ["import", "kraken-ohlcvt", str(tmp_path / "nothing.txt")]).exit_code == 2


def test_an_import_brings_the_snapshots_that_read_its_hours_up_to_date(env: str, runner: CliRunner,
                                                                       fake_exchange: FakeExchange,
                                                                       tmp_path: Path) -> None:
    from mcdata.schema import metrics
    from tests.helpers import assert_metrics_exact

    assert runner.invoke(app, ["run", "--pairs", "btceur", "--backfill", "1d"]).exit_code == 0
    [as_of] = [t for (t,) in query(env, sa.select(sa.func.max(metrics.c.timestamp)))]
    folder = tmp_path / "ohlcvt"
    folder.mkdir()
    week_ago = as_of.replace(minute=0, second=0, microsecond=0) - timedelta(days=5)
    (folder / "XBTEUR_60.csv").write_text(ohlcvt(week_ago, 48, HOUR, 50_000.0))  # inside the snapshot's week
    result = runner.invoke(app, ["import", "kraken-ohlcvt", str(folder)])
    assert result.exit_code == 0, result.stderr
    assert "metric snapshot recomputed" in result.stderr
    assert_metrics_exact(env, as_of)


# Real opens of Kraken's XBTEUR hourly candles, as read from its XBTEUR_60.csv and quoted publicly
# (tomwijnroks/peildatum, sources/kraken.md: the first hour of each year, CET); the other columns of these
# rows are made up around them (not quoted), in the archive's exact layout.
REAL_XBTEUR_OPENS = {1514761200: "11993.6", 1546297200: "3235.9", 1577833200: "6397.4", 1609455600: "23814.8"}


def test_known_real_opens_are_stored_at_their_hours(env: str, runner: CliRunner, fake_exchange: FakeExchange,
                                                    tmp_path: Path) -> None:
    path = tmp_path / "XBTEUR_60.csv"
    path.write_text("".join(f"{t},{o},{float(o) * 1.002:.1f},{float(o) * 0.997:.1f},{float(o) * 1.001:.1f},"
                            f"12.34567891,{40 + i}\n" for i, (t, o) in enumerate(REAL_XBTEUR_OPENS.items())))
    result = runner.invoke(app, ["import", "kraken-ohlcvt", str(path)])
    assert result.exit_code == 0, result.stderr
    stored = {r.open_time: r.open for r in query(env, sa.select(candles).where(candles.c.pair == "btceur"))}
    assert stored == {datetime.fromtimestamp(t, UTC): float(o) for t, o in REAL_XBTEUR_OPENS.items()}
    assert datetime(2017, 12, 31, 23, tzinfo=UTC) in stored  # 2018-01-01 00:00 CET


def test_old_history_lands_in_its_months_and_prune_drops_them_whole(env: str, runner: CliRunner,
                                                                      fake_exchange: FakeExchange,
                                                                      tmp_path: Path) -> None:
    """An archive's years: on PostgreSQL each month of them gets its partition before the import writes
    (not the default partition, which prune could only empty row by row), in both tables; prune then
    drops those months whole. SQLite keeps one table: the same rows are stored and pruned."""
    from mcdata import partitions

    folder = tmp_path / "ohlcvt"
    folder.mkdir()
    old = datetime(2014, 3, 30, tzinfo=UTC)  # three months, each with rows: 2014-03, 04, 05
    (folder / "XBTEUR_60.csv").write_text(ohlcvt(old, 24 * 40, HOUR, 500.0))
    result = runner.invoke(app, ["import", "kraken-ohlcvt", str(folder)])
    assert result.exit_code == 0, result.stderr
    assert count_rows(env, raw_prices) == 24 * 40 and count_rows(env, candles) == 24 * 40
    months = {datetime(2014, m, 1, tzinfo=UTC) for m in (3, 4, 5)}
    engine = sa.create_engine(env.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            if partitions.is_partitioned(connection):
                for spec in partitions.TABLES:
                    assert months <= partitions.monthly(connection, spec).keys(), spec.table
                    in_default = connection.execute(sa.text(f"SELECT count(*) FROM {spec.default}")).scalar_one()
                    assert in_default == 0, spec.table
        pruned = runner.invoke(app, ["prune", "--keep", "365d"])
        assert pruned.exit_code == 0, pruned.stderr
        assert count_rows(env, raw_prices) == 0  # every imported close was older than a year
        with engine.connect() as connection:
            if partitions.is_partitioned(connection):  # dropped, not emptied
                assert not months & partitions.monthly(connection).keys()
            assert connection.execute(sa.text("SELECT count(*) FROM price_rollup_hourly")).scalar_one() == 24 * 40
    finally:
        engine.dispose()
