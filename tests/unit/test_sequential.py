import random

from rules.balance import Condition
from rules.sequential import CusumParams, CusumState, cusum_condition, cusum_update

P = CusumParams.of(drift_pct=1.0, threshold_pct_h=8.0, warmup_h=12, half_life_h=168, interval_h=1.0)


def _run(values, state=None):
    state = state or CusumState()
    conds = []
    for v in values:
        state = cusum_update(state, v, P)
        conds.append(cusum_condition(state, P))
    return state, conds


def test_warm_up_learns_the_sites_bias_robustly():
    state, conds = _run([0.9, 1.1, 1.0, 25.0, 1.0, 0.95, 1.05, 1.0, 1.0, 0.9, 1.1, 1.0])
    assert abs(state.baseline_pct - 1.0) < 0.06
    assert all(c is Condition.UNKNOWN for c in conds)


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
