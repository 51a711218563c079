"""Typed configuration shared by the telemetry listeners (`hj212:` and `szy206:` in the config file)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from collector.duration import Duration
from collector.problems import ZhEn

__all__ = ["ListenerSettings"]


class ListenerSettings(BaseModel):
    """Where a telemetry server listens and its bounds: connections, bytes buffered per connection, how
    long a silent (slow or half-open) connection is kept, readings per outbox commit, which device
    times are believed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    listen: str = Field(pattern=r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$", description="HOST:PORT")
    max_connections: int = Field(default=1000, ge=1, le=100_000)
    max_buffer: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024,
                            description="bytes of unframed input kept per connection")
    idle_timeout: Duration = Field(default=timedelta(minutes=15),
                                   description="close a connection that sent nothing for this long")
    batch_max: int = Field(default=1000, ge=1, le=100_000, description="frames per outbox commit")
    max_clock_skew: Duration = Field(default=timedelta(minutes=10),
                                     description="reject device times further in the future")
    max_age: Duration = Field(default=timedelta(days=30),
                              description="reject device times older than this (buffered uploads)")
    deadletter_max_rows: int = Field(default=100_000, ge=10)

    @field_validator("listen")
    @classmethod
    def _port_in_range(cls, v: str) -> str:
        if int(v.rsplit(":", 1)[1]) > 65535:
            raise ValueError(ZhEn("须为 主机:端口，端口在 0-65535 之间，如 0.0.0.0:9212",
                                  "must be HOST:PORT with a port of 0-65535, e.g. 0.0.0.0:9212"))
        return v

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])
