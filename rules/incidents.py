"""Incidents from alerts: one per site, kind and episode, with the alerts as its evidence.

`advance` is pure: it takes a site's episodes (the newest incident of each kind, open or resolved), the
alert transitions of one evaluation, the site's interval volumes (`SiteVolumes`, read-only) and the data
time, and returns the next episodes and the incidents that changed, with what changed. The engine stores
them before it moves its own state (write before you move).

- Kinds: balance windows, CUSUM and discharge-pipe flow make `discharge`; unplugged, frozen, reversed,
  reset or swapped meters make `evasion`; offline meters and poor signal make `meter_fault`.
- An incident opens with the first alert of its kind that fires, and resolves when every alert linked to it
  has resolved. One outage is one incident: an alert that `COVERS` says the open incident of another kind
  already stands for (a silent reinjection meter is also offline; a replaced meter was offline while it was
  changed) joins that incident as evidence. A firing within `quiet_period` after it resolved reopens it (same
  id, `episodes` + 1).
- Onset (discharge): Page's change point on the per-interval excess deficit
  `x = (E − R) − (baseline + drift)·E` over what the ledgers keep — the start of the run of intervals whose
  cumulated excess never fell back to zero before the first firing.
- Volume (discharge): folded interval by interval from the onset. The episode ends where the cumulated
  excess peaks (after that the deficit is back within the drift), so a resolved incident keeps its volume and
  the balanced hours after a discharge do not widen its band. The baseline is the site's as learned before
  the incident opened (0 before the CUSUM has warmed up). Estimate `(E − R) − baseline·E` over
  [onset, peak]; band ± `(acc_E·E + acc_R·R)/100` from each side's worst `accuracy_pct`, widened by the
  water the pipes may hold more at the end than at the start (extraction over the transit lag before each).
- Severity only rises while open: discharge from volume and duration of the discharge (onset to the last
  excess; `IncidentSettings`), evasion from its alerts and how long it has been open, meter faults from
  their alerts, compliance and calibration incidents from theirs (a calibration reminder stays info).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

from alerting.model import (
    Alert,
    AlertKind,
    AlertState,
    Incident,
    IncidentChange,
    IncidentKind,
    IncidentState,
    Language,
    MaintenanceClaim,
    Severity,
    VolumeEstimate,
    iso,
    parse_time,
)
from collector.duration import parse_duration
from rules.compliance import CALIBRATION_PREFIX
from rules.events import rule_words
from rules.settings import IncidentSettings

__all__ = ["COVERS", "INCIDENT_KINDS", "OUTAGES", "Accumulation", "Episode", "SiteVolumes", "Update", "advance",
           "await_outages", "claim", "estimate_volume", "incident_id", "incident_kind", "onset_index",
           "restore_episode", "search_from"]

INCIDENT_KINDS: dict[str, IncidentKind] = {
    "balance_sequential": IncidentKind.DISCHARGE,
    "discharge_flow": IncidentKind.DISCHARGE,
    "reinjection_silent": IncidentKind.EVASION,
    "totalizer_frozen": IncidentKind.EVASION,
    "totalizer_reset": IncidentKind.EVASION,
    "reverse_flow": IncidentKind.EVASION,
    "meter_changed": IncidentKind.EVASION,
    "data_replayed": IncidentKind.EVASION,
    "data_synthetic": IncidentKind.EVASION,
    "exact_balance": IncidentKind.EVASION,
    "meter_offline": IncidentKind.METER_FAULT,
    "signal_quality": IncidentKind.METER_FAULT,
    "over_rate": IncidentKind.COMPLIANCE,
    "quota_projection": IncidentKind.COMPLIANCE,
    "sealed_pumping": IncidentKind.COMPLIANCE,
    "permit_expired": IncidentKind.COMPLIANCE,
}
"""Rule → incident kind; balance window rules (`balance_<name>`) are discharge, other rules go by the alert's
kind (discharge → discharge, data quality → meter fault); a meter's calibration reminder
(`calibration_due:<meter>`) is a calibration incident. New rules register here."""


COVERS: dict[str, frozenset[str]] = {
    "meter_offline": frozenset({"reinjection_silent", "totalizer_reset", "meter_changed"}),
    "totalizer_reset": frozenset({"meter_offline"}),
    "meter_changed": frozenset({"meter_offline"}),
}
"""One outage, one incident: a firing alert of a rule on the left that names a meter an open incident already
holds through a rule on the right joins that incident as evidence instead of opening one of its own kind (a
silent reinjection meter is also offline; a replaced meter was offline while it was changed)."""


OUTAGES = frozenset({"meter_offline", "reinjection_silent"})
"""Rules that report an outage (a meter or its DTU silent). Their alert fires after `offline_after` and shows on
the board at once, but opens an incident only once it has fired for `rules.incidents.outage_after`: a DTU back
sooner hides nothing (its totalizer still counts the water the balance needs) and stays in the alert history
and the arrival rate (到报率), not on an officer's list."""


def await_outages(waiting: Mapping[str, Alert], alerts: Sequence[Alert], episodes: Mapping[IncidentKind, Episode],
                  now: datetime, outage_after: timedelta) -> tuple[dict[str, Alert], list[Alert]]:
    """The alerts of one evaluation to hand to `advance`, and the outage firings still waiting (by alert id).

    An outage alert that fires waits; it is handed over, as it fired, once it has lasted `outage_after` or an
    open incident stands for its outage (it joins that one: a replaced meter's reset), and is forgotten (with
    its resolution) when it resolves before."""
    left = dict(waiting)
    out: list[Alert] = []
    for a in alerts:
        if a.id in left:  # resolved while waiting: no incident, nothing to resolve
            del left[a.id]
        elif a.rule in OUTAGES and a.state is AlertState.FIRING and outage_after > timedelta(0):
            left[a.id] = a
        else:
            out.append(a)
    for alert_id, a in list(left.items()):
        if now - a.at >= outage_after or any(_covers(ep.incident, a) for ep in episodes.values()):
            out.append(a)
            del left[alert_id]
    return left, out


def incident_kind(alert: Alert) -> IncidentKind:
    kind = INCIDENT_KINDS.get(alert.rule)
    if kind is not None:
        return kind
    if alert.rule.startswith(CALIBRATION_PREFIX):
        return IncidentKind.CALIBRATION
    if alert.rule.startswith("balance_") or alert.kind is AlertKind.DISCHARGE:
        return IncidentKind.DISCHARGE
    return IncidentKind.METER_FAULT


def incident_id(site: str, kind: IncidentKind, first_firing: datetime) -> str:
    """Stable id of one incident (the same in every run over the same data)."""
    return hashlib.sha1(f"{site}\x1f{kind.value}\x1f{first_firing.timestamp():.3f}".encode()).hexdigest()[:16]


class SiteVolumes(Protocol):
    """What the tracker reads of one site's ledgers (the engine implements it)."""

    step_s: float
    baseline_pct: float  # the site's learned systematic deficit (CUSUM baseline once warmed up, else 0), %
    drift_pct: float  # excess below this is not discharge (the CUSUM's drift), %
    transit_k: int  # intervals of the longest transit lag (water between the two meters)
    accuracy_pct: tuple[float, float]  # worst accuracy of the extraction and of the reinjection meters

    def horizon(self) -> int | None:
        """The first interval not yet complete on both sides (None before both have reported)."""

    def oldest(self) -> int:
        """The oldest interval the ledgers keep."""

    def intervals(self, ka: int, kb: int) -> list[tuple[float, float, bool]]:
        """(extracted m³, reinjected m³, known) of intervals ka … kb−1."""


def onset_index(excess: Sequence[float | None]) -> int:
    """The most likely start of a step up in the per-interval excess (maximum likelihood for one change in
    the mean against a zero mean before it): the τ maximising (Σ_{i≥τ} x_i)² / (n − τ) with a positive sum.
    Unknown intervals (None) count for neither. Returns len(excess) when no suffix has a positive sum."""
    best, best_i = 0.0, len(excess)
    tail, n = 0.0, 0
    for i in range(len(excess) - 1, -1, -1):
        x = excess[i]
        if x is None:
            continue
        tail += x
        n += 1
        if tail > 0 and tail * tail / n >= best:
            best, best_i = tail * tail / n, i
    return best_i


def search_from(alert: Alert) -> datetime:
    """The earliest onset an alert's figures allow: the start of its window when it first exceeded the
    threshold, or for the CUSUM the time its cumulated excess implies (twice over, for margin)."""
    ev = alert.evidence
    s, d, b = ev.get("cusum_pct_h"), ev.get("deficit_pct"), ev.get("baseline_pct")
    window = ev.get("window")
    span = parse_duration(window) if isinstance(window, str) else timedelta(0)
    if all(isinstance(v, int | float) for v in (s, d, b)):
        assert isinstance(s, int | float) and isinstance(d, int | float) and isinstance(b, int | float)
        hours = float(s) / max(float(d) - float(b) - 1.0, 0.5)
        return alert.at - span - timedelta(hours=2 * hours)
    return alert.starts_at - max(span, timedelta(minutes=15))


def estimate_volume(extracted_m3: float, reinjected_m3: float, baseline_pct: float, accuracy_e_pct: float,
                    accuracy_r_pct: float, transit_m3: float = 0.0) -> VolumeEstimate:
    """Discharged volume over a span: the deficit minus the site's learned baseline, ± what the meters'
    accuracy allows on each side's volume and what the pipes may hold more or less at the end than at the
    start (`transit_m3`); the band never goes below zero."""
    est = max(0.0, extracted_m3 - reinjected_m3 - baseline_pct / 100.0 * extracted_m3)
    band = (accuracy_e_pct * extracted_m3 + accuracy_r_pct * reinjected_m3) / 100.0 + abs(transit_m3)
    return VolumeEstimate(est, max(0.0, est - band), est + band)


@dataclass(frozen=True, slots=True)
class Accumulation:
    """Interval volumes folded from the onset: running sums and where the cumulated excess peaked."""

    onset_k: int
    next_k: int
    cum_e: float = 0.0
    cum_r: float = 0.0
    cum_x: float = 0.0
    peak_x: float = 0.0
    peak_k: int = 0
    e_at_peak: float = 0.0
    r_at_peak: float = 0.0
    unknown: int = 0
    e_lag_start: float = 0.0  # extracted during the transit lag before the onset
    e_lag_end: float = 0.0  # … and before the peak
    baseline_pct: float = 0.0  # the site's baseline when the incident opened (learned before it)

    @property
    def transit_m3(self) -> float:
        """How much more water the pipes may hold at the peak than at the onset (either sign)."""
        return self.e_lag_end - self.e_lag_start

    def fold(self, rows: Sequence[tuple[float, float, bool]], drift_pct: float) -> Accumulation:
        """Take intervals next_k, next_k+1, …"""
        baseline_pct = self.baseline_pct
        a = self
        k, e_sum, r_sum, x_sum = a.next_k, a.cum_e, a.cum_r, a.cum_x
        peak_x, peak_k, e_pk, r_pk, unknown = a.peak_x, a.peak_k or a.onset_k, a.e_at_peak, a.r_at_peak, a.unknown
        for e, r, known in rows:
            k += 1
            if not known:
                unknown += 1
                continue
            e_sum += e
            r_sum += r
            x_sum += (e - r) - (baseline_pct + drift_pct) / 100.0 * e
            if x_sum > peak_x:
                peak_x, peak_k, e_pk, r_pk = x_sum, k, e_sum, r_sum
        return replace(a, next_k=k, cum_e=e_sum, cum_r=r_sum, cum_x=x_sum, peak_x=peak_x, peak_k=peak_k,
                       e_at_peak=e_pk, r_at_peak=r_pk, unknown=unknown)

    def basis(self, step_s: float, tz: tzinfo, accuracy: tuple[float, float]) -> dict[str, Any]:
        """The figures the estimate rests on, as stored with the incident (and read back by `of_basis`)."""
        return {
            "from": iso(datetime.fromtimestamp(self.onset_k * step_s, tz)),
            "to": iso(datetime.fromtimestamp(max(self.peak_k, self.onset_k) * step_s, tz)),
            "extracted_m3": round(self.e_at_peak, 3), "reinjected_m3": round(self.r_at_peak, 3),
            "baseline_pct": round(self.baseline_pct, 3), "transit_m3": round(self.transit_m3, 3),
            "extraction_accuracy_pct": accuracy[0],
            "reinjection_accuracy_pct": accuracy[1], "unknown_intervals": self.unknown, "interval_s": step_s,
            "through": iso(datetime.fromtimestamp(self.next_k * step_s, tz)),
            "cumulated": {"extracted_m3": self.cum_e, "reinjected_m3": self.cum_r, "excess_m3": self.cum_x,
                          "peak_excess_m3": self.peak_x, "e_at_peak_m3": self.e_at_peak,
                          "r_at_peak_m3": self.r_at_peak, "e_lag_start_m3": self.e_lag_start,
                          "e_lag_end_m3": self.e_lag_end, "baseline_pct": self.baseline_pct},
        }

    @classmethod
    def of_basis(cls, basis: Mapping[str, Any]) -> Accumulation | None:
        try:
            step = float(basis["interval_s"])
            c = basis["cumulated"]
            return cls(round(parse_time(basis["from"]).timestamp() / step),
                       round(parse_time(basis["through"]).timestamp() / step), float(c["extracted_m3"]),
                       float(c["reinjected_m3"]), float(c["excess_m3"]), float(c["peak_excess_m3"]),
                       round(parse_time(basis["to"]).timestamp() / step), float(c["e_at_peak_m3"]),
                       float(c["r_at_peak_m3"]), int(basis["unknown_intervals"]), float(c["e_lag_start_m3"]),
                       float(c["e_lag_end_m3"]), float(c["baseline_pct"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class Episode:
    """The tracker's state of one incident: the incident, its firing alerts and (discharge) its volumes."""

    incident: Incident
    active: frozenset[str] = frozenset()
    acc: Accumulation | None = None


@dataclass(frozen=True, slots=True)
class Update:
    incident: Incident
    changes: tuple[IncidentChange, ...] = ()


@dataclass(frozen=True, slots=True)
class _Site:
    id: str
    name: str
    district: str
    tz: tzinfo


@dataclass
class _Work:
    ep: Episode
    changes: list[IncidentChange] = field(default_factory=list)
    touched: bool = False
    severity: Severity = field(init=False)  # before this evaluation

    def __post_init__(self) -> None:
        self.severity = self.ep.incident.severity


def restore_episode(incident: Incident, firing: frozenset[str]) -> Episode:
    """An episode as the store holds it: its firing alerts are the linked ones still firing."""
    active = frozenset(a for a in incident.alert_ids if a in firing) if incident.open else frozenset()
    acc = Accumulation.of_basis(incident.volume_basis) if incident.kind is IncidentKind.DISCHARGE else None
    return Episode(incident, active, acc)


def advance(episodes: Mapping[IncidentKind, Episode], alerts: Sequence[Alert], volumes: SiteVolumes,
            now: datetime, settings: IncidentSettings, *, site: tuple[str, str, str], tz: tzinfo,
            language: Language = Language.ZH) -> tuple[dict[IncidentKind, Episode], list[Update]]:
    """One evaluation of one site: the next episodes and the incidents that changed (each with its
    changes; an open incident changes at every evaluation: its volume and duration grow)."""
    s = _Site(site[0], site[1], site[2], tz)
    work = {k: _Work(ep) for k, ep in episodes.items()}
    # meter faults last: an evasion firing at the same time opens the incident that covers them
    for alert in sorted(alerts, key=lambda a: incident_kind(a) is IncidentKind.METER_FAULT):
        if alert.state is AlertState.PENDING:
            continue
        kind = incident_kind(alert)
        w = work.get(kind)
        held = _holding(work, alert) or _covering(work, alert)
        if held is not None and held is not w:
            held.ep = _link(held.ep, alert)  # the same outage: evidence on the incident already open
            held.touched = True
        elif alert.state is AlertState.FIRING:
            if w is None or (not w.ep.incident.open and not _within_quiet(w.ep.incident, alert.at, settings)):
                w = work[kind] = _Work(_open(s, kind, alert, volumes))
                w.changes.append(IncidentChange.OPENED)
            elif not w.ep.incident.open:
                w.ep = _reopen(w.ep)
                w.changes.append(IncidentChange.REOPENED)
            w.ep = _link(w.ep, alert)
            w.touched = True
        elif w is not None and alert.id in w.ep.active:
            w.ep = _link(w.ep, alert)
            w.touched = True
    out: dict[IncidentKind, Episode] = {}
    updates: list[Update] = []
    for kind, w in work.items():
        ep = w.ep
        if ep.incident.open:
            ep = _refresh(s, ep, volumes, now, settings)
            if not ep.active:
                ep = replace(ep, incident=_text(s, ep.incident.with_(state=IncidentState.RESOLVED, ended_at=now)))
                w.changes.append(IncidentChange.RESOLVED)
            if ep.incident.severity.rank > w.severity.rank and IncidentChange.OPENED not in w.changes:
                w.changes.insert(0, IncidentChange.ESCALATED)
            w.touched = True
        out[kind] = ep
        if w.touched:
            updates.append(Update(ep.incident, tuple(w.changes)))
    return out, updates


def claim(episode: Episode, c: MaintenanceClaim, now: datetime) -> Episode:
    """Record a maintenance window declared while the incident is open; it changes no figure."""
    inc = episode.incident
    return replace(episode, incident=inc.with_(maintenance_claims=(*inc.maintenance_claims, c), updated_at=now))


# ------------------------------------------------------------------------------------------ internals

def _holding(work: Mapping[IncidentKind, _Work], alert: Alert) -> _Work | None:
    """The incident that holds `alert` as firing, whatever its kind."""
    return next((w for w in work.values() if alert.id in w.ep.active), None)


def _covering(work: Mapping[IncidentKind, _Work], alert: Alert) -> _Work | None:
    """The open incident of another kind whose `COVERS` rules already stand for this firing alert's outage: one
    of them holds a meter the alert names (None when the alert does not fire or nothing covers it)."""
    if alert.state is not AlertState.FIRING:
        return None
    return next((w for w in work.values() if _covers(w.ep.incident, alert)), None)


def _covers(inc: Incident, alert: Alert) -> bool:
    """`inc` is open and holds, through a rule `COVERS` names for the alert's rule, a meter the alert names."""
    covers = COVERS.get(alert.rule, frozenset())
    meters = set(_meters(alert.evidence))
    return inc.open and any(meters & set(_meters(inc.rules[r])) for r in covers if r in inc.rules)


def _within_quiet(inc: Incident, at: datetime, settings: IncidentSettings) -> bool:
    return inc.ended_at is not None and at - inc.ended_at <= settings.quiet_period


def _open(s: _Site, kind: IncidentKind, alert: Alert, volumes: SiteVolumes) -> Episode:
    at = alert.at.astimezone(s.tz)
    acc = None
    started = alert.starts_at.astimezone(s.tz)
    if kind is IncidentKind.DISCHARGE:
        acc = _onset(volumes, search_from(alert))
        if acc is not None:
            started = min(started, datetime.fromtimestamp(acc.onset_k * volumes.step_s, s.tz))
    inc = Incident(id=incident_id(s.id, kind, at), site=s.id, site_name=s.name, district=s.district, kind=kind,
                   severity=Severity.WARNING if kind is IncidentKind.DISCHARGE else alert.severity,
                   state=IncidentState.OPEN, started_at=min(started, at), first_firing_at=at, ended_at=None,
                   updated_at=at, volume_m3=None, peak_deficit_pct=None, mean_deficit_pct=None)
    return Episode(inc, frozenset(), acc)


def _onset(volumes: SiteVolumes, earliest: datetime) -> Accumulation | None:
    kb = volumes.horizon()
    if kb is None:
        return None
    ka = min(max(volumes.oldest(), math.floor(earliest.timestamp() / volumes.step_s)), kb - 1)
    rows = volumes.intervals(ka, kb)
    level = volumes.baseline_pct / 100.0
    onset = ka + onset_index([(e - r) - level * e if known else None for e, r, known in rows])
    if onset >= kb:  # no excess in the ledgers: start at the newest interval
        onset = kb - 1
    lag = _extracted(volumes, onset)
    return Accumulation(onset, onset, peak_k=onset, e_lag_start=lag, e_lag_end=lag,
                        baseline_pct=volumes.baseline_pct)


def _extracted(volumes: SiteVolumes, k: int) -> float:
    """Extracted during the transit lag before interval k."""
    return sum((e for e, _, _ in volumes.intervals(k - volumes.transit_k, k)), 0.0)


def _reopen(ep: Episode) -> Episode:
    inc = ep.incident
    return replace(ep, incident=inc.with_(state=IncidentState.OPEN, ended_at=None, episodes=inc.episodes + 1))


def _link(ep: Episode, alert: Alert) -> Episode:
    inc = ep.incident
    figures = {"state": alert.state.value, "severity": alert.severity.value, "at": iso(alert.at),
               "alert_id": alert.id, **dict(alert.evidence)}
    rules = {**inc.rules, alert.rule: figures}
    ids = inc.alert_ids if alert.id in inc.alert_ids else (*inc.alert_ids, alert.id)
    meters = set(inc.meters) | set(_meters(alert.evidence))
    active = ep.active | {alert.id} if alert.state is AlertState.FIRING else ep.active - {alert.id}
    peak = inc.peak_deficit_pct
    pct = alert.evidence.get("deficit_pct")
    if isinstance(pct, int | float) and alert.state is AlertState.FIRING:
        peak = float(pct) if peak is None else max(peak, float(pct))
    severity = inc.severity if inc.kind is IncidentKind.DISCHARGE else Severity.highest(inc.severity, alert.severity)
    return replace(ep, active=active, incident=inc.with_(rules=rules, alert_ids=ids, meters=tuple(sorted(meters)),
                                                        peak_deficit_pct=peak, severity=severity))


def _meters(evidence: Mapping[str, Any]) -> list[str]:
    m = evidence.get("meters")
    if isinstance(m, Mapping):
        return [str(k) for k in m]
    if isinstance(m, list | tuple):
        return [str(x) for x in m]
    return []


def _refresh(s: _Site, ep: Episode, volumes: SiteVolumes, now: datetime, settings: IncidentSettings) -> Episode:
    inc = ep.incident.with_(updated_at=now.astimezone(s.tz))
    acc = ep.acc
    if acc is not None:
        kb = volumes.horizon()
        if kb is not None and kb > acc.next_k:
            start = max(acc.next_k, volumes.oldest())
            skipped = start - acc.next_k  # fell out of the ledgers (a long outage): unknown
            acc = replace(acc, next_k=start, unknown=acc.unknown + skipped)
            peak = acc.peak_k
            acc = acc.fold(volumes.intervals(start, kb), volumes.drift_pct)
            if acc.peak_k != peak:
                acc = replace(acc, e_lag_end=_extracted(volumes, acc.peak_k))
        vol = estimate_volume(acc.e_at_peak, acc.r_at_peak, acc.baseline_pct, *volumes.accuracy_pct,
                              transit_m3=acc.transit_m3)
        mean = None if acc.e_at_peak <= 0 else round(
            100.0 * (acc.e_at_peak - acc.r_at_peak) / acc.e_at_peak, 2)
        inc = inc.with_(volume_m3=vol, mean_deficit_pct=mean,
                        volume_basis=acc.basis(volumes.step_s, s.tz, volumes.accuracy_pct))
    inc = inc.with_(severity=Severity.highest(inc.severity, _severity(inc, now, settings)))
    return replace(ep, incident=_text(s, inc), acc=acc)


def _severity(inc: Incident, now: datetime, settings: IncidentSettings) -> Severity:
    """What volume and duration call for (the incident keeps the highest it ever had)."""
    lasted = now - inc.started_at
    if inc.kind is IncidentKind.DISCHARGE:  # how long water ran off: onset to the last excess
        end = inc.volume_basis.get("to")
        lasted = parse_time(end) - inc.started_at if isinstance(end, str) else timedelta(0)
    by_time = (Severity.CRITICAL if lasted >= settings.critical_after else
               Severity.HIGH if lasted >= settings.high_after else Severity.WARNING)
    if inc.kind in (IncidentKind.METER_FAULT, IncidentKind.COMPLIANCE, IncidentKind.CALIBRATION):
        return Severity.INFO  # their alerts' severity stands
    if inc.kind is IncidentKind.EVASION:
        return by_time
    est = inc.volume_m3.estimate if inc.volume_m3 is not None else 0.0
    by_volume = (Severity.CRITICAL if est >= settings.critical_m3 else
                 Severity.HIGH if est >= settings.high_m3 else Severity.WARNING)
    return Severity.highest(by_time, by_volume)


_KIND_WORDS = {
    IncidentKind.DISCHARGE: ("疑似外排", "suspected discharge"),
    IncidentKind.EVASION: ("疑似规避监测", "suspected evasion of metering"),
    IncidentKind.METER_FAULT: ("计量故障", "meter fault"),
    IncidentKind.COMPLIANCE: ("违反许可", "permit breach"),
    IncidentKind.CALIBRATION: ("计量检定到期", "calibration past due"),
}


def _found(rule: str, figures: Mapping[str, Any], lang: Language) -> str:
    """「抽水运行中回灌流量计无数据（R2）」: what a rule found, with its meters."""
    meters = _meters(figures)
    if not meters:
        return rule_words(rule, lang)
    if lang is Language.EN:
        return f"{rule_words(rule, lang)} ({', '.join(meters)})"
    return f"{rule_words(rule, lang)}（{'、'.join(meters)}）"


def _text(s: _Site, inc: Incident) -> Incident:
    """The one-line summary in both languages."""
    out = {}
    for lang in Language:
        en = lang is Language.EN
        zh_kind, en_kind = _KIND_WORDS[inc.kind]
        since = inc.started_at.astimezone(s.tz).strftime("%Y-%m-%d %H:%M")
        if inc.volume_m3 is not None:
            v = inc.volume_m3
            figures = (f"about {v.estimate:,.0f} m³ ({v.low:,.0f}–{v.high:,.0f} m³) discharged since {since}" if en
                       else f"自{since}起估计外排约{v.estimate:,.0f} m³（{v.low:,.0f}–{v.high:,.0f} m³）")
            if inc.mean_deficit_pct is not None:
                figures += (f", mean deficit {inc.mean_deficit_pct:.1f}%" if en
                            else f"，平均差额{inc.mean_deficit_pct:.1f}%")
        else:
            found = sorted({_found(r, f, lang) for r, f in inc.rules.items() if not r.startswith("balance_")})
            figures = (f"since {since}: " + "; ".join(found)) if en else (f"自{since}起：" + "；".join(found))
        ended = ""
        if inc.ended_at is not None:
            end = inc.ended_at.astimezone(s.tz).strftime("%Y-%m-%d %H:%M")
            ended = f" (ended {end})" if en else f"（{end}结束）"
        out[lang.value] = (f"{inc.site_name}: {en_kind}, {figures}{ended}" if en
                           else f"{inc.site_name} {zh_kind}，{figures}{ended}")
    return inc.with_(summary=out)

