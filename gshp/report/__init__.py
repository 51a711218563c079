"""Daily balance reports: `build_daily_report` gathers and computes one day, `render` turns it into CSV,
xlsx or HTML. `gshp report` and the board's download both use these two functions."""

from gshp.report.build import FlowReader, alert_spans, build_daily_report, read_flow
from gshp.report.render import FORMATS, Rendered, ReportFormat, render
from rules.report import DailyReport, DistrictDay, ReportError, SiteDay

Report = DailyReport

__all__ = [
    "FORMATS",
    "DailyReport",
    "DistrictDay",
    "FlowReader",
    "Rendered",
    "Report",
    "ReportError",
    "ReportFormat",
    "SiteDay",
    "alert_spans",
    "build_daily_report",
    "read_flow",
    "render",
]
