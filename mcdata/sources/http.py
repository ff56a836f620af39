"""One HTTP session per source: timeouts, bounded retries with backoff, size caps, JSON checks."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import requests

from mcdata import __version__
from mcdata.errors import SourceError, masked_service_url

if TYPE_CHECKING:
    from mcdata.config import Settings

log = logging.getLogger("mcdata.http")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0
T = TypeVar("T")
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # decompressed; Binance's whole market list is a few MB


@dataclass(frozen=True)
class Response:
    url: str
    status: int
    body: Any


class Retryable(Exception):
    """A try that may succeed if repeated (a timeout, a 5xx, throttling): `reason` for the retry line,
    `wait` the peer's Retry-After if it gave one, `detail` added to the final error."""

    def __init__(self, reason: str, wait: float | None = None, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.detail = detail


class Budget:
    """A fetch's total time and its cancel switch, shared by every request of one source: each try and
    each wait is checked against it, so no peer, no Retry-After and no backoff holds a run past it."""

    def __init__(self, source: str, seconds: float, sleep: Callable[[float], None] | None = None) -> None:
        self.source = source
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.cancelled = threading.Event()
        self.sleep = sleep or self.cancelled.wait  # a cancel() wakes every waiting thread at once

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def limit(self, seconds: float) -> float:
        """`seconds`, or what is left of the budget when that is less (a socket timeout of at least 50 ms)."""
        return max(0.05, min(seconds, self.left()))

    def check(self) -> None:
        """Before a try: fail now when cancelled or when the budget is spent."""
        if self.cancelled.is_set():
            raise SourceError(f"{self.source}: cancelled")
        if self.left() <= 0:
            raise SourceError(f"{self.source}: the fetch's time limit of {self.seconds:.0f}s is spent",
                              "raise MCDATA_FETCH_TIMEOUT, or the next run will try again")

    def wait(self, seconds: float) -> None:
        """Sleep, unless the wait would end past the budget: then fail now."""
        if seconds > self.left():
            raise SourceError(
                f"{self.source}: a wait of {seconds:.0f}s would pass the fetch's time limit of {self.seconds:.0f}s",
                "raise MCDATA_FETCH_TIMEOUT or MCDATA_RATE_LIMIT",
            )
        self.sleep(seconds)
        if self.cancelled.is_set():
            raise SourceError(f"{self.source}: cancelled")


def retrying(attempt: Callable[[], T], *, retries: int, base: float, budget: Budget, said: str, failed: str,
             hint: str) -> T:
    """The one retry policy of every source: `attempt` is tried until it returns; a Retryable is tried
    again `retries` times after backoff() (the peer's Retry-After, else exponential), each wait within the
    budget; then a SourceError `{failed} failed after N attempts: {reason}`. Each retry is one line,
    `{said}: {reason}; retry 1/4 in 1.0s`."""
    for number in range(retries + 1):
        try:
            return attempt()
        except Retryable as retry:
            if number == retries:
                detail = f": {retry.detail}" if retry.detail else ""
                raise SourceError(f"{failed} failed after {number + 1} attempts: {retry.reason}{detail}",
                                  hint) from None
            wait = backoff(number, retry.wait, base)
            log.info("%s: %s; retry %d/%d in %.1fs", said, retry.reason, number + 1, retries, wait)
            budget.wait(wait)
    raise AssertionError("unreachable")


def backoff(attempt: int, retry_after: float | None, base: float) -> float:
    """How long to wait before try `attempt + 1`: the peer's Retry-After, else exponential backoff."""
    return retry_after if retry_after is not None else min(base * 2**attempt, MAX_BACKOFF_S)


def read_capped(answer: requests.Response, source: str, shown: str, max_bytes: int, seconds: float) -> bytes:
    """The body, decompressed, refusing more than max_bytes (a gzip bomb included: urllib3 inflates at most
    one chunk at a time) and any body that takes more than `seconds` in total (a dripping peer)."""
    declared = answer.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise SourceError(f"{source}: GET {shown}: the answer is {int(declared):,} bytes, "
                          f"more than the {max_bytes:,} allowed")
    deadline = time.monotonic() + seconds
    body = bytearray()
    while chunk := answer.raw.read1(65536, decode_content=True):  # whatever has arrived, not a full block
        if len(body) + len(chunk) > max_bytes:
            raise SourceError(f"{source}: GET {shown}: the answer exceeds {max_bytes:,} bytes")
        if time.monotonic() > deadline:
            raise Retryable(f"the answer took more than {seconds:.3g}s to arrive")
        body += chunk
    return bytes(body)


def read_answer(answer: requests.Response, budget: Budget, shown: str, max_bytes: int, timeout: float) -> bytes:
    """The body of an answer that is no redirect, read within three times `timeout` and the budget.

    Never follow a redirect: a market-data API has no reason to send one, and following it would carry
    the API key to another host, bypass the rate limit and read an unbounded body."""
    if answer.is_redirect or 300 <= answer.status_code < 400:
        raise SourceError(*_redirect_message(budget.source, shown, answer))
    return read_capped(answer, budget.source, shown, max_bytes, budget.limit(3 * timeout))


class NoRedirectSession(requests.Session):
    """A session that never reads a redirect's body: with allow_redirects=False, requests still prepares the
    next request, and reads the whole (decompressed) body of the redirect to do it."""

    def resolve_redirects(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(())


class BoundedSession(NoRedirectSession):
    """A requests session for a library that makes its own calls (ccxt): every answer is read whole here,
    under the native client's bounds (no redirect, `max_bytes` decompressed, `timeout` per wait and three
    times that for the body, all within the budget). A slow answer is a requests Timeout, which the library
    reports as its own timeout and the caller retries; a redirect or an oversized answer is a SourceError."""

    def __init__(self, budget: Budget, timeout: float, max_bytes: int) -> None:
        super().__init__()
        self.budget = budget
        self.timeout = timeout
        self.max_bytes = max_bytes

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.budget.check()
        seconds = self.budget.limit(self.timeout)
        kwargs.update(stream=True, allow_redirects=False, timeout=(seconds, seconds))
        answer = super().request(method, url, *args, **kwargs)
        try:
            body = read_answer(answer, self.budget, masked_service_url(str(answer.url).split("?")[0]), self.max_bytes,
                               self.timeout)
        except Retryable as slow:
            raise requests.Timeout(slow.reason) from None
        finally:
            answer.close()
        answer._content = body
        answer._content_consumed = True  # type: ignore[attr-defined]
        return answer


def _credentials_apart(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without its userinfo, and the userinfo as Basic auth (a user name alone is a token with an
    empty password, as curl sends it): requests would drop a lone user name, and the URL it puts in its
    exceptions then carries no credential."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return bare, (unquote(parts.username), unquote(parts.password or ""))


class HttpClient:
    """GET JSON from one base URL.

    Connection errors, timeouts, 408/425/429/5xx and answers that `is_throttled` recognises are
    retried `retries` times with exponential backoff (Retry-After honoured up to `retry_after_max`).
    Anything else that is not JSON of a reasonable size is a SourceError naming the URL.
    """

    def __init__(
        self,
        source: str,
        base_url: str,
        *,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 1.0,
        retry_after_max: float = 60.0,
        min_interval: float = 0.0,
        max_bytes: int = MAX_ANSWER_BYTES,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] | None = None,
        time_limit: float = 24 * 3600.0,
    ) -> None:
        self.source = source
        self.shown_base_url = masked_service_url(base_url.rstrip("/"))
        self.base_url, self.auth = _credentials_apart(base_url.rstrip("/"))
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.retry_after_max = retry_after_max
        self.min_interval = min_interval
        self.max_bytes = max_bytes
        self.budget = Budget(source, time_limit, sleep)
        self.requests = 0
        self.server_time: datetime | None = None  # the Date header of the first answer: the source's clock
        self.headers = {"User-Agent": f"mcdata/{__version__}", "Accept": "application/json", **(headers or {})}
        self._next_slot = 0.0
        self._lock = threading.Lock()
        self._local = threading.local()  # one requests.Session per thread (backfill runs in parallel)
        self._sessions: list[requests.Session] = []

    @property
    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = NoRedirectSession()
            session.headers.update(self.headers)
            session.auth = self.auth
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def cancel(self) -> None:
        """Stop: every wait ends now and every later request fails (Ctrl-C, SIGTERM)."""
        self.budget.cancelled.set()

    def close(self) -> None:
        for session in self._sessions:
            session.close()

    def get(
        self,
        path: str,
        params: Mapping[str, str | int] | None = None,
        *,
        is_throttled: Callable[[Any], str | None] = lambda body: None,
        ok_statuses: frozenset[int] = frozenset({200}),
    ) -> Response:
        """The parsed JSON answer; `ok_statuses` lists the statuses whose JSON body the caller reads."""
        url = f"{self.base_url}{path}"
        shown = f"{self.shown_base_url}{path}"
        return retrying(lambda: self._attempt(url, shown, params, is_throttled, ok_statuses),
                        retries=self.retries, base=self.backoff, budget=self.budget, said=self.source,
                        failed=f"{self.source}: GET {shown}",
                        hint="the source may be down or throttling; the next run will try again")

    def _pace(self) -> None:
        """Start requests at most once per min_interval, across all threads."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.min_interval
            self.requests += 1
        if slot > now:
            self.budget.wait(slot - now)

    def _attempt(
        self,
        url: str,
        shown: str,
        params: Mapping[str, str | int] | None,
        is_throttled: Callable[[Any], str | None],
        ok_statuses: frozenset[int],
    ) -> Response:
        self._pace()
        self.budget.check()
        log.debug("%s: GET %s %s", self.source, shown, dict(params or {}))
        wait = self.budget.limit(self.timeout)
        try:
            with self.session.get(url, params=params, timeout=(wait, wait), stream=True,
                                  allow_redirects=False) as answer:
                payload = read_answer(answer, self.budget, shown, self.max_bytes, self.timeout)
        except requests.Timeout:
            raise Retryable(f"no answer within {self.timeout:g}s") from None
        except requests.ConnectionError as exc:
            raise Retryable(f"connection failed ({_root_cause(exc)})") from None
        except requests.RequestException as exc:
            raise SourceError(f"{self.source}: GET {shown} failed: {exc.__class__.__name__}") from None

        status = answer.status_code
        if status in RETRY_STATUSES:
            raise Retryable(f"HTTP {status}{_error_text(payload)}", self._retry_after(answer))
        if status not in ok_statuses:
            raise SourceError(f"{self.source}: GET {shown} answered HTTP {status}{_error_text(payload)}")
        if self.server_time is None:
            self.server_time = _http_date(answer.headers.get("Date"))
        body = self._parse_json(payload, shown, status, answer.headers.get("Content-Type", ""))
        throttled = is_throttled(body)
        if throttled:
            raise Retryable(throttled, self._retry_after(answer))
        return Response(shown, status, body)

    def _parse_json(self, payload: bytes, url: str, status: int, content_type: str) -> Any:
        try:
            return json.loads(payload)
        except RecursionError:
            raise SourceError(f"{self.source}: GET {url} answered JSON nested too deeply to be market data") from None
        except (ValueError, UnicodeDecodeError):
            head = payload[:200].lstrip().lower()
            if head.startswith((b"<!doctype", b"<html")) or "html" in content_type:
                what = "an HTML page, not JSON"
            elif not payload.strip():
                what = "an empty body, not JSON"
            else:
                what = "truncated or malformed JSON"
            raise SourceError(f"{self.source}: GET {url} answered {what} (HTTP {status})") from None

    def _retry_after(self, answer: requests.Response) -> float | None:
        return retry_after_seconds(answer.headers.get("Retry-After"), self.retry_after_max)


def retry_after_seconds(value: str | None, cap: float) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds to wait, at most `cap`."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, cap))


def _http_date(value: str | None) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _redirect_message(source: str, shown: str, answer: requests.Response) -> tuple[str, str]:
    target = urlsplit(urljoin(answer.url, answer.headers.get("Location", "")))
    where = f"{target.scheme}://{target.hostname}" if target.hostname else "an unnamed place"
    return (f"{source}: GET {shown} answered HTTP {answer.status_code}, a redirect to {where}; "
            "mcdata follows no redirects", "set --api-url to the API's final address")


def _error_text(payload: bytes) -> str:
    """The `error` field of a JSON error body, if there is one."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, list):
        error = ", ".join(map(str, error))
    return f" ({str(error)[:120]})" if error else ""


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve: offline, or a wrong --api-url?"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.__class__.__name__


class OverHttp:
    """What a source that talks through one HttpClient tells about it (base.Source's attributes)."""

    client: HttpClient

    @property
    def http_requests(self) -> int:
        return self.client.requests

    @property
    def server_time(self) -> datetime | None:
        return self.client.server_time

    def cancel(self) -> None:
        self.client.cancel()


def client_for(settings: Settings, default_url: str, headers: Mapping[str, str] | None = None) -> HttpClient:
    """The HTTP client of a source, with the settings' limits; the source gives its URL and headers."""
    return HttpClient(
        settings.source,
        settings.api_url or default_url,
        timeout=settings.http_timeout,
        retries=settings.http_retries,
        backoff=settings.http_backoff,
        retry_after_max=settings.retry_after_max.total_seconds(),
        min_interval=1 / settings.rate_limit,
        headers=dict(headers or {}),
        time_limit=settings.fetch_timeout.total_seconds(),
    )
