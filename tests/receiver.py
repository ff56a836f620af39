"""A scripted HTTP server on loopback: it answers GETs and POSTs from a list (the last answer repeats) and records
each request's path. The HTTP-layer tests script its answers; the monitoring tests use it as the cron
monitor that receives pings."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = tuple[int, dict[str, str], bytes]


class Receiver:
    def __init__(self) -> None:
        self.answers: list[Answer] = [(200, {}, b"{}")]
        self.paths: list[str] = []
        self.bodies: list[bytes] = []  # of POSTs
        self.delay = 0.0  # seconds before each answer
        self.drip = 0.0  # seconds of a hostile answer: its headers, then its body, a few bytes at a time
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def seen(self) -> int:
        return len(self.paths)

    def next(self, path: str) -> Answer:
        self.paths.append(path)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def __enter__(self) -> Receiver:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # a response in several writes: no 40 ms stalls on delayed ACKs

        def do_GET(self) -> None:
            time.sleep(receiver.delay)
            if receiver.drip:
                self._drip()
                return
            status, headers, body = receiver.next(self.path)
            self.send_response_only(status)
            headers = {"Date": self.date_time_string(), "Content-Type": "application/json",
                       "Content-Length": str(len(body)), **headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _drip(self) -> None:
            """An answer that never ends and is never quiet for long: one header, a byte every 100 ms (no read
            timeout fires, no header limit is reached), until `drip` seconds have passed."""
            receiver.paths.append(self.path)
            deadline = time.monotonic() + receiver.drip
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while time.monotonic() < deadline:
                    self.wfile.write(b"1")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
            self.close_connection = True

        def do_POST(self) -> None:
            receiver.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.do_GET()

        def log_message(self, *args: object) -> None:
            pass

    return Handler
