"""What the API's routes receive: each part of the service by its own dependency (never the whole context), and
every visibility decision (sites, districts, outlines, a report's district) taken by `Scope`."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.routing import APIRoute

from collector.model import Site
from gshp.api.app import ROUTERS
from gshp.api.auth import Principal
from gshp.api.deps import ApiContext, Scope


def _site(site_id: str, district: str) -> Site:
    return Site(id=site_id, name=f"站点 {site_id}", district=district,
                meters=({"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}))  # type: ignore[arg-type]


SITES = {s.id: s for s in (_site("hehua", "宛城区"), _site("hospital", "宛城区"), _site("school", "卧龙区"),
                           _site("park", "高新区"))}
OUTLINES = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"district": name}, "geometry": None}
    for name in ("宛城区", "卧龙区", "高新区", "镇平县")]}  # 镇平县: an outline without sites
BUREAU = Principal("水利局", "viewer")
WANCHENG = Principal("宛城区执法大队", "enforcement", frozenset({"宛城区"}))
TWO = Principal("联合执法", "enforcement", frozenset({"宛城区", "卧龙区"}))


def test_no_route_receives_the_whole_service_context() -> None:
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 30
    for route in routes:
        hints = typing.get_type_hints(route.endpoint, include_extras=True)
        for name, hint in hints.items():
            assert getattr(hint, "__origin__", hint) is not ApiContext, f"{route.path} {route.methods}: {name}"


def _outlined(who: Principal, district: str | None = None) -> list[str]:
    shown: dict[str, Any] | None = Scope(who, SITES).outlines(OUTLINES, district)
    assert shown is not None and shown["type"] == "FeatureCollection"
    return [f["properties"]["district"] for f in shown["features"]]


def test_the_outlines_a_caller_sees_are_its_districts_with_or_without_sites() -> None:
    assert _outlined(BUREAU) == ["宛城区", "卧龙区", "高新区", "镇平县"]
    assert _outlined(BUREAU, "卧龙区") == ["卧龙区"]
    assert _outlined(WANCHENG) == ["宛城区"]
    assert _outlined(TWO) == ["宛城区", "卧龙区"]
    assert _outlined(WANCHENG, "卧龙区") == []  # another district's outline, even when named
    assert Scope(BUREAU, SITES).outlines(None) is None  # no `map.districts`


def _refused(call: typing.Callable[[], object]) -> int:
    with pytest.raises(HTTPException) as refused:
        call()
    return refused.value.status_code


def test_a_reports_district_is_the_named_one_or_the_callers_only_one() -> None:
    bureau, wancheng, two = (Scope(w, SITES) for w in (BUREAU, WANCHENG, TWO))
    assert bureau.report_district(None) is None  # every district
    assert bureau.report_district("卧龙区") == "卧龙区"
    assert wancheng.report_district(None) == "宛城区"
    assert wancheng.report_district("宛城区") == "宛城区"
    assert _refused(lambda: wancheng.report_district("卧龙区")) == 404  # as an unknown one answers
    assert _refused(lambda: bureau.report_district("火星区")) == 404
    assert two.report_district("卧龙区") == "卧龙区"
    assert _refused(lambda: two.report_district(None)) == 422  # several: the caller chooses
