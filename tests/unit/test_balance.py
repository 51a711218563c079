import pytest

from rules.balance import Condition, balance_threshold_pct, judge_balance, refill_credit, transit_allowance


def _judge(e, r, **kw):
    args = {"complete": True, "threshold_pct": 10.0, "clear_ratio": 0.5, "min_extracted_m3": 5.0}
    args.update(kw)
    return judge_balance(e, r, **args)


def test_threshold_is_the_larger_of_floor_and_accuracy_times_factor():
    assert balance_threshold_pct(0.0, 1.5, 1.0, 1.0) == pytest.approx(3.0)
    assert balance_threshold_pct(12.0, 1.5, 1.0, 1.0) == pytest.approx(12.0)
    assert balance_threshold_pct(0.0, 1.25, 2.0, 5.0) == pytest.approx(8.75)


def test_deficit_above_threshold_is_active_and_reports_the_numbers():
    b = _judge(120.0, 100.0)
    assert b.condition is Condition.ACTIVE
    assert b.deficit_m3 == pytest.approx(20.0)
    assert b.deficit_pct == pytest.approx(16.667, abs=1e-3)


def test_deficit_between_clear_level_and_threshold_is_the_hysteresis_band():
    assert _judge(100.0, 93.0).condition is Condition.BAND
    assert _judge(100.0, 96.0).condition is Condition.CLEAR


def test_surplus_is_clear_not_a_negative_alert():
    assert _judge(100.0, 130.0).condition is Condition.CLEAR


def test_too_little_extraction_gives_no_verdict():
    b = _judge(3.0, 0.0)
    assert b.condition is Condition.UNKNOWN and b.reason == "low_flow"


def test_incomplete_window_gives_no_verdict_even_with_a_huge_deficit():
    b = _judge(100.0, 0.0, complete=False)
    assert b.condition is Condition.UNKNOWN and b.reason == "incomplete"


def test_transit_allowance_covers_the_start_up_lag():
    allowance = transit_allowance(25.0, 0.0)
    assert _judge(25.0, 12.0, transit_allowance_m3=allowance).condition is Condition.CLEAR
    assert transit_allowance(20.0, 25.0) == 0.0


def test_maintenance_cap_allows_a_deficit_up_to_the_cap_only():
    assert _judge(200.0, 150.0, maintenance_allowance_m3=50.0).condition is Condition.CLEAR
    assert _judge(200.0, 100.0, maintenance_allowance_m3=50.0).condition is Condition.ACTIVE


def test_a_low_load_window_is_judged_by_volume_it_raises_but_never_clears():
    # 3 m³ extracted, under the 5 m³ minimum: 0.9 m³ missing is more than 10 % of 5 m³
    b = _judge(3.0, 2.1, low_load_m3=1.0)
    assert b.condition is Condition.ACTIVE and b.excess_pct == pytest.approx(30.0)
    assert _judge(3.0, 2.6, low_load_m3=1.0).condition is Condition.UNKNOWN  # 0.4 m³ < 0.5 m³: no verdict
    assert _judge(0.8, 0.0, low_load_m3=1.0).condition is Condition.UNKNOWN  # below the floor: no verdict
    assert _judge(3.0, 2.0, low_load_m3=1.0, transit_allowance_m3=0.6).condition is Condition.UNKNOWN


def test_refill_credit_gives_back_what_the_pipes_drained_during_the_last_stop():
    # water arriving at the pipes' end (extraction shifted by the lag) and reinjected, per interval:
    # running, a stop during which 3 m³ drain from the pipes, then the restart refilling them
    arriving = [5.0, 5.0, 5.0, 0.0, 0.0, 5.0, 5.0]
    reinjected = [5.0, 5.0, 5.0, 3.0, 0.0, 3.0, 5.0]
    assert refill_credit(arriving[:5], reinjected[:5]) == pytest.approx(3.0)  # drained, nothing refilled yet
    assert refill_credit(arriving[:6], reinjected[:6]) == pytest.approx(1.0)  # 2 m³ of the 3 refilled
    assert refill_credit([*arriving[:6], 5.0], [*reinjected[:6], 4.0]) == pytest.approx(0.0)  # refilled
    assert refill_credit([5.0, 5.0], [5.0, 5.2]) == 0.0  # no stop: nothing to credit
    # a meter reading high after the refill never earns more than what drained
    assert refill_credit(arriving[:5] + [5.0] * 10, reinjected[:5] + [5.5] * 10) == pytest.approx(3.0)
