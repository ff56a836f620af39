"""`mcdata import kraken-ohlcvt`: years of history from Kraken's downloadable OHLCVT archives.

The archive is a folder or a `.zip` of files named `PAIR_INTERVAL.csv` (`XBTEUR_60.csv`: the pair's
Kraken name, the interval in minutes), without a header, seven columns
`timestamp,open,high,low,close,volume,trades`, the timestamp in UTC seconds at the candle's open; an
interval without trades has no row. Each file's pair name is mapped as the live catalog maps it
(AssetPairs + Assets: XBT is btc, XDG is doge). Every candle is stored whole in `candles`; the hourly
files' closes also go to the raw table at the close time, like the live backfill (a daily close is no
hourly sample: the 24-hour metrics would count it). A candle or close stored already (from the API, or
an earlier import) wins: importing twice changes nothing, and a stored value that disagrees with the
archive's is counted and said.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mcdata import corrections, coverage, rollups, store
from mcdata.clock import utc_now
from mcdata.config import Settings
from mcdata.db import connect
from mcdata.errors import ConfigError, ExitCode, McdataError
from mcdata.jobs.ledger import Progress, Report, locked_step, no_progress, write
from mcdata.schema import candles, raw_prices
from mcdata.sources.base import parse_price, parse_volume
from mcdata.sources.kraken import KrakenSource
from mcdata.wording import plural

log = logging.getLogger("mcdata")

VENUE = "kraken"
ARCHIVE_NAME = re.compile(r"^([A-Z0-9]{2,40})_(\d{1,5})\.csv$")
HOURLY = 60  # minutes: the files whose closes are hourly samples


@dataclass(frozen=True)
class ArchiveFile:
    name: str  # as shown: the path, or the zip and its member
    altname: str  # Kraken's name of the pair, e.g. XBTEUR
    minutes: int
    read: Callable[[], str]
    first_line: Callable[[], str]  # without reading the rest: where the file's history starts


def archive_files(paths: list[Path]) -> list[ArchiveFile]:
    """The OHLCVT files in the named files, folders and zips (other files in a folder or zip are not
    Kraken's: left alone); a named file that is not one is a usage error."""
    found: list[ArchiveFile] = []
    for path in paths:
        if path.is_dir():
            found += [_plain_file(child, str(child)) for child in sorted(path.iterdir())
                      if ARCHIVE_NAME.match(child.name)]
        elif path.suffix.lower() == ".zip" and path.is_file():
            found += _zip_members(path)
        elif path.is_file() and ARCHIVE_NAME.match(path.name):
            found.append(_plain_file(path, str(path)))
        else:
            raise ConfigError(f"{str(path)[:200]}: not a folder, a .zip or a file named like XBTEUR_60.csv",
                              "name Kraken's OHLCVT files, their folder or their .zip")
    if not found:
        raise ConfigError("no OHLCVT file (PAIR_INTERVAL.csv, e.g. XBTEUR_60.csv) in "
                          + ", ".join(str(p)[:80] for p in paths))
    return found


def _file(shown: str, name: str, opened: Callable[[], ContextManager[TextIO]]) -> ArchiveFile:
    match = ARCHIVE_NAME.match(name)
    assert match is not None

    def read() -> str:
        with opened() as stream:
            return stream.read()

    def first_line() -> str:
        with opened() as stream:
            return stream.readline()

    return ArchiveFile(shown, match[1], int(match[2]), read, first_line)


def _plain_file(path: Path, shown: str) -> ArchiveFile:
    return _file(shown, path.name, lambda: path.open(encoding="utf-8"))


def _zip_members(path: Path) -> list[ArchiveFile]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConfigError(f"{str(path)[:200]}: not a zip that can be read ({exc})") from None

    def opener(member: str) -> Callable[[], ContextManager[TextIO]]:
        @contextmanager
        def opened() -> Iterator[TextIO]:
            with zipfile.ZipFile(path) as archive, archive.open(member) as stream:
                yield io.TextIOWrapper(stream, encoding="utf-8")
        return opened

    return [_file(f"{path}:{name}", Path(name).name, opener(name)) for name in sorted(names)
            if ARCHIVE_NAME.match(Path(name).name)]


def history_start(files: list[ArchiveFile]) -> datetime | None:
    """The earliest first row among the files (Kraken's are in time order), read without the rest; a file
    whose first row is no candle is refused later by the import itself."""
    starts = []
    for file in files:
        try:
            starts.append(datetime.fromtimestamp(int(file.first_line().split(",", 1)[0]), UTC))
        except (ValueError, OverflowError, OSError, zipfile.BadZipFile):
            continue  # the import itself says what is wrong with the file
    return min(starts, default=None)


def candle_rows(file: ArchiveFile, pair: str, now: datetime) -> Iterator[store.CandleRow]:
    """The file's rows as candles; a row that is not seven numbers, or not a candle, is a usage error
    naming the file and line (the archive is not what it says)."""
    interval = timedelta(minutes=file.minutes)
    for line, row in enumerate(csv.reader(io.StringIO(file.read())), 1):
        if not row:
            continue
        try:
            if len(row) != 7:
                raise ValueError(f"{len(row)} columns, not 7 (timestamp,open,high,low,close,volume,trades)")
            opened = datetime.fromtimestamp(int(row[0]), UTC)
            o, h, low, c = (parse_price(value) for value in row[1:5])
            volume, trades = parse_volume(row[5]), int(row[6])
            if not h >= max(o, c) >= min(o, c) >= low or trades < 0:
                raise ValueError("its high and low do not hold its open and close")
        except (ValueError, OverflowError, OSError) as exc:
            raise ConfigError(f"{file.name}, line {line}: {exc}") from None
        if opened + interval <= now:  # one that had not closed by now was still forming: no candle
            yield store.CandleRow(VENUE, pair, int(interval.total_seconds()), opened, o, h, low, c, None, volume,
                                  trades, now)


def import_kraken_ohlcvt(settings: Settings, paths: list[Path], progress: Progress = no_progress) -> Report:
    files = archive_files(paths)
    by_altname = {p.altname: p.symbol for p in KrakenSource.create(settings, utc_now).catalog().values()}
    unknown = sorted({f.altname for f in files if f.altname not in by_altname})
    if len(unknown) == len({f.altname for f in files}):
        raise ConfigError(f"kraken lists none of {', '.join(unknown[:10])}",
                          "`mcdata pairs` lists the pairs; the archive's names are Kraken's (XBTEUR)")
    for altname in unknown:
        log.warning("warning: %s: kraken lists no such pair; its files are skipped", altname)
    known = [f for f in files if f.altname in by_altname]
    return locked_step(settings, "import", VENUE,
                       lambda engine, still_held: _import(engine, still_held, known, by_altname, progress),
                       create_schema=True, history_since=history_start(known))


def _import(engine: Engine, still_held: Callable[[], None], files: list[ArchiveFile], by_altname: dict[str, str],
            progress: Progress) -> Report:
    report = Report("import")
    now = utc_now()
    stored_pairs: set[str] = set()
    filled: dict[str, list[datetime]] = {}  # each pair's closes: the snapshots that read them are computed again
    with connect(engine) as connection:
        pruned = rollups.pruned_before(connection)
    # one transaction for the whole import: a file that is not what it says leaves nothing half-imported
    with progress(len(files), "importing") as advance, write(engine, still_held) as connection:
        for file in files:
            pair = by_altname[file.altname]
            rows = list(candle_rows(file, pair, now))
            closes = [store.PriceRow(VENUE, pair, r.open_time + timedelta(seconds=r.interval_s), r.close, r.volume,
                                     "candle", now) for r in rows if file.minutes == HOURLY]
            closes = [c for c in closes if pruned is None or c.timestamp >= pruned]
            disagree = _disagreements(connection, pair, rows, closes)
            added = store.insert_candles(connection, rows)
            if rows:  # the file speaks for every interval from its first row to its last: one absent had no trade
                coverage.record_spans(connection, VENUE, rows[0].interval_s, {pair: (
                    min(r.open_time for r in rows), max(r.open_time for r in rows) + timedelta(minutes=file.minutes))},
                    now)
            report.rows_written += store.insert_prices(connection, closes)
            filled.setdefault(pair, []).extend(c.timestamp for c in closes)
            report.candles_written += added
            if added:
                stored_pairs.add(pair)
            log.info("%s: %s of %s (%s stored already%s)", file.name, plural(added, "new candle"), pair,
                     f"{len(rows) - added:,}", f"; {disagree:,} of them disagree with the archive: the stored "
                     "ones are kept" if disagree else "")
            if disagree:
                report.errors.append(f"{file.name}: {plural(disagree, 'stored candle or close')} disagree with "
                                     "the archive (the stored ones are kept)")
            advance()
        for pair, times in filled.items():
            corrections.refresh_filled(connection, times, max(times, default=now), (VENUE, pair))
    with connect(engine) as connection:
        # the imported markets' rollups (the others' rows were not touched): a year of one pair in 0.1 s
        found = sum(rollups.verify(connection, (VENUE, pair)).total for pair in sorted(filled))
    if found:
        raise McdataError(f"after the import {found:,} rollup rows disagree with the raw prices",
                          "run `mcdata check --repair`")
    report.pairs_requested = len({by_altname[f.altname] for f in files})
    report.pairs_stored = len(stored_pairs)  # a pair's hourly and daily files are one pair
    report.exit_code = ExitCode.PARTIAL if report.errors else ExitCode.OK  # a disagreement: what is stored stays
    return report


def _disagreements(connection: sa.Connection, pair: str, rows: list[store.CandleRow],
                   closes: list[store.PriceRow]) -> int:
    """How many stored candles and closes the archive would change (they are kept)."""
    if not rows:
        return 0
    first, last = min(r.open_time for r in rows), max(r.open_time for r in rows)
    stored = {(r.interval_s, r.open_time): (r.open, r.high, r.low, r.close)
              for r in connection.execute(sa.select(candles).where(
                  candles.c.exchange == VENUE, candles.c.pair == pair, candles.c.open_time >= first,
                  candles.c.open_time <= last))}
    differ = sum(1 for r in rows if stored.get((r.interval_s, r.open_time), (r.open, r.high, r.low, r.close))
                 != (r.open, r.high, r.low, r.close))
    if closes:
        times = [c.timestamp for c in closes]
        prices = dict(connection.execute(sa.select(raw_prices.c.timestamp, raw_prices.c.price).where(
            raw_prices.c.exchange == VENUE, raw_prices.c.pair == pair,
            raw_prices.c.timestamp >= min(times), raw_prices.c.timestamp <= max(times))).all())
        differ += sum(1 for c in closes if c.timestamp in prices and prices[c.timestamp] != c.price)
    return differ
