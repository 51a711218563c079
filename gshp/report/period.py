"""Monthly and annual compliance reports (`gshp report --monthly YYYY-MM` / `--annual YYYY`): the daily reports
of the period gathered by `build_daily_report`, summed by `rules.period`, rendered as CSV, xlsx or HTML with
the per-district compliance table in the style of the water-resources bulletins (水资源公报): extraction
against the permitted quota, reinjection ratio, incidents, sealed sites checked, online rate (在线率) and
arrival rate (到报率). Read from InfluxDB, each day comes from the downsampled series where one holds it and
gives the same figures (`day_levels`), else from the raw readings."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any

from collector.duration import format_duration
from collector.influx.retention import downsample_policy, report_level
from gshp.config import Config
from gshp.report.build import Downsampled, FlowReader, LevelReader, Progress, build_daily_report
from gshp.report.render import CONTENT_TYPES, Column, Rendered, ReportFormat, cell_text, env, xlsx_table
from rules.period import DistrictPeriod, Period, PeriodReport, SitePeriod, compute_period_report, period_days
from rules.replay import Readings
from rules.report import ONLINE_THRESHOLD_PCT, DailyReport, day_bounds, reading_span
from rules.settings import Language
from rules.store import AlertStore

__all__ = ["PERIOD_DISTRICT_COLUMNS", "PERIOD_SITE_COLUMNS", "build_period_report", "day_levels", "render_period"]

_STATUS = {"approved": ("已批准", "approved"), "construction": ("施工中", "construction"),
           "operating": ("运行中", "operating"), "suspended": ("暂停取水", "suspended"), "sealed": ("已封停", "sealed")}


def _words(zh: str, en: str, lang: Language) -> str:
    return zh if lang is Language.ZH else en


def _status(r: PeriodReport, s: SitePeriod, lang: Language) -> str:
    if s.permit_status is None:
        return _words("无许可", "no permit", lang)
    zh, en = _STATUS[s.permit_status]
    return _words(zh, en, lang)


def _dry_check(r: PeriodReport, s: SitePeriod, lang: Language) -> str:
    """「无取水（核查31/31天）」 for a suspended or sealed site; empty for the others."""
    if not s.must_be_dry:
        return ""
    if s.pumping_days:
        return _words(f"发现取水{s.pumping_days}天（核查{s.checked_days}/{s.days}天）",
                      f"extraction on {s.pumping_days} day(s) (checked {s.checked_days}/{s.days})", lang)
    return _words(f"无取水（核查{s.checked_days}/{s.days}天）", f"dry (checked {s.checked_days}/{s.days})", lang)


def _district_name(r: PeriodReport, d: DistrictPeriod, lang: Language) -> str:
    return d.district if d.district is not None else _words("合计", "Total", lang)


def _incidents(get: Callable[[Any], int | None]) -> Callable[[PeriodReport, Any, Language], Any]:
    def inner(r: PeriodReport, row: Any, lang: Language) -> Any:
        return get(row) if r.incidents_known else None
    return inner


PERIOD_SITE_COLUMNS: tuple[Column, ...] = (
    Column("period", "统计期", "Period", "text", lambda r, s, lang: r.label),
    Column("district", "区县", "District", "text", lambda r, s, lang: s.district),
    Column("site", "站点编号", "Site ID", "text", lambda r, s, lang: s.site),
    Column("site_name", "站点名称", "Site name", "text", lambda r, s, lang: s.name),
    Column("permit_status", "许可状态", "Permit status", "text", _status),
    Column("quota_m3", "许可水量(m³)", "Permitted (m³)", "m3", lambda r, s, lang: s.quota_m3),
    Column("extracted_m3", "取水量(m³)", "Extracted (m³)", "m3", lambda r, s, lang: s.extracted_m3),
    Column("quota_used_pct", "占许可水量(%)", "Of quota (%)", "pct", lambda r, s, lang: s.quota_used_pct),
    Column("reinjected_m3", "回灌量(m³)", "Reinjected (m³)", "m3", lambda r, s, lang: s.reinjected_m3),
    Column("reinjection_pct", "回灌率(%)", "Reinjection ratio (%)", "pct", lambda r, s, lang: s.reinjection_pct),
    Column("incidents", "事件数", "Incidents", "int", _incidents(lambda s: s.incidents)),
    Column("compliance_incidents", "违反许可事件数", "Compliance incidents", "int",
           _incidents(lambda s: s.compliance_incidents)),
    Column("sealed_check", "封停核查", "Sealed-well check", "text", _dry_check),
    Column("online_pct", "在线率(%)", "Online rate (%)", "pct", lambda r, s, lang: s.online_pct),
    Column("arrival_pct", "到报率(%)", "Arrival rate (%)", "pct", lambda r, s, lang: s.arrival_pct),
)

PERIOD_DISTRICT_COLUMNS: tuple[Column, ...] = (
    Column("period", "统计期", "Period", "text", lambda r, d, lang: r.label),
    Column("district", "区县", "District", "text", _district_name),
    Column("sites", "站点数", "Sites", "int", lambda r, d, lang: d.sites),
    Column("permitted_sites", "持证站点数", "Permitted sites", "int", lambda r, d, lang: d.permitted),
    Column("quota_m3", "许可水量(m³)", "Permitted (m³)", "m3", lambda r, d, lang: d.quota_m3),
    Column("extracted_m3", "取水量(m³)", "Extracted (m³)", "m3", lambda r, d, lang: d.extracted_m3),
    Column("quota_used_pct", "占许可水量(%)", "Of quota (%)", "pct", lambda r, d, lang: d.quota_used_pct),
    Column("over_quota_sites", "超许可站点数", "Sites over quota", "int", lambda r, d, lang: d.over_quota),
    Column("reinjected_m3", "回灌量(m³)", "Reinjected (m³)", "m3", lambda r, d, lang: d.reinjected_m3),
    Column("reinjection_pct", "回灌率(%)", "Reinjection ratio (%)", "pct", lambda r, d, lang: d.reinjection_pct),
    Column("incidents", "事件数", "Incidents", "int", _incidents(lambda d: d.incidents)),
    Column("compliance_incidents", "违反许可事件数", "Compliance incidents", "int",
           _incidents(lambda d: d.compliance_incidents)),
    Column("sealed_sites", "封停站点数", "Sealed sites", "int", lambda r, d, lang: d.sealed),
    Column("sealed_checked", "全期核查站点数", "Checked every day", "int", lambda r, d, lang: d.sealed_checked),
    Column("sealed_pumping", "发现取水站点数", "Found extracting", "int", lambda r, d, lang: d.sealed_pumping),
    Column("online_pct", "在线率(%)", "Online rate (%)", "pct", lambda r, d, lang: d.online_pct),
    Column("arrival_pct", "到报率(%)", "Arrival rate (%)", "pct", lambda r, d, lang: d.arrival_pct),
)


def day_levels(config: Config, district: str | None, days: Sequence[date], reader: LevelReader,
               now: datetime) -> list[timedelta | None]:
    """Per day, the downsampled level its figures are read from, None for the raw readings: the level
    `collector.influx.retention.report_level` allows for these sites and days, for each day whose readings
    (with their margins) it holds — from its first interval up to the last one its continuous query has
    filled by `now`."""
    sites = [s for s in config.sites if district is None or s.district == district]
    if not sites or not days:
        return [None] * len(days)
    tolerance = min(config.rules.resolve(s.id, s.district).gap_tolerance for s in sites)
    bounds = [b for d in days for b in day_bounds(d, config.tz)]
    level = report_level([d.every for d in config.influx.downsample], tolerance, bounds)
    since = reader.downsampled_since(level) if level is not None else None
    if level is None or since is None:
        return [None] * len(days)
    spans = [reading_span(d, config.tz, config.rules, sites) for d in days]
    return [level if since <= a and b <= now - level else None for a, b in spans]


def _source_note(days: Sequence[date], levels: Sequence[timedelta | None]) -> str:
    """Which days were read from which series, in runs of consecutive days."""
    runs: list[tuple[date, date, timedelta | None]] = []
    for d, level in zip(days, levels, strict=True):
        if runs and runs[-1][2] == level:
            runs[-1] = (runs[-1][0], d, level)
        else:
            runs.append((d, d, level))
    parts = []
    for a, b, level in runs:
        span = a.isoformat() if a == b else f"{a.isoformat()} – {b.isoformat()}"
        what = ("原始读数 raw readings" if level is None else
                f"{format_duration(level)} 降采样序列 downsampled series ({downsample_policy(level)})")
        parts.append(f"{span}: {what}")
    return "数据来源 readings from: " + "; ".join(parts)


def build_period_report(config: Config, period: Period, first: date, district: str | None,
                        reader: FlowReader | LevelReader | Readings, store: AlertStore | None, today: date,
                        online_threshold_pct: float = ONLINE_THRESHOLD_PCT,
                        progress: Progress | None = None, now: datetime | None = None) -> PeriodReport:
    """The month or year holding `first`, day by day up to `today` at most (a period in progress). Read
    through an `InfluxReader`, each day comes from the downsampled series `day_levels` picks for it (`now`:
    the wall clock the continuous queries run by), else from the raw readings."""
    start, end = period_days(period, first)
    last = min(end, today + timedelta(days=1))
    n_days = max((last - start).days, 1)
    dates = [start + timedelta(days=n) for n in range(n_days)]
    levels: list[timedelta | None] = [None] * n_days
    if isinstance(reader, LevelReader):
        levels = day_levels(config, district, dates, reader, now or datetime.now(UTC))
    days: list[DailyReport] = []
    for n, (day, level) in enumerate(zip(dates, levels, strict=True)):

        def step(done: int, total: int, what: str, n: int = n, day: date = day) -> None:
            if progress is not None:
                progress(n * total + done, n_days * total, f"{day.isoformat()} {what}")

        source = reader if level is None or not isinstance(reader, LevelReader) else Downsampled(reader, level)
        days.append(build_daily_report(config, day, district, source, store, online_threshold_pct, step, today))
    incidents = store.incidents() if store is not None else None
    report = compute_period_report(period, days, config.sites, incidents, district)
    if not isinstance(reader, LevelReader):
        return report
    return replace(report, notes=(*report.notes, _source_note(dates, levels)))


def _rows(r: PeriodReport) -> list[DistrictPeriod]:
    return [*r.districts, r.total]


def _site_mark(s: SitePeriod) -> str:
    if s.pumping_days or (s.quota_used_pct or 0.0) > 100.0 or s.compliance_incidents:
        return "alert"
    return "warn" if s.days and s.online_days < s.days else ""


def _csv(r: PeriodReport, lang: Language) -> bytes:
    """One table: the district rows and the total (the compliance table), then a row per site; `row_type`
    tells them apart, columns that do not apply are empty."""
    keys = [c.key for c in PERIOD_DISTRICT_COLUMNS]
    columns = [*PERIOD_DISTRICT_COLUMNS, *(c for c in PERIOD_SITE_COLUMNS if c.key not in keys)]
    site_by_key = {c.key: c for c in PERIOD_SITE_COLUMNS}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([f"{_words('类型', 'Row', lang)} row_type", *(c.header(lang) for c in columns)])
    for d in _rows(r):
        w.writerow(["district" if d.district is not None else "total",
                    *(cell_text(c.get(r, d, lang), c.kind) if c in PERIOD_DISTRICT_COLUMNS else "" for c in columns)])
    for s in r.sites:
        row = ["site"]
        for c in columns:
            sc = site_by_key.get(c.key)
            row.append(cell_text(sc.get(r, s, lang), sc.kind) if sc is not None else "")
        w.writerow(row)
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _title(r: PeriodReport, lang: Language) -> str:
    if r.period is Period.MONTHLY:
        return _words(f"地温空调取水许可合规月报 {r.start.year}年{r.start.month}月",
                      f"Groundwater permit compliance, {r.start:%B %Y}", lang)
    return _words(f"地温空调取水许可合规年报 {r.start.year}年", f"Groundwater permit compliance, {r.start.year}",
                  lang)


def _about(r: PeriodReport, lang: Language) -> list[list[str]]:
    zh = lang is Language.ZH
    rows = [["报表" if zh else "Report", _title(r, lang)],
            ["统计期" if zh else "Period", f"{r.start.isoformat()} – {(r.end - timedelta(days=1)).isoformat()}"],
            ["时区" if zh else "Time zone", r.timezone],
            ["区县" if zh else "District", r.district or ("全部" if zh else "all")],
            ["在线阈值" if zh else "Online threshold", f"{r.online_threshold_pct:g} %"],
            ["事件记录" if zh else "Incident records", ("已读取" if zh else "read") if r.incidents_known
             else ("未提供（事件列留空）" if zh else "not available (incident columns left empty)")]]
    rows.extend([["注" if zh else "Note", n] for n in r.notes])
    return rows


def _xlsx(r: PeriodReport, lang: Language) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = _words("区县合规", "Districts", lang)
    xlsx_table(ws, PERIOD_DISTRICT_COLUMNS, [(r, d, "total" if d.district is None else "") for d in _rows(r)], lang)
    xlsx_table(wb.create_sheet(_words("站点", "Sites", lang)), PERIOD_SITE_COLUMNS,
               [(r, s, _site_mark(s)) for s in r.sites], lang)
    about = wb.create_sheet(_words("说明", "About", lang))
    for line in _about(r, lang):
        about.append(line)
    about.column_dimensions["A"].width = 20
    about.column_dimensions["B"].width = 90
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _html(r: PeriodReport, lang: Language) -> bytes:
    text = resources.files("gshp.report").joinpath("period.html.j2").read_text(encoding="utf-8")
    page = env().from_string(text).render(
        zh=lang is Language.ZH, title=_title(r, lang), about=_about(r, lang),
        district_headers=[c.label(lang) for c in PERIOD_DISTRICT_COLUMNS],
        districts=[{"cells": [(c.get(r, d, lang), c.kind) for c in PERIOD_DISTRICT_COLUMNS],
                    "cls": "total" if d.district is None else ""} for d in _rows(r)],
        site_headers=[c.label(lang) for c in PERIOD_SITE_COLUMNS],
        sites=[{"cells": [(c.get(r, s, lang), c.kind) for c in PERIOD_SITE_COLUMNS], "cls": _site_mark(s)}
               for s in r.sites])
    return page.encode("utf-8")


_RENDERERS: dict[ReportFormat, Callable[[PeriodReport, Language], bytes]] = {
    ReportFormat.CSV: _csv, ReportFormat.XLSX: _xlsx, ReportFormat.HTML: _html,
}


def render_period(report: PeriodReport, fmt: ReportFormat | str = ReportFormat.CSV,
                  language: Language | str = Language.ZH) -> Rendered:
    """A monthly or annual report as a file: its bytes, content type and a file name."""
    f = ReportFormat(fmt)
    name = f"gshp-{report.period.value}-{report.label}" + (f"-{report.district}" if report.district else "")
    return Rendered(_RENDERERS[f](report, Language(language)), CONTENT_TYPES[f], f"{name}.{f.value}")

