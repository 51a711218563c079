"""The one module that touches pymodbus' server side (its datastore API moves in pymodbus 4.0).

A `UnitHandler` answers one unit id: it returns the registers asked for, an exception code (int), or
None for no answer at all (an unplugged meter on an RS-485 line). Unknown unit ids get no answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from functools import partial

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

__all__ = ["Framer", "ModbusSimServer", "UnitHandler"]

log = logging.getLogger(__name__)

UnitHandler = Callable[[int, int, int], Awaitable[list[int] | int | None]]
"""(function code, 0-based address, count) → registers | exception code | None (stay silent)."""


class Framer(StrEnum):
    TCP = "tcp"
    RTU_OVER_TCP = "rtu-over-tcp"
    RTU = "rtu"  # serial line


async def _action(handler: UnitHandler, function_code: int, start_address: int, address: int, count: int,
                  current_registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
    if set_values is not None:
        return ExcCodes.ILLEGAL_FUNCTION  # read-only meters
    result = await handler(function_code, address, count)
    if result is None:
        raise NoSuchIdException("simulated silence")  # with ignore_missing_devices: no response
    if isinstance(result, int):
        return ExcCodes(result)
    offset = address - start_address
    current_registers[offset:offset + count] = result
    return None


async def _silent(function_code: int, start_address: int, address: int, count: int,
                  current_registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
    raise NoSuchIdException("no such unit")


def _devices(units: Mapping[int, UnitHandler], size: int) -> list[SimDevice]:
    devices = [SimDevice(0, simdata=[SimData(0, count=size, values=0, datatype=DataType.REGISTERS)],
                         action=_silent)]
    for unit, handler in sorted(units.items()):
        block = [SimData(0, count=size, values=0, datatype=DataType.REGISTERS)]
        devices.append(SimDevice(unit, simdata=block, action=partial(_action, handler)))
    return devices


class ModbusSimServer:
    """A Modbus server for simulated units on TCP (either framing) or a serial port."""

    def __init__(self, units: Mapping[int, UnitHandler], *, size: int, framer: Framer = Framer.TCP,
                 host: str = "127.0.0.1", port: int = 0, device: str | None = None,
                 baudrate: int = 9600) -> None:
        if not units:
            raise ValueError("a simulator serves at least one unit")
        self.framer = framer
        self.host = host
        self.port = port
        self.device = device
        self._baudrate = baudrate
        self._devices = _devices(units, size)
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

    async def start(self) -> None:
        if self.framer is Framer.RTU:
            if not self.device:
                raise ValueError("a serial simulator needs a device path")
            self._server = ModbusSerialServer(self._devices, framer=FramerType.RTU, port=self.device,
                                              baudrate=self._baudrate, ignore_missing_devices=True)
        else:
            framer = FramerType.RTU if self.framer is Framer.RTU_OVER_TCP else FramerType.SOCKET
            self._server = ModbusTcpServer(self._devices, framer=framer, address=(self.host, self.port),
                                           ignore_missing_devices=True)
        try:
            await asyncio.wait_for(self._server.serve_forever(background=True), 10)
        except RuntimeError:
            where = self.device if self.framer is Framer.RTU else f"{self.host}:{self.port}"
            raise OSError(f"cannot serve on {where} (in use, or not a local address?)") from None
        transport = self._server.transport
        if self.framer is not Framer.RTU and transport is not None:
            self.port = int(transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.wait_for(self._server.shutdown(), 10)  # type: ignore[no-untyped-call]
            self._server = None

    async def __aenter__(self) -> ModbusSimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
