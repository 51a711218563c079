"""A planning problem that also says which meter and which of its settings it is about."""

from __future__ import annotations

__all__ = ["MeterProblem"]


class MeterProblem(str):
    """The problem's text, as the planners have always reported it, plus where it is: the position of the
    site in the planned sites and of the meter in its site (ids may repeat in a file being checked), the
    setting under the meter (``modbus.unit``) and the message without the location, so a config checker
    can point at the line of the file that holds the setting."""

    site: int
    meter: int
    field: str
    message: str

    def __new__(cls, text: str, *, site: int, meter: int, field: str, message: str) -> MeterProblem:
        self = super().__new__(cls, text)
        self.site, self.meter, self.field, self.message = site, meter, field, message
        return self
