"""The daily balance report download (the same as `gshp report`)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import Response

from collector.influx.reader import QueryError
from gshp.api.deps import Reader, ServiceClock, Settings, Store, ViewerScope
from gshp.api.errors import refused
from gshp.report import ReportFormat, render
from rules.settings import Language

router = APIRouter(tags=["api"])


@router.get("/api/reports/daily", response_class=Response, responses={200: {"content": {
    "text/csv": {}, "text/html": {},
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}, "description": "the report file"}})
def daily_report(date: str, scope: ViewerScope, config: Settings, reader: Reader, store: Store,
                 clock: ServiceClock, district: str | None = None,
                 format: ReportFormat = ReportFormat.CSV, language: Language = Language.ZH) -> Response:
    """The daily balance report: csv, xlsx or html, zh or en; a district-limited token gets its district."""
    from gshp.report.build import build_daily_report  # imports pandas: only when a report is asked for
    from rules.report import ReportError

    try:
        day = datetime.strptime(date, "%Y-%m-%d").date()
    except ValueError:
        raise refused(422, "date：请写成 YYYY-MM-DD", "date: write YYYY-MM-DD") from None
    district = scope.report_district(district)
    try:
        report = build_daily_report(config, day, district, reader, store,
                                    today=clock.now().astimezone(config.tz).date())
    except ReportError as exc:
        raise refused(422, "无法生成报表", str(exc)) from None
    except QueryError as exc:
        raise refused(503, "历史数据暂不可用", f"history is unavailable: {exc}") from None
    out = render(report, format.value, language.value)
    return Response(out.body, media_type=out.content_type, headers={
        "Content-Disposition": f"attachment; filename=\"gshp-daily-{day}.{format.value}\"; "
                               f"filename*=UTF-8''{quote(out.filename)}"})
