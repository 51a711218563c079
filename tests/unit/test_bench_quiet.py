"""The data-quality noise bench: what it counts on a replayed honest site, and the rates it reports."""

import pytest

from bench.quiet import Noise, rows, run_scenario


def test_rates_are_per_100_and_per_10_site_days_over_every_site():
    r = rows([Noise("a", 6.0, 2, 1, 3), Noise("b", 4.0, 1, 0, 1)])
    assert [x.figure for x in r] == [pytest.approx(30.0), pytest.approx(1.0), pytest.approx(40.0)]
    assert "10 nuisance-heavy site-days" in r[0].what


def test_short_dtu_outages_fire_alerts_and_open_no_incident_a_meter_replacement_opens_one():
    n = run_scenario("honest-gap-one-0")  # one reinjection meter silent 25 min, twice
    assert n.days == 6.0
    assert n.dq_incidents == 0 and n.dq_firing == 4  # meter_offline and reinjection_silent, twice
    nuisance = run_scenario("honest-nuisance-0")  # a 30-min DTU gap, then R1 replaced (its total from 0)
    assert nuisance.dq_incidents == 1 and nuisance.dq_firing >= 3
    assert run_scenario("honest-daynight-0").dq_incidents == 0
