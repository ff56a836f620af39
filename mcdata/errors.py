"""Exit codes and the domain errors that carry them; secrets are scrubbed from every message."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from enum import IntEnum, StrEnum
from urllib.parse import parse_qsl, unquote, urlsplit


class ExitCode(IntEnum):
    """The documented exit codes (README, "Exit codes")."""

    OK = 0
    FAILED = 1  # the step failed; nothing was written by it
    USAGE = 2  # bad flag, environment variable or config file
    PARTIAL = 3  # some pairs failed, the rest were stored
    DATABASE = 4  # database unreachable, bad URL, or not migrated
    LOCKED = 75  # another run holds the lock (sysexits EX_TEMPFAIL)
    INTERRUPTED = 130  # Ctrl-C (SIGINT); SIGTERM exits 143, the shell's 128 + signal number


# Which exit code wins when the steps of one command disagree: the database, then a failure, then a
# partial result. LOCKED and INTERRUPTED end a command before any other step runs.
SEVERITY = (ExitCode.OK, ExitCode.PARTIAL, ExitCode.FAILED, ExitCode.DATABASE)


def worst(*codes: ExitCode) -> ExitCode:
    return max(codes, key=SEVERITY.index)


class RunStatus(StrEnum):
    """The `status` of a `runs` row (the CHECK in mcdata.schema lists the same names)."""

    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @classmethod
    def of(cls, code: int) -> RunStatus:
        """The status a finished command records for its exit code."""
        if code in (ExitCode.INTERRUPTED, 128 + 15):  # Ctrl-C, SIGTERM
            return cls.INTERRUPTED
        if code == ExitCode.OK:
            return cls.OK
        return cls.PARTIAL if code == ExitCode.PARTIAL else cls.FAILED


class Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, docker stop, systemd) turned into an exception, so the run ends as Ctrl-C does."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"signal {signal_number}")
        self.signal_number = signal_number


def interrupted_code(error: KeyboardInterrupt) -> int:
    return 128 + error.signal_number if isinstance(error, Terminated) else int(ExitCode.INTERRUPTED)


def exit_code_of(error: BaseException) -> int:
    """The code a command ends with when `error` escapes it."""
    return interrupted_code(error) if isinstance(error, KeyboardInterrupt) else int(classify(error)[0])


class McdataError(Exception):
    """An expected failure: one line for the user, and the exit code it maps to."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        text = self.message if not self.hint else f"{self.message}; {self.hint}"
        return redact(text)


class ConfigError(McdataError):
    exit_code = ExitCode.USAGE


class DatabaseError(McdataError):
    exit_code = ExitCode.DATABASE


class NotMigratedError(DatabaseError):
    pass


class LockedError(McdataError):
    exit_code = ExitCode.LOCKED


class SourceError(McdataError):
    """The source's answer could not be used (after retries): the whole request failed."""

    exit_code = ExitCode.FAILED


class PairError(McdataError):
    """One pair could not be fetched or its data was unusable; the other pairs go on."""

    def __init__(self, pair: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{pair}: {message}", hint)
        self.pair = pair


# insufficient_privilege, read_only_sql_transaction: the server works, but will not let this user write
_REFUSED_BY_THE_SERVER = frozenset({"42501", "25006"})


def classify(error: BaseException) -> tuple[ExitCode, str]:
    """The exit code and the one-line message for any error: the one mapping site."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(error, McdataError):
        return error.exit_code, str(error)
    if isinstance(error, KeyboardInterrupt):
        name = "SIGTERM" if isinstance(error, Terminated) else "Ctrl-C"
        return ExitCode.INTERRUPTED, f"interrupted by {name}; nothing was written by the interrupted step"
    if isinstance(error, DBAPIError) and getattr(error.orig, "sqlstate", None) in _REFUSED_BY_THE_SERVER:
        first = str(error.orig).strip().splitlines() or ["permission denied"]
        return ExitCode.DATABASE, redact(f"database refused: {first[0]}; check the database user's rights "
                                         "and that the database is not read-only")
    if isinstance(error, OperationalError | InterfaceError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    ):
        first = str(error.orig or error).strip().splitlines() or ["connection lost"]
        return ExitCode.DATABASE, redact(f"database error: {first[0]}; check that the database is up, then rerun")
    return ExitCode.FAILED, redact(f"unexpected {error.__class__.__name__}: {error}")


_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that no message printed by mcdata can contain it."""
    if value and len(value) >= 3:
        _secrets.add(value)


def printable(text: str) -> str:
    """Escape control characters so that nothing echoed back can drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def masked_notify_url(url: str) -> str:
    """A notification URL shown by its service alone (json://***): its tokens live anywhere in it."""
    return f"{url.split('://', 1)[0]}://***"


# libpq takes a password in the query too (postgresql://u@h/db?password=…), and a key file's passphrase
SECRET_QUERY_KEYS = frozenset({"password", "sslpassword", "passfile"})
SECRETISH_KEY = re.compile(r"pass|token|key|secret|auth|sig|session|cred", re.IGNORECASE)


def url_secrets(url: str, *, whole_userinfo: bool = False, every_query_value: bool = False) -> list[str]:
    """The secrets a URL carries: its password, the values of SECRET_QUERY_KEYS; with `whole_userinfo` the
    user name too (`http://Token123@host`: a token), with `every_query_value` the value of any key that
    names a credential (`?token=`, `?apikey=`; every value is masked where the URL is shown, but only these
    are searched for in every line: `?format=json` must not hide the word json)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    found = [unquote(part) for part in (userinfo.split(":", 1) if whole_userinfo else userinfo.split(":", 1)[1:])]
    found += [value for key, value in parse_qsl(parts.query, keep_blank_values=True)
              if key.lower() in SECRET_QUERY_KEYS or (every_query_value and SECRETISH_KEY.search(key))]
    return [secret for secret in found if secret]


def masked_url(url: str, *, whole_userinfo: bool = False, every_query_value: bool = False) -> str:
    """The URL with its secrets (url_secrets) replaced by ***, the rest as written:
    `postgresql://root:***@host/db?password=***`, and with `whole_userinfo` `http://***@mirror`."""

    def userinfo(match: re.Match[str]) -> str:
        user, has_password, _ = match[2].partition(":")
        return f"{match[1]}***@" if whole_userinfo else f"{match[1]}{user}{':***' if has_password else ''}@"

    def query_value(match: re.Match[str]) -> str:
        secret = every_query_value or unquote(match[2]).lower() in SECRET_QUERY_KEYS
        return f"{match[1]}{match[2]}={'***' if secret else match[3]}"

    url = re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#]*)@", userinfo, url)
    base, mark, rest = url.partition("?")
    return base + mark + re.sub(r"(^|&)([^&=#]*)=([^&#]*)", query_value, rest) if mark else base


def masked_service_url(url: str) -> str:
    """A source's or a monitor's URL: every user name, password and query value may be a token."""
    return masked_url(url, whole_userinfo=True, every_query_value=True)


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str | None:
    """`did you mean btceur or btcusd?` for a word close to one of the choices, else None."""
    close = difflib.get_close_matches(word.lower(), list(choices), n=3)
    return f"did you mean {' or '.join(prefix + choice for choice in close)}?" if close else None
