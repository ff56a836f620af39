"""The time mcdata reads, and how far from it a time may be."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# How far ahead of now a time may be (as-of times, corrections; the database refuses later samples with the
# same margin), and how far this machine's clock may be from the source's before its samples are refused.
CLOCK_TOLERANCE = timedelta(minutes=5)
CLOCK_WARNING = timedelta(minutes=1)


def utc_now() -> datetime:
    return datetime.now(UTC)
