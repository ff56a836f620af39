"""Instants as people and logs read them: UTC, ISO 8601, ending in `Z` like the time on each log line."""

from __future__ import annotations

from datetime import UTC, datetime


def instant_text(moment: datetime) -> str:
    """2026-11-26T18:00:00Z (microseconds kept when there are some)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
