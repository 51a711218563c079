"""Typed configuration of the MQTT broker connection (`mqtt:` in the config file)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from collector.duration import Duration

__all__ = ["MqttProtocol", "MqttSettings", "MqttTls"]


class MqttProtocol(StrEnum):
    V311 = "3.1.1"
    V5 = "5"


class MqttTls(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False  # skip hostname verification (test rigs only)


class MqttSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTls | None = None
    protocol: MqttProtocol = MqttProtocol.V311
    client_id: str = Field(default="gshp-collector", min_length=1, max_length=64)
    keepalive: Duration = timedelta(seconds=30)
    session_expiry: Duration = timedelta(days=1)
    qos: int = Field(default=1, ge=0, le=2)
    shared_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    max_inflight: int = Field(default=1000, ge=1, le=65535)
