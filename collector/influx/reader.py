"""Reads history with InfluxQL over ``/query``: plain rows (`InfluxReader.rows`), or pandas DataFrames for
the reports and exports (pandas is imported only by the reads that build one).

InfluxQL on ``/query`` is served by InfluxDB 1.x, by 2.x through its v1 compatibility API (DBRP
mapping), and by 3.x, so one reader serves every deployment. Values interpolated into a query are quoted
with `quote_literal` / `quote_ident`; nothing from a payload reaches a query unquoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests

from collector.influx.influxql import quote_ident, quote_literal
from collector.influx.retention import downsample_policy, series_source
from collector.influx.settings import InfluxApi, InfluxSettings
from collector.redact import redact

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["InfluxReader", "QueryError", "Rows", "quote_ident", "quote_literal"]


FLOW_COLUMNS = ("rate_m3h", "total_m3", "signal_pct", "error_code", "volume_m3", "period_s", "site", "meter",
                "role")


class QueryError(Exception):
    """InfluxDB could not answer a query; its message holds no secret (see `collector.redact`)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


def _time(ts: datetime) -> str:
    if ts.tzinfo is None:
        raise ValueError("query times must be timezone-aware")
    return quote_literal(ts.isoformat().replace("+00:00", "Z"))


@dataclass(frozen=True, slots=True)
class Rows:
    """A query's answer without pandas: column names (`time` first, in epoch milliseconds, then fields and
    tags) and one list of values per row."""

    columns: list[str]
    values: list[list[Any]]

    def column(self, name: str) -> list[Any]:
        """One column's values (None in every row when the answer has no such column)."""
        if name not in self.columns:
            return [None] * len(self.values)
        i = self.columns.index(name)
        return [v[i] for v in self.values]


class InfluxReader:
    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self._session = requests.Session()
        self._session.verify = settings.verify_ssl
        if settings.api is InfluxApi.V2 and settings.token is not None:
            self._session.headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
        elif settings.username and settings.password:
            self._session.auth = (settings.username, settings.password.get_secret_value())

    def rows(self, q: str) -> Rows:
        """Run one InfluxQL statement; every series' rows with its tags as columns, `time` in epoch ms."""
        params = {"db": self.settings.bucket, "q": q, "epoch": "ms"}
        if self.settings.retention_policy:
            params["rp"] = self.settings.retention_policy
        try:
            r = self._session.post(self.settings.url.rstrip("/") + "/query", params=params,
                                   timeout=self.settings.timeout.total_seconds() * 6)
        except requests.RequestException as exc:
            raise QueryError(f"cannot reach InfluxDB at {self.settings.url}: {type(exc).__name__}") from exc
        if r.status_code >= 300:
            raise QueryError(f"InfluxDB answered {r.status_code} to a query: {r.text[:300]}")
        columns: list[str] = ["time"]
        values: list[list[Any]] = []
        for result in r.json().get("results", []):
            if "error" in result:
                raise QueryError(f"InfluxDB could not run the query: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags") or {}
                for c in [*series["columns"], *tags]:
                    if c not in columns:
                        columns.append(c)
                at = [columns.index(c) for c in series["columns"]]
                tag_at = [(columns.index(t), v) for t, v in tags.items()]
                for row in series["values"]:
                    out: list[Any] = [None] * len(columns)
                    for i, v in zip(at, row, strict=True):
                        out[i] = v
                    for i, v in tag_at:
                        out[i] = v
                    values.append(out)
        width = len(columns)
        for row in values:  # a later series may have added columns
            row.extend([None] * (width - len(row)))
        return Rows(columns, values)

    def query(self, q: str) -> pd.DataFrame:
        """Run one InfluxQL statement; a DataFrame with a tz-aware UTC `time` column plus tags and fields."""
        import pandas as pd

        rows = self.rows(q)
        df = pd.DataFrame(rows.values, columns=rows.columns)
        df["time"] = pd.to_datetime(df["time"], unit="ms", utc=True)
        return df

    def source(self, measurement: str, start: datetime, stop: datetime, step: timedelta) -> str:
        """The FROM clause for a read of `measurement` over [start, stop) at `step`: the raw series, or over a
        long range the downsampled one (`collector.influx.retention.series_source`)."""
        s = self.settings
        raw_since = datetime.now(UTC) - s.retention if s.retention is not None else None
        return series_source(measurement, start, stop, step, [d.every for d in s.downsample], raw_since)

    def flow_rows(self, start: datetime, stop: datetime, site: str | None = None,
                  level: timedelta | None = None) -> Rows:
        """Readings in [start, stop) as `Rows` with columns time, then `FLOW_COLUMNS` — sorted by time.

        With `level`, the rows of that downsampled series instead (`ds_1m` for 1 minute), plus the `readings`
        column: one row per meter and interval, stamped at the interval's *end* (the time its last total was
        read by), with its mean rate, last total, summed interval volumes and the readings it held."""
        columns = FLOW_COLUMNS if level is None else (*FLOW_COLUMNS, "readings")
        shift = timedelta(0) if level is None else level
        where = f"time >= {_time(start - shift)} AND time < {_time(stop - shift)}"
        if site is not None:
            where += f" AND site = {quote_literal(site)}"
        source = "flow" if level is None else f"{quote_ident(downsample_policy(level))}.flow"
        rows = self.rows(f"SELECT {', '.join(columns)} FROM {source} WHERE {where}")
        at = [rows.columns.index(c) if c in rows.columns else None for c in ("time", *columns)]
        values: list[list[Any]] = [[row[i] if i is not None else None for i in at] for row in rows.values]
        if level is not None:
            ms = round(level.total_seconds() * 1000)
            for v in values:
                v[0] += ms
        values.sort(key=lambda v: v[0])
        return Rows(["time", *columns], values)

    def flow(self, start: datetime, stop: datetime, site: str | None = None,
             level: timedelta | None = None) -> pd.DataFrame:
        """Readings in [start, stop): columns ts, site, meter, role, rate_m3h, total_m3, signal_pct,
        error_code, volume_m3, period_s — sorted by ts. With `level`, the downsampled rows of `flow_rows`, with
        their `readings` column too."""
        import pandas as pd

        rows = self.flow_rows(start, stop, site, level)
        columns = ["ts", "site", "meter", "role", "rate_m3h", "total_m3", "signal_pct", "error_code", "volume_m3",
                   "period_s", *(["readings"] if level is not None else [])]
        if not rows.values:
            return pd.DataFrame(columns=columns)
        df = pd.DataFrame(rows.values, columns=["ts", *rows.columns[1:]])
        df["ts"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
        return df[columns]

    def downsampled_since(self, level: timedelta) -> datetime | None:
        """The start of the oldest interval the downsampled series of `level` holds with its reading counts;
        None when it holds none or cannot be read (no such policy or DBRP mapping, nothing downsampled yet, a
        series without counts; an unreachable InfluxDB then fails the raw read that follows, with its reason)."""
        try:
            rows = self.rows(f"SELECT first(readings) FROM {quote_ident(downsample_policy(level))}.flow")
        except QueryError:
            return None
        times = [t for t in rows.column("time") if t is not None]
        return datetime.fromtimestamp(min(times) / 1000, UTC) if times else None

    def close(self) -> None:
        self._session.close()
