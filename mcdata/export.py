"""`mcdata export`: stored candles, or closes where a market has only closes, as CSV, Parquet or Feather
files; with `--layout freqtrade`, one Feather (or Parquet) file per market where `freqtrade backtesting
--datadir` finds it.

Rows stream from the database in chunks of CHUNK rows (a server-side cursor on PostgreSQL) into
writers that keep no more than one chunk: the size of an export does not set its memory. Every file is
written beside its place and renamed there when whole: an export that fails leaves nothing
half-written.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import logging
import operator
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import sqlalchemy as sa

from mcdata import store
from mcdata.config import Settings
from mcdata.errors import ConfigError, McdataError
from mcdata.jobs.ledger import Progress, no_progress
from mcdata.reading import reading
from mcdata.values import ALL_PAIRS
from mcdata.wording import instant_text, plural

log = logging.getLogger("mcdata")

EXPORT_FORMATS = ("csv", "parquet", "feather")
LAYOUTS = ("plain", "freqtrade")
# freqtrade's timeframe names of the intervals mcdata can hold
INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14_400, "12h": 43_200,
             "1d": 86_400, "1w": 604_800}
HOURLY = 3600  # the only interval whose samples are also raw closes
COLUMNS = ("exchange", "pair", "open_time", "close_time", "open", "high", "low", "close", "vwap", "volume",
           "trades")
FREQTRADE_COLUMNS = ("date", "open", "high", "low", "close", "volume")  # date: the candle's open, UTC
TIME_COLUMNS = frozenset({"open_time", "close_time", "date"})
CHUNK = 20_000  # rows a read and a write hold at once: about 20 MB of Python objects
# Quote currencies, longest first, to name a stored pair BASE/QUOTE for freqtrade when the user did not
# write it so (btceur -> BTC/EUR): a pair that ends in none of them must be written BASE/QUOTE.
KNOWN_QUOTES = ("fdusd", "usdt", "usdc", "busd", "tusd", "usde", "pyusd", "eurc", "eurt", "dai", "eur", "usd",
                "gbp", "jpy", "cad", "chf", "aud", "try", "brl", "btc", "xbt", "eth", "sol", "bnb", "dot")
PYARROW_HINT = "parquet and feather need pyarrow: pip install 'mcdata-collector[export]'"


@dataclass(frozen=True)
class ExportRequest:
    pairs: tuple[str, ...]  # canonical pairs, or ALL_PAIRS
    output_format: str  # csv | parquet | feather
    layout: str = "plain"
    interval: str = "1h"
    exchange: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    output: Path | None = None  # plain: a file (csv: stdout when None); freqtrade: the data folder
    names: dict[str, str] = field(default_factory=dict)  # canonical pair -> BASE/QUOTE as the user wrote it


@dataclass
class ExportSummary:
    rows: int = 0
    candle_markets: int = 0
    close_markets: int = 0
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # markets with only closes, which freqtrade cannot read


class RowSink(Protocol):
    def write(self, rows: list[tuple[Any, ...]]) -> None: ...


def check_request(request: ExportRequest) -> None:
    """Usage errors, before the database is read."""
    if request.output_format not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {request.output_format[:40]!r}",
                          f"use one of {', '.join(EXPORT_FORMATS)}")
    if request.layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {request.layout[:40]!r}", f"use one of {', '.join(LAYOUTS)}")
    if request.interval not in INTERVALS:
        raise ConfigError(f"unknown interval {request.interval[:40]!r}", f"use one of {', '.join(INTERVALS)}")
    if request.layout == "freqtrade" and request.output_format == "csv":
        raise ConfigError("freqtrade reads feather or parquet files, not csv",
                          "use --format feather (freqtrade's default) or --format parquet")
    if request.since and request.until and request.since >= request.until:
        raise ConfigError(f"--since {instant_text(request.since)} is not before --until {instant_text(request.until)}")
    if request.output_format != "csv":
        _pyarrow()


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet  # pyarrow.parquet.ParquetWriter is reached through pyarrow
    except ImportError:
        raise ConfigError("pyarrow is not installed", PYARROW_HINT) from None
    return pyarrow


def freqtrade_name(pair: str, written: str | None = None) -> tuple[str, str]:
    """(BASE, QUOTE) of a canonical pair: as the user wrote it (BTC/EUR), else split at a known quote."""
    if written and (parts := re.split(r"[-/_]", written.strip())) and len(parts) == 2 and all(parts):
        return parts[0].upper(), parts[1].upper()
    for quote in KNOWN_QUOTES:
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)].upper(), quote.upper()
    raise ConfigError(f"{pair}: mcdata cannot tell its base from its quote",
                      "write the pair as BASE/QUOTE, e.g. mcdata export ABC/XYZ --layout freqtrade")


def export(settings: Settings, request: ExportRequest, progress: Progress = no_progress) -> ExportSummary:
    check_request(request)
    summary = ExportSummary()
    interval_s = INTERVALS[request.interval]
    with reading(settings) as (_, connection):
        wanted = store.export_markets(connection, request.exchange,
                                      None if request.pairs == ALL_PAIRS else list(request.pairs))
        if not wanted:
            raise McdataError("nothing to export: no stored prices of " + (
                "any pair" if request.pairs == ALL_PAIRS else ", ".join(request.pairs[:10]))
                + (f" on {request.exchange}" if request.exchange else ""), "`mcdata show` lists what is stored")
        if request.layout == "freqtrade":
            for _, pair in wanted:
                freqtrade_name(pair, request.names.get(pair))  # every name first: no export stops half-way
        with progress(len(wanted), "exporting") as advance:
            if request.layout == "freqtrade":
                _freqtrade(connection, request, wanted, interval_s, summary, advance)
            else:
                _plain(connection, request, wanted, interval_s, summary, advance)
    return summary


def _market_rows(connection: sa.Connection, request: ExportRequest, wanted: list[store.Market], interval_s: int,
                 summary: ExportSummary, closes: bool = True) -> Iterator[tuple[store.Market, list[tuple[Any, ...]]]]:
    """(market, a chunk of its rows), markets in order, rows oldest first: the candles of the markets that
    have some in the window, then (`closes`) the closes of the hourly ones that have none; without
    `closes` those are only named in summary.skipped."""
    with_candles: set[tuple[str, str]] = set()
    chosen = (request.exchange if request.pairs == ALL_PAIRS else wanted)  # all of a venue: no market list
    for market, chunk in store.stream_candles(connection, chosen, interval_s, request.since, request.until, CHUNK):
        if market not in with_candles:
            with_candles.add(market)
            summary.candle_markets += 1
        yield market, chunk
    if interval_s != HOURLY:
        return
    only_closes = [market for market in wanted if market not in with_candles]
    if not closes:
        summary.skipped = [f"{exchange}/{pair}" for exchange, pair in only_closes]
        return
    seen: set[tuple[str, str]] = set()
    for market, chunk in store.stream_closes(connection, only_closes, request.since, request.until, CHUNK):
        if market not in seen:
            seen.add(market)
            summary.close_markets += 1
        yield market, chunk


def _plain(connection: sa.Connection, request: ExportRequest, wanted: list[store.Market], interval_s: int,
           summary: ExportSummary, advance: Callable[[], None]) -> None:
    path = request.output or (None if request.output_format == "csv"
                              else Path(f"mcdata-{request.interval}.{request.output_format}"))
    with _sink(request.output_format, _plain_schema, path, summary) as sink:
        stream = _market_rows(connection, request, wanted, interval_s, summary)
        for _, parts in itertools.groupby(stream, key=operator.itemgetter(0)):
            for _, chunk in parts:
                sink.write(chunk)
                summary.rows += len(chunk)
            advance()


def _freqtrade(connection: sa.Connection, request: ExportRequest, wanted: list[store.Market], interval_s: int,
               summary: ExportSummary, advance: Callable[[], None]) -> None:
    """One file per market with candles: <folder>/<exchange>/<BASE>_<QUOTE>-<interval>.<format>."""
    folder = request.output or Path("user_data") / "data"
    stream = _market_rows(connection, request, wanted, interval_s, summary, closes=False)
    for (exchange, pair), parts in itertools.groupby(stream, key=operator.itemgetter(0)):
        base, quote = freqtrade_name(pair, request.names.get(pair))
        path = folder / exchange / f"{base}_{quote}-{request.interval}.{request.output_format}"
        with _sink(request.output_format, _freqtrade_schema, path, summary) as sink:
            for _, chunk in parts:
                sink.write([(row[2], row[4], row[5], row[6], row[7], row[9]) for row in chunk])
                summary.rows += len(chunk)
        advance()


# -- writers ----------------------------------------------------------------------------------------
def _plain_schema(pa: Any) -> Any:
    instant = pa.timestamp("ms", tz="UTC")
    return pa.schema([("exchange", pa.string()), ("pair", pa.string()), ("open_time", instant),
                      ("close_time", instant), ("open", pa.float64()), ("high", pa.float64()),
                      ("low", pa.float64()), ("close", pa.float64()), ("vwap", pa.float64()),
                      ("volume", pa.float64()), ("trades", pa.int64())])


def _freqtrade_schema(pa: Any) -> Any:
    return pa.schema([("date", pa.timestamp("ms", tz="UTC"))] + [(c, pa.float64()) for c in FREQTRADE_COLUMNS[1:]])


@contextlib.contextmanager
def _sink(output_format: str, schema_of: Callable[[Any], Any], path: Path | None,
          summary: ExportSummary) -> Iterator[RowSink]:
    """A writer of row chunks into `path` (stdout for csv without one), whole or not at all."""
    if path is None:
        yield _CsvSink(sys.stdout, schema_of)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        if output_format == "csv":
            with partial.open("w", newline="", encoding="utf-8") as out:
                yield _CsvSink(out, schema_of)
        else:
            with _ArrowSink(output_format, schema_of, partial) as sink:
                yield sink
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    summary.files.append(path)


class _CsvSink:
    def __init__(self, out: TextIO, schema_of: Callable[[Any], Any]) -> None:
        self.writer = csv.writer(out, lineterminator="\n")
        columns = FREQTRADE_COLUMNS if schema_of is _freqtrade_schema else COLUMNS
        self.writer.writerow(columns)
        self.times = {index for index, name in enumerate(columns) if name in TIME_COLUMNS}

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        self.writer.writerows(tuple(_csv_value(value, index in self.times) for index, value in enumerate(row))
                              for row in rows)


def _csv_value(value: Any, is_time: bool) -> Any:
    if value is None:
        return ""
    if is_time:  # epoch milliseconds
        return instant_text(datetime.fromtimestamp(value / 1000, UTC))
    if isinstance(value, float):
        return repr(value)  # every digit: a CSV read back gives the stored double
    return value


class _ArrowSink:
    def __init__(self, output_format: str, schema_of: Callable[[Any], Any], path: Path) -> None:
        self.pa = _pyarrow()
        self.schema = schema_of(self.pa)
        if output_format == "parquet":
            self.writer = self.pa.parquet.ParquetWriter(str(path), self.schema, compression="zstd")
        else:  # Feather v2 is the Arrow IPC file format; lz4 as pandas' to_feather writes it
            options = self.pa.ipc.IpcWriteOptions(compression="lz4")
            self.writer = self.pa.ipc.new_file(str(path), self.schema, options=options)

    def __enter__(self) -> _ArrowSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self.schema]
        self.writer.write_batch(self.pa.record_batch(
            [self._array(values, column.type) for values, column in zip(columns, self.schema, strict=True)],
            schema=self.schema))

    def _array(self, values: tuple[Any, ...], kind: Any) -> Any:
        if self.pa.types.is_timestamp(kind):  # epoch milliseconds, as the database computed them
            return self.pa.array(values, type=self.pa.int64()).cast(kind)
        return self.pa.array(values, type=kind)


def summary_lines(summary: ExportSummary, request: ExportRequest) -> Iterable[str]:
    markets = summary.candle_markets + summary.close_markets
    where = ", ".join(str(p) for p in summary.files[:3]) + (" ..." if len(summary.files) > 3 else "")
    yield (f"exported {plural(summary.rows, 'row')} of {plural(markets, 'market')} "
           f"({summary.candle_markets:,} with {request.interval} candles, {summary.close_markets:,} with closes only)"
           + (f" to {where}" if where else ""))
