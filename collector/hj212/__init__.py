"""HJ 212-2017 ingest: packets from data loggers over TCP (codec, plan, the telemetry server's protocol)."""

from collector.hj212.codec import crc16, data_answer, encode_packet, parse_segment
from collector.hj212.plan import DataKind, Hj212Plan, plan_hj212
from collector.hj212.server import Hj212Protocol

__all__ = ["DataKind", "Hj212Plan", "Hj212Protocol", "crc16", "data_answer", "encode_packet", "parse_segment",
           "plan_hj212"]
