"""Rendering daily reports as CSV (UTF-8 with BOM), xlsx (openpyxl) or a self-contained HTML page.

One column list drives every format, so the CSV header, the xlsx sheets and the HTML tables never drift.
Headers are `<label> <key>`: the label in the report's language (Chinese by default) and a stable English
key, e.g. `抽水量(m³) extracted_m3`, so a person and a script can both read the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

import jinja2

from rules.events import rule_words
from rules.settings import Language, MaintenanceWindow

if TYPE_CHECKING:
    from rules.report import DailyReport, DistrictDay, SiteDay

__all__ = ["CONTENT_TYPES", "DISTRICT_COLUMNS", "FORMATS", "SITE_COLUMNS", "Column", "Rendered", "ReportFormat",
           "cell_text", "env", "render", "xlsx_table"]


class ReportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"
    HTML = "html"


FORMATS = tuple(f.value for f in ReportFormat)

CONTENT_TYPES = {
    ReportFormat.CSV: "text/csv; charset=utf-8",
    ReportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ReportFormat.HTML: "text/html; charset=utf-8",
}

Kind = Literal["text", "m3", "pct", "int"]


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str
    filename: str  # suggested download name (may hold the district's name: encode it for HTTP headers)


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    zh: str
    en: str
    kind: Kind
    get: Callable[[Any, Any, Language], Any]  # (report, its site or district row, language) → value

    def label(self, lang: Language) -> str:
        return self.zh if lang is Language.ZH else self.en

    def header(self, lang: Language) -> str:
        return f"{self.label(lang)} {self.key}"


_WORDS = {
    "yes": ("是", "yes"), "no": ("否", "no"), "total": ("合计", "Total"), "site": ("站点", "site"),
    "district": ("区县", "district"), "missing": ("缺数", "missing"),
}


def _w(word: str, lang: Language) -> str:
    zh, en = _WORDS[word]
    return zh if lang is Language.ZH else en


def _maintenance(report: DailyReport, windows: Sequence[MaintenanceWindow], lang: Language) -> str:
    tz = report.start.tzinfo
    parts = []
    for m in windows:
        a, b = m.start.astimezone(tz), m.end.astimezone(tz)
        fa = "%H:%M" if a.date() == report.day else "%m-%d %H:%M"
        fb = "%H:%M" if b.date() == report.day else "%m-%d %H:%M"
        cap = f"≤{m.volume_cap_m3:g} m³"
        parts.append(f"{a.strftime(fa)}–{b.strftime(fb)} {m.reason} ({cap})")
    return "; ".join(parts)


def _alerts(kind: str) -> Callable[[DailyReport, Any, Language], Any]:
    def get(r: DailyReport, s: SiteDay, lang: Language) -> Any:
        return s.alerts.get(kind, 0) if r.alerts_known else None
    return get


def _site_alert_rules(r: DailyReport, s: SiteDay, lang: Language) -> Any:
    """The rules that fired, in words (an officer reads 1小时水量差额, not balance_hour)."""
    if not r.alerts_known:
        return None
    return ("、" if lang is Language.ZH else ", ").join(rule_words(rule, lang) for rule in s.alert_rules)


def _district_name(r: DailyReport, d: DistrictDay, lang: Language) -> str:
    return d.district if d.district is not None else _w("total", lang)


def _measured(get: Callable[[SiteDay], Any]) -> Callable[[DailyReport, Any, Language], Any]:
    """A site's volume, or 缺数 / missing when no interval of the day was covered by all its meters."""
    def inner(r: DailyReport, s: SiteDay, lang: Language) -> Any:
        return get(s) if s.covered else _w("missing", lang)
    return inner


def _district_complete(r: DailyReport, d: DistrictDay, lang: Language) -> str:
    """是 / yes when every site's day is complete, else how many sites lack data (the sums leave it out)."""
    if d.complete == d.sites:
        return _w("yes", lang)
    n = d.sites - d.complete
    return f"否：{n} 站数据不全" if lang is Language.ZH else f"no: {n} site{'s' if n > 1 else ''} with missing data"


def _known(get: Callable[[DistrictDay], Any]) -> Callable[[DailyReport, Any, Language], Any]:
    def inner(r: DailyReport, d: DistrictDay, lang: Language) -> Any:
        return get(d) if r.alerts_known else None
    return inner


SITE_COLUMNS: tuple[Column, ...] = (
    Column("date", "日期", "Date", "text", lambda r, s, lang: r.day.isoformat()),
    Column("district", "区县", "District", "text", lambda r, s, lang: s.district),
    Column("site", "站点编号", "Site ID", "text", lambda r, s, lang: s.site),
    Column("site_name", "站点名称", "Site name", "text", lambda r, s, lang: s.name),
    Column("extracted_m3", "抽水量(m³)", "Extracted (m³)", "m3", _measured(lambda s: s.extracted_m3)),
    Column("reinjected_m3", "回灌量(m³)", "Reinjected (m³)", "m3", _measured(lambda s: s.reinjected_m3)),
    Column("deficit_m3", "差额(m³)", "Deficit (m³)", "m3", _measured(lambda s: s.deficit_m3)),
    Column("deficit_pct", "差额率(%)", "Deficit (%)", "pct", _measured(lambda s: s.deficit_pct)),
    Column("coverage_pct", "数据覆盖率(%)", "Data coverage (%)", "pct", lambda r, s, lang: s.coverage_pct),
    Column("arrival_pct", "到报率(%)", "Arrival rate (%)", "pct", lambda r, s, lang: s.arrival_pct),
    Column("complete", "数据完整", "Complete", "text", lambda r, s, lang: _w("yes" if s.complete else "no", lang)),
    Column("discharge_alerts", "排水告警(条)", "Discharge alerts", "int", _alerts("discharge")),
    Column("data_quality_alerts", "数据质量告警(条)", "Data-quality alerts", "int", _alerts("data_quality")),
    Column("alert_rules", "告警规则", "Alert rules", "text", _site_alert_rules),
    Column("counter_events", "计数器复位/跳变(次)", "Counter resets/jumps", "int",
           lambda r, s, lang: s.counter_events),
    Column("maintenance", "申报维护", "Declared maintenance", "text",
           lambda r, s, lang: _maintenance(r, s.maintenance, lang)),
    Column("discharge_meter_m3", "排水管计量(m³)", "Drain meter (m³)", "m3",
           lambda r, s, lang: s.discharge_meter_m3),
)

DISTRICT_COLUMNS: tuple[Column, ...] = (
    Column("date", "日期", "Date", "text", lambda r, d, lang: r.day.isoformat()),
    Column("district", "区县", "District", "text", _district_name),
    Column("sites", "站点数", "Sites", "int", lambda r, d, lang: d.sites),
    Column("extracted_m3", "抽水量(m³)", "Extracted (m³)", "m3", lambda r, d, lang: d.extracted_m3),
    Column("reinjected_m3", "回灌量(m³)", "Reinjected (m³)", "m3", lambda r, d, lang: d.reinjected_m3),
    Column("deficit_m3", "差额(m³)", "Deficit (m³)", "m3", lambda r, d, lang: d.deficit_m3),
    Column("deficit_pct", "差额率(%)", "Deficit (%)", "pct", lambda r, d, lang: d.deficit_pct),
    Column("online_sites", "在线站点数", "Online sites", "int", lambda r, d, lang: d.online),
    Column("online_pct", "在线率(%)", "Online rate (%)", "pct", lambda r, d, lang: d.online_pct),
    Column("arrival_pct", "到报率(%)", "Arrival rate (%)", "pct", lambda r, d, lang: d.arrival_pct),
    Column("complete_sites", "数据完整站点数", "Complete sites", "int", lambda r, d, lang: d.complete),
    Column("complete", "数据完整", "Complete", "text", _district_complete),
    Column("sites_with_alerts", "有告警站点数", "Sites with alerts", "int", _known(lambda d: d.with_alerts)),
    Column("sites_with_discharge_alerts", "有排水告警站点数", "Sites with discharge alerts", "int",
           _known(lambda d: d.with_discharge_alerts)),
    Column("sites_with_maintenance", "有申报维护站点数", "Sites with maintenance", "int",
           lambda r, d, lang: d.with_maintenance),
    Column("discharge_meter_m3", "排水管计量(m³)", "Drain meter (m³)", "m3",
           lambda r, d, lang: d.discharge_meter_m3),
)


def cell_text(value: Any, kind: Kind, grouping: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, str):  # a word in a figure's place (缺数 / missing)
        return value
    if kind in ("m3", "pct"):
        return f"{value:,.2f}" if grouping else f"{value:.2f}"
    return str(value)


def _district_rows(r: DailyReport) -> list[DistrictDay]:
    return [*r.districts, r.total]


# ------------------------------------------------------------------------------------------------ csv

def _csv(reports: Sequence[DailyReport], lang: Language) -> bytes:
    """One table: a row per site, then the district rows and the total row of each day. `row_type` tells
    them apart; columns that do not apply to a row are empty."""
    site_keys = [c.key for c in SITE_COLUMNS]
    extra = [c for c in DISTRICT_COLUMNS if c.key not in site_keys]
    columns = [*SITE_COLUMNS, *extra]
    by_key_d = {c.key: c for c in DISTRICT_COLUMNS}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([f"{'类型' if lang is Language.ZH else 'Row'} row_type", *(c.header(lang) for c in columns)])
    for r in reports:
        for s in r.sites:
            w.writerow(["site", *(cell_text(c.get(r, s, lang), c.kind) if c in SITE_COLUMNS else ""
                                  for c in columns)])
        for d in _district_rows(r):
            row = ["district" if d.district is not None else "total"]
            for c in columns:
                dc = by_key_d.get(c.key)
                row.append(cell_text(dc.get(r, d, lang), dc.kind) if dc is not None else "")
            w.writerow(row)
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


# ------------------------------------------------------------------------------------------------ xlsx

_NUMBER_FORMATS = {"m3": "#,##0.00", "pct": "0.00", "int": "0", "text": "@"}
_SHEETS = {"sites": ("站点", "Sites"), "districts": ("区县", "Districts"), "about": ("说明", "About")}


def xlsx_table(ws: Any, columns: Sequence[Column], rows: Sequence[tuple[Any, Any, str]], lang: Language) -> None:
    """One sheet: the header row, a row per (report, row, mark) — mark `alert`, `warn` or `total` colours it —,
    number formats per column kind, frozen header, filter, widths to fit."""
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    bold = Font(bold=True)
    fills = {"alert": PatternFill("solid", fgColor="F8CBAD"), "warn": PatternFill("solid", fgColor="FFF2CC")}
    ws.append([c.header(lang) for c in columns])
    for cell in ws[1]:
        cell.font = bold
        cell.fill = PatternFill("solid", fgColor="DDE6F0")
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    widths = [max(10, min(40, len(c.header(lang)) + 2)) for c in columns]
    for r, item, mark in rows:
        values = [c.get(r, item, lang) for c in columns]
        ws.append(values)
        row = ws.max_row
        for n, (c, v) in enumerate(zip(columns, values, strict=True)):
            cell = ws.cell(row=row, column=n + 1)
            cell.number_format = _NUMBER_FORMATS[c.kind]
            if mark in fills:
                cell.fill = fills[mark]
            elif mark == "total":
                cell.font = bold
            if v is not None:
                widths[n] = max(widths[n], min(60, len(cell_text(v, c.kind, grouping=True)) * 2 + 2))
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = ws.dimensions
    for n, width in enumerate(widths):
        ws.column_dimensions[get_column_letter(n + 1)].width = width
    ws.row_dimensions[1].height = 32


def _xlsx(reports: Sequence[DailyReport], lang: Language) -> bytes:
    from openpyxl import Workbook

    def sheet_name(key: str) -> str:
        zh, en = _SHEETS[key]
        return zh if lang is Language.ZH else en

    wb = Workbook()
    ws = wb.active
    ws.title = sheet_name("sites")
    xlsx_table(ws, SITE_COLUMNS, [(r, s, "alert" if s.alerts.get("discharge") else "warn" if not s.complete else "")
                                  for r in reports for s in r.sites], lang)
    xlsx_table(wb.create_sheet(sheet_name("districts")), DISTRICT_COLUMNS,
               [(r, d, "total" if d.district is None else "") for r in reports for d in _district_rows(r)], lang)
    about = wb.create_sheet(sheet_name("about"))
    for line in _about(reports, lang):
        about.append(line)
    about.column_dimensions["A"].width = 28
    about.column_dimensions["B"].width = 90
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _about(reports: Sequence[DailyReport], lang: Language) -> list[list[str]]:
    r0 = reports[0]
    zh = lang is Language.ZH
    rows = [
        ["报表" if zh else "Report", "地温空调抽灌平衡日报" if zh else "Daily extraction/reinjection balance"],
        ["日期" if zh else "Dates", ", ".join(r.day.isoformat() for r in reports)],
        ["时区" if zh else "Time zone", r0.timezone],
        ["区县" if zh else "District", r0.district or ("全部" if zh else "all")],
        ["统计间隔" if zh else "Interval", f"{r0.step_s / 60:g} min"],
        ["在线阈值" if zh else "Online threshold", f"{r0.online_threshold_pct:g} %"],
        ["告警记录" if zh else "Alert records", ("已读取" if zh else "read") if r0.alerts_known
         else ("未提供（告警列留空）" if zh else "not available (alert columns left empty)")],
    ]
    for r in reports:
        rows.extend([["注" if zh else "Note", n] for n in r.notes])
    rows.append([])
    rows.extend([[c.header(lang), c.en if zh else c.zh] for c in (*SITE_COLUMNS, *DISTRICT_COLUMNS[2:])])
    return rows


# ------------------------------------------------------------------------------------------------ html

_TEMPLATE = "daily.html.j2"


def env() -> jinja2.Environment:
    """The report templates' environment: autoescaped, strict, with the `cell` filter for table values."""
    e = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    e.filters["cell"] = lambda v, kind: cell_text(v, kind, grouping=True)
    return e


def _html(reports: Sequence[DailyReport], lang: Language) -> bytes:
    text = resources.files("gshp.report").joinpath(_TEMPLATE).read_text(encoding="utf-8")
    zh = lang is Language.ZH
    days = []
    for r in reports:
        sites = [{"cells": [(c.get(r, s, lang), c.kind) for c in SITE_COLUMNS],
                  "cls": "alert" if s.alerts.get("discharge") else "warn" if not s.complete else ""}
                 for s in r.sites]
        districts = [{"cells": [(c.get(r, d, lang), c.kind) for c in DISTRICT_COLUMNS],
                      "cls": "total" if d.district is None else ""} for d in _district_rows(r)]
        days.append({"report": r, "sites": sites, "districts": districts,
                     "start": r.start.strftime("%Y-%m-%d %H:%M"), "end": r.end.strftime("%Y-%m-%d %H:%M")})
    page = env().from_string(text).render(
        zh=zh, lang=lang.value, days=days, about=_about(reports, lang)[:7],
        site_headers=[c.label(lang) for c in SITE_COLUMNS], site_kinds=[c.kind for c in SITE_COLUMNS],
        district_headers=[c.label(lang) for c in DISTRICT_COLUMNS],
        title=("地温空调抽灌平衡日报" if zh else "Daily extraction/reinjection balance"),
        first=reports[0].day.isoformat(), last=reports[-1].day.isoformat())
    return page.encode("utf-8")


# ------------------------------------------------------------------------------------------------ entry

_RENDERERS: dict[ReportFormat, Callable[[Sequence[DailyReport], Language], bytes]] = {
    ReportFormat.CSV: _csv, ReportFormat.XLSX: _xlsx, ReportFormat.HTML: _html,
}


def render(report: DailyReport | Sequence[DailyReport], fmt: ReportFormat | str = ReportFormat.CSV,
           language: Language | str = Language.ZH) -> Rendered:
    """One or several consecutive days' reports as a file: its bytes, content type and a file name."""
    reports = list(report) if isinstance(report, Sequence) else [report]
    if not reports:
        raise ValueError("render needs at least one report")
    f = ReportFormat(fmt)
    lang = Language(language)
    first, last = reports[0], reports[-1]
    span = first.day.isoformat() if len(reports) == 1 else f"{first.day.isoformat()}_{last.day.isoformat()}"
    name = f"gshp-daily-{span}" + (f"-{first.district}" if first.district else "") + f".{f.value}"
    return Rendered(_RENDERERS[f](reports, lang), CONTENT_TYPES[f], name)
