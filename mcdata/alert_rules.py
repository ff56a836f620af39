"""Alert rules as the config file writes them (`[[alerts]]` tables), checked before anything is fetched.

Each kind's keys, checks, description and judgement are in `mcdata.alert_kinds`; `mcdata.alerts` judges
the rules after compute.
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

from mcdata.alert_kinds import KINDS
from mcdata.errors import ConfigError
from mcdata.values import ALL_PAIRS, canonical_pair, parse_duration

NAME = re.compile(r"^[a-z0-9_-]{1,40}$")
DEFAULT_COOLDOWN = timedelta(hours=1)
COMMON = ("name", "rule", "pairs", "cooldown", "min_samples")
# Bounds that keep every run's judging short whatever the config says: rules are judged under the lock
# each hour (20,000 rules took 6 s and 458 MB), and a window is read from the raw prices.
MAX_RULES = 1_000
LONGEST_WINDOW = timedelta(days=90)


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
        return KINDS[self.kind].describe(self)

    def fingerprint(self) -> str:
        """The rule as defined (kind, keys, pairs): a state judged for another definition is not this rule's."""
        return hashlib.sha256(repr(dataclasses.astuple(self)).encode()).hexdigest()[:16]


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
    allowed = {*COMMON, *KINDS[kind].keys, *KINDS[kind].optional}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: not a key of a {kind} rule",
                          f"its keys: {', '.join(sorted(allowed))}")
    for key in KINDS[kind].keys:
        if key not in table:
            raise ConfigError(f"{where}: {key}: missing (a {kind} rule needs {' and '.join(KINDS[kind].keys)})")
    values: dict[str, Any] = {}
    for key in sorted(set(table) - {"name", "rule", "pairs"}):
        try:
            values[key] = PARSERS[key](table[key])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
    KINDS[kind].check(where, values)
    return AlertRule(name=name, kind=kind, pairs=_rule_pairs(where, table.get("pairs"), configured_pairs), **values)


def _rule_pairs(where: str, value: Any, configured_pairs: Sequence[str]) -> tuple[str, ...] | None:
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
        if tuple(configured_pairs) != ALL_PAIRS and pair not in configured_pairs:
            raise ConfigError(f"{where}: pairs: {pair} is not one of the configured pairs",
                              "add it to `pairs`, or remove it from the rule")
        pairs.append(pair)
    return tuple(dict.fromkeys(pairs))
