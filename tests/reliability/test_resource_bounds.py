"""Oversized and never-ending answers are refused with a clear error, in bounded memory and time."""

from __future__ import annotations

import resource
import time

import pytest

from tests.reliability.conftest import Harness


@pytest.mark.parametrize(("fault", "options", "message"), [
    ("huge", {"seconds": 100}, "more than the 67,108,864 allowed"),  # 100 MB, announced
    ("endless", {"seconds": 30}, "exceeds 67,108,864 bytes"),  # no length, 1 MB chunks for ever
    ("drip", {"seconds": 30}, "took more than 3s to arrive"),  # a byte every 50 ms for ever
])
def test_answers_too_big_or_endless(harness: Harness, fault: str, options: dict[str, float], message: str) -> None:
    assert harness.invoke("migrate")[0] == 0
    harness.exchange.fail("/0/public/Ticker", fault, times=5, **options)  # type: ignore[arg-type]
    started = time.monotonic()
    child = harness.spawn("fetch", "--backfill", "0", env={"MCDATA_HTTP_RETRIES": "0"})
    code, _, err = harness.wait(child, timeout=60)
    assert code == 1, err
    assert message in err
    assert time.monotonic() - started < 20
    # the largest child this test process ever waited for: an upper bound on this one
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 250 * 1024
    assert harness.query("SELECT count(*) FROM raw_crypto_pair_price_history")[0][0] == 0
