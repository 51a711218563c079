"""Typed configuration of the HJ 212 listener (`hj212:` in the config file)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from collector.duration import Duration
from collector.hj212.plan import DataKind
from collector.problems import ZhEn
from collector.telemetry.settings import ListenerSettings

__all__ = ["Hj212Settings", "Hj212Station"]


class Hj212Station(BaseModel):
    """A data logger allowed to upload: its MN and its access password (PW)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mn: str = Field(min_length=1, max_length=24, pattern=r"^[A-Za-z0-9_-]+$")
    password: SecretStr = Field(min_length=1, max_length=16)


class Hj212Settings(ListenerSettings):
    listen: str = Field(default="0.0.0.0:9212", pattern=r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$")
    stations: tuple[Hj212Station, ...] = ()
    minute_interval: Duration = Field(default=timedelta(minutes=1),
                                      description="the span of one minute-data upload (the loggers' MinInterval)")
    volume_data: DataKind = Field(default=DataKind.MINUTE,
                                  description="which uploads carry interval volumes: minute, hour or day data")

    @model_validator(mode="after")
    def _unique(self) -> Hj212Settings:
        seen: set[str] = set()
        for s in self.stations:
            if s.mn in seen:
                raise ValueError(ZhEn(f"站点 MN {s.mn!r} 出现了两次", f"station MN {s.mn!r} appears twice"))
            seen.add(s.mn)
        return self

    def passwords(self) -> dict[str, str]:
        return {s.mn: s.password.get_secret_value() for s in self.stations}
