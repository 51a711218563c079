"""Freed heap goes back to the system, so RSS falls again after a burst."""

import os

from gshp import heap
from tests.helpers import rss_kb


def _rss_mb() -> float:
    return rss_kb(os.getpid()) / 1024


def test_trim_returns_a_freed_burst_to_the_system():
    burst = [bytes(1500) for _ in range(60_000)]  # ~90 MB in blocks malloc keeps after they are freed
    pin = bytes(1500)  # allocated last: the heap's top stays in use, only trimming inside it helps
    del burst
    before = _rss_mb()
    assert heap.trim()
    assert _rss_mb() < before - 40, (before, _rss_mb())
    del pin
