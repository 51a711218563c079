"""Replayed-data fingerprints (`rules.forensic`) and totalizer steps judged across a gap (`rules.counters`)."""

import numpy as np
import pytest

from rules import forensic
from rules.balance import Condition
from rules.counters import CounterPlan, GapCheck, StepKind, classify_step
from rules.forensic import (
    ForensicPlan,
    SitePrints,
    exact_finding,
    note_hour,
    observe_reading,
    replay_finding,
    smooth_finding,
)
from rules.settings import CounterSettings, ForensicSettings
from simulators.physics import MeterSeries, replayed

PLAN = ForensicPlan.of(ForensicSettings())  # 26 h memory, 1 h window, 3 matches, stretches of 6, 1 in 8 kept
DAY = 86_400.0


def _honest(rng, minutes, rate=50.0):
    """Per-minute readings of a noisy ultrasonic meter: rates and a 0.01 m³ totalizer."""
    rates = np.round(rate * (1 + rng.normal(0, 0.002, minutes)), 3)
    totals = np.round(np.floor((1000.0 + np.cumsum(rates / 60.0)) * 100) / 100, 3)
    return rates, totals


def _feed(sp, meter, t0, rates, totals):
    for i, (r, tot) in enumerate(zip(rates, totals, strict=True)):
        observe_reading(sp, meter, t0 + 60.0 * i, float(r), float(tot))


def test_a_meter_repeating_its_previous_day_is_found_with_its_shift():
    rng = np.random.default_rng(1)
    rates, totals = _honest(rng, 1441 + 120)
    forged = replayed(MeterSeries(rates, totals), 1441, 1440)  # from minute 1441 on: the day before again
    sp = SitePrints(PLAN)
    _feed(sp, "R1", 0.0, forged.rate_m3h[:1441], forged.total_m3[:1441])
    assert replay_finding(sp, 60.0 * 1440).condition is Condition.CLEAR
    _feed(sp, "R1", 60.0 * 1441, forged.rate_m3h[1441:], forged.total_m3[1441:])
    f = replay_finding(sp, 60.0 * (1441 + 119))
    assert f.condition is Condition.ACTIVE and f.meters == ("R1",)
    r = f.evidence["replays"]["R1"]
    assert r["copied_from"] == "R1" and r["shift"] == "1d" and r["matching_stretches"] >= PLAN.min_matches


def test_honest_noisy_meters_never_match_themselves_or_each_other():
    rng = np.random.default_rng(2)
    sp = SitePrints(PLAN)
    for meter in ("E1", "R1"):
        rates, totals = _honest(rng, 2 * 1440)
        _feed(sp, meter, 0.0, rates, totals)
    assert all(not mp.matches for mp in sp.meters.values())
    assert replay_finding(sp, 2 * DAY).condition is Condition.CLEAR


def test_a_meter_copying_another_one_is_found_at_zero_shift():
    rng = np.random.default_rng(3)
    rates, totals = _honest(rng, 180)
    sp = SitePrints(PLAN)
    for i in range(180):  # R2 shows R1's readings, its totalizer offset by 5000 m³
        observe_reading(sp, "R1", 60.0 * i, float(rates[i]), float(totals[i]))
        observe_reading(sp, "R2", 60.0 * i, float(rates[i]), float(totals[i]) + 5000.0)
    f = replay_finding(sp, 60.0 * 179)
    assert f.condition is Condition.ACTIVE
    assert f.evidence["replays"]["R2"]["copied_from"] == "R1"
    assert f.evidence["replays"]["R2"]["shift"] == "0s"


def test_a_steady_flow_repeating_its_own_readings_is_not_a_copy():
    sp = SitePrints(ForensicPlan.of(ForensicSettings(replay_sample=1)))
    for i in range(600):  # coarse meter: the same two steps and one rate over and over
        observe_reading(sp, "R1", 60.0 * i, 50.0, 1000.0 + 0.83 * i + 0.01 * (i % 2))
    assert not sp.prints and not sp.meters["R1"].matches


def test_a_stop_breaks_the_stretch_and_matches_leave_the_window():
    rng = np.random.default_rng(4)
    rates, totals = _honest(rng, 120)
    sp = SitePrints(ForensicPlan.of(ForensicSettings(replay_sample=1)))
    _feed(sp, "R1", 0.0, rates, totals)
    observe_reading(sp, "R1", 60.0 * 120, 0.0, float(totals[-1]))  # stopped
    assert not sp.meters["R1"].tokens
    _feed(sp, "R1", DAY, rates, totals + 100.0)  # the same stretches a day later
    assert replay_finding(sp, DAY + 60.0 * 119).condition is Condition.ACTIVE
    assert replay_finding(sp, DAY + 60.0 * 119 + PLAN.window_s).condition is Condition.CLEAR


def test_fingerprints_are_kept_no_longer_than_the_memory():
    rng = np.random.default_rng(5)
    rates, totals = _honest(rng, 3 * 1440)
    sp = SitePrints(ForensicPlan.of(ForensicSettings(replay_sample=1)))
    _feed(sp, "R1", 0.0, rates, totals)
    now = 60.0 * (3 * 1440 - 1)
    assert sp.prints.horizon == now - PLAN.memory_s
    live = PLAN.memory_s / 60 + 1  # at most one a minute
    assert sum(t >= sp.prints.horizon for t in sp.prints.ts) <= live
    assert len(sp.prints) <= live * 9 / 8 + 32  # the forgotten ones go an eighth at a time


@pytest.mark.parametrize(("shift_min", "found"), [(26 * 60 - 30, True), (26 * 60 + 10, False)])
def test_a_repeat_is_found_within_the_memory_and_not_beyond_it(shift_min, found):
    rng = np.random.default_rng(7)
    rates, totals = _honest(rng, 120)
    sp = SitePrints(ForensicPlan.of(ForensicSettings(replay_sample=1)))
    _feed(sp, "R1", 0.0, rates, totals)
    _feed(sp, "R1", 60.0 * shift_min, rates, totals + 100.0)  # the same stretches again, their prints stored
    f = replay_finding(sp, 60.0 * (shift_min + 119))
    assert (f.condition is Condition.ACTIVE) is found


def test_a_site_keeps_at_most_max_prints_the_newest(monkeypatch):
    rng = np.random.default_rng(8)
    rates, totals = _honest(rng, 600)
    plan = ForensicPlan.of(ForensicSettings(replay_sample=1))
    every = SitePrints(plan)
    _feed(every, "R1", 0.0, rates, totals)
    monkeypatch.setattr(forensic, "MAX_PRINTS", 64)
    sp = SitePrints(plan)
    for i in range(600):
        observe_reading(sp, "R1", 60.0 * i, float(rates[i]), float(totals[i]))
        assert len(sp.prints) <= 64
    assert sorted(sp.prints.ts) == sorted(every.prints.ts)[-len(sp.prints):]
    _feed(sp, "R1", 60.0 * 600, rates[-40:], totals[-40:] + 100.0)  # the newest readings again: still known
    assert replay_finding(sp, 60.0 * 639).condition is Condition.ACTIVE


def test_a_copy_among_hundreds_of_meters_names_its_source():
    rng = np.random.default_rng(9)
    sp = SitePrints(PLAN)
    series = [_honest(rng, 120) for _ in range(299)]
    for i in range(120):
        for n, (rates, totals) in enumerate(series):
            observe_reading(sp, f"M{n}", 60.0 * i, float(rates[i]), float(totals[i]))
        rates, totals = series[280]  # the 300th meter shows the 281st's readings
        observe_reading(sp, "M299", 60.0 * i, float(rates[i]), float(totals[i]) + 5000.0)
    f = replay_finding(sp, 60.0 * 119)
    assert f.meters == ("M299",) and f.evidence["replays"]["M299"]["copied_from"] == "M280"


def test_fingerprints_sharing_their_high_bits_are_told_apart_by_the_low_ones():
    sp = SitePrints(PLAN)
    observe_reading(sp, "R1", 0.0, None, None)  # names the meter
    p = sp.prints
    a, b = (5 << 16) | 1, (5 << 16) | 2
    assert forensic._remember(p, a, 0, 60.0) is None
    assert forensic._remember(p, b, 0, 120.0) is None
    assert forensic._remember(p, a, 0, 180.0) == ("R1", 60.0)
    assert forensic._remember(p, b, 0, 240.0) == ("R1", 120.0)


S = CounterSettings()  # max flow 1000 m³/h, margin 1.5, deadband 0.5; across gaps rate × 3 up to 1 h


@pytest.mark.parametrize(
    ("prev", "cur", "dt", "rate", "kind"),
    [
        (20_000.0, 25_000.0, 720, 25.0, StepKind.JUMP),  # +25 % across 12 min: far beyond 25 m³/h × 12 min
        (20_000.0, 20_005.0, 720, 25.0, StepKind.GAP),  # what the meter passes: unknown, not judged
        (20_000.0, 20_016.0, 720, 25.0, StepKind.JUMP),  # over 3 × the rate either side
        (20_000.0, 20_016.0, 720, None, StepKind.GAP),  # no rate known: only max flow judges it
        (20_000.0, 21_000.0, 7200, 25.0, StepKind.GAP),  # beyond gap_rate_within: only max flow
        (20_000.0, 24_000.0, 7200, 25.0, StepKind.JUMP),  # above 1000 m³/h × 2 h × 1.5
    ],
)
def test_a_step_across_a_gap_is_judged_by_max_flow_and_the_meters_rate(prev, cur, dt, rate, kind):
    gap = GapCheck(rate, S.gap_rate_margin, S.gap_rate_within.total_seconds())
    assert classify_step(prev, cur, dt, 600.0, CounterPlan(S), gap).kind is kind


def test_without_a_gap_check_a_step_across_a_gap_is_unknown_volume():
    step = classify_step(20_000.0, 25_000.0, 720, 600.0, CounterPlan(S))
    assert step.kind is StepKind.GAP and step.volume_m3 is None


def _rates(sp, meter, rates):
    for i, r in enumerate(rates):
        observe_reading(sp, meter, 60.0 * i, float(r), None)


def test_a_noise_free_curve_is_too_smooth_and_a_real_meters_jitter_is_not():
    rng = np.random.default_rng(6)
    curve = np.round(50.0 + 20.0 * np.sin(np.arange(120) / 200.0), 3)  # a computed load curve
    noisy = np.round(curve * (1 + rng.normal(0, 0.002, 120)), 3)  # the same with 0.2 % repeatability
    sp = SitePrints(PLAN)
    _rates(sp, "R1", curve)
    _rates(sp, "E1", noisy)
    f = smooth_finding(sp, 60.0 * 119)
    assert f.condition is Condition.ACTIVE and f.meters == ("R1",)
    ev = f.evidence["smooth"]["R1"]
    assert ev["median_jitter_pct"] < ev["floor_pct"] == 0.02 and ev["readings"] == 60


def test_a_coarse_meter_holding_its_value_is_not_judged_smooth():
    sp = SitePrints(PLAN)
    _rates(sp, "R1", [50.0] * 100 + [51.0] * 20)  # integer resolution at a steady flow
    assert smooth_finding(sp, 60.0 * 119).condition is Condition.CLEAR


def test_a_trickle_below_the_meters_resolution_is_not_judged_smooth_the_same_curve_at_full_flow_is():
    ramp = np.concatenate([np.full(30, 0.099), np.linspace(0.099, 0.2, 90)])
    sp = SitePrints(PLAN)
    _rates(sp, "R3", np.round(ramp, 3))  # a small share of a low-flow site: one 0.001 m³/h step is 1 % of it
    assert smooth_finding(sp, 60.0 * 119).condition is Condition.CLEAR
    _rates(sp, "R1", np.round(ramp * 500.0, 3))  # the same curve where a 0.001 m³/h display can show jitter
    f = smooth_finding(sp, 60.0 * 119)
    assert f.meters == ("R1",) and f.evidence["smooth"]["R1"]["resolution_m3h"] <= 0.01


def test_a_stop_clears_the_smoothness_record():
    sp = SitePrints(PLAN)
    _rates(sp, "R1", np.round(50.0 + np.arange(120) * 0.01, 3))
    assert smooth_finding(sp, 60.0 * 119).condition is Condition.ACTIVE
    observe_reading(sp, "R1", 60.0 * 120, 0.0, None)
    assert smooth_finding(sp, 60.0 * 120).condition is Condition.CLEAR


def _hours(sp, deficits_pct, start=0.0):
    for i, d in enumerate(deficits_pct):
        e = 100.0
        note_hour(sp, start + 3600.0 * (i + 1), e, e * (1 - d / 100.0), complete=True)


def test_hours_balancing_exactly_are_implausible_and_honest_meters_are_not():
    sp = SitePrints(PLAN)  # 12 hours, median below 0.01 %
    _hours(sp, [0.6] + [0.0, 0.002, -0.003] * 4)  # one hour half measured, then reinjection computed
    f = exact_finding(sp, 13 * 3600.0)
    assert f.condition is Condition.ACTIVE
    assert f.evidence["hours"] == 12 and f.evidence["median_hourly_deficit_pct"] < 0.01
    honest = SitePrints(PLAN)
    _hours(honest, [0.3, 0.1, -0.2, 0.25, 0.05, 0.4, -0.1, 0.2, 0.15, 0.3, 0.12, 0.2])  # bias + noise
    assert exact_finding(honest, 12 * 3600.0).condition is Condition.CLEAR


def test_whole_m3_totalizers_agreeing_to_the_m3_are_not_judged_exact_fine_ones_are():
    def site(decimals: int) -> SitePrints:
        sp = SitePrints(PLAN)
        for i in range(60):  # a minute's step each: 40 m³/h on both sides, totals shown to `decimals`
            for meter in ("E1", "R1"):
                observe_reading(sp, meter, 60.0 * i, 40.0, round(1000.0 + 40.0 * i / 60.0, decimals))
        _hours(sp, [0.0] * 12)  # the hours as those totals show them: E − R = 0 m³ each
        return sp
    assert exact_finding(site(0), 12 * 3600.0).condition is Condition.CLEAR  # 1 m³ + 1 m³ > 0.1 % of 100 m³
    assert exact_finding(site(3), 12 * 3600.0).condition is Condition.ACTIVE


def test_an_hour_not_judged_restarts_the_exact_balance_run():
    sp = SitePrints(PLAN)
    _hours(sp, [0.0] * 11)
    note_hour(sp, 12 * 3600.0, 2.0, 2.0, complete=True)  # too little extracted: not judged
    _hours(sp, [0.0] * 11, start=12 * 3600.0)
    assert exact_finding(sp, 23 * 3600.0).condition is Condition.CLEAR
    _hours(sp, [0.0], start=23 * 3600.0)
    assert exact_finding(sp, 24 * 3600.0).condition is Condition.ACTIVE
    assert exact_finding(sp, 27 * 3600.0).condition is Condition.CLEAR  # no judged hour since: stale
