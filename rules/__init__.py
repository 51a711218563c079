"""Rules: volume balance, data-quality and evasion detection, alert lifecycle and store, replay.

The public surface is small: build an `Engine` from the sites and `RulesSettings`, feed it readings,
call `evaluate(now)` and act on the `Alert`s it returns (the model lives in `alerting`). The hot modules run
compiled when a current build exists (see `rules.compiled`); `ENGINE` says which.
"""

from rules.compiled import activate

ENGINE = activate(__path__)
"""The engine this process runs: `compiled` or `python`."""

# the compiled modules must be found first: these imports follow the path set above

from alerting.model import Alert, AlertKind  # noqa: E402
from rules.engine import Engine, EngineError, EngineStats  # noqa: E402
from rules.settings import MaintenanceWindow, RuleSet, RulesSettings, Severity  # noqa: E402
from rules.store import AlertStore, StoreError  # noqa: E402

__all__ = [
    "ENGINE",
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
