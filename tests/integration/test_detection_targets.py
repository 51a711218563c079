"""The detection targets, measured by replaying the whole scenario set with the default rules."""

import pytest

from bench.detection import run_all
from simulators.scenarios import SCENARIOS

TARGETS = {  # scenario → the longest delay allowed (the scenario's truth holds the same numbers)
    "discharge-20": 45 * 60, "discharge-40": 45 * 60, "discharge-60": 45 * 60,
    "discharge-night-25": 2 * 3600, "discharge-5": 6 * 3600, "discharge-3": 24 * 3600,
    "unplugged-reinjection": 20 * 60, "frozen-reinjection": 60 * 60, "reversed-reinjection": 30 * 60,
    "replayed-reinjection": 2 * 3600, "rescaled-across-gap": 30 * 60, "synthetic-reinjection": 2 * 3600,
    "computed-reinjection": 16 * 3600,
    "sealed-pumping": 15 * 60, "over-rate": 30 * 60, "quota-projection": 30 * 60,
}


@pytest.fixture(scope="module")
def outcomes():
    return {o.name: o for o in run_all(list(SCENARIOS), jobs=2)}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fault_is_detected_within_its_target(outcomes, name):
    o = outcomes[name]
    assert o.within_s == TARGETS[name]
    assert o.delay_s is not None, f"{name}: no {o.expect_kind} alert fired"
    assert o.delay_s <= TARGETS[name], f"{name}: first alert after {o.delay_s / 60:.0f} min"
    assert o.false_discharge == 0


def test_no_discharge_alert_over_at_least_90_honest_site_days(outcomes):
    honest = [o for o in outcomes.values() if o.expect_kind == "none"]
    assert sum(o.days for o in honest) >= 90
    assert {n: o.false_discharge for n, o in outcomes.items() if o.false_discharge} == {}


def test_nuisances_surface_as_data_quality_alerts(outcomes):
    # meter replacements and DTU outages must be visible, just not as discharge
    for name in ("honest-replacement-0", "honest-gap-all-0", "honest-gap-one-0"):
        assert outcomes[name].dq_alerts > 0, name


def test_backwash_beyond_its_declared_cap_alerts(outcomes):
    assert outcomes["backwash-over-cap"].ok
