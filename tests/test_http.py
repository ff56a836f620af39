"""The HTTP layer alone, against a scripted server on loopback: Retry-After, retries, capped reads, what
a non-JSON answer is called, and the source's clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from mcdata.errors import SourceError
from mcdata.sources.http import HttpClient
from tests.receiver import Receiver


@pytest.fixture
def server() -> Iterator[tuple[str, Receiver]]:
    with Receiver() as receiver:
        yield receiver.url, receiver


def client(url: str, waits: list[float], **options: float) -> HttpClient:
    return HttpClient("test", url, timeout=2, retries=int(options.pop("retries", 2)), backoff=0.5,
                      sleep=waits.append, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("0", 0.0), ("120", 60.0), ("soon", 0.5)])
def test_retry_after_seconds_are_honoured_up_to_the_cap(server: tuple[str, Receiver], header: str,
                                                        expected: float) -> None:
    url, script = server
    script.answers = [(429, {"Retry-After": header}, b"{}"), (200, {}, b'{"ok": 1}')]
    waits: list[float] = []
    assert client(url, waits, retry_after_max=60).get("/x").body == {"ok": 1}
    assert waits == [expected]  # an unreadable header falls back to the backoff (0.5 s)


def test_retry_after_as_an_http_date(server: tuple[str, Receiver]) -> None:
    url, script = server
    later = format_datetime(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30), usegmt=True)
    script.answers = [(503, {"Retry-After": later}, b"{}"), (200, {}, b"{}")]
    waits: list[float] = []
    client(url, waits).get("/x")
    assert 25 <= waits[0] <= 30


def test_backoff_doubles_and_the_last_failure_names_the_attempts(server: tuple[str, Receiver]) -> None:
    url, script = server
    script.answers = [(502, {}, b"<html>bad gateway</html>")]
    waits: list[float] = []
    with pytest.raises(SourceError, match=r"failed after 3 attempts: HTTP 502"):
        client(url, waits).get("/x")
    assert waits == [0.5, 1.0]
    assert script.seen == 3


def test_a_declared_length_over_the_cap_is_refused_unread(server: tuple[str, Receiver]) -> None:
    url, script = server
    script.answers = [(200, {}, b"[" + b"1," * 600 + b"1]")]
    with pytest.raises(SourceError, match=r"1,203 bytes, more than the 1,000 allowed"):
        client(url, [], max_bytes=1000).get("/x")
    assert script.seen == 1  # not retried: a bigger answer will not get smaller


def test_an_undeclared_length_over_the_cap_is_cut_off(server: tuple[str, Receiver]) -> None:
    url, script = server
    script.answers = [(200, {"Content-Length": ""}, b"[" + b"1," * 600 + b"1]")]
    with pytest.raises(SourceError, match=r"exceeds 1,000 bytes"):
        client(url, [], max_bytes=1000).get("/x")


@pytest.mark.parametrize(("body", "content_type", "called"), [
    (b"<!DOCTYPE html><html>maintenance</html>", "text/html", "an HTML page, not JSON"),
    (b'{"result": {"XXBTZEUR": ', "application/json", "truncated or malformed JSON"),
    (b"   ", "application/json", "an empty body, not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", "JSON nested too deeply"),
])
def test_answers_that_are_not_usable_json_are_named(server: tuple[str, Receiver], body: bytes, content_type: str,
                                                    called: str) -> None:
    url, script = server
    script.answers = [(200, {"Content-Type": content_type}, body)]
    with pytest.raises(SourceError, match=called):
        client(url, []).get("/x")


def test_the_first_answers_date_is_the_sources_clock(server: tuple[str, Receiver]) -> None:
    url, script = server
    script.answers = [(200, {"Date": "Tue, 24 Nov 2026 12:00:00 GMT"}, json.dumps({"a": 1}).encode())]
    http = client(url, [])
    http.get("/x")
    assert http.server_time == datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert http.requests == 1
