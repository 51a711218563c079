"""Fan-out of normalized readings over MQTT, from collectors to the rule workers of their shard.

A collector commits each reading to a small durable SQLite outbox of its own (`FanoutOutbox`, beside the
InfluxDB outbox and in the same `accept` call, before its source is acknowledged); the `FanoutPublisher`
publishes those rows at QoS 1 on ``{topic_prefix}/{shard}/{site}/{meter}`` and deletes them only once the
broker has acknowledged every message (PUBACK). A rule worker subscribes to its shard's topics with a
persistent session and acknowledges a message only after its readings went into the rule engine.
"""

from collector.fanout.message import (
    decode_reading,
    encode_reading,
    fanout_profile,
    plan_fanout_routes,
    reading_topic,
    shard_filter,
)
from collector.fanout.publisher import FanoutOutbox, FanoutPublisher
from collector.fanout.settings import FanoutSettings

__all__ = ["FanoutOutbox", "FanoutPublisher", "FanoutSettings", "decode_reading", "encode_reading",
           "fanout_profile", "plan_fanout_routes", "reading_topic", "shard_filter"]
