"""Alerts: judge each rule for each of its markets after compute, record firings in the outbox in the
same transaction as the metrics, and deliver the outbox through apprise after commit.

Fire once, re-arm, cool down: a rule fires for a market when its condition becomes true; it does not fire
again while the condition stays true; it re-arms when a judgement finds the condition false; and it does
not fire within `cooldown` of its last firing (a condition that becomes true inside the cooldown counts
as firing, without an event). A market the rule cannot judge (too few samples, no metrics) keeps its state.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mcdata import notify, store
from mcdata.alert_kinds import JITTER, KINDS, SAMPLING_INTERVAL, Judgement, Market, Window
from mcdata.alert_rules import AlertRule
from mcdata.errors import masked_notify_url
from mcdata.schema import alert_events, alert_state, metrics, raw_prices
from mcdata.values import ALL_PAIRS, duration_text
from mcdata.wording import plural

log = logging.getLogger("mcdata")

MAX_ATTEMPTS = 24  # a day of hourly runs
MAX_AGE = timedelta(days=2)  # an event older than this is not sent any more: it would be news from the past
TEST_TITLE = "mcdata test notification"
# The longest a run spends delivering (it holds the lock meanwhile), whatever the receivers do: then the
# notifier process is killed; what is left waits for the next run.
DELIVERY_BUDGET = timedelta(seconds=20)


@dataclass(frozen=True)
class Fired:
    """An event a judgement wrote to the outbox."""

    id: int
    message: str


# -- judging ------------------------------------------------------------------------------------------
def judge(rule: AlertRule, market: Market, window: Window, now: datetime) -> Judgement:
    """One rule for one market, by its kind; `window` holds the samples in [latest_at - window - JITTER,
    latest_at), oldest first. A windowed kind is not judged until its samples cover the window."""
    kind = KINDS[rule.kind]
    if kind.windowed and (len(window) < rule.min_samples or not _covers(rule, market, window)):
        return Judgement(None)
    return kind.judge(rule, market, window, now)


def _covers(rule: AlertRule, market: Market, window: Sequence[tuple[datetime, float]]) -> bool:
    """The samples reach back to the window's start (within a sampling interval): a window that only holds
    its last hours (a new pair, an outage, pruned history) would silently measure a shorter one."""
    assert rule.window is not None
    start = market.latest_at - rule.window - JITTER
    return bool(window) and window[0][0] - start <= SAMPLING_INTERVAL + JITTER


# -- evaluating after compute ---------------------------------------------------------------------------
def evaluate(connection: sa.Connection, rules: Sequence[AlertRule], exchange: str, pairs: Sequence[str],
             as_of: datetime, now: datetime) -> list[Fired]:
    """Judge every rule for its markets at `as_of` (the snapshot compute just wrote, in this transaction);
    the events it fired."""
    if not rules:
        return []
    markets = _markets(connection, exchange, as_of)
    wanted = {rule.name: [markets[p] for p in (rule.pairs or ([*markets] if tuple(pairs) == ALL_PAIRS else pairs))
                          if p in markets] for rule in rules}
    samples = _samples(connection, exchange, rules, wanted)  # once for every rule: the longest window
    states = {(r.rule, r.pair): r for r in connection.execute(
        sa.select(alert_state).where(alert_state.c.exchange == exchange))}
    fired: list[Fired] = []
    for rule in rules:
        definition = rule.fingerprint()
        for market in wanted[rule.name]:
            window = _window(rule, market, samples.get(market.pair))
            judgement = judge(rule, market, window, now)
            event = _record(connection, rule, definition, market, judgement, states.get((rule.name, market.pair)),
                            as_of, now)
            if event is not None:
                fired.append(event)
    return fired


def forget_removed(connection: sa.Connection, rules: Sequence[AlertRule]) -> None:
    """The states of rules no longer configured: a rule added back starts fresh, so a crossing while it
    was away is notified."""
    connection.execute(alert_state.delete().where(alert_state.c.rule.not_in([rule.name for rule in rules])))


def _markets(connection: sa.Connection, exchange: str, as_of: datetime) -> dict[str, Market]:
    query = sa.select(metrics.c.exchange, metrics.c.pair, metrics.c.latest_price, metrics.c.latest_at,
                      metrics.c.volatility_24h, metrics.c.volatility_rank).where(
        metrics.c.exchange == exchange, metrics.c.timestamp == as_of)
    return {r.pair: Market(r.exchange, r.pair, r.latest_price, r.latest_at, r.volatility_24h, r.volatility_rank)
            for r in connection.execute(query)}


Samples = tuple[list[datetime], list[tuple[datetime, float]]]  # a pair's sample times, and the samples


def _samples(connection: sa.Connection, exchange: str, rules: Sequence[AlertRule],
             wanted: Mapping[str, Sequence[Market]]) -> dict[str, Samples]:
    """The raw samples of every market a windowed rule judges, back to the longest window's start: one
    read for all the rules (ten rules with year-long windows must not read the year ten times)."""
    windowed = [rule for rule in rules if rule.window is not None and wanted[rule.name]]
    if not windowed:
        return {}
    reach = max(rule.window for rule in windowed if rule.window is not None) + JITTER
    latest_at = {m.pair: m.latest_at for rule in windowed for m in wanted[rule.name]}
    query = (sa.select(raw_prices.c.pair, raw_prices.c.timestamp, raw_prices.c.price)
             .where(raw_prices.c.exchange == exchange, raw_prices.c.pair.in_(sa.bindparam("pairs", expanding=True)),
                    raw_prices.c.timestamp >= min(latest_at.values()) - reach)
             .order_by(raw_prices.c.pair, raw_prices.c.timestamp))
    samples: dict[str, Samples] = {}
    for chunk in store.chunked(latest_at):
        for row in connection.execute(query, {"pairs": chunk}):
            if latest_at[row.pair] - reach <= row.timestamp < latest_at[row.pair]:
                times, points = samples.setdefault(row.pair, ([], []))
                times.append(row.timestamp)
                points.append((row.timestamp, row.price))
    return samples


def _window(rule: AlertRule, market: Market, samples: Samples | None) -> list[tuple[datetime, float]]:
    """The samples in [latest_at - window - JITTER, latest_at), oldest first."""
    if rule.window is None or samples is None:
        return []
    times, points = samples
    return points[bisect.bisect_left(times, market.latest_at - rule.window - JITTER):]


# Quote currencies, longest first: a pair's quote is the longest of these it ends with (btcusdt: USDT).
QUOTES = ("usdt", "usdc", "busd", "dai", "eur", "usd", "gbp", "jpy", "chf", "cad", "aud", "try", "btc", "eth")


def quote_of(pair: str) -> str | None:
    found = [quote for quote in QUOTES if pair.endswith(quote) and len(pair) > len(quote)]
    return max(found, key=len).upper() if found else None


def _message(rule: AlertRule, market: Market, judgement: Judgement, as_of: datetime) -> str:
    """What is sent, read hours later maybe (an outbox): when it happened, in which currency, how far it
    moved and over which window."""
    details = []
    quote = quote_of(market.pair)
    kind = KINDS[rule.kind]
    if quote and kind.priced:
        details.append(f"prices in {quote}")
    if kind.moves and judgement.baseline:
        details.append(f"{(market.latest_price / judgement.baseline - 1) * 100:+.2f}%")
    if rule.window is not None:
        details.append(f"window {duration_text(rule.window)}")
    extra = f" ({'; '.join(details)})" if details else ""
    return (f"{rule.name}: {market.pair} on {market.exchange} at {as_of:%Y-%m-%d %H:%M} UTC: "
            f"{judgement.text}{extra}")


def _record(connection: sa.Connection, rule: AlertRule, definition: str, market: Market, judgement: Judgement,
            state: Any, as_of: datetime, now: datetime) -> Fired | None:
    """Apply fire once / re-arm / cool down; the new event, if it fired. A state judged for another
    definition of the rule (its condition, window or pairs changed) is no state: the rule starts fresh."""
    if judgement.holds is None:
        return None
    key = {"rule": rule.name, "exchange": market.exchange, "pair": market.pair}
    same_rule = state is not None and state.definition == definition
    was_firing = bool(same_rule and state.firing)
    last_fired = state.last_fired_at if same_rule else None
    event = None
    if judgement.holds and not was_firing and (last_fired is None or as_of - last_fired >= rule.cooldown):
        message = _message(rule, market, judgement, as_of)
        event = Fired(int(connection.execute(alert_events.insert().values(
            **key, as_of=as_of, value=judgement.value, baseline=judgement.baseline, message=message,
            created_at=now, attempts=0).returning(alert_events.c.id)).scalar_one()), message)
        last_fired = as_of
    values = {"firing": judgement.holds, "last_fired_at": last_fired, "judged_at": now, "definition": definition}
    if state is None:
        connection.execute(alert_state.insert().values(**key, **values))
    else:
        connection.execute(alert_state.update().where(
            alert_state.c.rule == rule.name, alert_state.c.exchange == market.exchange,
            alert_state.c.pair == market.pair).values(**values))
    return event


# -- delivering the outbox --------------------------------------------------------------------------
def fingerprint(url: str) -> str:
    """A notify URL named without its secrets: which destinations took an event."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def pending(connection: sa.Connection, now: datetime) -> list[Any]:
    return list(connection.execute(
        sa.select(alert_events).where(alert_events.c.delivered_at.is_(None),
                                      alert_events.c.attempts < MAX_ATTEMPTS,
                                      alert_events.c.created_at >= now - MAX_AGE)
        .order_by(alert_events.c.id)))


def deliver(write: Callable[[], Any], urls: Sequence[str], now: Callable[[], datetime]) -> tuple[int, int]:
    """Send every pending event to every notify URL that has not taken it yet: (delivered, failed).

    Each attempt is counted (committed) before it is sent and its outcome recorded after, all within
    DELIVERY_BUDGET (notify.send_all: a process killed when the budget ends). An event repeats at most
    once: when a receiver did not answer (it may have taken it: marked `?` in delivered_to, sent once
    more, then counted as taken), or when this process is killed between sending and recording. With no
    notify URL nothing is sent and nothing is marked delivered: the events wait for a URL.
    """
    if not urls:
        return 0, 0
    with write() as connection:
        events = pending(connection, now())
    if not events:
        return 0, 0
    marks = [fingerprint(url) for url in urls]
    jobs: list[notify.Job] = []
    owners: list[tuple[int, int]] = []  # (event index, URL index) of each job
    for number, event in enumerate(events):
        taken = set((event.delivered_to or "").split())
        for index, (url, mark) in enumerate(zip(urls, marks, strict=True)):
            if mark not in taken:
                jobs.append((url, f"mcdata alert: {event.rule}", event.message, "warning"))
                owners.append((number, index))
    tried = sorted({events[number].id for number, _ in owners})
    with write() as connection:
        for chunk in store.chunked(tried):
            connection.execute(alert_events.update().where(alert_events.c.id.in_(chunk))
                               .values(attempts=alert_events.c.attempts + 1))
    outcomes = notify.send_all(jobs, DELIVERY_BUDGET.total_seconds())
    by_event: dict[int, list[tuple[int, notify.Outcome]]] = {}
    for (number, index), outcome in zip(owners, outcomes, strict=True):
        by_event.setdefault(number, []).append((index, outcome))
    delivered = failed = 0
    with write() as connection:
        for number, event in enumerate(events):
            done = _record_delivery(connection, event, urls, marks, by_event.get(number, []), now())
            delivered += done
            failed += not done
    left = sum(not o.started for o in outcomes)
    if left:
        log.warning("warning: %s left pending: delivering took longer than %gs; the next run goes on",
                    plural(left, "notification"), DELIVERY_BUDGET.total_seconds())
    return delivered, failed


def _record_delivery(connection: sa.Connection, event: Any, urls: Sequence[str], marks: Sequence[str],
                     outcomes: Sequence[tuple[int, notify.Outcome]], now: datetime) -> bool:
    """Record what each URL did with one event; True when every URL has taken it."""
    taken = set((event.delivered_to or "").split())
    errors = []
    for index, outcome in outcomes:
        mark = marks[index]
        if outcome.error is None or (outcome.uncertain and f"?{mark}" in taken):
            taken.add(mark)  # taken, or unanswered twice: counted as taken (it repeats at most once)
            taken.discard(f"?{mark}")
            continue
        if outcome.uncertain:
            taken.add(f"?{mark}")
        if outcome.started:
            errors.append(f"notify URL #{index + 1} {masked_notify_url(urls[index])}: "
                          f"{notify.scrubbed(outcome.error, urls[index])}")
    done = all(mark in taken for mark in marks)
    values: dict[str, Any] = {"delivered_to": " ".join(sorted(taken)) or None,
                              "delivered_at": now if done else None}
    if errors or done:
        values["last_error"] = "; ".join(errors) or None
    if outcomes and not done and not any(outcome.started for _, outcome in outcomes):
        values["attempts"] = alert_events.c.attempts - 1  # the budget ended before it was tried
    connection.execute(alert_events.update().where(alert_events.c.id == event.id).values(**values))
    if errors:
        tries = event.attempts + 1
        last = " (the last try: it is too many)" if tries >= MAX_ATTEMPTS else "; the next run tries again"
        log.warning("warning: alert #%d not delivered (attempt %d): %s%s", event.id, tries, "; ".join(errors), last)
    return done
