"""The fan-out message: topic and compact JSON of one `Reading` (pure functions, no I/O).

Topic ``{prefix}/{shard}/{site}/{meter}``; payload, with absent values left out::

    {"site":"hehua-plaza","meter":"E1","role":"extraction","ts":"2026-07-01T00:00:00+00:00",
     "rate_m3h":52.5,"total_m3":123456.78,"signal_pct":87.0,"error_code":0}

(an interval-volume meter's reading carries ``volume_m3`` and ``period_s`` instead of ``total_m3``).

A rule worker decodes it with the `gshp-reading` payload profile through the same MQTT source as DTU
messages: site, meter and role come from its configuration (the topic names the configured meter), the
values and the device time from the payload.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from collector.model import MqttSource, Reading, Role, Site
from collector.mqtt.profile import PayloadProfile
from collector.mqtt.topics import Router, plan_routes

__all__ = ["FANOUT_PROFILE", "decode_reading", "encode_reading", "fanout_profile", "plan_fanout_routes",
           "reading_topic", "shard_filter"]

FANOUT_PROFILE = "gshp-reading"


def reading_topic(prefix: str, shard: int, site: str, meter: str) -> str:
    return f"{prefix}/{shard}/{site}/{meter}"


def shard_filter(prefix: str, shard: int) -> str:
    """Every reading of one shard."""
    return f"{prefix}/{shard}/#"


def encode_reading(r: Reading) -> bytes:
    doc: dict[str, Any] = {"site": r.site, "meter": r.meter, "role": r.role.value, "ts": r.ts.isoformat()}
    for name in ("rate_m3h", "total_m3", "signal_pct", "error_code", "volume_m3", "period_s"):
        v = getattr(r, name)
        if v is not None:
            doc[name] = v
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode_reading(payload: bytes) -> Reading:
    """The inverse of `encode_reading` (for tools and tests; the rule worker decodes with the profile)."""
    d = json.loads(payload)
    return Reading(d["site"], d["meter"], Role(d["role"]), datetime.fromisoformat(d["ts"]), d.get("rate_m3h"),
                   d.get("total_m3"), d.get("signal_pct"), d.get("error_code"), d.get("volume_m3"), d.get("period_s"))


def fanout_profile() -> PayloadProfile:
    return PayloadProfile.model_validate({
        "name": FANOUT_PROFILE,
        "description": "A normalized reading published by a gshp collector (ts ISO-8601 with offset).",
        "time": {"path": "ts", "format": "iso8601", "missing": "reject"},
        "fields": {"rate_m3h": {"path": "rate_m3h"}, "total_m3": {"path": "total_m3"},
                   "signal_pct": {"path": "signal_pct"}, "error_code": {"path": "error_code"},
                   "volume_m3": {"path": "volume_m3"}, "period_s": {"path": "period_s"}, "required": []},
        "null_values": [],
    })


def plan_fanout_routes(sites: Iterable[Site], prefix: str, shard: int) -> Router:
    """One route per site, ``{prefix}/{shard}/{site}/{key}``, binding each configured meter by its id."""
    routed = []
    for site in sites:
        topic = f"{prefix}/{shard}/{site.id}/{{key}}"
        meters = tuple(m.model_copy(update={"modbus": None, "mqtt": MqttSource(topic=topic, profile=FANOUT_PROFILE,
                                                                               key=m.id)})
                       for m in site.meters)
        routed.append(site.model_copy(update={"meters": meters}))
    return plan_routes(routed, {FANOUT_PROFILE: fanout_profile()})
