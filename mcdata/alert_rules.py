"""Alert rules as the config file writes them (`[[alerts]]` tables), checked before anything is fetched.

The definition of each kind (which samples, the window's bounds, how many samples it needs) is in the
README's "Alerts" section; `mcdata.alerts` judges them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from mcdata.errors import ConfigError

NAME = re.compile(r"^[a-z0-9_-]{1,40}$")
DEFAULT_COOLDOWN = timedelta(hours=1)
# Hourly runs leave samples an hour apart: a window shorter than that would hold none.
SAMPLING_INTERVAL = timedelta(hours=1)
# The window before the latest sample is widened by this much, so that the sample of a run exactly one
# window earlier counts whatever cron's jitter (a run at 13:05:02 sees the one at 12:05:01).
JITTER = timedelta(minutes=5)
# What each kind needs besides name, rule, pairs, cooldown and min_samples; `volatility` needs one of two.
KINDS: dict[str, tuple[str, ...]] = {
    "spike": ("factor", "window"), "drop": ("factor", "window"), "above": ("price",), "below": ("price",),
    "change": ("pct", "window"), "volatility": (), "stale": ("after",),
}
COMMON = ("name", "rule", "pairs", "cooldown", "min_samples")
# Bounds that keep every run's judging short whatever the config says: rules are judged under the lock
# each hour (20,000 rules took 6 s and 458 MB), and a window is read from the raw prices.
MAX_RULES = 1_000
LONGEST_WINDOW = timedelta(days=90)
OPTIONAL = {"volatility": ("pct", "rank")}


@dataclass(frozen=True)
class AlertRule:
    name: str
    kind: str
    pairs: tuple[str, ...] | None  # None: every configured pair
    cooldown: timedelta = DEFAULT_COOLDOWN
    min_samples: int = 1
    factor: float | None = None
    window: timedelta | None = None
    price: float | None = None
    pct: float | None = None
    rank: int | None = None
    after: timedelta | None = None

    def describe(self) -> str:
        """The condition in a few words, for `mcdata alerts`."""
        window = _duration(self.window) if self.window else ""
        if self.kind == "spike":
            return f"latest > {self.factor:g} × mean of the {window} before"
        if self.kind == "drop":
            return f"latest < mean of the {window} before / {self.factor:g}"
        if self.kind in ("above", "below"):
            return f"latest {'>' if self.kind == 'above' else '<'} {self.price:g}"
        if self.kind == "change":
            return f"|change over {window}| ≥ {self.pct:g}%"
        if self.kind == "volatility":
            return " or ".join(part for part in (
                f"24h volatility ≥ {self.pct:g}%" if self.pct is not None else "",
                f"volatility rank ≤ {self.rank}" if self.rank is not None else "") if part)
        return f"no sample for more than {_duration(self.after) if self.after else ''}"

    def fingerprint(self) -> str:
        """The rule as defined (kind, keys, pairs): a state judged for another definition is not this rule's."""
        return hashlib.sha256(repr(dataclasses.astuple(self)).encode()).hexdigest()[:16]


def _duration(value: timedelta) -> str:
    from mcdata.config import duration_text

    return duration_text(value)


def _number(positive: bool = True) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("expected a number")
        number = float(value)
        if not math.isfinite(number) or (positive and number <= 0):
            raise ValueError("expected a positive number")
        return number

    return parse


def _rule_duration(value: Any) -> timedelta:
    from mcdata.config import parse_duration

    return parse_duration(value, LONGEST_WINDOW)


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ValueError("expected a whole number from 1 to 1000")
    return value


PARSERS: dict[str, Callable[[Any], Any]] = {
    "factor": _number(), "window": _rule_duration, "price": _number(), "pct": _number(), "rank": _whole,
    "after": _rule_duration, "cooldown": _rule_duration, "min_samples": _whole,
}


def parse_rules(value: Any, configured_pairs: Sequence[str]) -> tuple[AlertRule, ...]:
    """The `alerts` setting (a list of tables) as rules; the first problem is exit 2, naming rule and key."""
    if not isinstance(value, list | tuple):
        raise ConfigError("alerts: expected a list of [[alerts]] tables")
    if len(value) > MAX_RULES:
        raise ConfigError(f"alerts: {len(value):,} rules; at most {MAX_RULES:,}",
                          "a rule may name many pairs, or none for every configured pair")
    rules: dict[str, AlertRule] = {}
    for index, table in enumerate(value, 1):
        rule = _parse_rule(table, index, configured_pairs)
        if rule.name in rules:
            raise ConfigError(f'alert "{rule.name}": name: used by two rules', "give each rule its own name")
        rules[rule.name] = rule
    return tuple(rules.values())


def _parse_rule(table: Any, index: int, configured_pairs: Sequence[str]) -> AlertRule:
    if not isinstance(table, Mapping):
        raise ConfigError(f"alert #{index}: expected a table of keys")
    name = table.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"alert #{index}: name: expected 1-40 characters of a-z, 0-9, _ and -")
    where = f'alert "{name}"'
    kind = table.get("rule")
    if kind not in KINDS:
        raise ConfigError(f"{where}: rule: {str(kind)[:40]!r} is not a kind of rule", f"use one of {', '.join(KINDS)}")
    allowed = {*COMMON, *KINDS[kind], *OPTIONAL.get(kind, ())}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: not a key of a {kind} rule",
                          f"its keys: {', '.join(sorted(allowed))}")
    for key in KINDS[kind]:
        if key not in table:
            raise ConfigError(f"{where}: {key}: missing (a {kind} rule needs {' and '.join(KINDS[kind])})")
    values: dict[str, Any] = {}
    for key in sorted(set(table) - {"name", "rule", "pairs"}):
        try:
            values[key] = PARSERS[key](table[key])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
    _check_kind(where, kind, values)
    return AlertRule(name=name, kind=kind, pairs=_rule_pairs(where, table.get("pairs"), configured_pairs), **values)


def _check_kind(where: str, kind: str, values: dict[str, Any]) -> None:
    if kind in ("spike", "drop") and values["factor"] <= 1:
        raise ConfigError(f"{where}: factor: must be greater than 1 (a {kind} is a move by that factor)")
    window = values.get("window")
    if window is not None and window < SAMPLING_INTERVAL:
        raise ConfigError(f"{where}: window: {_duration(window)} is shorter than the hourly sampling interval",
                          "use 1h or more")
    if kind == "volatility" and "pct" not in values and "rank" not in values:
        raise ConfigError(f"{where}: pct: missing (a volatility rule needs pct or rank, or both)")
    if kind == "stale" and values["after"] < SAMPLING_INTERVAL:
        raise ConfigError(f"{where}: after: shorter than the hourly sampling interval", "use 1h or more")


def _rule_pairs(where: str, value: Any, configured_pairs: Sequence[str]) -> tuple[str, ...] | None:
    from mcdata.config import canonical_pair

    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: pairs: expected a list of pairs such as [\"btceur\"]")
    pairs = []
    for raw in value:
        try:
            pair = canonical_pair(str(raw))
        except ValueError as exc:
            raise ConfigError(f"{where}: pairs: {exc}") from None
        if tuple(configured_pairs) != ("all",) and pair not in configured_pairs:
            raise ConfigError(f"{where}: pairs: {pair} is not one of the configured pairs",
                              "add it to `pairs`, or remove it from the rule")
        pairs.append(pair)
    return tuple(dict.fromkeys(pairs))
