"""SZY 206-2016 ingest: link frames from water-resource RTUs over TCP (codec, plan, the server's protocol)."""

from collector.szy206.codec import address_bytes, confirmation, crc8, encode_frame, parse_frame
from collector.szy206.plan import FlowUnit, Szy206Plan, plan_szy206
from collector.szy206.server import Szy206Protocol

__all__ = ["FlowUnit", "Szy206Plan", "Szy206Protocol", "address_bytes", "confirmation", "crc8", "encode_frame",
           "parse_frame", "plan_szy206"]
