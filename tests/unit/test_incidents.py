"""Incidents against the real engine and alert store, fed with simulated site physics whose drain meter
gives the true discharged volume."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from alerting.model import AlertState, IncidentChange, IncidentKind, IncidentNotice, IncidentState, Severity
from collector.model import Role
from gshp.config import parse_config
from rules.engine import Engine
from rules.incidents import estimate_volume, onset_index
from rules.replay import readings_from_frame, replay_steps
from rules.settings import MaintenanceWindow
from rules.store import AlertStore
from simulators.physics import Load, MeterPhysics, simulate_site

START = datetime(2026, 5, 4, 16, 0, tzinfo=UTC)  # 00:00 at UTC+8
MINUTES_PER_DAY = 1440


@dataclass
class Run:
    engine: Engine
    store: AlertStore
    notices: list[IncidentNotice]
    fired: list[str]  # ids of discharge alerts that fired
    frame: pd.DataFrame
    truth: dict[str, float]  # name of a discharge episode → m³ that went to the drain
    onsets: dict[str, datetime]


def _meters() -> tuple[MeterPhysics, ...]:
    return (MeterPhysics("E1", Role.EXTRACTION, 0.55, 0.003, total_start=1200.0),
            MeterPhysics("E2", Role.EXTRACTION, 0.45, -0.002, total_start=53000.0),
            MeterPhysics("R1", Role.REINJECTION, 0.5, 0.004, total_start=880.0),
            MeterPhysics("R2", Role.REINJECTION, 0.5, -0.001, total_start=7100.0),
            MeterPhysics("D1", Role.DISCHARGE, 1.0, 0.0, noise=0.0, total_start=0.0, resolution_m3=0.001))


def _simulate(days: float, episodes: dict[str, tuple[float, float, float]], seed: int = 7
              ) -> tuple[pd.DataFrame, dict[str, float], dict[str, datetime]]:
    """Readings of E1, E2, R1, R2 (the drain meter D1 is the truth, not fed to the rules). `episodes`:
    name → (start hour, end hour, fraction discharged)."""
    minutes = round(days * MINUTES_PER_DAY)
    d = np.zeros(minutes)
    for a, b, frac in episodes.values():
        d[round(a * 60):round(b * 60)] = frac
    series = simulate_site(START.timestamp(), minutes, Load(), _meters(), 5, d, np.random.default_rng(seed))
    truth, onsets = {}, {}
    drain = series["D1"].total_m3
    for name, (a, b, _) in episodes.items():
        truth[name] = float(drain[min(round(b * 60) + 10, minutes)] - drain[round(a * 60)])
        onsets[name] = START + timedelta(hours=a, minutes=5)  # the water reaches the drain after the pipe lag
    parts = []
    for mid in ("E1", "E2", "R1", "R2"):
        s = series[mid]
        parts.append(pd.DataFrame({"ts": START.timestamp() + 60.0 * np.arange(len(s.total_m3)), "site": "hehua",
                                   "meter": mid, "rate_m3h": s.rate_m3h, "total_m3": s.total_m3}))
    return pd.concat(parts, ignore_index=True), truth, onsets


def _config(rules: dict[str, Any] | None = None) -> Any:
    cfg: dict[str, Any] = {"timezone": "Asia/Shanghai", "sites": [{
        "id": "hehua", "name": "向阳荷花广场", "district": "宛城区",
        "meters": [{"id": m, "role": "extraction" if m[0] == "E" else "reinjection", "accuracy_pct": 1.0}
                   for m in ("E1", "E2", "R1", "R2")]}]}
    if rules:
        cfg["rules"] = rules
    return parse_config(yaml.safe_dump(cfg, allow_unicode=True), "<test>", env={})


def _run(tmp_path: Path, days: float, episodes: dict[str, tuple[float, float, float]],
         rules: dict[str, Any] | None = None, engine: Engine | None = None) -> Run:
    frame, truth, onsets = _simulate(days, episodes)
    config = _config(rules)
    store = AlertStore(tmp_path / "alerts.sqlite")
    engine = engine or Engine(config.sites, config.rules, config.tz, store=store)
    run = Run(engine, store, [], [], frame, truth, onsets)
    _feed(run, frame)
    return run


def _feed(run: Run, frame: pd.DataFrame) -> None:
    for step in replay_steps(run.engine, readings_from_frame(frame)):
        run.notices.extend(step.notices)
        run.fired += [a.id for a in step.alerts if a.kind.value == "discharge" and a.state is AlertState.FIRING]


def _discharge_incidents(run: Run) -> list[Any]:
    return run.store.incidents(kind=IncidentKind.DISCHARGE)


@pytest.mark.parametrize(("frac", "hours"), [(0.05, 10.0), (0.20, 4.0), (0.40, 3.0)])
def test_one_incident_per_discharge_episode_with_the_true_volume_inside_its_band(tmp_path, frac, hours):
    a = 36.0  # a day and a half of honest operation teaches the site's baseline
    run = _run(tmp_path, 3.5, {"episode": (a, a + hours, frac)})
    (inc,) = _discharge_incidents(run)
    assert run.fired, "the discharge must fire some window"
    assert {run.store.incident_of_alert(aid).id for aid in run.fired} == {inc.id}  # type: ignore[union-attr]
    assert inc.volume_m3 is not None
    truth = run.truth["episode"]
    assert inc.volume_m3.low <= truth <= inc.volume_m3.high, (truth, inc.volume_m3)
    assert abs(inc.volume_m3.estimate - truth) < 0.25 * truth  # an estimate that says something
    assert abs(inc.started_at - run.onsets["episode"]) <= timedelta(minutes=30)
    assert inc.started_at < inc.first_firing_at
    assert inc.peak_deficit_pct is not None and inc.peak_deficit_pct >= 100 * frac * 0.8
    assert inc.mean_deficit_pct is not None and abs(inc.mean_deficit_pct - 100 * frac) < 100 * frac * 0.3
    changes = [n.change for n in run.notices]
    assert changes.count(IncidentChange.OPENED) == 1 and IncidentChange.REOPENED not in changes


def test_severity_follows_volume_and_never_drops_while_open(tmp_path):
    run = _run(tmp_path, 3.0, {"episode": (36.0, 56.0, 0.40)}, rules={"incidents": {"critical_m3": 300}})
    (inc,) = _discharge_incidents(run)
    ranks = [n.incident.severity.rank for n in run.notices]
    assert ranks == sorted(ranks)
    assert [n.change for n in run.notices][:3] == [IncidentChange.OPENED, IncidentChange.ESCALATED,
                                                    IncidentChange.ESCALATED]
    assert inc.severity is Severity.CRITICAL  # 20 h at 40 %: beyond 300 m³
    history = run.store.incident_changes(inc.id)
    assert [h["incident"]["severity"] for h in history][-1] == "critical"


def test_night_time_discharge_resolves_and_keeps_its_volume(tmp_path):
    night = 24.0 + 22.0 - 8.0  # 22:00 local on the second day
    run = _run(tmp_path, 4.0, {"night": (night, night + 8.0, 0.25)})
    (inc,) = _discharge_incidents(run)
    assert inc.state is IncidentState.RESOLVED and inc.ended_at is not None
    resolved = [n for n in run.notices if n.change is IncidentChange.RESOLVED]
    assert len(resolved) == 1
    last_open = [n.incident for n in run.notices if n.change is not IncidentChange.RESOLVED][-1]
    assert inc.volume_m3 is not None and inc.volume_m3.low <= run.truth["night"] <= inc.volume_m3.high
    assert inc.volume_m3.estimate >= last_open.volume_m3.estimate  # type: ignore[union-attr]
    assert inc.summary["zh"].startswith("向阳荷花广场 疑似外排") and "结束" in inc.summary["zh"]
    run.store.close()
    again = AlertStore(Path(run.store.path))
    assert again.incident(inc.id) == inc  # every figure kept


_SHORT = {"balance": {"windows": [
    {"name": "gross", "window": "15m", "threshold_pct": 12.0, "for": "10m", "clear_for": "30m",
     "severity": "critical"},
    {"name": "hour", "window": "1h", "threshold_pct": 6.0, "for": "15m", "severity": "high"}]},
    "sequential": {"enabled": False}}


def test_recurrence_within_the_quiet_period_reopens_the_same_incident(tmp_path):
    first, second = (30.0, 31.5, 0.4), (35.0, 36.0, 0.4)  # 3.5 h apart: within the default 6 h
    run = _run(tmp_path, 2.0, {"first": first, "second": second}, rules=_SHORT)
    (inc,) = _discharge_incidents(run)
    changes = [n.change for n in run.notices]
    assert changes.count(IncidentChange.OPENED) == 1 and changes.count(IncidentChange.REOPENED) == 1
    assert changes.count(IncidentChange.RESOLVED) == 2
    assert inc.episodes == 2 and inc.state is IncidentState.RESOLVED
    assert inc.volume_m3 is not None
    assert inc.volume_m3.low <= run.truth["first"] + run.truth["second"] <= inc.volume_m3.high
    # what the store kept is exactly what was notified: a restart can offer it again under the same keys
    assert [n.to_dict() for n in run.store.incident_notices(START)] == [n.to_dict() for n in run.notices]
    later = START + timedelta(hours=35)
    assert [n.key for n in run.store.incident_notices(later)] == [n.key for n in run.notices if n.at >= later]


def test_recurrence_after_the_quiet_period_is_a_new_incident(tmp_path):
    run = _run(tmp_path, 2.0, {"first": (30.0, 31.5, 0.4), "second": (35.0, 36.0, 0.4)},
               rules={**_SHORT, "incidents": {"quiet_period": "1h"}})
    first, second = _discharge_incidents(run)
    assert first.id != second.id and first.episodes == second.episodes == 1
    assert first.volume_m3 is not None and first.volume_m3.low <= run.truth["first"] <= first.volume_m3.high


def test_maintenance_declared_during_an_incident_is_a_claim_that_resolves_nothing(tmp_path):
    frame, truth, _ = _simulate(2.0, {"episode": (30.0, 34.0, 0.4)})
    config = _config(_SHORT)
    store = AlertStore(tmp_path / "alerts.sqlite")
    engine = Engine(config.sites, config.rules, config.tz, store=store)
    run = Run(engine, store, [], [], frame, truth, {})
    cut = (START + timedelta(hours=31)).timestamp()
    _feed(run, frame[frame["ts"] < cut])
    (inc,) = _discharge_incidents(run)
    assert inc.state is IncidentState.OPEN
    at = START + timedelta(hours=31)
    window = MaintenanceWindow.model_validate({"from": at - timedelta(minutes=10), "to": at + timedelta(days=6),
                                               "reason": "回扬", "volume_cap_m3": 1_000_000})
    assert engine.declare_maintenance("hehua", window, "运维单位", at) is True
    _feed(run, frame[frame["ts"] >= cut])
    claimed = store.incident(inc.id)
    assert claimed is not None and [c.reason for c in claimed.maintenance_claims] == ["回扬"]
    resolved = [n for n in run.notices if n.change is IncidentChange.RESOLVED]
    assert len(resolved) == 1 and resolved[0].incident.ended_at is not None
    assert resolved[0].incident.ended_at >= START + timedelta(hours=34)  # not before the water stopped
    assert claimed.volume_m3 is not None and claimed.volume_m3.low <= truth["episode"] <= claimed.volume_m3.high
    restarted = Engine(config.sites, config.rules, config.tz, store=AlertStore(tmp_path / "alerts.sqlite"))
    assert restarted.declare_maintenance("hehua", window, "运维单位", at) is True  # still a claim after a restart


def test_onset_is_the_start_of_the_step_in_excess():
    noise = [0.3, -0.2, 0.4, -0.5, 0.1, 0.2, -0.1]
    assert onset_index([*noise, None, 4.1, 3.8, 4.3, 3.9]) == 8
    assert onset_index([-1.0, -0.5, None]) == 3


def test_volume_band_comes_from_each_sides_accuracy():
    v = estimate_volume(1000.0, 800.0, 0.5, 1.0, 2.0)
    assert v.estimate == pytest.approx(195.0)
    assert (v.low, v.high) == pytest.approx((195.0 - 26.0, 195.0 + 26.0))
    with_transit = estimate_volume(1000.0, 800.0, 0.5, 1.0, 2.0, transit_m3=-4.0)
    assert (with_transit.estimate, with_transit.high) == pytest.approx((195.0, 195.0 + 30.0))
    assert estimate_volume(100.0, 101.0, 0.0, 1.0, 1.0).low == 0.0


def test_a_restart_during_an_incident_continues_it_without_a_second_opening(tmp_path):
    episodes = {"episode": (36.0, 44.0, 0.40)}
    reference = _run(tmp_path / "reference", 2.5, episodes)
    frame, truth, _ = _simulate(2.5, episodes)
    config = _config()
    path = tmp_path / "restarted" / "alerts.sqlite"
    first = Engine(config.sites, config.rules, config.tz, store=AlertStore(path))
    run = Run(first, first.store, [], [], frame, truth, {})
    cut = (START + timedelta(hours=40)).timestamp()
    _feed(run, frame[frame["ts"] < cut])
    first.store.close()
    # the service restarts: the engine restores from the store and back-fills its windows from history
    second = Engine(config.sites, config.rules, config.tz, store=AlertStore(path))
    second.backfill(frame[(frame["ts"] < cut) & (frame["ts"] >= cut - 26 * 3600)])
    run.engine, run.store = second, second.store
    _feed(run, frame[frame["ts"] >= cut])
    (inc,) = _discharge_incidents(run)
    (ref,) = _discharge_incidents(reference)
    assert [n.change for n in run.notices].count(IncidentChange.OPENED) == 1
    assert inc.id == ref.id and inc.started_at == ref.started_at
    assert inc.volume_m3 is not None and ref.volume_m3 is not None
    assert inc.volume_m3.low <= truth["episode"] <= inc.volume_m3.high
    assert inc.volume_m3.estimate == pytest.approx(ref.volume_m3.estimate, rel=0.02)
