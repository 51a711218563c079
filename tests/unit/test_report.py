"""Daily balance report: day edges, resets, gaps, maintenance, district totals and the rendered files."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from openpyxl import load_workbook

from collector.model import Site
from gshp.report import render
from rules.replay import Readings, readings_from_frame
from rules.report import AlertSpan, ReportError, compute_daily_report, day_bounds
from rules.settings import RulesSettings

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 5, 5)
START, END = day_bounds(DAY, TZ)


def _site(site_id: str = "s1", district: str = "宛城区") -> Site:
    return Site(id=site_id, name=f"站点 {site_id}", district=district,
                meters=({"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}))  # type: ignore[arg-type]


def _rows(site: str, meter: str, start: datetime, minutes: int, every_min: float = 1.0, m3h: float = 60.0,
          total0: float = 5000.0) -> list[dict[str, object]]:
    out = []
    n = int(minutes / every_min) + 1
    for i in range(n):
        t = start + timedelta(minutes=i * every_min)
        out.append({"ts": t.timestamp(), "site": site, "meter": meter, "rate_m3h": m3h,
                    "total_m3": round(total0 + m3h * i * every_min / 60.0, 6)})
    return out


def _readings(rows: list[dict[str, object]]) -> Readings:
    return readings_from_frame(pd.DataFrame(rows))


def _day_of(site: str = "s1", every_min: float = 1.0, offset_min: float = 0.0) -> list[dict[str, object]]:
    begin = START - timedelta(hours=2) + timedelta(minutes=offset_min)
    return (_rows(site, "E1", begin, 28 * 60, every_min) + _rows(site, "R1", begin, 28 * 60, every_min,
                                                                     total0=100.0))


def test_the_local_day_runs_from_midnight_to_midnight_in_the_configured_zone() -> None:
    start_utc, length = START.astimezone(UTC), END - START
    assert start_utc == datetime(2026, 5, 4, 16, 0, tzinfo=UTC)
    assert length == timedelta(hours=24)


def test_day_edges_are_interpolated_across_midnight_in_shanghai() -> None:
    # readings every 7 minutes, none at midnight: the edges fall inside steps and are interpolated
    rep = compute_daily_report(DAY, TZ, [_site()], RulesSettings(), _readings(_day_of(every_min=7, offset_min=3)))
    s = rep.sites[0]
    assert s.extracted_m3 == pytest.approx(1440.0, abs=1e-6)  # 60 m³/h × 24 h
    assert s.reinjected_m3 == pytest.approx(1440.0, abs=1e-6)
    assert s.deficit_pct == pytest.approx(0.0, abs=1e-9)
    assert s.coverage_pct == 100.0 and s.complete


def test_readings_of_the_neighbouring_days_do_not_count() -> None:
    rows = _day_of()
    for r in rows:  # the days before and after ran at double flow: only the step shape at midnight matters
        t = float(r["ts"])  # type: ignore[arg-type]
        if t < START.timestamp() or t > END.timestamp():
            r["rate_m3h"] = 120.0
    rep = compute_daily_report(DAY, TZ, [_site()], RulesSettings(), _readings(rows))
    assert rep.sites[0].extracted_m3 == pytest.approx(1440.0, abs=1e-6)


def test_a_counter_reset_mid_day_counts_no_negative_volume_and_is_listed() -> None:
    rows = _day_of()
    noon = START + timedelta(hours=12)
    for r in rows:
        if r["meter"] == "R1" and float(r["ts"]) > noon.timestamp():  # type: ignore[arg-type]
            r["total_m3"] = round((float(r["ts"]) - noon.timestamp()) / 60.0, 6)  # type: ignore[arg-type]
    rep = compute_daily_report(DAY, TZ, [_site()], RulesSettings(), _readings(rows))
    s = rep.sites[0]
    assert s.reinjected_m3 == pytest.approx(1440.0, abs=1e-6)
    assert s.counter_events == 1
    assert s.complete


def test_a_gap_lowers_coverage_and_marks_the_day_incomplete() -> None:
    gap = (START + timedelta(hours=10)).timestamp(), (START + timedelta(hours=11)).timestamp()
    rows = [r for r in _day_of() if not (r["meter"] == "R1" and gap[0] < float(r["ts"]) < gap[1])]  # type: ignore[arg-type]
    rep = compute_daily_report(DAY, TZ, [_site()], RulesSettings(), _readings(rows))
    s = rep.sites[0]
    assert not s.complete
    assert s.coverage_pct == pytest.approx(100.0 * (288 - 12) / 288)  # one hour of 5-minute intervals
    # both sides are summed over the covered intervals only: the gap does not look like a deficit
    assert s.extracted_m3 == pytest.approx(1440.0 - 60.0, abs=1e-6)
    assert s.deficit_m3 == pytest.approx(0.0, abs=1e-6)
    assert rep.total.complete == 0 and rep.total.online == 1  # 95.8 % ≥ 90 %


def test_a_meter_that_stops_reporting_leaves_the_rest_of_the_day_uncovered() -> None:
    cut = (START + timedelta(hours=18)).timestamp()
    rows = [r for r in _day_of() if not (r["meter"] == "E1" and float(r["ts"]) > cut)]  # type: ignore[arg-type]
    rep = compute_daily_report(DAY, TZ, [_site()], RulesSettings(), _readings(rows))
    assert rep.sites[0].coverage_pct == pytest.approx(75.0)
    assert rep.total.online == 0


def test_maintenance_windows_overlapping_the_day_are_listed() -> None:
    settings = RulesSettings.model_validate({"sites": {"s1": {"maintenance": [
        {"from": "2026-05-05T10:00:00+08:00", "to": "2026-05-05T12:00:00+08:00", "reason": "回扬 R1",
         "volume_cap_m3": 80},
        {"from": "2026-05-05T23:30:00+08:00", "to": "2026-05-06T01:00:00+08:00", "reason": "跨夜回扬",
         "volume_cap_m3": 20},
        {"from": "2026-05-07T10:00:00+08:00", "to": "2026-05-07T12:00:00+08:00", "reason": "另一天",
         "volume_cap_m3": 80}]}}})
    rep = compute_daily_report(DAY, TZ, [_site()], settings, _readings(_day_of()))
    assert [m.reason for m in rep.sites[0].maintenance] == ["回扬 R1", "跨夜回扬"]
    assert rep.total.with_maintenance == 1
    text = render(rep, "csv").body.decode("utf-8-sig")
    assert "10:00–12:00 回扬 R1 (≤80 m³); 23:30–05-06 01:00 跨夜回扬 (≤20 m³)" in text


def _alert(site: str, kind: str, start: datetime, end: datetime | None, fired: bool = True,
           rule: str = "balance_hour") -> AlertSpan:
    return AlertSpan(id=f"{site}-{rule}-{start.timestamp()}", site=site, rule=rule, kind=kind, severity="high",
                     start=start, end=end, fired=fired)


def test_district_totals_online_rate_and_sites_with_alerts() -> None:
    sites = [_site("a1", "宛城区"), _site("a2", "宛城区"), _site("b1", "卧龙区")]
    rows = _day_of("a1") + _day_of("b1")
    gap = (START + timedelta(hours=3)).timestamp(), (START + timedelta(hours=9)).timestamp()
    rows += [r for r in _day_of("a2") if not (gap[0] < float(r["ts"]) < gap[1])]  # type: ignore[arg-type]
    alerts = [
        _alert("a1", "discharge", START + timedelta(hours=5), START + timedelta(hours=7)),
        _alert("a1", "data_quality", START - timedelta(days=2), None, rule="meter_offline"),  # still open
        _alert("a2", "discharge", START + timedelta(hours=5), START + timedelta(hours=5, minutes=5),
               fired=False),  # pending that cleared: not counted
        _alert("b1", "discharge", START - timedelta(hours=5), START - timedelta(hours=1)),  # the day before
    ]
    rep = compute_daily_report(DAY, TZ, sites, RulesSettings(), _readings(rows), alerts)
    assert [s.site for s in rep.sites] == ["a1", "a2", "b1"]
    a1 = rep.sites[0]
    assert dict(a1.alerts) == {"discharge": 1, "data_quality": 1}
    assert a1.alert_rules == ("balance_hour", "meter_offline")
    assert rep.sites[1].alert_count == 0 and rep.sites[2].alert_count == 0
    wancheng, wolong = rep.districts
    assert (wancheng.district, wancheng.sites, wancheng.online, wancheng.with_alerts) == ("宛城区", 2, 1, 1)
    assert wancheng.online_pct == 50.0 and wancheng.with_discharge_alerts == 1
    assert wancheng.extracted_m3 == pytest.approx(1440.0 + 1440.0 * 0.75, abs=1e-6)
    assert (wolong.sites, wolong.online, wolong.with_alerts) == (1, 1, 0)
    assert rep.total.sites == 3 and rep.total.online == 2
    assert rep.total.extracted_m3 == pytest.approx(wancheng.extracted_m3 + wolong.extracted_m3)
    only = compute_daily_report(DAY, TZ, sites, RulesSettings(), _readings(rows), alerts, district="卧龙区")
    assert [s.site for s in only.sites] == ["b1"] and only.total.sites == 1


def test_an_unknown_district_names_the_known_ones() -> None:
    with pytest.raises(ReportError, match="宛城区"):
        compute_daily_report(DAY, TZ, [_site()], RulesSettings(), _readings(_day_of()), district="nowhere")


def test_without_an_alert_store_the_alert_columns_stay_empty_not_zero() -> None:
    rep = compute_daily_report(DAY, TZ, [_site()], RulesSettings(), _readings(_day_of()))
    assert not rep.alerts_known
    lines = render(rep, "csv").body.decode("utf-8-sig").splitlines()
    header, site_row = lines[0].split(","), lines[1].split(",")
    assert site_row[header.index("排水告警(条) discharge_alerts")] == ""


def test_csv_has_a_bom_bilingual_headers_then_site_district_and_total_rows() -> None:
    sites = [_site("a1", "宛城区"), _site("b1", "卧龙区")]
    rep = compute_daily_report(DAY, TZ, sites, RulesSettings(), _readings(_day_of("a1") + _day_of("b1")), [])
    out = render(rep, "csv")
    assert out.body.startswith("\ufeff".encode())
    assert out.content_type == "text/csv; charset=utf-8" and out.filename == "gshp-daily-2026-05-05.csv"
    table = pd.read_csv(io.BytesIO(out.body), encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert "抽水量(m³) extracted_m3" in table.columns and "数据覆盖率(%) coverage_pct" in table.columns
    assert list(table["类型 row_type"]) == ["site", "site", "district", "district", "total"]
    assert list(table["区县 district"]) == ["宛城区", "卧龙区", "宛城区", "卧龙区", "合计"]
    assert table["抽水量(m³) extracted_m3"].tolist() == ["1440.00", "1440.00", "1440.00", "1440.00", "2880.00"]
    assert table["在线率(%) online_pct"].tolist()[2:] == ["100.00"] * 3
    en = render(rep, "csv", "en").body.decode("utf-8-sig")
    assert en.splitlines()[0].startswith("Row row_type,Date date,District district")


def test_xlsx_has_a_sheet_per_table_with_formats_and_a_frozen_header() -> None:
    rep = compute_daily_report(DAY, TZ, [_site()], RulesSettings(), _readings(_day_of()), [])
    out = render(rep, "xlsx")
    assert out.content_type.startswith("application/vnd.openxmlformats")
    wb = load_workbook(io.BytesIO(out.body))
    assert wb.sheetnames == ["站点", "区县", "说明"]
    ws = wb["站点"]
    assert ws.freeze_panes == "A2"
    header = [c.value for c in ws[1]]
    col = header.index("抽水量(m³) extracted_m3") + 1
    assert ws.cell(row=2, column=col).value == pytest.approx(1440.0)
    assert ws.cell(row=2, column=col).number_format == "#,##0.00"
    assert ws.column_dimensions["D"].width >= 10
    assert [c.value for c in wb["区县"]["B"]][1:] == ["宛城区", "合计"]


def test_html_is_self_contained_printable_and_bilingual() -> None:
    rep = compute_daily_report(DAY, TZ, [_site()], RulesSettings(), _readings(_day_of()), [])
    zh = render(rep, "html").body.decode()
    assert "地温空调抽灌平衡日报" in zh and "Microsoft YaHei" in zh and "@media print" in zh
    assert "<script" not in zh and "<link" not in zh and "http" not in zh
    assert "1,440.00" in zh and "站点 s1" in zh
    en = render(rep, "html", "en").body.decode()
    assert "Daily extraction/reinjection balance" in en and 'lang="en"' in en
    evil = compute_daily_report(DAY, TZ, [Site(id="s1", name="<b>x</b>", district="宛城区",
                                               meters=_site().meters)], RulesSettings(), _readings(_day_of()))
    assert "<b>x</b>" not in render(evil, "html").body.decode()


def test_several_days_render_into_one_file() -> None:
    rows = _rows("s1", "E1", START - timedelta(hours=1), 50 * 60) + _rows("s1", "R1", START - timedelta(hours=1),
                                                                          50 * 60, total0=1.0)
    reports = [compute_daily_report(DAY + timedelta(days=n), TZ, [_site()], RulesSettings(), _readings(rows), [])
               for n in range(2)]
    out = render(reports, "csv")
    assert out.filename == "gshp-daily-2026-05-05_2026-05-06.csv"
    table = pd.read_csv(io.BytesIO(out.body), encoding="utf-8-sig")
    assert table["日期 date"].tolist() == ["2026-05-05"] * 3 + ["2026-05-06"] * 3
    assert table["抽水量(m³) extracted_m3"].tolist() == [1440.0] * 6


def test_the_arrival_rate_counts_each_meters_slots_of_the_day_by_device_time() -> None:
    ten, eleven = (START + timedelta(hours=h) for h in (10, 11))
    rows = [r for r in _day_of() if not (r["meter"] == "R1"
                                         and ten.timestamp() <= float(r["ts"]) < eleven.timestamp())]  # type: ignore[arg-type]
    extra = dict(rows[200])
    extra["ts"] = float(extra["ts"]) + 20  # type: ignore[arg-type]  # a second reading in the same minute
    rows.append(extra)
    rows.sort(key=lambda r: float(r["ts"]))  # type: ignore[arg-type]
    other = _site("s2", "卧龙区")
    rep = compute_daily_report(DAY, TZ, [_site(), other], RulesSettings(), _readings(rows + _day_of("s2")),
                               intervals={("s2", "E1"): timedelta(minutes=2), ("s2", "R1"): timedelta(minutes=2)})
    s1, s2 = rep.sites
    assert (s1.arrival.expected, s1.arrival.arrived) == (2 * 1440, 2 * 1440 - 60)  # R1 silent 10:00–11:00
    assert (s2.arrival.expected, s2.arrival.arrived) == (2 * 720, 2 * 720)  # every 2 min expected: all there
    assert rep.total.arrival_pct == pytest.approx(100.0 * (4320 - 60) / 4320)
    assert [d.arrival_pct for d in rep.districts] == [s1.arrival_pct, 100.0]
    text = render(rep, "csv", "zh").body.decode("utf-8-sig")
    assert "到报率(%)" in text and "97.92" in text


def test_a_day_in_progress_is_covered_up_to_its_newest_reading_not_midnight() -> None:
    sites = [_site("a1", "宛城区"), _site("b1", "卧龙区")]
    begin = START - timedelta(hours=2)
    rows = [r for s in ("a1", "b1") for meter, total0 in (("E1", 5000.0), ("R1", 100.0))
            for r in _rows(s, meter, begin, 16 * 60 + 30, total0=total0)]  # until 14:30 local
    rep = compute_daily_report(DAY, TZ, sites, RulesSettings(), _readings(rows), [])
    assert rep.total.online == 2 and [s.coverage_pct for s in rep.sites] == [100.0, 100.0]
    assert rep.sites[0].extracted_m3 == pytest.approx(60.0 * 14.5, abs=1.0)
    assert any("day in progress" in n and "14:30" in n for n in rep.notes)
    table = pd.read_csv(io.BytesIO(render(rep, "csv").body), encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert table["在线率(%) online_pct"].tolist()[2:] == ["100.00"] * 3  # not 0.00 % for every district
    today = compute_daily_report(DAY, TZ, sites, RulesSettings(), _readings(rows), [], today=DAY)
    assert today.sites == rep.sites and today.notes == rep.notes


def test_a_day_that_is_over_is_judged_whole_when_its_readings_stop_early() -> None:
    sites = [_site("a1", "宛城区")]
    begin = START - timedelta(hours=2)
    rows = [r for meter, total0 in (("E1", 5000.0), ("R1", 100.0))
            for r in _rows("a1", meter, begin, 16 * 60 + 30, total0=total0)]  # the meters stop at 14:30 local
    rep = compute_daily_report(DAY, TZ, sites, RulesSettings(), _readings(rows), [],
                               today=DAY + timedelta(days=1))
    (site,) = rep.sites
    assert site.coverage_pct == pytest.approx(100.0 * 14.5 / 24, abs=0.5) and rep.total.online == 0
    assert site.extracted_m3 == pytest.approx(60.0 * 14.5, abs=1.0)
    assert not any("day in progress" in n for n in rep.notes)


def test_alert_rules_are_named_in_the_reports_language() -> None:
    alerts = [_alert("s1", "discharge", START + timedelta(hours=5), START + timedelta(hours=7)),
              _alert("s1", "data_quality", START + timedelta(hours=8), None, rule="meter_offline")]
    rep = compute_daily_report(DAY, TZ, [_site()], RulesSettings(), _readings(_day_of()), alerts)
    zh = pd.read_csv(io.BytesIO(render(rep, "csv").body), encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert zh["告警规则 alert_rules"].tolist()[0] == "1小时水量差额、流量计离线"
    en = pd.read_csv(io.BytesIO(render(rep, "csv", "en").body), encoding="utf-8-sig", dtype=str,
                     keep_default_na=False)
    assert en.iloc[0].tolist().count("1-hour deficit, meter offline") == 1
    html = render(rep, "html").body.decode()
    assert "balance_hour" not in html and "1小时水量差额" in html
    assert "td:first-child { white-space: nowrap; }" in html  # the date column does not wrap


def test_a_site_whose_reinjection_fell_silent_reads_missing_and_the_district_total_says_incomplete() -> None:
    # s2's reinjection meter stopped 19 h before the day began: no interval of the day is covered
    s2_end = START - timedelta(hours=19)
    rows = _day_of("s1") + _rows("s2", "E1", START - timedelta(hours=2), 28 * 60) + _rows(
        "s2", "R1", s2_end - timedelta(hours=5), 5 * 60, total0=100.0)
    rep = compute_daily_report(DAY, TZ, [_site("s1"), _site("s2")], RulesSettings(), _readings(rows))
    for lang, missing, incomplete in (("zh", "缺数", "否：1 站数据不全"),
                                      ("en", "missing", "no: 1 site with missing data")):
        text = render(rep, "csv", lang).body.decode("utf-8-sig").splitlines()
        header = text[0].split(",")
        by_site = {r.split(",")[header.index(next(h for h in header if h.endswith(" site")))]: r.split(",")
                   for r in text[1:]}
        s1, s2 = by_site["s1"], by_site["s2"]
        for key in ("extracted_m3", "reinjected_m3", "deficit_m3", "deficit_pct"):
            col = next(n for n, h in enumerate(header) if h.endswith(f" {key}"))
            assert s2[col] == missing, (key, s2[col])
            assert s1[col] not in (missing, "")
        complete = next(n for n, h in enumerate(header) if h.endswith(" complete"))
        total = next(r.split(",") for r in text[1:] if r.startswith("total,"))
        assert total[complete] == incomplete
    html = render(rep, "html", "zh").body.decode("utf-8")
    assert "缺数" in html and "否：1 站数据不全" in html
