"""Process roles: which parts of the service one `gshp run` process runs, and for which shard.

- ``all`` (the default): collect, store, evaluate and serve — one process for a city, as before. With a
  ``shard:`` it does all of that for its shard's sites only.
- ``collector``: poll / ingest the shard's meters, commit readings to the outbox → InfluxDB, and publish
  them (after the commit) to ``{fanout.topic_prefix}/{shard}/{site}/{meter}`` for the rule worker.
- ``rules``: subscribe to its shard's readings, run the rule engine, the alert store, the notifier and the
  board for the shard; it writes alerts and balances to InfluxDB, never the readings again.

`for_process` turns the city's config into the plan of one process: the shard's sites and gateways,
a state directory of its own (``state_dir/{role}-{index}``, so a collector and a rule worker of the same
shard may share a machine), and MQTT client ids of its own (``{mqtt.client_id}-{index}`` for DTU ingest,
``…-fanout-{index}`` for publishing, ``…-rules-{index}`` for the rule worker's persistent session).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from gshp.config import Config
from gshp.config.schema import shard_problems
from gshp.shard import ShardSettings, narrow

__all__ = ["ProcessPlan", "ProcessRole", "RoleError", "for_process"]


class ProcessRole(StrEnum):
    ALL = "all"
    COLLECTOR = "collector"
    RULES = "rules"

    @property
    def collects(self) -> bool:
        """Reads meters and writes readings to InfluxDB."""
        return self is not ProcessRole.RULES

    @property
    def evaluates(self) -> bool:
        """Runs the rule engine, the alert store and the notifier."""
        return self is not ProcessRole.COLLECTOR

    @property
    def publishes(self) -> bool:
        """Publishes normalized readings for a rule worker elsewhere."""
        return self is ProcessRole.COLLECTOR


class RoleError(Exception):
    """The config cannot run in the requested role or shard; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class ProcessPlan:
    """What one process runs: its role, its config (narrowed to its shard) and its MQTT client ids."""

    role: ProcessRole
    config: Config
    fanout_client_id: str
    rules_client_id: str


def _split(config: Config, role: ProcessRole) -> bool:
    """Whether this process is one of several (its state and client ids must not collide)."""
    return role is not ProcessRole.ALL or config.shard.sharded


def for_process(config: Config, role: ProcessRole, shard: ShardSettings | None = None) -> ProcessPlan:
    """The plan of one process: config narrowed to its shard, with its own state dir and client ids.

    `shard` (from the command line) replaces the file's ``shard:``. Raises `RoleError` with every problem.
    """
    shard = shard or config.shard
    problems = [f"{'.'.join(map(str, path))}: {msg}" for path, msg in shard_problems(config, shard.count)]
    if role is not ProcessRole.ALL and config.mqtt is None:
        problems.append(f"mqtt: a {role.value} process needs the `mqtt:` broker section: collectors publish "
                        "readings to the rule workers through it")
    if problems:
        raise RoleError(problems)
    out = narrow(config, shard)
    base = config.mqtt.client_id if config.mqtt is not None else "gshp"
    plan = ProcessPlan(role, out, f"{base}-fanout-{shard.index}", f"{base}-rules-{shard.index}")
    if not _split(out, role):
        return plan
    update: dict[str, object] = {"state_dir": config.state_dir / f"{role.value}-{shard.index}"}
    if config.mqtt is not None:
        update["mqtt"] = config.mqtt.model_copy(update={"client_id": f"{base}-{shard.index}"})
    return replace(plan, config=out.model_copy(update=update))
