"""The shared telemetry server over real loopback TCP: answers only after the commit, none when the commit
fails (the connection closes, the logger sends again), bounded connections, idle and oversized peers
closed, rejects dead-lettered while the stream goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from collector.deadletter import DeadLetterStore
from collector.hj212 import DataKind, Hj212Protocol, encode_packet, plan_hj212
from collector.model import Reading, Site
from collector.outbox import OutboxFull
from collector.telemetry import ListenerSettings, TelemetryServer

TZ = ZoneInfo("Asia/Shanghai")
SITE = Site.model_validate({"id": "s1", "name": "n", "district": "d", "meters": [
    {"id": "E1", "role": "extraction", "hj212": {"mn": "MN1"}}, {"id": "R1", "role": "reinjection"}]})
NOW = datetime.now(UTC).replace(microsecond=0)


def _packet(i: int) -> bytes:
    ts = (NOW - timedelta(minutes=30) + timedelta(seconds=i)).astimezone(TZ).strftime("%Y%m%d%H%M%S")
    return encode_packet(f"QN={ts}{i % 1000:03d};ST=32;CN=2011;PW=pw;MN=MN1;Flag=5;CP=&&DataTime={ts};"
                         f"w00001-Rtd={1000 + i}&&")


def _run(test: Callable[[TelemetryServer, list[Reading]], Awaitable[None]], tmp_path: Path,
         fail: Callable[[], bool] = lambda: False, **settings: object) -> None:
    plan = plan_hj212({"MN1": "pw"}, [SITE], timedelta(minutes=1), DataKind.MINUTE)
    protocol = Hj212Protocol(plan, TZ, timedelta(minutes=10), timedelta(days=30))
    store = DeadLetterStore(tmp_path / "dl.sqlite")
    server = TelemetryServer(protocol, ListenerSettings(listen="127.0.0.1:0", **settings), store)  # type: ignore[arg-type]
    committed: list[Reading] = []

    def accept(readings: Sequence[Reading], source: str) -> None:
        if fail():
            raise OutboxFull("the outbox is at its bound")
        committed.extend(readings)

    async def main() -> None:
        task = asyncio.create_task(server.run(accept))
        await server.started()
        try:
            await asyncio.wait_for(test(server, committed), 30)
        finally:
            await server.stop()
            await asyncio.wait_for(task, 10)

    asyncio.run(main())


async def _answer(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)


def test_an_answer_follows_the_commit_and_a_failed_commit_gets_none(tmp_path: Path) -> None:
    failing = [False]

    async def test(server: TelemetryServer, committed: list[Reading]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(_packet(1))
        answer = await _answer(reader)
        assert b"CN=9014" in answer and len(committed) == 1
        failing[0] = True
        writer.write(_packet(2))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # no answer: the connection is closed
        assert len(committed) == 1
        failing[0] = False
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(_packet(2))  # the logger sends it again
        assert b"CN=9014" in await _answer(reader)
        assert [r.total_m3 for r in committed] == [1001, 1002]
        writer.close()

    _run(test, tmp_path, fail=lambda: failing[0])


def test_connections_beyond_the_bound_are_refused(tmp_path: Path) -> None:
    async def test(server: TelemetryServer, committed: list[Reading]) -> None:
        conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await asyncio.sleep(0.1)
        reader, _ = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once
        r0, w0 = conns[0]
        w0.write(_packet(3))
        assert b"CN=9014" in await _answer(r0)  # the others keep working
        for _, w in conns:
            w.close()

    _run(test, tmp_path, max_connections=2)


def test_a_silent_peer_is_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    async def test(server: TelemetryServer, committed: list[Reading]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(_packet(4)[:20])  # half a packet, then nothing
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert 0.9 < asyncio.get_running_loop().time() - started < 5
        assert committed == []

    _run(test, tmp_path, idle_timeout=timedelta(seconds=1))


def test_an_oversized_packet_closes_only_its_connection_and_bad_ones_are_kept_aside(tmp_path: Path) -> None:
    async def test(server: TelemetryServer, committed: list[Reading]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"##9999" + b"x" * 100)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"noise" + _packet(5)[:-6] + b"0000\r\n" + _packet(6))
        assert b"CN=9014" in await _answer(reader)
        assert [r.total_m3 for r in committed] == [1006]
        assert server.deadletters is not None
        assert server.deadletters.counts() == {"too_large": 1, "garbage": 1, "bad_crc": 1}
        writer.close()

    _run(test, tmp_path, max_buffer=1024)
