"""`rules:` in the config file: typed settings whose defaults are the product (they work untuned).

A `RuleSet` holds every setting a site can override. `RulesSettings` is the whole section: the base
`RuleSet` fields, then `districts:` and `sites:` overrides (partial mappings of the same keys, merged
deeply; lists such as `balance.windows` are replaced whole). `resolve(site_id, district)` gives the
effective `RuleSet` of one site; `problems()` validates every override so `gshp check-config` reports them
with file and line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from alerting.model import Language, Severity
from collector.duration import Duration
from collector.model import FreeText
from collector.problems import ZhEn, error_text, followed, unknown_id

__all__ = [
    "BalanceSettings",
    "ComplianceSettings",
    "CounterSettings",
    "ForensicSettings",
    "IncidentSettings",
    "Language",
    "MaintenanceWindow",
    "QualitySettings",
    "RuleSet",
    "RulesSettings",
    "SequentialSettings",
    "Severity",
    "WindowRule",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CounterSettings(_Frozen):
    """How totalizer steps are judged (see `rules.counters`)."""

    noise_deadband_m3: float = Field(default=0.5, ge=0, description="a drop up to this is noise: 0 volume")
    max_flow_m3h: float = Field(default=1000.0, gt=0, description="highest plausible flow of one meter")
    jump_margin: float = Field(default=1.5, ge=1, description="forward step above max flow × Δt × this "
                                                                "is rejected as a jump")
    wrap_m3: float | None = Field(default=None, gt=0, description="totalizer rolls over after this value")
    judge_gaps: bool = Field(default=True, description="judge a step across a gap against max flow and the "
                                                       "meter's rate (off: its volume is only unknown)")
    gap_rate_margin: float = Field(default=3.0, ge=1, description="a step across a gap above the meter's higher "
                                                                   "rate either side × gap × this is a jump")
    gap_rate_within: Duration = Field(default=timedelta(hours=1),
                                      description="judge by the meter's rate only across gaps up to this")


class WindowRule(_Frozen):
    """One balance window: deficit over `window` above the threshold raises a discharge alert.

    The threshold is `max(threshold_pct, accuracy_factor × (extraction accuracy + reinjection accuracy))`,
    using each side's worst `accuracy_pct`.
    """

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    window: Duration
    threshold_pct: float = Field(default=0.0, ge=0, le=100)
    accuracy_factor: float = Field(default=0.0, ge=0, le=50)
    min_extracted_m3: float = Field(default=5.0, ge=0)
    hold: Duration = Field(default=timedelta(0), alias="for")
    clear_for: Duration = timedelta(minutes=15)
    severity: Severity = Severity.HIGH

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _has_threshold(self) -> WindowRule:
        if self.threshold_pct <= 0 and self.accuracy_factor <= 0:
            raise ValueError(ZhEn("请给出 threshold_pct 或 accuracy_factor（或两者）：窗口需要阈值",
                                  "give threshold_pct or accuracy_factor (or both): a window needs a threshold"))
        if self.window < timedelta(minutes=1):
            raise ValueError(ZhEn("window 至少为 1m", "window must be at least 1m"))
        return self


def _default_windows() -> tuple[WindowRule, ...]:
    return tuple(WindowRule.model_validate(w) for w in (
        {"name": "gross", "window": "15m", "threshold_pct": 12.0, "min_extracted_m3": 5.0, "for": "10m",
         "clear_for": "30m", "severity": "critical"},
        {"name": "hour", "window": "1h", "threshold_pct": 6.0, "accuracy_factor": 3.0,
         "min_extracted_m3": 10.0, "for": "15m", "severity": "high"},
        {"name": "shift", "window": "6h", "accuracy_factor": 1.5, "min_extracted_m3": 50.0, "for": "15m",
         "clear_for": "1h", "severity": "high"},
        {"name": "day", "window": "24h", "accuracy_factor": 1.25, "min_extracted_m3": 100.0, "for": "0s",
         "clear_for": "2h", "severity": "warning"},
    ))


class BalanceSettings(_Frozen):
    windows: tuple[WindowRule, ...] = Field(default_factory=_default_windows)
    clear_ratio: float = Field(default=0.5, ge=0, lt=1, description="clears below threshold × this")
    transit_lag: Duration = Field(default=timedelta(minutes=15),
                                  description="longest time reinjection lags extraction (tanks, pipes)")
    refill_lookback: Duration = Field(default=timedelta(hours=12),
                                      description="how far back water drained from the pipes during a stop "
                                                  "is credited to their refilling at the next start-up")
    low_load_fraction: float = Field(default=0.2, ge=0, le=1,
                                     description="a window holding less than its min_extracted_m3 but at "
                                                 "least this fraction of it is judged by volume: it alerts "
                                                 "when its deficit exceeds the threshold's share of "
                                                 "min_extracted_m3")

    @field_validator("windows")
    @classmethod
    def _unique_names(cls, v: tuple[WindowRule, ...]) -> tuple[WindowRule, ...]:
        names = [w.name for w in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(ZhEn(f"窗口名称须唯一；请重命名 {'、'.join(dup)}",
                                  f"window names must be unique; rename {', '.join(dup)}"))
        return v


class SequentialSettings(_Frozen):
    """CUSUM on the per-interval deficit ratio minus the site's learned baseline (both in %)."""

    enabled: bool = True
    interval: Duration = timedelta(hours=1)
    drift_pct: float = Field(default=1.0, gt=0, description="shift below this above baseline is ignored")
    threshold_pct_h: float = Field(default=8.0, gt=0, description="alarm when the CUSUM reaches this")
    warmup: Duration = Field(default=timedelta(hours=12), description="valid intervals needed to learn")
    learn_half_life: Duration = timedelta(days=7)
    min_extracted_m3: float = Field(default=10.0, ge=0)
    baseline_bound_factor: float = Field(default=1.0, gt=0, description="the baseline stays within this × "
                                         "(extraction accuracy + reinjection accuracy)")
    max_drift_pct_day: float = Field(default=0.05, gt=0, description="fastest the baseline may move, %/day")
    max_block: Duration = Field(default=timedelta(hours=12), description="longest block joined across stops "
                                "and start-ups before it is judged or dropped")
    severity: Severity = Severity.HIGH


class QualitySettings(_Frozen):
    offline_after: Duration = timedelta(minutes=15)
    silent_after: Duration = Field(default=timedelta(minutes=10),
                                   description="reinjection silent this long while extraction runs")
    silent_hold: Duration = timedelta(minutes=5)
    running_m3h: float = Field(default=1.0, ge=0, description="a meter above this rate is running")
    frozen_after: Duration = timedelta(minutes=15)
    frozen_min_m3: float = Field(default=1.0, gt=0, description="volume the rate says should have shown")
    frozen_hold: Duration = timedelta(minutes=5)
    reverse_m3h: float = Field(default=0.5, ge=0, description="rate below minus this is reverse flow")
    reverse_hold: Duration = timedelta(minutes=5)
    min_signal_pct: float = Field(default=40.0, ge=0, le=100)
    signal_hold: Duration = timedelta(minutes=10)
    reset_hold: Duration = Field(default=timedelta(hours=1), description="a reset alert resolves after")
    change_hold: Duration = Field(default=timedelta(hours=24),
                                  description="a meter_changed alert resolves this long after the last change")
    discharge_m3h: float = Field(default=0.5, ge=0, description="a discharge meter above this shows flow")
    discharge_hold: Duration = timedelta(minutes=5)
    clear_for: Duration = Field(default=timedelta(minutes=10), description="resolve after clear this long")
    min_arrival_pct: float = Field(default=90.0, ge=0, le=100,
                                   description="low_arrival below this share of expected reports over 24 h")


class ForensicSettings(_Frozen):
    """Checks on the data itself (see `rules.forensic`): readings that repeat an earlier period, rates too
    smooth for a real meter, a balance too exact for two sets of meters."""

    replay: bool = Field(default=True, description="raise data_replayed when a meter repeats an earlier period")
    replay_memory: Duration = Field(default=timedelta(hours=26),
                                    description="how far back a repeat is looked for")
    replay_window: Duration = Field(default=timedelta(hours=1),
                                    description="matching stretches are counted over this")
    replay_matches: int = Field(default=3, ge=2, description="matching stretches with one shift that fire")
    replay_shingle: int = Field(default=6, ge=3, le=30, description="readings in one compared stretch")
    replay_sample: int = Field(default=8, ge=1, le=64, description="one stretch in this many is remembered")
    smooth: bool = Field(default=True, description="raise data_synthetic when a meter's rate is too smooth")
    smooth_readings: int = Field(default=60, ge=10, le=1440, description="running readings judged together")
    smooth_floor_pct: float = Field(default=0.02, gt=0, le=1,
                                    description="median reading-to-reading jitter below this is too smooth")
    exact: bool = Field(default=True, description="raise exact_balance when a site balances implausibly exactly")
    exact_hours: int = Field(default=12, ge=3, le=168, description="consecutive hours judged together")
    exact_floor_pct: float = Field(default=0.01, gt=0, le=1,
                                   description="a median hourly deficit below this is implausibly exact")
    exact_min_m3: float = Field(default=10.0, ge=0, description="an hour with less extracted is not judged")
class ComplianceSettings(_Frozen):
    """Permit compliance (see `rules.compliance`): what a site with a `permit:` is held to."""

    over_rate_hold: Duration = Field(default=timedelta(minutes=15),
                                     description="over_rate fires when the rate stays above the limit this long")
    pumping_hold: Duration = Field(default=timedelta(minutes=5),
                                   description="sealed_pumping / permit_expired fire after extraction this long")
    quota_warn_pct: float = Field(default=90.0, gt=0, le=100,
                                  description="quota_projection fires at this share of the annual quota used")
    quota_min_span: Duration = Field(default=timedelta(days=7),
                                     description="project the year only once the year ledger spans this")
    clear_for: Duration = Field(default=timedelta(hours=1), description="resolve after clear this long")


class MaintenanceWindow(_Frozen):
    """A declared maintenance (e.g. backwashing 回扬): a deficit up to `volume_cap_m3` is allowed."""

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    reason: FreeText = Field(min_length=1, max_length=200)  # shown in reports and the board
    volume_cap_m3: float = Field(ge=0)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        for t in (self.start, self.end):
            if t.tzinfo is None:
                raise ValueError(ZhEn("from/to 须带 UTC 偏移，如 2026-05-01T08:00:00+08:00",
                                      "from/to need a UTC offset, e.g. 2026-05-01T08:00:00+08:00"))
        if self.end <= self.start:
            raise ValueError(ZhEn("`to` 须晚于 `from`", "`to` must be after `from`"))
        return self


class IncidentSettings(_Frozen):
    """How alerts become incidents (see `rules.incidents`)."""

    quiet_period: Duration = Field(default=timedelta(hours=6),
                                   description="a recurrence within this after the end reopens the incident")
    outage_after: Duration = Field(default=timedelta(hours=1),
                                   description="a meter offline or silent opens an incident once it has "
                                               "fired this long (0: at once)")
    high_m3: float = Field(default=100.0, gt=0, description="a discharge of this estimated volume is high")
    critical_m3: float = Field(default=500.0, gt=0, description="… and of this volume critical")
    high_after: Duration = Field(default=timedelta(hours=6), description="an incident open this long is high")
    critical_after: Duration = Field(default=timedelta(hours=24), description="… and this long critical")


class RuleSet(_Frozen):
    """The settings that can differ per district and per site."""

    gap_tolerance: Duration = Field(default=timedelta(minutes=10),
                                    description="a meter silent longer makes its windows incomplete")
    counters: CounterSettings = CounterSettings()
    balance: BalanceSettings = BalanceSettings()
    sequential: SequentialSettings = SequentialSettings()
    quality: QualitySettings = QualitySettings()
    forensic: ForensicSettings = ForensicSettings()
    compliance: ComplianceSettings = ComplianceSettings()
    maintenance: tuple[MaintenanceWindow, ...] = ()


_OVERRIDABLE = frozenset(RuleSet.model_fields)


class RulesSettings(RuleSet):
    """The `rules:` section."""

    evaluate_every: Duration = Field(default=timedelta(minutes=5),
                                     description="evaluation cadence and the ledger's interval")
    language: Language = Language.ZH
    incidents: IncidentSettings = IncidentSettings()
    districts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    sites: dict[str, dict[str, Any]] = Field(default_factory=dict)
    _resolved: dict[tuple[str | None, str | None], RuleSet] = PrivateAttr(default_factory=dict)

    @field_validator("evaluate_every")
    @classmethod
    def _divides_hour(cls, v: timedelta) -> timedelta:
        s = v.total_seconds()
        if s < 60 or s != int(s) or 3600 % int(s):
            raise ValueError(ZhEn("须为能整除 1h 的整分钟数（1m、2m、5m、10m、15m、30m、1h）",
                                  "must be a whole number of minutes dividing 1h (1m, 2m, 5m, 10m, 15m, 30m, 1h)"))
        return v

    def base(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(by_alias=True).items() if k in _OVERRIDABLE}

    def resolve(self, site_id: str, district: str | None = None) -> RuleSet:
        """The effective rules of one site: base ← district override ← site override. Sites without an
        override of their own share one (frozen) `RuleSet` per district: a city of thousands of sites holds
        a handful."""
        key = (district if district is not None and district in self.districts else None,
               site_id if site_id in self.sites else None)
        found = self._resolved.get(key)
        if found is None:
            merged = self.base()
            if key[0] is not None:
                merged = _merge(merged, self.districts[key[0]])
            if key[1] is not None:
                merged = _merge(merged, self.sites[key[1]])
            found = self._resolved[key] = RuleSet.model_validate(merged)
        return found

    def problems(self, site_ids: Mapping[str, str] | None = None
                 ) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """Every invalid override as (data path under the config root, message)."""
        base = self.base()
        for section, overrides in (("districts", self.districts), ("sites", self.sites)):
            for key, override in overrides.items():
                if not isinstance(override, dict):
                    yield ("rules", section, key), ZhEn("须为规则设置项的映射", "must be a mapping of rule settings")
                    continue
                if section == "sites" and site_ids is not None and key not in site_ids:
                    yield ("rules", section, key), unknown_id("`sites:` 下没有此站点", "site under `sites:`", site_ids)
                try:
                    RuleSet.model_validate(_merge(base, override))
                except ValidationError as err:
                    for e in err.errors(include_url=False):
                        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))
                        msg = error_text(e)
                        if e["type"] == "extra_forbidden":
                            msg = followed(error_text(e, "is not a known rule setting"),
                                           "（请检查拼写，参见 docs/rules.md）",
                                           " (check the spelling; see docs/rules.md)")
                        yield ("rules", section, key, *loc), msg


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
