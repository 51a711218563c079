"""The Modbus layer's three exception types."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ErrorClass", "ModbusConfigError", "ProfileError", "ReadError"]


class ProfileError(ValueError):
    """A register profile cannot be used (bad YAML, unknown field, duplicate name…)."""


class ModbusConfigError(ValueError):
    """Gateways and meters cannot be planned; `problems` lists every reason at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class ErrorClass(StrEnum):
    """Why a read failed; a label on the failure metric and the `error` of `gshp poll`."""

    TIMEOUT = "timeout"          # no answer within the gateway's timeout (after retries)
    EXCEPTION = "exception"      # the device answered with a Modbus exception code
    CONNECTION = "connection"    # TCP connect refused / port cannot be opened / link lost
    PROTOCOL = "protocol"        # a garbled or unexpected answer
    DECODE = "decode"            # registers arrived but do not decode to a valid reading


_EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "device failure",
    5: "acknowledge", 6: "device busy", 8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class ReadError(Exception):
    """One read of one unit failed."""

    def __init__(self, error_class: ErrorClass, detail: str, exception_code: int | None = None) -> None:
        self.error_class = error_class
        self.detail = detail
        self.exception_code = exception_code
        super().__init__(f"{error_class.value}: {detail}")

    @classmethod
    def exception(cls, code: int, function: int, address: int, count: int) -> ReadError:
        name = _EXCEPTION_NAMES.get(code, "unknown")
        return cls(ErrorClass.EXCEPTION,
                   f"exception code {code} ({name}) for function {function} at {address} count {count}",
                   code)
