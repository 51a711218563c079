"""Retention and downsampling on a real influxd: the writer creates the policies and continuous queries the
config asks for, idempotently, lengthens but never silently shortens a downsampled policy, and a long-range
read takes the downsampled series the continuous queries fill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector.influx.lineproto import FlowSchema
from collector.influx.reader import InfluxReader
from collector.influx.retention import DOWNSAMPLED, series_source
from collector.influx.settings import InfluxSettings
from collector.influx.writer import V1Writer
from collector.model import Reading, Role, Site
from gshp.devstack import Influxd

pytestmark = pytest.mark.integration

SITE = Site.model_validate({"id": "hehua-plaza", "name": "向阳荷花广场", "district": "宛城区",
                            "meters": [{"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}]})


def settings(influxd: Influxd, db: str, **extra: object) -> InfluxSettings:
    return InfluxSettings.model_validate({"url": influxd.url, "api": "v1", "bucket": db, **extra})


def policies(influxd: Influxd, db: str) -> dict[str, tuple[str, bool]]:
    (result,) = influxd.query(f'SHOW RETENTION POLICIES ON "{db}"')
    return {v[0]: (v[1], v[-1]) for s in result.get("series", []) for v in s["values"]}  # type: ignore[union-attr]


def continuous_queries(influxd: Influxd, db: str) -> dict[str, str]:
    (result,) = influxd.query("SHOW CONTINUOUS QUERIES")
    return {v[0]: v[1] for s in result.get("series", []) if s["name"] == db  # type: ignore[union-attr]
            for v in s["values"]}


def test_start_up_creates_raw_retention_downsampled_policies_and_continuous_queries(influxd: Influxd,
                                                                                    influx_db: str) -> None:
    writer = V1Writer(settings(influxd, influx_db, retention="400d"))
    writer.ensure_target()
    rps = policies(influxd, influx_db)
    assert rps["autogen"] == ("9600h0m0s", True)  # raw readings: 400 days, still the default policy
    assert rps["ds_1m"][0] == rps["ds_1h"][0] == "87600h0m0s"  # 10 years
    cqs = continuous_queries(influxd, influx_db)
    assert len(cqs) == 2 * len(DOWNSAMPLED)
    assert all(name.startswith(("gshp_flow_", "gshp_balance_")) for name in cqs)
    assert any(("GROUP BY time(1h)" in q and '"ds_1h".flow' in q.replace(f'"{influx_db}".', "")) or
               "ds_1h.flow" in q for q in cqs.values())
    assert writer.retention_plan() == []  # idempotent: a second start changes nothing
    writer.ensure_target()
    assert continuous_queries(influxd, influx_db) == cqs
    writer.close()


def test_a_changed_level_replaces_its_queries_and_lengthens_its_policy(influxd: Influxd, influx_db: str) -> None:
    V1Writer(settings(influxd, influx_db, downsample=[{"every": "1h", "keep": "365d"}])).ensure_target()
    before = continuous_queries(influxd, influx_db)
    writer = V1Writer(settings(influxd, influx_db, downsample=[{"every": "1h", "keep": "3650d"},
                                                              {"every": "5m", "keep": "730d"}]))
    writer.ensure_target()
    rps = policies(influxd, influx_db)
    assert rps["ds_1h"][0] == "87600h0m0s" and rps["ds_5m"][0] == "17520h0m0s"
    after = continuous_queries(influxd, influx_db)
    assert set(before) <= set(after) and len(after) == 4  # 1h unchanged, 5m added
    shorter = V1Writer(settings(influxd, influx_db, downsample=[{"every": "1h", "keep": "30d"}]))
    assert not any("ALTER" in q for q in shorter.retention_plan())  # never shrinks what holds 10 years


def test_a_statement_influxd_refuses_is_logged_with_the_fix_and_writing_goes_on(
        influxd: Influxd, influx_db: str, caplog: pytest.LogCaptureFixture) -> None:
    writer = V1Writer(settings(influxd, influx_db, retention="1d"))  # shorter than autogen's 7-day shard groups
    writer.ensure_target()
    assert "not set up" in caplog.text and "ALTER RETENTION POLICY" in caplog.text
    writer.write([f"flow,site=x,meter=E1 total_m3=1 {int(datetime.now(UTC).timestamp() * 1000)}"])
    (result,) = influxd.query("SELECT count(total_m3) FROM flow", influx_db)
    assert result["series"][0]["values"][0][1] == 1  # type: ignore[index]
    writer.close()


def test_a_long_range_read_takes_the_downsampled_series(influxd: Influxd, influx_db: str) -> None:
    s = settings(influxd, influx_db)
    writer = V1Writer(s)
    writer.ensure_target()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    schema = FlowSchema([SITE])
    readings = [Reading(SITE.id, "E1", Role.EXTRACTION, t0 + timedelta(minutes=i), 60.0 + (i % 2),
                        1000.0 + i) for i in range(3 * 60)]
    writer.write(schema.lines(readings))
    # what the hourly continuous query does each hour, run here over the stored hours (as a back-fill would)
    (cq,) = [q for name, q in continuous_queries(influxd, influx_db).items() if name.startswith("gshp_flow_1h")]
    select, group = cq[cq.index("SELECT"):cq.rindex(" END")].split(" GROUP BY ")
    span = f"time >= '{t0.isoformat()}' AND time < '{(t0 + timedelta(hours=3)).isoformat()}'"
    influxd.query(f"{select} WHERE {span} GROUP BY {group}", influx_db)
    start, stop = t0 - timedelta(days=30), t0 + timedelta(days=1)
    source = series_source("flow", start, stop, timedelta(hours=1), [d.every for d in s.downsample])
    assert source == '"ds_1h"."flow"'
    reader = InfluxReader(s)
    df = reader.query(f"SELECT rate_m3h, total_m3, readings FROM {source} WHERE site = 'hehua-plaza'")
    assert len(df) == 3
    assert list(df["total_m3"]) == [1059.0, 1119.0, 1179.0]  # last total of each hour
    assert list(df["readings"]) == [60, 60, 60]
    assert all(abs(r - 60.5) < 1e-9 for r in df["rate_m3h"])
    short = series_source("flow", t0, t0 + timedelta(hours=3), timedelta(hours=1), [d.every for d in s.downsample])
    assert short == '"flow"'  # a short range reads the raw readings
    reader.close()
    writer.close()
