"""Typed configuration of the MQTT broker connection (`mqtt:` in the config file)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from collector.duration import Duration
from collector.problems import ZhEn

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

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert is None) != (self.key is None):
            raise ValueError(ZhEn("客户端证书需要同时给出 `cert:` 和 `key:`",
                                  "a client certificate needs both `cert:` and `key:`"))
        return self


class MqttSettings(BaseModel):
    """The broker connection and the ingest pipeline's bounds.

    Messages are acknowledged to the broker only after their readings are committed to the outbox (or,
    for a payload that cannot be used, to the dead-letter store), in batches of up to `batch_max`
    messages (and at most half of `max_inflight`, so that the next batch arrives while one commits)
    gathered for at most `batch_wait`.
    """

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
    max_inflight: int = Field(default=1000, ge=1, le=65535,
                              description="messages received and not yet acknowledged (v5: Receive Maximum)")
    batch_max: int = Field(default=1000, ge=1, le=65535, description="messages per outbox commit")
    batch_wait: Duration = Field(default=timedelta(milliseconds=5),
                                 description="gather a batch for at most this long")
    reconnect_min: Duration = timedelta(seconds=1)
    reconnect_max: Duration = timedelta(seconds=60)
    max_payload: int = Field(default=64 * 1024, ge=64, le=256 * 1024 * 1024,
                             description="bytes; a larger payload is dead-lettered (too_large) before decoding, "
                                         "its first bytes only are kept")
    max_clock_skew: Duration = Field(default=timedelta(minutes=2),
                                     description="reject device timestamps further in the future")
    max_age: Duration = Field(default=timedelta(days=30),
                              description="reject device timestamps older than this (buffered re-sends)")
    accept_retained: bool = Field(default=False, description="take retained messages as readings")
    profiles_dir: Path | None = Field(default=None, description="extra payload profiles (*.yaml)")
    deadletter_max_rows: int = Field(default=100_000, ge=10, description="oldest dead letters go first")
    deadletter_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024,
                                      description="bytes the dead-letter store holds; oldest entries go first")
    broker_stats: bool = Field(default=True, description="read the broker's drop counter from $SYS (mosquitto)")
    ride_out: Duration = Field(default=timedelta(hours=1),
                               description="an outage of the collector the broker's queue must hold")

    @model_validator(mode="after")
    def _bounds(self) -> MqttSettings:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError(ZhEn("`reconnect_min` 不得大于 `reconnect_max`",
                                  "`reconnect_min` must not exceed `reconnect_max`"))
        if self.batch_max > self.max_inflight:
            raise ValueError(ZhEn("`batch_max` 不得大于 `max_inflight`（一批要等它的确认）",
                                  "`batch_max` must not exceed `max_inflight` (a batch waits for its acks)"))
        return self
