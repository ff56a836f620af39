"""`mcdata config`: each setting's effective value, secrets masked, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from mcdata.config import SETTINGS, Setting, Settings, masked_database_url
from mcdata.errors import masked_notify_url, masked_service_url
from mcdata.values import duration_text


@dataclass(frozen=True)
class SettingRow:
    """One line of `mcdata config`: a setting's effective value (secrets masked) and where it came from."""

    name: str
    value: str | None
    origin: str
    env_var: str


def _shown(setting: Setting, value: Any) -> str | None:
    if value is None:
        return None
    if setting.name == "database_url":  # the database in use, as given: a SQLite path as it is, a password masked
        return masked_database_url(str(value))
    if setting.name == "api_url":
        return masked_service_url(str(value))
    if setting.name == "notify":
        return ", ".join(masked_notify_url(url) for url in value) or None
    if setting.name == "alerts":
        return ", ".join(rule.name for rule in value) or None
    if setting.secret:
        parts = urlsplit(str(value))
        return f"{parts.scheme}://{parts.hostname}/***" if parts.scheme and parts.hostname else "***"
    if isinstance(value, timedelta):
        return duration_text(value)
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def describe(settings: Settings) -> list[SettingRow]:
    return [SettingRow(name, _shown(setting, getattr(settings, name)), settings.origins.get(name, "default"),
                       setting.envvar) for name, setting in SETTINGS.items()]
