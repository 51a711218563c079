from datetime import timedelta

from collector.model import Role
from rules.balance import Condition
from rules.counters import StepKind
from rules.quality import QUALITY_RULES, MeterTrack, QualityPlan, observe
from rules.settings import QualitySettings

Q = QualityPlan.of(QualitySettings())


def _track(meter="R1", role=Role.REINJECTION, readings=(), step=None):
    t = MeterTrack(meter, role)
    for ts, rate, total in readings:
        observe(t, ts, rate, total, None, None, step)
    return t


def _detect(name, tracks, now):
    return QUALITY_RULES[name].detect(tracks, now, Q)


def test_every_rule_is_registered_once_with_a_kind():
    assert set(QUALITY_RULES) == {"meter_offline", "reinjection_silent", "totalizer_frozen",
                                  "totalizer_reset", "reverse_flow", "signal_quality", "discharge_flow",
                                  "meter_changed", "low_arrival"}
    assert {r.kind for r in QUALITY_RULES.values()} <= {"data_quality", "discharge"}


def test_meter_offline_after_the_configured_silence():
    t = _track(readings=[(0.0, 10.0, 1.0)])
    assert _detect("meter_offline", [t], 800.0).condition is Condition.CLEAR
    f = _detect("meter_offline", [t], 1000.0)
    assert f.condition is Condition.ACTIVE and f.meters == ("R1",)


def test_reinjection_silent_only_while_extraction_runs():
    e_running = _track("E1", Role.EXTRACTION, [(900.0, 100.0, 10.0)])
    e_stopped = _track("E1", Role.EXTRACTION, [(900.0, 0.0, 10.0)])
    r = _track(readings=[(0.0, 90.0, 1.0)])
    assert _detect("reinjection_silent", [e_running, r], 960.0).condition is Condition.ACTIVE
    assert _detect("reinjection_silent", [e_stopped, r], 960.0).condition is Condition.CLEAR


def test_frozen_totalizer_needs_flow_and_time():
    frozen = _track(readings=[(60.0 * i, 50.0, 100.0) for i in range(20)])
    assert _detect("totalizer_frozen", [frozen], 1200.0).condition is Condition.ACTIVE
    idle = _track(readings=[(60.0 * i, 0.0, 100.0) for i in range(20)])
    assert _detect("totalizer_frozen", [idle], 1200.0).condition is Condition.CLEAR
    moving = _track(readings=[(60.0 * i, 50.0, 100.0 + i) for i in range(20)])
    assert _detect("totalizer_frozen", [moving], 1200.0).condition is Condition.CLEAR


def test_reset_event_is_active_for_the_hold_then_clears():
    t = _track(readings=[(100.0, 10.0, 1.0)], step=StepKind.RESET)
    assert _detect("totalizer_reset", [t], 200.0).condition is Condition.ACTIVE
    assert _detect("totalizer_reset", [t], 100.0 + 3601.0).condition is Condition.CLEAR


def test_reverse_flow_is_a_negative_rate():
    t = _track(readings=[(0.0, -30.0, 5.0)])
    assert _detect("reverse_flow", [t], 10.0).condition is Condition.ACTIVE
    t2 = _track(readings=[(0.0, -0.1, 5.0)])
    assert _detect("reverse_flow", [t2], 10.0).condition is Condition.CLEAR


def test_signal_quality_flags_low_signal_or_error_code():
    t = MeterTrack("R1", Role.REINJECTION)
    observe(t, 0.0, 10.0, 1.0, 25.0, None, None)
    assert _detect("signal_quality", [t], 1.0).condition is Condition.ACTIVE
    observe(t, 60.0, 10.0, 1.2, 80.0, 8, None)
    assert _detect("signal_quality", [t], 61.0).condition is Condition.ACTIVE
    observe(t, 120.0, 10.0, 1.4, 80.0, 0, None)
    assert _detect("signal_quality", [t], 121.0).condition is Condition.CLEAR


def test_discharge_meter_with_flow_is_a_discharge_finding():
    d = _track("D1", Role.DISCHARGE, [(0.0, 5.0, 1.0)])
    assert _detect("discharge_flow", [d], 1.0).condition is Condition.ACTIVE
    assert QUALITY_RULES["discharge_flow"].kind == "discharge"


def test_meter_changed_lists_each_change_for_its_hold_then_clears():
    from datetime import UTC, datetime

    from collector.model import ChangeKind, MeterChange
    from rules.quality import note_change

    t = _track(readings=[(0.0, 10.0, 1.0)])
    at = datetime.fromtimestamp(100.0, UTC)
    note_change(t, MeterChange("s", "R1", at, ChangeKind.MULTIPLIER_CHANGED, "total_multiplier", 3, 4), 100.0)
    note_change(t, MeterChange("s", "R1", at, ChangeKind.SERIAL_CHANGED, "serial_number", 7, 8), 100.0)
    assert _detect("meter_changed", [t], 99.0).condition is Condition.CLEAR  # not before it happened
    f = _detect("meter_changed", [t], 200.0)
    assert f.condition is Condition.ACTIVE and f.meters == ("R1",)
    assert (f.evidence["field"], f.evidence["old"], f.evidence["new"]) == ("serial_number", 7, 8)
    assert [c["kind"] for c in f.evidence["changes"]] == ["multiplier_changed", "serial_changed"]
    assert t.events == 1  # the swap restarts the sequential baseline, the multiplier does not
    assert _detect("meter_changed", [t], 100.0 + 24 * 3600 + 1).condition is Condition.CLEAR
    assert QUALITY_RULES["meter_changed"].kind == "data_quality"


def test_reinjection_silent_never_starts_before_offline_after():
    r = _track(readings=[(0.0, 90.0, 1.0)])
    rule = QUALITY_RULES["reinjection_silent"]
    for q, quiet, silent, hold in ((Q, 800.0, 960.0, 0.0),
                                   (QualityPlan.of(QualitySettings(offline_after=timedelta(minutes=30))),
                                    1790.0, 1810.0, 0.0),
                                   (QualityPlan.of(QualitySettings(silent_after=timedelta(minutes=20))),
                                    1190.0, 1210.0, 300.0)):
        e = [_track("E1", Role.EXTRACTION, [(now - 30.0, 100.0, 10.0)]) for now in (quiet, silent)]
        assert rule.detect([e[0], r], quiet, q).condition is Condition.CLEAR
        assert rule.detect([e[1], r], silent, q).condition is Condition.ACTIVE
        assert rule.hold(q) == hold
