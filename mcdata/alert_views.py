"""What `mcdata alerts` shows and sends: each rule's state, the events and their delivery, a test
notification. Reads only; the judging and the outbox are in mcdata.alerts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mcdata import alerts, notify, store
from mcdata.alert_rules import AlertRule
from mcdata.clock import utc_now
from mcdata.config import Settings
from mcdata.errors import ConfigError, masked_notify_url
from mcdata.reading import reading
from mcdata.schema import alert_events, alert_state


def alert_states(settings: Settings) -> list[dict[str, object]]:
    """Each rule, each of its markets: firing, ok or not judged yet, and when it last fired."""
    with reading(settings) as (_, connection):
        states = {(r.rule, r.exchange, r.pair): r for r in connection.execute(sa.select(alert_state))}
        stored = store.newest_samples(connection)
    rows: list[dict[str, object]] = []
    for rule in settings.alerts:
        for venue in settings.venues:
            every = sorted(pair for exchange, pair in stored if exchange == venue)
            pairs = rule.pairs or settings.pairs_for(every)
            rows += [_state_row(rule, venue, pair, states.get((rule.name, venue, pair))) for pair in pairs]
    return rows


def _state_row(rule: AlertRule, venue: str, pair: str, state: Any) -> dict[str, object]:
    return {"rule": rule.name, "kind": rule.kind, "condition": rule.describe(), "exchange": venue, "pair": pair,
            "state": "not judged yet" if state is None else "firing" if state.firing else "ok",
            "last_fired_at": state.last_fired_at if state else None, "judged_at": state.judged_at if state else None}


def alert_history(settings: Settings, since: timedelta) -> list[dict[str, object]]:
    """The events of the last `since`, newest first, with their delivery."""
    now = utc_now()
    with reading(settings) as (_, connection):
        events = connection.execute(sa.select(alert_events).where(alert_events.c.created_at >= now - since)
                                    .order_by(alert_events.c.id.desc())).all()
    return [{**row._mapping, "delivery": _delivery(row, now, bool(settings.notify))} for row in events]


def _delivery(event: sa.Row[Any], now: datetime, notify_set: bool) -> str:
    if event.delivered_at is not None:
        return "delivered"
    if not notify_set:
        return "no notify URL"  # nobody to tell: it goes out once one is set (within alerts.MAX_AGE)
    if event.attempts >= alerts.MAX_ATTEMPTS or event.created_at < now - alerts.MAX_AGE:
        return "given up"
    return "pending"


def test_notifications(settings: Settings, rule: str | None) -> list[tuple[str, str | None]]:
    """One test notification through every notify URL: (the URL's service, why it failed or None)."""
    if not settings.notify:
        raise ConfigError("no notify URLs are set", "set notify in the config file, or MCDATA_NOTIFY")
    if rule is not None and rule not in {r.name for r in settings.alerts}:
        raise ConfigError(f"no alert rule is named {rule[:40]!r}",
                          f"the rules: {', '.join(r.name for r in settings.alerts) or 'none'}")
    about = f" for the rule {rule!r}" if rule else ""
    body = f"A test of mcdata's notifications{about}, sent {utc_now():%Y-%m-%d %H:%M:%S} UTC."
    outcomes = notify.send_all([(url, alerts.TEST_TITLE, body, "info") for url in settings.notify],
                               alerts.DELIVERY_BUDGET.total_seconds())
    return [(f"#{index} {masked_notify_url(url)}", outcome.error and notify.scrubbed(outcome.error, url))
            for index, (url, outcome) in enumerate(zip(settings.notify, outcomes, strict=True), 1)]
