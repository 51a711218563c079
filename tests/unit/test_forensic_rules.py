"""The forensic rules in the engine, replayed over their scenarios: each is caught within its target as an
evasion incident an officer can read, and missed with its switch off."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import pytest
import yaml

from alerting.model import IncidentKind, IncidentNotice, Language
from collector.model import Reading
from gshp.config import parse_config
from rules.engine import Engine
from rules.replay import readings_from_frame, replay_steps
from rules.settings import RulesSettings
from simulators.scenarios import build
from tests.unit.conftest import T0, flow, run


def _run(name: str, rules: dict[str, Any] | None = None, language: Language = Language.EN
         ) -> tuple[float, list[Any], list[IncidentNotice]]:
    data = build(name)
    if rules is not None:
        data.rules = rules
    config = parse_config(yaml.safe_dump(data.config(), allow_unicode=True), f"<{name}>", env={})
    engine = Engine(config.sites, config.rules, config.tz, language=language)
    alerts, notices = [], []
    for step in replay_steps(engine, readings_from_frame(data.readings)):
        alerts.extend(step.alerts)
        notices.extend(step.notices)
    assert data.onset is not None
    return data.onset.timestamp(), alerts, notices


def _first_firing(alerts: list[Any], rule: str, onset: float) -> Any:
    return next((a for a in alerts if a.rule == rule and a.state.value == "firing"
                 and a.at.timestamp() >= onset), None)


def test_replayed_reinjection_fires_data_replayed_within_two_hours_as_evasion():
    onset, alerts, notices = _run("replayed-reinjection")
    a = _first_firing(alerts, "data_replayed", onset)
    assert a is not None and a.at.timestamp() - onset <= 2 * 3600
    assert a.kind.value == "data_quality"
    replays = a.evidence["replays"]
    assert replays and set(replays) <= {"R1", "R2"}  # the replayed meters, each repeating itself a day before
    assert all(r["copied_from"] == m and r["shift"] == "1d" for m, r in replays.items())
    m = next(iter(replays))
    assert f"{m} repeats {m} shifted by 1d" in a.summary
    opened = [n.incident for n in notices if n.change.value == "opened"]
    assert any(i.kind is IncidentKind.EVASION and "data_replayed" in i.rules for i in opened)


def test_replayed_reinjection_goes_unseen_with_the_rule_off():
    _, alerts, _ = _run("replayed-reinjection", {"forensic": {"replay": False}})
    assert not [a for a in alerts if a.rule == "data_replayed"]
    assert not [a for a in alerts if a.state.value == "firing"]


def test_a_rescale_across_a_short_gap_is_a_meter_change_within_30_minutes():
    onset, alerts, _ = _run("rescaled-across-gap", language=Language.ZH)
    a = _first_firing(alerts, "meter_changed", onset)
    assert a is not None and a.at.timestamp() - onset <= 30 * 60
    kinds = {c["meter"]: c["kind"] for c in a.evidence["changes"]}
    assert kinds == {"R1": "rescaled", "R2": "rescaled"}
    r1 = next(c for c in a.evidence["changes"] if c["meter"] == "R1")
    assert r1["new"] / r1["old"] == pytest.approx(1.25, abs=0.01)
    assert "累计流量断线后跳变" in a.summary


@pytest.mark.parametrize("rules", [{"counters": {"judge_gaps": False}}])
def test_a_rescale_across_a_short_gap_goes_unseen_without_judging_gaps(rules):
    _, alerts, _ = _run("rescaled-across-gap", rules)
    assert not [a for a in alerts if a.state.value == "firing" and a.rule in ("meter_changed", "totalizer_reset")]


def test_a_computed_reinjection_curve_fires_data_synthetic_within_two_hours():
    onset, alerts, _ = _run("synthetic-reinjection")
    a = _first_firing(alerts, "data_synthetic", onset)
    assert a is not None and a.at.timestamp() - onset <= 2 * 3600
    assert set(a.evidence["smooth"]) == {"R1", "R2"}
    assert "too smooth" in a.summary


def test_a_computed_reinjection_curve_goes_unseen_with_the_rule_off():
    _, alerts, _ = _run("synthetic-reinjection", {"forensic": {"smooth": False}})
    assert not [a for a in alerts if a.rule == "data_synthetic"]


def _gap_step(site, rate_before: float, rate_after: float, step_m3: float) -> set[str]:
    """R1 silent 12 minutes (E1 reporting on), back with its total `step_m3` on: the data-quality rules that
    fire."""
    engine = Engine([site], RulesSettings(), UTC)
    gap_from, gap_to = T0 + timedelta(minutes=60), T0 + timedelta(minutes=72)
    readings = []
    for r in flow(120, meters=("E1", "R1")):
        if r.meter == "R1":
            if gap_from <= r.ts < gap_to:
                continue
            rate = rate_before if r.ts < gap_from else rate_after
            total = 2000.0 + (r.ts - T0).total_seconds() / 3600 * 120.0 + (step_m3 if r.ts >= gap_to else 0.0)
            r = Reading(r.site, r.meter, r.role, r.ts, rate, round(total, 3))
        readings.append(r)
    events = run(engine, readings, T0 + timedelta(hours=2))
    return {e.rule for e in events if e.state == "firing" and e.kind.value == "data_quality"}


def test_a_step_across_a_gap_beyond_the_meters_rate_is_a_rescaled_meter(site):
    assert {"totalizer_reset", "meter_changed"} <= _gap_step(site, 120.0, 120.0, 100.0)  # 3 × 120 m³/h × 12 min = 72


def test_a_meter_stopped_on_both_sides_of_a_gap_is_judged_by_max_flow_alone(site):
    assert not _gap_step(site, 0.0, 0.0, 100.0) & {"totalizer_reset", "meter_changed"}
    assert {"totalizer_reset", "meter_changed"} <= _gap_step(site, 0.0, 0.0, 400.0)  # 1000 × 0.2 h × 1.5 = 300


def test_a_config_reload_keeps_the_fingerprints_unless_the_forensic_settings_change(site):
    engine = Engine([site], RulesSettings(), UTC)
    engine.ingest(flow(30))
    before = engine._sites["hehua"].prints
    assert before is not None and before.meters
    engine.reconfigure([site], RulesSettings())
    assert engine._sites["hehua"].prints is before
    engine.reconfigure([site], RulesSettings.model_validate({"forensic": {"replay_matches": 4}}))
    after = engine._sites["hehua"].prints
    assert after is not None and after is not before and after.plan.min_matches == 4
    engine.reconfigure([site], RulesSettings.model_validate({"forensic": {"replay": False, "smooth": False,
                                                                         "exact": False}}))
    assert engine._sites["hehua"].prints is None


def test_reinjection_computed_from_extraction_fires_exact_balance_as_evasion():
    onset, alerts, _ = _run("computed-reinjection")
    a = _first_firing(alerts, "exact_balance", onset)
    assert a is not None and a.at.timestamp() - onset <= 16 * 3600
    assert a.evidence["median_hourly_deficit_pct"] < a.evidence["floor_pct"] == 0.01
    assert "implausibly exact" in a.summary


def test_reinjection_computed_from_extraction_goes_unseen_with_the_rule_off():
    _, alerts, _ = _run("computed-reinjection", {"forensic": {"exact": False}})
    assert not [a for a in alerts if a.state.value == "firing"]
