"""Permit compliance (pure): the year's extraction, its projection against the quota, the extraction rate
against the permit's maximum, pumping where the permit forbids it, and meters whose calibration is past due.

The engine folds each site's extraction interval by interval into a `YearLedger` (one per site and local
calendar year, kept in the alert store so a restart neither forgets nor double-counts it) and judges the
conditions below at every evaluation:

- `over_rate`: the mean extraction rate of the newest complete interval (from totalizer deltas) above
  `max_rate_m3h × (1 + accuracy/100)`, the accuracy being the worst of the extraction meters; clear at or
  below `max_rate_m3h`, in between nothing changes.
- `quota_projection`: 90 % (`quota_warn_pct`) of the annual quota used, or — once the ledger spans
  `quota_min_span` — the year's extraction at the pace so far (`extracted / monitored time`) projected to
  the end of the year above the quota.
- `sealed_pumping`: a `suspended` or `sealed` site extracting (rate above `running_m3h`), however well
  balanced; `permit_expired`: extracting after `valid_to`.
- `calibration_due:<meter>`: the meter's calibration certificate's `next_due` has passed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, tzinfo

from rules.balance import Condition

__all__ = [
    "CALIBRATION_PREFIX",
    "COMPLIANCE_RULES",
    "YearLedger",
    "calibration_overdue",
    "fold_year",
    "over_rate",
    "permit_pumping",
    "project_year",
    "quota_state",
    "rate_limit_m3h",
    "year_bounds",
]

COMPLIANCE_RULES = ("over_rate", "quota_projection", "sealed_pumping", "permit_expired")
CALIBRATION_PREFIX = "calibration_due:"
"""The rule of one meter's calibration reminder is this prefix and the meter id."""


@dataclass(frozen=True, slots=True)
class YearLedger:
    """A site's extraction over one local calendar year, as far as it was monitored: the volume of the
    intervals folded from `since` to `through` (epoch seconds), the time whose extraction was unknown (the
    volume is then a lower bound) and the highest interval mean rate with its interval's start."""

    site: str
    year: int
    extracted_m3: float = 0.0
    since: float | None = None
    through: float | None = None
    unknown_s: float = 0.0
    peak_rate_m3h: float = 0.0
    peak_at: float | None = None

    @property
    def monitored_s(self) -> float:
        if self.since is None or self.through is None:
            return 0.0
        return max(0.0, self.through - self.since - self.unknown_s)


def year_bounds(year: int, tz: tzinfo) -> tuple[float, float]:
    """The local calendar year [1 Jan 00:00, next 1 Jan 00:00) as epoch seconds."""
    return (datetime(year, 1, 1, tzinfo=tz).timestamp(), datetime(year + 1, 1, 1, tzinfo=tz).timestamp())


def fold_year(ledger: YearLedger, rows: Iterable[tuple[float, float, bool]], step_s: float, tz: tzinfo
              ) -> list[YearLedger]:
    """Fold intervals (start epoch, extracted m³, known), oldest first and each after `ledger.through`,
    into the ledger; time skipped since `through` (the service was down longer than the ledgers keep) counts
    as unknown; an interval of another (later) year starts that year's ledger. Returns every ledger touched,
    the newest last."""
    out = [ledger]
    cur = ledger
    year_end = year_bounds(cur.year, tz)[1]
    for a, volume, known in rows:
        if cur.through is not None and a < cur.through:
            continue
        if a >= year_end:
            cur = YearLedger(cur.site, datetime.fromtimestamp(a, tz).year)
            year_end = year_bounds(cur.year, tz)[1]
            out.append(cur)
        b = a + step_s
        if cur.through is not None and a > cur.through:  # not seen (the service was down): unknown
            cur = replace(cur, unknown_s=cur.unknown_s + a - cur.through)
        if not known:
            cur = replace(cur, since=a if cur.since is None else cur.since, through=b,
                          unknown_s=cur.unknown_s + step_s)
        else:
            rate = volume * 3600.0 / step_s
            peak = rate > cur.peak_rate_m3h
            cur = replace(cur, extracted_m3=cur.extracted_m3 + volume, since=a if cur.since is None else cur.since,
                          through=b, peak_rate_m3h=rate if peak else cur.peak_rate_m3h,
                          peak_at=a if peak else cur.peak_at)
        out[-1] = cur
    return out


def rate_limit_m3h(max_rate_m3h: float, accuracy_pct: float) -> float:
    """The rate a meter of `accuracy_pct` must show before it is surely above the permit's maximum."""
    return max_rate_m3h * (1.0 + accuracy_pct / 100.0)


def over_rate(rate_m3h: float | None, max_rate_m3h: float, accuracy_pct: float) -> Condition:
    """ACTIVE above the limit the meters' accuracy allows, CLEAR at or below the permitted maximum, BAND in
    between, UNKNOWN without a known rate."""
    if rate_m3h is None:
        return Condition.UNKNOWN
    if rate_m3h > rate_limit_m3h(max_rate_m3h, accuracy_pct):
        return Condition.ACTIVE
    return Condition.CLEAR if rate_m3h <= max_rate_m3h else Condition.BAND


def project_year(ledger: YearLedger, tz: tzinfo) -> float | None:
    """The year's extraction at the end of the year at the pace of the monitored time so far (None before
    any time was monitored)."""
    monitored = ledger.monitored_s
    if monitored <= 0 or ledger.through is None:
        return None
    remaining = max(0.0, year_bounds(ledger.year, tz)[1] - ledger.through)
    return ledger.extracted_m3 + ledger.extracted_m3 / monitored * remaining


def quota_state(ledger: YearLedger, quota_m3: float, tz: tzinfo, warn_pct: float, min_span_s: float
                ) -> tuple[Condition, str | None]:
    """ACTIVE with the reason (`exceeded`, `used` ≥ warn_pct %, or `projected` above the quota once the ledger
    spans `min_span_s`), CLEAR otherwise."""
    if ledger.extracted_m3 >= quota_m3:
        return Condition.ACTIVE, "exceeded"
    if 100.0 * ledger.extracted_m3 / quota_m3 >= warn_pct:
        return Condition.ACTIVE, "used"
    projected = project_year(ledger, tz)
    if projected is not None and ledger.monitored_s >= min_span_s and projected > quota_m3:
        return Condition.ACTIVE, "projected"
    return Condition.CLEAR, None


def permit_pumping(rates: Iterable[float | None], running_m3h: float) -> Condition:
    """Extraction runs when any rate (instantaneous, or an interval's mean) is above `running_m3h`; UNKNOWN
    when nothing is known."""
    known = [r for r in rates if r is not None]
    if not known:
        return Condition.UNKNOWN
    return Condition.ACTIVE if max(known) > running_m3h else Condition.CLEAR


def calibration_overdue(next_due: date, today: date) -> int:
    """Days past the certificate's `next_due` (≤ 0: still valid)."""
    return (today - next_due).days
