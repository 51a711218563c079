"""The rule engine: readings in (`ingest`), meter changes in (`note_changes`), alert transitions and
incident changes out (`step(now)`; `evaluate(now)` gives the alerts alone).

The same object runs live (fed by the collector, evaluated on a schedule), in replay (fed by a recorded
stream, evaluated on the data's clock) and in tests. It has no clock of its own: `now` is passed in.
Per site it keeps each meter's `MeterTrack` (data-quality state) and `Ledger` (interval volumes), the
sequential detector's state, one lifecycle track per rule and the site's incidents (`rules.incidents`).

Write before you move: each site's alert transitions and incident changes of one evaluation are written to
the store in one transaction before the site's state moves. A write that fails (disk full) leaves the site as
it was, counts in `stats.store_errors` and shows in `problems()`; readings keep flowing into the ledgers
meanwhile, and the next evaluation catches the site up at every interval boundary it missed (windows end at
the evaluation's time, not at the newest reading), so the stored transitions are those of a run without
the fault.
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from typing import TYPE_CHECKING, Any

from alerting.model import (
    Alert,
    AlertKind,
    IncidentKind,
    IncidentNotice,
    MaintenanceClaim,
)
from alerting.model import AlertState as AlertPhase
from collector.duration import format_duration
from collector.model import Meter, MeterChange, Reading, Role, Site
from rules.balance import Balance, Condition, balance_threshold_pct, judge_balance, transit_allowance
from rules.counters import REBASING, StepKind, classify_step, rebase_step
from rules.events import iso, summarize
from rules.incidents import Episode, claim, restore_episode
from rules.incidents import advance as advance_incidents
from rules.lifecycle import AlertState, AlertTrack, Transition, advance
from rules.quality import QUALITY_RULES, Finding, MeterTrack, QualityPlan, note_bridged, note_change, observe
from rules.roles import role_at, roles_constant
from rules.sequential import CusumParams, CusumState, cusum_condition, cusum_update
from rules.settings import Language, MaintenanceWindow, RuleSet, RulesSettings, Severity, WindowRule
from rules.store import AlertStore, Evaluation, StoreError
from rules.windows import IntervalSeries, Ledger, interval_of

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Engine", "EngineError", "EngineStats", "Step"]

log = logging.getLogger(__name__)

SEQUENTIAL_RULE = "balance_sequential"


class EngineError(Exception):
    """The rule engine was given something it cannot use."""


@dataclass(slots=True)
class EngineStats:
    readings: int = 0
    duplicates: int = 0  # same meter, same ts (e.g. MQTT redelivery): ignored
    late: int = 0  # older than the meter's newest reading: ignored
    unknown: int = 0  # site or meter not in the config: ignored
    changes: int = 0  # meter changes noted (swapped meter, new totalizer unit or multiplier, new scale)
    evaluations: int = 0
    store_errors: int = 0  # evaluations of a site whose transitions could not be written (retried)


@dataclass(frozen=True, slots=True)
class Step:
    """What one evaluation changed: alert transitions and incident notices, both already stored."""

    alerts: list[Alert]
    notices: list[IncidentNotice]


@dataclass(slots=True)
class _MeterState:
    meter: Meter
    track: MeterTrack
    ledger: Ledger
    total_ts: float | None = None  # ts of the last reading that carried a total
    ref_total: float | None = None  # counter reference: the last total, except that noise dips keep it
    unknown_until: float | None = None  # ledger already marked unknown up to here (frozen totalizer)
    rebase_at: float | None = None  # a rebasing meter change: the first total at or after it restarts the counter


@dataclass(slots=True)
class _SiteState:
    site: Site
    rules: RuleSet
    meters: dict[str, _MeterState]
    alerts: dict[str, AlertTrack] = field(default_factory=dict)
    cusum: CusumState = field(default_factory=CusumState)
    cusum_params: CusumParams | None = None
    seq_next: int | None = None  # index (in sequential intervals) of the next one to judge
    events_seen: int = 0
    last_balance_k: int | None = None
    watch_since: float | None = None
    maintenance: list[MaintenanceWindow] = field(default_factory=list)
    quality: QualityPlan | None = None
    gap_s: float = 600.0
    incidents: dict[IncidentKind, Episode] = field(default_factory=dict)
    claimed: list[MaintenanceWindow] = field(default_factory=list)  # declared during an incident: not allowed
    claim_keys: set[tuple[str, str, str]] = field(default_factory=set)
    held_since: float | None = None  # data time of the first evaluation whose write failed
    # while held: data quality as it was at each step (times, and rule → finding), for the catch-up to judge by
    held_at: list[float] = field(default_factory=list)
    held_quality: list[dict[str, Finding]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The evaluation state of a site, put back when the evaluation's write fails."""

    alerts: dict[str, AlertTrack]
    cusum: CusumState
    seq_next: int | None
    events_seen: int
    last_balance_k: int | None
    watch_since: float | None

    @classmethod
    def of(cls, st: _SiteState) -> _Snapshot:
        return cls(dict(st.alerts), st.cusum, st.seq_next, st.events_seen, st.last_balance_k, st.watch_since)

    def restore(self, st: _SiteState) -> None:
        st.alerts, st.cusum, st.seq_next = self.alerts, self.cusum, self.seq_next
        st.events_seen, st.last_balance_k, st.watch_since = self.events_seen, self.last_balance_k, self.watch_since


@dataclass(frozen=True, slots=True)
class _RuleInfo:
    kind: AlertKind
    severity: Severity
    family: str  # summary template: "balance", "sequential" or the quality rule name


class Engine:
    """Thread-safe: `ingest` and `evaluate` may be called from different threads."""

    def __init__(self, sites: Sequence[Site], settings: RulesSettings, tz: tzinfo = UTC,
                 store: AlertStore | None = None, language: Language | None = None,
                 keep: timedelta | None = None) -> None:
        self.settings = settings
        self.tz = tz
        self.store = store if store is not None else AlertStore(":memory:")
        self.language = language or settings.language
        self.step_s = settings.evaluate_every.total_seconds()
        self.stats = EngineStats()
        self._lock = threading.RLock()
        self._sites: dict[str, _SiteState] = {}
        self._written: list[tuple[Alert, float | None]] = []  # this site's evaluation, until it is stored
        self._clears: list[tuple[str, float | None]] = []
        self._store_problem: str | None = None
        plans: dict[int, tuple[QualityPlan, CusumParams]] = {}  # per RuleSet (shared by its sites: frozen)
        for site in sites:
            rs = settings.resolve(site.id, site.district)
            longest = max([w.window for w in rs.balance.windows] + [rs.sequential.interval,
                                                                     rs.balance.transit_lag])
            retention = math.ceil((longest + rs.balance.transit_lag).total_seconds() / self.step_s) + 4
            if keep is not None:  # reports read a whole day (and its margins) back from the ledger
                retention = max(retention, math.ceil(keep.total_seconds() / self.step_s) + 4)
            meters = {m.id: _MeterState(m, MeterTrack(m.id, m.role), Ledger(self.step_s, retention))
                      for m in site.meters}
            if id(rs) not in plans:
                seq = rs.sequential
                plans[id(rs)] = (QualityPlan.of(rs.quality),
                                 CusumParams.of(seq.drift_pct, seq.threshold_pct_h, seq.warmup.total_seconds() / 3600,
                                                seq.learn_half_life.total_seconds() / 3600,
                                                seq.interval.total_seconds() / 3600))
            quality, cusum = plans[id(rs)]
            st = _SiteState(site, rs, meters, maintenance=list(rs.maintenance), quality=quality,
                            gap_s=rs.gap_tolerance.total_seconds())
            st.cusum_params = cusum
            self._sites[site.id] = st
        self._restore()

    # ---------------------------------------------------------------- restore
    def _restore(self) -> None:
        for a in self.store.open_alerts():
            st = self._sites.get(a.site)
            if st is None:
                continue
            st.alerts[a.rule] = AlertTrack(AlertState(a.state.value), a.id, a.starts_at.timestamp(),
                                           self.store.clear_since(a.id))
        firing = frozenset(a.id for a in self.store.open_alerts() if a.state is AlertPhase.FIRING)
        for inc in self.store.latest_incidents():
            st = self._sites.get(inc.site)
            if st is not None:
                st.incidents[inc.kind] = restore_episode(inc, firing)
        for inc in self.store.incidents():
            st = self._sites.get(inc.site)
            if st is not None:
                st.claim_keys.update(_claim_key(c.starts_at, c.ends_at, c.reason) for c in inc.maintenance_claims)

    # ---------------------------------------------------------------- ingest
    def ingest(self, readings: Iterable[Reading], now: datetime | None = None) -> None:
        """Take readings (any order across meters; per meter, older-than-newest ones are ignored).

        Live, pass the clock's `now`: a reading dated after it counts as taken at `now`, so a device clock
        running ahead cannot make the meter's next genuine readings look older than its newest."""
        limit = math.inf if now is None else now.timestamp()
        with self._lock:
            for r in readings:
                self._ingest_one(r.site, r.meter, min(r.ts.timestamp(), limit), r.rate_m3h, r.total_m3,
                                 r.signal_pct, r.error_code, r.volume_m3, r.period_s)

    def ingest_values(self, site: str, meter: str, ts: float, rate_m3h: float | None, total_m3: float | None,
                      signal_pct: float | None = None, error_code: int | None = None) -> None:
        """One reading as plain values (epoch seconds): the path of backfill and replay."""
        with self._lock:
            self._ingest_one(site, meter, ts, rate_m3h, total_m3, signal_pct, error_code)

    def ingest_columns(self, site: Sequence[str], meter: Sequence[str], ts: Sequence[float],
                       rate: Sequence[float | None], total: Sequence[float | None],
                       signal: Sequence[float | None], error: Sequence[int | None], start: int,
                       stop: int, volume: Sequence[float | None] | None = None,
                       period: Sequence[float | None] | None = None) -> None:
        """Rows start … stop−1 of parallel columns (epoch seconds): the bulk path of replay and backfill;
        `volume` and `period` (interval volumes) when the rows hold any."""
        one = self._ingest_one
        with self._lock:
            if volume is None or period is None:
                for i in range(start, stop):
                    one(site[i], meter[i], ts[i], rate[i], total[i], signal[i], error[i])
                return
            for i in range(start, stop):
                one(site[i], meter[i], ts[i], rate[i], total[i], signal[i], error[i], volume[i], period[i])

    def note_changes(self, changes: Iterable[MeterChange]) -> None:
        """Take meter changes (a swapped meter, a new totalizer unit or multiplier, a touched scale factor),
        each before the readings decoded after it: the `meter_changed` rule reports them, and across a
        rebasing one the meter's counter restarts from its new value (no volume jump, no reset)."""
        with self._lock:
            for c in changes:
                st = self._sites.get(c.site)
                ms = st.meters.get(c.meter) if st is not None else None
                if ms is None:
                    self.stats.unknown += 1
                    continue
                self.stats.changes += 1
                ts = c.ts.timestamp()
                note_change(ms.track, c, ts)
                if c.kind in REBASING and (ms.rebase_at is None or ts < ms.rebase_at):
                    ms.rebase_at = ts

    def note_arrival(self, site: str, meter: str, pct: float | None) -> None:
        """A meter's arrival rate over the trailing 24 h (None: not judged yet), for `low_arrival`."""
        st = self._sites.get(site)
        ms = st.meters.get(meter) if st is not None else None
        if ms is not None:
            ms.track.arrival_pct = pct

    def backfill(self, rows: Iterable[Reading] | pd.DataFrame) -> int:
        """Fill windows from history: Readings, or a DataFrame with ts, site, meter, rate_m3h, total_m3
        (ts tz-aware or epoch seconds). Returns how many rows were taken. No alert is evaluated here."""
        if hasattr(rows, "columns"):  # a DataFrame (pandas is imported only when one is given)
            import pandas as pd

            df: Any = rows
            ts = df["ts"]
            if pd.api.types.is_datetime64_any_dtype(ts):
                secs = (ts.astype("datetime64[ns, UTC]").astype("int64") / 1e9).tolist()
            else:
                secs = ts.astype(float).tolist()
            n = len(df)
            return self.backfill_columns(secs, df["site"].tolist(), df["meter"].tolist(), df["rate_m3h"].tolist(),
                                         df["total_m3"].tolist(),
                                         df["volume_m3"].tolist() if "volume_m3" in df else [None] * n,
                                         df["period_s"].tolist() if "period_s" in df else [None] * n)
        items = sorted(rows, key=lambda r: r.ts)
        self.ingest(items)
        return len(items)

    def backfill_columns(self, secs: Sequence[float], site: Sequence[Any], meter: Sequence[Any],
                         rate: Sequence[Any], total: Sequence[Any], volume: Sequence[Any],
                         period: Sequence[Any]) -> int:
        """`backfill` from parallel columns (epoch seconds; a missing value None or NaN), in time order."""
        order = sorted(range(len(secs)), key=lambda i: secs[i])
        with self._lock:
            for i in order:
                self._ingest_one(str(site[i]), str(meter[i]), float(secs[i]), _value(rate[i]), _value(total[i]),
                                 None, None, _value(volume[i]), _value(period[i]))
        return len(order)

    def _ingest_one(self, site_id: str, meter_id: str, ts: float, rate: float | None, total: float | None,
                    signal: float | None, error: int | None, volume: float | None = None,
                    period: float | None = None) -> None:
        self.stats.readings += 1
        st = self._sites.get(site_id)
        ms = st.meters.get(meter_id) if st is not None else None
        if st is None or ms is None:
            self.stats.unknown += 1
            return
        tr = ms.track
        if tr.last_ts is not None and ts <= tr.last_ts:
            if ts == tr.last_ts:
                self.stats.duplicates += 1
            else:
                self.stats.late += 1
            return
        rs = st.rules
        step_kind: StepKind | None = None
        if volume is not None and period is not None:
            # an interval volume is the ledger's own unit: the water of [ts − period, ts], nothing to difference
            start = ts - period
            if tr.last_ts is not None and start > tr.last_ts:
                ms.ledger.mark_unknown(tr.last_ts, start)  # intervals not reported between: unknown, not zero
            ms.ledger.add(start, ts, volume)
        elif total is not None:
            rebase = ms.rebase_at is not None and ts >= ms.rebase_at
            if rebase:
                ms.rebase_at = None
            if ms.total_ts is not None and ms.ref_total is not None:
                if rebase:
                    step = rebase_step(tr.last_rate, rate, ts - ms.total_ts, st.gap_s, rs.counters)
                    note_bridged(tr, ts, step.volume_m3)
                else:
                    step = classify_step(ms.ref_total, total, ts - ms.total_ts, st.gap_s, rs.counters)
                step_kind = step.kind
                volume = step.volume_m3
                if rate is not None and rate < -rs.quality.reverse_m3h:
                    volume = None  # reverse flow runs on the other accumulator: forward volume unknown
                ms.ledger.add(ms.total_ts, ts, volume)
            if step_kind is not StepKind.NOISE:
                ms.ref_total = total
            ms.total_ts = ts
        elif tr.last_ts is not None:
            ms.ledger.mark_unknown(tr.last_ts, ts)  # no totalizer: volume unknown (no rate integration)
        observe(tr, ts, rate, total, signal, error, step_kind)
        if tr.frozen_candidate(rs.quality.frozen_min_m3) and tr.flat_since is not None:
            start = tr.flat_since if ms.unknown_until is None else max(tr.flat_since, ms.unknown_until)
            ms.ledger.mark_unknown(start, ts)
            ms.unknown_until = ts

    # ---------------------------------------------------------------- maintenance
    def maintenance(self, site_id: str) -> tuple[MaintenanceWindow, ...]:
        """Every declared maintenance window of a site, claims included (kept visible for history and
        reports)."""
        with self._lock:
            st = self._site(site_id)
            return tuple(sorted(st.maintenance + st.claimed, key=lambda m: m.start))

    def declare_maintenance(self, site_id: str, window: MaintenanceWindow, declared_by: str = "",
                            declared_at: datetime | None = None) -> bool:
        """Allow a deficit up to the window's cap in the balance windows — unless an incident of the site is
        open: then the window is recorded on each open incident as a claim (stored first) and allows nothing,
        so it never resolves or shrinks the incident. Returns True when it became a claim. Raises
        `StoreError` when the claim cannot be stored (nothing changes)."""
        with self._lock:
            st = self._site(site_id)
            key = _claim_key(window.start, window.end, window.reason)
            if key in st.claim_keys:  # a claim declared before a restart
                st.claimed.append(window)
                return True
            open_eps = {k: ep for k, ep in st.incidents.items() if ep.incident.open}
            if not open_eps:
                st.maintenance.append(window)
                return False
            at = declared_at or datetime.now(UTC)
            c = MaintenanceClaim(window.start, window.end, window.reason, window.volume_cap_m3, declared_by,
                                 at.astimezone(self.tz))
            claimed = {k: claim(ep, c, at.astimezone(self.tz)) for k, ep in open_eps.items()}
            self.store.record_evaluation(Evaluation(incidents=[(ep.incident, ()) for ep in claimed.values()]))
            st.incidents.update(claimed)
            st.claimed.append(window)
            st.claim_keys.add(key)
            return True

    def _site(self, site_id: str) -> _SiteState:
        try:
            return self._sites[site_id]
        except KeyError:
            raise EngineError(f"unknown site {site_id!r}: add it under `sites:` in the config") from None

    # ---------------------------------------------------------------- evaluate
    def evaluate(self, now: datetime) -> list[Alert]:
        """Evaluate every rule of every site at `now`; return the alert transitions, in a stable order."""
        return self.step(now).alerts

    def step(self, now: datetime) -> Step:
        """Evaluate every rule of every site at `now`: the alert transitions and incident notices, each site's
        stored before its state moved. A site whose write fails is left as it was (see `problems()`); the next
        step first catches it up, evaluating it at every interval boundary it missed, so its transitions are
        the ones it would have had without the fault."""
        if now.tzinfo is None:
            raise EngineError("evaluate(now) needs a timezone-aware time: pass datetime.now(UTC)")
        t = now.timestamp()
        alerts: list[Alert] = []
        notices: list[IncidentNotice] = []
        failed: str | None = None
        with self._lock:
            self.stats.evaluations += 1
            for st in self._sites.values():
                for at in self._instants(st, t):
                    try:
                        site_alerts, site_notices = self._evaluate_and_store(st, at)
                    except StoreError as exc:
                        if st.held_since is None:
                            st.held_since = at
                        self._note_quality(st, t)
                        self.stats.store_errors += 1
                        failed = str(exc)
                        break
                    st.held_since = None
                    alerts.extend(site_alerts)
                    notices.extend(site_notices)
                if st.held_since is None and st.held_at:  # caught up: the notes have served
                    st.held_at.clear()
                    st.held_quality.clear()
            self._note_store(failed, now)
        return Step(alerts, notices)

    def _note_quality(self, st: _SiteState, t: float) -> None:
        """A held site's data quality as it is now: the meters' state moves on with the readings, so the
        catch-up could not see a meter that went silent and came back while the store was failing."""
        q = st.quality
        assert q is not None
        tracks = [ms.track for ms in st.meters.values()]
        if len(st.held_at) < _HELD_QUALITY_MAX and (not st.held_at or st.held_at[-1] < t):
            st.held_at.append(t)
            st.held_quality.append({name: rule.detect(tracks, t, q) for name, rule in QUALITY_RULES.items()})

    def _held_finding(self, st: _SiteState, name: str, t: float) -> Finding | None:
        """What data quality was at `t` when the site was held then: the latest note at or before `t`; None
        after the last note (the meters' state now is the truth there)."""
        if not st.held_at or t > st.held_at[-1]:
            return None
        i = bisect_right(st.held_at, t)
        return st.held_quality[i - 1].get(name) if i else None

    def _instants(self, st: _SiteState, t: float) -> list[float]:
        """When to evaluate a site now: at `t`, after every interval boundary missed since a failed write
        (as far back as the ledgers keep)."""
        if st.held_since is None or st.held_since >= t:
            return [t]
        first = math.ceil(st.held_since / self.step_s)
        last = math.floor(t / self.step_s)
        keep = min(ms.ledger.retention for ms in st.meters.values())
        ks = range(max(first, last - keep + 1), last + 1)
        return [k * self.step_s for k in ks if k * self.step_s < t] + [t]

    def _evaluate_and_store(self, st: _SiteState, t: float) -> tuple[list[Alert], list[IncidentNotice]]:
        """One site at data time `t`, written before the site's state moves (`StoreError`: nothing moved)."""
        snapshot = _Snapshot.of(st)
        self._written, self._clears = [], []
        site_alerts = self._evaluate_site(st, t)
        now = datetime.fromtimestamp(t, self.tz)
        episodes, updates = advance_incidents(
            st.incidents, site_alerts, _Volumes(self, st, interval_of(t, self.step_s)), now, self.settings.incidents,
            site=(st.site.id, st.site.name, st.site.district), tz=self.tz)
        try:
            self.store.record_evaluation(Evaluation(self._written, self._clears,
                                                    [(u.incident, u.changes) for u in updates]))
        except StoreError:
            snapshot.restore(st)
            raise
        st.incidents = episodes
        return site_alerts, [IncidentNotice(c, u.incident.updated_at, u.incident) for u in updates for c in u.changes]

    def _note_store(self, failed: str | None, now: datetime) -> None:
        if failed is not None:
            if self._store_problem is None:
                log.error("cannot store alert transitions (%s); the rules hold their state and retry at the next "
                          "evaluation", failed)
                self._store_problem = f"alert store not writable since {iso(now.astimezone(self.tz))}: {failed}"
        elif self._store_problem is not None:
            log.info("the alert store is writable again; held transitions stored")
            self._store_problem = None

    def problems(self) -> list[str]:
        """What keeps the engine from working as it should (for the health report); empty when all is well."""
        with self._lock:
            return [self._store_problem] if self._store_problem else []

    def _evaluate_site(self, st: _SiteState, t: float) -> list[Alert]:
        if st.watch_since is None:
            st.watch_since = t
        events: list[Alert] = []
        now_dt = datetime.fromtimestamp(t, UTC)
        for ms in st.meters.values():
            ms.track.role = role_at(ms.meter, now_dt, self.tz)
        events.extend(self._evaluate_quality(st, t))
        events.extend(self._evaluate_balance(st, t))
        events.extend(self._evaluate_sequential(st))
        return events

    def _evaluate_quality(self, st: _SiteState, t: float) -> list[Alert]:
        q = st.quality
        assert q is not None
        tracks = [ms.track for ms in st.meters.values()]
        out: list[Alert] = []
        grace = st.watch_since is not None and t - st.watch_since <= q.offline_after
        alerts = st.alerts
        unseen = any(tr.last_ts is None for tr in tracks)
        for name, rule in QUALITY_RULES.items():
            if grace and unseen and name == "meter_offline":
                continue  # a meter without a reading since start (no history): not offline before offline_after
            finding = self._held_finding(st, name, t) or rule.detect(tracks, t, q)
            if finding.condition is not Condition.ACTIVE and name not in alerts:
                continue  # nothing pending or firing, nothing to start
            out.extend(self._advance(st, name, _QUALITY_INFO[name], finding.condition, t, rule.hold(q),
                                     q.clear_for, partial(_finding_evidence, finding, self.tz)))
        return out

    def _sides(self, st: _SiteState) -> tuple[list[_MeterState], list[_MeterState]]:
        ext = [ms for ms in st.meters.values() if ms.track.role is Role.EXTRACTION]
        rei = [ms for ms in st.meters.values() if ms.track.role is Role.REINJECTION]
        return ext, rei

    def _horizon_k(self, st: _SiteState, until_k: int | None = None) -> int | None:
        """The first interval not yet complete on both sides (at most `until_k`: not after the evaluation)."""
        ext, rei = self._sides(st)
        if not ext or not rei:
            return None
        last = [ms.track.last_ts for ms in ext + rei]
        if any(x is None for x in last):
            return None
        k = interval_of(min(x for x in last if x is not None), self.step_s)
        return k if until_k is None else min(k, until_k)

    def _sum(self, meters: list[_MeterState], ka: int, kb: int) -> tuple[float, bool]:
        total, complete = 0.0, True
        a = ka * self.step_s
        for ms in meters:
            w = ms.ledger.window(ka, kb)
            total += w.volume_m3
            first = ms.track.first_ts
            complete = complete and w.complete and first is not None and first <= a
        return total, complete

    def _transit(self, st: _SiteState, ext: list[_MeterState], ka: int, kb: int) -> float:
        lag_k = math.ceil(st.rules.balance.transit_lag.total_seconds() / self.step_s)
        return transit_allowance(self._sum(ext, kb - lag_k, kb)[0], self._sum(ext, ka - lag_k, ka)[0])

    def _window_balance(self, st: _SiteState, ka: int, kb: int, threshold: float, clear_ratio: float,
                        min_m3: float) -> tuple[Balance, Callable[[], dict[str, Any]]]:
        ext, rei = self._sides(st)
        e, e_ok = self._sum(ext, ka, kb)
        r, r_ok = self._sum(rei, ka, kb)
        a, b = ka * self.step_s, kb * self.step_s
        a_dt, b_dt = datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC)
        stable = all(roles_constant(ms.meter, a_dt, b_dt, self.tz) for ms in st.meters.values())
        q = st.rules.quality
        frozen = any(ms.track.frozen_candidate(q.frozen_min_m3) or ms.track.reverse_since is not None
                     for ms in ext + rei)
        overlapping = [m for m in st.maintenance if m.start.timestamp() < b and m.end.timestamp() > a]
        cap = sum(m.volume_cap_m3 for m in overlapping)
        # the transit allowance can only lower the deficit: skip it when the window is clear without it
        clear_anyway = e > 0 and 100.0 * (e - r - cap) / e <= threshold * clear_ratio
        transit = 0.0 if clear_anyway else self._transit(st, ext, ka, kb)
        bal = judge_balance(e, r, complete=e_ok and r_ok and stable and not frozen, threshold_pct=threshold,
                            clear_ratio=clear_ratio, min_extracted_m3=min_m3, transit_allowance_m3=transit,
                            maintenance_allowance_m3=cap)

        def evidence() -> dict[str, Any]:
            shown_transit = self._transit(st, ext, ka, kb) if clear_anyway else bal.transit_allowance_m3
            ev: dict[str, Any] = {
                "window_start": iso(datetime.fromtimestamp(a, self.tz)),
                "window_end": iso(datetime.fromtimestamp(b, self.tz)),
                "extracted_m3": round(bal.extracted_m3, 3), "reinjected_m3": round(bal.reinjected_m3, 3),
                "deficit_m3": round(bal.deficit_m3, 3),
                "deficit_pct": None if bal.deficit_pct is None else round(bal.deficit_pct, 2),
                "threshold_pct": round(bal.threshold_pct, 2),
                "excess_pct": None if bal.excess_pct is None else round(bal.excess_pct, 2),
                "transit_allowance_m3": round(shown_transit, 3),
                "maintenance_allowance_m3": round(bal.maintenance_allowance_m3, 3),
                "maintenance": [{"from": iso(m.start), "to": iso(m.end), "reason": m.reason,
                                 "volume_cap_m3": m.volume_cap_m3} for m in overlapping],
                "meters": {ms.meter.id: round(ms.ledger.window(ka, kb).volume_m3, 3) for ms in ext + rei},
            }
            if bal.condition is Condition.UNKNOWN:
                ev["unknown_reason"] = bal.reason
            return ev

        return bal, evidence

    def _accuracy(self, st: _SiteState) -> tuple[float, float]:
        ext, rei = self._sides(st)
        return (max((ms.meter.accuracy_pct for ms in ext), default=1.0),
                max((ms.meter.accuracy_pct for ms in rei), default=1.0))

    def _evaluate_balance(self, st: _SiteState, t: float) -> list[Alert]:
        kb = self._horizon_k(st, interval_of(t, self.step_s))
        if kb is None or kb == st.last_balance_k:
            return []
        st.last_balance_k = kb
        bs = st.rules.balance
        acc_e, acc_r = self._accuracy(st)
        out = []
        for w in bs.windows:
            n = max(1, math.ceil(w.window.total_seconds() / self.step_s))
            threshold = balance_threshold_pct(w.threshold_pct, w.accuracy_factor, acc_e, acc_r)
            bal, ev = self._window_balance(st, kb - n, kb, threshold, bs.clear_ratio, w.min_extracted_m3)
            info = _RuleInfo(AlertKind.DISCHARGE, w.severity, "balance")
            out.extend(self._advance(st, _window_rule(w), info,
                                     bal.condition, kb * self.step_s, w.hold.total_seconds(),
                                     w.clear_for.total_seconds(),
                                     partial(_window_evidence, format_duration(w.window), ev)))
        return out

    def _evaluate_sequential(self, st: _SiteState) -> list[Alert]:
        seq = st.rules.sequential
        p = st.cusum_params
        if not seq.enabled or p is None or st.last_balance_k is None:
            return []
        m = max(1, round(seq.interval.total_seconds() / self.step_s))
        last_j = st.last_balance_k // m  # intervals j with (j+1)·m ≤ horizon are complete
        ext, rei = self._sides(st)
        if st.seq_next is None:
            # start at the first whole interval every meter covers: history back-filled before the first
            # evaluation (as far as the ledger keeps it) teaches the baseline at once
            firsts = [ms.track.first_ts for ms in ext + rei if ms.track.first_ts is not None]
            first_k = math.ceil(max(firsts) / self.step_s) if firsts else st.last_balance_k
            oldest_kept = st.last_balance_k - min(ms.ledger.retention for ms in ext + rei) + 1
            st.seq_next = -(-max(first_k, oldest_kept) // m)
            st.events_seen = sum(ms.track.events for ms in st.meters.values())
        out: list[Alert] = []
        events_now = sum(ms.track.events for ms in st.meters.values())
        lag_k = math.ceil(st.rules.balance.transit_lag.total_seconds() / self.step_s)
        while st.seq_next < last_j:
            j = st.seq_next
            st.seq_next += 1
            ka, kb = j * m, (j + 1) * m
            if events_now != st.events_seen:
                st.events_seen = events_now
                st.cusum = CusumState()  # meter reset or replacement: relearn this site's baseline
            a_dt = datetime.fromtimestamp(ka * self.step_s, UTC)
            b_dt = datetime.fromtimestamp(kb * self.step_s, UTC)
            if not all(roles_constant(ms.meter, a_dt, b_dt, self.tz) for ms in st.meters.values()):
                st.cusum = CusumState()
                continue
            e, e_ok = self._sum(ext, ka, kb)
            r, r_ok = self._sum(rei, ka, kb)
            # water in transit changes with the load (either way): such intervals say little about bias
            if not (e_ok and r_ok) or e < max(seq.min_extracted_m3, 1e-9):
                continue
            transit = abs(self._sum(ext, kb - lag_k, kb)[0] - self._sum(ext, ka - lag_k, ka)[0])
            a_s, b_s = ka * self.step_s, kb * self.step_s
            in_maintenance = any(mw.start.timestamp() < b_s and mw.end.timestamp() > a_s
                                 for mw in st.maintenance)
            if not (e_ok and r_ok) or e < max(seq.min_extracted_m3, 1e-9) or transit > 0.01 * e \
                    or in_maintenance:
                continue
            d_pct = 100.0 * (e - r) / e
            st.cusum = cusum_update(st.cusum, d_pct, p)
            cond = cusum_condition(st.cusum, p)
            ev: dict[str, Any] = {"window": format_duration(seq.interval),
                  "window_start": iso(datetime.fromtimestamp(ka * self.step_s, self.tz)),
                  "window_end": iso(datetime.fromtimestamp(kb * self.step_s, self.tz)),
                  "extracted_m3": round(e, 3), "reinjected_m3": round(r, 3), "deficit_m3": round(e - r, 3),
                  "deficit_pct": round(d_pct, 2), "baseline_pct": round(st.cusum.baseline_pct, 2),
                  "threshold_pct": round(st.cusum.baseline_pct + p.drift_pct, 2),
                  "cusum_pct_h": round(st.cusum.s, 2), "cusum_threshold_pct_h": p.threshold_pct_h}
            info = _RuleInfo(AlertKind.DISCHARGE, seq.severity, "sequential")
            out.extend(self._advance(st, SEQUENTIAL_RULE, info,
                                     cond, kb * self.step_s, 0.0, 0.0, partial(dict, ev)))
        return out

    # ---------------------------------------------------------------- lifecycle
    def _advance(self, st: _SiteState, rule: str, info: _RuleInfo, cond: Condition, at: float, hold_s: float,
                 clear_for_s: float, evidence: Callable[[], dict[str, Any]]) -> list[Alert]:
        before = st.alerts.get(rule, _INACTIVE)
        if before.state is AlertState.INACTIVE and cond is not Condition.ACTIVE:
            return []
        after, tr = advance(before, cond, at, hold_s, clear_for_s, st.site.id, rule)
        if after.state is AlertState.INACTIVE:
            st.alerts.pop(rule, None)
        else:
            st.alerts[rule] = after
        if tr is None:
            if after.clear_since != before.clear_since and after.alert_id is not None:
                self._clears.append((after.alert_id, after.clear_since))
            return []
        event = self._event(st, rule, info, tr, evidence())
        self._written.append((event, after.clear_since))
        return [event]

    def _event(self, st: _SiteState, rule: str, info: _RuleInfo, tr: Transition,
               evidence: dict[str, Any]) -> Alert:
        site = st.site
        return Alert(
            id=tr.alert_id, site=site.id, site_name=site.name, district=site.district, rule=rule,
            kind=info.kind, severity=info.severity, state=AlertPhase(tr.state.value),
            at=datetime.fromtimestamp(tr.at, self.tz),
            starts_at=datetime.fromtimestamp(tr.starts_at, self.tz),
            ends_at=None if tr.ends_at is None else datetime.fromtimestamp(tr.ends_at, self.tz),
            summary=summarize(info.family, rule, site.name, evidence, self.language, tr.state.value),
            evidence=evidence)

    def balance(self, site_id: str, window: timedelta, now: datetime | None = None) -> dict[str, Any] | None:
        """The site's volumes over the last `window` of complete data (for the board and reports):
        extracted, reinjected and deficit m³, deficit %, whether every meter covered it, and its end time
        (`end`, also `as_of`). Given `now`, also its age: a window ending more than the site's `offline_after`
        before `now` is `stale` and never `complete`. None before both sides have reported."""
        with self._lock:
            st = self._site(site_id)
            kb = self._horizon_k(st)
            if kb is None:
                return None
            ka = kb - max(1, round(window.total_seconds() / self.step_s))
            ext, rei = self._sides(st)
            e, e_ok = self._sum(ext, ka, kb)
            r, r_ok = self._sum(rei, ka, kb)
            offline_after = st.rules.quality.offline_after.total_seconds()
        end = kb * self.step_s
        age = None if now is None else max(0.0, now.timestamp() - end)
        stale = age is not None and age > offline_after
        as_of = iso(datetime.fromtimestamp(end, self.tz))
        return {"extracted_m3": round(e, 3), "reinjected_m3": round(r, 3), "deficit_m3": round(e - r, 3),
                "deficit_pct": round(100.0 * (e - r) / e, 2) if e > 0 else None,
                "complete": e_ok and r_ok and not stale, "end": as_of, "as_of": as_of,
                "age_s": None if age is None else round(age, 1), "stale": stale}

    def intervals(self, site_id: str, start: datetime, end: datetime) -> dict[str, IntervalSeries]:
        """Per meter, the ledger's intervals from the one holding `start` up to the one before the one
        holding `end` (for reports): each interval's volume, and whether it is known — kept, not unknown,
        and inside the span the meter reported (a reading at or before its start and at or after its
        end), the same test `balance` applies to a window."""
        ka, kb = interval_of(start.timestamp(), self.step_s), interval_of(end.timestamp(), self.step_s)
        out: dict[str, IntervalSeries] = {}
        with self._lock:
            for mid, ms in self._site(site_id).meters.items():
                first, last = ms.track.first_ts, ms.track.last_ts
                vols: list[float] = []
                known: list[bool] = []
                for n, (v, ok) in enumerate(ms.ledger.intervals(ka, kb)):
                    a = (ka + n) * self.step_s
                    vols.append(v)
                    known.append(ok and first is not None and last is not None and first <= a
                                 and last >= a + self.step_s)
                out[mid] = IntervalSeries(ka, tuple(vols), tuple(known))
        return out

    def alert_states(self, site_id: str) -> dict[str, AlertState]:
        with self._lock:
            return {rule: tr.state for rule, tr in self._site(site_id).alerts.items()}


class _Volumes:
    """One site's ledgers as the incident tracker reads them (`rules.incidents.SiteVolumes`)."""

    def __init__(self, engine: Engine, st: _SiteState, until_k: int) -> None:
        self._engine, self._st, self._until_k = engine, st, until_k
        self.step_s = engine.step_s
        warm = st.cusum_params is not None and st.cusum.n > st.cusum_params.warmup_n
        self.baseline_pct = st.cusum.baseline_pct if warm else 0.0
        self.drift_pct = st.rules.sequential.drift_pct
        self.transit_k = math.ceil(st.rules.balance.transit_lag.total_seconds() / engine.step_s)
        self.accuracy_pct = engine._accuracy(st)

    def horizon(self) -> int | None:
        return self._engine._horizon_k(self._st, self._until_k)

    def oldest(self) -> int:
        kb = self.horizon() or 0
        return kb - min(ms.ledger.retention for ms in self._st.meters.values()) + 1

    def intervals(self, ka: int, kb: int) -> list[tuple[float, float, bool]]:
        ext, rei = self._engine._sides(self._st)
        rows = [[0.0, 0.0, True] for _ in range(ka, kb)]
        for side, meters in ((0, ext), (1, rei)):
            for ms in meters:
                first, last = ms.track.first_ts, ms.track.last_ts
                for n, (v, ok) in enumerate(ms.ledger.intervals(ka, kb)):
                    a = (ka + n) * self.step_s
                    row = rows[n]
                    row[side] = float(row[side]) + v
                    covered = first is not None and last is not None and first <= a and last >= a + self.step_s
                    row[2] = bool(row[2]) and ok and covered
        return [(float(e), float(r), bool(k)) for e, r, k in rows]


def _claim_key(start: datetime, end: datetime, reason: str) -> tuple[str, str, str]:
    return (iso(start.astimezone(UTC)), iso(end.astimezone(UTC)), reason)


def _value(x: Any) -> float | None:
    """A DataFrame cell as a float, None for a missing one (NaN or None)."""
    return None if x is None or x != x else float(x)


_INACTIVE = AlertTrack()
_HELD_QUALITY_MAX = 10_000  # notes kept per held site (a week of 1-minute steps is 10 080)
_QUALITY_INFO = {name: _RuleInfo(AlertKind(r.kind), r.severity, name) for name, r in QUALITY_RULES.items()}


def _finding_evidence(f: Finding, tz: tzinfo) -> dict[str, Any]:
    return {"meters": list(f.meters), **_local_times(f.evidence, tz)}


def _local_times(value: Any, tz: tzinfo) -> Any:
    """Evidence as JSON shows it: datetimes as ISO-8601 in the configured time zone."""
    if isinstance(value, datetime):
        return iso(value.astimezone(tz))
    if isinstance(value, dict):
        return {k: _local_times(v, tz) for k, v in value.items()}
    if isinstance(value, list):
        return [_local_times(v, tz) for v in value]
    return value


def _window_evidence(window: str, ev: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return {"window": window, **ev()}


def _window_rule(w: WindowRule) -> str:
    return f"balance_{w.name}"
