"""HJ 212 and SZY 206 over real TCP into a real influxd, through `gshp run` as a child process: valid
frames, bad CRC, wrong password, unknown stations, frames split across TCP segments, several stations at
once, and loggers re-sending unanswered frames across SIGKILLs of the collector — each reading stored
exactly once, each bad frame dead-lettered with its reason and never answered."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.deadletter import DeadLetterStore
from collector.hj212 import encode_packet
from collector.szy206 import address_bytes, encode_frame
from collector.szy206.codec import encode_bcd_signed, encode_time_label
from gshp.devstack import Influxd, free_port, wait_port
from simulators.datalogger import DataLogger, Upload
from simulators.hj212 import hj212_answers
from simulators.szy206 import szy206_answers
from tests.helpers import wait_until
from tests.mqtt_support import Collector

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Shanghai")
BASE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=6)


def _config(path: Path, *, state_dir: Path, influx_url: str, db: str, api_port: int, hj212_port: int,
            szy206_port: int) -> Path:
    path.write_text(f"""\
timezone: Asia/Shanghai
state_dir: {state_dir}
influx: {{url: '{influx_url}', api: v1, bucket: {db}}}
outbox: {{max_batch_age: 100ms}}
api: {{listen: '127.0.0.1:{api_port}'}}
hj212:
  listen: 127.0.0.1:{hj212_port}
  idle_timeout: 30s
  stations:
    - {{mn: MN1, password: pw1}}
    - {{mn: MN2, password: pw2}}
    - {{mn: MN3, password: pw3}}
szy206: {{listen: '127.0.0.1:{szy206_port}', idle_timeout: 30s}}
sites:
  - id: s1
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {{id: E1, role: extraction, hj212: {{mn: MN1}}}}
      - {{id: E2, role: extraction, hj212: {{mn: MN3}}}}
      - {{id: R1, role: reinjection, hj212: {{mn: MN2, rate: w00000-Avg, volume: w00000-Cou}}}}
  - id: s2
    name: 卧龙区第一中学
    district: 卧龙区
    meters:
      - {{id: E1, role: extraction, szy206: {{division: "411302", station: 7, point: 1}}}}
      - {{id: R1, role: reinjection, szy206: {{division: "411302", station: 7, point: 2}}}}
""", encoding="utf-8")
    return path


class Stack:
    def __init__(self, tmp_path: Path, influxd: Influxd, db: str) -> None:
        self.influxd, self.db = influxd, db
        self.api_port, self.hj212_port, self.szy206_port = free_port(), free_port(), free_port()
        self.state = tmp_path / "state"
        config = _config(tmp_path / "gshp.yaml", state_dir=self.state, influx_url=influxd.url, db=db,
                         api_port=self.api_port, hj212_port=self.hj212_port, szy206_port=self.szy206_port)
        self.collector = Collector(config, self.api_port, tmp_path / "collector.log")

    def start(self) -> Stack:
        self.collector.start()
        wait_port("127.0.0.1", self.hj212_port, timeout=30)
        wait_port("127.0.0.1", self.szy206_port, timeout=30)
        return self

    def points(self, field: str, site: str) -> set[tuple[str, int, float]]:
        res = self.influxd.query(f"SELECT {field} FROM flow WHERE site = '{site}' GROUP BY meter", self.db)
        out: set[tuple[str, int, float]] = set()
        for series in res[0].get("series", []):  # type: ignore[union-attr]
            out.update((series["tags"]["meter"], int(t), float(v)) for t, v in series["values"] if v is not None)
        return out

    def letters(self) -> dict[str, int]:
        store = DeadLetterStore(self.state / "deadletter.sqlite")
        try:
            return store.counts()
        finally:
            store.close()


@pytest.fixture
def stack(tmp_path: Path, influxd: Influxd, influx_db: str) -> Iterator[Stack]:
    s = Stack(tmp_path, influxd, influx_db).start()
    try:
        yield s
    finally:
        assert s.collector.stop() == 0, s.collector.log.read_text()[-3000:]


def _local(ts: datetime) -> str:
    return ts.astimezone(TZ).strftime("%Y%m%d%H%M%S")


def _hj212(mn: str, pw: str, ts: datetime, cp: str, qn: int, cn: str = "2011") -> bytes:
    return encode_packet(f"QN={_local(ts)}{qn % 1000:03d};ST=32;CN={cn};PW={pw};MN={mn};Flag=5;"
                         f"CP=&&DataTime={_local(ts)};{cp}&&")


def _realtime(mn: str, pw: str, i: int) -> tuple[bytes, datetime, float]:
    ts = BASE + timedelta(seconds=10 * i)
    total = 1000.0 + 0.125 * i
    return _hj212(mn, pw, ts, f"w00000-Rtd=45.0,w00000-Flag=N;w00001-Rtd={total},w00001-Flag=N", i), ts, total


def _answers(sock: socket.socket, n: int, timeout: float = 10.0) -> list[bytes]:
    """Up to n CR LF-terminated answers, whatever arrives within `timeout`."""
    sock.settimeout(0.2)
    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(b"\r\n") < n and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        buf += chunk
    return [line + b"\r\n" for line in buf.split(b"\r\n") if line]


def test_hj212_valid_split_and_bad_packets_from_several_stations(stack: Stack) -> None:
    n = 40
    sent: dict[str, list[tuple[bytes, datetime, float]]] = {"MN1": [], "MN3": []}
    answers: dict[str, list[bytes]] = {}

    def station(mn: str, pw: str, meter: str) -> None:
        with socket.create_connection(("127.0.0.1", stack.hj212_port), timeout=10) as sock:
            frames = [_realtime(mn, pw, i) for i in range(n)]
            sent[mn] = frames
            stream = b"".join(f for f, _, _ in frames)
            for i in range(0, len(stream), 37):  # split across many TCP segments, mid-packet
                sock.sendall(stream[i:i + 37])
                time.sleep(0.001)
            answers[mn] = _answers(sock, n)

    threads = [threading.Thread(target=station, args=a) for a in (("MN1", "pw1", "E1"), ("MN3", "pw3", "E2"))]
    for t in threads:
        t.start()
    with socket.create_connection(("127.0.0.1", stack.hj212_port), timeout=10) as bad:
        good, _, _ = _realtime("MN1", "pw1", 500)
        bad.sendall(good[:-6] + b"0000\r\n")  # bad CRC
        bad.sendall(_realtime("MN1", "wrong", 501)[0])  # wrong password
        bad.sendall(_realtime("MN9", "pw1", 502)[0])  # unknown station
        bad.sendall(b"##00x1garbage\r\n")  # bad length
        assert _answers(bad, 1, timeout=2.0) == []  # none of them is answered, the connection stays
        bad.sendall(_realtime("MN1", "pw1", 503)[0])
        (answer,) = _answers(bad, 1)
        assert b"ST=91;CN=9014" in answer and b"MN=MN1" in answer
    for t in threads:
        t.join(30)
    for mn in ("MN1", "MN3"):
        qns = [f[f.index(b"QN="):f.index(b";")] for f, _, _ in sent[mn]]
        assert [a[a.index(b"QN="):a.index(b";")] for a in answers[mn]] == qns, mn  # each upload answered, in order
    expected = {("E1", int(ts.timestamp() * 1000), total) for _, ts, total in [*sent["MN1"], _realtime("MN1", "", 503)]}
    expected |= {("E2", int(ts.timestamp() * 1000), total) for _, ts, total in sent["MN3"]}
    wait_until(lambda: stack.points("total_m3", "s1") == expected, timeout=30)
    wait_until(lambda: stack.letters() == {"bad_crc": 1, "wrong_password": 1, "unknown_station": 1, "bad_length": 1,
                                                  "garbage": 1},
               timeout=10)
    assert (stack.collector.metric('gshp_ingest_rejected_total{reason="wrong_password",source="hj212"}') == 1.0)


def test_hj212_minute_totals_are_stored_as_interval_volumes(stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", stack.hj212_port), timeout=10) as sock:
        for i in range(5):
            start = BASE + timedelta(minutes=i)
            sock.sendall(_hj212("MN2", "pw2", start, f"w00000-Cou={0.75 + i / 100},w00000-Avg=45.0,w00000-Flag=N",
                                i, cn="2051"))
        assert len(_answers(sock, 5)) == 5
    expected = {("R1", int((BASE + timedelta(minutes=i + 1)).timestamp() * 1000), 0.75 + i / 100) for i in range(5)}
    wait_until(lambda: stack.points("volume_m3", "s1") == expected, timeout=30)
    assert {v for _, _, v in stack.points("period_s", "s1")} == {60.0}


def _szy206_frame(i: int, station: int = 7) -> tuple[bytes, datetime]:
    ts = BASE + timedelta(minutes=i)
    data = (encode_bcd_signed(45.0, 5, 3) + encode_bcd_signed(10_000 + i, 5, 0)
            + encode_bcd_signed(44.5, 5, 3) + encode_bcd_signed(20_000 + i, 5, 0)
            + bytes(4) + encode_time_label(ts.astimezone(TZ), 5))
    return encode_frame(0xB3, address_bytes("411302", station), 0xC0, data), ts


def _szy_answers(sock: socket.socket, n: int, timeout: float = 10.0) -> int:
    sock.settimeout(0.2)
    got = b""
    deadline = time.monotonic() + timeout
    while got.count(b"\x16") < n and time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        if not chunk:
            break
        got += chunk
    return got.count(bytes([0x68, 0x08, 0x68]))


def test_szy206_valid_split_and_bad_frames(stack: Stack) -> None:
    n = 30
    frames = [_szy206_frame(i) for i in range(n)]
    with socket.create_connection(("127.0.0.1", stack.szy206_port), timeout=10) as sock:
        stream = b"".join(f for f, _ in frames)
        for i in range(0, len(stream), 11):
            sock.sendall(stream[i:i + 11])
            time.sleep(0.001)
        assert _szy_answers(sock, n) == n
        bad = frames[0][0]
        sock.sendall(bad[:-2] + bytes([bad[-2] ^ 0x5A, 0x16]))  # bad CRC
        sock.sendall(_szy206_frame(99, station=8)[0])  # unknown station
        assert _szy_answers(sock, 1, timeout=2.0) == 0
    expected = {(m, int(ts.timestamp() * 1000), float(base + i)) for i, (_, ts) in enumerate(frames)
                for m, base in (("E1", 10_000), ("R1", 20_000))}
    wait_until(lambda: stack.points("total_m3", "s2") == expected, timeout=30)
    wait_until(lambda: stack.letters() == {"bad_crc": 1, "unknown_station": 1}, timeout=10)


def test_loggers_resend_unanswered_frames_across_sigkills_and_each_reading_lands_once(stack: Stack) -> None:
    n = 1500
    hj = DataLogger("127.0.0.1", stack.hj212_port, hj212_answers, window=20, answer_timeout=1.0)
    szy = DataLogger("127.0.0.1", stack.szy206_port, szy206_answers, window=1, answer_timeout=1.0)
    expected_hj: set[tuple[str, int, float]] = set()
    for i in range(n):
        frame, ts, total = _realtime("MN1", "pw1", 200 + i)
        hj.add(Upload(frame, frame[frame.index(b"QN="):frame.index(b";")]))
        expected_hj.add(("E1", int(ts.timestamp() * 1000), total))
    szy_frames = [_szy206_frame(i) for i in range(100)]
    for frame, _ in szy_frames:
        szy.add(Upload(frame, frame[4:9] + b"\xc0"))
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set() and (hj.pending or szy.pending):
            hj.pump(0.2)
            szy.pump(0.2)
            if not (hj.connected and szy.connected):
                time.sleep(0.1)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        for threshold in (300, 900):
            wait_until(lambda th=threshold: hj.answered >= th, timeout=60, interval=0.01)
            stack.collector.kill()
            time.sleep(0.5)
            stack.start()
        t.join(120)
    finally:
        stop.set()
        t.join(5)
        hj.close()
        szy.close()
    assert not t.is_alive() and hj.pending == 0 and szy.pending == 0
    assert hj.resent > 0, "the kills left frames unanswered that the logger sent again"
    wait_until(lambda: {p for p in stack.points("total_m3", "s1") if p[0] == "E1"} == expected_hj, timeout=60)
    expected_szy = {("E1", int(ts.timestamp() * 1000), float(10_000 + i)) for i, (_, ts) in enumerate(szy_frames)}
    wait_until(lambda: {p for p in stack.points("total_m3", "s2") if p[0] == "E1"} == expected_szy, timeout=60)
    res = stack.influxd.query("SELECT count(total_m3) FROM flow WHERE site = 's1' AND meter = 'E1'", stack.db)
    assert res[0]["series"][0]["values"][0][1] == n  # type: ignore[index]
