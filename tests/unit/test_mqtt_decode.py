"""Payload profiles: every shipped shape, timestamp form, unit and rejection reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.model import Role
from collector.mqtt.decode import Binding, DecodeContext, Decoded, decode
from collector.mqtt.encode import encode
from collector.mqtt.errors import ProfileError
from collector.mqtt.profile import PayloadFormat, PayloadProfile, load_profiles
from collector.mqtt.registers import Encoding, Frame, crc16, decode_block, encode_block
from collector.mqtt.timestamps import TimeFormat, parse_timestamp
from collector.mqtt.units import RATE_UNITS

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 7, 1, 0, 0, 30, tzinfo=UTC)
T0 = datetime(2026, 7, 1, tzinfo=UTC)
CTX = DecodeContext(tz=TZ)
PROFILES = load_profiles()
E1 = Binding("s1", "E1", Role.EXTRACTION, "E1")
R1 = Binding("s1", "R1", Role.REINJECTION, "R1")
BOTH = {"E1": E1, "R1": R1}


def _decode(profile: str | PayloadProfile, payload: Any, meters: Mapping[str, Binding] | None = None,
            topic_key: str | None = None, ctx: DecodeContext = CTX) -> Decoded:
    p = PROFILES[profile] if isinstance(profile, str) else profile
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode(p, raw, NOW, ctx, meters if meters is not None else {"E1": E1}, topic_key)


def _one(profile: str, payload: Any, **kw: Any) -> tuple[str, datetime, float | None, float | None]:
    d = _decode(profile, payload, **kw)
    assert not d.rejected, d.rejected
    assert len(d.readings) == 1
    r = d.readings[0]
    return r.meter, r.ts, r.rate_m3h, r.total_m3


def _reason(profile: str, payload: Any, **kw: Any) -> str:
    d = _decode(profile, payload, **kw)
    assert not d.readings and len(d.rejected) == 1, d
    return d.rejected[0].reason.value


# -- shipped profiles ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(n for n, p in PROFILES.items() if p.format is PayloadFormat.JSON))
def test_every_shipped_json_profile_decodes_its_example_and_encodes_back(name: str) -> None:
    p = PROFILES[name]
    meters = BOTH if p.keyed else {"E1": E1}
    d = _decode(p, p.example, meters)
    assert d.readings and not d.rejected
    assert all(r.ts == T0 or r.ts == T0 + timedelta(seconds=10) for r in d.readings)
    items = [(r.meter, r) for r in d.readings]
    again = decode(p, encode(p, items, TZ), NOW, CTX, meters)
    assert [(r.meter, r.ts, r.rate_m3h, r.total_m3) for r in again.readings] == [
        (r.meter, r.ts, r.rate_m3h, r.total_m3) for r in d.readings]


def test_dtu_json_flat_form_with_quoted_numbers_and_every_time_form() -> None:
    for ts in (1782864000, 1782864000000, "1782864000", "2026-07-01T00:00:00Z", "2026-07-01T08:00:00+08:00",
               "2026-07-01 08:00:00", 1782864000.0):
        assert _one("dtu-json", {"ts": ts, "rate_m3h": "52.5", "total_m3": " 123456.78 "}) == (
            "E1", T0, 52.5, 123456.78), ts


def test_dtu_json_optional_quality_fields() -> None:
    d = _decode("dtu-json", {"ts": 1782864000, "total_m3": 5, "signal_pct": 77, "error_code": "8"})
    r = d.readings[0]
    assert (r.rate_m3h, r.signal_pct, r.error_code) == (None, 77.0, 8)


def test_holdingbyte_null_point_is_absent_not_zero() -> None:
    assert _one("holdingbyte", {"imei": "1", "time": 1782864000, "data": {"flow": None, "total": 9.5}}) == (
        "E1", T0, None, 9.5)


def test_holdingbyte_multi_skips_meters_absent_from_the_message() -> None:
    d = _decode("holdingbyte-multi", {"time": 1782864000, "data": {"R1_flow": 3, "R1_total": 4}}, BOTH)
    assert [(r.meter, r.total_m3) for r in d.readings] == [("R1", 4.0)]


def test_thingsboard_single_object_and_buffered_array() -> None:
    assert _one("thingsboard", {"ts": 1782864000000, "values": {"total_m3": 1}})[1] == T0
    d = _decode("thingsboard", [{"ts": 1782864000000 + i * 1000, "values": {"total_m3": i}}
                                for i in range(5)])
    assert [r.total_m3 for r in d.readings] == [0, 1, 2, 3, 4]


def test_one_bad_record_in_a_buffered_array_keeps_the_others() -> None:
    d = _decode("thingsboard", [{"ts": 1782864000000, "values": {"total_m3": 1}},
                                {"ts": 1782864001000, "values": {"total_m3": "x"}},
                                {"ts": 1782864002000, "values": {"total_m3": 3}}])
    assert [r.total_m3 for r in d.readings] == [1, 3]
    assert [r.reason.value for r in d.rejected] == ["wrong_type"]


def test_alink_takes_the_time_of_the_first_property_present() -> None:
    p = {"params": {"InstantFlow": {"value": 1.5, "time": 1782864000000}, "TotalFlow": {"value": 2}}}
    assert _one("alink", p) == ("E1", T0, 1.5, 2.0)


def test_logger_text_local_date_time_in_the_configured_zone_and_litres_per_second() -> None:
    _, ts, rate, total = _one("logger-text", {"Date": "01072026", "Time": "080000", "Flow": "10",
                                                  "Total": "7"})
    assert ts == T0 and rate == pytest.approx(36.0) and total == 7.0
    assert _one("logger-text", {"Date": "01072026", "Time": "080000", "Flow": "ERR", "Total": "7"})[2] is None


def test_map_and_array_records_select_meters_by_key() -> None:
    d = _decode("dtu-json-array", [{"id": "R1", "ts": 1782864000, "total_m3": 1},
                                   {"id": "E1", "ts": 1782864000, "total_m3": 2}], BOTH)
    assert [(r.meter, r.role, r.total_m3) for r in d.readings] == [
        ("R1", Role.REINJECTION, 1.0), ("E1", Role.EXTRACTION, 2.0)]


def test_topic_key_selects_the_meter() -> None:
    assert _one("dtu-json", {"ts": 1782864000, "total_m3": 1}, meters=BOTH, topic_key="R1")[0] == "R1"


def test_tags_never_come_from_payload_text() -> None:
    r = _decode("dtu-json", {"ts": 1782864000, "total_m3": 1, "site": "evil", "meter": "X", "role": "y"}
                ).readings[0]
    assert (r.site, r.meter, r.role) == ("s1", "E1", Role.EXTRACTION)


# -- units and timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "value", "m3h"), [
    ("m3/h", 36, 36), ("m3/s", 0.01, 36), ("m3/min", 0.6, 36), ("m3/d", 864, 36), ("L/s", 10, 36),
    ("L/min", 600, 36), ("L/h", 36000, 36)])
def test_rate_units(unit: str, value: float, m3h: float) -> None:
    p = PayloadProfile.model_validate({"name": "u", "time": {"path": "t"}, "fields": {
        "rate_m3h": {"path": "r", "unit": unit}, "total_m3": {"path": "v", "unit": "L"}}})
    r = _decode(p, {"t": 1782864000, "r": value, "v": 2500}).readings[0]
    assert r.rate_m3h == pytest.approx(m3h) and r.total_m3 == pytest.approx(2.5)
    assert unit in RATE_UNITS


def test_scale_applies_before_the_unit() -> None:
    p = PayloadProfile.model_validate({"name": "s", "time": {"path": "t"}, "fields": {
        "total_m3": {"path": "v", "unit": "L", "scale": 10}}})
    assert _decode(p, {"t": 1782864000, "v": 5}).readings[0].total_m3 == pytest.approx(0.05)


def test_timestamp_forms() -> None:
    assert parse_timestamp(1782864000, TimeFormat.EPOCH_S, TZ) == T0
    assert parse_timestamp("1782864000000", TimeFormat.EPOCH_MS, TZ) == T0
    assert parse_timestamp(1782864000123, TimeFormat.AUTO, TZ) == T0 + timedelta(milliseconds=123)
    assert parse_timestamp("2026-07-01T08:00:00", TimeFormat.ISO8601, TZ) == T0  # naive = local
    assert parse_timestamp("2026/07/01 08:00", TimeFormat.LOCAL, TZ, "%Y/%m/%d %H:%M") == T0
    with pytest.raises(ValueError):
        parse_timestamp(True, TimeFormat.EPOCH_S, TZ)


# -- rejection reasons ------------------------------------------------------------------------------

OK = {"ts": 1782864000, "total_m3": 1}


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"ts": 1', "bad_json"),
    (b"\xff\xfe\x00", "bad_encoding"),
    ({"ts": 1782864000, "rate_m3h": 3}, "missing_field"),
    ({"total_m3": 3}, "missing_field"),
    ({"ts": 1782864000, "total_m3": None}, "missing_field"),
    ({"ts": 1782864000, "total_m3": "12,5"}, "wrong_type"),
    ({"ts": 1782864000, "total_m3": True}, "wrong_type"),
    ({"ts": 1782864000, "total_m3": {"v": 1}}, "wrong_type"),
    ({"ts": 1782864000, "total_m3": 1, "error_code": 1.5}, "wrong_type"),
    (b'{"ts": 1782864000, "total_m3": NaN}', "not_finite"),
    ({"ts": 1782864000, "total_m3": "inf"}, "not_finite"),
    ({"ts": 1782864000, "total_m3": -0.5}, "negative_total"),
    ({"ts": 1782864000, "total_m3": 1, "signal_pct": 140}, "out_of_range"),
    ({"ts": "soon", "total_m3": 1}, "bad_timestamp"),
    ({"ts": [1], "total_m3": 1}, "bad_timestamp"),
    ({"ts": 1782864000 + 3600, "total_m3": 1}, "ts_future"),
    ({"ts": 1782864000 - 86400 * 40, "total_m3": 1}, "ts_past"),
    ([1, 2], "wrong_shape"),
    ("just text", "wrong_shape"),
])
def test_rejection_reasons(payload: Any, reason: str) -> None:
    assert _reason("dtu-json", payload) == reason


def test_too_large_and_unknown_meter() -> None:
    small = DecodeContext(tz=TZ, max_payload=64)
    assert _reason("dtu-json", {**OK, "pad": "x" * 100}, ctx=small) == "too_large"
    assert _reason("dtu-json", OK, meters=BOTH, topic_key="X9") == "unknown_meter"
    assert _reason("dtu-json", OK, meters=BOTH) == "unknown_meter"  # two meters, no key
    assert _reason("dtu-json-array", [{"id": "nope", **OK}], meters=BOTH) == "unknown_meter"
    assert _reason("dtu-json-map", {"ts": 1782864000, "meters": [1]}, meters=BOTH) == "wrong_shape"
    assert _reason("dtu-json-map", {"ts": 1782864000}, meters=BOTH) == "wrong_shape"


# -- raw registers ---------------------------------------------------------------------------------


class FloatCodec:
    """A stand-in register profile: registers 0-1 rate, 2-3 total, both CDAB floats."""

    def knows(self, profile: str) -> bool:
        return profile == "tuf2000m"

    def decode(self, profile: str, start: int, registers: Sequence[int]) -> dict[str, float | int | None]:
        import struct

        def f(i: int) -> float:
            return float(struct.unpack(">f", struct.pack(">HH", registers[i + 1], registers[i]))[0])
        if len(registers) < 4:
            raise ValueError(f"needs 4 registers, got {len(registers)}")
        return {"rate_m3h": f(0), "total_m3": f(2)}

    def encode(self, profile: str, values: Mapping[str, float | int | None]) -> tuple[int, list[int]]:
        import struct
        out: list[int] = []
        for name in ("rate_m3h", "total_m3"):
            hi, lo = struct.unpack(">HH", struct.pack(">f", float(values[name] or 0)))
            out += [lo, hi]
        return 0, out


def test_register_blocks_hex_base64_and_rtu_frames() -> None:
    regs = [0x3CD0, 0x40E3, 65480, 65535]
    assert decode_block("3CD0 40E3 FFC8 FFFF", Encoding.HEX) == regs
    assert decode_block(encode_block(regs, Encoding.BASE64), Encoding.BASE64) == regs
    frame = encode_block(regs, Encoding.BINARY, Frame.RTU)
    assert isinstance(frame, bytes) and frame[:3] == b"\x01\x03\x08"
    assert decode_block(frame, Encoding.BINARY, Frame.RTU) == regs
    # the TUF-2000 manual's request frame checks out
    assert crc16(bytes.fromhex("01030000000A")).to_bytes(2, "little") == bytes.fromhex("C5CD")
    broken = frame[:-1] + b"\x00"
    for bad, enc, frm in (("3CD", Encoding.HEX, Frame.NONE), ("zz", Encoding.HEX, Frame.NONE),
                          ("!!", Encoding.BASE64, Frame.NONE), (broken, Encoding.BINARY, Frame.RTU)):
        with pytest.raises(ValueError):
            decode_block(bad, enc, frm)


def test_register_profiles_decode_through_the_codec() -> None:
    codec = FloatCodec()
    ctx = DecodeContext(tz=TZ, codec=codec)
    r = _decode("dtu-registers-hex", {"ts": 1782864000, "data": "3CD040E3 00004120"}, ctx=ctx).readings[0]
    assert r.rate_m3h == pytest.approx(7.1011734) and r.total_m3 == 10.0 and r.ts == T0
    b64 = base64.b64encode(bytes.fromhex("3CD040E300004120")).decode()
    d = _decode("dtu-registers-base64", {"ts": 1782864000, "data": b64}, ctx=ctx)
    assert d.readings[0].total_m3 == 10
    p = PROFILES["dtu-rtu-binary"]
    raw = encode(p, [("E1", r)], TZ, codec)
    again = decode(p, raw, NOW, ctx, {"E1": E1})
    assert again.readings[0].total_m3 == 10.0 and again.readings[0].ts == NOW  # no device time
    assert _reason("dtu-registers-hex", {"ts": 1782864000, "data": "3CD0"}, ctx=ctx) == "bad_registers"
    assert _reason("dtu-registers-hex", {"ts": 1782864000, "data": 5}, ctx=ctx) == "wrong_type"
    assert _reason("dtu-registers-hex", {"ts": 1782864000, "data": "3CD040E300004120"}) == "bad_registers"


# -- profile files -----------------------------------------------------------------------------------


def test_user_profiles_are_loaded_and_errors_name_the_file(tmp_path: Any) -> None:
    (tmp_path / "mine.yaml").write_text("name: mine\ntime: {path: t}\nfields: {total_m3: {path: v}}\n")
    assert "mine" in load_profiles(tmp_path) and "dtu-json" in load_profiles(tmp_path)
    (tmp_path / "bad.yaml").write_text("name: bad\nfields: {total_m3: {path: v, unit: gallons}}\n")
    with pytest.raises(ProfileError, match=r"bad\.yaml.*gallons"):
        load_profiles(tmp_path)


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "x", "fields": {}}, "rate_m3h"),
    ({"name": "x", "time": {"path": "t", "format": "local"}, "fields": {"total_m3": {"path": "v"}}},
     "pattern"),
    ({"name": "x", "time": {"missing": "reject"}, "fields": {"total_m3": {"path": "v"}}}, "no time path"),
    ({"name": "x", "format": "registers", "fields": {"total_m3": {"path": "v"}}}, "registers"),
    ({"name": "x", "fields": {"total_m3": {"path": "a..b"}}}, "empty step"),
])
def test_profile_validation_messages(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PayloadProfile.model_validate(data)
