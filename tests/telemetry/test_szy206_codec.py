"""SZY 206-2016 codec: CRC-8, BCD values, address, time label, framing, decoding, confirmation.

Sources of the layouts (no public frame with a published check value was found, so each vector below is
built from these descriptions and checked against an independent computation in the test):
- control byte (DIR, DIV, FCB, function code 3 = flow): ronje/rhilex device/szy2062016/types.go;
- CRC-8 x⁷+x⁶+x⁵+x²+1 = 0xE5, initial 0, MSB first: the JetLinks SZY 206 protocol
  (org.jetlinks.szy206 …utils/HexUtils.getCrc8, polynomial 229) and a C gateway's comm_crc8_szy206
  (polynomial 0xe5);
- AFN C0H self-report: flow points of 5 + 5 BCD bytes, alarm and status words (4 bytes), time label
  (5 bytes); the answer copies C without DIR, A and AFN (JetLinks ReportRealTimeData / FlowAndWater).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from collector.model import Site
from collector.szy206 import Szy206Protocol, address_bytes, crc8, encode_frame, parse_frame, plan_szy206
from collector.szy206.codec import (
    Szy206Framing,
    bcd_signed,
    encode_bcd_signed,
    encode_time_label,
    parse_time_label,
    resolve_time,
)
from collector.telemetry.server import Rejected

TZ = ZoneInfo("Asia/Shanghai")


def _crc_by_division(data: bytes) -> int:
    """The CRC as the remainder of data·x⁸ divided by x⁸+x⁷+x⁶+x⁵+x²+1 (0x1E5), bit by bit."""
    value = int.from_bytes(data, "big") << 8 if data else 0
    poly = 0x1E5
    for bit in range(value.bit_length() - 1, 7, -1):
        if value >> bit & 1:
            value ^= poly << (bit - 8)
    return value


@pytest.mark.parametrize("data", [b"", b"\x01", b"\xb3\x41\x13\x02\x01\x00\xc0", bytes(range(256))])
def test_crc8_is_the_remainder_of_the_standards_polynomial(data: bytes) -> None:
    assert crc8(data) == _crc_by_division(data)


def test_bcd_values_low_byte_first_with_the_sign_in_the_top_bit() -> None:
    assert encode_bcd_signed(40.5, 5, 3) == bytes([0x00, 0x05, 0x04, 0x00, 0x00])
    assert bcd_signed(bytes([0x00, 0x05, 0x04, 0x00, 0x00]), 3) == 40.5
    assert bcd_signed(encode_bcd_signed(-12.345, 5, 3), 3) == -12.345
    assert bcd_signed(encode_bcd_signed(123456789, 5, 0), 0) == 123456789
    assert encode_bcd_signed(-1, 5, 0)[-1] == 0x80


def test_address_is_division_code_bcd_then_station_low_byte_first() -> None:
    assert address_bytes("411302", 258) == bytes([0x41, 0x13, 0x02, 0x02, 0x01])


def test_time_label_resolves_to_the_receive_month_or_the_one_before() -> None:
    tp = parse_time_label(encode_time_label(datetime(2026, 7, 1, 12, 30, 15), 5))
    assert (tp.second, tp.minute, tp.hour, tp.day, tp.delay_min) == (15, 30, 12, 1, 5)
    received = datetime(2026, 7, 1, 4, 31, tzinfo=UTC)  # 12:31 in Asia/Shanghai
    assert resolve_time(tp, received, TZ, timedelta(minutes=10)) == datetime(2026, 7, 1, 12, 30, 15, tzinfo=TZ)
    late = parse_time_label(encode_time_label(datetime(2026, 6, 30, 23, 0, 0)))
    assert resolve_time(late, received, TZ, timedelta(minutes=10)) == datetime(2026, 6, 30, 23, 0, tzinfo=TZ)


ADDR = address_bytes("411302", 1)
NOW = datetime(2026, 7, 1, 4, 0, 30, tzinfo=UTC)


def _realtime(points: list[tuple[float, float]], when: datetime = NOW, control: int = 0xB3,
              address: bytes = ADDR, afn: int = 0xC0) -> bytes:
    data = b"".join(encode_bcd_signed(f, 5, 3) + encode_bcd_signed(v, 5, 0) for f, v in points)
    data += bytes(4) + encode_time_label(when.astimezone(TZ), 5)
    return encode_frame(control, address, afn, data)


def test_frame_layout_start_length_start_user_data_crc_end() -> None:
    f = _realtime([(40.5, 10234)])
    assert f[0] == 0x68 and f[2] == 0x68 and f[-1] == 0x16
    assert f[1] == len(f) - 5 and f[-2] == crc8(f[3:-2])
    frame = parse_frame(f)
    assert frame.uplink and frame.function == 3 and frame.address == ADDR and frame.afn == 0xC0


def _protocol(max_age: timedelta = timedelta(days=30)) -> Szy206Protocol:
    site = Site.model_validate({"id": "s1", "name": "n", "district": "d", "meters": [
        {"id": "E1", "role": "extraction", "szy206": {"division": "411302", "station": 1, "point": 1}},
        {"id": "R1", "role": "reinjection", "szy206": {"division": "411302", "station": 1, "point": 2}}]})
    return Szy206Protocol(plan_szy206([site]), TZ, timedelta(minutes=10), max_age)


def test_self_reported_flow_points_become_readings_and_the_confirmation() -> None:
    d = _protocol().decode(_realtime([(40.5, 10234), (39.25, 9876)]), NOW.timestamp())
    assert d.reject is None and d.station == "411302-00001"
    assert [(r.meter, r.rate_m3h, r.total_m3) for r in d.readings] == [("E1", 40.5, 10234), ("R1", 39.25, 9876)]
    assert all(r.ts == NOW.replace(microsecond=0) for r in d.readings)
    assert d.answer == encode_frame(0x33, ADDR, 0xC0, b"\x00")


def test_a_link_check_is_confirmed_without_readings() -> None:
    d = _protocol().decode(encode_frame(0xB0, ADDR, 0x02, b"\xf2"), NOW.timestamp())
    assert d.readings == () and d.reject is None and d.answer == encode_frame(0x30, ADDR, 0x02, b"\xf2")


@pytest.mark.parametrize(("frame", "reason"), [
    (_realtime([(1, 1), (1, 1)])[:-2] + b"\x00\x16", "bad_crc"),
    (_realtime([(1, 1), (1, 1)], address=address_bytes("411302", 9)), "unknown_station"),
    (_realtime([(1, 1), (1, 1)], control=0xB2), "unsupported_command"),
    (_realtime([(1, 1), (1, 1)], afn=0x50), "unsupported_command"),
    (_realtime([(1, 1)]), "malformed"),  # R1 is point 2
    (_realtime([(1, 1), (1, 1)], control=0xF3), "split_frame"),
    (_realtime([(1, 1), (1, 1)], control=0x33), "malformed"),  # a downlink frame
    (_realtime([(1, -5), (1, 1)]), "bad_value"),
])
def test_bad_frames_are_rejected_with_their_reason_and_not_answered(frame: bytes, reason: str) -> None:
    d = _protocol().decode(frame, NOW.timestamp())
    assert d.reject is not None and d.reject.reason == reason, d.reject
    assert d.readings == () and d.answer is None


def test_framing_cuts_frames_split_across_reads_and_skips_garbage() -> None:
    f = Szy206Framing(4096)
    one = _realtime([(40.5, 10234), (39.25, 9876)])
    stream = b"\x00\xff" + one + one
    out: list[bytes | Rejected] = []
    for i in range(0, len(stream), 5):
        out += f.feed(stream[i:i + 5])
    assert [x for x in out if isinstance(x, bytes)] == [one, one]
    assert [x.reason for x in out if isinstance(x, Rejected)] == ["garbage"]


def test_framing_rejects_a_frame_whose_length_misses_the_end_byte() -> None:
    f = Szy206Framing(4096)
    one = _realtime([(40.5, 10234), (39.25, 9876)])
    broken = bytes([0x68, one[1] - 1]) + one[2:]
    out = f.feed(broken + one)
    assert one in out
    assert any(isinstance(x, Rejected) and x.reason == "bad_length" for x in out)


def test_a_time_label_older_than_max_age_is_rejected() -> None:
    d = _protocol(max_age=timedelta(days=1)).decode(_realtime([(1, 1), (1, 1)], when=NOW - timedelta(days=3)),
                                                    NOW.timestamp())
    assert d.reject is not None and d.reject.reason == "ts_past" and d.answer is None
