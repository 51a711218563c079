"""Time: the evaluation clock stepping backwards and forwards, a meter's clock set back, local-time loggers
through daylight-saving changes. No negative volume, no discharge alert on a balanced site."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alerting.model import Alert
from collector.model import Reading, Role, Site
from collector.mqtt.decode import Binding, DecodeContext, decode
from collector.mqtt.profile import load_profiles
from rules.engine import Engine
from rules.settings import RulesSettings

T0 = datetime(2026, 5, 5, tzinfo=UTC)
SITE = Site.model_validate({"id": "hehua", "name": "向阳荷花广场", "district": "宛城区", "meters": [
    {"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}]})
WINDOWS = (timedelta(minutes=15), timedelta(hours=1), timedelta(hours=24))


def _balanced(minutes: int, start: datetime = T0, every_s: int = 60) -> list[Reading]:
    out, e, r = [], 1000.0, 2000.0
    for i in range(0, minutes * 60 // every_s + 1):
        ts = start + timedelta(seconds=i * every_s)
        out += [Reading("hehua", "E1", Role.EXTRACTION, ts, 120.0, round(e, 4)),
                Reading("hehua", "R1", Role.REINJECTION, ts, 120.0, round(r, 4))]
        e += 120.0 * every_s / 3600
        r += 120.0 * every_s / 3600
    return out


def _check(engine: Engine, events: list[Alert]) -> dict[str, Any]:
    for w in WINDOWS:
        b = engine.balance("hehua", w)
        assert b is None or (b["extracted_m3"] >= 0 and b["reinjected_m3"] >= 0), b
    discharge = [e for e in events if e.kind.value == "discharge" and e.state in ("pending", "firing")]
    assert not discharge, discharge
    return {"discharge_alerts": len(discharge), "data_quality": sorted({f"{e.rule}:{e.state}" for e in events})}


def test_evaluation_clock_stepping_back_and_forward_raises_no_discharge_alert(figures: dict[str, Any]) -> None:
    engine = Engine([SITE], RulesSettings(), UTC)
    readings = _balanced(8 * 60)
    events: list[Alert] = []
    # the wall clock: 5-min steps for 3 h, back 1 h (an NTP correction), on for 2 h, then forward 2 h
    clock, schedule = T0, []
    for k in range(36):
        schedule.append(clock := T0 + timedelta(minutes=5 * k))
    clock -= timedelta(hours=1)
    schedule += [clock + timedelta(minutes=5 * k) for k in range(24)]
    clock = schedule[-1] + timedelta(hours=2)
    schedule += [clock + timedelta(minutes=5 * k) for k in range(12)]
    i = 0
    for now in schedule:
        while i < len(readings) and readings[i].ts <= now:  # readings keep their device time
            engine.ingest([readings[i]])
            i += 1
        events += engine.evaluate(now)
    found = _check(engine, events)
    figures.update(evaluations=len(schedule), steps="+3h, -1h, +2h, jump +2h, +1h", **found)


def test_a_meter_clock_set_back_an_hour_gives_no_negative_volume(figures: dict[str, Any]) -> None:
    engine = Engine([SITE], RulesSettings(), UTC)
    readings = _balanced(6 * 60)
    skewed = [Reading(r.site, r.meter, r.role, r.ts - timedelta(hours=1), r.rate_m3h, r.total_m3)
              if r.meter == "E1" and r.ts >= T0 + timedelta(hours=3) else r for r in readings]
    events: list[Alert] = []
    t, i = T0, 0
    skewed.sort(key=lambda r: r.ts)
    while t <= T0 + timedelta(hours=6):
        while i < len(skewed) and skewed[i].ts <= t:
            engine.ingest([skewed[i]])
            i += 1
        events += engine.evaluate(t)
        t += timedelta(minutes=5)
    found = _check(engine, events)
    # the repeated hour is counted as duplicates / out of order, not counted again as volume
    assert engine.stats.late + engine.stats.duplicates >= 60
    figures.update(late=engine.stats.late, duplicates=engine.stats.duplicates, **found)


def test_local_time_logger_through_daylight_saving_changes(figures: dict[str, Any]) -> None:
    """A logger sending local time (Europe/Berlin) every 10 min through spring-forward and fall-back:
    the missing hour is a gap, the repeated hour's readings are duplicates or out of order — counted, and
    never a negative volume or a discharge alert."""
    tz = ZoneInfo("Europe/Berlin")
    profile = load_profiles()["logger-text"]
    binding = {"E1": Binding("hehua", "E1", Role.EXTRACTION, "E1")}
    counts = {"readings": 0, "rejected": 0}
    for day in (datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 10, 25, tzinfo=UTC)):
        ctx = DecodeContext(tz=tz, max_age=timedelta(days=3650))
        engine = Engine([SITE], RulesSettings(), tz)
        events: list[Alert] = []
        total = 1000.0
        local = day.astimezone(tz).replace(hour=0, minute=0, tzinfo=None)
        # what the logger prints: its wall clock, which jumps or repeats an hour
        stamps = [local + timedelta(minutes=10 * k) for k in range(6 * 6)]
        if day.month == 10:
            stamps = stamps[:18] + [s for s in stamps[12:18]] + stamps[18:]  # 02:00-02:50 twice
        else:
            stamps = [s for s in stamps if s.hour != 2]  # 02:00-02:59 does not exist
        for k, s in enumerate(stamps):
            payload = json.dumps({"Date": s.strftime("%d%m%Y"), "Time": s.strftime("%H%M%S"),
                                  "Flow": "33.3333", "Total": f"{total:.3f}"}).encode()
            total += 20.0
            d = decode(profile, payload, day + timedelta(days=1), ctx, binding)
            counts["readings"] += len(d.readings)
            counts["rejected"] += len(d.rejected)
            for r in d.readings:
                engine.ingest([r])
                engine.ingest([Reading("hehua", "R1", Role.REINJECTION, r.ts, r.rate_m3h, r.total_m3)])
                if k % 3 == 0:
                    events += engine.evaluate(r.ts)
        found = _check(engine, events)
        figures[f"{day.date()}"] = {"late": engine.stats.late, "duplicates": engine.stats.duplicates, **found}
    figures.update(counts)
