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
