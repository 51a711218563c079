"""A planning problem that also says which meter and which of its settings it is about, and the words for
a setting that names an id nothing defines."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["KNOWN_ZH", "MeterProblem", "unknown_id"]

KNOWN_ZH = "（已有："
"""Where an `unknown_id` message lists the known ids in Chinese."""


def unknown_id(zh: str, en: str, known: Iterable[str]) -> str:
    """In Chinese and English: the setting names no `en` (`zh`), and the ids that are defined — as
    `(known: a, b)`, from which the config loader offers a did-you-mean."""
    ids = sorted(set(known))
    return (f"{zh}{KNOWN_ZH}{'、'.join(ids) or '无'}）/ names no {en} "
            f"(known: {', '.join(ids) or 'none are defined'})")


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
