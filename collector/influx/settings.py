"""Typed configuration of the InfluxDB connection (`influx:` in the config file)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from collector.duration import Duration
from collector.problems import ZhEn

__all__ = ["Downsample", "InfluxApi", "InfluxSettings"]


class InfluxApi(StrEnum):
    V1 = "v1"  # POST /write?db=&rp= (InfluxDB 1.x)
    V2 = "v2"  # influxdb-client, /api/v2/write (InfluxDB 2.x, 3.x, 1.8+)


class Downsample(BaseModel):
    """One downsampling level: the series averaged over `every`, kept for `keep` (10 years by default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    every: Duration
    keep: Duration = timedelta(days=3650)

    @model_validator(mode="after")
    def _sizes(self) -> Downsample:
        if self.every < timedelta(seconds=1) or self.every.total_seconds() % 1:
            raise ValueError(ZhEn("every：须为整数秒，至少 1s（如 1m、1h）",
                                  "every: a whole number of seconds, at least 1s (e.g. 1m, 1h)"))
        if self.keep and self.keep < self.every:
            raise ValueError(ZhEn("keep 须长于 every（或为 0，表示永久保留）",
                                  "keep must be longer than every (or 0 to keep forever)"))
        return self


class InfluxSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(default="http://127.0.0.1:8086", pattern=r"^https?://")
    api: InfluxApi = InfluxApi.V2
    org: str | None = None
    bucket: str = Field(default="gshp", min_length=1, description="bucket (v2) or database name (v1)")
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    retention_policy: str | None = None
    retention: Duration | None = Field(
        default=None, description="v1: how long raw readings are kept (the raw policy's duration); "
                                  "unset leaves the database's policy as it is")
    downsample: tuple[Downsample, ...] = (Downsample(every=timedelta(minutes=1)),
                                          Downsample(every=timedelta(hours=1)))
    timeout: Duration = timedelta(seconds=10)
    verify_ssl: bool = True

    @model_validator(mode="after")
    def _credentials(self) -> InfluxSettings:
        if self.api is InfluxApi.V2 and (not self.org or self.token is None):
            raise ValueError(ZhEn("api v2 需要 `org:` 和 `token:`（InfluxDB 1.x 请用 api: v1）",
                                  "api v2 needs `org:` and `token:` (use api: v1 for InfluxDB 1.x)"))
        everies = [d.every for d in self.downsample]
        if len(set(everies)) != len(everies):
            raise ValueError(ZhEn("downsample：每个 `every` 只能出现一次", "downsample: each `every` may appear once"))
        if self.retention is not None and self.retention < timedelta(days=1):
            raise ValueError(ZhEn("retention：至少 1d（原始读数即证据，400d 是稳妥的选择）",
                                  "retention: at least 1d (raw readings are the evidence; 400d is a sound choice)"))
        return self
