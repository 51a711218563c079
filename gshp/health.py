"""The service's health: one verdict, `ok` or `degraded` (or `full`), built from named reasons.

Components report what is wrong in two small ways, so none of them needs to know about this module:

- `ReportsProblems`: ``problems() -> list[str]`` — the store or engine's current faults, one text each
  (a write that failed and has not succeeded since, an integrity check that failed); empty when fine.
- `ReportsOutages`: ``outages() -> {name: (since, detail)}`` — the peers a source cannot reach, since when
  (``time.monotonic()``) and why. A source is a reason only once it has been down past `source_grace`.

`HealthMonitor.evaluate` gathers every reason, keeps the gauge ``gshp_health_degraded{reason}`` and the
counter ``gshp_health_changes_total`` and logs each change once (a reason appearing or clearing), so
`gshp run` can evaluate it every second without repeating itself. Texts are Chinese and English.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, runtime_checkable

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field

from collector.duration import Duration

__all__ = ["HEALTH_CHANGES", "HEALTH_DEGRADED", "HealthMonitor", "HealthReport", "HealthSettings", "Reason",
           "ReportsOutages", "ReportsProblems", "outage_reasons", "problem_reasons"]

log = logging.getLogger(__name__)

HEALTH_DEGRADED = Gauge("gshp_health_degraded", "1 while this reason makes the service degraded", ["reason"])
HEALTH_CHANGES = Counter("gshp_health_changes_total", "Changes of the service's health: a reason appearing or "
                                                      "clearing")


class HealthSettings(BaseModel):
    """`health:` in the config file: when the service stops calling itself healthy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outbox_max_age: Duration = Field(default=timedelta(minutes=5),
                                     description="degraded while the oldest unsent outbox line is older")
    source_grace: Duration = Field(default=timedelta(seconds=60),
                                   description="degraded once a source (MQTT broker, Modbus gateway) is down longer")
    drain_failures: int = Field(default=3, ge=1,
                                description="degraded after this many consecutive failed InfluxDB writes")
    backfill_timeout: Duration = Field(default=timedelta(seconds=60),
                                       description="the start-up back-fill from InfluxDB gives up after this long")


@runtime_checkable
class ReportsProblems(Protocol):
    """A store or engine that says what is wrong with it now (empty: nothing)."""

    def problems(self) -> list[str]: ...


@runtime_checkable
class ReportsOutages(Protocol):
    """A source that says which of its peers it cannot reach: name → (since, on `time.monotonic()`, detail)."""

    def outages(self) -> Mapping[str, tuple[float, str]]: ...


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason the service is not healthy. `key` is stable while the condition lasts (the metric label);
    the texts may change (a count, a duration)."""

    key: str
    zh: str
    en: str

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "zh": self.zh, "en": self.en}


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: str  # ok | degraded | full
    reasons: tuple[Reason, ...]


Check = Callable[[], Iterable[Reason]]


def problem_reasons(key: str, zh: str, en: str, component: object) -> list[Reason]:
    """One reason per problem a `ReportsProblems` component reports (none for any other object)."""
    if not isinstance(component, ReportsProblems):
        return []
    found = component.problems()
    if len(found) == 1:
        return [Reason(key, f"{zh}：{found[0]}", f"{en}: {found[0]}")]
    return [Reason(f"{key}#{i + 1}", f"{zh}：{text}", f"{en}: {text}") for i, text in enumerate(found)]


def outage_reasons(source: object, grace: float, now: float | None = None) -> list[Reason]:
    """A reason per peer of a `ReportsOutages` source down for longer than `grace` seconds."""
    if not isinstance(source, ReportsOutages):
        return []
    now = time.monotonic() if now is None else now
    out = []
    for name, (since, detail) in sorted(source.outages().items()):
        down = now - since
        if down > grace:
            out.append(Reason(f"source:{name}", f"数据源 {name} 已中断 {down:.0f} 秒：{detail}",
                              f"source {name} down for {down:.0f} s: {detail}"))
    return out


class HealthMonitor:
    """Gathers the reasons of every registered check; thread-safe (the API and a timer both evaluate)."""

    def __init__(self, checks: Sequence[Check] = ()) -> None:
        self._checks = list(checks)
        self._lock = threading.Lock()
        self._current: dict[str, Reason] = {}
        self.changes = 0

    def add(self, check: Check) -> None:
        self._checks.append(check)

    def evaluate(self, full: bool = False) -> HealthReport:
        """The verdict now; `full` (the outbox at its bound) outranks `degraded`."""
        reasons: dict[str, Reason] = {}
        for check in self._checks:
            try:
                found = list(check())
            except Exception as exc:  # a check that cannot tell is itself a reason, never a silent ok
                found = [Reason(f"check:{getattr(check, '__name__', 'check')}", f"健康检查失败：{exc}",
                                f"a health check failed: {exc}")]
            for r in found:
                reasons.setdefault(r.key, r)
        with self._lock:
            self._note_changes(reasons)
        status = "full" if full else ("degraded" if reasons else "ok")
        return HealthReport(status, tuple(reasons.values()))

    def _note_changes(self, reasons: Mapping[str, Reason]) -> None:
        before = self._current
        for key in reasons.keys() - before.keys():
            r = reasons[key]
            HEALTH_DEGRADED.labels(key).set(1)
            log.warning("health: degraded — %s / %s", r.zh, r.en)
        for key in before.keys() - reasons.keys():
            HEALTH_DEGRADED.labels(key).set(0)
            log.info("health: cleared — %s", before[key].en)
        changed = len(reasons.keys() ^ before.keys())
        if changed:
            HEALTH_CHANGES.inc(changed)
            self.changes += changed
            if not reasons:
                log.info("health: ok again")
        self._current = dict(reasons)
