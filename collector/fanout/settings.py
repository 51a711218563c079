"""Typed configuration of the reading fan-out (`fanout:` in the config file)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from collector.duration import Duration
from collector.problems import ZhEn

__all__ = ["FanoutSettings"]


class FanoutSettings(BaseModel):
    """Where collectors publish normalized readings for the rule workers, and the publisher's bounds.

    The broker connection itself is `mqtt:` (the same broker, or cluster, the DTUs publish to).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic_prefix: str = Field(default="gshp/readings", min_length=1, max_length=200,
                              description="readings go to {topic_prefix}/{shard}/{site}/{meter}")
    max_inflight: int = Field(default=1000, ge=1, le=65535, description="published and not yet acknowledged")
    batch_size: int = Field(default=2000, ge=1, le=100_000, description="readings per publish round")
    publish_timeout: Duration = Field(default=timedelta(seconds=30),
                                      description="a round not acknowledged within this is published again")
    max_rows: int = Field(default=2_000_000, ge=100, description="bound of the fan-out outbox")
    retry_min: Duration = timedelta(milliseconds=500)
    retry_max: Duration = timedelta(seconds=30)

    @field_validator("topic_prefix")
    @classmethod
    def _plain_topic(cls, v: str) -> str:
        if any(c in v for c in "+#\x00 ") or v.startswith(("/", "$")) or v.endswith("/") or "//" in v:
            raise ValueError(ZhEn("须为普通的主题层级，如 gshp/readings：不得有通配符（+、#）、空格、空层级"
                                  "或开头的 '$'",
                                  "must be plain topic levels such as gshp/readings: no wildcards (+, #), "
                                  "spaces, empty levels, or leading '$'"))
        return v
