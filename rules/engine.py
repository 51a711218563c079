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
from collections.abc import Callable, Collection, Iterable, Sequence
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
from collector.model import ChangeKind, Meter, MeterChange, Reading, Role, Site
from rules.balance import (
    Balance,
    Condition,
    balance_threshold_pct,
    judge_balance,
    refill_credit,
    stopped_interval,
    transit_allowance,
)
from rules.compliance import (
    CALIBRATION_PREFIX,
    COMPLIANCE_RULES,
    YearLedger,
    calibration_overdue,
    fold_year,
    over_rate,
    permit_pumping,
    project_year,
    quota_state,
    rate_limit_m3h,
)
from rules.counters import REBASING, CounterPlan, GapCheck, StepKind, classify_step, rebase_step
from rules.counters import Step as CounterStep
from rules.events import iso, summarize
from rules.forensic import (
    ForensicPlan,
    SitePrints,
    exact_finding,
    note_hour,
    observe_reading,
    replay_finding,
    smooth_finding,
)
from rules.incidents import OUTAGES, Episode, await_outages, claim, restore_episode
from rules.incidents import advance as advance_incidents
from rules.lifecycle import AlertState, AlertTrack, Transition, advance
from rules.quality import QUALITY_RULES, Finding, MeterTrack, QualityPlan, note_bridged, note_change, observe
from rules.roles import role_at, roles_constant
from rules.sequential import (
    CusumParams,
    CusumState,
    cusum_condition,
    cusum_learned,
    cusum_relearn,
    cusum_start,
    cusum_update,
)
from rules.settings import BalanceSettings, Language, MaintenanceWindow, RuleSet, RulesSettings, Severity, WindowRule
from rules.store import AlertStore, Evaluation, StoreError
from rules.windows import IntervalSeries, Ledger, interval_of

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Engine", "EngineError", "EngineStats", "Step"]

log = logging.getLogger(__name__)

SEQUENTIAL_RULE = "balance_sequential"
REPLAY_RULE = "data_replayed"
SMOOTH_RULE = "data_synthetic"
EXACT_RULE = "exact_balance"


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
    seasonal: bool = False  # the meter has seasonal `roles:` (its role is judged at every evaluation)


@dataclass(slots=True)
class _SiteState:
    site: Site
    rules: RuleSet
    meters: dict[str, _MeterState]
    counting: CounterPlan
    balance: _BalancePlan
    alerts: dict[str, AlertTrack] = field(default_factory=dict)
    cusum: CusumState = field(default_factory=CusumState)
    cusum_params: CusumParams | None = None
    seq_next: int | None = None  # index (in sequential intervals) of the next one to judge
    seq_block: int | None = None  # interval index where the block being joined starts (a steady boundary)
    lag_fit: tuple[tuple[float, float, float], ...] = ()  # per transit lag (minutes): weight, mean, mean square
    warm_log: tuple[tuple[tuple[float, ...], float], ...] = ()  # warm-up blocks: deficit per lag, hours
    events_seen: tuple[int, ...] = ()  # per meter: counter resets and swaps seen by the sequential test
    last_balance_k: int | None = None
    watch_since: float | None = None
    maintenance: list[MaintenanceWindow] = field(default_factory=list)
    quality: QualityPlan | None = None
    windows: tuple[_WindowPlan, ...] = ()
    gap_s: float = 600.0
    incidents: dict[IncidentKind, Episode] = field(default_factory=dict)
    outages: dict[str, Alert] = field(default_factory=dict)  # outage firings not yet an incident (`await_outages`)
    claimed: list[MaintenanceWindow] = field(default_factory=list)  # declared during an incident: not allowed
    claim_keys: set[tuple[str, str, str]] = field(default_factory=set)
    held_since: float | None = None  # data time of the first evaluation whose write failed
    # while held: data quality as it was at each step (times, and rule → finding), for the catch-up to judge by
    held_at: list[float] = field(default_factory=list)
    held_quality: list[dict[str, Finding]] = field(default_factory=list)
    sides: tuple[list[_MeterState], list[_MeterState]] | None = None  # extraction, reinjection: until a role changes
    accuracy: tuple[float, float] = (1.0, 1.0)  # the sides' worst meter accuracy %, taken with the sides
    prints: SitePrints | None = None  # forensic state (None: every forensic rule is off)
    year: YearLedger | None = None  # this year's extraction (permit quota), restored from the store
    rate_m3h: float | None = None  # extraction's mean rate over the newest complete interval


class _Snapshot:
    """The evaluation state of a site, put back when the evaluation's write fails. A plain class with slots:
    one is made per site and evaluation, and compiled, a frozen dataclass is made through Python."""

    __slots__ = ("alerts", "cusum", "events_seen", "lag_fit", "last_balance_k", "seq_block", "seq_next",
                 "warm_log", "watch_since", "year")

    def __init__(self, st: _SiteState) -> None:
        self.alerts: dict[str, AlertTrack] = dict(st.alerts)
        self.cusum: CusumState = st.cusum
        self.seq_next: int | None = st.seq_next
        self.seq_block: int | None = st.seq_block
        self.lag_fit: tuple[tuple[float, float, float], ...] = st.lag_fit
        self.warm_log: tuple[tuple[tuple[float, ...], float], ...] = st.warm_log
        self.events_seen: tuple[int, ...] = st.events_seen
        self.last_balance_k: int | None = st.last_balance_k
        self.watch_since: float | None = st.watch_since
        self.year: YearLedger | None = st.year

    def restore(self, st: _SiteState) -> None:
        st.alerts, st.cusum, st.seq_next = self.alerts, self.cusum, self.seq_next
        st.seq_block, st.lag_fit, st.warm_log = self.seq_block, self.lag_fit, self.warm_log
        st.events_seen, st.last_balance_k, st.watch_since = self.events_seen, self.last_balance_k, self.watch_since
        st.year = self.year


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
        self._language = language  # given: kept across `reconfigure`; None: the settings' language
        self.language = language or settings.language
        self.step_s = settings.evaluate_every.total_seconds()
        self.stats = EngineStats()
        self._lock = threading.RLock()
        self._sites: dict[str, _SiteState] = {}
        self._written: list[tuple[Alert, float | None]] = []  # this site's evaluation, until it is stored
        self._clears: list[tuple[str, float | None]] = []
        self._ledgers: list[YearLedger] = []
        self._store_problem: str | None = None
        self._keep = keep
        # per RuleSet id: the set planned for the hot path (`_Plans`, which keeps the set so its id is not reused)
        self._plans: dict[int, _Plans] = {}
        for site in sites:
            self._sites[site.id] = self._new_site(site, settings.resolve(site.id, site.district))
        self._restore()

    def _retention(self, rs: RuleSet) -> int:
        """Intervals a meter's ledger keeps: the longest window, its transit lag and a margin."""
        longest = max([w.window for w in rs.balance.windows] + [rs.sequential.interval, rs.sequential.max_block,
                                                                 rs.balance.transit_lag])
        retention = math.ceil((longest + rs.balance.transit_lag).total_seconds() / self.step_s) + 4
        if self._keep is not None:  # reports read a whole day (and its margins) back from the ledger
            retention = max(retention, math.ceil(self._keep.total_seconds() / self.step_s) + 4)
        return retention

    def _new_meter(self, m: Meter, rs: RuleSet) -> _MeterState:
        return _MeterState(m, MeterTrack(m.id, m.role), Ledger(self.step_s, self._retention(rs)),
                           seasonal=bool(m.roles))

    def _new_site(self, site: Site, rs: RuleSet) -> _SiteState:
        plans = self._plan(rs)
        st = _SiteState(site, rs, {m.id: self._new_meter(m, rs) for m in site.meters}, plans.counting,
                        plans.balance, maintenance=list(rs.maintenance))
        self._set_rules(st, rs)
        st.cusum = cusum_start(rs.sequential.baseline_bound_factor * sum(self._accuracy(st), 0.0))
        return st

    def _plan(self, rs: RuleSet) -> _Plans:
        """The rule set planned for the hot path: one plan per rule set (shared by a district's sites)."""
        if id(rs) not in self._plans:
            seq = rs.sequential
            self._plans[id(rs)] = _Plans(
                rs, QualityPlan.of(rs.quality), CusumParams(
                    seq.drift_pct, seq.threshold_pct_h, seq.warmup.total_seconds() / 3600,
                    seq.learn_half_life.total_seconds() / 3600, seq.max_drift_pct_day),
                tuple(_WindowPlan.of(w, self.step_s) for w in rs.balance.windows), ForensicPlan.of(rs.forensic),
                CounterPlan(rs.counters), _BalancePlan.of(rs.balance, self.step_s))
        return self._plans[id(rs)]

    def _set_rules(self, st: _SiteState, rs: RuleSet) -> None:
        p = self._plan(rs)
        st.rules, st.quality, st.gap_s, st.windows = rs, p.quality, rs.gap_tolerance.total_seconds(), p.windows
        st.counting, st.balance, st.cusum_params = p.counting, p.balance, p.cusum
        if not p.forensic.any or st.prints is None or st.prints.plan != p.forensic:  # a reload keeps them if unchanged
            st.prints = SitePrints(p.forensic) if p.forensic.any else None

    def reconfigure(self, sites: Sequence[Site], settings: RulesSettings) -> None:
        """Take a new configuration while running (a config reload): added sites start empty (their open
        alerts and incidents come back from the store), removed ones are dropped, and every kept site keeps its
        windows, detectors, alerts and incidents — per meter too: a kept meter keeps its ledger and data-quality
        state (a new record — serial, calibration certificate — changes no measurement), a changed one starts
        afresh. `evaluate_every` (the ledgers' interval) cannot change here."""
        if settings.evaluate_every != self.settings.evaluate_every:
            raise EngineError("rules.evaluate_every cannot change while running (the ledgers' interval)")
        with self._lock:
            kept: dict[str, _SiteState] = {}
            self._plans.clear()  # every site takes the new settings' rule sets below
            for site in sites:
                rs = settings.resolve(site.id, site.district)
                st = self._sites.get(site.id)
                if st is None:
                    kept[site.id] = self._new_site(site, rs)
                    continue
                if st.site != site:
                    st.meters = {m.id: (_renewed(ms, m) if (ms := st.meters.get(m.id)) is not None
                                        and _instrument(ms.meter) == _instrument(m)
                                        else self._new_meter(m, rs)) for m in site.meters}
                    st.sides = None  # the sides list the meters' states: taken afresh
                    st.site = site
                if st.rules != rs:
                    st.maintenance = [w for w in st.maintenance if w not in st.rules.maintenance] + [
                        w for w in rs.maintenance if w not in st.maintenance]
                    for ms in st.meters.values():
                        ms.ledger.retention = max(ms.ledger.retention, self._retention(rs))
                    self._set_rules(st, rs)
                kept[site.id] = st
            added = kept.keys() - self._sites.keys()
            self._sites = kept
            self.settings = settings
            self.language = self._language or settings.language
            if added:
                self._restore(added)

    # ---------------------------------------------------------------- restore
    def _restore(self, only: Collection[str] | None = None) -> None:
        """Open alerts, incidents and maintenance claims from the store (of the `only` sites: all when None)."""
        def get(site: str) -> _SiteState | None:
            return self._sites.get(site) if only is None or site in only else None

        for a in self.store.open_alerts():
            st = get(a.site)
            if st is None:
                continue
            st.alerts[a.rule] = AlertTrack(AlertState(a.state.value), a.id, a.starts_at.timestamp(),
                                           self.store.clear_since(a.id))
        firing = [a for a in self.store.open_alerts() if a.state is AlertPhase.FIRING]
        firing_ids = frozenset(a.id for a in firing)
        linked: set[str] = set()
        for inc in self.store.latest_incidents():
            st = get(inc.site)
            if st is not None:
                st.incidents[inc.kind] = restore_episode(inc, firing_ids)
                linked.update(inc.alert_ids)
        for a in firing:  # outage firings that had not lasted long enough for an incident: still waiting
            st = get(a.site)
            if st is not None and a.rule in OUTAGES and a.id not in linked:
                st.outages[a.id] = a
        for y in self.store.year_ledgers():  # oldest year first: the newest stays
            st = get(y.site)
            if st is not None:
                st.year = y
        for inc in self.store.incidents():
            st = get(inc.site)
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

    def ingest_columns(self, site: list[str], meter: list[str], ts: list[float], rate: list[float | None],
                       total: list[float | None], signal: list[float | None], error: list[int | None], start: int,
                       stop: int, volume: list[float | None] | None = None,
                       period: list[float | None] | None = None) -> None:
        """Rows start … stop−1 of parallel columns (epoch seconds): the bulk path of replay and backfill;
        `volume` and `period` (interval volumes) when the rows hold any. Indexed lists, each row one direct
        call: compiled, that is a native call with unboxed times, where a zip of slices makes a tuple a row."""
        with self._lock:  # compiled, `self._ingest_one(…)` is a native call: a bound method taken first is not
            if volume is not None and period is not None:
                for i in range(start, stop):
                    self._ingest_one(site[i], meter[i], ts[i], rate[i], total[i], signal[i], error[i], volume[i],
                                     period[i])
            else:
                for i in range(start, stop):
                    self._ingest_one(site[i], meter[i], ts[i], rate[i], total[i], signal[i], error[i])

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
        q = st.quality
        assert q is not None
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
                dt = ts - ms.total_ts
                c = st.counting
                if rebase:
                    step = rebase_step(tr.last_rate, rate, dt, st.gap_s, c)
                    note_bridged(tr, ts, step.volume_m3)
                elif dt <= st.gap_s or not c.judge_gaps:
                    step = classify_step(ms.ref_total, total, dt, st.gap_s, c)
                else:
                    step = self._judge_gap(st, ms, ts, rate, total)
                step_kind, volume = step.kind, step.volume_m3
                if rate is not None and rate < -q.reverse_m3h:
                    volume = None  # reverse flow runs on the other accumulator: forward volume unknown
                ms.ledger.add(ms.total_ts, ts, volume)
            if step_kind is not StepKind.NOISE:
                ms.ref_total = total
            ms.total_ts = ts
        elif tr.last_ts is not None:
            ms.ledger.mark_unknown(tr.last_ts, ts)  # no totalizer: volume unknown (no rate integration)
        if st.prints is not None:
            observe_reading(st.prints, meter_id, ts, rate, total)
        observe(tr, ts, rate, total, signal, error, step_kind)
        if tr.flat_since is not None and tr.frozen_candidate(q.frozen_min_m3):
            start = tr.flat_since if ms.unknown_until is None else max(tr.flat_since, ms.unknown_until)
            ms.ledger.mark_unknown(start, ts)
            ms.unknown_until = ts

    def _judge_gap(self, st: _SiteState, ms: _MeterState, ts: float, rate: float | None,
                   total: float) -> CounterStep:
        """The counter step to `total` across a gap, judged by max flow and the meter's rate either side, and a
        jump there noted as a rescaled meter (the totalizer no longer counts what it counted: a meter change)."""
        c, plan = st.rules.counters, st.counting
        assert ms.total_ts is not None and ms.ref_total is not None
        dt = ts - ms.total_ts
        # the rate bounds the step only when the meter ran on either side: stopped at both ends, it may have
        # run in between at any rate (then max flow alone judges)
        higher = max((r for r in (ms.track.last_rate, rate) if r is not None), default=None)
        running = higher is not None and higher > st.rules.quality.running_m3h
        gap = GapCheck(higher if running else None, c.gap_rate_margin, c.gap_rate_within.total_seconds())
        step = classify_step(ms.ref_total, total, dt, st.gap_s, plan, gap)
        if step.kind is StepKind.JUMP:
            self.stats.changes += 1
            note_change(ms.track, MeterChange(st.site.id, ms.meter.id, datetime.fromtimestamp(ts, UTC),
                                              ChangeKind.RESCALED, "total_m3", ms.ref_total, total), ts)
        return step

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
        snapshot = _Snapshot(st)
        self._written, self._clears, self._ledgers = [], [], []
        site_alerts = self._evaluate_site(st, t)
        now = datetime.fromtimestamp(t, self.tz)
        settings = self.settings.incidents
        outages, handed = await_outages(st.outages, site_alerts, st.incidents, now, settings.outage_after)
        episodes, updates = advance_incidents(
            st.incidents, handed, _Volumes(self, st, interval_of(t, self.step_s)), now, settings,
            site=(st.site.id, st.site.name, st.site.district), tz=self.tz)
        try:
            self.store.record_evaluation(Evaluation(self._written, self._clears,
                                                    [(u.incident, u.changes) for u in updates], self._ledgers))
        except StoreError:
            snapshot.restore(st)
            raise
        st.incidents, st.outages = episodes, outages
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
        for ms in st.meters.values():
            if not ms.seasonal:
                continue
            role = role_at(ms.meter, datetime.fromtimestamp(t, UTC), self.tz)
            if role is not ms.track.role:
                ms.track.role = role
                st.sides = None
        events.extend(self._evaluate_quality(st, t))
        events.extend(self._evaluate_forensic(st, t))
        events.extend(self._evaluate_balance(st, t))
        events.extend(self._evaluate_sequential(st))
        events.extend(self._evaluate_compliance(st, t))
        return events

    # ---------------------------------------------------------------- compliance
    def _fold_year(self, st: _SiteState, t: float) -> None:
        """Fold the extraction of the complete intervals not yet folded into the site's year ledger."""
        ext = self._sides(st)[0]
        last = [ms.track.last_ts for ms in ext]
        firsts = [ms.track.first_ts for ms in ext]
        if not ext or any(x is None for x in last + firsts):
            return
        kb = min(interval_of(min(x for x in last if x is not None), self.step_s), interval_of(t, self.step_s))
        oldest = kb - min(ms.ledger.retention for ms in ext) + 1
        first_k = math.ceil(max(x for x in firsts if x is not None) / self.step_s)
        y = st.year
        if y is None or (y.through is None and y.since is None):
            year = datetime.fromtimestamp(max(first_k, oldest) * self.step_s, self.tz).year
            y = YearLedger(st.site.id, year)
        ka = max(oldest, first_k) if y.through is None else max(oldest, math.ceil(y.through / self.step_s))
        if (interval_of(t, self.step_s) - kb) * self.step_s > st.gap_s:
            st.rate_m3h = None  # the extraction meters went quiet: their last rate says nothing now
        if ka >= kb:
            return
        rows = []
        for k in range(ka, kb):
            e, ok = self._sum(ext, k, k + 1)
            rows.append((k * self.step_s, e, ok))
        moved = fold_year(y, rows, self.step_s, self.tz)
        st.year = moved[-1]
        e, ok = rows[-1][1], rows[-1][2]
        st.rate_m3h = e * 3600.0 / self.step_s if ok else None
        self._ledgers.extend(moved)

    def _evaluate_compliance(self, st: _SiteState, t: float) -> list[Alert]:
        out: list[Alert] = []
        c = st.rules.compliance
        clear_for = c.clear_for.total_seconds()
        today = datetime.fromtimestamp(t, self.tz).date()
        for ms in st.meters.values():
            cal = ms.meter.record.calibration if ms.meter.record is not None else None
            if cal is None:
                continue
            rule = f"{CALIBRATION_PREFIX}{ms.meter.id}"
            late = calibration_overdue(cal.next_due, today)
            cond = Condition.ACTIVE if late > 0 else Condition.CLEAR
            ev = {"rule": rule, "meters": [ms.meter.id], "meter": ms.meter.id, "certificate": cal.number,
                  "calibrated": cal.calibrated.isoformat(), "next_due": cal.next_due.isoformat(),
                  "days_overdue": max(late, 0)}
            out.extend(self._advance(st, rule, _CALIBRATION_INFO, cond, t, 0.0, 0.0, partial(dict, ev)))
        permit = st.site.permit
        if permit is None:
            return out
        self._fold_year(st, t)
        acc_e = self._accuracy(st)[0]
        rate = st.rate_m3h
        base = {"permit": permit.number, "status": permit.status.value, "max_rate_m3h": permit.max_rate_m3h}
        cond = over_rate(rate, permit.max_rate_m3h, acc_e)
        ev_rate = {"rule": "over_rate", **base, "rate_m3h": None if rate is None else round(rate, 2),
                   "limit_m3h": round(rate_limit_m3h(permit.max_rate_m3h, acc_e), 2), "accuracy_pct": acc_e,
                   "window": format_duration(timedelta(seconds=self.step_s))}
        out.extend(self._advance(st, "over_rate", _COMPLIANCE_INFO["over_rate"], cond, t,
                                 c.over_rate_hold.total_seconds(), clear_for, partial(dict, ev_rate)))
        y = st.year
        if y is not None and y.since is not None:
            cond, reason = quota_state(y, permit.annual_quota_m3, self.tz, c.quota_warn_pct,
                                       c.quota_min_span.total_seconds())
            out.extend(self._advance(st, "quota_projection", _COMPLIANCE_INFO["quota_projection"], cond, t, 0.0,
                                     clear_for, partial(_quota_evidence, y, permit.annual_quota_m3, reason, self.tz)))
        ext = self._sides(st)[0]
        recent = st.rules.quality.offline_after.total_seconds()
        rates = [ms.track.last_rate for ms in ext if ms.track.last_ts is not None and t - ms.track.last_ts <= recent]
        pumping = permit_pumping([*rates, rate], st.rules.quality.running_m3h)
        now_rate = max((r for r in [*rates, rate] if r is not None), default=None)
        ev_pump = {**base, "rate_m3h": None if now_rate is None else round(now_rate, 2),
                   "valid_from": permit.valid_from.isoformat(), "valid_to": permit.valid_to.isoformat()}
        hold = c.pumping_hold.total_seconds()
        sealed = pumping if permit.status.must_be_dry else Condition.CLEAR
        out.extend(self._advance(st, "sealed_pumping", _COMPLIANCE_INFO["sealed_pumping"], sealed, t, hold,
                                 clear_for, partial(dict, {"rule": "sealed_pumping", **ev_pump})))
        expired = pumping if today > permit.valid_to else Condition.CLEAR
        out.extend(self._advance(st, "permit_expired", _COMPLIANCE_INFO["permit_expired"], expired, t, hold,
                                 clear_for, partial(dict, {"rule": "permit_expired", **ev_pump})))
        return out

    def _evaluate_quality(self, st: _SiteState, t: float) -> list[Alert]:
        q = st.quality
        assert q is not None
        tracks = [ms.track for ms in st.meters.values()]
        out: list[Alert] = []
        grace = st.watch_since is not None and t - st.watch_since <= q.offline_after
        alerts = st.alerts
        unseen = any(tr.last_ts is None for tr in tracks)
        for name, rule in QUALITY_RULES.items():
            if grace and unseen and name in _SILENCE_RULES:
                continue  # a meter without a reading since start (no history): not silent before offline_after
            held = self._held_finding(st, name, t) if st.held_at else None
            finding = held or rule.detect(tracks, t, q)
            if finding.condition is not Condition.ACTIVE and name not in alerts:
                continue  # nothing pending or firing, nothing to start
            out.extend(self._advance(st, name, _QUALITY_INFO[name], finding.condition, t, rule.hold(q),
                                     q.clear_for, partial(_finding_evidence, finding, self.tz)))
        return out

    def _evaluate_forensic(self, st: _SiteState, t: float) -> list[Alert]:
        sp = st.prints
        if sp is None:
            return []
        out: list[Alert] = []
        if sp.plan.exact:
            self._note_hours(st, sp, t)
        for rule, on, detect in ((REPLAY_RULE, sp.plan.replay, replay_finding),
                                 (SMOOTH_RULE, sp.plan.smooth, smooth_finding),
                                 (EXACT_RULE, sp.plan.exact, exact_finding)):
            finding = detect(sp, t) if on else None
            if finding is None or (finding.condition is not Condition.ACTIVE and rule not in st.alerts):
                continue
            out.extend(self._advance(st, rule, _FORENSIC_INFO[rule], finding.condition, t, 0.0, sp.plan.window_s,
                                     partial(_finding_evidence, finding, self.tz)))
        return out

    def _note_hours(self, st: _SiteState, sp: SitePrints, t: float) -> None:
        """Hand every whole hour both sides have completed since the last call to the exact-balance check."""
        kb = self._horizon_k(st, interval_of(t, self.step_s))
        if kb is None:
            return
        m = max(1, round(3600 / self.step_s))
        last = kb // m  # hours j with (j + 1)·m ≤ kb are complete
        if sp.next_hour is None:
            sp.next_hour = last
        ext, rei = self._sides(st)
        while sp.next_hour < last:
            j = sp.next_hour
            sp.next_hour += 1
            a, b = j * m * self.step_s, (j + 1) * m * self.step_s
            e, e_ok = self._sum(ext, j * m, (j + 1) * m)
            r, r_ok = self._sum(rei, j * m, (j + 1) * m)
            stable = self._stable(st, a, b)
            note_hour(sp, b, e, r, e_ok and r_ok and stable)

    def _sides(self, st: _SiteState) -> tuple[list[_MeterState], list[_MeterState]]:
        """The site's extraction and reinjection meters (kept until a meter's role changes; not to be altered)."""
        if st.sides is None:
            ext = [ms for ms in st.meters.values() if ms.track.role is Role.EXTRACTION]
            rei = [ms for ms in st.meters.values() if ms.track.role is Role.REINJECTION]
            st.sides = ext, rei
            st.accuracy = (max((ms.meter.accuracy_pct for ms in ext), default=1.0),
                           max((ms.meter.accuracy_pct for ms in rei), default=1.0))
        return st.sides

    def _stable(self, st: _SiteState, a: float, b: float) -> bool:
        """No meter of the site changes its seasonal role over [a, b] (epoch seconds)."""
        seasonal = [ms.meter for ms in st.meters.values() if ms.seasonal]
        if not seasonal:
            return True
        a_dt, b_dt = datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC)
        return all(roles_constant(m, a_dt, b_dt, self.tz) for m in seasonal)

    def _horizon_k(self, st: _SiteState, until_k: int | None = None) -> int | None:
        """The first interval not yet complete on both sides (at most `until_k`: not after the evaluation)."""
        ext, rei = self._sides(st)
        if not ext or not rei:
            return None
        oldest = math.inf
        for ms in (*ext, *rei):
            last = ms.track.last_ts
            if last is None:
                return None
            oldest = min(oldest, last)
        k = interval_of(oldest, self.step_s)
        return k if until_k is None else min(k, until_k)

    def _sum(self, meters: list[_MeterState], ka: int, kb: int) -> tuple[float, bool]:
        total, complete = 0.0, True
        a = ka * self.step_s
        for ms in meters:
            volume, known = ms.ledger.total(ka, kb)
            total += volume
            first = ms.track.first_ts
            complete = complete and known and first is not None and first <= a
        return total, complete

    def _side(self, meters: list[_MeterState], ka: int, kb: int) -> tuple[list[float], bool]:
        """Per interval ka … kb−1, the side's summed volume; whether every meter knew every one."""
        vols = [0.0] * max(0, kb - ka)
        ok = True
        for ms in meters:
            first = ms.track.first_ts
            v, known = ms.ledger.volumes(ka, kb)
            for i in range(len(vols)):  # compiled, a native loop: `map(add, …)` calls Python for each
                vols[i] += v[i]
            ok = ok and first is not None and first <= ka * self.step_s and known
        return vols, ok

    def _transit(self, st: _SiteState, ext: list[_MeterState], ka: int, kb: int) -> float | None:
        """Water legitimately in transit over [ka, kb): the extra water on its way (see `transit_allowance`)
        plus the refilling of pipes that drained during a stop before the window (`refill_credit`); None
        when data was lost around that stop (what drained is unknown, so is the window's verdict)."""
        lag_k = st.balance.lag_k
        # the longest lag configured, and the site's own: after a stop the water of the last minutes has
        # already arrived, which the longest lag alone would count as still on its way
        own = self._lag(st) * 60.0 / self.step_s
        moving = max(transit_allowance(self._sum(ext, kb - lag_k, kb)[0], self._sum(ext, ka - lag_k, ka)[0]),
                     transit_allowance(self._before(ext, kb, own), self._before(ext, ka, own)))
        rei = self._sides(st)[1]
        whole, part = math.floor(own), own - math.floor(own)
        firsts = [ms.track.first_ts for ms in ext + rei]
        if any(f is None for f in firsts):
            return moving
        # no further back than the site's data goes: before it, nothing is known to have drained
        since_k = math.ceil(max(f for f in firsts if f is not None) / self.step_s)
        lookback = st.balance.lookback_k
        look = min(lookback, ka - since_k - whole - 1)
        # read back an hour at a time: no stop in the last hour, nothing left to refill
        chunk = max(lag_k + 1, math.ceil(3600 / self.step_s))
        back = 0
        while back < look:
            back = min(look, back + chunk)
            if not self._stopped_at(ext, rei, ka - back, whole, part):
                break
        r, r_ok = self._side(rei, ka - back, ka)
        e, e_ok = self._side(ext, ka - back - whole - 1, ka)  # e[j + 1] is extraction `whole` before r[j]
        rest = 1.0 - part
        arriving = [rest * e[j + 1] + part * e[j] for j in range(len(r))]  # indexed: native when compiled
        began_before = bool(r) and look < lookback and stopped_interval(arriving[0], r[0])
        if began_before or (not (r_ok and e_ok) and any(map(stopped_interval, arriving, r))):
            return None  # the stop began before the data, or data was lost: what drained is unknown
        return moving + refill_credit(arriving, r)

    def _stopped_at(self, ext: list[_MeterState], rei: list[_MeterState], k: int, whole: int, part: float) -> bool:
        """Whether interval `k` is one of a stop, its arriving water being the extraction `whole` + `part`
        intervals before it (as `_transit` reads it)."""
        def at(meters: list[_MeterState], k: int) -> float:  # added up as `_side` adds them
            v = 0.0
            for ms in meters:
                v += ms.ledger.volume_at(k)
            return v

        return stopped_interval((1.0 - part) * at(ext, k - whole) + part * at(ext, k - whole - 1), at(rei, k))

    def _before(self, ext: list[_MeterState], k: int, lag: float) -> float:
        """Extraction over the `lag` intervals (a fraction allowed) before boundary `k`."""
        whole = math.floor(lag)
        out = self._sum(ext, k - whole, k)[0] if whole else 0.0
        if lag > whole:
            out += (lag - whole) * self._sum(ext, k - whole - 1, k - whole)[0]
        return out

    def _window_balance(self, st: _SiteState, ka: int, kb: int, threshold: float, clear_ratio: float,
                        min_m3: float, frozen: bool) -> tuple[Balance, Callable[[], dict[str, Any]]]:
        """One window's verdict and its evidence (made when asked); `frozen`: a meter's volume is unknown now
        (a frozen totalizer or reverse flow)."""
        ext, rei = self._sides(st)
        e, e_ok = self._sum(ext, ka, kb)
        r, r_ok = self._sum(rei, ka, kb)
        a, b = ka * self.step_s, kb * self.step_s
        stable = self._stable(st, a, b)
        overlapping = [m for m in st.maintenance if m.start.timestamp() < b and m.end.timestamp() > a]
        cap = sum((m.volume_cap_m3 for m in overlapping), 0.0)
        # the transit allowance can only lower the deficit: skip it when the window is clear without it
        clear_anyway = e > 0 and 100.0 * (e - r - cap) / e <= threshold * clear_ratio
        low_m3 = st.balance.low_load_fraction * min_m3
        transit = 0.0 if clear_anyway or e < low_m3 else self._transit(st, ext, ka, kb)
        bal = judge_balance(e, r, complete=e_ok and r_ok and stable and not frozen and transit is not None,
                            threshold_pct=threshold,
                            clear_ratio=clear_ratio, min_extracted_m3=min_m3, transit_allowance_m3=transit or 0.0,
                            maintenance_allowance_m3=cap, low_load_m3=low_m3)

        def evidence() -> dict[str, Any]:
            shown = self._transit(st, ext, ka, kb) if clear_anyway else bal.transit_allowance_m3
            shown_transit = 0.0 if shown is None else shown
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
        self._sides(st)
        return st.accuracy

    def _evaluate_balance(self, st: _SiteState, t: float) -> list[Alert]:
        kb = self._horizon_k(st, interval_of(t, self.step_s))
        if kb is None or kb == st.last_balance_k:
            return []
        st.last_balance_k = kb
        clear_ratio = st.balance.clear_ratio
        acc_e, acc_r = self._accuracy(st)
        ext, rei = self._sides(st)
        assert st.quality is not None
        min_m3 = st.quality.frozen_min_m3
        frozen = any(ms.track.frozen_candidate(min_m3) or ms.track.reverse_since is not None for ms in ext + rei)
        out = []
        for wp in st.windows:
            threshold = balance_threshold_pct(wp.threshold_pct, wp.accuracy_factor, acc_e, acc_r)
            bal, ev = self._window_balance(st, kb - wp.n, kb, threshold, clear_ratio, wp.min_extracted_m3, frozen)
            out.extend(self._advance(st, wp.name, wp.info, bal.condition, kb * self.step_s, wp.hold_s,
                                     wp.clear_for_s, partial(_window_evidence, wp.rule.window, ev)))
        return out

    def _evaluate_sequential(self, st: _SiteState) -> list[Alert]:
        """Judge the site's deficit block by block: a block runs from one steady boundary (both sides
        flowing for longer than the transit lag) to the next that closes at least one hour and
        `min_extracted_m3`, so stops, start-ups and pipe refills fall inside blocks and no hour with
        complete data is skipped; the water in transit is the extraction shifted by the site's learned lag."""
        seq = st.rules.sequential
        p = st.cusum_params
        if not seq.enabled or p is None or st.last_balance_k is None:
            return []
        m = max(1, round(seq.interval.total_seconds() / self.step_s))
        last_j = st.last_balance_k // m  # intervals j with (j+1)·m ≤ horizon are complete
        ext, rei = self._sides(st)
        meters = list(st.meters.values())
        if st.seq_next is None:
            # start at the first whole interval every meter covers: history back-filled before the first
            # evaluation (as far as the ledger keeps it) teaches the baseline at once
            firsts = [ms.track.first_ts for ms in ext + rei if ms.track.first_ts is not None]
            first_k = math.ceil(max(firsts) / self.step_s) if firsts else st.last_balance_k
            oldest_kept = st.last_balance_k - min(ms.ledger.retention for ms in ext + rei) + 1
            st.seq_next = -(-max(first_k, oldest_kept) // m)
            st.events_seen = tuple(ms.track.events for ms in meters)
        out: list[Alert] = []
        events_now = tuple(ms.track.events for ms in meters)
        lag_k = st.balance.lag_k
        max_block = max(m, math.ceil(seq.max_block.total_seconds() / self.step_s))
        acc_e, acc_r = self._accuracy(st)
        while st.seq_next < last_j:
            j = st.seq_next
            st.seq_next += 1
            ka, kb = j * m, (j + 1) * m
            if events_now != st.events_seen:  # meter reset or replacement: relearn, within the new meter's say
                changed = [ms for ms, a, b in zip(meters, events_now, st.events_seen, strict=False) if a != b]
                st.events_seen = events_now
                st.cusum = cusum_relearn(st.cusum, self._relearn_bound(st, changed, ka))
                st.seq_block, st.warm_log = None, ()
            if not self._stable(st, ka * self.step_s, kb * self.step_s):
                st.cusum = cusum_relearn(st.cusum, seq.baseline_bound_factor * (acc_e + acc_r))
                st.seq_block, st.warm_log = None, ()
                continue
            if not (self._sum(ext, ka, kb)[1] and self._sum(rei, ka, kb)[1]):
                st.seq_block = None  # data lost: the next block starts at a steady boundary
                continue
            if st.seq_block is None:
                if not self._steady(ext, rei, ka, lag_k):
                    continue
                st.seq_block = ka
            ks = st.seq_block
            if kb - ks > max_block:
                st.seq_block = None  # stopped (or unsteady) too long to join: start again when steady
                continue
            e = self._sum(ext, ks, kb)[0]
            if e < max(seq.min_extracted_m3, 1e-9) or not self._steady(ext, rei, kb, lag_k):
                continue  # join the next hour
            st.seq_block = kb
            a_s, b_s = ks * self.step_s, kb * self.step_s
            if any(mw.start.timestamp() < b_s and mw.end.timestamp() > a_s for mw in st.maintenance):
                continue
            shifted = self._shifted_extraction(st, ext, ks, kb, lag_k)
            if shifted is None:
                continue
            r = self._sum(rei, ks, kb)[0]
            lag_min = self._lag(st)
            e_in = shifted[lag_min]
            d_pct = 100.0 * (e_in - r) / e_in if e_in > 0 else 100.0 * (e - r) / e
            hours = (kb - ks) * self.step_s / 3600.0
            per_lag = tuple(100.0 * (x - r) / x if x > 0 else 0.0 for x in shifted)
            st.lag_fit = _fit_lags(st.lag_fit, per_lag, hours)
            warm = st.cusum.warm
            st.cusum = cusum_update(st.cusum, d_pct, hours, p)
            if not warm:  # learned from the warm-up's blocks as the lag now known shows them
                st.warm_log = (*st.warm_log, (per_lag, hours))
                if st.cusum.warm:
                    lag_min = self._lag(st)
                    st.cusum = cusum_learned(st.cusum, tuple((x[lag_min], h) for x, h in st.warm_log))
                    st.warm_log = ()
            cond = cusum_condition(st.cusum, p)
            c = st.cusum
            ev: dict[str, Any] = {"window": format_duration(timedelta(seconds=b_s - a_s)),
                  "window_start": iso(datetime.fromtimestamp(a_s, self.tz)),
                  "window_end": iso(datetime.fromtimestamp(b_s, self.tz)),
                  "extracted_m3": round(e, 3), "reinjected_m3": round(r, 3), "deficit_m3": round(e - r, 3),
                  "transit_lag_min": lag_min, "in_transit_change_m3": round(e - e_in, 3),
                  "deficit_pct": round(d_pct, 2), "baseline_pct": round(c.baseline_pct, 2),
                  "baseline_bounds_pct": [round(max(c.lo_pct, -100.0), 2), round(min(c.hi_pct, 100.0), 2)],
                  "baseline_bounded": c.bounded,
                  "threshold_pct": round(c.baseline_pct + p.drift_pct, 2),
                  "cusum_pct_h": round(c.s, 2), "cusum_threshold_pct_h": p.threshold_pct_h}
            info = _RuleInfo(AlertKind.DISCHARGE, seq.severity, "sequential")
            out.extend(self._advance(st, SEQUENTIAL_RULE, info,
                                     cond, kb * self.step_s, 0.0, 0.0, partial(dict, ev)))
        return out

    def _steady(self, ext: list[_MeterState], rei: list[_MeterState], k: int, lag_k: int) -> bool:
        """Both sides flowed in every interval of the transit lag (and one more) before boundary `k`: the pipes
        are full, the water on its way is the last lag's extraction."""
        e, e_ok = self._side(ext, k - lag_k - 1, k)
        r, r_ok = self._side(rei, k - lag_k - 1, k)
        return e_ok and r_ok and min(e) > 0 and min(r) > 0

    def _shifted_extraction(self, st: _SiteState, ext: list[_MeterState], ka: int, kb: int,
                            lag_k: int) -> list[float] | None:
        """Extraction over [ka, kb) shifted back by 0, 1, … minutes up to the transit lag (what reinjection
        should see with that lag); None when the data is incomplete."""
        vols, ok = self._side(ext, ka - lag_k - 1, kb)
        if not ok:
            return None
        step_min = self.step_s / 60.0
        cum = [0.0]
        for v in vols:
            cum.append(cum[-1] + v)
        n = kb - ka

        def at(x: float) -> float:  # cumulative extraction at fractional interval position x (from ka−lag_k−1)
            i = min(max(math.floor(x), 0), len(vols) - 1)
            return cum[i] + (x - i) * vols[i]

        base = lag_k + 1
        lag_max = st.balance.lag_max
        return [at(base + n - lag / step_min) - at(base - lag / step_min) for lag in range(lag_max + 1)]

    def _lag(self, st: _SiteState) -> int:
        """The site's transit lag in minutes: the one whose shifted extraction explains the reinjection best
        (least variance of the blocks' deficit); half the configured longest until enough is seen."""
        lag_max = st.balance.lag_max
        fits = [(sxx / sw - (sx / sw) ** 2, lag) for lag, (sw, sx, sxx) in enumerate(st.lag_fit) if sw >= 6.0]
        return min(fits)[1] if fits and len(st.lag_fit) == lag_max + 1 else lag_max // 2

    def _relearn_bound(self, st: _SiteState, changed: list[_MeterState], k: int) -> float:
        """How far a meter change may move the baseline: each changed meter's accuracy times its share of its
        side's flow over the last day (an even share when unknown)."""
        day = math.ceil(86400 / self.step_s)
        bound = 0.0
        for ms in changed:
            side = [x for x in st.meters.values() if x.track.role is ms.track.role]
            own = self._sum([ms], k - day, k)[0]
            total = self._sum(side, k - day, k)[0]
            share = own / total if total > 0 else 1.0 / max(1, len(side))
            bound += ms.meter.accuracy_pct * min(1.0, share)
        return bound

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

    def volumes_since(self, site_id: str, start: datetime) -> dict[str, Any] | None:
        """The site's volumes from `start` to the end of its complete data (m³ drained today, or since an
        incident began): extracted, reinjected, drained (their difference) m³ and %, whether every meter
        covered it (not when `start` is older than the ledgers keep: then from the oldest interval kept),
        and `as_of`, the end of that data. None before both sides have reported."""
        with self._lock:
            st = self._site(site_id)
            kb = self._horizon_k(st)
            if kb is None:
                return None
            ka = interval_of(start.timestamp(), self.step_s)
            oldest = max((ms.ledger.oldest for ms in st.meters.values() if ms.ledger.oldest is not None),
                         default=kb)
            kept, ka = ka >= oldest, max(ka, oldest)
            kb = max(ka, kb)  # nothing complete since `start` yet: nothing drained as of `start`
            ext, rei = self._sides(st)
            e, e_ok = self._sum(ext, ka, kb) if kb > ka else (0.0, True)
            r, r_ok = self._sum(rei, ka, kb) if kb > ka else (0.0, True)
        return {"extracted_m3": round(e, 3), "reinjected_m3": round(r, 3), "drained_m3": round(e - r, 3),
                "drained_pct": round(100.0 * (e - r) / e, 2) if e > 0 else None,
                "complete": kept and e_ok and r_ok,
                "from": iso(datetime.fromtimestamp(ka * self.step_s, self.tz)),
                "as_of": iso(datetime.fromtimestamp(kb * self.step_s, self.tz))}

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

    def compliance(self, site_id: str) -> dict[str, Any]:
        """A site's permit standing: the permit, this year's extraction against the quota (used and
        projected), the extraction's rate peaks (newest complete interval, the last 24 h of the ledger, the
        year) and the compliance alerts pending or firing. Without a permit only `permit: None` and the
        alerts (calibration reminders) are meaningful."""
        with self._lock:
            st = self._site(site_id)
            permit, y = st.site.permit, st.year
            ext = self._sides(st)[0]
            kb = interval_of(y.through, self.step_s) if y is not None and y.through is not None else None
            peak_24h: tuple[float, float] | None = None
            if kb is not None and ext:
                for k in range(kb - min(round(86400 / self.step_s), min(ms.ledger.retention for ms in ext)), kb):
                    e, ok = self._sum(ext, k, k + 1)
                    rate = e * 3600.0 / self.step_s
                    if ok and (peak_24h is None or rate > peak_24h[0]):
                        peak_24h = (rate, k * self.step_s)
            alerts = {rule: tr.state.value for rule, tr in st.alerts.items()
                      if rule in COMPLIANCE_RULES or rule.startswith(CALIBRATION_PREFIX)}
            current = st.rate_m3h

        def at(ts: float | None) -> str | None:
            return None if ts is None else iso(datetime.fromtimestamp(ts, self.tz))

        year: dict[str, Any] | None = None
        if y is not None and y.since is not None:
            projected = project_year(y, self.tz)
            quota = permit.annual_quota_m3 if permit is not None else None
            year = {"year": y.year, "extracted_m3": round(y.extracted_m3, 3), "since": at(y.since),
                    "through": at(y.through), "unknown_h": round(y.unknown_s / 3600.0, 2),
                    "annual_quota_m3": quota,
                    "used_pct": None if quota is None else round(100.0 * y.extracted_m3 / quota, 2),
                    "projected_m3": None if projected is None else round(projected, 1),
                    "projected_pct": None if projected is None or quota is None
                    else round(100.0 * projected / quota, 2)}
        limit = None if permit is None else round(rate_limit_m3h(permit.max_rate_m3h, self._accuracy(st)[0]), 2)
        return {
            "site": site_id,
            "permit": None if permit is None else permit.model_dump(mode="json"),
            "valid": None if permit is None or y is None or y.through is None
            else permit.valid_on(datetime.fromtimestamp(y.through, self.tz).date()),
            "year": year,
            "rates": {"max_rate_m3h": None if permit is None else permit.max_rate_m3h, "limit_m3h": limit,
                      "current_m3h": None if current is None else round(current, 2),
                      "peak_24h_m3h": None if peak_24h is None else round(peak_24h[0], 2),
                      "peak_24h_at": None if peak_24h is None else at(peak_24h[1]),
                      "peak_year_m3h": None if y is None or y.peak_at is None else round(y.peak_rate_m3h, 2),
                      "peak_year_at": None if y is None else at(y.peak_at)},
            "alerts": alerts,
        }

    def alert_states(self, site_id: str) -> dict[str, AlertState]:
        with self._lock:
            return {rule: tr.state for rule, tr in self._site(site_id).alerts.items()}


class _Volumes:
    """One site's ledgers as the incident tracker reads them (`rules.incidents.SiteVolumes`)."""

    def __init__(self, engine: Engine, st: _SiteState, until_k: int) -> None:
        self._engine, self._st, self._until_k = engine, st, until_k
        self.step_s = engine.step_s
        self.baseline_pct = st.cusum.baseline_pct if st.cusum.warm else 0.0
        self.drift_pct = st.rules.sequential.drift_pct
        self.transit_k = st.balance.lag_k
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


def _fit_lags(fit: tuple[tuple[float, float, float], ...], residuals: tuple[float, ...], hours: float,
              keep: float = 0.99) -> tuple[tuple[float, float, float], ...]:
    """Per candidate lag, the decaying weight, sum and sum of squares of the blocks' deficit ratio (afresh
    when the candidates changed with `transit_lag`)."""
    old = fit if len(fit) == len(residuals) else ((0.0, 0.0, 0.0),) * len(residuals)
    return tuple((keep * sw + hours, keep * sx + hours * x, keep * sxx + hours * x * x)
                 for (sw, sx, sxx), x in zip(old, residuals, strict=True))


def _instrument(m: Meter) -> Meter:
    """A meter as far as its measurements go: its record (serial, calibration certificate) left out."""
    return m if m.record is None else m.model_copy(update={"record": None})


def _renewed(ms: _MeterState, m: Meter) -> _MeterState:
    """A kept meter's state under its new configuration (a new record)."""
    ms.meter, ms.seasonal = m, bool(m.roles)
    if not ms.seasonal:
        ms.track.role = m.role  # a seasonal one's is judged at the next evaluation
    return ms


def _claim_key(start: datetime, end: datetime, reason: str) -> tuple[str, str, str]:
    return (iso(start.astimezone(UTC)), iso(end.astimezone(UTC)), reason)


def _value(x: Any) -> float | None:
    """A DataFrame cell as a float, None for a missing one (NaN or None)."""
    return None if x is None or x != x else float(x)


_INACTIVE = AlertTrack()
_HELD_QUALITY_MAX = 10_000  # notes kept per held site (a week of 1-minute steps is 10 080)
_FORENSIC_INFO = {r: _RuleInfo(AlertKind.DATA_QUALITY, Severity.HIGH, r) for r in (REPLAY_RULE, SMOOTH_RULE,
                                                                                  EXACT_RULE)}
_COMPLIANCE_INFO = {
    "over_rate": _RuleInfo(AlertKind.COMPLIANCE, Severity.HIGH, "compliance"),
    "quota_projection": _RuleInfo(AlertKind.COMPLIANCE, Severity.WARNING, "compliance"),
    "sealed_pumping": _RuleInfo(AlertKind.COMPLIANCE, Severity.CRITICAL, "compliance"),
    "permit_expired": _RuleInfo(AlertKind.COMPLIANCE, Severity.HIGH, "compliance"),
}
_CALIBRATION_INFO = _RuleInfo(AlertKind.COMPLIANCE, Severity.INFO, "compliance")
_QUALITY_INFO = {name: _RuleInfo(AlertKind(r.kind), r.severity, name) for name, r in QUALITY_RULES.items()}
_SILENCE_RULES = frozenset({"meter_offline", "reinjection_silent"})
"""Rules that judge a meter's silence: skipped for meters not yet heard within `offline_after` of the start."""


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


def _quota_evidence(y: YearLedger, quota_m3: float, reason: str | None, tz: tzinfo) -> dict[str, Any]:
    projected = project_year(y, tz)
    return {"rule": "quota_projection", "year": y.year, "extracted_m3": round(y.extracted_m3, 1),
            "annual_quota_m3": quota_m3, "used_pct": round(100.0 * y.extracted_m3 / quota_m3, 2),
            "projected_m3": None if projected is None else round(projected, 1),
            "projected_pct": None if projected is None else round(100.0 * projected / quota_m3, 2),
            "reason": reason, "since": iso(datetime.fromtimestamp(y.since or 0.0, tz)),
            "through": iso(datetime.fromtimestamp(y.through or 0.0, tz)),
            "unknown_h": round(y.unknown_s / 3600.0, 2)}


def _window_evidence(window: timedelta, ev: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return {"window": format_duration(window), **ev()}


def _window_rule(w: WindowRule) -> str:
    return f"balance_{w.name}"


@dataclass(frozen=True, slots=True)
class _WindowPlan:
    """A balance window planned for the hot path: its intervals, alert rule, seconds."""

    rule: WindowRule
    n: int  # intervals
    name: str
    info: _RuleInfo
    hold_s: float
    clear_for_s: float
    threshold_pct: float
    accuracy_factor: float
    min_extracted_m3: float

    @classmethod
    def of(cls, w: WindowRule, step_s: float) -> _WindowPlan:
        return cls(w, max(1, math.ceil(w.window.total_seconds() / step_s)), _window_rule(w),
                   _RuleInfo(AlertKind.DISCHARGE, w.severity, "balance"), w.hold.total_seconds(),
                   w.clear_for.total_seconds(), w.threshold_pct, w.accuracy_factor, w.min_extracted_m3)


@dataclass(frozen=True, slots=True)
class _Plans:
    """One rule set planned for the hot path (every part frozen)."""

    rules: RuleSet
    quality: QualityPlan
    cusum: CusumParams
    windows: tuple[_WindowPlan, ...]
    forensic: ForensicPlan
    counting: CounterPlan
    balance: _BalancePlan


@dataclass(frozen=True, slots=True)
class _BalancePlan:
    """`rules.balance` for the hot path: the lags in intervals and minutes (a settings model's attributes are
    read through Python, a plan's natively when compiled)."""

    clear_ratio: float
    low_load_fraction: float
    lag_k: int  # the longest transit lag, in intervals (rounded up)
    lag_max: int  # the same in whole minutes
    lookback_k: int  # how far back a refill after a stop is looked for, in intervals

    @classmethod
    def of(cls, b: BalanceSettings, step_s: float) -> _BalancePlan:
        lag = b.transit_lag.total_seconds()
        return cls(b.clear_ratio, b.low_load_fraction, math.ceil(lag / step_s), round(lag / 60.0),
                   math.ceil(b.refill_lookback.total_seconds() / step_s))
