"""An independent, pure-Python reading of DESIGN §5, to check the SQL against.

Exact where it can be: means and deviations through `fractions.Fraction` on the stored doubles.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

Sample = tuple[str, str, datetime, float]  # exchange, pair, timestamp, price


def exact_mean(values: list[float]) -> float:
    return float(sum(map(Fraction, values)) / len(values))


def exact_stdev(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    exact = list(map(Fraction, values))
    mean = sum(exact) / len(exact)
    variance = sum((x - mean) ** 2 for x in exact) / (len(exact) - 1)
    return math.sqrt(variance)


def significant(value: float, digits: int = 12) -> Decimal:
    """`value` at `digits` significant digits, exactly (decimal rounding half-even of the double)."""
    exact = Decimal(value)
    return exact if exact == 0 else round(exact, digits - 1 - exact.adjusted())


def sql_rank(values: dict[Any, float | None]) -> dict[Any, int | None]:
    """RANK() with the largest first and ties sharing a rank; None stays None. Values compare at 12
    significant digits (DESIGN §5's ties, README: float noise in the last digits never splits a tie)."""
    keys = {key: None if v is None else significant(v) for key, v in values.items()}
    ranked = sorted((k for k in keys.values() if k is not None), reverse=True)
    return {key: None if k is None else 1 + sum(1 for other in ranked if other > k) for key, k in keys.items()}


def reference_metrics(samples: Iterable[Sample], as_of: datetime) -> dict[tuple[str, str], dict[str, Any]]:
    by_market: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    for exchange, pair, ts, price in samples:
        by_market[(exchange, pair)].append((ts, price))
    week_start, day_start = as_of - timedelta(days=7), as_of - timedelta(hours=24)
    result: dict[tuple[str, str], dict[str, Any]] = {}
    for market, points in by_market.items():
        upto = sorted(p for p in points if p[0] <= as_of)
        if not upto:
            continue
        latest_at, latest_price = upto[-1]
        week = [price for ts, price in upto if ts > week_start]
        day = [price for ts, price in upto if ts > day_start]
        before = [price for ts, price in upto if ts <= day_start]
        stddev = exact_stdev(day)
        result[market] = {
            "latest_price": latest_price,
            "latest_at": latest_at,
            "weekly_average": exact_mean(week) if week else None,
            "min_price": min(week) if week else None,
            "max_price": max(week) if week else None,
            "stddev_24h": stddev,
            "volatility_24h": None if stddev is None else stddev / exact_mean(day) * 100,
            "change_24h_pct": (latest_price / before[-1] - 1) * 100 if before else None,
            "samples_24h": len(day),
            "samples_7d": len(week),
        }
    for venue in {exchange for exchange, _ in result}:  # ranks are among the pairs of one venue
        for column, rank_column in (("stddev_24h", "std_rank"), ("volatility_24h", "volatility_rank")):
            ranks = sql_rank({m: r[column] for m, r in result.items() if m[0] == venue})
            for market, value in ranks.items():
                result[market][rank_column] = value
    return result
