"""Every setting, declared once: command-line flag > MCDATA_* env var > TOML config file > default.

Secret settings can also be read from the file named by `MCDATA_<NAME>_FILE` (the Docker and
Kubernetes secrets convention).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from mcdata.alert_kinds import JITTER
from mcdata.alert_rules import AlertRule, parse_rules
from mcdata.errors import (
    ConfigError,
    did_you_mean,
    masked_url,
    printable,
    register_secret,
    url_secrets,
)
from mcdata.private_files import UnsafePathError, check_file, check_folder
from mcdata.sources import SOURCES
from mcdata.values import (
    ALL_PAIRS,
    duration_text,
    parse_duration,
    parse_pairs,
    parse_venues,
)

log = logging.getLogger("mcdata")

APP_NAME = "mcdata"
ORIGINAL_PAIRS = (
    "btceur", "btcusd", "etheur", "ltceur", "solusd", "xrpusd", "adaeur", "waveseur", "bateth", "dogeusd",
)
def _notify_urls(value: Any) -> tuple[str, ...]:
    items = re.split(r"[\s,]+", value) if isinstance(value, str) else list(value)
    urls = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    for url in urls:
        register_secret(url)  # tokens live anywhere in these URLs: the whole URL is the secret
        if not re.match(r"^[a-z][a-z0-9+.-]*://\S+$", url):
            raise ValueError("expected notification URLs such as json://host/path or tgram://token/chat")
    return urls


def _alert_tables(value: Any) -> Any:
    """The raw [[alerts]] tables; load_settings checks them against the configured pairs."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise ValueError("expected a JSON list of rule tables (or [[alerts]] tables in the config file)") from None
    return value


MIN_RETENTION = timedelta(days=8)
DEFAULT_MAX_AGE = timedelta(hours=2)  # one missed hourly run is not yet an alarm; two are
MAX_FETCH_TIME = timedelta(hours=24)


def _retention(keep: timedelta) -> timedelta:
    if keep and keep < MIN_RETENTION:
        raise ValueError("keep at least 8d: the 7-day metrics read raw prices at the window's edges")
    return keep


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return parse


def _positive_float(value: Any) -> float:
    number = float(value)
    if not 0 < number < 3600:
        raise ValueError("expected a number of seconds between 0 and 3600")
    return number


MIN_RATE, MAX_RATE = 0.01, 1000.0  # slower than one request per 100 s would hold the lock for hours


def _rate(value: Any) -> float:
    number = float(value)
    if not MIN_RATE <= number <= MAX_RATE:
        raise ValueError(f"expected requests per second from {MIN_RATE:g} to {MAX_RATE:g}")
    return number


def _small_int(value: Any) -> int:
    number = int(value)
    if not 0 <= number <= 20:
        raise ValueError("expected a whole number from 0 to 20")
    return number


def _url(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if not re.match(r"^https?://[^\s/?#]+([/?#]\S*)?$", text) or not _host_of(text):
        raise ValueError("expected an http:// or https:// URL")
    for secret in url_secrets(text, whole_userinfo=True, every_query_value=True):
        register_secret(secret)  # a mirror's credentials, a user name alone too: never printed, never in `runs`
    return text


def _host_of(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:  # a port that is no number, a bracket left open
        return None


def _text(value: Any) -> str:
    text = str(value).strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("control characters are not allowed")
    return text


def _database_secrets(text: str, unparsable_too: bool = True) -> list[str]:
    """A database URL's password, in the authority or the query (libpq's `?password=`); the whole text
    when it does not parse (db.py says so, exit 4) and `unparsable_too`."""
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import make_url

    try:
        password = make_url(text.strip()).password
    except (ValueError, TypeError, sa_exc.ArgumentError):
        return [text] if unparsable_too else []
    return [*([str(password)] if password is not None else []), *url_secrets(text)]


def masked_database_url(text: str) -> str:
    try:
        return masked_url(text)
    except ValueError:  # not even a URL: nothing to mask, and nothing will use it
        return text


def default_database_url() -> str:
    return f"sqlite:///{Path(platformdirs.user_data_dir(APP_NAME)) / 'mcdata.db'}"


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[Any], Any]
    default: Callable[[], Any]
    help: str
    secret: bool = False
    flag: str | None = None  # the command-line flag, where it is not --<name>

    @property
    def flag_name(self) -> str:
        return self.flag or f"--{self.name.replace('_', '-')}"

    @property
    def envvar(self) -> str:
        return f"MCDATA_{self.name.upper()}"


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("database_url", lambda v: str(v).strip(), default_database_url,  # a bad URL is exit 4 (db.py)
                "Database URL: sqlite:///path.db or postgresql://user:pass@host/db.", secret=True),
        Setting("source", _choice(*SOURCES), lambda: "kraken",
                "Where prices come from: " + "; ".join(f"{name} ({s.summary})" for name, s in SOURCES.items()) + "."),
        Setting("api_url", _url, lambda: None,
                "Base URL of the source's REST API (default: the source's public URL)."),
        Setting("api_key", _text, lambda: None,
                "Cryptowatch API key, sent as X-CW-API-Key (optional).", secret=True),
        Setting("exchange", parse_venues, lambda: "kraken",
                "Venue whose markets are fetched, for the sources that serve several ("
                + ", ".join(name for name, s in SOURCES.items() if s.only_venue is None) + ")."),
        Setting("pairs", parse_pairs, lambda: ORIGINAL_PAIRS,
                "Comma-separated pairs such as btceur,ethusd, or `all` for every listed pair."),
        Setting("backfill", parse_duration, lambda: timedelta(days=7),
                "History fetched for a pair seen for the first time (7d, 12h, 0 for none)."),
        Setting("backfill_workers", lambda v: _small_int(v) or 1, lambda: 4,
                "Parallel candle requests while backfilling (the rate limit still applies)."),
        Setting("retention", lambda v: _retention(parse_duration(v)), lambda: timedelta(0),
                "Raw prices older than this are deleted by `run` (0 keeps all; at least 8d).", flag="--keep"),
        Setting("http_timeout", _positive_float, lambda: 10.0,
                "Seconds to wait for a connection and for each read from the source."),
        Setting("http_retries", _small_int, lambda: 4,
                "Retries after a failed request (connection error, 408/429/5xx, throttling)."),
        Setting("http_backoff", _positive_float, lambda: 1.0,
                "Seconds before the first retry; the wait doubles on each further retry."),
        Setting("rate_limit", _rate, lambda: 1.0,
                "Most requests per second sent to the source (Kraken's public API allows about 1)."),
        Setting("retry_after_max", lambda v: parse_duration(v, longest=timedelta(hours=1)),
                lambda: timedelta(seconds=60), "Longest wait honoured from a Retry-After header (at most 1h)."),
        Setting("fetch_timeout", lambda v: parse_duration(v, longest=timedelta(hours=24)) or MAX_FETCH_TIME,
                lambda: timedelta(minutes=45),
                "Longest a fetch may talk to the source; a wait that would pass it fails the fetch (exit 1)."),
        Setting("cache_dir", lambda v: Path(str(v)).expanduser(),
                lambda: Path(platformdirs.user_cache_dir(APP_NAME)),
                "Where the source's pair list is cached for a day."),
        Setting("max_age", lambda v: parse_duration(v) or DEFAULT_MAX_AGE, lambda: DEFAULT_MAX_AGE,
                "`status` is unhealthy (exit 1) when the last run or a pair's newest sample is older than this."),
        Setting("ping_url", _url, lambda: None,
                "Cron monitor URL (healthchecks.io convention): `run` GETs <url>/start, then <url>/<exit code>.",
                secret=True),
        Setting("metrics_file", lambda v: Path(str(v)).expanduser(), lambda: None,
                "Prometheus textfile that every `run` rewrites (for node_exporter's textfile collector)."),
        Setting("notify", _notify_urls, lambda: (),
                "Where alerts go: apprise URLs (json://, tgram://, slack://, ntfy://, ...), comma-separated.",
                secret=True),
        Setting("alerts", _alert_tables, lambda: (),
                "Alert rules: [[alerts]] tables in the config file (README, Alerts), or that list as JSON."),
    )
}


@dataclass(frozen=True)
class Settings:
    database_url: str
    source: str
    api_url: str | None
    api_key: str | None
    exchange: str
    pairs: tuple[str, ...]
    backfill: timedelta
    backfill_workers: int
    retention: timedelta
    http_timeout: float
    http_retries: int
    http_backoff: float
    rate_limit: float
    retry_after_max: timedelta
    fetch_timeout: timedelta
    cache_dir: Path
    max_age: timedelta
    ping_url: str | None
    metrics_file: Path | None
    notify: tuple[str, ...]
    alerts: tuple[AlertRule, ...]
    config_file: Path | None  # the config file read, if it exists
    config_path: Path | None = None  # the config file looked for
    # where each value came from: a flag, an env var, a _FILE, the config file, or "default"
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def venues(self) -> tuple[str, ...]:
        """The venues --exchange names (for a source of one venue, that venue: load_settings checks it
        for the commands that fetch)."""
        return tuple(self.exchange.split(","))

    @property
    def venue(self) -> str:
        """The first venue: the one commands that show one venue use when none is named."""
        return self.venues[0]

    @property
    def pairs_explicit(self) -> bool:
        """The pairs were named (a flag, env var or config file), not the default list."""
        return self.pairs != ORIGINAL_PAIRS

    @property
    def every_pair(self) -> bool:
        """`--pairs all`: every pair the source lists."""
        return self.pairs == ALL_PAIRS

    def pairs_for(self, stored: Iterable[str]) -> list[str]:
        """The pairs of a venue that mcdata fetches and watches: with `all` the ones stored there (what its
        listing gave), else the configured ones."""
        return sorted(stored) if self.every_pair else list(self.pairs)

    def configures(self, venue: str, pair: str) -> bool:
        """Whether a run fetches this market (`show` marks the stored ones it no longer does)."""
        return venue in self.venues and (self.every_pair or pair in self.pairs)


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def _read_config_file(path: Path | None, explicit: bool) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist", "create it or unset MCDATA_CONFIG")
        return {}
    try:
        text, readable_by_others = _read_private_config(path)
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config file") from None
    if readable_by_others and (holding := _secrets_held(data)):
        log.warning("warning: config file %s holds %s and can be read by other users; chmod 600 it",
                    path, ", ".join(holding))
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting {printable(unknown[0][:40])!r}",
            did_you_mean(unknown[0], SETTINGS) or f"known settings: {', '.join(SETTINGS)}",
        )
    return data


def _read_private_config(path: Path) -> tuple[str, bool]:
    """The config file's text, and whether other users can read it. Refused (exit 2) when others could
    have written it: it names the database, the files mcdata writes (metrics_file) and where alerts go.
    A file of root's is trusted like one of our own (the image's /etc/mcdata/config.toml)."""
    real = path.resolve()
    try:
        check_folder(real.parent)
        with real.open("rb") as file:
            info = check_file(file.fileno(), real, root_too=True)
            return file.read().decode("utf-8"), bool(info.st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except UnsafePathError as exc:
        raise ConfigError(f"config file {path} not used: {exc}",
                          "chmod go-w the file and its folder, or point MCDATA_CONFIG at a private one") from None


def _secrets_held(data: Mapping[str, Any]) -> list[str]:
    """The config file's settings whose values are credentials (a SQLite path is none; a password is)."""
    return [name for name, value in data.items() if name in SETTINGS and _credentials_in(SETTINGS[name], value)]


_WARNED_FLAGS: set[str] = set()  # a flag carrying a credential is said once per command (reset_warnings)


def reset_warnings() -> None:
    """A new command (the CLI calls this first): its flags are warned about again."""
    _WARNED_FLAGS.clear()


def _credentials_in(setting: Setting, value: Any, unparsable_too: bool = True) -> list[str]:
    """The credentials a setting's raw value holds: a secret setting's whole value, but of a database URL
    only its passwords (a SQLite path is no secret; one that does not parse is hidden whole unless
    `unparsable_too` is false), and of api_url its userinfo and credential-like query values."""
    if setting.name == "database_url":
        return _database_secrets(str(value), unparsable_too)
    if setting.name == "api_url":
        return url_secrets(str(value), whole_userinfo=True, every_query_value=True)
    if not setting.secret or not value:
        return []
    return [str(value)] if isinstance(value, str) else [str(item) for item in value]


def _secret_from_file(setting: Setting, env: Mapping[str, str]) -> str | None:
    file_var = f"{setting.envvar}_FILE"
    if not env.get(file_var):
        return None
    if env.get(setting.envvar):  # the postgres image's rule: two sources of one secret is a mistake
        raise ConfigError(f"both {setting.envvar} and {file_var} are set", "unset one of them")
    path = Path(env[file_var])
    try:
        if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("warning: %s (%s) can be read by other users; chmod 600 it", path, file_var)
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file_var}: cannot read {env[file_var]!r} ({exc.__class__.__name__})") from exc


def check_notify_urls(urls: tuple[str, ...]) -> None:
    import apprise

    for index, url in enumerate(urls, 1):
        if apprise.Apprise.instantiate(url) is None:
            scheme = url.split("://", 1)[0]
            raise ConfigError(f"notify: URL #{index} ({scheme}://…) is not a notification URL apprise accepts",
                              "see https://github.com/caronc/apprise/wiki for each service's URL")


def _flag_origin(setting: Setting, value: Any, env: Mapping[str, str]) -> str:
    """Typer hands a flag's env var in as the flag's value: the same text in the environment is its origin."""
    return setting.envvar if value is not None and env.get(setting.envvar) == str(value) else setting.flag_name


def _resolve(setting: Setting, flags: Mapping[str, Any], env: Mapping[str, str], path: Path,
             file_values: Mapping[str, Any]) -> tuple[str, Any]:
    """A setting's origin and parsed value: its flag, env var, `_FILE`, config file entry or default."""
    given = next(
        ((origin, value) for origin, value in (
            (_flag_origin(setting, flags.get(setting.name), env), flags.get(setting.name)),
            (setting.envvar, env.get(setting.envvar) or None),
            (f"{setting.envvar}_FILE", _secret_from_file(setting, env) if setting.secret else None),
            (f"{path} ({setting.name})", file_values.get(setting.name)),
        ) if value is not None),
        None,
    )
    if given is None:
        return "default", setting.default()
    origin, raw = given
    credentials = _credentials_in(setting, raw)
    for secret in credentials if setting.secret else ():  # api_url's are registered as it is parsed
        register_secret(secret)
    if origin == setting.flag_name and setting.name not in _WARNED_FLAGS and _credentials_in(setting, raw, False):
        _WARNED_FLAGS.add(setting.name)
        instead = f"{setting.envvar}, {setting.envvar}_FILE" if setting.secret else setting.envvar
        log.warning("warning: %s carries a credential, which every local user can read in `ps`; use %s or the "
                    "config file", origin, instead)
    try:
        return origin, setting.parse(raw)
    except (ValueError, TypeError) as exc:
        shown = "(hidden)" if setting.secret or setting.name == "api_url" else repr(str(raw))[:80]
        raise ConfigError(f"{origin}: invalid value {shown}: {exc}") from exc


def _rules(values: Mapping[str, Any], flags: Mapping[str, Any], env: Mapping[str, str], path: Path,
           file_values: Mapping[str, Any], strict: bool) -> tuple[AlertRule, ...]:
    """The alert rules, checked against the configured pairs (never a one-off --pairs: a rule naming a
    configured pair is right whatever one command fetches) and the retention (a window longer than it
    would read pruned prices). Not `strict`: a bad rule is one warning and no rules."""
    configured = _resolve(SETTINGS["pairs"], {}, env, path, file_values)[1] if flags.get("pairs") else values["pairs"]
    try:
        rules = parse_rules(values["alerts"], configured)
        keep = values["retention"]
        for rule in rules:
            if keep and rule.window is not None and rule.window + JITTER > keep:
                raise ConfigError(f'alert "{rule.name}": window: {duration_text(rule.window)} is longer than the '
                                  f"retention ({duration_text(keep)}): its first prices would be pruned",
                                  "shorten the window or keep the raw prices longer")
    except ConfigError as error:
        if strict:
            raise
        log.warning("warning: %s; this command uses no alert rule", error)
        return ()
    return rules


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
    fetching: bool = True,
    uses_alerts: bool = False,
) -> Settings:
    """Resolve every setting. `flags` holds command-line values (None = not given). A command that only
    reads the database (`fetching=False`) may name venues the configured source cannot fetch. A bad alert
    rule is exit 2 only for a command that `uses_alerts` (`run`, `alerts`), a warning for the others (they
    must work whatever the rules say); the notify URLs are checked (apprise: 0.3 s) only there too."""
    env = os.environ if env is None else env
    flags = flags or {}
    explicit = config_file or env.get("MCDATA_CONFIG")
    path = Path(explicit).expanduser() if explicit else default_config_file()
    file_values = _read_config_file(path, explicit=bool(explicit))

    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for setting in SETTINGS.values():
        origins[setting.name], values[setting.name] = _resolve(setting, flags, env, path, file_values)
    values["alerts"] = _rules(values, flags, env, path, file_values, strict=uses_alerts)
    if values["notify"] and uses_alerts:
        check_notify_urls(values["notify"])
    only_venue = SOURCES[values["source"]].only_venue
    if fetching and only_venue and values["exchange"] != only_venue:
        others = [name for name, s in SOURCES.items() if s.only_venue is None]
        raise ConfigError(
            f"the {values['source']} source serves only the {only_venue} venue, not {values['exchange']!r}",
            f"use --source {' or '.join(others)} for other venues",
        )
    return Settings(**values, config_file=path if path.exists() else None, origins=origins,
                    config_path=path)
