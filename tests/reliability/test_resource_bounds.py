"""Oversized and never-ending answers are refused with a clear error, in bounded memory and time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.reliability.conftest import Harness

pytestmark = pytest.mark.slow  # subprocesses, soak, restarts: `-m "not slow"` skips them while working

# mcdata in a child process, then its peak resident memory (VmHWM, kB) on the last stderr line
PROBE = """import runpy, sys
sys.argv = ["mcdata", *sys.argv[1:]]
try:
    runpy.run_module("mcdata", run_name="__main__")
except SystemExit as exit:
    code = exit.code or 0
else:
    code = 0
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(("fault", "options", "message"), [
    ("huge", {"seconds": 100}, "more than the 67,108,864 allowed"),  # 100 MB, announced
    ("endless", {"seconds": 30}, "exceeds 67,108,864 bytes"),  # no length, 1 MB chunks for ever
    ("drip", {"seconds": 30}, "took more than 3s to arrive"),  # a byte every 50 ms for ever
    ("bomb", {"seconds": 300}, "exceeds 67,108,864 bytes"),  # 300 KB of gzip that inflate to 300 MB
    # requests reads a redirect's whole body even when told not to follow it
    ("redirect", {"message": "http://127.0.0.2:9/steal", "seconds": 300}, "a redirect to http://127.0.0.2"),
])
def test_answers_too_big_or_endless(harness: Harness, fault: str, options: dict[str, float], message: str) -> None:
    assert harness.invoke("migrate")[0] == 0
    harness.exchange.fail("/0/public/Ticker", fault, times=5, **options)  # type: ignore[arg-type]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", PROBE, "fetch", "--backfill", "0"], capture_output=True, text=True,
                          env={**os.environ, **harness.env, "MCDATA_HTTP_RETRIES": "0"}, timeout=60, check=False)
    harness.outputs += [done.stdout, done.stderr]
    *lines, peak = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert message in "\n".join(lines)
    assert time.monotonic() - started < 20
    assert int(peak) < 250 * 1024  # kB: the 64 MB cap, not the answer's size, bounds the memory
    assert harness.query("SELECT count(*) FROM raw_crypto_pair_price_history")[0][0] == 0


def _probe(harness: Harness, *args: str, env: dict[str, str]) -> tuple[int, list[str], int, float]:
    """mcdata in a child process: its exit code, stderr lines, peak RSS (kB) and seconds taken."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          env={**os.environ, **harness.env, **env}, timeout=90, check=False)
    harness.outputs += [done.stdout, done.stderr]
    *lines, peak = done.stderr.strip().splitlines()
    return done.returncode, lines, int(peak), time.monotonic() - started


@pytest.mark.parametrize(("fault", "options", "message"), [
    ("huge", {"seconds": 300}, "more than the 67,108,864 allowed"),  # 300 MB, announced
    ("endless", {"seconds": 30}, "exceeds 67,108,864 bytes"),  # no length, 1 MB chunks for ever
    ("bomb", {"seconds": 300}, "exceeds 67,108,864 bytes"),  # 300 KB of gzip that inflate to 300 MB
    ("drip", {"seconds": 60}, "fetch_tickers failed after 2 attempts: RequestTimeout"),  # a byte every 50 ms
    ("redirect", {"message": "http://127.0.0.2:9/steal", "seconds": 300}, "a redirect to http://127.0.0.2"),
])
def test_ccxt_answers_have_the_native_bounds(harness: Harness, fault: str, options: dict[str, object],
                                             message: str) -> None:
    """ccxt's own HTTP calls: no redirect followed, the byte cap after decompression, a deadline per answer."""
    assert harness.invoke("migrate")[0] == 0
    assert harness.invoke("pairs", "--source", "ccxt")[0] == 0  # the market list is cached
    harness.exchange.fail("/0/public/Ticker", fault, times=5, **options)  # type: ignore[arg-type]
    code, lines, peak, seconds = _probe(harness, "fetch", "--backfill", "0", env={"MCDATA_SOURCE": "ccxt"})
    assert code == 1, lines
    assert message in "\n".join(lines)
    assert seconds < 20
    assert peak < 350 * 1024  # kB: ccxt itself is ~100 MB; the cap, not the answer's size, bounds the rest
    assert harness.query("SELECT count(*) FROM raw_crypto_pair_price_history")[0][0] == 0


@pytest.mark.parametrize("source", ["kraken", "ccxt"])
def test_retry_after_never_passes_the_fetch_time_limit(harness: Harness, source: str) -> None:
    assert harness.invoke("migrate")[0] == 0
    assert harness.invoke("pairs", "--source", source)[0] == 0
    harness.exchange.fail("/0/public/Ticker", "status", times=9, status=429, retry_after="25")
    code, lines, _, seconds = _probe(harness, "fetch", "--backfill", "0",
                                     env={"MCDATA_SOURCE": source, "MCDATA_FETCH_TIMEOUT": "20s",
                                          "MCDATA_HTTP_RETRIES": "4"})
    assert code == 1, lines
    assert "a wait of 25s would pass the fetch's time limit of 20s" in "\n".join(lines)
    assert seconds < 10
