"""What the routes receive through FastAPI dependencies: each part of the service a route touches (store, live
state, reader, engine, zone, clock, audit chain, cases…) by its own alias, the caller (`Principal`, by role) and
the one visibility check (`Scope`) every site, district, alert, outline and report passes through.

A site, alert or district of another district answers exactly as one that does not exist: 404 on a path,
422 in a filter, so a district-limited token learns nothing of the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from alerting.model import Alert, Incident
from collector.influx.reader import InfluxReader
from collector.model import Site
from gshp.api.auth import Authenticator, Principal, Role
from gshp.api.errors import refused
from gshp.api.status import SiteStatuses
from gshp.arrival import ArrivalTracker
from gshp.citymap import TileLayer
from gshp.clock import Clock
from gshp.config import Config
from gshp.evidence import ServiceKey
from gshp.live import LiveState
from rules.audit import Actor, AuditChain
from rules.cases import CaseStore
from rules.engine import Engine
from rules.store import AlertStore

__all__ = [
    "Admin",
    "ApiContext",
    "Arrivals",
    "Audit",
    "CaseClosed",
    "Cases",
    "Enforcer",
    "EnforcerScope",
    "EvidenceKey",
    "HealthCheck",
    "Live",
    "ManagedSite",
    "Outlines",
    "Reader",
    "Rules",
    "Scope",
    "ServiceClock",
    "Settings",
    "Statuses",
    "Store",
    "Tiles",
    "Times",
    "ViewedSite",
    "Viewer",
    "ViewerScope",
    "Zone",
    "scope_of",
]

BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="A token from `api.tokens` of the service's config (viewer, enforcement or admin)")
"""Declares the bearer scheme in OpenAPI (the Authorize button of /docs); `Authenticator` checks the token."""


@dataclass(frozen=True)
class Times:
    """Every time the API answers, in the configured zone's offset."""

    tz: ZoneInfo

    @property
    def name(self) -> str:
        """The zone's IANA name, e.g. Asia/Shanghai."""
        return self.tz.key

    def at(self, value: datetime | str) -> datetime:
        t = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
        return t.astimezone(self.tz)

    def maybe(self, value: datetime | str | None) -> datetime | None:
        return None if value is None else self.at(value)


@dataclass(frozen=True)
class ApiContext:
    """The parts of the running service the API uses, kept on the application (a reload replaces it); routes
    receive each part through its own dependency below, never the whole."""

    config: Config
    store: AlertStore
    live: LiveState
    reader: InfluxReader
    engine: Engine
    clock: Clock
    audit: AuditChain
    cases: CaseStore
    auth: Authenticator
    health: Callable[[], dict[str, Any]]
    evidence_key: ServiceKey
    case_closed: Callable[[str, str], None]
    """Notify that an incident's case was closed (incident id, outcome), once the close is stored."""
    arrival: ArrivalTracker
    outlines: dict[str, Any] | None = None
    """The district outlines of `map.districts` (`gshp.citymap.load_outlines`), loaded at start."""


def _context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


_Ctx = Annotated[ApiContext, Depends(_context)]
T = TypeVar("T")


def _part(get: Callable[[ApiContext], T]) -> Callable[..., T]:
    """A dependency giving one part of the service (`get` of the context), so a route names only that part."""
    def dependency(ctx: _Ctx) -> T:
        return get(ctx)

    return dependency


Store = Annotated[AlertStore, Depends(_part(lambda ctx: ctx.store))]
Live = Annotated[LiveState, Depends(_part(lambda ctx: ctx.live))]
Reader = Annotated[InfluxReader, Depends(_part(lambda ctx: ctx.reader))]
Rules = Annotated[Engine, Depends(_part(lambda ctx: ctx.engine))]
Audit = Annotated[AuditChain, Depends(_part(lambda ctx: ctx.audit))]
Cases = Annotated[CaseStore, Depends(_part(lambda ctx: ctx.cases))]
Settings = Annotated[Config, Depends(_part(lambda ctx: ctx.config))]
"""The whole config: for what reads it whole (a report, an evidence package)."""
Zone = Annotated[Times, Depends(_part(lambda ctx: Times(ctx.config.tz)))]
"""The configured zone, in which every time is answered."""
ServiceClock = Annotated[Clock, Depends(_part(lambda ctx: ctx.clock))]
"""The service's clock: data time on a simulated clock."""
Arrivals = Annotated[ArrivalTracker, Depends(_part(lambda ctx: ctx.arrival))]
EvidenceKey = Annotated[ServiceKey, Depends(_part(lambda ctx: ctx.evidence_key))]
HealthCheck = Annotated[Callable[[], dict[str, Any]], Depends(_part(lambda ctx: ctx.health))]
CaseClosed = Annotated[Callable[[str, str], None], Depends(_part(lambda ctx: ctx.case_closed))]
"""Notify that an incident's case was closed (incident id, outcome), once the close is stored."""
Outlines = Annotated[dict[str, Any] | None, Depends(_part(lambda ctx: ctx.outlines))]
"""Every district outline of `map.districts` (None without), before `Scope.outlines` keeps the caller's."""
Tiles = Annotated[TileLayer | None, Depends(_part(lambda ctx: ctx.config.map.tiles))]
"""The map's tile layer of `map.tiles` (None without)."""
Statuses = Annotated[SiteStatuses, Depends(_part(lambda ctx: SiteStatuses(
    store=ctx.store, live=ctx.live, engine=ctx.engine, rules=ctx.config.rules, tz=ctx.config.tz,
    arrival=ctx.arrival, clock=ctx.clock)))]
"""The statuses of sites now, on the service's clock."""


def _principal(role: Role) -> Callable[..., Principal]:
    def dependency(request: Request, ctx: _Ctx, _: Annotated[Any, Depends(BEARER)]) -> Principal:
        return ctx.auth.require(role)(request)

    return dependency


_ROLES = {role: _principal(role) for role in ("viewer", "enforcement", "admin")}
Viewer = Annotated[Principal, Depends(_ROLES["viewer"])]
Enforcer = Annotated[Principal, Depends(_ROLES["enforcement"])]
Admin = Annotated[Principal, Depends(_ROLES["admin"])]


@dataclass(frozen=True)
class Scope:
    """What one caller may see: the single visibility check of every route."""

    who: Principal
    sites_by_id: Mapping[str, Site]

    @property
    def sites(self) -> list[Site]:
        """Visible sites, in config order."""
        return [s for s in self.sites_by_id.values() if self.who.sees(s.district)]

    @property
    def districts(self) -> list[str]:
        return sorted({s.district for s in self.sites})

    @property
    def actor(self) -> Actor:
        """The caller as the audit chain and the case history name it."""
        return Actor(self.who.name, self.who.role)

    def sees(self, site_id: str) -> bool:
        site = self.sites_by_id.get(site_id)
        return site is not None and self.who.sees(site.district)

    def site(self, site_id: str) -> Site:
        """A site on a path: 404 when unknown or in another district."""
        if not self.sees(site_id):
            raise refused(404, f"没有站点 {site_id!r}", f"no site {site_id!r}")
        return self.sites_by_id[site_id]

    def alert(self, store: AlertStore, alert_id: str) -> Alert:
        """An alert on a path: 404 when unknown or of a site in another district."""
        a = store.get(alert_id)
        if a is None or not self.sees(a.site):
            raise refused(404, f"没有告警 {alert_id!r}", f"no alert {alert_id!r}")
        return a

    def incident(self, store: AlertStore, incident_id: str) -> Incident:
        """An incident on a path: 404 when unknown or of a site in another district."""
        found = store.incident(incident_id)
        if found is None or not self.sees(found.site):
            raise refused(404, f"没有事件 {incident_id!r}", f"no incident {incident_id!r}")
        return found

    def district(self, district: str) -> str:
        """A district on a path or a download: 404 when unknown or not the caller's."""
        if district not in self.districts:
            raise refused(404, f"没有辖区 {district!r}", f"no district {district!r}")
        return district

    def report_district(self, district: str | None) -> str | None:
        """The district of a report: the one named (404 when not the caller's); without one, the only district
        of a token limited to one (422 when it has several) or every district (None)."""
        if district is not None:
            return self.district(district)
        if self.who.districts is None:
            return None
        if len(self.who.districts) != 1:
            raise refused(422, "district：请选择您的一个辖区", "district: choose one of your districts")
        return next(iter(self.who.districts))

    def outlines(self, outlines: Mapping[str, Any] | None, district: str | None = None) -> dict[str, Any] | None:
        """The district outlines (a GeoJSON FeatureCollection, each feature's district in its properties) the
        caller may see, with or without sites: of `district` alone with one."""
        if outlines is None:
            return None
        names = [(f, f["properties"]["district"]) for f in outlines["features"]]
        return {"type": "FeatureCollection", "features": [
            f for f, name in names if self.who.sees(name) and (district is None or name == district)]}

    def filter(self, district: str | None = None, site: str | None = None) -> list[Site]:
        """The visible sites a list filter names (all visible ones without a filter); 422 naming the choices
        when the filter names a district or site the caller does not know."""
        if district is not None and district not in self.districts:
            raise refused(422, f"district：未知辖区 {district!r}，可选：{'、'.join(self.districts)}",
                          f"district: unknown district {district!r}; one of {', '.join(self.districts)}")
        if site is not None and not self.sees(site):
            raise refused(422, f"site：未知站点 {site!r}，站点编号见 /api/sites",
                          f"site: unknown site {site!r}; list /api/sites for the ids")
        return [s for s in self.sites if (district is None or s.district == district) and
                (site is None or s.id == site)]


def scope_of(role: Role) -> Callable[..., Scope]:
    def dependency(ctx: _Ctx, who: Principal = Depends(_ROLES[role])) -> Scope:  # noqa: B008 (a closure's dependency)
        return Scope(who, {s.id: s for s in ctx.config.sites})

    return dependency


_SCOPES = {role: scope_of(role) for role in ("viewer", "enforcement")}
ViewerScope = Annotated[Scope, Depends(_SCOPES["viewer"])]
EnforcerScope = Annotated[Scope, Depends(_SCOPES["enforcement"])]


def _viewed_site(site_id: str, scope: ViewerScope) -> Site:
    return scope.site(site_id)


def _managed_site(site_id: str, scope: EnforcerScope) -> Site:
    return scope.site(site_id)


ViewedSite = Annotated[Site, Depends(_viewed_site)]
"""The `{site_id}` of a read route, visible to the caller (else 404)."""
ManagedSite = Annotated[Site, Depends(_managed_site)]
"""The `{site_id}` of a write route, in the enforcement caller's districts (else 404)."""
