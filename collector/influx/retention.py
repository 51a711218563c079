"""Retention and downsampling on InfluxDB 1.x: the retention policies and continuous queries the service
needs, planned as InfluxQL statements from what the database already has (pure), and the choice of which
series a long-range read takes.

Raw readings stay in the database's default retention policy (or `influx.retention_policy`) for
`influx.retention`; each `influx.downsample` entry gets its own policy (`ds_1m`, `ds_1h`, …) kept for its
`keep`, filled by a continuous query per measurement: mean rate, last total, worst signal and error code of
`flow`, and the last balance of each window of `balance`. Shrinking an existing policy deletes data, so the
plan only ever lengthens a policy unless `influx.retention` says otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.duration import format_duration
from collector.influx.influxql import quote_ident

__all__ = ["DOWNSAMPLED", "Policy", "downsample_policy", "plan_retention", "report_level", "series_source"]

DOWNSAMPLED: Mapping[str, str] = {
    "flow": ("mean(rate_m3h) AS rate_m3h, last(total_m3) AS total_m3, min(signal_pct) AS signal_pct, "
             "max(error_code) AS error_code, count(total_m3) AS readings, sum(volume_m3) AS volume_m3, "
             "sum(period_s) AS period_s"),
    "balance": ("last(extracted_m3) AS extracted_m3, last(reinjected_m3) AS reinjected_m3, "
                "last(deficit_m3) AS deficit_m3, last(deficit_pct) AS deficit_pct, last(complete) AS complete"),
}
"""Per downsampled measurement, the aggregates its continuous queries keep (tags are all kept)."""

LONG_RANGE = timedelta(days=7)
"""A read spanning more than this takes the coarsest downsampled series its step allows."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A retention policy as `SHOW RETENTION POLICIES` lists it."""

    name: str
    duration: timedelta  # 0: infinite
    default: bool = False


def downsample_policy(every: timedelta) -> str:
    """`1m` → `ds_1m`: the retention policy (and CQ suffix) of one downsampling level."""
    return f"ds_{format_duration(every)}"


def _influx_duration(td: timedelta) -> str:
    """InfluxQL durations take whole units: seconds are enough (`3600s`), `INF` for zero."""
    s = int(td.total_seconds())
    return "INF" if s == 0 else f"{s}s"


def _longer(have: timedelta, want: timedelta) -> bool:
    """`want` keeps more than `have` (0 is infinite)."""
    if have == timedelta(0):
        return False
    return want == timedelta(0) or want > have


def plan_retention(db: str, policies: Sequence[Policy], queries: Sequence[str], raw_policy: str | None,
                   retention: timedelta | None, levels: Sequence[tuple[timedelta, timedelta]]) -> list[str]:
    """The statements that bring `db` to the wanted retention: `queries` are the names of the database's
    continuous queries; `levels` are (every, keep) pairs. Idempotent: an up-to-date database gives []."""
    out: list[str] = []
    have = {p.name: p for p in policies}
    raw = raw_policy or next((p.name for p in policies if p.default), "autogen")
    if retention is not None:
        if raw not in have:
            out.append(f"CREATE RETENTION POLICY {quote_ident(raw)} ON {quote_ident(db)} DURATION "
                       f"{_influx_duration(retention)} REPLICATION 1")
        elif have[raw].duration != retention:
            out.append(f"ALTER RETENTION POLICY {quote_ident(raw)} ON {quote_ident(db)} DURATION "
                       f"{_influx_duration(retention)}")
    for every, keep in levels:
        rp = downsample_policy(every)
        if rp not in have:
            out.append(f"CREATE RETENTION POLICY {quote_ident(rp)} ON {quote_ident(db)} "
                       f"DURATION {_influx_duration(keep)} REPLICATION 1")
        elif _longer(have[rp].duration, keep):
            out.append(f"ALTER RETENTION POLICY {quote_ident(rp)} ON {quote_ident(db)} "
                       f"DURATION {_influx_duration(keep)}")
        for measurement, fields in DOWNSAMPLED.items():
            body = (f"SELECT {fields} INTO {quote_ident(db)}.{quote_ident(rp)}.{quote_ident(measurement)} "
                    f"FROM {quote_ident(db)}.{quote_ident(raw)}.{quote_ident(measurement)} "
                    f"GROUP BY time({_influx_duration(every)}), *")
            prefix = f"gshp_{measurement}_{format_duration(every)}_"
            name = prefix + hashlib.sha256(body.encode()).hexdigest()[:8]  # a changed query gets a new name
            stale = sorted(q for q in queries if q.startswith(prefix) and q != name)
            out += [f"DROP CONTINUOUS QUERY {quote_ident(q)} ON {quote_ident(db)}" for q in stale]
            if name not in queries:
                out.append(f"CREATE CONTINUOUS QUERY {quote_ident(name)} ON {quote_ident(db)} BEGIN {body} END")
    return out


def series_source(measurement: str, start: datetime, stop: datetime, step: timedelta,
                  levels: Sequence[timedelta], raw_since: datetime | None = None) -> str:
    """The FROM clause of a read over [start, stop) at `step`: the raw measurement, or the coarsest
    downsampled one whose interval fits the step when the range is long (> `LONG_RANGE`) or starts before
    what raw retention still holds (`raw_since`)."""
    long = stop - start > LONG_RANGE or (raw_since is not None and start < raw_since)
    fitting = [every for every in levels if every <= step]
    if not long or not fitting or measurement not in DOWNSAMPLED:
        return quote_ident(measurement)
    return f"{quote_ident(downsample_policy(max(fitting)))}.{quote_ident(measurement)}"


def report_level(levels: Sequence[timedelta], gap_tolerance: timedelta, bounds: Sequence[datetime]
                 ) -> timedelta | None:
    """The downsampled level a report over days with these `bounds` (local midnights) reads: the coarsest
    whose interval is at most the gap tolerance — one missing interval is then a gap the rules would count as
    missing coverage, as they would over raw readings — and divides every bound, so each day's first and last
    totals fall on interval edges. None: no level gives the report's figures, read the raw readings."""
    fitting = [every for every in levels if every <= gap_tolerance
               and all(b.timestamp() % every.total_seconds() == 0 for b in bounds)]
    return max(fitting, default=None)
