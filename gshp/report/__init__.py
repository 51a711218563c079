"""Daily balance reports: `gshp.report.build.build_daily_report` gathers and computes one day, `render` turns
it into CSV, xlsx or HTML. `gshp report` and the board's download both use these two functions; this package
imports only the rendering side, so that serving the API does not import pandas before a report is asked for."""

from gshp.report.render import FORMATS, Rendered, ReportFormat, render

__all__ = ["FORMATS", "Rendered", "ReportFormat", "render"]
