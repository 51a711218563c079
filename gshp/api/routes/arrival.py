"""A site's arrival rate (到报率) on one local day: `GET /api/sites/{id}/arrival?date=YYYY-MM-DD`."""

from __future__ import annotations

from fastapi import APIRouter

from gshp.api.arrival import arrival_route
from gshp.api.deps import Arrivals, Reader, ServiceClock, ViewedSite
from gshp.api.models import SiteArrival

router = APIRouter(tags=["api"])


@router.get("/api/sites/{site_id}/arrival")
def site_arrival(site: ViewedSite, arrival: Arrivals, reader: Reader, clock: ServiceClock,
                 date: str | None = None) -> SiteArrival:
    """Arrival rate of a site's meters on a local day (default today): expected and arrived reports, the rate,
    and the slots in which nothing arrived (`gshp.api.arrival`)."""
    return SiteArrival.model_validate(arrival_route(arrival, reader, site, date, clock.now().timestamp()))
