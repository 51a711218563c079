"""Building a paho-mqtt client from `MqttSettings`: protocol, persistent session, TLS, credentials.

`Client` is paho's client with a cheaper receive and acknowledge path for a high message rate (paho's own
protocol handling, state machine, reconnect and TLS are unchanged):

* the socket is wrapped in `BufferedSocket`, so paho's three small `recv` calls per packet (command byte,
  remaining length, body) are served from one large read. The wrapper reports the bytes it holds through
  `pending()`, which paho's loop already consults (for TLS) to skip its `select` and read on; and
  `loop_read` goes on reading packets while whole ones are buffered, instead of one packet per `select`;
* a message goes straight to `on_message` when no per-topic callback is registered (paho otherwise walks
  its topic matcher for every message);
* `ack_many` acknowledges a batch of QoS 1 messages as one write of concatenated PUBACK packets, with one
  wake-up of the network thread, instead of one queued packet, wake-up and `send` per message;
* with `on_publish_batch` set, the PUBLISH packets (QoS 0 and 1, no MQTT 5 properties) that lie whole in the
  buffer are parsed by `take_publishes` and handed over as one list of `Publish` tuples, without paho's
  per-packet state machine and message objects. Every other packet — and a PUBLISH the fast path does not
  take (QoS 2, MQTT 5 properties, a malformed one) — goes through paho's own code, unchanged.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector.mqtt.settings import MqttProtocol, MqttSettings

__all__ = ["BufferedSocket", "Client", "Publish", "connect_args", "make_client", "subscribe_args",
           "take_publishes"]

READ_SIZE = 64 * 1024  # bytes asked of the socket per read: several hundred small PUBLISH packets
_MAX_PACKETS_PER_READ = 4096  # packets `loop_read` takes from the buffer before paho's loop runs again
_PUBACK = struct.Struct("!BBH")


class BufferedSocket:
    """A socket (plain or TLS) whose small reads are served from one large `recv`.

    Reads return at most what was asked, like `socket.recv`; when the buffer is empty the wrapped socket is
    read once (so `BlockingIOError` and `ssl.SSLWantReadError` reach paho as before). `pending()` counts
    the buffered bytes and the TLS layer's decrypted ones: paho's loop does not wait in `select` while it
    is above zero. Everything else is the wrapped socket's.
    """

    def __init__(self, sock: Any, read_size: int = READ_SIZE) -> None:
        self._sock = sock
        self._read_size = read_size
        self._buf = b""
        self._pos = 0
        self._tls_pending = getattr(sock, "pending", None)

    def recv(self, bufsize: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            data: bytes = self._sock.recv(max(bufsize, self._read_size))
            if len(data) <= bufsize:
                return data
            self._buf, self._pos = data, bufsize
            return data[:bufsize]
        end = pos + bufsize
        self._pos = end
        if end >= len(buf):
            self._buf, self._pos = b"", 0
        return buf[pos:end]

    def buffered(self) -> int:
        """Bytes read from the socket and not yet handed out."""
        return len(self._buf) - self._pos

    def fill(self) -> int:
        """Read once from the socket into the (empty) buffer; returns the bytes read (0: the peer closed)."""
        data: bytes = self._sock.recv(self._read_size)
        self._buf, self._pos = data, 0
        return len(data)

    def peek_buffer(self) -> bytes:
        return self._buf

    def position(self) -> int:
        return self._pos

    def consume(self, pos: int) -> None:
        """Everything before `pos` of the buffer has been handled."""
        if pos >= len(self._buf):
            self._buf, self._pos = b"", 0
        else:
            self._pos = pos

    def pending(self) -> int:
        """Bytes readable without waiting: buffered here or decrypted by TLS."""
        extra = self._tls_pending() if self._tls_pending is not None else 0
        return len(self._buf) - self._pos + int(extra)

    def send(self, buffer: bytes | bytearray) -> int:
        return int(self._sock.send(buffer))

    def close(self) -> None:
        self._buf, self._pos = b"", 0
        self._sock.close()

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


Publish = tuple[int, int, bool, bool, str, bytes]
"""A received PUBLISH packet as the fast path hands it over: (mid (0 for QoS 0), qos, dup, retain, topic,
payload) — a plain tuple, built hundreds of thousands of times a second."""


def take_publishes(buf: bytes, pos: int, v5: bool, out: list[Publish]) -> int:
    """Parse the whole PUBLISH packets (QoS 0/1) at `buf[pos:]` into `out`; returns the position after them.

    Stops, leaving the rest for paho, at the first packet that is not such a PUBLISH, is incomplete, has QoS 2
    or MQTT 5 properties, or does not parse (paho then reports the protocol error). A topic that is not
    UTF-8 arrives with replacement characters, so it matches no subscription and is rejected as unknown.
    """
    end = len(buf)
    while pos < end:
        cmd = buf[pos]
        if cmd & 0xF0 != 0x30:
            break
        qos = (cmd >> 1) & 3
        if qos > 1:
            break
        i, length, shift = pos + 1, 0, 0
        while True:  # the remaining length: 1–4 bytes, 7 bits each
            if i >= end or shift > 21:
                return pos
            byte = buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        stop = i + length
        if stop > end or length < 2:
            break
        j = i + 2 + ((buf[i] << 8) | buf[i + 1])
        topic = buf[i + 2:j]
        if qos:
            mid = (buf[j] << 8) | buf[j + 1] if j + 2 <= stop else 0
            j += 2
        else:
            mid = 0
        if v5:
            if j >= stop or buf[j] != 0:  # properties present (or none room for their length): paho's job
                break
            j += 1
        if j > stop or (qos and mid == 0):
            break
        out.append((mid, qos, bool(cmd & 0x08), bool(cmd & 0x01), topic.decode("utf-8", "replace"),
                    buf[j:stop]))
        pos = stop
    return pos


class Client(mqtt.Client):
    """paho's client with a buffered socket, batched reads, a direct `on_message`, a PUBLISH fast path
    (`on_publish_batch`) and `ack_many`."""

    _filtered_callbacks = False
    on_publish_batch: Callable[[list[Publish]], None] | None = None
    """Called on the network thread with each run of PUBLISH packets the fast path parsed."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        sock = self._sock
        if not isinstance(sock, BufferedSocket):
            return super().loop_read(max_packets)
        return self._read_buffered(sock, max_packets)

    def _read_buffered(self, sock: BufferedSocket, max_packets: int) -> MQTTErrorCode:
        """Whole PUBLISH packets through the fast path, anything else through paho, while bytes are buffered."""
        fast = self.on_publish_batch is not None and not self._filtered_callbacks
        if fast and not sock.buffered():
            rc = self._fill(sock)
            if rc is not None:
                return rc
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        for _ in range(_MAX_PACKETS_PER_READ):
            if fast and self._in_packet["command"] == 0 and sock.buffered():
                self._publish_fast(sock)
                if not sock.buffered():
                    break
            rc = super().loop_read(max_packets)  # one packet the fast path does not take (or the first read)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is not sock or not sock.buffered():
                break
        return rc

    def _fill(self, sock: BufferedSocket) -> MQTTErrorCode | None:
        """One read into the buffer; a return value ends `loop_read` (nothing to read, or an error)."""
        try:
            got = sock.fill()
        except (BlockingIOError, ssl.SSLWantReadError):
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except ssl.SSLWantWriteError:
            self._call_socket_register_write()
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if not got:  # the peer closed: paho's read sees it and reports the lost connection
            return super().loop_read(1)
        return None

    def _publish_fast(self, sock: BufferedSocket) -> None:
        batch: list[Publish] = []
        sock.consume(take_publishes(sock.peek_buffer(), sock.position(), self._protocol == mqtt.MQTTv5, batch))
        if not batch:
            return
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        callback = self.on_publish_batch
        if callback is None:
            return
        with self._in_callback_mutex:
            try:
                callback(batch)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_publish_batch: %s", err)
                if not self.suppress_exceptions:
                    raise

    def message_callback_add(self, sub: str, callback: mqtt.CallbackOnMessage) -> None:
        self._filtered_callbacks = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self._on_message
        if self._filtered_callbacks or on_message is None:
            super()._handle_on_message(message)
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def ack_many(self, mids: Sequence[int]) -> MQTTErrorCode:
        """Acknowledge QoS 1 messages (manual ack) with one queued write of their PUBACK packets."""
        if not mids:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        pack = _PUBACK.pack
        packet = b"".join([pack(mqtt.PUBACK, 2, mid) for mid in mids])
        return self._packet_queue(mqtt.PUBACK, packet, 0, 1)


def make_client(settings: MqttSettings, client_id: str | None = None, persistent: bool = True) -> Client:
    """A VERSION2-callback client with a fixed id and (unless not `persistent`) a persistent session, not
    connected yet."""
    cid = client_id or settings.client_id
    if settings.protocol is MqttProtocol.V5:
        client = Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    else:
        client = Client(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=not persistent,
                        protocol=mqtt.MQTTv311)
    if settings.username is not None:
        client.username_pw_set(settings.username,
                               settings.password.get_secret_value() if settings.password else None)
    if settings.tls is not None:
        tls = settings.tls
        client.tls_set(ca_certs=str(tls.ca) if tls.ca else None,
                       certfile=str(tls.cert) if tls.cert else None,
                       keyfile=str(tls.key) if tls.key else None,
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.tls_insecure_set(tls.insecure)
    client.reconnect_delay_set(max(1, round(settings.reconnect_min.total_seconds())),
                               max(1, round(settings.reconnect_max.total_seconds())))
    return client


def connect_args(settings: MqttSettings) -> dict[str, Any]:
    """Keyword arguments for `connect`/`connect_async`: a session that survives disconnects."""
    args: dict[str, Any] = {"host": settings.host, "port": settings.port,
                            "keepalive": max(5, round(settings.keepalive.total_seconds()))}
    if settings.protocol is MqttProtocol.V5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = min(0xFFFFFFFF, round(settings.session_expiry.total_seconds()))
        props.ReceiveMaximum = settings.max_inflight
        args.update(clean_start=False, properties=props)
    return args


def subscribe_args(settings: MqttSettings, filters: tuple[str, ...]) -> list[tuple[str, Any]]:
    """[(filter, qos or options)] with the shared-subscription prefix when configured."""
    prefix = f"$share/{settings.shared_group}/" if settings.shared_group else ""
    if settings.protocol is MqttProtocol.V5:
        return [(prefix + f, SubscribeOptions(qos=settings.qos)) for f in filters]
    return [(prefix + f, settings.qos) for f in filters]
