"""Each kind of alert rule in one place: the keys it takes, what it checks of them, how `mcdata alerts`
describes it and how a market is judged by it. Every field of a Kind is required, so a kind cannot be
declared without its judgement, and a rule's kind is looked up in KINDS, never guessed.

The definition of each kind (which samples, the window's bounds, how many samples it needs) is in the
README's "Alerts" section.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from mcdata.errors import ConfigError
from mcdata.values import duration_text

if TYPE_CHECKING:
    from mcdata.alert_rules import AlertRule

# Hourly runs leave samples an hour apart: a window shorter than that would hold none.
SAMPLING_INTERVAL = timedelta(hours=1)
# The window before the latest sample is widened by this much, so that the sample of a run exactly one
# window earlier counts whatever cron's jitter (a run at 13:05:02 sees the one at 12:05:01).
JITTER = timedelta(minutes=5)

Window = Sequence[tuple[datetime, float]]  # the samples in [latest_at - window - JITTER, latest_at), oldest first


@dataclass(frozen=True)
class Market:
    exchange: str
    pair: str
    latest_price: float
    latest_at: datetime
    volatility: float | None
    volatility_rank: int | None


@dataclass(frozen=True)
class Judgement:
    holds: bool | None  # None: cannot judge (too few samples, no metrics)
    value: float = math.nan
    baseline: float | None = None
    text: str = ""


@dataclass(frozen=True)
class Kind:
    keys: tuple[str, ...]  # needed besides name, rule, pairs, cooldown and min_samples
    optional: tuple[str, ...]
    describe: Callable[[AlertRule], str]  # the condition in a few words
    check: Callable[[str, Mapping[str, Any]], None]  # beyond each key's own parser; raises ConfigError
    judge: Callable[[AlertRule, Market, Window, datetime], Judgement]
    windowed: bool  # judged on the samples of `window`: not judged until they cover it and reach min_samples
    priced: bool  # its message names the quote currency
    moves: bool  # its message says how far the latest price is from the baseline, in %


def _mean(prices: Sequence[float]) -> float:
    return math.fsum(prices) / len(prices)


def _no_check(_where: str, _values: Mapping[str, Any]) -> None:
    return None


def _window_text(rule: AlertRule) -> str:
    return duration_text(rule.window) if rule.window else ""


def _factor_above_one(kind: str) -> Callable[[str, Mapping[str, Any]], None]:
    def check(where: str, values: Mapping[str, Any]) -> None:
        if values["factor"] <= 1:
            raise ConfigError(f"{where}: factor: must be greater than 1 (a {kind} is a move by that factor)")
        _window_long_enough(where, values)

    return check


def _window_long_enough(where: str, values: Mapping[str, Any]) -> None:
    if values["window"] < SAMPLING_INTERVAL:
        raise ConfigError(f"{where}: window: {duration_text(values['window'])} is shorter than the hourly "
                          "sampling interval", "use 1h or more")


def _judge_spike(rule: AlertRule, market: Market, window: Window, _now: datetime) -> Judgement:
    assert rule.factor is not None
    latest, mean = market.latest_price, _mean([p for _, p in window])
    return Judgement(latest > rule.factor * mean, latest, mean,
                     f"{latest:g} is more than {rule.factor:g} × the mean {mean:g} of the {len(window)} "
                     f"samples before it")


def _judge_drop(rule: AlertRule, market: Market, window: Window, _now: datetime) -> Judgement:
    assert rule.factor is not None
    latest, mean = market.latest_price, _mean([p for _, p in window])
    return Judgement(latest < mean / rule.factor, latest, mean,
                     f"{latest:g} is less than the mean {mean:g} of the {len(window)} samples before it "
                     f"/ {rule.factor:g}")


def _judge_level(above: bool) -> Callable[[AlertRule, Market, Window, datetime], Judgement]:
    def judge(rule: AlertRule, market: Market, _window: Window, _now: datetime) -> Judgement:
        assert rule.price is not None
        latest = market.latest_price
        holds = latest > rule.price if above else latest < rule.price
        return Judgement(holds, latest, rule.price, f"{latest:g} is {'above' if above else 'below'} {rule.price:g}")

    return judge


def _judge_change(rule: AlertRule, market: Market, window: Window, _now: datetime) -> Judgement:
    assert rule.pct is not None
    latest, start = market.latest_price, window[0][1]
    change = (latest / start - 1) * 100
    return Judgement(abs(change) >= rule.pct, change, start,
                     f"changed {change:+.2f}% from {start:g} (at {window[0][0]:%Y-%m-%d %H:%M} UTC) to {latest:g}")


def _judge_volatility(rule: AlertRule, market: Market, _window: Window, _now: datetime) -> Judgement:
    if market.volatility is None:
        return Judgement(None)
    over = rule.pct is not None and market.volatility >= rule.pct
    ranked = rule.rank is not None and market.volatility_rank is not None and market.volatility_rank <= rule.rank
    rank = f", rank {market.volatility_rank}" if market.volatility_rank is not None else ""
    return Judgement(over or ranked, market.volatility, rule.pct, f"24h volatility {market.volatility:.3f}%{rank}")


def _check_volatility(where: str, values: Mapping[str, Any]) -> None:
    if "pct" not in values and "rank" not in values:
        raise ConfigError(f"{where}: pct: missing (a volatility rule needs pct or rank, or both)")


def _describe_volatility(rule: AlertRule) -> str:
    return " or ".join(part for part in (
        f"24h volatility ≥ {rule.pct:g}%" if rule.pct is not None else "",
        f"volatility rank ≤ {rule.rank}" if rule.rank is not None else "") if part)


def _judge_stale(rule: AlertRule, market: Market, _window: Window, now: datetime) -> Judgement:
    assert rule.after is not None
    age = now - market.latest_at
    return Judgement(age > rule.after, age.total_seconds(), rule.after.total_seconds(),
                     f"no new sample since {market.latest_at:%Y-%m-%d %H:%M} UTC ({int(age.total_seconds() // 60)} "
                     "minutes)")


def _check_stale(where: str, values: Mapping[str, Any]) -> None:
    if values["after"] < SAMPLING_INTERVAL:
        raise ConfigError(f"{where}: after: shorter than the hourly sampling interval", "use 1h or more")


KINDS: dict[str, Kind] = {
    "spike": Kind(("factor", "window"), (), lambda r: f"latest > {r.factor:g} × mean of the {_window_text(r)} before",
                  _factor_above_one("spike"), _judge_spike, windowed=True, priced=True, moves=True),
    "drop": Kind(("factor", "window"), (), lambda r: f"latest < mean of the {_window_text(r)} before / {r.factor:g}",
                 _factor_above_one("drop"), _judge_drop, windowed=True, priced=True, moves=True),
    "above": Kind(("price",), (), lambda r: f"latest > {r.price:g}", _no_check, _judge_level(above=True),
                  windowed=False, priced=True, moves=True),
    "below": Kind(("price",), (), lambda r: f"latest < {r.price:g}", _no_check, _judge_level(above=False),
                  windowed=False, priced=True, moves=True),
    "change": Kind(("pct", "window"), (), lambda r: f"|change over {_window_text(r)}| ≥ {r.pct:g}%",
                   _window_long_enough, _judge_change, windowed=True, priced=True, moves=False),
    "volatility": Kind((), ("pct", "rank"), _describe_volatility, _check_volatility, _judge_volatility,
                       windowed=False, priced=True, moves=False),
    "stale": Kind(("after",), (), lambda r: f"no sample for more than {duration_text(r.after) if r.after else ''}",
                  _check_stale, _judge_stale, windowed=False, priced=False, moves=False),
}
