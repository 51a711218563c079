"""Reads history with InfluxQL over ``/query`` into pandas DataFrames.

InfluxQL on ``/query`` is served by InfluxDB 1.x, by 2.x through its v1 compatibility API (DBRP
mapping), and by 3.x, so one reader serves every deployment. Values interpolated into a query are quoted
with `quote_literal` / `quote_ident`; nothing from a payload reaches a query unquoted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import requests

from collector.influx.influxql import quote_ident, quote_literal
from collector.influx.retention import series_source
from collector.influx.settings import InfluxApi, InfluxSettings
from collector.redact import redact

__all__ = ["InfluxReader", "QueryError", "quote_ident", "quote_literal"]


class QueryError(Exception):
    """InfluxDB could not answer a query; its message holds no secret (see `collector.redact`)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


def _time(ts: datetime) -> str:
    if ts.tzinfo is None:
        raise ValueError("query times must be timezone-aware")
    return quote_literal(ts.isoformat().replace("+00:00", "Z"))


class InfluxReader:
    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self._session = requests.Session()
        self._session.verify = settings.verify_ssl
        if settings.api is InfluxApi.V2 and settings.token is not None:
            self._session.headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
        elif settings.username and settings.password:
            self._session.auth = (settings.username, settings.password.get_secret_value())

    def query(self, q: str) -> pd.DataFrame:
        """Run one InfluxQL statement; a DataFrame with a tz-aware UTC `time` column plus tags and fields."""
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
        frames = []
        for result in r.json().get("results", []):
            if "error" in result:
                raise QueryError(f"InfluxDB could not run the query: {result['error']}")
            for series in result.get("series", []):
                df = pd.DataFrame(series["values"], columns=series["columns"])
                for tag, value in (series.get("tags") or {}).items():
                    df[tag] = value
                frames.append(df)
        if not frames:
            return pd.DataFrame(columns=["time"])
        df = pd.concat(frames, ignore_index=True)
        df["time"] = pd.to_datetime(df["time"], unit="ms", utc=True)
        return df

    def source(self, measurement: str, start: datetime, stop: datetime, step: timedelta) -> str:
        """The FROM clause for a read of `measurement` over [start, stop) at `step`: the raw series, or over a
        long range the downsampled one (`collector.influx.retention.series_source`)."""
        s = self.settings
        raw_since = datetime.now(UTC) - s.retention if s.retention is not None else None
        return series_source(measurement, start, stop, step, [d.every for d in s.downsample], raw_since)

    def flow(self, start: datetime, stop: datetime, site: str | None = None) -> pd.DataFrame:
        """Readings in [start, stop): columns ts, site, meter, role, rate_m3h, total_m3, signal_pct,
        error_code, volume_m3, period_s — sorted by ts."""
        where = f"time >= {_time(start)} AND time < {_time(stop)}"
        if site is not None:
            where += f" AND site = {quote_literal(site)}"
        df = self.query(f"SELECT rate_m3h, total_m3, signal_pct, error_code, volume_m3, period_s, site, meter, "
                        f"role FROM flow WHERE {where}")
        columns = ["ts", "site", "meter", "role", "rate_m3h", "total_m3", "signal_pct", "error_code", "volume_m3",
                   "period_s"]
        if df.empty:
            return pd.DataFrame(columns=columns)
        df = df.rename(columns={"time": "ts"})
        for c in columns:
            if c not in df:
                df[c] = None
        return df[columns].sort_values("ts", kind="stable").reset_index(drop=True)

    def close(self) -> None:
        self._session.close()
