"""HJ 212 and SZY 206 ingest throughput: frames/s into InfluxDB against a bare TCP echo of the same frames
in the same run.

The same simulated loggers (`simulators.datalogger`, one connection per station, a window of frames in
flight, each frame kept until answered) send the same frames twice: to an asyncio TCP server that echoes
every byte (the baseline: what the loopback, the event loop and the clients cost), and to `gshp run` —
frame, decode, commit to the outbox, answer, write to InfluxDB. The collector's figure runs from the first
frame sent to the last reading stored; every reading is checked to be stored exactly once. Loopback only;
bounded; stops by itself.

    python bench/telemetry.py [--frames 20000] [--stations 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.table import Row  # noqa: E402
from collector.hj212 import encode_packet  # noqa: E402
from collector.szy206 import address_bytes, encode_frame  # noqa: E402
from collector.szy206.codec import encode_bcd_signed, encode_time_label  # noqa: E402
from gshp.devstack import Influxd, free_port, wait_port  # noqa: E402
from simulators.datalogger import AnswerReader, DataLogger, Upload  # noqa: E402
from simulators.hj212 import hj212_answers  # noqa: E402
from simulators.szy206 import szy206_answers  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
WINDOW = 50


def _hj212_frames(station: int, n: int, t0: datetime) -> list[Upload]:
    out = []
    for i in range(n):
        ts = (t0 + timedelta(seconds=10 * i)).astimezone(TZ).strftime("%Y%m%d%H%M%S")
        qn = f"{ts}{station:03d}"
        frame = encode_packet(f"QN={qn};ST=32;CN=2011;PW=pw;MN=BENCH{station:03d};Flag=5;CP=&&DataTime={ts};"
                              f"w00000-Rtd=45.125,w00000-Flag=N;w00001-Rtd={1000 + i * 0.125:.3f},w00001-Flag=N&&")
        out.append(Upload(frame, f"QN={qn}".encode()))
    return out


def _szy206_frames(station: int, n: int, t0: datetime) -> list[Upload]:
    out = []
    address = address_bytes("411302", station + 1)
    for i in range(n):
        data = (encode_bcd_signed(45.125, 5, 3) + encode_bcd_signed(1000 + i, 5, 0) + bytes(4)
                + encode_time_label((t0 + timedelta(seconds=10 * i)).astimezone(TZ), 5))
        out.append(Upload(encode_frame(0xB3, address, 0xC0, data), address + b"\xc0"))
    return out


def _echo_hj212() -> AnswerReader:
    def split(buf: bytearray) -> list[bytes]:
        out = []
        while (end := buf.find(b"\r\n")) >= 0:
            out.append(bytes(buf[:end + 2]))
            del buf[:end + 2]
        return out

    return AnswerReader(split, lambda a: a[a.find(b"QN="):a.find(b";")] if b"QN=" in a else None)


PROTOCOLS: dict[str, tuple[Callable[[int, int, datetime], list[Upload]], Callable[[], AnswerReader],
                           Callable[[], AnswerReader]]] = {
    "hj212": (_hj212_frames, hj212_answers, _echo_hj212),
    "szy206": (_szy206_frames, szy206_answers, szy206_answers),
}


def _send(port: int, frames: list[list[Upload]], answers: Callable[[], AnswerReader], timeout: float = 300) -> float:
    """Send every station's frames over its own connection until each is answered; seconds taken."""
    loggers = [DataLogger("127.0.0.1", port, answers, window=WINDOW, answer_timeout=10.0) for _ in frames]
    for lg, fs in zip(loggers, frames, strict=True):
        for u in fs:
            lg.add(Upload(u.frame, u.key))
    began = time.monotonic()

    def pump(lg: DataLogger) -> None:
        deadline = time.monotonic() + timeout
        while lg.pending and time.monotonic() < deadline:
            lg.pump(1.0)
        lg.close()

    threads = [threading.Thread(target=pump, args=(lg,)) for lg in loggers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    left = sum(lg.pending for lg in loggers)
    if left:
        raise RuntimeError(f"{left} frames not answered within {timeout}s")
    return time.monotonic() - began


def _echo_server(ready: threading.Event, port_box: list[int], stop: threading.Event) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_box.append(server.sockets[0].getsockname()[1])
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        server.close()

    asyncio.run(main())


def echo_rate(frames: list[list[Upload]], answers: Callable[[], AnswerReader]) -> float:
    ready, stop, box = threading.Event(), threading.Event(), []
    t = threading.Thread(target=_echo_server, args=(ready, box, stop), daemon=True)
    t.start()
    ready.wait(10)
    try:
        seconds = _send(box[0], frames, answers)
    finally:
        stop.set()
        t.join(10)
    return sum(len(f) for f in frames) / seconds


def _config(root: Path, ix: Influxd, db: str, api: int, port: int, protocol: str, stations: int) -> Path:
    if protocol == "hj212":
        section = (f"hj212:\n  listen: 127.0.0.1:{port}\n  stations:\n"
                   + "".join(f"    - {{mn: BENCH{s:03d}, password: pw}}\n" for s in range(stations)))
        meters = "".join(f"      - {{id: M{s}, role: {'extraction' if s % 2 == 0 else 'reinjection'}, "
                         f"hj212: {{mn: BENCH{s:03d}}}}}\n" for s in range(stations))
    else:
        section = f"szy206: {{listen: '127.0.0.1:{port}'}}\n"
        meters = "".join(f"      - {{id: M{s}, role: {'extraction' if s % 2 == 0 else 'reinjection'}, "
                         f"szy206: {{division: '411302', station: {s + 1}}}}}\n" for s in range(stations))
    path = root / f"{protocol}.yaml"
    path.write_text(f"""\
timezone: Asia/Shanghai
state_dir: {root}/state-{protocol}
log_level: WARNING
influx: {{url: '{ix.url}', api: v1, bucket: {db}}}
outbox: {{synchronous: full}}
api: {{listen: '127.0.0.1:{api}'}}
{section}sites:
  - id: bench
    name: bench
    district: bench
    meters:
{meters}""", encoding="utf-8")
    return path


def _count(ix: Influxd, db: str) -> int:
    try:
        res = ix.query("SELECT count(total_m3) FROM flow", db)
    except Exception:
        return 0
    series = res[0].get("series")
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


def collector_rate(protocol: str, frames: list[list[Upload]], root: Path, ix: Influxd) -> float:
    db = f"bench_{protocol}"
    api, port = free_port(), free_port()
    config = _config(root, ix, db, api, port, protocol, len(frames))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = open(root / f"{protocol}.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "gshp.cli", "run", "--config", str(config)], env=env,
                            stdout=log, stderr=log)
    try:
        try:
            wait_port("127.0.0.1", port, timeout=60)
        except TimeoutError:
            log.flush()
            raise RuntimeError(f"{protocol}: the collector does not listen: "
                               f"{(root / f'{protocol}.log').read_text()[-2000:]}") from None
        began = time.monotonic()
        _send(port, frames, PROTOCOLS[protocol][1])
        total = sum(len(f) for f in frames)
        deadline = time.monotonic() + 300
        while (n := _count(ix, db)) < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{protocol}: {n} of {total} readings stored; see {root}/{protocol}.log")
            time.sleep(0.05)
        seconds = time.monotonic() - began
        if n != total:
            raise RuntimeError(f"{protocol}: {n} readings stored for {total} frames")
        return total / seconds
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def run(frames: int = 20_000, stations: int = 10) -> list[Row]:
    per_station = frames // stations
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10 * per_station + 3600)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gshp-bench-telemetry-") as tmp:
        root = Path(tmp)
        ix = Influxd(root / "influxd").start()
        try:
            for name, (make, _, echo_answers) in PROTOCOLS.items():
                batch = [make(s, per_station, t0) for s in range(stations)]
                echo = echo_rate(batch, echo_answers)
                rate = collector_rate(name, batch, root, ix)
                label = "HJ 212" if name == "hj212" else "SZY 206"
                rows.append(Row(f"{label} ingest, {stations} loggers × {per_station} frames, into InfluxDB",
                                rate, "frames/s", echo, "bare TCP echo of the same frames", "≥ 1 000 frames/s"))
        finally:
            ix.stop()
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--stations", type=int, default=10)
    args = p.parse_args()
    from bench.table import text
    print(text(run(args.frames, args.stations)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
