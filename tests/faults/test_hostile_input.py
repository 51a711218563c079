"""Hostile input: fuzzing the three parsers that take text from outside — MQTT payloads, Modbus registers,
CSV replay files — with seeded random cases, plus hypothesis properties.

Every case must end in readings or in a rejection with a reason (counted in a metric or listed as a bad
row), never in an exception escaping the parser, and within a per-case time bound.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from collector.modbus import PROFILES as REGISTER_PROFILES
from collector.modbus.codec import DecodeError
from collector.modbus.poller import GatewayPoller, _decode
from collector.modbus.profile import combine
from collector.model import Meter, ModelError, Role, Site
from collector.mqtt.decode import Binding, DecodeContext, decode
from collector.mqtt.errors import RejectReason
from collector.mqtt.ingester import MqttSource, _Message
from collector.mqtt.profile import PayloadFormat, load_profiles
from collector.mqtt.registers import Encoding, Frame, encode_block
from collector.mqtt.timestamps import TimeFormat, parse_timestamp
from gshp.clock import SystemClock
from gshp.config import load_config
from gshp.sources import REGISTER_CODEC, mqtt_source
from rules.replay import REQUIRED, ReplayError, parse_readings

SEED = 20260701
CASE_BOUND_S = 1.0  # no single case may take longer (the largest payload is 256 KiB; a CI runner may pause)
MQTT_CASES = 60_000
REGISTER_CASES = 30_000
CSV_DOCUMENTS = 600
CSV_BIG_ROWS = 50_000

PAYLOAD_PROFILES = load_profiles()
TZ = ZoneInfo("Asia/Shanghai")

# values that break naive parsers: types, non-finite numbers, huge numbers, odd text, timestamps
HOSTILE: list[Any] = [
    None, True, False, 0, -1, -0.0, 1e308, -1e308, 10**400, 2**63, -(2**63) - 1, 1e20, -1e20,
    "NaN", "nan", "inf", "-Infinity", "1e309", "-0", "", " ", "ERR", "null", "0x10", "1_000", "１２", "٣",
    "\u0000", "\ufeff1", "\u202e52.5", "' OR 1=1 --", '"; DROP MEASUREMENT flow; --', "a,b=c d",
    "E1\nflow,site=evil total_m3=1 0", "\\", [], {}, [[[[]]]], {"value": 1},
    1782864000, 1782864000000, 17828640000000000, -1782864000, "1782864000", "2026-07-01T08:00:00",
    "2026-07-01T08:00:00+08:00", "2026-02-30T00:00:00Z", "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00", "01072026", "999999", "2026-03-29T02:30:00",
]
RAW_BLOBS: list[bytes] = [
    b"[" * 200_000, b"{" * 1000, b"1" * 5000, b'{"ts":' + b"9" * 400 + b',"total_m3":1}',
    b'{"ts": 1782864000, "total_m3": "' + b"1" * 100_000 + b'"}', b"\xff\xfe{\x00}\x00", b"\xef\xbb\xbf{}",
    b'{"ts": 1782864000, "total_m3": 1, "ts": "x"}', b"\x00" * 300_000, b"null", b"[]", b"{}", b'""',
]


def _reject_totals() -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name == "gshp_ingest_rejected_total" and s.labels.get("source") == "mqtt":
                out[s.labels["reason"]] = s.value
    return out


def _mutate(rng: random.Random, v: Any, depth: int = 0) -> Any:
    if isinstance(v, dict):
        d = {k: _mutate(rng, x, depth + 1) for k, x in v.items()}
        if d and rng.random() < 0.2:
            d.pop(rng.choice(list(d)))
        if rng.random() < 0.15:
            d[rng.choice(["ts", "time", "id", "E1", "R1", "r2", "values", "data", "params", "meters",
                          "E1_total", "Date", "Time"])] = rng.choice(HOSTILE)
        return d
    if isinstance(v, list):
        items = [_mutate(rng, x, depth + 1) for x in v]
        return items * rng.randint(0, 3) if rng.random() < 0.2 else items
    if rng.random() < 0.35:
        return rng.choice(HOSTILE)
    if isinstance(v, float) and rng.random() < 0.3:
        return v * rng.choice([-1, 1e6, 1e-6, 0])
    return v


def _flip(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if not b or op < 0.4:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif op < 0.8:
            b[rng.randrange(len(b))] = rng.randrange(256)
        else:
            del b[rng.randrange(len(b))]
    return bytes(b)


def _register_block(rng: random.Random, profile_name: str) -> bytes:
    """A transparent-DTU payload: registers (random or edge values) as hex, base64 or an RTU frame."""
    count = rng.choice([0, 1, 2, 30, 60, 120, 125, 130])
    regs = [rng.choice([0, 1, 0x7FFF, 0x8000, 0xFFFF, rng.randrange(65536)]) for _ in range(count)]
    profile = PAYLOAD_PROFILES[profile_name]
    assert profile.registers is not None
    enc, frame = profile.registers.encoding, profile.registers.frame
    try:
        block = encode_block(regs, enc, frame)
    except ValueError:
        block = "" if enc is not Encoding.BINARY else b""
    if isinstance(block, bytes):
        return _flip(rng, block) if rng.random() < 0.3 else block
    if rng.random() < 0.3:
        block = block[: rng.randrange(len(block) + 1)] + rng.choice(["", "zz", "=", " ", "\u00e9"])
    ts: Any = rng.choice([1782864000, None, "x", 10**30, "2026-07-01T08:00:00Z"])
    return json.dumps({"ts": ts, "data": block if rng.random() < 0.9 else rng.choice(HOSTILE)}).encode()


_METERS_YAML = {
    # one site per payload profile; keyed profiles get two meters on one topic, wildcard profiles a {key}
    "single": "      - {{id: E1, role: extraction, mqtt: {{topic: 'fz/{n}/E1', profile: {p}}}}}\n"
              "      - {{id: R1, role: reinjection, mqtt: {{topic: 'fz/{n}/R1', profile: {p}}}}}\n",
    "keyed": "      - {{id: E1, role: extraction, mqtt: {{topic: 'fz/{n}/up', profile: {p}}}}}\n"
             "      - {{id: R1, role: reinjection, mqtt: {{topic: 'fz/{n}/up', profile: {p}, key: r2}}}}\n",
    "wild": "      - {{id: E1, role: extraction, mqtt: {{topic: 'fw/{n}/{{key}}/up', profile: {p}}}}}\n"
            "      - {{id: R1, role: reinjection, mqtt: {{topic: 'fw/{n}/{{key}}/up', profile: {p}}}}}\n",
}


def _fuzz_config(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    """A config with every shipped payload profile on a meter; returns it and (topic, profile) pairs."""
    sites, topics = [], []
    for i, (name, p) in enumerate(sorted(PAYLOAD_PROFILES.items())):
        kinds = ["keyed"] if p.keyed else ["single", "wild"] if p.format is PayloadFormat.JSON else ["single"]
        for kind in kinds:
            n = f"{i}{kind[0]}"
            sites.append(f"  - id: fz{n}\n    name: 模糊{n}\n    district: d\n    meters:\n"
                         + _METERS_YAML[kind].format(n=n, p=name))
            if kind == "single":
                topics += [(f"fz/{n}/E1", name), (f"fz/{n}/R1", name)]
            elif kind == "keyed":
                topics.append((f"fz/{n}/up", name))
            else:
                topics += [(f"fw/{n}/E1/up", name), (f"fw/{n}/R1/up", name),
                           (f"fw/{n}/' OR 1=1 --/up", name), (f"fw/{n}/a,b=c d/up", name)]
    topics += [("fz/unknown", "dtu-json"), ("fz/0s/E1/extra", "dtu-json"), ("", "dtu-json"), ("#", "dtu-json")]
    cfg = tmp_path / "fuzz.yaml"
    cfg.write_text(f"timezone: Asia/Shanghai\nstate_dir: {tmp_path / 'state'}\n"
                   "influx: {url: 'http://127.0.0.1:9', api: v1, bucket: fuzz}\n"
                   "mqtt: {host: 127.0.0.1, port: 9, client_id: fuzz}\n"
                   "sites:\n" + "".join(sites), encoding="utf-8")
    return cfg, topics


def test_fuzz_mqtt_payloads_every_message_gives_readings_or_a_counted_reason(
        tmp_path: Path, figures: dict[str, Any]) -> None:
    config = load_config(_fuzz_config(tmp_path)[0])
    source = mqtt_source(config, SystemClock())
    assert isinstance(source, MqttSource)
    topics = _fuzz_config(tmp_path)[1]
    configured = {(s.id, m.id) for s in config.sites for m in s.meters}
    rng = random.Random(SEED)
    received = 1782864030.0  # just after the shipped examples' device time
    recv_dt = datetime.fromtimestamp(received, UTC)
    examples = {name: p.example for name, p in PAYLOAD_PROFILES.items()}
    before = _reject_totals()
    worst, readings_n, letters_n, messages_n = 0.0, 0, 0, 0
    for i in range(MQTT_CASES):
        topic, pname = rng.choice(topics)
        profile = PAYLOAD_PROFILES[pname]
        r = rng.random()
        if profile.format is PayloadFormat.REGISTERS and r < 0.7:
            payload = _register_block(rng, pname)
        elif examples[pname] is not None and r < 0.65:
            payload = json.dumps(_mutate(rng, examples[pname])).encode()
        elif examples[pname] is not None and r < 0.9:
            payload = _flip(rng, json.dumps(examples[pname]).encode())
        else:
            payload = rng.choice(RAW_BLOBS) if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 64))
        msg = _Message(0, i + 1, 1, topic, payload, received, False, len(payload))
        t0 = time.perf_counter()
        readings, letters = source._decode([msg])
        worst = max(worst, time.perf_counter() - t0)
        messages_n += 1
        assert readings or letters, (topic, payload[:200])
        readings_n += len(readings)
        letters_n += len(letters)
        for rd in readings:  # what gets through is sane and names only configured meters
            assert (rd.site, rd.meter) in configured
            assert rd.total_m3 is None or (math.isfinite(rd.total_m3) and rd.total_m3 >= 0)
            assert rd.rate_m3h is None or math.isfinite(rd.rate_m3h)
            assert recv_dt - timedelta(days=30) <= rd.ts <= recv_dt + timedelta(minutes=10)
        for letter in letters:
            assert RejectReason(letter.reason)
    source.deadletters.close()  # type: ignore[union-attr]
    after = _reject_totals()
    counted = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) - before.get(k, 0)}
    assert counted.get("decode_error", 0) == 0, "a decoder fault: see the log for the traceback"
    assert sum(counted.values()) >= letters_n  # every dead letter's reasons are counted
    assert worst < CASE_BOUND_S, worst
    figures.update(cases=messages_n, readings=readings_n, rejected_messages=letters_n,
                   rejections_by_reason={k: int(v) for k, v in sorted(counted.items())},
                   worst_case_ms=round(worst * 1000, 2))


def test_fuzz_register_decoding_raises_only_decode_errors(figures: dict[str, Any]) -> None:
    """The poller's decode path (compiled field decoders → profile values → Reading) on random register
    images: a bad image is a DecodeError/ModelError, which the poller counts as error_class=decode."""
    rng = random.Random(SEED + 1)
    profiles = list(REGISTER_PROFILES)
    outcomes: Counter[str] = Counter()
    worst = 0.0
    for i in range(REGISTER_CASES):
        p = profiles[i % len(profiles)]
        fields = p.fields
        slots = [(name, 0, spec.address, spec.compiled()) for name, spec in fields.items()]
        image = _IMAGES[p.name]  # only the registers the profile reads are filled: the rest stay 0
        for a in _ADDRESSES[p.name]:
            image[a] = rng.choice(_EDGE) if rng.random() < 0.3 else rng.randrange(65536)
        t0 = time.perf_counter()
        try:
            values = combine(p, _decode(slots, [image]))
            reading = GatewayPoller._reading(_PLANS[p.name], datetime(2026, 7, 1, tzinfo=UTC), values)
        except (DecodeError, ModelError) as exc:
            outcomes[type(exc).__name__] += 1
        else:
            assert reading.total_m3 is None or (math.isfinite(reading.total_m3) and reading.total_m3 >= 0)
            outcomes["reading"] += 1
        worst = max(worst, time.perf_counter() - t0)
    assert worst < CASE_BOUND_S
    figures.update(cases=REGISTER_CASES, profiles=len(profiles), outcomes=dict(outcomes),
                   worst_case_ms=round(worst * 1000, 3))


class _Plan:
    """The two attributes `GatewayPoller._reading` reads from a meter plan."""

    def __init__(self, name: str) -> None:
        self.profile = REGISTER_PROFILES.get(name)
        self.site = Site.model_validate({"id": "fz", "name": "fz", "district": "d", "meters": [
            {"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}]})
        self.meter: Meter = self.site.meters[0]


_PLANS: dict[str, Any] = {p.name: _Plan(p.name) for p in REGISTER_PROFILES}
_IMAGES = {p.name: [0] * max(f.end for f in p.fields.values()) for p in REGISTER_PROFILES}
_ADDRESSES = {p.name: sorted({a for f in p.fields.values() for a in range(f.address, f.end)})
              for p in REGISTER_PROFILES}
_EDGE = [0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x7F80, 0xFF80, 0x7FC0]  # incl. float +inf, -inf, NaN high words

_CSV_VALUES = ["", " ", "nan", "NaN", "inf", "-inf", "1e309", "-1", "0", "1e300", "-1e300", "1782864000",
               "1782864000000", "2026-07-01T08:00:00+08:00", "2026-07-01T08:00:00", "2026-13-01T00:00:00Z",
               "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1e20", "-1e20", "s1", "E1", "=1+1", '"', "'",
               ",", "\n", "\r", "é", "向阳", "\\", "a,b", "1_0", "0x1F", "True", "None", "NULL", "１２",
               "  5  ", "1.5", "2.5e3", "' OR 1=1 --", '"; DROP MEASUREMENT flow; --', "1" * 400]
_GOOD = {"ts": "1782864000", "site": "s1", "meter": "E1", "rate_m3h": "52.5", "total_m3": "1000.5",
         "signal_pct": "80", "error_code": "0"}


def _csv_document(rng: random.Random) -> tuple[str, int | None]:
    """CSV text and its number of data rows when that is well defined (header intact, csv-quoted)."""
    cols = list(REQUIRED) + (["signal_pct", "error_code"] if rng.random() < 0.5 else [])
    if rng.random() < 0.1:
        rng.shuffle(cols)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    rows = rng.randint(0, 8)
    for _ in range(rows):
        w.writerow([rng.choice(_CSV_VALUES) if rng.random() < 0.4 else _GOOD[c] for c in cols])
    text = buf.getvalue()
    if rng.random() < 0.25:
        chars = list(text)
        for _ in range(rng.randint(1, 5)):
            if chars:
                chars[rng.randrange(len(chars))] = rng.choice(_CSV_VALUES) or "x"
        return "".join(chars), None
    return text, rows


def test_fuzz_csv_replay_input_every_row_read_or_listed_bad(figures: dict[str, Any]) -> None:
    rng = random.Random(SEED + 2)
    refused = rows_ok = rows_bad = 0
    reasons: Counter[str] = Counter()
    worst = 0.0
    for _ in range(CSV_DOCUMENTS):
        text, rows = _csv_document(rng)
        t0 = time.perf_counter()
        try:
            got = parse_readings(io.StringIO(text))
        except ReplayError:
            refused += 1
            continue
        finally:
            worst = max(worst, time.perf_counter() - t0)
        if rows is not None:
            assert len(got) + len(got.bad) == rows, text
        rows_ok += len(got)
        rows_bad += len(got.bad)
        reasons.update(b.reason.split(":")[0] for b in got.bad)
        assert all(math.isfinite(t) and 631152000 <= t < 4102444800 for t in got.ts)
        assert all(v is None or v >= 0 for v in got.total)
    # one large file of hostile rows: the vectorised path, every row read or listed with its reason
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*REQUIRED, "signal_pct", "error_code"])
    for _ in range(CSV_BIG_ROWS):
        w.writerow([rng.choice(_CSV_VALUES) if rng.random() < 0.3 else _GOOD[c]
                    for c in (*REQUIRED, "signal_pct", "error_code")])
    t0 = time.perf_counter()
    big = parse_readings(io.StringIO(buf.getvalue()))
    big_s = time.perf_counter() - t0
    assert len(big) + len(big.bad) == CSV_BIG_ROWS
    assert big_s < 20
    assert worst < CASE_BOUND_S, worst
    figures.update(documents=CSV_DOCUMENTS, documents_refused=refused, rows_read=rows_ok, rows_bad=rows_bad,
                   big_file_rows=CSV_BIG_ROWS, big_file_bad=len(big.bad), big_file_s=round(big_s, 2),
                   worst_document_ms=round(worst * 1000, 1), bad_reasons=dict(reasons.most_common(8)))


# -- properties ----------------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)
_CTX = DecodeContext(tz=TZ, codec=REGISTER_CODEC)
_B = {"E1": Binding("s1", "E1", Role.EXTRACTION, "E1")}
_NOW = datetime(2026, 7, 1, tzinfo=UTC)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(n for n, p in PAYLOAD_PROFILES.items() if not p.keyed)),
       doc=st.dictionaries(st.sampled_from(["ts", "time", "total_m3", "rate_m3h", "values", "data", "params",
                                            "Date", "Time", "Total", "Flow", "signal_pct", "error_code"]),
                           _json, max_size=6))
def test_property_any_json_document_decodes_or_is_rejected(name: str, doc: dict[str, Any]) -> None:
    try:
        raw = json.dumps(doc).encode()
    except ValueError:
        return
    d = decode(PAYLOAD_PROFILES[name], raw, _NOW, _CTX, _B)
    assert d.readings or d.rejected
    for r in d.readings:
        assert r.total_m3 is None or r.total_m3 >= 0


@settings(max_examples=400, deadline=None)
@given(value=_json, fmt=st.sampled_from(list(TimeFormat)))
def test_property_timestamps_parse_to_utc_or_raise_value_error(value: Any, fmt: TimeFormat) -> None:
    try:
        ts = parse_timestamp(value, fmt, TZ, "%d%m%Y %H%M%S")
    except (ValueError, OverflowError):
        return
    assert ts.tzinfo is not None and ts.utcoffset() == timedelta(0)


@settings(max_examples=300, deadline=None)
@given(regs=st.lists(st.integers(0, 0xFFFF), max_size=140), enc=st.sampled_from([Encoding.HEX, Encoding.BASE64]))
def test_property_register_blocks_of_any_length_decode_or_are_rejected(regs: list[int], enc: Encoding) -> None:
    block = encode_block(regs, enc, Frame.NONE)
    payload = json.dumps({"ts": 1782864000, "data": block}).encode()
    name = "dtu-registers-hex" if enc is Encoding.HEX else "dtu-registers-base64"
    d = decode(PAYLOAD_PROFILES[name], payload, _NOW, _CTX, _B, "E1")
    assert len(d.readings) + len(d.rejected) == 1


@pytest.mark.parametrize("when,reason", [
    (datetime(2026, 7, 1, 1, tzinfo=UTC), "ts_future"),      # an hour ahead: the DTU clock is wrong
    (datetime(2026, 5, 1, tzinfo=UTC), "ts_past"),           # older than mqtt.max_age
    (datetime(1970, 1, 1, tzinfo=UTC), "ts_past"),           # a DTU that lost its clock
    (datetime(2099, 1, 1, tzinfo=UTC), "ts_future"),
])
def test_device_time_far_from_now_is_rejected_with_its_reason(when: datetime, reason: str) -> None:
    payload = json.dumps({"ts": int(when.timestamp()), "total_m3": 5.0}).encode()
    d = decode(PAYLOAD_PROFILES["dtu-json"], payload, _NOW, _CTX, _B)
    assert not d.readings and [r.reason.value for r in d.rejected] == [reason]
