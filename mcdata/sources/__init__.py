"""Price sources: one module each, behind the interface in `base`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mcdata.config import Settings
from mcdata.sources.base import Source
from mcdata.sources.http import HttpClient


def make_source(settings: Settings, now: Callable[[], datetime]) -> Source:
    from mcdata.sources import cryptowatch, kraken

    default_url = kraken.DEFAULT_URL if settings.source == "kraken" else cryptowatch.DEFAULT_URL
    headers = {"X-CW-API-Key": settings.api_key} if settings.source == "cryptowatch" and settings.api_key else {}
    client = HttpClient(
        settings.source,
        settings.api_url or default_url,
        timeout=settings.http_timeout,
        retries=settings.http_retries,
        backoff=settings.http_backoff,
        retry_after_max=settings.retry_after_max.total_seconds(),
        min_interval=1 / settings.rate_limit,
        headers=headers,
        time_limit=settings.fetch_timeout.total_seconds(),
    )
    if settings.source == "kraken":
        return kraken.KrakenSource(client, settings.cache_dir, now)
    return cryptowatch.CryptowatchSource(client, settings.venue, now)
