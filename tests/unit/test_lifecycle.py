from rules.balance import Condition
from rules.lifecycle import AlertState, AlertTrack, advance, alert_id

A, B, C, U = Condition.ACTIVE, Condition.BAND, Condition.CLEAR, Condition.UNKNOWN


def _run(conds, hold=600.0, clear_for=0.0, step=300.0):
    track, out = AlertTrack(), []
    for i, c in enumerate(conds):
        track, tr = advance(track, c, i * step, hold, clear_for, "s", "r")
        out.append(tr.state if tr else None)
    return track, out


def test_condition_stays_pending_until_it_has_lasted_for_the_hold():
    _, out = _run([A, A, A, A])
    assert out == [AlertState.PENDING, None, AlertState.FIRING, None]


def test_zero_hold_fires_at_once():
    _, out = _run([A], hold=0.0)
    assert out == [AlertState.FIRING]


def test_pending_that_clears_before_the_hold_resolves_without_firing():
    _, out = _run([A, C, A])
    assert out == [AlertState.PENDING, AlertState.RESOLVED, AlertState.PENDING]


def test_band_between_clear_level_and_threshold_does_not_flap():
    track, out = _run([A, A, A, B, A, B, B, A])
    assert out.count(AlertState.FIRING) == 1 and AlertState.RESOLVED not in out
    assert track.state is AlertState.FIRING


def test_unknown_never_resolves_a_firing_alert():
    track, out = _run([A, A, A] + [U] * 50)
    assert track.state is AlertState.FIRING and AlertState.RESOLVED not in out


def test_firing_resolves_only_after_clear_for():
    _, out = _run([A, A, A, C, C, C, C], clear_for=900.0)
    assert out[3:] == [None, None, None, AlertState.RESOLVED]


def test_clear_interrupted_by_active_restarts_the_clear_timer():
    _, out = _run([A, A, A, C, C, A, C, C, C, C], clear_for=900.0)
    assert out.index(AlertState.RESOLVED) == 9


def test_one_alert_keeps_its_id_through_its_transitions():
    track, tr = advance(AlertTrack(), A, 0.0, 300.0, 0.0, "s", "r")
    assert tr is not None
    track, tr2 = advance(track, A, 300.0, 300.0, 0.0, "s", "r")
    assert tr2 is not None and tr2.alert_id == tr.alert_id == alert_id("s", "r", 0.0)
    assert tr2.starts_at == 0.0
