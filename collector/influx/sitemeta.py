"""The `site` measurement: each site's display name and metadata, so stored history explains itself.

Site names are free text (Chinese, punctuation), so they are string *fields*, which line protocol carries
exactly; only the slug id and the district are tags. The field `label` (`<id>|<name>`, control characters as
spaces) is what a dashboard's site picker splits into the value it filters by and the name it shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from collector.influx.lineproto import format_line, to_ms
from collector.model import Site

__all__ = ["site_lines"]


def site_lines(sites: Iterable[Site], ts: datetime) -> list[str]:
    return [
        format_line("site", {"site": s.id, "district": s.district},
                    {"name": s.name, "label": _label(s), "operator": s.operator,
                     "location": s.location.address if s.location else None,
                     "lat": s.location.lat if s.location else None, "lon": s.location.lon if s.location else None,
                     "meters": ",".join(f"{m.id}:{m.role.value}" for m in s.meters)}, to_ms(ts))
        for s in sites
    ]


def _label(site: Site) -> str:
    name = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in site.name)
    return f"{site.id}|{name}"
