"""Typed configuration of the SZY 206 listener (`szy206:` in the config file)."""

from __future__ import annotations

from pydantic import Field

from collector.szy206.plan import FlowUnit
from collector.telemetry.settings import ListenerSettings

__all__ = ["Szy206Settings"]


class Szy206Settings(ListenerSettings):
    listen: str = Field(default="0.0.0.0:9206", pattern=r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$")
    flow_unit: FlowUnit = Field(default=FlowUnit.M3H, description="unit of the terminals' instantaneous flow")
