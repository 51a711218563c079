"""The map: `GET /api/map` as each caller sees it, and the board's map view in headless Chromium, offline."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.api.conftest import TOKENS, Running
from tests.api.test_board_browser import ARTIFACTS, browser

pytestmark = pytest.mark.integration

__all__ = ["browser"]  # the module's Chromium, shared with the board's tests

COLORS = {"normal": "#2e7d32", "discharge": "#c62828", "fault": "#ef6c00", "offline": "#757575",
          "unknown": "#757575"}
"""The status colours of the board (board.css), which the points take."""


def test_the_map_gives_every_site_its_point_status_and_district_with_the_outlines(running: Running) -> None:
    page = running.get("/api/map").json()
    sites = {s["id"]: s for s in page["sites"]}
    assert set(sites) == {"hehua", "hospital", "school"}
    assert sites["hehua"]["location"] == {"lat": 33.0, "lon": 112.56, "address": "南阳市宛城区向阳路"}
    assert sites["hospital"]["location"]["address"] is None
    assert (sites["school"]["name"], sites["school"]["district"]) == ("卧龙区第一中学", "卧龙区")
    assert all(s["status"] in COLORS for s in sites.values())
    assert page["districts"] == ["卧龙区", "宛城区"]
    assert page["outlines"]["type"] == "FeatureCollection"
    assert sorted(f["properties"]["district"] for f in page["outlines"]["features"]) == ["卧龙区", "宛城区"]
    assert page["tiles"] is None  # none configured: the points over the outlines only
    assert running.get("/api/sites/hehua").json()["location"]["lat"] == 33.0


def test_an_officer_of_one_district_sees_only_its_sites_and_outline(running: Running) -> None:
    page = running.get("/api/map", token="wancheng").json()
    assert {s["id"] for s in page["sites"]} == {"hehua", "hospital"}
    assert page["districts"] == ["宛城区"]
    assert [f["properties"]["district"] for f in page["outlines"]["features"]] == ["宛城区"]
    refused = running.get("/api/map", token="wancheng", params={"district": "卧龙区"})
    assert refused.status_code == 422 and "卧龙区" in refused.json()["detail"]
    assert running.get("/api/map", token=None).status_code == 401


def test_the_district_filter_narrows_points_and_outlines(running: Running) -> None:
    page = running.get("/api/map", params={"district": "卧龙区"}).json()
    assert [s["id"] for s in page["sites"]] == ["school"]
    assert [f["properties"]["district"] for f in page["outlines"]["features"]] == ["卧龙区"]
    assert page["districts"] == ["卧龙区", "宛城区"]  # the filter still offers every district


def _offline_map(browser: Browser, running: Running, width: int, height: int) -> tuple[Page, list[str]]:
    """The map view with every request beyond loopback refused and recorded."""
    page = browser.new_page(viewport={"width": width, "height": height}, locale="zh-CN")
    outside: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.add_init_script(f"localStorage.setItem('gshp.token', '{TOKENS['viewer']}')")
    page.goto(running.url + "/#/map")
    return page, outside


def _marker_colours_follow_the_status(page: Page) -> None:
    for marker in page.locator("path.site-marker").all():
        status = marker.get_attribute("data-status")
        assert status is not None and marker.get_attribute("fill") == COLORS[status], status


def test_the_map_view_works_offline_with_a_coloured_named_point_per_site(browser: Browser, running: Running) -> None:
    page, outside = _offline_map(browser, running, 1280, 900)
    markers = page.locator("path.site-marker")
    expect(markers).to_have_count(3)
    expect(page.locator("path.district-outline")).to_have_count(2)
    expect(page.locator(".leaflet-tooltip.site-label")).to_have_text(
        ["向阳荷花广场", "宛城区人民医院", "卧龙区第一中学"])
    # the hospital drains 40 %: its point turns red as the map refreshes, as its row does on the overview
    hospital = page.locator("path.site-marker[data-site=hospital]")
    expect(hospital).to_have_attribute("data-status", "discharge", timeout=60_000)
    expect(hospital).to_have_attribute("fill", COLORS["discharge"])
    _marker_colours_follow_the_status(page)
    expect(page.locator("#navMap")).to_have_text("地图")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "board-map.png"), full_page=True)

    page.locator("#mapDistrict").select_option("卧龙区")
    expect(markers).to_have_count(1)
    expect(page.locator("path.site-marker[data-site=school]")).to_have_count(1)
    expect(page.locator("path.district-outline")).to_have_count(1)
    expect(page.locator("#district")).to_have_value("卧龙区")  # the board's filter follows
    page.locator("#mapDistrict").select_option("")
    expect(markers).to_have_count(3)

    page.locator("path.site-marker[data-site=hehua]").click()
    expect(page).to_have_url(running.url + "/#/sites/hehua")
    expect(page.locator("#app h2").first).to_contain_text("向阳荷花广场")
    page.go_back()  # and back: a new map in place of the one left
    expect(markers).to_have_count(3)
    expect(page.locator(".leaflet-container")).to_have_count(1)
    page.locator("#lang").click()
    expect(page.locator("#navMap")).to_have_text("Map")
    assert outside == [], outside
    page.close()


def test_the_map_fits_a_phone_screen(browser: Browser, running: Running) -> None:
    page, outside = _offline_map(browser, running, 390, 844)
    expect(page.locator("path.site-marker")).to_have_count(3)
    _marker_colours_follow_the_status(page)
    box = page.locator("#citymap").bounding_box()
    assert box is not None and box["width"] <= 390 and box["height"] >= 320
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "board-map-phone.png"), full_page=True)
    assert outside == [], outside
    page.close()


def test_a_configured_tile_layer_is_drawn_under_the_points_with_its_key(browser: Browser, running: Running) -> None:
    page, outside = _offline_map(browser, running, 800, 600)
    answer = running.get("/api/map").json()
    answer["tiles"] = {"url": running.url + "/tiles/{s}/{z}/{x}/{y}.png?tk={key}", "key": "k3y-0f-t1anditu",
                       "subdomains": "01", "attribution": "本地瓦片 <test>", "max_zoom": 18}
    tiles: list[str] = []

    def tile(route: Route) -> None:
        tiles.append(route.request.url)
        route.fulfill(status=404)

    page.route("**/api/map*", lambda route: route.fulfill(json=answer))
    page.route("**/tiles/**", tile)
    page.reload()
    expect(page.locator("path.site-marker")).to_have_count(3)
    expect(page.locator(".leaflet-control-attribution")).to_contain_text("本地瓦片 <test>")  # text, not markup
    assert tiles and all(re.search(r"/tiles/[01]/\d+/\d+/\d+\.png\?tk=k3y-0f-t1anditu$", t) for t in tiles), tiles
    assert outside == [], outside
    page.close()
