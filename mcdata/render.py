"""Everything the user sees: progress, tables, JSON, CSV and charts. Rich is for humans only."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console


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


FORMATS = ("table", "json", "csv")


def printable(text: str) -> str:
    """Escape control characters so that nothing echoed back can drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def write_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, default=_plain, indent=2, allow_nan=False) + "\n")


def write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # every digit: CSV readers get the stored double back
    return _plain(value)


def console(out: TextIO) -> Console:
    """A console that never truncates: wide enough for the whole table when not on a terminal."""
    from rich.console import Console

    if out.isatty():
        return Console(file=out)
    return Console(file=out, width=200, no_color=True, highlight=False, emoji=False, soft_wrap=False)


def pairs_table(rows: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    from rich.table import Table

    table = Table(title=f"{len(rows)} pairs", title_justify="left")
    for column in ("pair", "venue symbol", "trading", "configured"):
        table.add_column(column)
    for row in rows:
        table.add_row(printable(str(row["pair"])), printable(str(row["venue_symbol"])),
                      "yes" if row["active"] else "no", "yes" if row["configured"] else "")
    console(out).print(table)


def write(data: Any, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], output_format: str,
          table: Callable[[TextIO], None], out: TextIO) -> None:
    """Dispatch on the format: JSON and CSV plainly to stdout, a rich table for humans."""
    if output_format == "json":
        write_json(data, out)
    elif output_format == "csv":
        write_csv(rows, columns, out)
    else:
        table(out)
