"""Writes people make to the alert store (maintenance declared through the API; acknowledging, annotating
and closing alerts), each with its audit record in the same transaction: no record, no change."""

from __future__ import annotations

from rules.audit import Actor, AuditChain
from rules.settings import MaintenanceWindow
from rules.store import AlertStore, DeclaredMaintenance

__all__ = ["acknowledge_alert", "annotate_alert", "close_alert", "declare_maintenance"]


def declare_maintenance(store: AlertStore, audit: AuditChain, actor: Actor, site: str, window: MaintenanceWindow,
                        at: str) -> DeclaredMaintenance:
    with store.transaction() as db:
        declared = store.declare_maintenance(site, window, actor.name, at)
        audit.append(db, actor, "maintenance", site, at, {
            "start": window.start.isoformat(), "end": window.end.isoformat(),
            "reason": window.reason, "volume_cap_m3": window.volume_cap_m3})
    return declared


def acknowledge_alert(store: AlertStore, audit: AuditChain, actor: Actor, alert_id: str, at: str,
                      note: str | None = None) -> None:
    with store.transaction() as db:
        store.acknowledge(alert_id, actor.name, at, note)
        audit.append(db, actor, "ack", alert_id, at, {"comment": note} if note else None)


def annotate_alert(store: AlertStore, audit: AuditChain, actor: Actor, alert_id: str, at: str, text: str) -> None:
    with store.transaction() as db:
        store.annotate(alert_id, actor.name, at, text)
        audit.append(db, actor, "note", alert_id, at, {"text": text})


def close_alert(store: AlertStore, audit: AuditChain, actor: Actor, alert_id: str, at: str, outcome: str,
                text: str = "") -> None:
    with store.transaction() as db:
        store.close_case(alert_id, actor.name, at, outcome, text)
        audit.append(db, actor, "close", alert_id, at, {"outcome": outcome, "text": text})
