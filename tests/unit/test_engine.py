import threading
from datetime import UTC, timedelta

import pandas as pd
import pytest

from collector.model import Reading, Role, Site
from rules.engine import Engine
from rules.settings import MaintenanceWindow, RulesSettings
from rules.store import AlertStore
from tests.unit.conftest import T0, flow, run


def _rules(events, kind="discharge", state="firing"):
    return {e.rule for e in events if e.kind.value == kind and e.state == state}


def test_balanced_site_raises_no_discharge_alert(engine):
    events = run(engine, list(flow(240)), T0 + timedelta(hours=4))
    assert not [e for e in events if e.kind.value == "discharge"]


def test_gross_discharge_fires_the_short_window_with_its_evidence(engine):
    events = run(engine, list(flow(90, r_m3h=90.0)), T0 + timedelta(minutes=90))
    fired = [e for e in events if e.rule == "balance_gross" and e.state == "firing"]
    assert fired, events
    ev = fired[0].evidence
    assert ev["window"] == "15m"
    assert ev["deficit_pct"] == 25.0
    assert ev["extracted_m3"] == 30.0 and ev["reinjected_m3"] == 22.5
    assert fired[0].summary.startswith("向阳荷花广场 近15分钟抽水30.0 m³")


def test_redelivered_readings_are_not_double_counted(engine, site):
    readings = list(flow(60))
    doubled = readings + [Reading(r.site, r.meter, r.role, r.ts, r.rate_m3h, r.total_m3) for r in readings]
    events = run(engine, doubled, T0 + timedelta(hours=1))
    assert engine.stats.duplicates == len(readings)
    assert not _rules(events)


def test_a_gap_suppresses_balance_instead_of_producing_a_verdict(engine):
    # reinjection meter silent for 30 min while extraction continues: R volume unknown, not zero
    readings = [r for r in flow(120) if not (r.meter == "R1" and T0 + timedelta(minutes=40) < r.ts
                                             < T0 + timedelta(minutes=70))]
    events = run(engine, readings, T0 + timedelta(hours=2))
    assert not _rules(events)
    assert "reinjection_silent" in _rules(events, "data_quality")


def test_meter_reset_counts_no_negative_volume_and_is_reported(engine):
    readings = []
    for r in flow(120):
        if r.meter == "R1" and r.ts >= T0 + timedelta(minutes=60):
            r = Reading(r.site, r.meter, r.role, r.ts, r.rate_m3h, round(r.total_m3 - 2120.0 + 0.0, 4))
        readings.append(r)
    events = run(engine, readings, T0 + timedelta(hours=2))
    assert "totalizer_reset" in _rules(events, "data_quality")
    assert not _rules(events)


def test_backfill_from_a_dataframe_fills_windows_without_evaluating(site):
    engine = Engine([site], RulesSettings(), UTC)
    rows = [{"ts": r.ts, "site": r.site, "meter": r.meter, "rate_m3h": r.rate_m3h, "total_m3": r.total_m3}
            for r in flow(60, r_m3h=60.0)]
    assert engine.backfill(pd.DataFrame(rows[::-1])) == len(rows)
    events = engine.evaluate(T0 + timedelta(minutes=60))
    assert any(e.rule == "balance_gross" and e.state == "pending" for e in events)


def test_ingest_is_thread_safe(site):
    engine = Engine([site], RulesSettings(), UTC)
    readings = list(flow(600))
    e = [r for r in readings if r.meter == "E1"]
    r_ = [r for r in readings if r.meter == "R1"]
    threads = [threading.Thread(target=engine.ingest, args=(part,)) for part in (e, r_)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.stats.readings == len(readings) and engine.stats.late == 0
    assert not [x for x in engine.evaluate(T0 + timedelta(minutes=600)) if x.kind.value == "discharge"]


def test_restart_neither_renotifies_nor_forgets(site, tmp_path):
    path = tmp_path / "alerts.sqlite"
    readings = list(flow(180, r_m3h=80.0))
    first = Engine([site], RulesSettings(), UTC, AlertStore(path))
    cut = T0 + timedelta(minutes=90)
    before = run(first, [r for r in readings if r.ts <= cut], cut)
    assert "balance_gross" in _rules(before)
    first.store.close()
    second = Engine([site], RulesSettings(), UTC, AlertStore(path))
    assert second.alert_states("hehua")["balance_gross"].value == "firing"
    later = [r for r in readings if r.ts > T0 + timedelta(minutes=60)]
    after = run(second, later, T0 + timedelta(minutes=180))
    assert "balance_gross" not in _rules(after)


def _maintained(site, declared: str, cap: float, reason: str = "回扬 R1") -> Engine:
    """An engine whose site declares backwashing over the whole test (08:00–10:00 local): in the config,
    or at run time as the API does (`declare_maintenance`)."""
    window = {"from": "2026-05-05T08:00:00+08:00", "to": "2026-05-05T10:00:00+08:00", "reason": reason,
              "volume_cap_m3": cap}
    if declared == "config":
        return Engine([site], RulesSettings.model_validate({"sites": {"hehua": {"maintenance": [window]}}}), UTC)
    engine = Engine([site], RulesSettings(), UTC)
    engine.declare_maintenance("hehua", MaintenanceWindow.model_validate(window))
    return engine


@pytest.mark.parametrize("declared", ["config", "api"])
def test_declared_maintenance_under_its_cap_does_not_alert_and_stays_listed(site, declared):
    readings = list(flow(120, r_m3h=60.0))  # 50 % of the water drained: 15 m³ per 15 min, 60 m³ per hour
    undeclared = run(Engine([site], RulesSettings(), UTC), readings, T0 + timedelta(hours=2))
    assert _rules(undeclared) == {"balance_gross", "balance_hour"}, "without the declaration this is discharge"
    engine = _maintained(site, declared, cap=200)
    events = run(engine, readings, T0 + timedelta(hours=2))
    assert not [e for e in events if e.kind.value == "discharge"]
    assert [(m.reason, m.volume_cap_m3) for m in engine.maintenance("hehua")] == [("回扬 R1", 200)]


@pytest.mark.parametrize("declared", ["config", "api"])
def test_deficit_beyond_the_maintenance_cap_alerts(site, declared):
    engine = _maintained(site, declared, cap=5, reason="回扬")
    events = run(engine, list(flow(120, r_m3h=60.0)), T0 + timedelta(hours=2))
    firing = {e.rule: e for e in events if e.kind.value == "discharge" and e.state == "firing"}
    assert set(firing) == {"balance_gross", "balance_hour"}
    listed = [{"from": "2026-05-05T08:00:00+08:00", "to": "2026-05-05T10:00:00+08:00", "reason": "回扬",
               "volume_cap_m3": 5.0}]
    gross = firing["balance_gross"].evidence
    assert (gross["window"], gross["extracted_m3"], gross["reinjected_m3"], gross["deficit_m3"]) == \
        ("15m", 30.0, 15.0, 15.0)
    # the cap is taken off the deficit before the threshold: (15 − 5) / 30 = 33.33 % > 12 %
    assert (gross["maintenance_allowance_m3"], gross["excess_pct"], gross["threshold_pct"]) == (5.0, 33.33, 12.0)
    assert gross["maintenance"] == listed
    hour = firing["balance_hour"].evidence
    assert (hour["window"], hour["deficit_m3"], hour["maintenance_allowance_m3"]) == ("1h", 60.0, 5.0)
    assert hour["maintenance"] == listed


def test_discharge_role_meter_showing_flow_raises_a_discharge_alert(site):
    engine = Engine([site], RulesSettings(), UTC)
    readings = list(flow(60, meters=("E1", "R1")))
    readings += [Reading("hehua", "D1", Role.DISCHARGE, T0 + timedelta(minutes=i), 12.0, 0.2 * i)
                 for i in range(61)]
    events = run(engine, readings, T0 + timedelta(hours=1))
    assert "discharge_flow" in _rules(events)


def test_seasonal_swap_inside_a_window_gives_no_balance_verdict():
    from collector.model import Site
    swap_site = Site.model_validate({"id": "hehua", "name": "站", "district": "宛城区", "meters": [
        {"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"},
        {"id": "W3", "role": "reinjection",
         "roles": [{"role": "extraction", "from": "05-06", "to": "09-30"}]}]})
    engine = Engine([swap_site], RulesSettings(), UTC)
    start = T0 + timedelta(hours=23)  # the swap happens at 00:00 UTC on 05-06
    readings = list(flow(120, start=start))
    readings += [Reading("hehua", "W3", Role.REINJECTION, start + timedelta(minutes=i), 50.0, 50.0 * i / 60)
                 for i in range(121)]
    events = run(engine, readings, start + timedelta(minutes=50))
    assert not _rules(events)
    assert engine._sites["hehua"].meters["W3"].track.role is Role.REINJECTION
    assert [[ms.meter.id for ms in side] for side in engine._sides(engine._sites["hehua"])] == [["E1"], ["R1", "W3"]]
    engine.evaluate(start + timedelta(minutes=65))
    assert engine._sites["hehua"].meters["W3"].track.role is Role.EXTRACTION
    assert [[ms.meter.id for ms in side] for side in engine._sides(engine._sites["hehua"])] == [["E1", "W3"], ["R1"]]


def test_backfilled_history_teaches_the_sequential_baseline_at_the_first_evaluation(site):
    engine = Engine([site], RulesSettings(), UTC)
    engine.backfill(list(flow(20 * 60, r_m3h=119.0)))  # 20 h, reinjection meter reads 0.83 % low
    engine.evaluate(T0 + timedelta(hours=20))
    cusum = engine._sites["hehua"].cusum
    assert cusum.n >= 12
    assert abs(cusum.baseline_pct - 100 / 120) < 0.05


def _rescaled_r1(readings, at, factor):
    """R1's totalizer after `at` as a meter shows it when its multiplier grows by `factor` without
    rescaling the count: the total so far times `factor`, plus the water since."""
    base = next(r.total_m3 for r in readings if r.meter == "R1" and r.ts >= at)
    out = []
    for r in readings:
        if r.meter == "R1" and r.ts >= at:
            r = Reading(r.site, r.meter, r.role, r.ts, r.rate_m3h, round(base * factor + r.total_m3 - base, 4))
        out.append(r)
    return out


def _change(kind, field, old, new, at, meter="R1"):
    from collector.model import ChangeKind, MeterChange
    return MeterChange("hehua", meter, at, ChangeKind(kind), field, old, new)


def test_a_tenfold_multiplier_change_is_no_volume_jump_and_raises_meter_changed(engine):
    at = T0 + timedelta(minutes=60)
    readings = _rescaled_r1(list(flow(120)), at, 10.0)
    change = _change("multiplier_changed", "total_multiplier", 3, 4, at - timedelta(seconds=1))
    events = run(engine, readings, T0 + timedelta(hours=2), [change])
    assert not _rules(events)  # no discharge: the ×10 step is neither volume nor missing volume
    assert "totalizer_reset" not in _rules(events, "data_quality")  # nor a reset
    fired = [e for e in events if e.rule == "meter_changed" and e.state == "firing"]
    assert len(fired) == 1
    assert fired[0].kind.value == "data_quality" and fired[0].severity.value == "high"
    ev = fired[0].evidence
    assert (ev["meter"], ev["field"], ev["old"], ev["new"]) == ("R1", "total_multiplier", 3, 4)
    assert ev["changes"][0]["bridged_m3"] == 2.0  # one minute at 120 m³/h, from the rate
    assert ev["changes"][0]["at"] == "2026-05-05T00:59:59+00:00"
    assert fired[0].summary == "向阳荷花广场 流量计被更换或设置被改动：R1 累积倍率（total_multiplier）3 → 4"
    # the windows across the change are complete and balanced: 120 m³ each side in the last hour
    b = engine.balance("hehua", timedelta(hours=2))
    assert b["complete"] and abs(b["deficit_m3"]) < 1e-6 and b["extracted_m3"] == 240.0


def test_without_the_change_the_same_step_is_rejected_as_a_jump(engine):
    # the control for the test above: the rebase is what keeps the windows whole
    at = T0 + timedelta(minutes=60)
    events = run(engine, _rescaled_r1(list(flow(120)), at, 10.0), T0 + timedelta(hours=2))
    assert "totalizer_reset" in _rules(events, "data_quality")
    assert not engine.balance("hehua", timedelta(hours=2))["complete"]


def test_a_swapped_meter_restarts_its_counter_and_the_baseline_without_a_reset(engine):
    at = T0 + timedelta(minutes=60)
    readings = []
    for r in flow(120):
        if r.meter == "R1" and r.ts >= at:  # the new meter counts from 0.5 m³
            r = Reading(r.site, r.meter, r.role, r.ts, r.rate_m3h, round(r.total_m3 - 2120.0 + 0.5, 4))
        readings.append(r)
    change = _change("serial_changed", "serial_number", 20240001, 99887766, at - timedelta(seconds=5))
    events = run(engine, readings, T0 + timedelta(hours=2), [change])
    assert not _rules(events)
    assert "totalizer_reset" not in _rules(events, "data_quality")
    assert "meter_changed" in _rules(events, "data_quality")
    assert engine._sites["hehua"].meters["R1"].track.events == 1  # the sequential baseline relearns
    assert engine.balance("hehua", timedelta(hours=2))["complete"]


def test_a_scale_factor_change_is_reported_but_does_not_rebase_the_counter(engine):
    at = T0 + timedelta(minutes=30)
    change = _change("scale_changed", "scale_factor", 1.0, 0.8, at)
    events = run(engine, list(flow(60)), T0 + timedelta(hours=1), [change])
    fired = [e for e in events if e.rule == "meter_changed" and e.state == "firing"]
    assert fired and "bridged_m3" not in fired[0].evidence["changes"][0]
    assert engine._sites["hehua"].meters["R1"].track.events == 0


def test_meter_changed_resolves_after_its_quiet_time(site):
    from rules.settings import Language
    settings = RulesSettings.model_validate({"quality": {"change_hold": "30m"}})
    engine = Engine([site], settings, UTC, language=Language.EN)
    change = _change("unit_changed", "totalizer_unit", 0, 1, T0 + timedelta(minutes=10), meter="E1")
    events = run(engine, list(flow(120)), T0 + timedelta(hours=2), [change])
    states = [(e.state, e.at - T0) for e in events if e.rule == "meter_changed"]
    assert [s for s, _ in states] == ["firing", "resolved"]
    # active for the 30 min quiet time, then clear for `clear_for` (10 min) before it resolves
    assert states[1][1] - states[0][1] >= timedelta(minutes=40)
    firing = next(e for e in events if e.rule == "meter_changed")
    assert firing.summary == ("向阳荷花广场: meter swapped or its settings changed — "
                              "E1 unit (totalizer_unit) 0 → 1")


def test_a_change_of_an_unknown_meter_is_counted_and_ignored(engine):
    engine.note_changes([_change("serial_changed", "serial_number", 1, 2, T0, meter="X9")])
    assert engine.stats.unknown == 1 and engine.stats.changes == 0


def test_after_a_restart_a_meter_silent_in_the_backfilled_history_is_offline_at_once(site):
    # R1 stopped 30 min before the restart: its history says so, the start-up grace must not hide it
    history = [r for r in flow(60, meters=("E1", "R1", "D1")) if r.meter != "R1" or r.ts <= T0 + timedelta(minutes=30)]
    engine = Engine([site], RulesSettings(), UTC)
    engine.backfill(history)
    events = engine.evaluate(T0 + timedelta(minutes=60))
    assert any(e.rule == "meter_offline" and e.state in ("pending", "firing") for e in events), events


def test_a_meter_never_seen_since_start_has_the_start_up_grace(site):
    engine = Engine([site], RulesSettings(), UTC)
    engine.backfill(list(flow(60, meters=("E1", "D1"))))  # R1 has no history: unknown, not yet offline
    assert not [e for e in engine.evaluate(T0 + timedelta(minutes=60)) if e.rule == "meter_offline"]


def test_a_meter_silent_and_back_while_the_store_failed_is_still_reported_after(site, tmp_path):
    """Data quality is noted at each held step, so the catch-up sees a silence that began and ended while
    the alert store could not be written (a full disk), exactly as a run without the fault does."""
    def silent_R1(fail: bool) -> list[tuple[str, str]]:
        store = AlertStore(tmp_path / f"alerts-{fail}.sqlite")
        engine = Engine([site], RulesSettings(), UTC, store=store)
        readings = [r for r in flow(121) if r.meter == "E1" or not 70 <= (r.ts - T0).total_seconds() / 60 < 100]
        seen: list[tuple[str, str]] = []
        t, i = T0, 0
        while t <= T0 + timedelta(minutes=121):
            while i < len(readings) and readings[i].ts <= t:
                engine.ingest([readings[i]])
                i += 1
            full = fail and 65 <= (t - T0).total_seconds() / 60 < 105  # the disk is full from 65 to 105
            store._db.execute(f"PRAGMA query_only={'ON' if full else 'OFF'}")
            seen += [(a.rule, a.state.value) for a in engine.step(t).alerts]
            t += timedelta(minutes=1)
        store.close()
        return seen

    fault_free, held = silent_R1(False), silent_R1(True)
    assert {("meter_offline", "firing"), ("reinjection_silent", "firing")} <= set(fault_free)
    assert held == fault_free  # the same transitions, in order, though R1 was back before the disk was


def test_volumes_since_a_time_sum_the_ledger_from_there_to_the_end_of_complete_data(engine):
    run(engine, list(flow(120, r_m3h=90.0)), T0 + timedelta(hours=2))
    v = engine.volumes_since("hehua", T0 + timedelta(hours=1))
    assert (v["extracted_m3"], v["reinjected_m3"], v["drained_m3"], v["drained_pct"]) == (120.0, 90.0, 30.0, 25.0)
    assert v["complete"] and v["from"] == "2026-05-05T01:00:00+00:00" and v["as_of"] == "2026-05-05T02:00:00+00:00"
    later = engine.volumes_since("hehua", T0 + timedelta(hours=3))  # nothing complete since then: 0 as of then
    assert (later["drained_m3"], later["complete"], later["as_of"]) == (0.0, True, "2026-05-05T03:00:00+00:00")
    older = engine.volumes_since("hehua", T0 - timedelta(days=3))  # before the ledgers keep: flagged
    assert not older["complete"] and older["drained_m3"] == 60.0


def _outage(meter, minutes, reset=False, store=None, restart_at=None):
    """`meter` of a site with E1 and R1 silent from minute 40 for `minutes` (back from 0 when `reset`); every
    alert and incident notice of a step per minute over two and a half hours. With `store` (a path) and
    `restart_at` (a minute), the engine restarts then on that alert store, back-filled like the service's."""
    site = Site.model_validate({"id": "hehua", "name": "向阳荷花广场", "district": "宛城区",
                                "meters": [{"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}]})
    engine = Engine([site], RulesSettings(), UTC, None if store is None else AlertStore(store))
    back = T0 + timedelta(minutes=40 + minutes)
    readings = []
    for r in flow(150):
        if r.meter == meter and T0 + timedelta(minutes=40) < r.ts < back:
            continue
        if reset and r.meter == meter and r.ts >= back:
            r = Reading(r.site, r.meter, r.role, r.ts, r.rate_m3h, round(r.total_m3 - 1000.0 - 80.0, 4))
        readings.append(r)
    alerts, notices, i = [], [], 0
    for k in range(151):
        t = T0 + timedelta(minutes=k)
        if k == restart_at:
            engine.store.close()
            engine = Engine([site], RulesSettings(), UTC, AlertStore(store))
            engine.backfill(readings[:i])
        while i < len(readings) and readings[i].ts <= t:
            engine.ingest([readings[i]])
            i += 1
        step = engine.step(t)
        alerts += step.alerts
        notices += step.notices
    return alerts, notices


def test_a_gap_shorter_than_offline_after_raises_no_data_quality_alert_not_even_pending():
    alerts, notices = _outage("R1", 14)
    assert not [(a.rule, a.state.value) for a in alerts if a.kind.value == "data_quality"]
    assert not notices


def test_an_outage_back_within_outage_after_fires_its_alerts_and_opens_no_incident():
    alerts, notices = _outage("R1", 30)
    assert {("meter_offline", "firing"), ("reinjection_silent", "firing"), ("meter_offline", "resolved"),
            ("reinjection_silent", "resolved")} <= {(a.rule, a.state.value) for a in alerts}
    assert not notices


def test_a_silent_reinjection_meter_that_lasts_outage_after_is_one_incident_holding_both_alerts():
    alerts, notices = _outage("R1", 90)
    fired = min(a.at for a in alerts if a.rule == "meter_offline" and a.state.value == "firing")
    opened = [n for n in notices if n.change.value == "opened"]
    assert [n.incident.kind.value for n in opened] == ["evasion"]
    assert opened[0].at - fired == timedelta(hours=1)  # rules.incidents.outage_after
    assert opened[0].incident.first_firing_at == fired
    last = [n.incident for n in notices if n.incident.id == opened[0].incident.id][-1]
    assert {"meter_offline", "reinjection_silent"} <= set(last.rules) and last.state.value == "resolved"


def test_an_outage_waiting_for_outage_after_still_opens_its_incident_after_a_restart(tmp_path):
    _, notices = _outage("R1", 90, store=tmp_path / "alerts.sqlite", restart_at=80)  # fired at minute 56
    opened = [n for n in notices if n.change.value == "opened"]
    assert [(n.incident.kind.value, n.at - T0) for n in opened] == [("evasion", timedelta(minutes=116))]
    assert {"meter_offline", "reinjection_silent"} <= set(opened[0].incident.rules)


def test_a_replaced_meter_is_one_incident_the_reset_explains_the_gap():
    alerts, notices = _outage("E1", 20, reset=True)
    assert {("meter_offline", "firing"), ("totalizer_reset", "firing")} <= {(a.rule, a.state.value)
                                                                         for a in alerts}
    opened = [n.incident for n in notices if n.change.value == "opened"]
    assert len(opened) == 1
    last = [n.incident for n in notices if n.incident.id == opened[0].id][-1]
    assert {"meter_offline", "totalizer_reset"} <= set(last.rules) and last.state.value == "resolved"
