"""Typed configuration of the InfluxDB connection (`influx:` in the config file)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from collector.duration import Duration

__all__ = ["InfluxApi", "InfluxSettings"]


class InfluxApi(StrEnum):
    V1 = "v1"  # POST /write?db=&rp= (InfluxDB 1.x)
    V2 = "v2"  # influxdb-client, /api/v2/write (InfluxDB 2.x, 3.x, 1.8+)


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
    timeout: Duration = timedelta(seconds=10)
    verify_ssl: bool = True

    @model_validator(mode="after")
    def _credentials(self) -> InfluxSettings:
        if self.api is InfluxApi.V2 and (not self.org or self.token is None):
            raise ValueError("api v2 needs `org:` and `token:` (use api: v1 for InfluxDB 1.x)")
        return self
