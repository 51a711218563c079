"""Monthly and annual compliance reports: a month of three sites — one pumping over its quota, one sealed that
starts pumping, one without a permit losing water — replayed through the engine into an alert store, then
summed per site and district and rendered as CSV, xlsx and HTML with the compliance table."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from gshp.config import Config, parse_config
from gshp.report.period import build_period_report, render_period
from rules.engine import Engine
from rules.period import Period, PeriodReport, period_days
from rules.replay import Readings, readings_from_frame, replay
from rules.store import AlertStore

TZ = ZoneInfo("Asia/Shanghai")
FEB = datetime(2026, 2, 1, tzinfo=TZ)
PUMPS_FROM = datetime(2026, 2, 20, 12, tzinfo=TZ)  # the sealed well starts pumping
PERMIT = ('{number: "取水(宛)字[2024]第00@N@号", holder: 物业, annual_quota_m3: 300000, max_rate_m3h: 150, '
          'wells: {extraction: 1, reinjection: 2}, valid_from: 2024-01-01, valid_to: 2028-12-31, status: @S@}')
METERS = "[{id: E1, role: extraction, interval: 10m}, {id: R1, role: reinjection, interval: 10m}]"
CONFIG = (f"""
timezone: Asia/Shanghai
state_dir: @STATE@
rules: {{evaluate_every: 15m}}
sites:
  - {{id: hehua, name: 向阳荷花广场, district: 宛城区, permit: @P1@, meters: {METERS}}}
  - {{id: well, name: 封停自备井, district: 宛城区, permit: @P2@, meters: {METERS}}}
  - {{id: school, name: 卧龙区第一中学, district: 卧龙区, meters: {METERS}}}
""".replace("@P1@", PERMIT.replace("@N@", "12").replace("@S@", "operating"))
          .replace("@P2@", PERMIT.replace("@N@", "13").replace("@S@", "sealed")))


def _meter(site: str, meter: str, ts: np.ndarray, rate: np.ndarray) -> pd.DataFrame:
    step_h = np.diff(ts, prepend=ts[0]) / 3600.0
    total = 1000.0 + np.cumsum(np.concatenate([[0.0], rate[:-1]]) * step_h)  # each step at the rate before it
    return pd.DataFrame({"ts": ts, "site": site, "meter": meter, "rate_m3h": rate, "total_m3": total.round(4)})


def _readings() -> Readings:
    ts = np.arange(FEB.timestamp() - 3600, (FEB + timedelta(days=28)).timestamp() + 3600 + 1, 600.0)
    pumping = np.where(ts >= PUMPS_FROM.timestamp(), 50.0, 0.0)
    frames = [_meter("hehua", "E1", ts, np.full(len(ts), 100.0)), _meter("hehua", "R1", ts, np.full(len(ts), 100.0)),
              _meter("well", "E1", ts, pumping), _meter("well", "R1", ts, pumping),
              _meter("school", "E1", ts, np.full(len(ts), 60.0)), _meter("school", "R1", ts, np.full(len(ts), 54.0))]
    return readings_from_frame(pd.concat(frames, ignore_index=True))


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Readings, AlertStore]]:
    state = tmp_path_factory.mktemp("period")
    config = parse_config(CONFIG.replace("@STATE@", str(state)), env={})
    readings = _readings()
    store = AlertStore(state / "alerts.sqlite")
    for _ in replay(Engine(config.sites, config.rules, config.tz, store=store), readings):
        pass
    yield config, readings, store
    store.close()


@pytest.fixture(scope="module")
def month(replayed: tuple[Config, Readings, AlertStore]) -> tuple[Config, PeriodReport]:
    config, readings, store = replayed
    return config, build_period_report(config, Period.MONTHLY, date(2026, 2, 1), None, readings, store,
                                       date(2026, 12, 3))


@pytest.fixture(scope="module")
def year(replayed: tuple[Config, Readings, AlertStore]) -> PeriodReport:
    """The year 2026 on 31 March: a period in progress, of which the readings cover February."""
    config, readings, store = replayed
    return build_period_report(config, Period.ANNUAL, date(2026, 1, 1), None, readings, store, date(2026, 3, 31))


def test_period_days_are_the_calendar_month_or_year() -> None:
    assert period_days(Period.MONTHLY, date(2026, 2, 17)) == (date(2026, 2, 1), date(2026, 3, 1))
    assert period_days(Period.ANNUAL, date(2026, 2, 17)) == (date(2026, 1, 1), date(2027, 1, 1))


def test_the_month_holds_each_site_against_its_permit(month: tuple[Config, PeriodReport]) -> None:
    _, r = month
    assert (r.label, r.start, r.end, r.incidents_known) == ("2026-02", date(2026, 2, 1), date(2026, 3, 1), True)
    sites = {s.site: s for s in r.sites}
    hehua, well, school = sites["hehua"], sites["well"], sites["school"]
    assert hehua.days == 28 and hehua.extracted_m3 == pytest.approx(100 * 24 * 28, rel=1e-6)
    assert hehua.quota_m3 == pytest.approx(300000 * 28 / 365)
    assert hehua.quota_used_pct == pytest.approx(100 * 67200 / (300000 * 28 / 365), rel=1e-6)
    assert hehua.reinjection_pct == pytest.approx(100.0) and hehua.online_pct == 100.0
    assert hehua.arrival_pct == pytest.approx(100.0)
    assert hehua.compliance_incidents == 1  # over its share of the quota at this pace: quota_projection
    assert well.must_be_dry and well.checked_days == 28 and well.pumping_days == 9  # 20th noon … 28th
    assert well.extracted_m3 == pytest.approx(50 * (12 + 24 * 8), rel=1e-6)
    assert well.compliance_incidents == 1  # sealed_pumping
    assert school.permit_status is None and school.quota_m3 is None and school.quota_used_pct is None
    assert school.reinjection_pct == pytest.approx(90.0) and school.incidents and not school.compliance_incidents
    wancheng, wolong = r.districts
    assert (wancheng.district, wancheng.sites, wancheng.permitted, wancheng.over_quota) == ("宛城区", 2, 2, 1)
    assert (wancheng.sealed, wancheng.sealed_checked, wancheng.sealed_pumping) == (1, 1, 1)
    assert wancheng.quota_m3 == pytest.approx(2 * 300000 * 28 / 365)
    assert wolong.quota_m3 is None and wolong.online_pct == 100.0
    assert r.total.sites == 3 and r.total.extracted_m3 == pytest.approx(sum(s.extracted_m3 for s in r.sites))
    assert r.total.arrival_pct == pytest.approx(100.0)


def test_the_month_renders_as_csv_with_the_compliance_table_first(month: tuple[Config, PeriodReport]) -> None:
    _, r = month
    out = render_period(r, "csv")
    assert out.filename == "gshp-monthly-2026-02.csv" and out.body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(out.body.decode("utf-8-sig"))))
    head = rows[0]
    for key in ("quota_m3", "extracted_m3", "quota_used_pct", "reinjection_pct", "compliance_incidents",
                "sealed_checked", "sealed_pumping", "online_pct", "arrival_pct", "sealed_check"):
        assert any(h.endswith(f" {key}") for h in head), key
    assert [row[0] for row in rows[1:]] == ["district", "district", "total", "site", "site", "site"]
    col = {h.split(" ")[-1]: n for n, h in enumerate(head)}
    assert rows[1][col["district"]] == "宛城区" and rows[1][col["sealed_pumping"]] == "1"
    assert rows[3][col["district"]] == "合计" and rows[3][col["online_pct"]] == "100.00"
    well = next(row for row in rows if row[col["site"]] == "well")
    assert well[col["sealed_check"]] == "发现取水9天（核查28/28天）" and well[col["permit_status"]] == "已封停"


def test_the_month_renders_as_xlsx_and_html(month: tuple[Config, PeriodReport]) -> None:
    _, r = month
    wb = load_workbook(io.BytesIO(render_period(r, "xlsx", "en").body))
    assert wb.sheetnames == ["Districts", "Sites", "About"]
    districts = list(wb["Districts"].values)
    assert districts[0][1] == "District district" and [row[1] for row in districts[1:]] == ["宛城区", "卧龙区", "Total"]
    assert [row[0] for row in list(wb["Sites"].values)[1:]] == ["2026-02"] * 3
    html = render_period(r, "html").body.decode("utf-8")
    assert "地温空调取水许可合规月报 2026年2月" in html and "表1　各区县地温空调取水许可执行情况" in html
    compliance = html[html.index('<table class="compliance">'):html.index("</table>")]
    assert "宛城区" in compliance and "合计" in compliance and "到报率(%)" in compliance and "在线率(%)" in compliance
    assert "发现取水9天（核查28/28天）" in html


def test_the_year_so_far_holds_each_site_to_its_share_of_the_quota(year: PeriodReport) -> None:
    assert (year.label, year.start, year.end) == ("2026", date(2026, 1, 1), date(2026, 4, 1))  # up to today
    assert any(n.startswith("period in progress: figures up to 2026-03-31") for n in year.notes)
    sites = {s.site: s for s in year.sites}
    hehua, well = sites["hehua"], sites["well"]
    assert hehua.days == 90 and hehua.quota_m3 == pytest.approx(300000 * 90 / 365)
    assert hehua.extracted_m3 == pytest.approx(100 * (24 * 28 + 2), rel=1e-6)  # an hour either side of February
    assert hehua.online_days == 28  # the days before and after the readings are not covered
    assert well.must_be_dry and (well.checked_days, well.pumping_days) == (28, 9)
    wancheng = year.districts[0]
    assert (wancheng.sealed, wancheng.sealed_checked, wancheng.sealed_pumping) == (1, 0, 1)  # checked 28 of 90 days


def test_the_year_renders_as_csv_xlsx_and_html_with_the_compliance_table(year: PeriodReport) -> None:
    out = render_period(year, "csv")
    assert out.filename == "gshp-annual-2026.csv"
    rows = list(csv.reader(io.StringIO(out.body.decode("utf-8-sig"))))
    col = {h.split(" ")[-1]: n for n, h in enumerate(rows[0])}
    assert [(row[0], row[col["district"]]) for row in rows[1:4]] == [("district", "宛城区"), ("district", "卧龙区"),
                                                                     ("total", "合计")]
    assert rows[1][col["period"]] == "2026" and rows[1][col["sealed_pumping"]] == "1"
    assert rows[1][col["sealed_checked"]] == "0" and rows[1][col["permitted_sites"]] == "2"
    well = next(row for row in rows if row[col["site"]] == "well")
    assert well[col["sealed_check"]] == "发现取水9天（核查28/90天）" and well[col["permit_status"]] == "已封停"
    xlsx = render_period(year, "xlsx")
    assert xlsx.filename == "gshp-annual-2026.xlsx"
    wb = load_workbook(io.BytesIO(xlsx.body))
    assert wb.sheetnames == ["区县合规", "站点", "说明"]
    districts = list(wb["区县合规"].values)
    assert [row[1] for row in districts[1:]] == ["宛城区", "卧龙区", "合计"] and districts[1][0] == "2026"
    about = dict(row[:2] for row in wb["说明"].values)
    assert about["报表"] == "地温空调取水许可合规年报 2026年" and about["统计期"] == "2026-01-01 – 2026-03-31"
    html = render_period(year, "html", "en").body.decode("utf-8")
    assert "Groundwater permit compliance, 2026" in html
    compliance = html[html.index('<table class="compliance">'):html.index("</table>")]
    assert "宛城区" in compliance and "Total" in compliance and "Found extracting" in compliance
    assert "extraction on 9 day(s) (checked 28/90)" in html


def _files(config: Config, tmp_path: Path) -> tuple[Path, Path]:
    """The config file and the readings as CSV, for `gshp report`."""
    cfg = tmp_path / "gshp.yaml"
    cfg.write_text(CONFIG.replace("@STATE@", str(config.state_dir)), encoding="utf-8")
    csv_file = tmp_path / "readings.csv"
    df = pd.DataFrame({"ts": _readings().ts.astype(np.int64), "site": _readings().site,
                       "meter": _readings().meter, "rate_m3h": _readings().rate, "total_m3": _readings().total})
    df.to_csv(csv_file, index=False)
    return cfg, csv_file


def _report(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gshp.cli", "report", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=300)


def test_gshp_report_monthly_writes_the_files(month: tuple[Config, PeriodReport], tmp_path: Path) -> None:
    cfg, csv_file = _files(month[0], tmp_path)
    out = tmp_path / "feb.xlsx"
    done = _report(cfg, "--monthly", "2026-02", "--readings", str(csv_file), "--format", "xlsx", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "monthly 2026-02, 3 site(s), 1 sealed" in done.stderr
    assert list(load_workbook(out)["区县合规"].values)[1][1] == "宛城区"
    bad = _report(cfg, "--monthly", "2026-13")
    assert bad.returncode == 2 and "is not a month" in bad.stderr


def test_gshp_report_annual_writes_the_year_so_far(month: tuple[Config, PeriodReport], tmp_path: Path) -> None:
    cfg, csv_file = _files(month[0], tmp_path)
    out = tmp_path / "2026.html"
    done = _report(cfg, "--annual", "2026", "--readings", str(csv_file), "--format", "html", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "annual 2026, 3 site(s), 1 sealed" in done.stderr
    html = out.read_text(encoding="utf-8")
    assert "地温空调取水许可合规年报 2026年" in html
    compliance = html[html.index('<table class="compliance">'):html.index("</table>")]
    assert "宛城区" in compliance and "合计" in compliance and "发现取水站点数" in compliance
    assert "发现取水9天（核查28/" in html  # of the days of the year so far: however late in the year this runs
