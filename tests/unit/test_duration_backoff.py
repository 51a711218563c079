from __future__ import annotations

import random
from datetime import timedelta

import pytest

from collector.backoff import Backoff
from collector.duration import format_duration, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("1s", 1), ("10s", 10), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
    ("1.5s", 1.5), (3, 3), (0.25, 0.25),
])
def test_durations_read_like_people_write_them(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "soon", "10", "5 minutes", "1s2", "-1s", -1, True, None, "m5"])
def test_bad_durations_say_how_to_write_one(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize("td", [timedelta(milliseconds=500), timedelta(seconds=90), timedelta(days=1, hours=2)])
def test_format_round_trips(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


def test_backoff_grows_to_its_cap_with_jitter_in_the_upper_half() -> None:
    b = Backoff(base=1, cap=8)
    assert [b.ceiling(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    rng = random.Random(1)
    delays = [b.delay(4, rng) for _ in range(200)]
    assert all(4 <= d <= 8 for d in delays) and len(set(delays)) > 100
