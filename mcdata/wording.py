"""How values are written in messages: instants in UTC ending in `Z` (like the time on each log line),
counts with their noun in the right number, lists in words; and the output formats' names, which help
texts name without loading the renderer."""

from __future__ import annotations

from datetime import UTC, datetime


def instant_text(moment: datetime) -> str:
    """2026-11-26T18:00:00Z (microseconds kept when there are some)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 price row`, `2 price rows`, `1,234 pairs`; `many` for nouns whose plural is not noun + s."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {many or noun + 's'}"


# The output formats, the first the default (mcdata.render.FORMATS holds a writer for each name).
FORMAT_NAMES = ("table", "json", "csv")


def in_words(items: tuple[str, ...] | list[str], last: str = "or") -> str:
    """`table, json or csv`."""
    return f"{', '.join(items[:-1])} {last} {items[-1]}" if len(items) > 1 else "".join(items)


FORMATS_HELP = f"{FORMAT_NAMES[0]} (default), {in_words(FORMAT_NAMES[1:])}."
