"""Gathering a day's report: readings from InfluxDB (or a recorded CSV), alerts from the alert store, the
computation in `rules.report`; the audit chain's head goes into the report's notes as an anchor. The HTTP API
and `gshp report` call the same `build_daily_report`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Protocol, runtime_checkable

import pandas as pd

from collector.model import Site
from gshp.config import Config
from rules.arrival import Counted
from rules.audit import AuditChain
from rules.replay import REQUIRED, Readings, readings_from_frame
from rules.report import (
    ONLINE_THRESHOLD_PCT,
    AlertSpan,
    DailyReport,
    ReportError,
    compute_daily_report,
    reading_span,
)
from rules.settings import MaintenanceWindow
from rules.store import AlertStore

__all__ = ["Downsampled", "FlowReader", "LevelReader", "Progress", "alert_spans", "audit_note", "build_daily_report",
           "read_downsampled", "read_flow"]

Progress = Callable[[int, int, str], None]
"""Called with (done, total, what) after each site's readings are read."""


class FlowReader(Protocol):
    """What a report reads readings through (`collector.influx.reader.InfluxReader`)."""

    def flow(self, start: datetime, stop: datetime, site: str | None = None) -> pd.DataFrame: ...


@runtime_checkable
class LevelReader(Protocol):
    """What a report reads a downsampled series through (`collector.influx.reader.InfluxReader`): with
    `level`, its rows stamped at each interval's end, with `readings`; and where the series begins."""

    def flow(self, start: datetime, stop: datetime, site: str | None = None,
             level: timedelta | None = None) -> pd.DataFrame: ...

    def downsampled_since(self, level: timedelta) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class Downsampled:
    """A report reads the downsampled series of `level` through `reader` instead of the raw readings."""

    reader: LevelReader
    level: timedelta


def _chosen(config: Config, district: str | None) -> list[Site]:
    chosen = [s for s in config.sites if district is None or s.district == district]
    if not chosen:
        known = ", ".join(sorted({s.district for s in config.sites})) or "none are configured"
        if district is None:
            raise ReportError("the config lists no sites: add them under `sites:`")
        raise ReportError(f"no site in district {district!r} (known districts: {known})")
    return chosen


def _frames(read: Callable[[str], pd.DataFrame], sites: Sequence[Site],
            progress: Progress | None) -> pd.DataFrame | None:
    """The rows of `sites`, one query per site (the site id is quoted by the reader)."""
    frames = []
    for n, site in enumerate(sites, 1):
        df = read(site.id)
        if len(df):
            frames.append(df)
        if progress is not None:
            progress(n, len(sites), site.id)
    return pd.concat(frames, ignore_index=True) if frames else None


def _no_readings() -> Readings:
    return readings_from_frame(pd.DataFrame({c: pd.Series([], dtype=float if c in ("ts", "rate_m3h", "total_m3")
                                                          else object) for c in REQUIRED}))


def read_flow(reader: FlowReader, sites: Sequence[Site], start: datetime, stop: datetime,
              progress: Progress | None = None) -> Readings:
    """The readings of `sites` in [start, stop)."""
    df = _frames(lambda site: reader.flow(start, stop, site=site), sites, progress)
    return _no_readings() if df is None else readings_from_frame(df)


def read_downsampled(source: Downsampled, sites: Sequence[Site], start: datetime, stop: datetime,
                     progress: Progress | None = None) -> tuple[Readings, Counted]:
    """The downsampled rows of `sites` in [start, stop) as readings (each stamped at its interval's end, its
    last total read by then, its interval volumes summed) and the readings each interval held."""
    every = source.level.total_seconds()
    df = _frames(lambda site: source.reader.flow(start, stop, site, source.level), sites, progress)
    if df is None:
        return _no_readings(), Counted(every, {})
    counts: dict[tuple[str, str], list[tuple[float, int]]] = {}
    held = pd.to_numeric(df["readings"], errors="coerce").fillna(0).astype(int).tolist()
    at = ((df["ts"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds() - every).tolist()
    for site, meter, t, n in zip(df["site"].tolist(), df["meter"].tolist(), at, held, strict=True):
        counts.setdefault((site, meter), []).append((float(t), n))
    return readings_from_frame(df), Counted(every, counts)


def alert_spans(store: AlertStore, sites: Iterable[str]) -> list[AlertSpan]:
    """Every stored alert of `sites` as a span; `fired` is read from its transitions when it resolved."""
    wanted = set(sites)
    out = []
    for a in store.history():
        if a.site not in wanted:
            continue
        fired = a.state == "firing" or (a.state == "resolved"
                                        and any(t.get("state") == "firing" for t in store.transitions(a.id)))
        out.append(AlertSpan(id=a.id, site=a.site, rule=a.rule, kind=a.kind.value, severity=a.severity.value,
                             start=a.starts_at.astimezone(UTC),
                             end=None if a.ends_at is None else a.ends_at.astimezone(UTC), fired=fired))
    return out


def build_daily_report(config: Config, day: date, district: str | None, reader: FlowReader | Downsampled | Readings,
                       store: AlertStore | None, online_threshold_pct: float = ONLINE_THRESHOLD_PCT,
                       progress: Progress | None = None, today: date | None = None) -> DailyReport:
    """The daily balance report of `day` (a local date in `config.tz`), optionally of one district; a day
    before `today` is over (`rules.report.compute_daily_report`).

    `reader` is an `InfluxReader` (or anything with its `flow(start, stop, site)`), a downsampled
    series read through one (`Downsampled`), or readings already parsed (`rules.replay.parse_readings`, for
    recorded CSV). `store` gives the alerts and the maintenance
    declared through the API; None = no alerts known (the report then says nothing about alerts, it does not
    claim there were none).
    """
    sites = _chosen(config, district)
    counted: Counted | None = None
    if isinstance(reader, Readings):
        readings = reader
        if progress is not None:
            progress(len(sites), len(sites), "readings")
    elif isinstance(reader, Downsampled):
        readings, counted = read_downsampled(reader, sites, *reading_span(day, config.tz, config.rules, sites),
                                             progress)
    else:
        start, stop = reading_span(day, config.tz, config.rules, sites)
        readings = read_flow(reader, sites, start, stop, progress)
    alerts = alert_spans(store, (s.id for s in sites)) if store is not None else None
    declared: dict[str, list[MaintenanceWindow]] = {}
    for m in store.maintenance() if store is not None else ():
        declared.setdefault(m.site, []).append(m.window)
    report = compute_daily_report(day, config.tz, config.sites, config.rules, readings, alerts, district,
                                  online_threshold_pct, declared, config.intervals(), counted, today)
    last = AuditChain(store).last() if store is not None else None
    if last is None:
        return report
    return replace(report, notes=(*report.notes, audit_note(last.seq, last.hash, last.at)))


def audit_note(seq: int, digest: str, at: str) -> str:
    """The audit chain's head as the report prints it: an anchor kept outside the state directory, for
    `gshp audit verify --anchor HASH@SEQ`."""
    return f"审计链头 audit chain head: {digest}@{seq} (最新记录 latest record {at})"
