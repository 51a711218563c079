"""HJ 212-2017 codec: CRC, framing, data segment, data answer, decoding into readings.

Vectors (cited per test): the standard's own example packet (HJ 212-2017, also in
rxlee/hj-t212-parser hj-t212-parser/src/main/java/com/xy/format/hbt212/TT.java), the real-time upload of
rxlee/hj-t212-parser hj-t212-parser/src/test/java/com/xy/format/hbt212/core/T212MapperTest.java (CRC 4980,
and E981 for its variant with every field separated by ';'), and the upload in tang0-0/HJ212-Pack
pyTest/hj212_client.py for the packet layout a logger writes.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from collector.hj212 import DataKind, Hj212Protocol, crc16, data_answer, encode_packet, parse_segment, plan_hj212
from collector.hj212.codec import Hj212Framing, PacketError, _crc16_bitwise
from collector.model import Reading, Role, Site
from collector.telemetry.server import Rejected

TZ = ZoneInfo("Asia/Shanghai")

# HJ 212-2017's example: 101 characters, CRC 1C80 (the first test vector)
STANDARD_SEGMENT = ("QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
                    "CP=&&RtdInterval=30&&")
STANDARD_PACKET = b"##0101" + STANDARD_SEGMENT.encode() + b"1C80\r\n"


def test_crc_of_the_standards_example_is_1C80() -> None:
    assert len(STANDARD_SEGMENT) == 101
    assert crc16(STANDARD_SEGMENT.encode()) == 0x1C80


def test_the_table_driven_crc_equals_the_standards_bitwise_definition() -> None:
    rng = random.Random(212)
    for n in range(300):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert crc16(data) == _crc16_bitwise(data)


def test_encoding_the_standards_segment_gives_the_standards_packet() -> None:
    assert encode_packet(STANDARD_SEGMENT) == STANDARD_PACKET


# rxlee/hj-t212-parser …/core/T212MapperTest.java, readMap/writeData: a real-time upload and its CRC
PUBLIC_SEGMENT = ("ST=32;CN=2011;PW=123456;MN=LD130133000015;CP=&&DataTime=20160824003817000;B01-Rtd=36.91;"
                  "011-Rtd=231.0,011-Flag=N;060-Rtd=1.803,060-Flag=N&&")
PUBLIC_PACKET = b"##0139" + PUBLIC_SEGMENT.encode() + b"4980\r\n"


def test_encoding_a_public_implementations_upload_gives_its_packet() -> None:
    assert encode_packet(PUBLIC_SEGMENT) == PUBLIC_PACKET
    # T212MapperTest.writeMap: the same upload with ';' between all fields has CRC e981
    assert crc16(PUBLIC_SEGMENT.replace(",", ";").encode()) == 0xE981


def test_a_public_implementations_upload_decodes_into_a_reading() -> None:
    site = _site([{"id": "E1", "role": "extraction", "hj212": {"mn": "LD130133000015", "rate": "B01-Rtd",
                                                                 "total": None}},
                  {"id": "R1", "role": "reinjection"}])
    plan = plan_hj212({"LD130133000015": "123456"}, [site], timedelta(minutes=1), DataKind.MINUTE)
    protocol = Hj212Protocol(plan, TZ, timedelta(minutes=10), timedelta(days=36500))
    d = protocol.decode(PUBLIC_PACKET, NOW.timestamp())
    assert d.reject is None and d.answer is None  # no Flag: no answer asked for
    (r,) = d.readings
    assert r.rate_m3h == 36.91 and r.total_m3 is None
    assert r.ts == datetime(2016, 8, 23, 16, 38, 17, tzinfo=UTC)


def test_the_simulated_logger_writes_uploads_in_the_standards_layout() -> None:
    from simulators.hj212 import hj212_stations

    site = _site([{"id": "E1", "role": "extraction", "hj212": {"mn": "MN1234567890ABCD"}},
                  {"id": "R1", "role": "reinjection"}])
    (station,) = hj212_stations([site], {"MN1234567890ABCD": "123456"}, TZ, timedelta(minutes=1))
    at = datetime(2024, 1, 1, 4, 0, tzinfo=UTC)
    reading = Reading("s1", "E1", Role.EXTRACTION, at, 12.5, 1034.25)
    (upload,) = station.uploads([reading], at)
    # the layout of tang0-0/HJ212-Pack pyTest/hj212_client.py: factor-Rtd=…,factor-Flag=N between ';'
    assert upload.frame == encode_packet("QN=20240101120000001;ST=32;CN=2011;PW=123456;MN=MN1234567890ABCD;"
                                         "Flag=5;CP=&&DataTime=20240101120000;w00000-Rtd=12.500,w00000-Flag=N;"
                                         "w00001-Rtd=1034.250,w00001-Flag=N&&")
    assert upload.key == b"QN=20240101120000001"


def test_segment_fields_of_the_standards_example() -> None:
    p = parse_segment(STANDARD_SEGMENT)
    assert (p.qn, p.st, p.cn, p.pw, p.mn, p.flag) == ("20160801085857223", "32", "1062", "100000",
                                                     "010000A8900016F000169DC0", 5)
    assert p.wants_answer and not p.split
    assert p.cp == {"RtdInterval": "30"}


def test_data_answer_carries_the_uploads_qn_and_asks_for_nothing() -> None:
    answer = data_answer(parse_segment(STANDARD_SEGMENT))
    assert answer == encode_packet("QN=20160801085857223;ST=91;CN=9014;PW=100000;MN=010000A8900016F000169DC0;"
                                   "Flag=4;CP=&&&&")
    assert answer.startswith(b"##0087") and answer.endswith(b"\r\n")


def test_a_logger_style_upload_splits_into_factor_fields() -> None:
    # layout as tang0-0/HJ212-Pack pyTest/hj212_client.py writes it: factor-Rtd=…,factor-Flag=N;…
    p = parse_segment("QN=20240101120000000;ST=32;CN=2011;PW=123456;MN=MN1234567890ABCD;Flag=5;"
                      "CP=&&DataTime=20240101120000;w00000-Rtd=12.5,w00000-Flag=N;w00001-Rtd=1034.25,"
                      "w00001-Flag=N&&")
    assert p.cp == {"DataTime": "20240101120000", "w00000-Rtd": "12.5", "w00000-Flag": "N",
                    "w00001-Rtd": "1034.25", "w00001-Flag": "N"}


@pytest.mark.parametrize("segment", ["QN=1;ST=32;CN=2011;MN=x;Flag=5", "ST=32;CN=2011;MN=x;CP=&&a=1",
                                     "ST=32;CN=2011;CP=&&&&", "Bogus=1;ST=32;CN=2011;MN=x;CP=&&&&",
                                     "ST=32;CN=2011;MN=x;Flag=five;CP=&&&&", "ST=32;CN=2011;MN=x;CP=&&nokey&&"])
def test_malformed_segments_are_refused_with_a_reason(segment: str) -> None:
    with pytest.raises(PacketError) as err:
        parse_segment(segment)
    assert err.value.reason == "malformed"


def test_framing_finds_packets_split_across_reads_and_after_garbage() -> None:
    f = Hj212Framing(64 * 1024)
    stream = b"noise" + STANDARD_PACKET + STANDARD_PACKET
    out: list[bytes | Rejected] = []
    for i in range(0, len(stream), 7):
        out += f.feed(stream[i:i + 7])
    packets = [x for x in out if isinstance(x, bytes)]
    rejects = [x for x in out if isinstance(x, Rejected)]
    assert packets == [STANDARD_PACKET, STANDARD_PACKET]
    assert [r.reason for r in rejects] == ["garbage"] and rejects[0].payload == b"noise"


def test_framing_rejects_a_wrong_length_and_resynchronises_at_the_next_packet() -> None:
    f = Hj212Framing(64 * 1024)
    bad = b"##0099" + STANDARD_SEGMENT.encode() + b"1C80\r\n"  # says 99, holds 101
    out = f.feed(bad + STANDARD_PACKET + b"#")
    assert [x.reason for x in out if isinstance(x, Rejected)] == ["bad_length"]
    assert [x for x in out if isinstance(x, bytes)] == [STANDARD_PACKET]
    assert f.feed(b"#0101" + STANDARD_SEGMENT.encode() + b"1C80\r\n") == [STANDARD_PACKET]


def test_framing_refuses_a_packet_larger_than_its_buffer() -> None:
    f = Hj212Framing(1024)
    (r,) = f.feed(b"##9999QN=")
    assert isinstance(r, Rejected) and r.reason == "too_large" and r.fatal


def _site(meters: list[dict[str, object]]) -> Site:
    return Site.model_validate({"id": "s1", "name": "n", "district": "d", "meters": meters})


def _protocol(volume: bool = False) -> Hj212Protocol:
    e1: dict[str, object] = {"id": "E1", "role": "extraction", "hj212": {"mn": "MN1"}}
    if volume:
        e1["hj212"] = {"mn": "MN1", "rate": "w00000-Avg", "volume": "w00000-Cou"}
    site = _site([e1, {"id": "R1", "role": "reinjection", "hj212": {"mn": "MN2", "total": "w00001-Rtd"}}])
    plan = plan_hj212({"MN1": "pw1", "MN2": "pw2"}, [site], timedelta(minutes=1), DataKind.MINUTE)
    return Hj212Protocol(plan, TZ, timedelta(minutes=10), timedelta(days=30))


NOW = datetime(2026, 7, 1, 4, 0, 30, tzinfo=UTC)  # 12:00:30 in Asia/Shanghai


def _upload(cn: str = "2011", pw: str = "pw1", mn: str = "MN1", cp: str = "w00000-Rtd=40.5,w00000-Flag=N;"
            "w00001-Rtd=10234.75,w00001-Flag=N", flag: int = 5, when: str = "20260701120000") -> bytes:
    return encode_packet(f"QN=20260701120000123;ST=32;CN={cn};PW={pw};MN={mn};Flag={flag};"
                         f"CP=&&DataTime={when};{cp}&&")


def test_a_real_time_upload_gives_rate_and_total_at_its_data_time_and_the_answer() -> None:
    d = _protocol().decode(_upload(), NOW.timestamp())
    assert d.reject is None and d.station == "MN1"
    (r,) = d.readings
    assert (r.site, r.meter, r.rate_m3h, r.total_m3) == ("s1", "E1", 40.5, 10234.75)
    assert r.ts == datetime(2026, 7, 1, 4, 0, tzinfo=UTC)
    assert d.answer is not None and b"CN=9014" in d.answer and b"QN=20260701120000123" in d.answer


@pytest.mark.parametrize(("flag", "code"), [("N", 0), ("D", 4), ("M", 2), ("C", 5), ("X", 99)])
def test_the_totalizers_data_flag_is_the_readings_error_code(flag: str, code: int) -> None:
    d = _protocol().decode(_upload(cp=f"w00000-Rtd=40.5,w00000-Flag=N;w00001-Rtd=10.5,w00001-Flag={flag}"),
                           NOW.timestamp())
    (r,) = d.readings
    assert r.error_code == code
    assert _protocol().decode(_upload(cp="w00001-Rtd=10.5"), NOW.timestamp()).readings[0].error_code is None


def test_an_upload_with_flag_4_is_not_answered() -> None:
    d = _protocol().decode(_upload(flag=4), NOW.timestamp())
    assert d.readings and d.answer is None


def test_minute_totals_become_interval_volumes_over_the_minute_that_data_time_opens() -> None:
    p = _protocol(volume=True)
    d = p.decode(_upload(cn="2051", cp="w00000-Cou=0.675,w00000-Avg=40.5,w00000-Flag=N"), NOW.timestamp())
    (r,) = d.readings
    assert r.total_m3 is None and r.volume_m3 == 0.675 and r.period_s == 60.0 and r.rate_m3h == 40.5
    assert r.ts == datetime(2026, 7, 1, 4, 1, tzinfo=UTC)
    # real-time data of an interval-volume meter carries none of its volumes: answered, no reading
    d = p.decode(_upload(cn="2011", cp="w00000-Rtd=40.5"), NOW.timestamp())
    assert d.readings == () and d.reject is None and d.answer is not None


@pytest.mark.parametrize(("packet", "reason"), [
    (_upload()[:-6] + b"0000\r\n", "bad_crc"),
    (_upload(pw="nope"), "wrong_password"),
    (_upload(mn="MN9"), "unknown_station"),
    (_upload(cn="3020"), "unsupported_command"),
    (_upload(cp="w00000-Rtd=abc"), "bad_value"),
    (_upload(cp="w00001-Rtd=-5"), "bad_value"),
    (_upload(when="20261301120000"), "bad_timestamp"),
    (_upload(when="20260701130000"), "ts_future"),
    (_upload(when="20250101120000"), "ts_past"),
    (encode_packet("QN=1;ST=32;CN=2011;PW=pw1;MN=MN1;Flag=5;CP=&&w00000-Rtd=1&&"), "malformed"),
    (encode_packet("QN=1;ST=32;CN=2011;PW=pw1;MN=MN1;Flag=7;PNUM=2;PNO=1;CP=&&DataTime=20260701120000&&"),
     "split_packet"),
])
def test_bad_uploads_are_rejected_with_their_reason_and_not_answered(packet: bytes, reason: str) -> None:
    d = _protocol().decode(packet, NOW.timestamp())
    assert d.reject is not None and d.reject.reason == reason, d.reject
    assert d.readings == () and d.answer is None
    # kept aside as received, but for the password: dead letters are shown to people
    assert d.reject.payload == re.sub(rb"PW=[^;]*", b"PW=******", packet)
    assert b"pw1" not in d.reject.payload
