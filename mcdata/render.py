"""Everything the user sees: progress, tables, JSON, CSV and charts. Rich is for humans only."""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from mcdata.errors import printable
from mcdata.wording import FORMAT_NAMES, instant_text, plural

if TYPE_CHECKING:  # (views loads the schema, hence SQLAlchemy: 0.25 s that `--help` need not pay)
    from pathlib import Path

    from rich.console import Console

    from mcdata.config_view import SettingRow
    from mcdata.jobs import Report
    from mcdata.views import ListedPairRow, RunRow, StatusView


@contextmanager
def progress_bar(total: int, label: str, enabled: bool) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr when `enabled` (a terminal, not --quiet); otherwise nothing."""
    if not enabled or total <= 1:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return instant_text(value)
    return value


def write_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, default=_plain, indent=2, allow_nan=False) + "\n")


def _json_member(value: Any) -> str:
    """A value as it stands inside an object at the top level of write_json's layout."""
    return textwrap.indent(json.dumps(value, default=_plain, indent=2, allow_nan=False), "  ").lstrip()


def write_json_streamed(head: Mapping[str, Any], key: str, rows: Iterable[Any], tail: Callable[[], Mapping[str, Any]],
                        out: TextIO) -> None:
    """write_json's layout of {**head, key: [rows...], **tail()}, each row written as it comes (the rows
    may be a database cursor: memory stays flat); `tail` is read after the rows."""
    out.write("{\n")
    for name, value in head.items():
        out.write(f"  {json.dumps(name)}: {_json_member(value)},\n")
    out.write(f"  {json.dumps(key)}: [")
    written = 0
    for row in rows:
        out.write(("," if written else "") + "\n    " + textwrap.indent(
            json.dumps(row, default=_plain, indent=2, allow_nan=False), "    ").lstrip())
        written += 1
    out.write("\n  ]" if written else "]")
    for name, value in tail().items():
        out.write(f",\n  {json.dumps(name)}: {_json_member(value)}")
    out.write("\n}\n")


def write_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # every digit: CSV readers get the stored double back
    if isinstance(value, str):
        return csv_text(value)
    return _plain(value)


def csv_text(text: str) -> str:
    """Text a spreadsheet will not run: a leading = + - @ tab or CR gets a ' in front (OWASP's rule for
    CSV injection), and control characters are escaped as in the tables."""
    return printable("'" + text if text.startswith(FORMULA_START) else text)


# What a terminal that cannot show a character gets instead (a latin-1 or ASCII locale); anything else: "?"
ASCII_FALLBACK = {"–": "-", "—": "-", "…": "...", "×": "x", "≥": ">=", "≤": "<=", "→": "->", "·": ".",
                  **{block: "_.-~=+*#"[index] for index, block in enumerate("▁▂▃▄▅▆▇█")}}


def _ascii_replacement(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeEncodeError)
    text = error.object[error.start:error.end]
    return "".join(ASCII_FALLBACK.get(char, "?") for char in text), error.end


codecs.register_error("mcdata-ascii", _ascii_replacement)


def ascii_fallback(stream: TextIO) -> None:
    """A stream whose encoding is not UTF (PYTHONIOENCODING=latin-1, LANG=C) writes what it cannot encode
    as ASCII instead of raising UnicodeEncodeError mid-table (rich draws ASCII boxes there by itself)."""
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    if not encoding.startswith("utf") and isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="mcdata-ascii")


def console(out: TextIO) -> Console:
    """A console that never truncates: wide enough for the whole table when not on a terminal.

    Markup and emoji codes are off: every string printed comes from the database, the cache or the
    network, and `[link=…]` or `[/oops]` in a pair name must print as written, never be interpreted.
    """
    from rich.console import Console

    if out.isatty():
        terminal = Console(file=out, markup=False, emoji=False, highlight=False)
    else:
        columns = os.environ.get("COLUMNS", "")  # a pipe is 200 wide unless COLUMNS says otherwise
        width = int(columns) if columns.isdigit() and 20 <= int(columns) <= 1000 else 200
        terminal = Console(file=out, width=width, no_color=True, highlight=False, emoji=False, soft_wrap=False,
                           markup=False)
    terminal.on_broken_pipe = _reader_gone  # type: ignore[method-assign]
    return terminal


def _reader_gone() -> None:
    """`mcdata show | head`: rich would exit 1; the command's wrapper ends it quietly with 0 instead."""
    raise BrokenPipeError


def pairs_table(rows: Sequence[ListedPairRow], out: TextIO) -> None:
    from rich.table import Table

    table = Table(title=plural(len(rows), "pair"), title_justify="left")
    for column in ("pair", "venue symbol", "status", "configured"):
        table.add_column(column)
    for row in rows:
        table.add_row(printable(str(row["pair"])), printable(str(row["venue_symbol"])),
                      printable(str(row["status"])), "yes" if row["configured"] else "")
    console(out).print(table)


@dataclass(frozen=True)
class Output:
    """One result, ready for every format: JSON's document, CSV's rows and columns, the table's drawing."""

    document: object
    rows: Sequence[Mapping[str, Any]]
    columns: Sequence[str]
    table: Callable[[TextIO], None]


# Every output format: its name (`mcdata show btceur csv`) and its writer. A new format is one entry.
FORMATS: dict[str, Callable[[Output, TextIO], None]] = dict(zip(FORMAT_NAMES, (
    lambda output, out: output.table(out),
    lambda output, out: write_json(output.document, out),
    lambda output, out: write_csv(output.rows, output.columns, out),
), strict=True))


def emit(output: Output, output_format: str, out: TextIO) -> None:
    FORMATS[output_format](output, out)


def pairs_output(rows: Sequence[ListedPairRow]) -> Output:
    return Output(rows, rows, ["pair", "venue_symbol", "active", "status", "configured"],
                  lambda out: pairs_table(rows, out))




PRICE_DIGITS, SPREAD_DIGITS = 6, 4  # significant digits of prices and of deviations, in every view


def number(value: Any, digits: int = PRICE_DIGITS) -> str:
    """Plain decimals, never exponent notation: 87,654.32, 21.8512, 0.0000000123."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.2f}"
    if value == 0:
        return "0"
    decimals = min(max(0, digits - 1 - math.floor(math.log10(abs(value)))), 15)
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}%"


def change(value: float | None) -> tuple[str, str]:
    """The 24 h change as text and the style that colours it."""
    if value is None:
        return "–", ""
    return f"{value:+.2f}%", "green" if value > 0 else "red" if value < 0 else ""


def rank(value: int | None, of: int) -> str:
    return "–" if value is None else f"{value}/{of}"


def timestamp(value: datetime | None) -> str:
    return "–" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age_text(as_of: datetime) -> str:
    """How old a snapshot is (`14m old`, `2d3h old`): the newest one may be days old when runs stopped."""
    age = datetime.now(UTC) - as_of
    if age < timedelta(minutes=1):
        return "just now"
    from mcdata.values import duration_text

    whole = timedelta(minutes=int(age.total_seconds() // 60)) if age < timedelta(days=1) else \
        timedelta(hours=int(age.total_seconds() // 3600))
    return f"{duration_text(whole)} old"


def run_line(run: RunRow | None) -> str:
    """One short line (it fits 80 columns, so no timestamp is ever cut by a wrap)."""
    if not run:
        return "no run recorded yet"
    end = run.get("finished_at")
    until = f"–{end.astimezone(UTC):%H:%M:%S}" if isinstance(end, datetime) else ", still running"
    return f"last run #{run['id']} {run['command']}: {run['status']}, {timestamp(run['started_at'])}{until}"


# -- the summary line of a step ----------------------------------------------------------------
def report_summary(report: Report) -> str:
    """One line: what the command did, its run id and exit code."""
    parts = []
    if report.command in ("fetch", "run"):
        parts.append(f"{report.pairs_stored} of {plural(report.pairs_requested, 'pair')} stored, "
                     f"{plural(report.rows_written, 'price row')} written, "
                     f"{plural(report.http_requests, 'HTTP request')}")
    if report.command == "import":
        parts.append(f"{plural(report.candles_written, 'candle')} and {plural(report.rows_written, 'hourly close')} "
                     f"stored, of {plural(report.pairs_requested, 'pair')}")
    if report.command == "repair":
        parts.append(f"{plural(report.rows_written, 'hour')} filled ({plural(report.candles_written, 'candle')} "
                     f"stored) of {report.pairs_stored} of {plural(report.pairs_requested, 'pair')} with holes, "
                     f"{plural(report.http_requests, 'HTTP request')}")
    if report.command == "compute" and report.rows_deleted and report.as_of:
        parts.append(f"metrics of {plural(report.rows_deleted, 'pair')} as of {instant_text(report.as_of)} deleted")
    elif report.command in ("compute", "run") and report.as_of:
        parts.append(f"metrics of {plural(report.metric_rows, 'pair')} as of {instant_text(report.as_of)}")
    if report.command == "prune" or (report.command == "run" and report.rows_deleted):
        parts.append(f"{plural(report.rows_deleted, 'raw price row')} older than the retention deleted")
    if report.alerts_fired or report.alerts_delivered or report.alerts_undelivered:
        parts.append(f"{plural(len(report.alerts_fired), 'alert')} fired, {report.alerts_delivered} delivered, "
                     f"{report.alerts_undelivered} pending")
    if report.command.startswith("prices "):
        parts.append(f"{plural(report.rows_deleted, 'price row')} deleted, {report.rows_written:,} written, "
                     f"{plural(report.metric_rows, 'metric snapshot')} recomputed")
    return f"{report.command}: {'; '.join(parts)} (run {report.run_id}, exit {int(report.exit_code)})"


# -- status and config --------------------------------------------------------------------------
def _ago(age: timedelta | None) -> str:
    from mcdata.values import duration_text

    if age is None:
        return "never"
    return f"{duration_text(timedelta(seconds=int(age.total_seconds()))) if age >= timedelta(seconds=1) else '0s'} ago"


def _run_facts(run: RunRow | None, now: datetime) -> dict[str, Any] | None:
    if run is None:
        return None
    end = run["finished_at"]
    duration = (end - run["started_at"]).total_seconds() if end else None
    return {**run, "duration_seconds": duration,
            "age_seconds": (now - end).total_seconds() if end else None}


def _run_text(run: RunRow | None, now: datetime) -> str:
    if run is None:
        return "–"
    end = run["finished_at"]
    if end is None:
        return f"#{run['id']} {run['command']} since {timestamp(run['started_at'])}"
    took = (end - run["started_at"]).total_seconds()
    return (f"#{run['id']} {run['command']} {run['status']} (exit {run['exit_code']}), ended {_ago(now - end)}, "
            f"took {took:.1f}s; {plural(run['pairs_stored'], 'pair')} stored, {run['pairs_failed']} failed, "
            f"{plural(run['http_requests'], 'HTTP request')}")


def status_output(view: StatusView) -> Output:
    pairs = [{"exchange": p.exchange, "pair": p.pair, "last_sample": p.last_sample,
              "age_seconds": None if p.age is None else p.age.total_seconds(), "stale": p.stale,
              "delisted_since": p.delisted_since} for p in view.pairs]
    document = {"healthy": view.healthy, "problems": view.problems, "now": view.now,
                "max_age_seconds": view.max_age.total_seconds(), "schema_revision": view.revision,
                "last_run": _run_facts(view.last_run, view.now),
                "last_success": _run_facts(view.last_success, view.now),
                "running": _run_facts(view.running, view.now), "pairs": pairs}
    return Output(document, pairs, ["exchange", "pair", "last_sample", "age_seconds", "stale", "delisted_since"],
                  lambda out: status_table(view, out))


def status_table(view: StatusView, out: TextIO) -> None:
    from rich.table import Table

    terminal = console(out)
    summary = Table(title=f"mcdata is {'healthy' if view.healthy else 'UNHEALTHY'} ({timestamp(view.now)})",
                    title_justify="left", show_header=False)
    summary.add_column("what")
    summary.add_column("state", overflow="fold")
    for name, value in (("last run", _run_text(view.last_run, view.now)),
                        ("last success", _run_text(view.last_success, view.now)),
                        ("under way", _run_text(view.running, view.now)),
                        ("schema", f"revision {view.revision} (the newest)"),
                        *(("problem", printable(problem)) for problem in view.problems)):
        summary.add_row(name, value)
    terminal.print(summary)
    pairs = Table(title=f"Newest sample per pair (stale after {_ago(view.max_age).removesuffix(' ago')})",
                  title_justify="left")
    columns = ["pair", "newest sample", "age", "state"]
    for column in ["exchange", *columns] if view.several_venues else columns:
        pairs.add_column(column, no_wrap=True)
    for pair in view.pairs:
        state = "delisted" if pair.delisted_since else "STALE" if pair.stale else "ok"
        cells = [printable(pair.pair), timestamp(pair.last_sample), _ago(pair.age), state]
        pairs.add_row(*[printable(pair.exchange), *cells] if view.several_venues else cells)
    terminal.print(pairs)


def fold_at_separators(text: str, width: int, separators: str = ",/") -> str:
    """Lines of at most `width` characters, broken after a comma or slash where one allows (a list of
    pairs, a path, a URL), else mid-word."""
    if width < 1 or len(text) <= width:
        return text
    pieces = re.findall(rf"[^{re.escape(separators)}]*[{re.escape(separators)}]?", text)
    lines = [""]
    for piece in filter(None, pieces):
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
        while len(lines[-1]) > width:
            lines[-1:] = [lines[-1][:width], lines[-1][width:]]
    return "\n".join(lines)


def config_output(rows: Sequence[SettingRow], config_path: Path | None, config_read: bool) -> Output:
    settings = [{"name": r.name, "value": r.value, "origin": r.origin, "env_var": r.env_var} for r in rows]
    document = {"config_file": str(config_path) if config_path else None, "config_file_exists": config_read,
                "database": next((r.value for r in rows if r.name == "database_url"), None), "settings": settings}

    def table(out: TextIO) -> None:
        from rich.table import Table

        terminal = console(out)
        drawn = Table(title=f"Config file: {config_path} ({'read' if config_read else 'not found'})",
                      title_justify="left")
        for column in ("setting", "value", "from"):
            drawn.add_column(column, overflow="fold")
        names = max(len("setting"), *(len(row.name) for row in rows))
        origins = max(len("from"), *(len(printable(row.origin)) for row in rows))
        room = terminal.width - names - origins - 10  # three columns: four rules and two spaces of padding each
        for row in rows:
            drawn.add_row(row.name, fold_at_separators(printable(row.value or "–"), room), printable(row.origin))
        terminal.print(drawn)

    return Output(document, settings, ["name", "value", "origin", "env_var"], table)


# -- alerts -------------------------------------------------------------------------------------
ALERT_COLUMNS = ("rule", "kind", "condition", "exchange", "pair", "state", "last_fired_at", "judged_at")
EVENT_COLUMNS = ("id", "created_at", "rule", "exchange", "pair", "as_of", "value", "baseline", "message",
                 "delivery", "delivered_at", "attempts", "last_error")


def alerts_output(rows: Sequence[Mapping[str, Any]]) -> Output:
    def table(out: TextIO) -> None:
        from rich.table import Table

        drawn = Table(title=f"{plural(len({r['rule'] for r in rows}), 'alert rule')}", title_justify="left")
        for column in ("rule", "condition", "pair", "state", "last fired"):
            drawn.add_column(column, overflow="fold")
        for row in rows:
            drawn.add_row(printable(str(row["rule"])), printable(str(row["condition"])), printable(str(row["pair"])),
                          str(row["state"]), timestamp(row["last_fired_at"]))
        console(out).print(drawn)

    return Output({"alerts": list(rows)}, rows, ALERT_COLUMNS, table)


def history_output(rows: Sequence[Mapping[str, Any]]) -> Output:
    def table(out: TextIO) -> None:
        from rich.table import Table

        drawn = Table(title=f"{plural(len(rows), 'alert event')}, newest first", title_justify="left")
        for column in ("#", "when (UTC)", "message", "delivery"):
            drawn.add_column(column, overflow="fold")
        for row in rows:
            delivery = str(row["delivery"]) + (f" ({row['attempts']} tries)" if row["delivery"] != "delivered" else "")
            drawn.add_row(str(row["id"]), row["created_at"].astimezone(UTC).strftime("%m-%d %H:%M"),
                          printable(str(row["message"])), delivery)
        console(out).print(drawn)

    return Output({"events": list(rows)}, rows, EVENT_COLUMNS, table)
