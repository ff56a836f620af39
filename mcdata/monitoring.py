"""mcdata watched from outside, in the formats those tools already speak: cron-monitor pings (the
healthchecks.io convention, shared by Cronitor, Uptime Kuma's push monitors and others) and a Prometheus
textfile for node_exporter's textfile collector, written by prometheus-client.

Neither may change a run's exit code: a monitor that is down is one warning line, and costs a run a few
seconds at most.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mcdata import __version__
from mcdata.views import MetricRow, RunRow

log = logging.getLogger("mcdata")

# A monitor that does not answer costs (1 + PING_RETRIES) × PING_TIMEOUT at most, plus short backoffs.
PING_TIMEOUT = 1.5
PING_RETRIES = 2


def ping(url: str, what: str) -> bool:
    """GET {url}/{what} (`start`, or the exit code); True when the monitor took it. The URL is a secret:
    it is never printed, only what was sent and why it failed."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    retry = Retry(total=PING_RETRIES, connect=PING_RETRIES, read=PING_RETRIES, redirect=0, backoff_factor=0.1,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"GET"}),
                  raise_on_status=False, respect_retry_after_header=False)
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        try:
            answer = session.get(f"{url}/{what}", timeout=PING_TIMEOUT, allow_redirects=False,
                                 headers={"User-Agent": f"mcdata/{__version__}"})
        except requests.RequestException as exc:
            log.warning("warning: the monitoring ping (%s) failed: %s; the run is not affected", what,
                        exc.__class__.__name__)
            return False
    if answer.status_code >= 300:
        log.warning("warning: the monitoring ping (%s) was answered with HTTP %d; the run is not affected", what,
                    answer.status_code)
        return False
    return True


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
    for row in facts.metrics:
        price.labels(row["exchange"], row["pair"]).set(row["latest_price"])
        if row["std_rank"] is not None:
            rank.labels(row["exchange"], row["pair"]).set(row["std_rank"])
    for (exchange, pair), moment in facts.last_samples.items():
        sample.labels(exchange, pair).set(moment.timestamp())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
