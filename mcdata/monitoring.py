"""mcdata watched from outside, in the formats those tools already speak: cron-monitor pings (the
healthchecks.io convention, shared by Cronitor, Uptime Kuma's push monitors and others) and a Prometheus
textfile for node_exporter's textfile collector, written by prometheus-client.

Neither may change a run's exit code: a monitor that is down is one warning line, and costs a run a few
seconds at most.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mcdata import __version__
from mcdata.errors import printable
from mcdata.views import MetricRow, RunRow

log = logging.getLogger("mcdata")

# One ping, its retries included, takes at most PING_BUDGET seconds of the run, whatever the monitor does
# (a dripping answer, a huge one, SIGTERM meanwhile): it runs in a thread that is abandoned past that.
PING_BUDGET = 5.0
PING_TIMEOUT = 1.5
PING_RETRIES = 2


def ping(url: str, what: str) -> bool:
    """GET {url}/{what} (`start`, or the exit code); True when the monitor took it. The URL is a secret:
    it is never printed, only what was sent and why it failed."""
    outcome: list[str | None] = []
    worker = threading.Thread(target=lambda: outcome.append(_ping(f"{url}/{what}", time.monotonic() + PING_BUDGET)),
                              name="ping", daemon=True)  # a daemon: an abandoned ping never keeps the process
    worker.start()
    worker.join(PING_BUDGET)
    problem = outcome[0] if outcome else f"failed: no answer within {PING_BUDGET:g}s (abandoned)"
    if problem is not None:
        log.warning("warning: the monitoring ping (%s) %s; the run is not affected", what, problem)
    return problem is None


def _ping(url: str, deadline: float) -> str | None:
    """What went wrong ("failed: …", "was answered with …"), or None. Only the status line and headers
    are read: the body is never downloaded, however big or slow."""
    import requests

    from mcdata.sources.http import RETRY_STATUSES, NoRedirectSession, backoff

    problem = "failed: not sent"
    with NoRedirectSession() as session:
        for attempt in range(PING_RETRIES + 1):
            left = deadline - time.monotonic()
            if left <= 0.05:
                break
            wait = min(PING_TIMEOUT, left)
            try:
                with session.get(url, timeout=(wait, wait), stream=True, allow_redirects=False,
                                 headers={"User-Agent": f"mcdata/{__version__}"}) as answer:
                    status = answer.status_code
            except requests.RequestException as exc:
                problem = f"failed: {exc.__class__.__name__}"
            else:
                if status < 300:
                    return None
                problem = f"was answered with HTTP {status}"
                if status not in RETRY_STATUSES:
                    return problem
            if attempt < PING_RETRIES:
                time.sleep(max(0.0, min(backoff(attempt, None, 0.1), deadline - time.monotonic())))
    return problem


@dataclass
class RunFacts:
    """What the textfile says about the run that just ended; the database's `runs` row when it has one."""

    started: datetime
    finished: datetime
    exit_code: int
    run: RunRow | None = None  # this run's row
    last_success: datetime | None = None
    metrics: list[MetricRow] = field(default_factory=list)  # the newest snapshot
    last_samples: dict[tuple[str, str], datetime] = field(default_factory=dict)


def write_textfile(path: Path, facts: RunFacts) -> None:
    """Rewrite the textfile atomically (prometheus-client writes a temporary file, then renames it)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()

    def gauge(name: str, documentation: str, value: float) -> None:
        Gauge(name, documentation, registry=registry).set(value)

    run = facts.run
    finished = run["finished_at"] if run and run["finished_at"] else facts.finished
    started = run["started_at"] if run else facts.started
    gauge("mcdata_last_run_timestamp_seconds", "When the last `mcdata run` ended (Unix time).", finished.timestamp())
    gauge("mcdata_last_run_exit_code", "Exit code of the last `mcdata run` (0 ok, 3 partial, 75 never written).",
          run["exit_code"] if run and run["exit_code"] is not None else facts.exit_code)
    gauge("mcdata_run_duration_seconds", "How long the last `mcdata run` took.",
          (finished - started).total_seconds())
    gauge("mcdata_pairs_stored", "Pairs whose prices the last run stored.", run["pairs_stored"] if run else 0)
    gauge("mcdata_pairs_failed", "Pairs that failed in the last run.", run["pairs_failed"] if run else 0)
    gauge("mcdata_http_requests", "HTTP requests the last run sent to the source.", run["http_requests"] if run else 0)
    if facts.last_success is not None:
        gauge("mcdata_last_success_timestamp_seconds", "When the last successful (exit 0) run ended (Unix time).",
              facts.last_success.timestamp())
    labels = ("exchange", "pair")
    price = Gauge("mcdata_price", "Latest price of each pair in the newest metrics.", labels, registry=registry)
    rank = Gauge("mcdata_std_rank", "Rank of each pair by 24 h standard deviation (1 = most volatile).", labels,
                 registry=registry)
    sample = Gauge("mcdata_last_sample_timestamp_seconds", "Time of each pair's newest stored sample (Unix time).",
                   labels, registry=registry)
    per_pair = {  # a pair whose value is NULL (too few samples) has no sample in that family
        "stddev_24h": Gauge("mcdata_stddev_24h", "24 h standard deviation of each pair's price.", labels,
                            registry=registry),
        "volatility_24h": Gauge("mcdata_volatility_24h", "24 h standard deviation / latest price, in percent.",
                                labels, registry=registry),
        "change_24h_pct": Gauge("mcdata_change_24h_pct", "Change of each pair's price over 24 h, in percent.",
                                labels, registry=registry),
    }
    for row in facts.metrics:
        market = (printable(row["exchange"]), printable(row["pair"]))  # ESC or BEL must not reach a reader raw
        price.labels(*market).set(row["latest_price"])
        if row["std_rank"] is not None:
            rank.labels(*market).set(row["std_rank"])
        for column, gauge_of_pair in per_pair.items():
            if row[column] is not None:  # type: ignore[literal-required]
                gauge_of_pair.labels(*market).set(row[column])  # type: ignore[literal-required]
    for (exchange, pair), moment in facts.last_samples.items():
        sample.labels(printable(exchange), printable(pair)).set(moment.timestamp())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
