import random

import pytest

from rules.counters import CounterPlan, classify_step, increase
from rules.settings import CounterSettings
from rules.windows import Ledger, interval_of, spread

S = CounterSettings()


def test_spread_splits_volume_in_proportion_to_time_in_each_interval():
    parts = spread(50.0, 130.0, 8.0, 60.0)
    assert parts == [(0, pytest.approx(1.0)), (1, pytest.approx(6.0)), (2, pytest.approx(1.0))]


def test_spread_ending_on_an_interval_edge_does_not_touch_the_next_interval():
    assert spread(0.0, 60.0, 3.0, 60.0) == [(0, 3.0)]


def test_interval_of_is_epoch_aligned():
    assert interval_of(299.9, 300.0) == 0
    assert interval_of(300.0, 300.0) == 1


def _feed(ledger: Ledger, ts: list[float], tot: list[float]) -> None:
    for i in range(1, len(ts)):
        step = classify_step(tot[i - 1], tot[i], ts[i] - ts[i - 1], 600.0, CounterPlan(S))
        ledger.add(ts[i - 1], ts[i], step.volume_m3)


def test_ledger_window_sum_equals_increase_over_the_same_span():
    rng = random.Random(7)
    ts, tot, t, v = [], [], 13.0, 1000.0
    for _ in range(400):
        ts.append(t)
        tot.append(round(v, 2))
        t += rng.uniform(20, 90)
        v += rng.uniform(0, 2)
    ledger = Ledger(300.0, 1000)
    _feed(ledger, ts, tot)
    for ka, kb in ((1, 5), (3, 40), (10, 11)):
        w = ledger.window(ka, kb)
        ref = increase(ts, tot, ka * 300.0, kb * 300.0, 600.0, S)
        assert w.complete
        assert w.volume_m3 == pytest.approx(ref.volume_m3)


def test_unknown_volume_makes_every_overlapping_window_incomplete():
    ledger = Ledger(300.0, 100)
    _feed(ledger, [0.0, 60.0, 1500.0, 1560.0, 3000.0], [0.0, 1.0, 20.0, 21.0, 40.0])
    assert not ledger.window(0, 3).complete
    assert not ledger.window(2, 5).complete


def test_window_beyond_the_newest_data_is_incomplete():
    ledger = Ledger(60.0, 100)
    _feed(ledger, [0.0, 60.0, 120.0], [0.0, 1.0, 2.0])
    assert ledger.window(0, 2).complete
    assert not ledger.window(0, 3).complete


def test_ledger_forgets_beyond_retention_and_reports_old_windows_incomplete():
    ledger = Ledger(60.0, 10)
    _feed(ledger, [60.0 * i for i in range(100)], [float(i) for i in range(100)])
    assert ledger.window(95, 99).complete
    assert ledger.window(95, 99).volume_m3 == pytest.approx(4.0)
    assert not ledger.window(5, 9).complete


def test_long_windows_from_running_sums_match_the_intervals_through_writes_and_trims():
    rng = random.Random(7)
    ledger = Ledger(60.0, 50)
    t = 0.0
    for n in range(400):
        dt = rng.choice([30.0, 60.0, 90.0, 200.0])
        ledger.add(t, t + dt, rng.uniform(0.0, 5.0))
        t += dt
        if n % 7 == 0:
            newest = interval_of(t, 60.0) + 1  # the interval being written included
            oldest = ledger.oldest
            assert oldest is not None
            for span in (3, 20, 40):
                ka = max(oldest, newest - span)
                vols, _ = ledger.volumes(ka, newest)
                got = ledger.window(ka, newest).volume_m3
                assert got == pytest.approx(sum(vols), rel=1e-12, abs=1e-12)
                if newest - ka <= 16:
                    assert got == sum(vols)  # short windows are added up interval by interval
