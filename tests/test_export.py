"""Issue 26, `mcdata export`: candles (or closes where a market has only closes) as CSV, Parquet and Feather,
and freqtrade's layout, checked against the archive files they were imported from (the exact reference),
on both databases; the Feather files are also read by freqtrade's own loader where it is installed
(.ci/run installs it in a venv of its own: MCDATA_TEST_FREQTRADE_PYTHON)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.feather as feather
import pyarrow.parquet as parquet
import pytest
from typer.testing import CliRunner

from mcdata import export as exporting
from mcdata.cli import app
from tests.fake_exchange import FakeExchange
from tests.test_history_import import HOUR, START, ohlcvt

ARCHIVE_ROWS = 30
FREQTRADE_PYTHON = os.environ.get("MCDATA_TEST_FREQTRADE_PYTHON")  # read before the fixtures hide MCDATA_*


def archive_rows(path: Path) -> list[tuple[datetime, float, float, float, float, float, int]]:
    """The archive file's candles as Kraken wrote them: the reference every export is checked against."""
    return [(datetime.fromtimestamp(int(t), UTC), float(o), float(h), float(low), float(c), float(v), int(n))
            for t, o, h, low, c, v, n in csv.reader(path.read_text().splitlines())]


@pytest.fixture
def stored(env: str, runner: CliRunner, fake_exchange: FakeExchange, tmp_path: Path) -> dict[str, Path]:
    """btceur and dogeusd imported from an archive (btceur with a no-trade hour), etheur with two closes
    only (`prices set`)."""
    folder = tmp_path / "ohlcvt"
    folder.mkdir()
    (folder / "XBTEUR_60.csv").write_text(ohlcvt(START, ARCHIVE_ROWS, HOUR, 50_000.0, skip={4}))
    (folder / "XDGUSD_60.csv").write_text(ohlcvt(START, 10, HOUR, 0.1))
    (folder / "XBTEUR_1440.csv").write_text(ohlcvt(START, 2, timedelta(days=1), 50_000.0))
    assert runner.invoke(app, ["import", "kraken-ohlcvt", str(folder)]).exit_code == 0
    for hours, price in ((1, "3000.5"), (2, "3001.25")):
        at = (START + hours * HOUR).isoformat()
        result = runner.invoke(app, ["prices", "set", "etheur", "--at", at, "--price", price, "--new"])
        assert result.exit_code == 0, result.stderr
    return {"btceur": folder / "XBTEUR_60.csv", "dogeusd": folder / "XDGUSD_60.csv",
            "btceur_1d": folder / "XBTEUR_1440.csv"}


def test_csv_has_every_candle_exactly_and_closes_where_only_closes_exist(stored: dict[str, Path],
                                                                         runner: CliRunner) -> None:
    result = runner.invoke(app, ["export", "btceur,etheur"])
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == list(exporting.COLUMNS)
    btc = [r for r in rows if r["pair"] == "btceur"]
    expected = archive_rows(stored["btceur"])
    assert len(btc) == ARCHIVE_ROWS - 1  # the no-trade hour has no candle, and none is made up
    for row, (opened, o, h, low, c, volume, trades) in zip(btc, expected, strict=True):
        assert (row["exchange"], row["open_time"], row["close_time"]) == (
            "kraken", opened.strftime("%Y-%m-%dT%H:%M:%SZ"), (opened + HOUR).strftime("%Y-%m-%dT%H:%M:%SZ"))
        assert (float(row["open"]), float(row["high"]), float(row["low"]), float(row["close"]),
                float(row["volume"]), int(row["trades"])) == (o, h, low, c, volume, trades)
    eth = [r for r in rows if r["pair"] == "etheur"]
    assert [(r["open_time"], r["open"], r["close_time"], r["close"]) for r in eth] == [
        ("", "", (START + HOUR).strftime("%Y-%m-%dT%H:%M:%SZ"), "3000.5"),
        ("", "", (START + 2 * HOUR).strftime("%Y-%m-%dT%H:%M:%SZ"), "3001.25")]
    assert "2 markets (1 with 1h candles, 1 with closes only)" in result.stderr


@pytest.mark.parametrize("chunk", [7, exporting.CHUNK])
def test_parquet_reads_back_as_stored_within_since_and_until(stored: dict[str, Path], runner: CliRunner,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             chunk: int) -> None:
    monkeypatch.setattr(exporting, "CHUNK", chunk)  # chunks that split a market, and one chunk
    since, until = START + 2 * HOUR, START + 20 * HOUR
    out = tmp_path / "out" / "btc.parquet"
    result = runner.invoke(app, ["export", "all", "--format", "parquet", "-o", str(out), "--exchange", "kraken",
                                 "--since", since.isoformat(), "--until", until.isoformat()])
    assert result.exit_code == 0, result.stderr
    table = parquet.read_table(out)
    assert str(table.schema.field("open_time").type) == "timestamp[ms, tz=UTC]"
    got = [r for r in table.to_pylist() if r["pair"] == "btceur"]
    expected = [r for r in archive_rows(stored["btceur"]) if since <= r[0] < until]
    assert [(r["open_time"], r["open"], r["high"], r["low"], r["close"], r["volume"], r["trades"]) for r in got] == \
        expected
    assert {r["pair"] for r in table.to_pylist()} == {"btceur", "dogeusd", "etheur"}
    assert not list(out.parent.glob(".*partial"))


def test_daily_candles_export_by_interval(stored: dict[str, Path], runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "daily.feather"
    result = runner.invoke(app, ["export", "btceur", "-f", "feather", "--interval", "1d", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    rows = feather.read_table(out).to_pylist()
    assert [(r["open_time"], r["close"]) for r in rows] == [(r[0], r[4]) for r in archive_rows(stored["btceur_1d"])]


def test_freqtrade_layout_is_what_freqtrade_reads(stored: dict[str, Path], runner: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "user_data" / "data"
    result = runner.invoke(app, ["export", "BTC/EUR,dogeusd,etheur", "--layout", "freqtrade", "-o", str(folder)])
    assert result.exit_code == 0, result.stderr
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == ["kraken/BTC_EUR-1h.feather", "kraken/DOGE_USD-1h.feather"]
    assert "kraken/etheur had closes only" in result.stderr  # freqtrade needs candles: said, not made up
    table = feather.read_table(folder / "kraken" / "BTC_EUR-1h.feather")
    assert table.column_names == ["date", "open", "high", "low", "close", "volume"]
    assert str(table.schema.field("date").type) == "timestamp[ms, tz=UTC]"
    assert [tuple(r.values()) for r in table.to_pylist()] == [r[:6] for r in archive_rows(stored["btceur"])]
    if FREQTRADE_PYTHON:  # freqtrade's own loader, in its own venv (its dependencies are not mcdata's)
        loaded = subprocess.run([FREQTRADE_PYTHON, "-c", FREQTRADE_LOAD, str(folder / "kraken")],
                                capture_output=True, text=True, timeout=120, check=True)
        frame = json.loads(loaded.stdout)
        assert frame["rows"] == ARCHIVE_ROWS - 1 and frame["first"] == table.to_pylist()[0]["date"].isoformat()
        assert frame["close"] == [r[4] for r in archive_rows(stored["btceur"])]


FREQTRADE_LOAD = """
import json, sys
from pathlib import Path
from freqtrade.data.history import load_pair_history
frame = load_pair_history(pair="BTC/EUR", timeframe="1h", datadir=Path(sys.argv[1]), data_format="feather",
                          fill_up_missing=False)
print(json.dumps({"rows": len(frame), "first": frame["date"].iloc[0].isoformat(), "close": list(frame["close"])}))
"""


def test_usage_errors_exit_2_and_write_nothing(stored: dict[str, Path], runner: CliRunner, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "x"
    for args, said in ((["--layout", "freqtrade", "-f", "csv"], "freqtrade reads feather or parquet"),
                       (["-f", "xlsx"], "unknown export format"), (["--interval", "2h"], "unknown interval"),
                       (["--since", "2026-01-02", "--until", "2026-01-01"], "is not before --until")):
        result = runner.invoke(app, ["export", "btceur", "-o", str(out), *args])
        assert (result.exit_code, said in result.stderr) == (2, True), result.stderr
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # not installed
    result = runner.invoke(app, ["export", "btceur", "-f", "parquet", "-o", str(out)])
    assert result.exit_code == 2 and "pip install 'mcdata-collector[export]'" in result.stderr
    assert runner.invoke(app, ["export", "btceur", "-o", str(out)]).exit_code == 0  # csv needs no pyarrow
    assert not (tmp_path / "ohlcvt" / "x").exists()
    result = runner.invoke(app, ["export", "zzzeur", "-o", str(tmp_path / "y")])
    assert result.exit_code == 1 and "nothing to export" in result.stderr and not (tmp_path / "y").exists()


def test_a_failed_export_leaves_no_file(stored: dict[str, Path], runner: CliRunner, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exporting, "CHUNK", 5)
    written: list[int] = []
    original = exporting._ArrowSink.write

    def fail_on_third(self: exporting._ArrowSink, rows: list[tuple[object, ...]]) -> None:
        written.append(len(rows))
        if len(written) == 3:
            raise OSError("No space left on device")
        original(self, rows)

    monkeypatch.setattr(exporting._ArrowSink, "write", fail_on_third)
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", "btceur", "-f", "parquet", "-o", str(out / "b.parquet")])
    assert result.exit_code != 0 and len(written) == 3
    assert list(out.iterdir()) == []  # neither the file nor its partial copy
