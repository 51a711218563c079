"""Rules: volume balance, data-quality and evasion detection, alert lifecycle and store, replay.

The public surface is small: build an `Engine` from the sites and `RulesSettings`, feed it readings,
call `evaluate(now)` and act on the `Alert`s it returns (the model lives in `alerting`).
"""

from alerting.model import Alert, AlertKind
from rules.engine import Engine, EngineError, EngineStats
from rules.settings import MaintenanceWindow, RuleSet, RulesSettings, Severity
from rules.store import AlertStore, StoreError

__all__ = [
    "Alert",
    "AlertKind",
    "AlertStore",
    "Engine",
    "EngineError",
    "EngineStats",
    "MaintenanceWindow",
    "RuleSet",
    "RulesSettings",
    "Severity",
    "StoreError",
]
