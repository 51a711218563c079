import math

import pytest

from rules.counters import CounterPlan, Coverage, StepKind, classify_step, increase
from rules.settings import CounterSettings

S = CounterSettings()  # deadband 0.5 m³, max flow 1000 m³/h, margin 1.5
GAP = 600.0


@pytest.mark.parametrize(
    ("prev", "cur", "dt", "kind", "volume"),
    [
        (100.0, 101.5, 60, StepKind.NORMAL, 1.5),
        (100.0, 100.0, 60, StepKind.NORMAL, 0.0),
        (100.0, 99.7, 60, StepKind.NOISE, 0.0),
        (5000.0, 0.8, 60, StepKind.RESET, 0.8),  # replaced meter starting near zero: count from 0
        (5000.0, 300.0, 60, StepKind.RESET, None),  # implausible new value: volume unknown
        (100.0, 140.0, 60, StepKind.JUMP, None),  # 40 m³ in a minute > 1000 m³/h × 1 min × 1.5
        (100.0, 105.0, 3600, StepKind.GAP, None),
        (5000.0, 3.0, 3600, StepKind.RESET, None),  # a swap across a gap is still a reset event
    ],
)
def test_classify_step_judges_each_kind_of_totalizer_step(prev, cur, dt, kind, volume):
    step = classify_step(prev, cur, dt, GAP, CounterPlan(S))
    assert step.kind is kind
    assert step.volume_m3 == (pytest.approx(volume) if volume is not None else None)


def test_rollover_at_the_known_wrap_point_counts_the_wrapped_volume():
    s = CounterSettings(wrap_m3=1_000_000.0)
    step = classify_step(999_999.0, 2.0, 60, GAP, CounterPlan(s))
    assert step.kind is StepKind.WRAP
    assert step.volume_m3 == pytest.approx(3.0)


def test_a_drop_is_never_a_negative_volume():
    for prev, cur in ((10.0, 9.0), (10.0, 0.0), (1e6, 5e5)):
        v = classify_step(prev, cur, 60, GAP, CounterPlan(S)).volume_m3
        assert v is None or v >= 0


def test_increase_interpolates_linearly_at_window_edges():
    ts = [0.0, 60.0, 120.0, 180.0]
    tot = [0.0, 6.0, 12.0, 18.0]
    inc = increase(ts, tot, 30.0, 150.0, GAP, S)
    assert inc.coverage is Coverage.COMPLETE
    assert inc.volume_m3 == pytest.approx(12.0)


def test_increase_counts_from_zero_after_a_reset_and_reports_the_event():
    ts = [0.0, 60.0, 120.0, 180.0]
    tot = [5000.0, 5001.0, 0.5, 1.5]
    inc = increase(ts, tot, 0.0, 180.0, GAP, S)
    assert inc.volume_m3 == pytest.approx(1.0 + 0.5 + 1.0)
    assert (120.0, StepKind.RESET) in inc.events


def test_small_backward_noise_is_zero_volume_not_a_reset():
    inc = increase([0.0, 60.0, 120.0], [100.0, 99.9, 101.0], 0.0, 120.0, GAP, S)
    assert inc.volume_m3 == pytest.approx(1.0)
    assert inc.events == ()


def test_a_gap_longer_than_tolerance_makes_the_window_incomplete():
    inc = increase([0.0, 60.0, 3660.0, 3720.0], [0.0, 1.0, 61.0, 62.0], 0.0, 3720.0, GAP, S)
    assert inc.coverage is Coverage.INCOMPLETE
    assert inc.volume_m3 is None


def test_a_window_not_covered_at_both_edges_is_incomplete():
    ts, tot = [100.0, 160.0, 220.0], [0.0, 1.0, 2.0]
    assert increase(ts, tot, 50.0, 200.0, GAP, S).coverage is Coverage.INCOMPLETE
    assert increase(ts, tot, 120.0, 300.0, GAP, S).coverage is Coverage.INCOMPLETE
    assert increase(ts, tot, 100.0, 220.0, GAP, S).coverage is Coverage.COMPLETE


def test_a_rejected_forward_jump_makes_volume_unknown():
    inc = increase([0.0, 60.0, 120.0], [0.0, 1.0, 500.0], 0.0, 120.0, GAP, S)
    assert inc.volume_m3 is None
    assert inc.events == ((120.0, StepKind.JUMP),)


def test_increase_rejects_an_empty_window():
    with pytest.raises(ValueError, match="start < end"):
        increase([0.0, 1.0], [0.0, 1.0], 5.0, 5.0, GAP, S)


def test_increase_is_finite_for_irregular_sampling():
    ts = [0.0, 7.0, 61.0, 62.5, 300.0]
    tot = [1.0, 1.1, 2.0, 2.02, 6.0]
    v = increase(ts, tot, 3.0, 299.0, GAP, S).volume_m3
    assert v is not None and math.isfinite(v) and 0 < v < 5.0
