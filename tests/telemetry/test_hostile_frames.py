"""Hostile input never breaks the telemetry framings or decoders: any bytes, cut anywhere, come out as
frames or rejects with a reason, the buffer stays within its bound, and a valid frame after the garbage
is still found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.hj212 import DataKind, Hj212Protocol, encode_packet, plan_hj212
from collector.hj212.codec import Hj212Framing
from collector.model import Site
from collector.szy206 import Szy206Protocol, address_bytes, encode_frame, plan_szy206
from collector.szy206.codec import Szy206Framing, encode_bcd_signed, encode_time_label
from collector.telemetry.server import Rejected

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)
SITE = Site.model_validate({"id": "s1", "name": "n", "district": "d", "meters": [
    {"id": "E1", "role": "extraction", "hj212": {"mn": "MN1"}},
    {"id": "R1", "role": "reinjection", "szy206": {"division": "411302", "station": 1}}]})
HJ = Hj212Protocol(plan_hj212({"MN1": "pw"}, [SITE], timedelta(minutes=1), DataKind.MINUTE), TZ,
                   timedelta(minutes=10), timedelta(days=30))
SZY = Szy206Protocol(plan_szy206([SITE]), TZ, timedelta(minutes=10), timedelta(days=30))
HJ_GOOD = encode_packet("QN=1;ST=32;CN=2011;PW=pw;MN=MN1;Flag=5;CP=&&DataTime=20260701115900;w00001-Rtd=5&&")
SZY_GOOD = encode_frame(0xB3, address_bytes("411302", 1), 0xC0, encode_bcd_signed(1, 5, 3) + encode_bcd_signed(7, 5, 0)
                        + bytes(4) + encode_time_label(NOW.astimezone(TZ) - timedelta(minutes=1)))

chunks = st.lists(st.binary(max_size=300), max_size=20)
tokens = st.lists(st.sampled_from([b"##", b"#", b"0101", b"9999", b"\r\n", b"\x68", b"\x16", b"\x00", b"CP=&&",
                                   b"&&", b"QN=", b";", b"=", b"MN=MN1", b"\xff"]), max_size=60)


def _feed(framing: Hj212Framing | Szy206Framing, parts: list[bytes]) -> list[bytes | Rejected]:
    out: list[bytes | Rejected] = []
    for p in parts:
        out += framing.feed(p)
        assert len(framing._buf) <= framing.max_buffer + 300
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks, tokens)
@example([], [b"##", b"0101"])  # a length that swallows the next packet: found again a few packets later
@example([b"##9999"], [])  # larger than the buffer: the connection is closed
def test_hj212_any_bytes_frame_and_decode_without_raising(parts: list[bytes], toks: list[bytes]) -> None:
    framing = Hj212Framing(2048)
    # enough good packets to fill any length the garbage may have declared (at most max_buffer)
    out = _feed(framing, [*parts, b"".join(toks), b"\r\n", *[HJ_GOOD] * (2048 // len(HJ_GOOD) + 2)])
    for item in out:
        if isinstance(item, Rejected):
            assert item.reason and item.payload is not None
        else:
            d = HJ.decode(item, NOW.timestamp())
            assert (d.reject is None) or (d.readings == () and d.answer is None)
    if not any(isinstance(x, Rejected) and x.fatal for x in out):
        assert out[-1] == HJ_GOOD  # the stream resynchronises at a following packet


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks, tokens)
def test_szy206_any_bytes_frame_and_decode_without_raising(parts: list[bytes], toks: list[bytes]) -> None:
    framing = Szy206Framing(4096)
    out = _feed(framing, [*parts, b"".join(toks)])
    for item in out:
        if isinstance(item, bytes):
            d = SZY.decode(item, NOW.timestamp())
            assert (d.reject is None) or (d.readings == () and d.answer is None)
    # whatever came before, a clean frame on a fresh connection decodes
    (good,) = Szy206Framing(4096).feed(SZY_GOOD)
    assert isinstance(good, bytes) and SZY.decode(good, NOW.timestamp()).readings
