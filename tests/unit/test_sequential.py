import random

from rules.balance import Condition
from rules.sequential import (
    CusumParams,
    CusumState,
    cusum_condition,
    cusum_relearn,
    cusum_start,
    cusum_update,
)

P = CusumParams(drift_pct=1.0, threshold_pct_h=8.0, warmup_h=12, half_life_h=168, max_drift_pct_day=0.05)


def _run(values, state=None, hours=1.0):
    state = state or cusum_start(2.0)
    conds = []
    for v in values:
        state = cusum_update(state, v, hours, P)
        conds.append(cusum_condition(state, P))
    return state, conds


def test_warm_up_learns_the_sites_bias_robustly():
    state, conds = _run([0.9, 1.1, 1.0, 25.0, 1.0, 0.95, 1.05, 1.0, 1.0, 0.9, 1.1, 1.0])
    assert abs(state.baseline_pct - 1.0) < 0.06
    assert state.warm and not state.bounded
    assert all(c is Condition.UNKNOWN for c in conds[:-1])


def test_blocks_of_several_hours_count_their_hours():
    state, _ = _run([0.5] * 3, hours=4.0)  # 12 h of warm-up in three blocks
    assert state.warm
    state, conds = _run([3.5], state, hours=4.0)  # (3.5 − 0.5 − 1) × 4 h = 8 %·h
    assert conds == [Condition.ACTIVE]


def test_a_stable_bias_never_alarms():
    rng = random.Random(1)
    _, conds = _run([1.2 + rng.gauss(0, 0.3) for _ in range(2000)])
    assert Condition.ACTIVE not in conds


def test_a_three_percent_shift_above_baseline_alarms_within_hours():
    rng = random.Random(2)
    state, _ = _run([0.5 + rng.gauss(0, 0.2) for _ in range(24)])
    state, conds = _run([3.5 + rng.gauss(0, 0.2) for _ in range(12)], state)
    first = conds.index(Condition.ACTIVE)
    assert first <= 5


def test_the_baseline_does_not_learn_a_discharge_while_alarming():
    state, _ = _run([0.0] * 20)
    state, _ = _run([5.0] * 200, state)
    assert state.baseline_pct < 0.2
    assert cusum_condition(state, P) is Condition.ACTIVE


def test_the_alarm_clears_after_the_deficit_stops():
    state, _ = _run([0.0] * 20)
    state, _ = _run([6.0] * 10, state)
    state, conds = _run([0.0] * 30, state)
    assert conds[-1] is Condition.CLEAR


def test_a_deficit_beyond_meter_accuracy_from_the_first_day_is_flagged_not_learned():
    state, conds = _run([8.0] * 16)
    assert state.baseline_pct == 2.0 and state.bounded  # held at the meters' combined accuracy
    assert Condition.ACTIVE in conds


def test_the_baseline_drifts_no_faster_than_meters_do():
    state, _ = _run([0.0] * 12)
    state, _ = _run([0.9] * (14 * 24), state)  # 0.9 % for two weeks: below drift, never alarms
    assert state.baseline_pct <= 14 * 0.05 + 1e-9  # the unbounded half-life would have learned ~0.7 × 0.9


def test_relearning_after_a_meter_change_moves_the_baseline_only_within_the_new_meters_say():
    state, _ = _run([0.3] * 48)
    state = cusum_relearn(state, 0.5)  # a reinjection meter of 1 % carrying half the flow
    assert not state.warm and (state.lo_pct, state.hi_pct) == (-0.2, 0.8)
    state, conds = _run([3.3] * 24, state)  # a 3 % discharge started with the replacement
    assert state.baseline_pct == 0.8
    assert Condition.ACTIVE in conds


def test_relearning_before_the_first_warm_up_starts_over():
    state, _ = _run([0.3] * 4)
    state = cusum_relearn(state, 0.5)
    assert state == CusumState(lo_pct=-2.0, hi_pct=2.0)
