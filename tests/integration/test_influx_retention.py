"""Retention and downsampling on a real influxd: the writer creates the policies and continuous queries the
config asks for, idempotently, lengthens but never silently shortens a downsampled policy, a long-range
read takes the downsampled series the continuous queries fill, and a monthly report reads its days from
the 1-minute series — the same figures as from the raw readings, and still there once those are gone."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.influx.lineproto import FlowSchema
from collector.influx.reader import InfluxReader
from collector.influx.retention import DOWNSAMPLED, series_source
from collector.influx.settings import InfluxSettings
from collector.influx.writer import V1Writer
from collector.model import Reading, Role, Site
from gshp.config import Config, parse_config
from gshp.devstack import Influxd
from gshp.report.build import Downsampled, build_daily_report
from gshp.report.period import build_period_report
from rules.period import Period, PeriodReport

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
    assert reader.downsampled_since(timedelta(hours=1)) == t0
    assert reader.downsampled_since(timedelta(minutes=1)) is None  # its policy holds nothing yet
    assert reader.downsampled_since(timedelta(minutes=5)) is None  # no such policy
    df = reader.query(f"SELECT rate_m3h, total_m3, readings FROM {source} WHERE site = 'hehua-plaza'")
    assert len(df) == 3
    assert list(df["total_m3"]) == [1059.0, 1119.0, 1179.0]  # last total of each hour
    assert list(df["readings"]) == [60, 60, 60]
    assert all(abs(r - 60.5) < 1e-9 for r in df["rate_m3h"])
    short = series_source("flow", t0, t0 + timedelta(hours=3), timedelta(hours=1), [d.every for d in s.downsample])
    assert short == '"flow"'  # a short range reads the raw readings
    reader.close()
    writer.close()


TZ = ZoneInfo("Asia/Shanghai")
FEB = datetime(2026, 2, 1, tzinfo=TZ)
EVERY = 30.0  # s between readings
OUTAGE = (datetime(2026, 2, 10, 10, tzinfo=TZ), datetime(2026, 2, 10, 12, tzinfo=TZ))  # R1 silent
RESET = datetime(2026, 2, 15, 9, tzinfo=TZ)  # E1's totalizer restarts from 0
REPORT_CONFIG = """
timezone: Asia/Shanghai
state_dir: @STATE@
influx: {url: "@URL@", api: v1, bucket: @DB@@DOWNSAMPLE@}
sites:
  - {id: hehua-plaza, name: 向阳荷花广场, district: 宛城区, meters: [{id: E1, role: extraction, interval: 30s},
                                                                  {id: R1, role: reinjection, interval: 30s}]}
"""


def month_of_readings() -> list[Reading]:
    """February at one reading every 30 s (and an hour either side): extraction following the day's load,
    4 % of it not reinjected, R1 silent for two hours on the 10th, E1's totalizer reset on the 15th."""
    out: list[Reading] = []
    t, end = (FEB - timedelta(hours=1)).timestamp(), (FEB + timedelta(days=28, hours=1)).timestamp()
    e_total, r_total = 1000.0, 5000.0
    while t <= end:
        rate = 100.0 + 30.0 * math.sin(2 * math.pi * t / 86400)
        ts = datetime.fromtimestamp(t, UTC)
        out.append(Reading(SITE.id, "E1", Role.EXTRACTION, ts, rate, round(e_total, 3)))
        if not OUTAGE[0] <= ts < OUTAGE[1]:
            out.append(Reading(SITE.id, "R1", Role.REINJECTION, ts, 0.96 * rate, round(r_total, 3)))
        e_total = (0.0 if RESET.timestamp() <= t + EVERY < RESET.timestamp() + EVERY else e_total) + rate * EVERY / 3600
        r_total += 0.96 * rate * EVERY / 3600
        t += EVERY
    return out


def fill_downsampled(influxd: Influxd, db: str, raw_db: str, levels: tuple[str, ...]) -> None:
    """What the continuous queries of `db` do each interval, run once over the stored month (as a back-fill
    would), reading the raw readings of `raw_db`."""
    span = (f"time >= '{(FEB - timedelta(hours=1)).isoformat()}' AND "
            f"time < '{(FEB + timedelta(days=28, hours=1)).isoformat()}'")
    for name, cq in continuous_queries(influxd, db).items():
        if name.startswith(tuple(f"gshp_flow_{level}_" for level in levels)):
            select, group = cq[cq.index("SELECT"):cq.rindex(" END")].split(" GROUP BY ")
            select = select.replace(f'FROM "{db}".', f'FROM "{raw_db}".').replace(f"FROM {db}.", f"FROM {raw_db}.")
            (result,) = influxd.query(f"{select} WHERE {span} GROUP BY {group}", db)
            assert "error" not in result, result


def report_config(tmp: Path, influxd: Influxd, db: str, downsample: str = "") -> Config:
    return parse_config(REPORT_CONFIG.replace("@STATE@", str(tmp)).replace("@URL@", influxd.url)
                        .replace("@DB@", db).replace("@DOWNSAMPLE@", downsample), env={})


@pytest.fixture(scope="module")
def month(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Config, Config]]:
    """Three databases: `both` holds February raw and downsampled; `ds_only` the 1-minute and 1-hour series
    only, as history older than raw retention would be. Their configs, and `both`'s without downsampling."""
    tmp = tmp_path_factory.mktemp("month")
    both, ds_only = report_config(tmp, influxd, "month_both"), report_config(tmp, influxd, "month_ds_only")
    for config in (both, ds_only):
        V1Writer(config.influx).ensure_target()
    writer = V1Writer(both.influx)
    lines = FlowSchema([SITE]).lines(month_of_readings())
    for i in range(0, len(lines), 20_000):
        writer.write(lines[i:i + 20_000])
    writer.close()
    fill_downsampled(influxd, "month_both", "month_both", ("1m", "1h"))
    fill_downsampled(influxd, "month_ds_only", "month_both", ("1m", "1h"))
    (result,) = influxd.query("SELECT count(total_m3) FROM flow", "month_ds_only")
    assert not result.get("series")  # no raw reading there
    yield both, ds_only, report_config(tmp, influxd, "month_both", ", downsample: []")


def monthly(config: Config, now: datetime | None = None) -> PeriodReport:
    reader = InfluxReader(config.influx)
    try:
        return build_period_report(config, Period.MONTHLY, date(2026, 2, 1), None, reader, None, date(2026, 12, 3),
                                   now=now)
    finally:
        reader.close()


@pytest.fixture(scope="module")
def raw_month(month: tuple[Config, Config, Config]) -> PeriodReport:
    """February reported from the raw readings (downsampling not configured)."""
    return monthly(month[2])


def test_a_month_without_raw_readings_reports_from_the_downsampled_series(
        month: tuple[Config, Config, Config], raw_month: PeriodReport) -> None:
    raw, ds = raw_month, monthly(month[1])
    (r,), (s,) = raw.sites, ds.sites
    assert ds.notes[-1] == "数据来源 readings from: 2026-02-01 – 2026-02-28: 1m 降采样序列 downsampled series (ds_1m)"
    assert raw.notes[-1] == "数据来源 readings from: 2026-02-01 – 2026-02-28: 原始读数 raw readings"
    assert s.days == r.days == 28
    # ~67 000 m³ extracted: a day's edges move by at most one reading (30 s of flow), and the month telescopes
    assert abs(s.extracted_m3 - r.extracted_m3) < 1e-4 * r.extracted_m3
    assert abs(s.reinjected_m3 - r.reinjected_m3) < 1e-4 * r.reinjected_m3
    assert s.reinjection_pct is not None and r.reinjection_pct is not None
    assert abs(s.reinjection_pct - r.reinjection_pct) < 0.01
    assert (s.online_days, s.arrival) == (r.online_days, r.arrival)
    assert r.arrival.expected == 2 * 28 * 2880 and r.arrival.arrived == r.arrival.expected - 240  # the outage


def test_with_both_the_report_reads_the_downsampled_series_and_each_day_matches_raw(
        month: tuple[Config, Config, Config]) -> None:
    both, ds_only, _ = month
    report = monthly(both)
    (b,), (d,) = report.sites, monthly(ds_only).sites
    assert report.notes[-1].endswith("2026-02-01 – 2026-02-28: 1m 降采样序列 downsampled series (ds_1m)")
    assert (b.extracted_m3, b.reinjected_m3, b.arrival) == (d.extracted_m3, d.reinjected_m3, d.arrival)
    reader = InfluxReader(both.influx)
    for day in (date(2026, 2, 3), OUTAGE[0].date(), RESET.date()):
        (raw,) = build_daily_report(both, day, None, reader, None).sites
        (ds,) = build_daily_report(both, day, None, Downsampled(reader, timedelta(minutes=1)), None).sites
        for a, b_ in ((raw.extracted_m3, ds.extracted_m3), (raw.reinjected_m3, ds.reinjected_m3)):
            assert abs(a - b_) <= 2 * 130.0 * EVERY / 3600, day  # one reading's flow at each of the day's edges
        assert (raw.covered, raw.intervals, raw.arrival, raw.counter_events) == (
            ds.covered, ds.intervals, ds.arrival, ds.counter_events), day
    reader.close()


def test_the_days_not_yet_downsampled_are_read_raw(month: tuple[Config, Config, Config],
                                                   raw_month: PeriodReport) -> None:
    # the continuous queries have run up to noon on the 20th: the 19th's readings end at 00:15 on the 20th
    report = monthly(month[0], now=datetime(2026, 2, 20, 12, tzinfo=TZ))
    assert report.notes[-1] == ("数据来源 readings from: 2026-02-01 – 2026-02-19: 1m 降采样序列 downsampled series "
                                "(ds_1m); 2026-02-20 – 2026-02-28: 原始读数 raw readings")
    (mixed,), (raw,) = report.sites, raw_month.sites
    assert abs(mixed.extracted_m3 - raw.extracted_m3) < 1e-4 * raw.extracted_m3
    assert (mixed.online_days, mixed.arrival) == (raw.online_days, raw.arrival)
