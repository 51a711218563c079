"""The alert and incident model shared by every part of gshp-monitor (see `alerting.model`)."""

from alerting.model import (
    Alert,
    AlertKind,
    AlertState,
    Incident,
    IncidentChange,
    IncidentKind,
    IncidentNotice,
    IncidentState,
    Language,
    MaintenanceClaim,
    ModelError,
    Severity,
    VolumeEstimate,
    iso,
    parse_time,
)

__all__ = [
    "Alert",
    "AlertKind",
    "AlertState",
    "Incident",
    "IncidentChange",
    "IncidentKind",
    "IncidentNotice",
    "IncidentState",
    "Language",
    "MaintenanceClaim",
    "ModelError",
    "Severity",
    "VolumeEstimate",
    "iso",
    "parse_time",
]
