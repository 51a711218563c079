"""Message text from Jinja2 templates: shipped defaults in zh and en, overridable per receiver.

A receiver's ``templates: DIR`` is searched first for ``<language>/<name>.j2`` (names: ``subject``,
``text``, ``html``, ``markdown``), then the shipped ``rules/notify/templates/<language>/<name>.j2``.
Templates see ``notices`` (a list of `NoticeView`: one incident change each; ``alerts`` is the same
list), ``repeat`` (0 or the reminder number), ``language`` and ``timezone``. Every value a template prints
is escaped for what the template makes: ``html`` templates HTML-escape it, ``markdown`` templates
backslash-escape markdown's metacharacters (and HTML's ``<`` ``>`` ``&``), so a site named ``**x** [y](z)``
or ``<b>`` shows as written and links nowhere; a value a template marks ``| safe`` is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from alerting.model import IncidentChange, IncidentKind, IncidentNotice, IncidentState, Severity, VolumeEstimate
from rules.notify.errors import NotifyError
from rules.notify.event import parse_event, sample_event

__all__ = ["TEMPLATE_NAMES", "NoticeView", "Renderer", "escape_markdown"]

TEMPLATE_NAMES = ("subject", "text", "html", "markdown")

_LABELS: dict[str, dict[Any, str]] = {
    "zh": {IncidentChange.OPENED: "新事件", IncidentChange.REOPENED: "再次发生", IncidentChange.ESCALATED: "升级",
           IncidentChange.RESOLVED: "已结束", IncidentChange.CASE_CLOSED: "已结案",
           Severity.CRITICAL: "严重", Severity.HIGH: "高", Severity.WARNING: "警告", Severity.INFO: "提示",
           IncidentKind.DISCHARGE: "疑似外排", IncidentKind.EVASION: "疑似规避监测",
           IncidentKind.METER_FAULT: "计量故障", IncidentKind.COMPLIANCE: "违反许可",
           IncidentKind.CALIBRATION: "计量检定到期"},
    "en": {IncidentChange.OPENED: "OPENED", IncidentChange.REOPENED: "REOPENED", IncidentChange.ESCALATED: "ESCALATED",
           IncidentChange.RESOLVED: "RESOLVED", IncidentChange.CASE_CLOSED: "CASE CLOSED",
           Severity.CRITICAL: "critical", Severity.HIGH: "high", Severity.WARNING: "warning", Severity.INFO: "info",
           IncidentKind.DISCHARGE: "suspected discharge", IncidentKind.EVASION: "suspected evasion of metering",
           IncidentKind.METER_FAULT: "meter fault", IncidentKind.COMPLIANCE: "permit breach",
           IncidentKind.CALIBRATION: "calibration past due"},
}


@dataclass(frozen=True)
class NoticeView:
    """An incident notice prepared for templates: local times, labels in the receiver's language, the link."""

    notice: IncidentNotice
    language: str
    tz: ZoneInfo
    public_url: str | None

    def __getattr__(self, name: str) -> Any:  # the incident's own fields: site, site_name, district, …
        return getattr(self.notice.incident, name)

    @property
    def change(self) -> str:
        return self.notice.change.value

    @property
    def outcome(self) -> str | None:
        return self.notice.outcome

    @property
    def firing(self) -> bool:
        """Still open (red) rather than ended or closed (green)."""
        return self.notice.incident.state is IncidentState.OPEN and self.notice.change is not IncidentChange.RESOLVED

    @property
    def state_label(self) -> str:
        return _LABELS[self.language][self.notice.change]

    @property
    def severity_label(self) -> str:
        return _LABELS[self.language][self.notice.incident.severity]

    @property
    def kind_label(self) -> str:
        return _LABELS[self.language][self.notice.incident.kind]

    @property
    def volume(self) -> VolumeEstimate | None:
        return self.notice.incident.volume_m3

    @property
    def summary(self) -> str:
        return self.notice.incident.text(self.language)

    @property
    def rules(self) -> Mapping[str, Mapping[str, Any]]:
        return self.notice.incident.rules

    @property
    def since(self) -> str:
        """The estimated onset, in the configured time zone (``2026-07-01 08:00``)."""
        return _local(self.notice.incident.started_at, self.tz)

    @property
    def first_firing(self) -> str:
        return _local(self.notice.incident.first_firing_at, self.tz)

    @property
    def ended(self) -> str | None:
        end = self.notice.incident.ended_at
        return _local(end, self.tz) if end else None

    @property
    def at_local(self) -> str:
        return _local(self.notice.at, self.tz)

    @property
    def link(self) -> Markup | None:
        """The incident on the board, or None without ``api.public_url``. Printed as it is: the configured
        URL holds no space, quote or bracket, and the incident id is hex; anything else is percent-encoded."""
        url = self.notice.link or (
            f"{self.public_url.rstrip('/')}/incidents/{self.notice.incident.id}" if self.public_url else None)
        return None if url is None else Markup(quote(url, safe=_URL_SAFE))


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~&$^])")
_LINE_START = re.compile(r"^(\s*)([-=]|\d+[.)])(?=\s|$)")
_BREAK = re.compile(r"[\r\n\u2028\u2029]+")


def escape_markdown(text: str) -> str:
    """Text that markdown (DingTalk, WeCom, CommonMark) shows as written: metacharacters and HTML's
    ``<`` ``>`` ``&`` backslash-escaped, a list or heading marker at the start escaped, breaks as spaces."""
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", _BREAK.sub(" ", text))
    return _LINE_START.sub(lambda m: m[1] + m[2][:-1] + "\\" + m[2][-1], text)


@jinja2.pass_context
def _finalize(context: jinja2.runtime.Context, value: Any) -> Any:
    """Escape what a markdown template prints (html templates have jinja2's autoescape)."""
    if context.name is not None and context.name.endswith("markdown.j2") and not isinstance(value, Markup):
        return escape_markdown(str(value))
    return value


def _local(t: datetime, tz: ZoneInfo) -> str:
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M")


_URL_SAFE = ":/?#@!$&*+,;=%~._-"


def _m3(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f} m³"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}%"


class Renderer:
    """Renders the four message parts for one receiver; `check()` renders a sample to fail early."""

    def __init__(self, language: str = "zh", template_dir: Path | None = None, tz: ZoneInfo | str = "Asia/Shanghai",
                 public_url: str | None = None) -> None:
        if language not in _LABELS:
            raise NotifyError(f"no templates for language {language!r}: use zh or en")
        self.language = language
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        self.public_url = public_url
        loaders: list[jinja2.BaseLoader] = []
        if template_dir is not None:
            if not Path(template_dir).is_dir():
                raise NotifyError(f"templates: {template_dir} is not a directory")
            loaders.append(jinja2.FileSystemLoader(str(template_dir)))
        loaders.append(jinja2.PackageLoader("rules.notify", "templates"))
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
                                      autoescape=lambda name: name is not None and "html" in name,
                                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
                                      finalize=_finalize)
        self.env.filters["m3"] = _m3
        self.env.filters["pct"] = _pct

    def render(self, name: str, events: Sequence[IncidentNotice], repeat: int = 0) -> str:
        if name not in TEMPLATE_NAMES:
            raise NotifyError(f"unknown template {name!r}: one of {', '.join(TEMPLATE_NAMES)}")
        try:
            tpl = self.env.get_template(f"{self.language}/{name}.j2")
            views = [NoticeView(e, self.language, self.tz, self.public_url) for e in events]
            return tpl.render(notices=views, alerts=views, repeat=repeat, language=self.language,
                              timezone=str(self.tz.key)).strip()
        except jinja2.TemplateError as exc:
            where = f" (line {exc.lineno})" if isinstance(exc, jinja2.TemplateSyntaxError) else ""
            raise NotifyError(f"template {self.language}/{name}.j2{where}: {exc}") from None

    def check(self) -> None:
        """Render every template with a sample notice so a broken override fails at start-up."""
        event = parse_event(sample_event())
        for name in TEMPLATE_NAMES:
            self.render(name, [event])
