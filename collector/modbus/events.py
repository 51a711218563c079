"""Meter identity events: a swapped meter, a rescaled totalizer, a touched calibration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from collector.modbus.profile import EventKind

__all__ = ["EventKind", "MeterEvent"]


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """An identity register of a meter changed between two reads.

    `kind` is one of `EventKind` (serial_changed, unit_changed, multiplier_changed, scale_changed);
    `field` the profile field that changed, `old`/`new` its decoded values. Emitted before the reading
    decoded with the new value, so a consumer can treat the totalizer step across it as a rescale.
    """

    site: str
    meter: str
    ts: datetime
    kind: EventKind
    field: str
    old: int | float
    new: int | float

    def as_dict(self) -> dict[str, object]:
        return {"site": self.site, "meter": self.meter, "ts": self.ts.isoformat(), "kind": self.kind.value,
                "field": self.field, "old": self.old, "new": self.new}
