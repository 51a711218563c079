"""Typed configuration of Modbus gateways (one `gateways:` entry each)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collector.duration import Duration
from collector.model import Slug
from collector.problems import ZhEn

__all__ = ["Gateway", "Transport"]


class Transport(StrEnum):
    TCP = "tcp"
    RTU_OVER_TCP = "rtu-over-tcp"
    SERIAL = "serial"


class Gateway(BaseModel):
    """A Modbus peer: a TCP meter, a serial-to-Ethernet gateway, or a local RS-485 port."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Slug
    transport: Transport = Transport.TCP
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    device: str | None = None  # serial port, e.g. /dev/ttyUSB0
    baudrate: int = 9600
    parity: str = Field(default="N", pattern="^[NEO]$")
    stopbits: int = Field(default=1, ge=1, le=2)
    interval: Duration = timedelta(seconds=10)
    timeout: Duration = timedelta(seconds=1)
    retries: int = Field(default=1, ge=0, le=10)
    pause_between_requests: Duration = timedelta(0)
    pause_after_connect: Duration = timedelta(0)
    offline_after: int = Field(default=3, ge=1, description="consecutive failures before a meter is offline")
    backoff_max: Duration = Field(default=timedelta(minutes=5),
                                  description="longest cool-down of a failing meter / reconnect wait")
    reconnect_delay: Duration = Field(default=timedelta(seconds=1),
                                      description="first wait before reconnecting; doubles up to backoff_max")
    jitter: Duration = Field(default=timedelta(0),
                             description="random start phase of the gateway's cycles (spreads many gateways)")
    identity_interval: Duration = Field(
        default=timedelta(minutes=5),
        description="how often identity registers (serial number, totalizer unit/multiplier) are re-read")
    max_fill: int = Field(default=50, ge=0, le=124,
                          description="unused registers a read may span to cover two fields in one request")
    shard: int | None = Field(default=None, ge=0,
                              description="the shard whose collector polls this gateway (its sites move there)")

    @model_validator(mode="after")
    def _addressing(self) -> Gateway:
        if self.transport is Transport.SERIAL:
            if not self.device:
                raise ValueError(ZhEn("串口网关需要 `device:`（如 /dev/ttyUSB0）",
                                      "a serial gateway needs `device:` (e.g. /dev/ttyUSB0)"))
        elif not self.host or self.port is None:
            raise ValueError(ZhEn(f"{self.transport.value} 网关需要 `host:` 和 `port:`",
                                  f"a {self.transport.value} gateway needs `host:` and `port:`"))
        if self.timeout >= self.interval:
            raise ValueError(ZhEn("`timeout` 须短于 `interval`", "`timeout` must be shorter than `interval`"))
        if self.timeout <= timedelta(0):
            raise ValueError(ZhEn("`timeout` 须为正", "`timeout` must be positive"))
        if self.jitter >= self.interval:
            raise ValueError(ZhEn("`jitter` 须短于 `interval`", "`jitter` must be shorter than `interval`"))
        return self

    @property
    def address(self) -> str:
        """Where the gateway is, for messages: ``host:port`` or the serial device."""
        if self.transport is Transport.SERIAL:
            return str(self.device)
        return f"{self.host}:{self.port}"
