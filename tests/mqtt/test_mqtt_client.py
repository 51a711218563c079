"""The buffered paho client: small reads served from one large read, the PUBLISH fast path, batched PUBACKs,
no lost or stalled message — unit tests on a socket pair and packet bytes, then against a real mosquitto
(v3.1.1 and v5, through the fast path and through paho's own)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from collector.mqtt.connection import BufferedSocket, Client, Publish, connect_args, make_client, take_publishes
from collector.mqtt.settings import MqttProtocol, MqttSettings
from gshp.devstack import Mosquitto
from tests.helpers import wait_until
from tests.mqtt_support import Publisher


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_small_reads_are_served_from_one_read_and_counted_as_pending(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    buffered = BufferedSocket(b, read_size=64)
    with pytest.raises(BlockingIOError):
        buffered.recv(1)  # nothing sent: the socket's own error, as paho expects
    assert buffered.pending() == 0
    a.sendall(b"\x30\x05hello\x30\x03abc")
    assert buffered.recv(1) == b"\x30"
    assert buffered.pending() == 11  # read once, held here: paho must not wait in select for these
    assert buffered.recv(1) == b"\x05"
    assert buffered.recv(5) == b"hello"
    assert buffered.recv(2) == b"\x30\x03"  # never more than asked
    assert buffered.recv(100) == b"abc"  # nor more than held: the socket is not read behind it
    assert buffered.pending() == 0
    with pytest.raises(BlockingIOError):
        buffered.recv(1)


def test_a_large_read_request_goes_to_the_socket_whole(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    buffered = BufferedSocket(b, read_size=16)
    payload = bytes(range(256)) * 40
    a.sendall(payload)
    got = b""
    deadline = time.monotonic() + 5
    while len(got) < len(payload) and time.monotonic() < deadline:
        try:
            got += buffered.recv(len(payload) - len(got))
        except BlockingIOError:
            time.sleep(0.001)
    assert got == payload
    assert buffered.fileno() == b.fileno()
    buffered.close()
    assert buffered.pending() == 0


def _varint(n: int) -> bytes:
    out = b""
    while True:
        n, b = divmod(n, 128)
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _publish(topic: bytes, payload: bytes, qos: int = 1, mid: int = 7, dup: bool = False, retain: bool = False,
             props: bytes | None = None) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    body += (_varint(len(props)) + props if props is not None else b"") + payload
    return bytes([0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)]) + _varint(len(body)) + body


def test_fast_path_parses_whole_publish_packets_exactly() -> None:
    big = b"p" * 20_000  # a remaining length of three bytes
    buf = (_publish(b"a/b", b"{}", qos=1, mid=1) + _publish(b"a/c", b"", qos=0)
           + _publish("水/表".encode(), big, qos=1, mid=65535, dup=True, retain=True))
    out: list[Publish] = []
    assert take_publishes(buf, 0, False, out) == len(buf)
    assert out == [(1, 1, False, False, "a/b", b"{}"), (0, 0, False, False, "a/c", b""),
                   (65535, 1, True, True, "水/表", big)]


@pytest.mark.parametrize(("tail", "why"), [
    (b"\xd0\x00", "PINGRESP: paho's"),
    (_publish(b"a", b"x", qos=2), "QoS 2: paho's"),
    (_publish(b"a/b", b"xyz")[:-1], "incomplete: read on"),
    (_publish(b"a/b", b"xyz")[:2], "incomplete header"),
    (bytes([0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), "a remaining length of five bytes: paho's protocol error"),
    (bytes([0x32, 0x03, 0x00, 0x09, 0x61]), "a topic longer than the packet"),
    (_publish(b"a", b"x", qos=1, mid=0), "QoS 1 without a packet id"),
])
def test_fast_path_stops_at_what_it_does_not_take(tail: bytes, why: str) -> None:
    head = _publish(b"a/b", b"1")
    out: list[Publish] = []
    assert take_publishes(head + tail, 0, False, out) == len(head), why
    assert out == [(7, 1, False, False, "a/b", b"1")]


def test_fast_path_takes_mqtt5_publishes_without_properties_only() -> None:
    plain, with_props = _publish(b"t", b"v", props=b""), _publish(b"t", b"w", props=b"\x23\x00\x05")  # alias 5
    out: list[Publish] = []
    assert take_publishes(plain + with_props, 0, True, out) == len(plain)
    assert out == [(7, 1, False, False, "t", b"v")]


def test_fast_path_topic_that_is_not_utf8_cannot_match_a_subscription() -> None:
    out: list[Publish] = []
    take_publishes(_publish(b"dtu/\xff/up", b"{}"), 0, False, out)
    assert out[0][4] == "dtu/\ufffd/up"


class Receiver:
    """A `Client` with manual ack that records every message and acknowledges in batches; `fast` takes the
    PUBLISH fast path (`on_publish_batch`), else paho's `on_message`."""

    def __init__(self, settings: MqttSettings, topic: str, fast: bool = False) -> None:
        self.client = make_client(settings)
        assert isinstance(self.client, Client)
        self.client.manual_ack_set(True)
        self.settings = settings
        self.topic = topic
        self.got: list[tuple[str, bytes, int, int]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client.on_message = self._on_message
        if fast:
            self.client.on_publish_batch = self._on_publishes
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_connect = self._on_connect

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(self.topic, 1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload), msg.mid, msg.qos))

    def _on_publishes(self, batch: list[Publish]) -> None:
        with self.lock:
            self.got += [(topic, payload, mid, qos) for mid, qos, _dup, _retain, topic, payload in batch]

    def start(self) -> None:
        self.client.connect_async(**connect_args(self.settings))
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def ack_all(self, acked: int) -> int:
        with self.lock:
            mids = [m[2] for m in self.got[acked:]]
        for i in range(0, len(mids), 100):
            self.client.ack_many(mids[i:i + 100])
        return acked + len(mids)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _messages(prefix: str, n: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        size = 100_000 if i % 97 == 0 else 20 + i % 50  # some span several reads of the buffer
        out.append((f"{prefix}/M{i % 3}", f"{i:06d}".encode() + b"x" * size))
    return out


@pytest.mark.integration
@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "paho-path"])
@pytest.mark.parametrize("protocol", [MqttProtocol.V311, MqttProtocol.V5])
def test_a_queued_burst_arrives_whole_and_batch_acks_settle_it(
        mosquitto: Mosquitto, protocol: MqttProtocol, fast: bool) -> None:
    tag = f"buffered-{protocol.name.lower()}-{'fast' if fast else 'paho'}"
    settings = MqttSettings(port=mosquitto.port, client_id=tag, protocol=protocol)  # type: ignore[call-arg]
    rx = Receiver(settings, f"{tag}/#", fast)
    rx.start()
    rx.stop()  # the persistent session exists; what follows is queued by the broker
    sent = _messages(tag, 3000)
    pub = Publisher(mosquitto.port, f"{tag}-pub")
    try:
        pub.publish_all(sent)
    finally:
        pub.close()
    rx = Receiver(settings, f"{tag}/#", fast)
    rx.start()
    acked = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            acked = rx.ack_all(acked)  # the broker keeps at most its in-flight window unacknowledged
            if acked >= len(sent):
                break
            time.sleep(0.01)
        assert sorted((t, p) for t, p, _, _ in rx.got) == sorted(sent)  # nothing lost, nothing twice
        # written, and given the broker time to read them: PUBACKs sent just before a DISCONNECT can be
        # lost with the connection (with paho's own `ack` as well)
        wait_until(lambda: not rx.client.want_write(), timeout=5)
        time.sleep(0.5)
    finally:
        rx.stop()
    rx = Receiver(settings, f"{tag}/#", fast)  # every PUBACK reached the broker: nothing is redelivered
    rx.start()
    try:
        time.sleep(1.0)
        assert rx.got == []
    finally:
        rx.stop()


@pytest.mark.integration
@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "paho-path"])
def test_messages_that_arrive_together_are_all_delivered_without_waiting(mosquitto: Mosquitto, fast: bool) -> None:
    """Bytes held in the buffer must be handled at once, not after the next network event."""
    settings = MqttSettings(port=mosquitto.port, client_id=f"buffered-trickle-{fast}")  # type: ignore[call-arg]
    rx = Receiver(settings, f"trickle{fast}/#", fast)
    rx.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="trickle-pub")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        acked = 0
        for round_ in range(20):
            burst = 1 + round_ % 4
            start = time.monotonic()
            infos = [pub.publish(f"trickle{fast}/{round_}", f"{round_}-{k}".encode(), qos=1) for k in range(burst)]
            for info in infos:
                info.wait_for_publish(5)
            want = acked + burst
            wait_until(lambda: len(rx.got) >= want, timeout=5)  # noqa: B023
            # paho's loop waits up to 1 s in select: a message left in the buffer would show here
            assert time.monotonic() - start < 0.8, f"round {round_}: held back"
            acked = rx.ack_all(acked)
        assert [p for _, p, _, _ in rx.got] == [f"{r}-{k}".encode() for r in range(20) for k in range(1 + r % 4)]
    finally:
        pub.disconnect()
        pub.loop_stop()
        rx.stop()
