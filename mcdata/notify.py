"""Notifications sent through apprise in a process of their own, which the run kills when its budget ends.

A receiver that never finishes answering, apprise's worker threads (which the interpreter joins at exit)
and a plugin's own retries can then neither hold the run's lock past its budget nor keep the process
alive after it. The URLs travel on the worker's standard input, never on its command line (`ps`).

In the worker, every HTTP call apprise makes follows no redirect, waits at most NOTIFY_TIMEOUT for a
connection and for each read, and reads at most NOTIFY_ANSWER_BYTES of the answer (its status is what
counts). A call with no answer at all is *uncertain*: the receiver may have taken the notification.

Protocol: the first line of stdin is {"budget": seconds, "jobs": [[url, title, body, type], ...]}; for each job,
in order, the worker prints {"started": i} before sending and {"done": i, "error": text or null,
"uncertain": bool} after. It exits when stdin closes (the run ended, however) or its budget has passed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

NOTIFY_TIMEOUT = 5.0  # seconds: to connect, and between two reads of an answer
NOTIFY_ANSWER_BYTES = 64 * 1024  # of an answer's body: a receiver says ok or not in far less

Job = tuple[str, str, str, str]  # url, title, body, apprise's notify type (info, warning, ...)


@dataclass(frozen=True)
class Outcome:
    error: str | None  # None: the receiver took it
    uncertain: bool = False  # no answer: the receiver may have taken it
    started: bool = True  # False: never sent (the budget ended first)


def send_all(jobs: Sequence[Job], budget: float) -> list[Outcome]:
    """Send each job, in order, within `budget` seconds in all; each job's outcome. What the budget cut off
    is uncertain if it had started, not sent otherwise."""
    never = Outcome("not sent: the delivery budget ended first", started=False)
    outcomes = [never] * len(jobs)
    if not jobs:
        return outcomes
    package_root = str(Path(__file__).resolve().parent.parent)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                              os.environ.get("PYTHONPATH")]))}
    worker = subprocess.Popen([sys.executable, "-m", "mcdata.notify"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(worker, lines), name="notify-reader", daemon=True).start()
    deadline = time.monotonic() + budget
    try:
        assert worker.stdin is not None
        try:  # stdin stays open: the worker ends when it closes, so it never outlives this process
            worker.stdin.write(json.dumps({"budget": budget, "jobs": [list(job) for job in jobs]}) + "\n")
            worker.stdin.flush()
        except OSError:  # the worker died at once: every job stays unsent
            pass
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            _take(json.loads(line), outcomes)
    finally:
        worker.kill()
        code = worker.wait()
        with contextlib.suppress(OSError):
            if worker.stdin is not None:
                worker.stdin.close()
    if code not in (0, -9) and all(not o.started for o in outcomes):
        outcomes = [Outcome(f"the notifier process failed (exit {code})", started=False)] * len(jobs)
    return outcomes


def _read_lines(worker: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert worker.stdout is not None
    for line in worker.stdout:
        lines.put(line)
    lines.put(None)


def _take(message: dict[str, Any], outcomes: list[Outcome]) -> None:
    if "started" in message:
        outcomes[message["started"]] = Outcome("no answer before the delivery budget ended", uncertain=True)
    else:
        outcomes[message["done"]] = Outcome(message["error"], bool(message["uncertain"]))


# -- the worker -------------------------------------------------------------------------------------------
class _Call:
    uncertain = False  # of the job under way (apprise may make its calls on a thread of its own)


_call = _Call()


def _bound_requests() -> None:
    """Every requests call in this process: no redirect, bounded waits, a bounded read of the answer."""
    import requests

    original = requests.Session.request

    def bounded(self: requests.Session, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        kwargs.update(stream=True, allow_redirects=False, timeout=(NOTIFY_TIMEOUT, NOTIFY_TIMEOUT))
        try:
            answer = original(self, method, url, *args, **kwargs)
        except requests.ReadTimeout:
            _call.uncertain = True  # sent, never answered
            raise
        try:
            answer._content = _head_of(answer)
        finally:
            answer.close()
        answer._content_consumed = True  # type: ignore[attr-defined]
        return answer

    requests.Session.request = bounded  # type: ignore[method-assign]
    from mcdata.sources.http import NoRedirectSession

    requests.Session.resolve_redirects = NoRedirectSession.resolve_redirects  # type: ignore[method-assign,assignment]


def _head_of(answer: Any) -> bytes:
    """At most NOTIFY_ANSWER_BYTES of the body, read for at most NOTIFY_TIMEOUT."""
    deadline = time.monotonic() + NOTIFY_TIMEOUT
    body = bytearray()
    try:
        while len(body) < NOTIFY_ANSWER_BYTES and time.monotonic() < deadline:
            chunk = answer.raw.read1(NOTIFY_ANSWER_BYTES - len(body), decode_content=True)
            if not chunk:
                break
            body += chunk
    except Exception as exc:  # the status is what counts; a broken body is just shorter
        logging.getLogger("mcdata").debug("notify: the answer's body broke off: %s", exc.__class__.__name__)
    return bytes(body)


def send(url: str, title: str, body: str, kind: str = "info") -> str | None:
    """Send one notification through apprise (`kind`: its notify type, an alert is a `warning`); None when
    it went, else why not (no URL, no token in it)."""
    import apprise

    notifier = apprise.Apprise()
    if not notifier.add(url):
        return "not a notification URL apprise accepts"
    with apprise.LogCapture(level=logging.WARNING) as captured:  # type: ignore[no-untyped-call]
        try:
            sent = notifier.notify(body=body, title=title, notify_type=kind)
        except Exception as exc:  # a plugin's own bug: the event stays pending
            return f"the notifier failed ({exc.__class__.__name__})"
    if sent:
        return None
    lines = [line for line in captured.getvalue().splitlines() if line.strip()]
    if not lines:
        return "the service did not take it"
    reason = re.sub(r"^.*?\b(DEBUG|INFO|WARNING|ERROR|CRITICAL) - ", "", lines[-1])  # apprise's own prefix
    return scrubbed(reason, url)


def scrubbed(text: str, url: str) -> str:
    """An error about a notify URL without any part of that URL: its host may be a topic (ntfy://topic) or
    a bot token (tgram://token/chat), its path and query hold webhook tokens; what is left is the service's
    words, a status code, an error class. At most 300 characters."""
    text = re.sub(r"\S+://\S+", "<url>", text)
    parts = {unquote(part) for part in re.split(r"[/:@?&=#,;]+", url.partition("://")[2])}
    for part in sorted((part for part in parts if len(part) >= 3), key=len, reverse=True):
        text = text.replace(part, "***")
    return text[:300]


def _end_with_the_parent(budget: float) -> None:
    """Exit when the run that started this process ends (its end of stdin closes: even SIGKILL closes
    it) or, at the latest, when its budget has passed: an orphan never lingers."""
    def watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch, name="parent", daemon=True).start()
    threading.Timer(budget + 5, os._exit, args=(0,)).start()


def main() -> None:
    request = json.loads(sys.stdin.readline())
    _end_with_the_parent(float(request["budget"]))
    _bound_requests()
    for index, (url, title, body, kind) in enumerate(request["jobs"]):
        print(json.dumps({"started": index}), flush=True)
        _call.uncertain = False
        error = send(url, title, body, kind)
        print(json.dumps({"done": index, "error": error, "uncertain": error is not None and _call.uncertain}),
              flush=True)
    sys.stdout.flush()
    os._exit(0)  # apprise's worker threads are not waited for


if __name__ == "__main__":
    main()
