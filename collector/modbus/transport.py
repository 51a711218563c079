"""One connection to one gateway: Modbus TCP, RTU framed over TCP, or RTU on a serial port.

`Link` serialises requests (RS-485 is half duplex, and most serial-to-Ethernet gateways handle one
request at a time), honours the pauses a slow gateway needs, reconnects with exponential backoff and
turns every failure into a `ReadError` with its `ErrorClass`. pymodbus' own reconnect and
"disconnect after N silent requests" logic are switched off: one dead unit must not drop the link the
other units on the gateway are answering on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from collector.metrics import MODBUS_RECONNECTS
from collector.modbus.errors import ErrorClass, ReadError
from collector.modbus.profile import Function
from collector.modbus.settings import Gateway, Transport

__all__ = ["Link"]

log = logging.getLogger(__name__)

_NO_DISCONNECT = 1 << 30


def _client(gw: Gateway) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    timeout = gw.timeout.total_seconds()
    if gw.transport is Transport.SERIAL:
        assert gw.device is not None
        return AsyncModbusSerialClient(
            gw.device, framer=FramerType.RTU, baudrate=gw.baudrate, parity=gw.parity, stopbits=gw.stopbits,
            timeout=timeout, retries=gw.retries, reconnect_delay=0, name=gw.id)
    assert gw.host is not None and gw.port is not None
    framer = FramerType.RTU if gw.transport is Transport.RTU_OVER_TCP else FramerType.SOCKET
    return AsyncModbusTcpClient(gw.host, port=gw.port, framer=framer, timeout=timeout, retries=gw.retries,
                                reconnect_delay=0, name=gw.id)


class Link:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._client = _client(gateway)
        self._client.set_max_no_responses(_NO_DISCONNECT)
        self._lock = asyncio.Lock()
        self._connect_failures = 0
        self._next_connect = 0.0
        self._ready_at = 0.0  # earliest start of the next request (pauses)
        self._timeout = gateway.timeout.total_seconds()
        # a hard bound around pymodbus' own timeout × retries, in case a reply never resolves
        self._deadline = self._timeout * (gateway.retries + 1) + 1.0
        self.last_connect_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._client.connected

    @property
    def lock(self) -> asyncio.Lock:
        """Held for a whole meter poll, so one meter's requests are not interleaved with another's."""
        return self._lock

    def connect_due(self, now: float) -> bool:
        return self.connected or now >= self._next_connect

    async def ensure_connected(self) -> None:
        """Connect if needed, honouring the reconnect backoff; raise `ReadError(CONNECTION)` if down."""
        if self._client.connected:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._next_connect:
            raise ReadError(ErrorClass.CONNECTION,
                            f"{self.last_connect_error or 'not connected'}; next attempt in "
                            f"{self._next_connect - now:.1f}s")
        try:
            ok = await asyncio.wait_for(self._client.connect(), self._timeout + 1.0)
        except (TimeoutError, OSError):
            ok = False
        if not ok:
            self._client.close()
            self.last_connect_error = await self._diagnose()
            self._connect_failures += 1
            delay = min(self.gateway.reconnect_delay.total_seconds() * 2 ** (self._connect_failures - 1),
                        self.gateway.backoff_max.total_seconds())
            self._next_connect = loop.time() + delay * random.uniform(0.8, 1.0)
            MODBUS_RECONNECTS.labels(self.gateway.id, "failed").inc()
            raise ReadError(ErrorClass.CONNECTION, self.last_connect_error)
        MODBUS_RECONNECTS.labels(self.gateway.id, "ok").inc()
        if self._connect_failures:
            log.info("gateway %s (%s): connected again after %d failed attempt(s)", self.gateway.id,
                     self.gateway.address, self._connect_failures)
        self._connect_failures = 0
        self.last_connect_error = None
        self._ready_at = loop.time() + self.gateway.pause_after_connect.total_seconds()

    async def _diagnose(self) -> str:
        """Say why a connect failed (pymodbus only reports False)."""
        gw = self.gateway
        if gw.transport is Transport.SERIAL:
            return f"cannot open serial port {gw.device}"
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(gw.host, gw.port), self._timeout)
        except ConnectionRefusedError:
            return f"connection refused by {gw.address}"
        except TimeoutError:
            return f"no connection to {gw.address} within {self._timeout:g}s"
        except OSError as exc:
            return f"cannot connect to {gw.address}: {exc.strerror or exc}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return f"connection to {gw.address} failed"

    def close(self) -> None:
        self._client.close()

    def drop(self, reason: str) -> None:
        """Close a connection that looks dead; the next request reconnects (without backoff)."""
        if self._client.connected:
            log.warning("gateway %s (%s): closing the connection: %s", self.gateway.id, self.gateway.address,
                        reason)
        self._client.close()

    async def read(self, function: Function, address: int, count: int, unit: int) -> list[int]:
        """One read request; the caller holds `lock`. Raises `ReadError`."""
        await self.ensure_connected()
        loop = asyncio.get_running_loop()
        wait = self._ready_at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        call = (self._client.read_holding_registers if function is Function.HOLDING
                else self._client.read_input_registers)
        try:
            async with asyncio.timeout(self._deadline):
                response = await call(address, count=count, device_id=unit)
        except TimeoutError:
            raise ReadError(ErrorClass.TIMEOUT, f"no answer within {self._deadline:g}s") from None
        except ConnectionException as exc:
            self._client.close()
            raise ReadError(ErrorClass.CONNECTION, f"connection to {self.gateway.address} lost: {exc}") \
                from None
        except ModbusIOException as exc:
            if not self._client.connected:
                raise ReadError(ErrorClass.CONNECTION, f"connection to {self.gateway.address} lost") \
                    from None
            if "No response" in str(exc):
                tries = self.gateway.retries + 1
                raise ReadError(ErrorClass.TIMEOUT,
                                f"no answer within {self._timeout:g}s ({tries} attempt(s))") from None
            raise ReadError(ErrorClass.PROTOCOL, str(exc)) from None
        except ModbusException as exc:
            raise ReadError(ErrorClass.PROTOCOL, str(exc)) from None
        finally:
            self._ready_at = loop.time() + self.gateway.pause_between_requests.total_seconds()
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise ReadError.exception(code, function.code, address, count)
        registers = list(response.registers)
        if len(registers) != count:
            raise ReadError(ErrorClass.PROTOCOL, f"asked for {count} registers, got {len(registers)}")
        return registers
