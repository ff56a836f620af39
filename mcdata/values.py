"""The values settings and flags are written in, parsed and written back: durations, instants, pair names.
Below `config` and `alert_rules`, which both read them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from mcdata.errors import ConfigError, printable
from mcdata.wording import instant_text

PAIR_PATTERN = re.compile(r"^[a-z0-9]{2,40}$")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


MAX_DURATION = timedelta(days=36_500)  # a century: longer is a typo, and would overflow date arithmetic


def parse_duration(text: str, longest: timedelta = MAX_DURATION) -> timedelta:
    """`7d`, `12h`, `30m`, `45s`, or `0` for none; at most `longest`."""
    text = str(text).strip().lower()
    if text == "0":
        return timedelta(0)
    match = _DURATION.match(text)
    if not match:
        raise ValueError("expected a duration such as 7d, 12h, 30m or 0")
    amount, unit = int(match.group(1)), _DURATION_UNITS[match.group(2)]
    if amount > longest // timedelta(**{unit: 1}):
        raise ValueError(f"at most {duration_text(longest)}")
    return timedelta(**{unit: amount})


def parse_timestamp(text: str, option: str = "--as-of") -> datetime:
    """ISO 8601; without an offset the time is UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ConfigError(f"{option}: {printable(text[:60])!r} is not an ISO 8601 time",
                          "write it like 2026-11-24T12:00 or 2026-11-24T12:00+01:00") from None
    if value < EARLIEST_TIME:
        raise ConfigError(f"{option}: {instant_text(value)} is before {EARLIEST_TIME.year}",
                          "crypto prices start in 2009; write a later time")
    return value


EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def validate_pair(pair: str) -> str:
    if not PAIR_PATTERN.match(pair):
        shown = repr(pair) if len(pair) <= 60 else repr(pair[:57]) + "..."
        words = pair.split()
        if len(words) > 1 and all(PAIR_PATTERN.match(word) for word in words):
            raise ConfigError(f"invalid pair name {shown}", f"separate pairs with commas: {','.join(words)}")
        raise ConfigError(
            f"invalid pair name {shown}",
            "pair names are 2-40 lowercase letters and digits, such as btceur",
        )
    return pair


def canonical_pair(text: str) -> str:
    """btceur from btceur, BTCEUR, btc-eur, BTC/EUR or btc_eur; then validated."""
    return validate_pair(re.sub(r"[-/_]", "", text.strip()).lower())


ALL_PAIRS = ("all",)  # `--pairs all`: every pair the source lists


def parse_pairs(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated string or a list; `all` means every pair the source lists."""
    items = value.split(",") if isinstance(value, str) else list(value)
    pairs = tuple(dict.fromkeys(str(item).strip().lower() for item in items if str(item).strip()))
    if not pairs:
        raise ValueError("expected at least one pair, or `all`")
    if pairs == ALL_PAIRS:
        return pairs
    return tuple(dict.fromkeys(canonical_pair(pair) for pair in pairs))


def duration_text(value: timedelta) -> str:
    """A duration as the settings write it: 2h, 7d, 90m, 45s; 1d12h for what one unit cannot say."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def check_venue(name: str, option: str = "--exchange") -> str:
    """One venue name by the venue rule (lowercase letters, digits and dashes), else exit 2."""
    try:
        venue = parse_venues(name)
    except ValueError as exc:
        raise ConfigError(f"{option}: invalid value {name[:40]!r}: {exc}") from None
    if "," in venue:
        raise ConfigError(f"{option}: one venue here, not {venue[:60]!r}")
    return venue


def parse_venues(value: Any) -> str:
    """One venue, or several separated by commas (each its own series): `kraken` or `kraken,bitstamp`."""
    names = [name.strip() for name in (str(value).lower().split(",") if isinstance(value, str) else value)]
    if not names or not all(re.match(r"^[a-z0-9][a-z0-9-]{0,39}$", name) for name in names):
        raise ValueError("expected a venue name such as kraken or bitstamp, or several separated by commas")
    return ",".join(dict.fromkeys(names))
