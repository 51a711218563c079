"""Interval volumes as first-class readings: validated by the model, stored as their own field, and taken
by the balance exactly like totalizer deltas."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from influxdb_client import Point

from collector.influx.lineproto import FlowSchema
from collector.model import ModelError, Reading, Role, Site
from rules.engine import Engine
from rules.settings import RulesSettings

T0 = datetime(2026, 5, 5, 0, 0, tzinfo=UTC)


def test_a_volume_needs_its_period_and_is_never_negative() -> None:
    r = Reading("s", "E1", Role.EXTRACTION, T0, None, None, volume_m3=0.5, period_s=60)
    assert r.volume_m3 == 0.5 and r.total_m3 is None
    for bad in ({"volume_m3": 0.5}, {"period_s": 60.0}, {"volume_m3": -1.0, "period_s": 60.0},
                {"volume_m3": 1.0, "period_s": 0.0}, {"volume_m3": float("nan"), "period_s": 60.0}):
        with pytest.raises(ModelError):
            Reading("s", "E1", Role.EXTRACTION, T0, None, None, **bad)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="neither rate nor total"):
        Reading("s", "E1", Role.EXTRACTION, T0, None, None)


def test_an_interval_volume_is_its_own_field_escaped_like_any_other() -> None:
    site = Site.model_validate({"id": "s", "name": "n", "district": "a b,c", "meters": [
        {"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}]})
    r = Reading("s", "E1", Role.EXTRACTION, T0, 40.5, None, volume_m3=0.675, period_s=60)
    p = (Point("flow").time(T0, write_precision="ms")  # type: ignore[arg-type]
         .tag("site", "s").tag("meter", "E1").tag("role", "extraction").tag("district", "a b,c")
         .field("rate_m3h", 40.5).field("volume_m3", 0.675).field("period_s", 60.0))
    assert FlowSchema([site]).line(r) == p.to_line_protocol()


SITE = Site.model_validate({"id": "hehua", "name": "向阳荷花广场", "district": "宛城区", "meters": [
    {"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}]})


def _totals(meter: str, role: Role, m3h: float, minutes: int) -> list[Reading]:
    return [Reading("hehua", meter, role, T0 + timedelta(seconds=10 * i), m3h, 1000.0 + m3h * i / 360.0)
            for i in range(minutes * 6 + 1)]


def _volumes(meter: str, role: Role, m3h: float, minutes: int, skip: range = range(0)) -> list[Reading]:
    return [Reading("hehua", meter, role, T0 + timedelta(minutes=i + 1), m3h, None, volume_m3=m3h / 60.0,
                    period_s=60.0) for i in range(minutes) if i not in skip]


def _balance(readings: list[Reading], at: datetime) -> dict[str, object] | None:
    engine = Engine([SITE], RulesSettings(), UTC)
    engine.ingest(sorted(readings, key=lambda r: r.ts))
    return engine.balance("hehua", timedelta(minutes=30))


def test_minute_volumes_balance_exactly_like_totalizer_deltas() -> None:
    both_totals = _balance(_totals("E1", Role.EXTRACTION, 120, 60) + _totals("R1", Role.REINJECTION, 96, 60),
                           T0 + timedelta(hours=1))
    mixed = _balance(_totals("E1", Role.EXTRACTION, 120, 60) + _volumes("R1", Role.REINJECTION, 96, 60),
                     T0 + timedelta(hours=1))
    assert both_totals is not None and mixed is not None
    assert mixed["complete"] and both_totals["complete"]
    for key in ("extracted_m3", "reinjected_m3", "deficit_m3", "deficit_pct", "end"):
        assert mixed[key] == pytest.approx(both_totals[key], abs=1e-6), key
    assert mixed["deficit_pct"] == pytest.approx(20.0)


def test_a_missing_interval_is_unknown_volume_not_zero() -> None:
    b = _balance(_totals("E1", Role.EXTRACTION, 120, 60) + _volumes("R1", Role.REINJECTION, 120, 60,
                                                                      skip=range(40, 42)), T0 + timedelta(hours=1))
    assert b is not None and not b["complete"]


def test_backfill_takes_interval_volumes_from_the_databases_columns() -> None:
    rows = [{"ts": r.ts, "site": r.site, "meter": r.meter, "rate_m3h": r.rate_m3h,
             "total_m3": float("nan") if r.total_m3 is None else r.total_m3,
             "volume_m3": float("nan") if r.volume_m3 is None else r.volume_m3,
             "period_s": float("nan") if r.period_s is None else r.period_s}
            for r in _totals("E1", Role.EXTRACTION, 120, 60) + _volumes("R1", Role.REINJECTION, 96, 60)]
    engine = Engine([SITE], RulesSettings(), UTC)
    engine.backfill(pd.DataFrame(rows))
    b = engine.balance("hehua", timedelta(minutes=30))
    assert b is not None and b["complete"] and b["deficit_pct"] == pytest.approx(20.0)


def test_replay_and_reports_take_interval_volumes_from_csv_columns() -> None:
    from rules.replay import parse_readings, replay

    rows = ["ts,site,meter,rate_m3h,total_m3,volume_m3,period_s"]
    for r in sorted(_totals("E1", Role.EXTRACTION, 120, 60) + _volumes("R1", Role.REINJECTION, 96, 60),
                    key=lambda r: r.ts):
        rows.append(",".join(str(x) if x is not None else "" for x in
                             (r.ts.isoformat(), r.site, r.meter, r.rate_m3h, r.total_m3, r.volume_m3, r.period_s)))
    readings = parse_readings(io.StringIO("\n".join(rows) + "\n"))
    assert not readings.bad and readings.volume
    engine = Engine([SITE], RulesSettings(), UTC)
    list(replay(engine, readings))
    b = engine.balance("hehua", timedelta(minutes=30))
    assert b is not None and b["complete"] and b["deficit_pct"] == pytest.approx(20.0)
    bad = parse_readings(io.StringIO("ts,site,meter,rate_m3h,total_m3,volume_m3,period_s\n"
                                     f"{T0.isoformat()},hehua,R1,,,1.5,0\n"))
    assert [b.reason for b in bad.bad] == ["an interval volume needs volume_m3 ≥ 0 and period_s > 0 (seconds)"]


def test_the_fan_out_to_rule_workers_carries_interval_volumes() -> None:
    from collector.fanout.message import decode_reading, encode_reading, fanout_profile
    from collector.mqtt.decode import DecodeContext, decode
    from collector.mqtt.topics import Binding

    r = Reading("hehua", "R1", Role.REINJECTION, T0, 96.0, None, volume_m3=1.6, period_s=60.0)
    assert decode_reading(encode_reading(r)) == r
    # the rule worker decodes it with the gshp-reading payload profile, as any MQTT message
    ctx = DecodeContext(tz=UTC, max_clock_skew=timedelta(minutes=10), max_age=timedelta(days=3650),
                        max_payload=65536)
    binding = Binding("hehua", "R1", Role.REINJECTION, "R1")
    d = decode(fanout_profile(), encode_reading(r), T0 + timedelta(seconds=1), ctx, {"R1": binding}, "R1")
    assert d.rejected == [] and d.readings == [r]


def test_a_payload_profile_maps_interval_volumes_only_with_their_period() -> None:
    from pydantic import ValidationError

    from collector.mqtt.profile import Fields

    Fields.model_validate({"volume_m3": {"path": "v", "unit": "L"}, "period_s": {"path": "p"}, "required": []})
    with pytest.raises(ValidationError, match="needs both `volume_m3` and `period_s`"):
        Fields.model_validate({"volume_m3": {"path": "v"}, "required": []})
    with pytest.raises(ValidationError, match="period_s is in seconds"):
        Fields.model_validate({"volume_m3": {"path": "v"}, "period_s": {"path": "p", "unit": "m3"},
                               "required": []})
