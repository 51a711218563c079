"""The map view's data: each visible site's point and status, its districts' outlines, the tile layer."""

from __future__ import annotations

from fastapi import APIRouter

from gshp.api.deps import Outlines, Statuses, Tiles, ViewerScope
from gshp.api.models import MapPage, MapSite, MapTiles, SiteLocation

router = APIRouter(tags=["api"])


@router.get("/api/map")
def get_map(scope: ViewerScope, statuses: Statuses, outlines: Outlines, tiles: Tiles,
            district: str | None = None) -> MapPage:
    """Every visible site (of one district with `district`) with its location and status, the outlines of the
    caller's districts (of `district` alone with it) and the configured tile layer."""
    shown = scope.filter(district)
    sites = [MapSite(id=s.site.id, name=s.site.name, district=s.district, status=s.status,
                     alerts_firing=s.alerts_firing,
                     location=None if s.site.location is None else SiteLocation(**s.site.location.model_dump()))
             for s in statuses(shown)]
    return MapPage(sites=sites, districts=scope.districts, outlines=scope.outlines(outlines, district),
                   tiles=None if tiles is None else MapTiles(
                       url=tiles.url, key=None if tiles.key is None else tiles.key.get_secret_value(),
                       subdomains=tiles.subdomains, attribution=tiles.attribution, max_zoom=tiles.max_zoom))
