"""Live reload of the config file (SIGHUP, `systemctl reload gshp`): sites, meters, tokens, receivers and rules
change without a restart, and nothing the service holds is lost.

A reload runs in two halves. *Prepare*, off the event loop: read and validate the file exactly as `gshp run`
does (every problem at once), plan this process's part of it (role, shard), keep the running value of every
setting that only a restart can change (`RESTART_ONLY`: listen address, state directory, InfluxDB, …; each is
logged) and build the sources. A config that does not validate is refused there, with every problem logged,
and the running one stays. *Apply*, part by part, each swap atomic: the notifier's receivers (the only part
that can still refuse: a template that does not render), the rule engine (kept sites and meters keep their
windows, detectors, alerts and incidents), the board, the line schema, the API's tokens, the arrival count,
then the sources — the MQTT topic table and a telemetry listener's plan swapped in place, a source whose
connection settings changed restarted, added and removed ones started and stopped.

`/healthz` shows the config's hash and load time and the last reload's outcome; a refused reload keeps the
service degraded until a good one. ``gshp_config_reloads_total{result}`` counts them; one log line per reload
says what changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from collector import metrics
from collector.influx.lineproto import FlowSchema
from collector.influx.sitemeta import site_lines
from collector.modbus.source import ModbusSource
from collector.mqtt.ingester import MqttSource
from collector.outbox import OutboxFull
from collector.telemetry import ListenerSettings, TelemetryServer
from gshp.api.auth import Authenticator
from gshp.citymap import OutlineError, load_outlines
from gshp.config import Config, ConfigError, load_config
from gshp.config.loader import unreadable
from gshp.config.planning import planning_problems
from gshp.config.schema import config_warnings
from gshp.health import Reason
from gshp.roles import RoleError
from gshp.service import Service, Source, offline_after
from gshp.sources import SourceConfigError
from rules.notify.errors import NotifyError

__all__ = ["RELOADS", "RESTART_ONLY", "ConfigChanges", "ConfigStamp", "Delta", "EarlyHangups", "Prepared",
           "ReloadOutcome", "ReloadRefused", "Reloader", "config_changes", "keep_restart_only"]

log = logging.getLogger("gshp.reload")

RELOADS = Counter("gshp_config_reloads_total", "Config reloads (SIGHUP) by outcome: ok, refused (the config does "
                  "not validate) or failed (a fault part-way)", ["result"])

RESTART_ONLY = ("timezone", "state_dir", "influx", "outbox", "readings", "health", "shard", "fanout")
"""Sections only a restart changes: a reload keeps their running values and logs that they differ."""
API_RESTART_ONLY = ("listen", "tls", "public_url", "allowed_hosts")
"""`api:` keys only a restart changes (the tokens and `loopback_read` change live)."""

Plan = Callable[[Config], Config]
"""This process's part of a config (role, shard, `--listen`); raises `RoleError`."""
Build = Callable[[Config], list[Source]]
"""The sources of a planned config, not yet running; raises `SourceConfigError`."""


class ReloadRefused(Exception):
    """The new config cannot be used; `problems` lists every reason. The running config stays."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class ConfigStamp:
    """The config file in use: its SHA-256 and when it was loaded."""

    sha256: str
    loaded_at: datetime

    @classmethod
    def of(cls, raw: bytes, at: datetime | None = None) -> ConfigStamp:
        return cls(hashlib.sha256(raw).hexdigest(), at or datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Delta:
    """Names added, removed and changed between two configs."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @classmethod
    def of(cls, old: Mapping[str, object], new: Mapping[str, object]) -> Delta:
        return cls(tuple(k for k in new if k not in old), tuple(k for k in old if k not in new),
                   tuple(k for k in new if k in old and new[k] != old[k]))

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def text(self, what: str) -> str:
        marks = [f"+{','.join(self.added)}" if self.added else "", f"-{','.join(self.removed)}" if self.removed else "",
                 f"~{','.join(self.changed)}" if self.changed else ""]
        return f"{what} {' '.join(m for m in marks if m)}"


@dataclass(frozen=True, slots=True)
class ConfigChanges:
    """What a reload changes, by part (tokens by holder name, never by secret)."""

    sites: Delta
    meters: Delta
    tokens: Delta
    receivers: Delta
    rules: bool
    restart_needed: tuple[str, ...]

    def summary(self) -> str:
        parts = [d.text(name) for name, d in (("sites", self.sites), ("meters", self.meters),
                                              ("tokens", self.tokens), ("receivers", self.receivers)) if d]
        if self.rules:
            parts.append("rules changed")
        if self.restart_needed:
            parts.append(f"needs a restart (running values kept): {', '.join(self.restart_needed)}")
        return "; ".join(parts) or "nothing changed"


def _token_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def config_changes(old: Config, new: Config, restart_needed: Sequence[str] = ()) -> ConfigChanges:
    """What differs between the running config and a new one (pure)."""
    def tokens(config: Config) -> dict[str, tuple[str, object]]:
        out: dict[str, tuple[str, object]] = {}
        for t in config.api.tokens:
            key = _token_key(t.token.get_secret_value())
            out[t.name or f"{t.role}-{key[:8]}"] = (key, (t.role, t.districts))
        return out

    return ConfigChanges(
        sites=Delta.of({s.id: s for s in old.sites}, {s.id: s for s in new.sites}),
        meters=Delta.of({f"{s.id}/{m.id}": m for s in old.sites for m in s.meters},
                        {f"{s.id}/{m.id}": m for s in new.sites for m in s.meters}),
        tokens=Delta.of(tokens(old), tokens(new)),
        receivers=Delta.of({r.name: r for r in old.notify}, {r.name: r for r in new.notify}),
        rules=old.rules.model_dump() != new.rules.model_dump(),  # not `!=`: that compares resolution caches too
        restart_needed=tuple(restart_needed))


def keep_restart_only(running: Config, new: Config) -> tuple[Config, list[str]]:
    """`new` with the running value of every setting only a restart changes, and the names of those that
    differ (pure)."""
    update: dict[str, Any] = {}
    differ: list[str] = []
    for key in RESTART_ONLY:
        if getattr(new, key) != getattr(running, key):
            update[key] = getattr(running, key)
            differ.append(key)
    api = {k: getattr(running.api, k) for k in API_RESTART_ONLY if getattr(new.api, k) != getattr(running.api, k)}
    if api:
        update["api"] = new.api.model_copy(update=api)
        differ += [f"api.{k}" for k in api]
    if new.rules.evaluate_every != running.rules.evaluate_every:
        update["rules"] = new.rules.model_copy(update={"evaluate_every": running.rules.evaluate_every})
        differ.append("rules.evaluate_every")
    return (new.model_copy(update=update) if update else new), differ


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated, planned config and its sources (not running), ready to apply."""

    config: Config
    sources: list[Source]
    changes: ConfigChanges
    stamp: ConfigStamp
    outlines: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    at: datetime
    ok: bool
    problems: tuple[str, ...]
    seconds: float
    changes: str = ""
    prepare_s: float = 0.0  # of `seconds`: reading, validating and planning the file, building the sources

    def as_dict(self, tz: Any) -> dict[str, Any]:
        return {"at": self.at.astimezone(tz).isoformat(), "ok": self.ok, "problems": list(self.problems),
                "duration_ms": round(self.seconds * 1000, 1), "prepare_ms": round(self.prepare_s * 1000, 1),
                **({"changes": self.changes} if self.ok else {})}


class EarlyHangups:
    """SIGHUP while the service starts (before its event loop runs): remembered, not fatal; the reload runs
    once the service does."""

    def __init__(self) -> None:
        self.seen = False
        signal.signal(signal.SIGHUP, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.seen = True


class Reloader:
    """Reloads `path` into a running `Service` on SIGHUP (or `request()`), one reload at a time."""

    def __init__(self, service: Service, path: str | Path, plan: Plan, build: Build,
                 early: EarlyHangups | None = None) -> None:
        self.service = service
        self.path = Path(path)
        self.plan = plan
        self.build = build
        self.early = early
        self.stamp = ConfigStamp.of(self.path.read_bytes())
        self.last: ReloadOutcome | None = None
        self._wanted = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        service.health_sections.append(self.health)
        service.monitor.add(self.reasons)

    def request(self) -> None:
        """Ask for a reload (the SIGHUP handler); several before it starts make one."""
        self._wanted.set()

    async def run(self) -> None:
        """Reload on every SIGHUP until cancelled (the service runs it beside its other tasks)."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request)
        if self.early is not None and self.early.seen:
            log.info("a SIGHUP came while starting: reloading now")
            self.request()
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await self.reload()

    async def reload(self) -> ReloadOutcome:
        at = datetime.now(UTC)
        started = time.monotonic()
        prepare_s: float | None = None
        try:
            prepared = await asyncio.to_thread(self.prepare)
            prepare_s = time.monotonic() - started
            done = await self.apply(prepared)
        except ReloadRefused as err:
            took = time.monotonic() - started
            self.last = ReloadOutcome(at, False, tuple(err.problems), took, prepare_s=prepare_s or took)
            RELOADS.labels("refused").inc()
            log.error("config reload of %s refused, the running config stays (%d problem(s)):\n  %s", self.path,
                      len(err.problems), "\n  ".join(err.problems))
            return self.last
        except Exception as exc:  # a fault of the reload itself must not stop the service
            problem = f"the reload failed part-way: {type(exc).__name__}: {exc}"
            took = time.monotonic() - started
            self.last = ReloadOutcome(at, False, (problem,), took, prepare_s=prepare_s or took)
            RELOADS.labels("failed").inc()
            log.exception("config reload of %s failed part-way; restart the service to be sure of its config",
                          self.path)
            return self.last
        self.stamp = prepared.stamp
        self.last = ReloadOutcome(at, True, (), time.monotonic() - started, done, prepare_s)
        RELOADS.labels("ok").inc()
        log.info("config reloaded from %s in %.0f ms (prepared in %.0f ms; sha256 %s): %s", self.path,
                 self.last.seconds * 1000, prepare_s * 1000, self.stamp.sha256[:12], done)
        return self.last

    # -- prepare (a worker thread) -------------------------------------------------------------------

    def prepare(self) -> Prepared:
        """Read, validate and plan the file; raises `ReloadRefused` with every problem."""
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise ReloadRefused([f"{self.path}: {unreadable(exc)}"]) from None
        stamp = ConfigStamp.of(raw)
        try:
            loaded = load_config(self.path, checks=(planning_problems,))
        except ConfigError as err:
            raise ReloadRefused([str(p) for p in err.problems]) from None
        for warning in config_warnings(loaded):
            log.warning("%s %s", self.path, warning)
        running = self.service.config
        try:
            config, restart = keep_restart_only(running, self.plan(loaded))
            outlines = load_outlines(config.map)
            sources = self.build(config)
        except (RoleError, SourceConfigError) as err:
            raise ReloadRefused([f"{self.path}: {p}" for p in err.problems]) from None
        except OutlineError as err:
            raise ReloadRefused([f"{self.path}: {err}"]) from None
        return Prepared(config, sources, config_changes(running, config, restart), stamp, outlines)

    # -- apply (the event loop) ----------------------------------------------------------------------

    async def apply(self, p: Prepared) -> str:
        """Swap the parts over to `p.config`; returns what changed, for the log."""
        svc, new, old = self.service, p.config, self.service.config
        try:
            await asyncio.to_thread(svc.notifier.reconfigure, new.notify)
        except NotifyError as err:
            for source in p.sources:
                _discard(source)
            raise ReloadRefused([f"{self.path}: notify: {err}"]) from None
        added = set(p.changes.sites.added)
        svc.engine.reconfigure(new.sites, new.rules)
        svc.restore_maintenance(added)
        svc.rules.sites = list(new.sites)
        svc.live.reconfigure(new.sites, offline_after(new))
        svc.schema = FlowSchema(new.sites)
        svc.config = new
        svc.outlines = p.outlines
        if old.intervals() != new.intervals():
            self._swap_arrival(new)
        if svc.app is not None:
            svc.app.state.ctx = replace(svc.app.state.ctx, config=new, auth=Authenticator(new.api),
                                        arrival=svc.arrival, outlines=p.outlines)
        if new.log_level != old.log_level:
            logging.getLogger().setLevel(new.log_level)
        if svc.role.evaluates:
            metrics.RULE_SITES.set(len(new.sites))
        touched = set(p.changes.sites.added) | set(p.changes.sites.changed)
        if touched:
            try:
                svc.outbox.put(site_lines([s for s in new.sites if s.id in touched], datetime.now(UTC)))
            except OutboxFull:
                log.warning("outbox full: the metadata of the reloaded sites is not queued")
        sources = await self._swap_sources(p.sources)
        return p.changes.summary() + (f"; sources {', '.join(sources)}" if sources else "")

    def _swap_arrival(self, config: Config) -> None:
        """A new arrival count for the new meters and intervals, re-built from InfluxDB in the background
        (readings arriving meanwhile are counted as usual)."""
        svc = self.service
        before, after = svc.arrival, svc.arrival_tracker(config)
        svc.listeners = [after.on_readings if f == before.on_readings else f for f in svc.listeners]
        svc.arrival = after
        after.export(lambda: svc.clock.now().timestamp())
        task = asyncio.create_task(asyncio.to_thread(after.rebuild, svc.reader, svc.clock.now().timestamp()),
                                   name="arrival-rebuild")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _swap_sources(self, new_sources: Iterable[Source]) -> list[str]:
        """Sources by name: updated in place where their connection stays, else restarted; added ones started,
        removed ones stopped. Returns what happened to each, for the log."""
        svc = self.service
        old = {s.name: s for s in svc.sources}
        new = {s.name: s for s in new_sources}
        done: list[str] = []
        for name in [*old, *(n for n in new if n not in old)]:
            before, after = old.get(name), new.get(name)
            if before is None and after is not None:
                svc.start_source(after)
                done.append(f"{name} started")
            elif after is None and before is not None:
                await svc.retire_source(before)
                done.append(f"{name} stopped")
            elif before is not None and after is not None:
                how = _update_in_place(before, after)
                if how is None:
                    await svc.retire_source(before)
                    svc.start_source(after)
                    done.append(f"{name} restarted")
                    continue
                _discard(after)
                if how:
                    done.append(f"{name} {how}")
        return done

    # -- health --------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        tz = self.service.config.tz
        out: dict[str, Any] = {"config": {"path": str(self.path), "sha256": self.stamp.sha256,
                                          "loaded_at": self.stamp.loaded_at.astimezone(tz).isoformat()}}
        if self.last is not None:
            out["reload"] = self.last.as_dict(tz)
        return out

    def reasons(self) -> list[Reason]:
        last = self.last
        if last is None or last.ok:
            return []
        n, first = len(last.problems), last.problems[0] if last.problems else ""
        return [Reason("config:reload", f"配置重新加载被拒绝（{n} 个问题），仍按上一次的配置运行：{first}",
                       f"the config reload was refused ({n} problem(s)); the previous config keeps running: {first}")]


def _update_in_place(before: Source, after: Source) -> str | None:
    """Take the new source's plan into the running one when its connection stays the same: what changed
    ("" for nothing), or None when it must restart."""
    if isinstance(before, MqttSource) and isinstance(after, MqttSource):
        if before.settings != after.settings or before.context != after.context:
            return None
        added, removed = before.replace_router(after.router)
        return f"topic filters +{added} -{removed}" if added or removed else ""
    if isinstance(before, TelemetryServer) and isinstance(after, TelemetryServer):
        if _listener(before.settings) != _listener(after.settings):
            return None
        before.protocol, before.settings = after.protocol, after.settings  # stations and units: the plan's
        return ""
    if isinstance(before, ModbusSource) and isinstance(after, ModbusSource):
        return "" if before.plan == after.plan else None
    return None


def _listener(settings: ListenerSettings) -> dict[str, object]:
    """What a telemetry server's socket and bounds depend on (its stations and units are its protocol's: they
    change without closing a logger's connection)."""
    return {name: getattr(settings, name) for name in ListenerSettings.model_fields}


def _discard(source: Source) -> None:
    """Release what a source built but never run holds (its dead-letter store)."""
    store = getattr(source, "deadletters", None)
    if store is not None:
        store.close()
