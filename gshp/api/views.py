"""Stored alerts, maintenance windows and site statuses as the API answers them (`gshp.api.models`)."""

from __future__ import annotations

from typing import Any

from alerting.model import Alert
from collector.model import Site
from gshp.api.arrival import arrival_figures
from gshp.api.deps import Times
from gshp.api.models import (
    AlertOut,
    AlertTransition,
    ArrivalFigures,
    Drained,
    MaintenanceOut,
    Note,
    OutcomeOut,
    SiteSummary,
    WindowBalance,
)
from gshp.api.status import SiteStatus
from rules.engine import Engine
from rules.events import summaries
from rules.settings import MaintenanceWindow
from rules.store import AlertStore, DeclaredMaintenance

__all__ = ["alert_out", "drained_out", "maintenance_out", "site_summary", "transition_out"]


def transition_out(event: dict[str, Any], times: Times) -> AlertTransition:
    """An alert event with its times in the configured zone and its summary in every language."""
    return AlertTransition.model_validate({
        **event, **{k: times.maybe(event.get(k)) for k in ("at", "starts_at", "ends_at")},
        "summaries": summaries(event["rule"], event["site_name"], event.get("evidence") or {}, event["state"],
                               event.get("summary") or "")})


def drained_out(volumes: dict[str, Any] | None, times: Times) -> Drained | None:
    """`Engine.volumes_since` (or district sums of it) as the API answers it."""
    if volumes is None:
        return None
    return Drained.model_validate({**volumes, "from": times.at(volumes["from"]), "as_of": times.at(volumes["as_of"])})


def alert_out(store: AlertStore, a: Alert, times: Times) -> AlertOut:
    notes = [Note(at=times.at(n.at), who=n.author, text=n.text) for n in store.annotations(a.id)]
    outcome = store.outcome(a.id)
    ack = store.acknowledgement(a.id)
    return AlertOut(**transition_out(a.to_dict(), times).model_dump(), acknowledged=ack is not None,
                    acked_by=None if ack is None else ack.by, acked_at=None if ack is None else times.at(ack.at),
                    notes=notes, outcome=None if outcome is None else OutcomeOut(
                        at=times.at(outcome["at"]), by=outcome["by"], outcome=outcome["outcome"], text=outcome["text"]))


def maintenance_out(store: AlertStore, engine: Engine, site: Site, times: Times) -> list[MaintenanceOut]:
    """Every window declared for a site, from the config or through the API (who and when), in time order."""
    declared: dict[MaintenanceWindow, list[DeclaredMaintenance]] = {}
    for m in store.maintenance(site.id):
        declared.setdefault(m.window, []).append(m)
    out = []
    for w in engine.maintenance(site.id):
        d = declared[w].pop(0) if declared.get(w) else None
        out.append(MaintenanceOut(start=times.at(w.start), end=times.at(w.end), reason=w.reason,
                                  volume_cap_m3=w.volume_cap_m3, source="api" if d else "config",
                                  declared_by=d.declared_by if d else None,
                                  declared_at=times.maybe(d.declared_at) if d else None))
    return out


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def site_summary(status: SiteStatus, times: Times) -> SiteSummary:
    balance: dict[str, WindowBalance | None] = {
        name: None if b is None else WindowBalance.model_validate({**b, "end": times.at(b["end"]),
                                                                   "as_of": times.at(b["as_of"])})
        for name, b in status.balance.items()}
    return SiteSummary(id=status.site.id, name=status.site.name, district=status.site.district,
                       status=status.status, last_seen=times.maybe(status.last_seen),
                       age_s=None if status.age_s is None else round(status.age_s, 1),
                       extraction_m3h=_rounded(status.flows.extraction_m3h),
                       reinjection_m3h=_rounded(status.flows.reinjection_m3h),
                       flows_as_of=times.maybe(status.flows.as_of), flows_age_s=_rounded(status.flows.age_s),
                       flows_complete=status.flows.complete,
                       balance=balance, alerts_firing=status.alerts_firing,
                       arrival=ArrivalFigures.model_validate(arrival_figures(status.arrival)),
                       drained_today=drained_out(status.drained_today, times))

