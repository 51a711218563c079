"""Permit compliance: the year ledger's math, the rules' conditions, the engine's verdicts, the store."""

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from alerting.model import AlertKind, IncidentKind, Severity
from bench.detection import run_scenario
from collector.model import Site
from gshp.config import Config, ConfigError, parse_config
from gshp.reload import config_changes
from rules.balance import Condition
from rules.compliance import (
    YearLedger,
    calibration_overdue,
    fold_year,
    over_rate,
    permit_pumping,
    project_year,
    quota_state,
    rate_limit_m3h,
)
from rules.engine import Engine
from rules.settings import RulesSettings
from rules.store import AlertStore
from simulators.scenarios import build
from tests.unit.conftest import T0, flow, run

SH = ZoneInfo("Asia/Shanghai")
PERMIT = {"number": "取水(宛)字[2024]第0012号", "holder": "向阳荷花广场物业", "annual_quota_m3": 300000,
          "max_rate_m3h": 150, "wells": {"extraction": 2, "reinjection": 4}, "valid_from": "2024-01-01",
          "valid_to": "2028-12-31", "status": "operating"}


def _site(calibration_due: str | None = None, **permit: object) -> Site:
    e1: dict[str, object] = {"id": "E1", "role": "extraction"}
    if calibration_due is not None:
        e1["record"] = {"serial": "TUF-20230411", "calibration": {"number": "检字2025-0042", "date": "2025-04-01",
                                                                 "next_due": calibration_due}}
    return Site.model_validate({"id": "hehua", "name": "向阳荷花广场", "district": "宛城区",
                                "permit": {**PERMIT, **permit},
                                "meters": [e1, {"id": "R1", "role": "reinjection"}]})


def _firing(events: list, rule: str) -> list:
    return [e for e in events if e.rule == rule and e.state == "firing"]


# ------------------------------------------------------------------------------------------ the math

def test_the_year_ledger_sums_known_intervals_and_keeps_the_peak_rate() -> None:
    y = YearLedger("s", 2026)
    a = datetime(2026, 5, 5, tzinfo=SH).timestamp()
    rows = [(a, 10.0, True), (a + 300, 15.0, True), (a + 600, 99.0, False), (a + 900, 5.0, True)]
    (out,) = fold_year(y, rows, 300.0, SH)
    assert out.extracted_m3 == 30.0
    assert out.unknown_s == 300.0 and out.since == a and out.through == a + 1200
    assert out.peak_rate_m3h == 180.0 and out.peak_at == a + 300  # 15 m³ in 5 min
    assert out.monitored_s == 900.0
    again = fold_year(out, rows, 300.0, SH)  # intervals already folded are not counted twice
    assert again == [out]


def test_time_the_ledger_did_not_see_is_unknown_not_dry() -> None:
    a = datetime(2026, 5, 5, tzinfo=SH).timestamp()
    (y,) = fold_year(YearLedger("s", 2026), [(a, 10.0, True), (a + 3600, 10.0, True)], 300.0, SH)
    assert y.extracted_m3 == 20.0 and y.unknown_s == 3300.0 and y.monitored_s == 600.0


def test_the_year_ledger_starts_a_new_year_at_local_midnight() -> None:
    y = YearLedger("s", 2026)
    newyear = datetime(2027, 1, 1, tzinfo=SH).timestamp()
    old, new = fold_year(y, [(newyear - 300, 7.0, True), (newyear, 3.0, True)], 300.0, SH)
    assert (old.year, old.extracted_m3, new.year, new.extracted_m3) == (2026, 7.0, 2027, 3.0)


def test_the_projection_extrapolates_the_pace_of_the_monitored_time() -> None:
    start = datetime(2026, 7, 2, 12, tzinfo=SH).timestamp()  # the year's middle, give or take a few hours
    end_of_year = datetime(2027, 1, 1, tzinfo=SH).timestamp()
    y = YearLedger("s", 2026, extracted_m3=1000.0, since=start - 10 * 86400, through=start)
    projected = project_year(y, SH)
    assert projected == pytest.approx(1000.0 + 100.0 * (end_of_year - start) / 86400)
    assert project_year(YearLedger("s", 2026), SH) is None


def test_quota_fires_at_90_pct_used_when_exceeded_and_on_projection_after_the_minimum_span() -> None:
    t = datetime(2026, 3, 1, tzinfo=SH).timestamp()
    day = 86400.0
    # 10 days at 1 000 m³/day project to ~305 000 m³: above a 300 000 m³ quota
    y = YearLedger("s", 2026, extracted_m3=10_000.0, since=t - 10 * day, through=t)
    assert quota_state(y, 300_000.0, SH, 90.0, 7 * day) == (Condition.ACTIVE, "projected")
    assert quota_state(y, 300_000.0, SH, 90.0, 11 * day) == (Condition.CLEAR, None)  # too short to project
    assert quota_state(y, 400_000.0, SH, 90.0, 7 * day) == (Condition.CLEAR, None)
    assert quota_state(y, 11_000.0, SH, 90.0, 365 * day) == (Condition.ACTIVE, "used")  # 90.9 %
    assert quota_state(y, 10_000.0, SH, 90.0, 365 * day) == (Condition.ACTIVE, "exceeded")


def test_over_rate_allows_the_meters_accuracy_and_holds_in_between() -> None:
    assert rate_limit_m3h(150.0, 1.0) == pytest.approx(151.5)
    assert over_rate(151.6, 150.0, 1.0) is Condition.ACTIVE
    assert over_rate(151.4, 150.0, 1.0) is Condition.BAND
    assert over_rate(150.0, 150.0, 1.0) is Condition.CLEAR
    assert over_rate(None, 150.0, 1.0) is Condition.UNKNOWN


def test_pumping_and_calibration_arithmetic() -> None:
    assert permit_pumping([0.2, None, 1.5], 1.0) is Condition.ACTIVE
    assert permit_pumping([0.2, 0.0], 1.0) is Condition.CLEAR
    assert permit_pumping([None], 1.0) is Condition.UNKNOWN
    assert calibration_overdue(date(2026, 5, 1), date(2026, 5, 5)) == 4
    assert calibration_overdue(date(2026, 5, 5), date(2026, 5, 5)) == 0


# ------------------------------------------------------------------------------------------ the engine

@pytest.mark.parametrize(("status", "words"), [("sealed", "已封停"), ("suspended", "暂停取水")])
def test_a_sealed_or_suspended_site_pumping_in_balance_fires_sealed_pumping_within_15_minutes(
        status: str, words: str) -> None:
    engine = Engine([_site(status=status)], RulesSettings(), UTC)
    dry = list(flow(60, e_m3h=0.0, r_m3h=0.0))
    events = run(engine, dry + list(flow(60, start=T0 + timedelta(minutes=61), totals={"E1": 1000.0, "R1": 2000.0})),
                 T0 + timedelta(hours=2))
    fired = _firing(events, "sealed_pumping")
    assert fired and fired[0].kind is AlertKind.COMPLIANCE and fired[0].severity is Severity.CRITICAL
    assert fired[0].at - (T0 + timedelta(minutes=61)) <= timedelta(minutes=15)
    assert not [e for e in events if e.kind is AlertKind.DISCHARGE]
    inc = engine.store.incidents(kind="compliance")
    assert len(inc) == 1 and inc[0].severity is Severity.CRITICAL
    assert fired[0].summary == f"向阳荷花广场 停用或封停的井在取水：120.0 m³/h，许可状态{words}"
    assert fired[0].evidence["status"] == status


def test_an_operating_site_pumping_within_its_permit_raises_nothing() -> None:
    engine = Engine([_site()], RulesSettings(), UTC)
    events = run(engine, list(flow(180, e_m3h=150.0, r_m3h=150.0)), T0 + timedelta(hours=3))
    assert not [e for e in events if e.kind is AlertKind.COMPLIANCE]


def test_over_rate_fires_after_its_hold_and_not_within_the_meters_accuracy() -> None:
    engine = Engine([_site()], RulesSettings(), UTC)
    events = run(engine, list(flow(120, e_m3h=160.0, r_m3h=160.0)), T0 + timedelta(hours=2))
    fired = _firing(events, "over_rate")
    assert fired and fired[0].evidence["rate_m3h"] == pytest.approx(160.0)
    assert fired[0].evidence["limit_m3h"] == 151.5
    assert fired[0].at - fired[0].starts_at >= timedelta(minutes=15)
    near = Engine([_site()], RulesSettings(), UTC)
    assert not _firing(run(near, list(flow(120, e_m3h=151.0, r_m3h=151.0)), T0 + timedelta(hours=2)), "over_rate")


def test_extraction_after_the_permit_expired_fires() -> None:
    engine = Engine([_site(valid_to="2026-05-04")], RulesSettings(), UTC)
    assert _firing(run(engine, list(flow(60)), T0 + timedelta(hours=1)), "permit_expired")
    valid = Engine([_site(valid_to="2026-05-05")], RulesSettings(), UTC)
    assert not _firing(run(valid, list(flow(60)), T0 + timedelta(hours=1)), "permit_expired")


def test_a_calibration_past_due_is_an_info_reminder_per_meter() -> None:
    engine = Engine([_site(calibration_due="2026-05-01")], RulesSettings(), UTC)
    fired = _firing(run(engine, list(flow(20)), T0 + timedelta(minutes=20)), "calibration_due:E1")
    assert len(fired) == 1 and fired[0].severity is Severity.INFO
    assert fired[0].evidence["days_overdue"] == 4 and fired[0].evidence["certificate"] == "检字2025-0042"
    (inc,) = engine.store.incidents(kind="calibration")
    assert inc.kind is IncidentKind.CALIBRATION and inc.severity is Severity.INFO and inc.meters == ("E1",)
    current = Engine([_site(calibration_due="2026-06-01")], RulesSettings(), UTC)
    assert not _firing(run(current, list(flow(20)), T0 + timedelta(minutes=20)), "calibration_due:E1")


def test_a_new_certificate_on_reload_resolves_the_reminder_and_keeps_the_meters_windows() -> None:
    engine = Engine([_site(calibration_due="2026-05-01")], RulesSettings(), UTC)
    readings = list(flow(120))
    assert _firing(run(engine, [r for r in readings if r.ts <= T0 + timedelta(hours=1)], T0 + timedelta(hours=1)),
                   "calibration_due:E1")
    before = engine.balance("hehua", timedelta(hours=1))
    engine.reconfigure([_site(calibration_due="2027-05-01")], RulesSettings())
    assert engine.balance("hehua", timedelta(hours=1)) == before  # the meter's ledger is kept
    events = run(engine, [r for r in readings if r.ts > T0 + timedelta(hours=1)], T0 + timedelta(hours=2))
    assert [e.state for e in events if e.rule == "calibration_due:E1"] == ["resolved"]
    assert not [e for e in events if e.rule in ("meter_offline", "balance_hour")]


def _reloaded(engine: Engine, before: Config, **permit: object) -> Config:
    """The config file with the permit changed, loaded and taken by the running engine as a reload does."""
    after = parse_config(_config({**PERMIT, **permit}), env={})
    assert config_changes(before, after).sites.changed == ("hehua",)
    engine.reconfigure(after.sites, after.rules)
    return after


def test_a_permit_sealed_by_a_reload_is_held_to_it_on_the_running_engine() -> None:
    config = parse_config(_config(PERMIT), env={})
    engine = Engine(config.sites, config.rules, UTC)
    readings = list(flow(180))
    split = T0 + timedelta(hours=1)
    assert not _firing(run(engine, [r for r in readings if r.ts <= split], split), "sealed_pumping")
    config = _reloaded(engine, config, status="sealed")
    events = run(engine, [r for r in readings if r.ts > split], T0 + timedelta(hours=2))
    fired = _firing(events, "sealed_pumping")
    assert fired and fired[0].at - split <= timedelta(minutes=15) and fired[0].evidence["status"] == "sealed"
    assert not [e for e in events if e.rule in ("meter_offline", "balance_hour")]  # the meters' ledgers kept
    _reloaded(engine, config, status="operating")  # back in operation: resolved
    later = run(engine, [r for r in readings if r.ts > T0 + timedelta(hours=2)], T0 + timedelta(hours=4))
    assert [e.state for e in later if e.rule == "sealed_pumping"] == ["resolved"]


def test_a_new_quota_by_a_reload_is_judged_against_the_years_extraction_so_far() -> None:
    config = parse_config(_config(PERMIT), env={})
    engines = [Engine(config.sites, config.rules, UTC) for _ in range(2)]
    readings = list(flow(240))
    split = T0 + timedelta(hours=2)
    for engine in engines:
        assert not _firing(run(engine, [r for r in readings if r.ts <= split], split), "quota_projection")
    _reloaded(engines[0], config, annual_quota_m3=300)  # 240 m³ of 300 used: 80 %; 90 % at 270 m³
    reloaded, kept = (run(engine, [r for r in readings if r.ts > split], T0 + timedelta(hours=4))
                      for engine in engines)
    (fired,) = _firing(reloaded, "quota_projection")
    assert fired.evidence["annual_quota_m3"] == 300 and fired.evidence["reason"] == "used"
    assert 270.0 <= fired.evidence["extracted_m3"] < 300.0  # the year's extraction was kept, not restarted
    assert not _firing(kept, "quota_projection")
    year = engines[0].compliance("hehua")
    assert year["year"]["annual_quota_m3"] == 300
    assert year["year"]["extracted_m3"] == engines[1].compliance("hehua")["year"]["extracted_m3"]


def test_the_years_extraction_survives_a_restart_without_double_counting(tmp_path: Path) -> None:
    readings = list(flow(240))
    whole = Engine([_site()], RulesSettings(), UTC)
    run(whole, readings, T0 + timedelta(hours=4))
    store = AlertStore(tmp_path / "alerts.sqlite")
    first = Engine([_site()], RulesSettings(), UTC, store=store)
    run(first, [r for r in readings if r.ts <= T0 + timedelta(hours=2)], T0 + timedelta(hours=2))
    store.close()
    store = AlertStore(tmp_path / "alerts.sqlite")
    second = Engine([_site()], RulesSettings(), UTC, store=store)
    # the restarted service back-fills the last hour again, then runs on
    run(second, [r for r in readings if r.ts >= T0 + timedelta(hours=1)], T0 + timedelta(hours=4))
    (y,) = store.year_ledgers("hehua")
    assert y.extracted_m3 == pytest.approx(whole.compliance("hehua")["year"]["extracted_m3"], abs=0.01)
    assert y.extracted_m3 == pytest.approx(480.0)  # 4 h at 120 m³/h
    store.close()


def test_an_alert_store_from_before_the_year_ledger_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    AlertStore(path).close()
    db = sqlite3.connect(path)  # as the first release left it: no year ledger, version 1
    db.execute("DROP TABLE year_ledger")
    db.execute("INSERT INTO maintenance (site, starts_at, starts_ts, ends_at, reason, volume_cap_m3, declared_by, "
               "declared_at) VALUES ('hehua', 'a', 0, 'b', '回扬', 5, 'x', 'c')")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    store = AlertStore(path)
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert db.execute("SELECT COUNT(*) FROM year_ledger").fetchone()[0] == 0
    assert db.execute("SELECT reason FROM maintenance").fetchall() == [("回扬",)]


# ------------------------------------------------------------------------------------------ the config

def _config(permit: dict[str, object]) -> str:
    import json
    return ("timezone: Asia/Shanghai\nsites:\n  - id: hehua\n    name: 向阳荷花广场\n    district: 宛城区\n"
            f"    permit: {json.dumps(permit, ensure_ascii=False)}\n"
            "    meters: [{id: E1, role: extraction}, {id: R1, role: reinjection}]\n")


def test_the_permit_block_of_the_config_is_read() -> None:
    config = parse_config(_config(PERMIT), env={})
    p = config.site("hehua").permit
    assert p is not None and p.status.value == "operating" and p.wells.reinjection == 4
    assert p.valid_to == date(2028, 12, 31) and p.annual_quota_m3 == 300000


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"status": "closed"}, "permit.status", ("许可状态须为", "status must be one of approved, construction")),
    ({"valid_to": "2023-12-31"}, "permit", ("早于有效期起", "valid_to must not be before valid_from")),
    ({"annual_quota_m3": -5}, "permit.annual_quota_m3", ("许可水量须为正数", "must be a positive number of m³")),
    ({"max_rate_m3h": 0}, "permit.max_rate_m3h", ("许可水量须为正数", "m³/h")),
])
def test_a_bad_permit_is_refused_in_both_languages(change: dict[str, object], field: str,
                                                   words: tuple[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config({**PERMIT, **change}), env={})
    (problem,) = err.value.problems
    assert problem.path == f"sites[0].{field}" and problem.line == 6
    assert all(w in problem.message for w in words), problem.message


# ------------------------------------------------------------------------------------------ scenarios

@pytest.mark.parametrize(("name", "within_min"), [("sealed-pumping", 15), ("over-rate", 30),
                                                  ("quota-projection", 30)])
def test_the_permit_scenarios_fire_their_rule_within_the_target(name: str, within_min: int) -> None:
    o = run_scenario(name)
    assert o.first_rule == name.replace("-", "_") and o.delay_s is not None
    assert o.delay_s <= within_min * 60, o.delay_s
    assert o.false_discharge == 0


def test_gshp_replay_emits_the_compliance_alerts(tmp_path: Path) -> None:
    data = build("sealed-pumping")
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(data.config(), allow_unicode=True), encoding="utf-8")
    data.readings.to_csv(tmp_path / "readings.csv", index=False)
    done = subprocess.run([sys.executable, "-m", "gshp.cli", "replay", "--config", str(tmp_path / "site.yaml"),
                           "--readings", str(tmp_path / "readings.csv")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    fired = [e for e in events if e["rule"] == "sealed_pumping" and e["state"] == "firing"]
    assert fired and fired[0]["kind"] == "compliance" and data.onset is not None
    assert datetime.fromisoformat(fired[0]["at"]) - data.onset <= timedelta(minutes=15)
