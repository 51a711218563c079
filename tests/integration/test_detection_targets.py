"""The detection targets, measured by replaying a representative part of the scenario set with the default
rules: every fault scenario, one honest site of each hand-made kind and one fleet site of each load kind
(shortened). `python -m bench.detection` replays the whole set, 2 000 honest fleet site-days included."""

import pytest

from bench.detection import run_all
from simulators.scenarios import SCENARIOS, fleet_names, honest_names

HOUR = 3600
TARGETS = {  # scenario → the longest delay allowed (the scenario's truth holds the same numbers)
    "discharge-20": 45 * 60, "discharge-40": 45 * 60, "discharge-60": 45 * 60,
    "discharge-night-25": 2 * HOUR, "discharge-5": 6 * HOUR, "discharge-3": 24 * HOUR,
    "discharge-2": 36 * HOUR, "discharge-1.5": 5 * 24 * HOUR, "discharge-8-from-start": 24 * HOUR,
    "ramp-12": round(21 * 24 * HOUR * 5 / 12), "replacement-cover-3": 48 * HOUR, "weekend-night-30": 30 * 60,
    "unplugged-reinjection": 20 * 60, "frozen-reinjection": 60 * 60, "reversed-reinjection": 30 * 60,
    "backwash-over-cap": 2 * HOUR,
    "replayed-reinjection": 2 * 3600, "rescaled-across-gap": 30 * 60, "synthetic-reinjection": 2 * 3600,
    "computed-reinjection": 16 * 3600,
    "sealed-pumping": 15 * 60, "over-rate": 30 * 60, "quota-projection": 30 * 60,
}
HONEST = [n for n in honest_names() if n.endswith("-0") or n == "backwash-under-cap"]
FLEET = fleet_names()[:6]  # one of each load kind: day/night, shutdown, night cycles, low flow, weekend, season
FLEET_DAYS = 6.0


@pytest.fixture(scope="module")
def outcomes():
    names = [*TARGETS, *HONEST, *FLEET]
    days = [None] * (len(TARGETS) + len(HONEST)) + [FLEET_DAYS] * len(FLEET)
    return {o.name: o for o in run_all(names, jobs=2, days=days)}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fault_is_detected_within_its_target(outcomes, name):
    o = outcomes[name]
    assert o.within_s == TARGETS[name]
    assert o.delay_s is not None, f"{name}: no {o.expect_kind} alert fired"
    assert o.delay_s <= TARGETS[name], f"{name}: first alert after {o.delay_s / 60:.0f} min"
    assert o.false_discharge == 0


def test_the_ramp_is_caught_before_it_passes_five_percent(outcomes):
    o = outcomes["ramp-12"]  # onset at day 2, 12 % reached 21 days later
    assert o.delay_s is not None and 12.0 * o.delay_s / (21 * 24 * HOUR) < 5.0


def test_no_discharge_alert_on_the_honest_sites_with_every_nuisance(outcomes):
    honest = [o for o in outcomes.values() if o.expect_kind == "none"]
    assert {o.name for o in honest} == {*HONEST, *FLEET}
    assert sum(o.days for o in honest) >= 80
    assert {n: o.false_discharge for n, o in outcomes.items() if o.false_discharge} == {}


def test_stop_start_sites_do_not_flicker_pending_balance_alerts(outcomes):
    honest = [o for o in outcomes.values() if o.expect_kind == "none"]
    days = sum(o.days for o in honest)
    assert sum(o.false_pending for o in honest) <= days / 10


def test_nuisances_surface_as_data_quality_alerts(outcomes):
    # meter replacements and DTU outages must be visible, just not as discharge
    for name in ("honest-replacement-0", "honest-gap-all-0", "honest-gap-one-0"):
        assert outcomes[name].dq_alerts > 0, name


def test_every_pattern_named_is_in_the_scenario_set():
    assert set(TARGETS) <= set(SCENARIOS)
    assert len(fleet_names()) * SCENARIOS[fleet_names()[0]].days >= 2000
