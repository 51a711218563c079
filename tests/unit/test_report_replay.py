"""A simulated day's report equals the physics' truth (within the meters' bias), the meters' own totals at
midnight, and the engine's 24 h balance after replaying the same readings."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
import yaml

from gshp.config import parse_config
from rules.engine import Engine
from rules.replay import readings_from_frame, replay
from rules.report import compute_daily_report, day_bounds
from simulators.physics import Load, pump_flow
from simulators.scenarios import EPOCH, SCENARIOS, _meters, build


def _truth(name: str, load: Load, lag_min: int, discharge: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Per-minute true extraction and reinjection (m³/h) of a scenario, drawn from the same seed."""
    sc = SCENARIOS[name]
    rng = np.random.default_rng(sc.seed)
    _meters(rng)  # the scenario draws its meters first
    minutes = round(sc.days * 1440)
    q = pump_flow(EPOCH.timestamp(), minutes, load, rng)
    arriving = np.concatenate([np.zeros(lag_min), q[: minutes - lag_min]])
    d = np.zeros(minutes) if discharge is None else discharge
    return q, arriving * (1.0 - d)


def _day_slice(start_s: float, end_s: float) -> slice:
    i0 = round((start_s - EPOCH.timestamp()) / 60)
    return slice(i0, i0 + round((end_s - start_s) / 60))


# EPOCH is 05-05 00:00 at UTC+8; discharge-20 sends 20 % to a drain from 05-06 07:31
@pytest.mark.parametrize(("name", "day"), [("honest-daynight-0", date(2026, 5, 7)),
                                           ("discharge-20", date(2026, 5, 6))])
def test_a_simulated_day_matches_the_physics_the_totals_and_the_replayed_balance(name: str, day: date) -> None:
    data = build(name)
    config = parse_config(yaml.safe_dump(data.config(), allow_unicode=True))
    readings = readings_from_frame(data.readings)
    report = compute_daily_report(day, config.tz, config.sites, config.rules, readings, [])
    site = report.sites[0]
    start, end = day_bounds(day, config.tz)
    assert site.complete

    # 1. the meters' own totals at the two midnights (readings fall on the minute): exact
    df = data.readings

    def delta(meter: str) -> float:
        m = df[df["meter"] == meter].set_index("ts")["total_m3"]
        return float(m[int(end.timestamp())] - m[int(start.timestamp())])

    assert site.extracted_m3 == pytest.approx(delta("E1") + delta("E2"), abs=1e-6)
    assert site.reinjected_m3 == pytest.approx(delta("R1") + delta("R2"), abs=1e-6)

    # 2. the engine's 24 h balance after replaying the readings up to midnight: the same volumes
    engine = Engine(config.sites, config.rules, config.tz)
    for _ in replay(engine, readings_from_frame(df[df["ts"] <= end.timestamp()])):
        pass
    bal = engine.balance(site.site, timedelta(hours=24))
    assert bal is not None and bal["complete"] and bal["end"] == end.isoformat()
    assert bal["extracted_m3"] == pytest.approx(site.extracted_m3, abs=1e-3)
    assert bal["reinjected_m3"] == pytest.approx(site.reinjected_m3, abs=1e-3)

    # 3. the physics' truth: within the meters' bias (±0.5 %) and noise
    discharge = None
    if data.onset is not None:
        discharge = np.zeros(round(SCENARIOS[name].days * 1440))
        discharge[round((data.onset.timestamp() - EPOCH.timestamp()) / 60):] = 0.20
    q, reinjected = _truth(name, Load(), 4 if discharge is None else 5, discharge)
    span = _day_slice(start.timestamp(), end.timestamp())
    true_e, true_r = float(q[span].sum() / 60.0), float(reinjected[span].sum() / 60.0)
    assert site.extracted_m3 == pytest.approx(true_e, rel=0.01)
    assert site.reinjected_m3 == pytest.approx(true_r, rel=0.01)
    expected_pct = 100.0 * (true_e - true_r) / true_e
    assert site.deficit_pct == pytest.approx(expected_pct, abs=1.0)
    print(f"{name} {day}: report E={site.extracted_m3:.2f} R={site.reinjected_m3:.2f} "
          f"D%={site.deficit_pct:.2f}; engine E={bal['extracted_m3']} R={bal['reinjected_m3']}; "
          f"truth E={true_e:.2f} R={true_r:.2f} D%={expected_pct:.2f}")
