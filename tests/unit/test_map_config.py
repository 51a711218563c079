"""Site locations and the `map:` section: ranges, the outline file's checks and bounds, the tile key kept secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from collector.influx.sitemeta import site_lines
from collector.redact import redact
from gshp.citymap import MAX_OUTLINE_BYTES, MapSettings, OutlineError, load_outlines
from gshp.config import ConfigError, parse_config
from gshp.config.planning import planning_problems
from gshp.service import Service
from tests.helpers import T0

SITE = """\
sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    location: {lat: %s, lon: %s, address: 南阳市宛城区向阳路}
    meters: [{id: E1, role: extraction}, {id: R1, role: reinjection}]
"""


def _feature(name: Any, ring: Any, kind: str = "Polygon") -> dict[str, Any]:
    return {"type": "Feature", "properties": {"name": name, "area_km2": 1.5},
            "geometry": {"type": kind, "coordinates": [ring]}}


WANCHENG = [[112.53, 32.94], [112.62, 32.94], [112.62, 33.07], [112.53, 33.07], [112.53, 32.94]]


def _problems(text: str, checks: Any = ()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "city.yaml", env={}, checks=checks)
    return [str(p) for p in info.value.problems]


def test_a_site_location_is_lat_lon_and_address() -> None:
    config = parse_config(SITE % (33.0, 112.56), env={})
    location = config.sites[0].location
    assert location is not None
    assert (location.lat, location.lon, location.address) == (33.0, 112.56, "南阳市宛城区向阳路")
    (line,) = site_lines(config.sites, T0)
    assert "lat=33," in line and "lon=112.56," in line and 'location="南阳市宛城区向阳路"' in line


def test_latitude_and_longitude_out_of_range_are_refused_in_both_languages() -> None:
    lat, lon = _problems(SITE % (112.56, 200))
    assert lat.startswith("city.yaml:5: sites[0].location.lat: 纬度须在 -90 到 90 之间（填写值：112.56）/ "
                          "latitude must be between")
    assert "(got 112.56)" in lat
    assert lon.startswith("city.yaml:5: sites[0].location.lon: 经度须在 -180 到 180 之间（填写值：200）/ "
                          "longitude must be between")
    assert "nan" in _problems(SITE % (".nan", 112.5))[0].lower()


def test_a_location_needs_both_coordinates() -> None:
    (msg,) = _problems(SITE.replace("{lat: %s, lon: %s, address: 南阳市宛城区向阳路}", "{address: 向阳路, lat: 33}"))
    assert "sites[0].location.lon: 为必填项 / is required" in msg


def test_a_location_written_as_text_says_how_to_write_it() -> None:
    (msg,) = _problems(SITE.replace("{lat: %s, lon: %s, address: 南阳市宛城区向阳路}", "南阳市宛城区向阳路"))
    assert ("sites[0].location: 位置须写成 {lat, lon, address}（填写值：'南阳市宛城区向阳路'）/ "
            "location is {lat, lon, address}") in msg
    assert "address: 南阳市宛城区向阳路}" in msg


def test_a_tile_template_needs_z_x_and_y() -> None:
    (msg,) = _problems("map: {tiles: {url: 'http://tiles.example.gov.cn/{z}/{x}.png'}}\n")
    assert "map.tiles.url:" in msg and "the tile URL template must hold {z}, {x} and {y} (missing {y})" in msg


def test_the_tile_key_is_hidden_in_errors_and_masked_in_every_log_line() -> None:
    text = ("map:\n  tiles:\n    url: 'https://t{s}.tianditu.gov.cn/DataServer?T=vec_w&x={x}&y={y}&l={z}&tk={key}'\n"
            "    key: ${TDT_KEY}\n    subdomains: '01234567'\n    max_zoom: 30\n")
    (msg,) = _problems(text.replace("${TDT_KEY}", "k3y-0f-t1anditu-98765"))
    assert "map.tiles.max_zoom" in msg and "k3y-0f" not in msg
    with pytest.raises(ConfigError) as info:
        parse_config(text.replace("max_zoom: 30", "max_zoom: 18").replace("subdomains: '01234567'",
                                                                          "subdomains: '0 1'"),
                     env={"TDT_KEY": "k3y-0f-t1anditu-98765"})
    assert "k3y-0f" not in str(info.value)
    config = parse_config(text.replace("max_zoom: 30", "max_zoom: 18"), env={"TDT_KEY": "k3y-0f-t1anditu-98765"})
    assert config.map.tiles is not None and config.map.tiles.key is not None
    assert "k3y-0f" not in repr(config)
    # registered when the config loaded: masked wherever it shows up, e.g. a tile URL a log line quotes
    assert "k3y-0f" not in redact("GET https://t3.tianditu.gov.cn/DataServer?x=1&tk=k3y-0f-t1anditu-98765 failed")
    assert redact("https://t0.tianditu.gov.cn/DataServer?T=vec_w&tk=an0ther-k3y-1234") == \
        "https://t0.tianditu.gov.cn/DataServer?T=vec_w&tk=***"


def test_outlines_keep_the_district_name_and_the_geometry_only(tmp_path: Path) -> None:
    path = tmp_path / "districts.geojson"
    multi = {"type": "Feature", "properties": {"名称": "卧龙区"},
             "geometry": {"type": "MultiPolygon", "coordinates": [[WANCHENG], [WANCHENG]]}}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {**_feature("宛城区", WANCHENG), "properties": {"名称": "宛城区", "area_km2": 1.5}}, multi]}), encoding="utf-8")
    outlines = load_outlines(MapSettings(districts=path, name_property="名称"))
    assert outlines is not None
    assert [f["properties"] for f in outlines["features"]] == [{"district": "宛城区"}, {"district": "卧龙区"}]
    assert outlines["features"][1]["geometry"]["type"] == "MultiPolygon"
    assert load_outlines(MapSettings()) is None


def test_every_problem_of_an_outline_file_is_reported_at_map_districts(tmp_path: Path) -> None:
    path = tmp_path / "districts.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature("宛城区", WANCHENG),
        _feature("", WANCHENG),
        {"type": "Feature", "properties": {"name": "卧龙区"}, "geometry": {"type": "Point", "coordinates": [1, 2]}},
        _feature("高新区", [[32.9, 112.5], [33.0, 112.5], [33.0, 112.6], [32.9, 112.5]]),  # lat first
        _feature("示范区", [[112.5, 32.9], [112.6, 32.9]]),
    ]}), encoding="utf-8")
    found = _problems(f"map: {{districts: {path}}}\n", checks=(planning_problems,))
    assert len(found) == 4, found
    assert all(p.startswith("city.yaml:1: map.districts: ") for p in found)
    text = "\n".join(found)
    assert "features[1].properties.name: must be the district's name" in text
    assert "features[2].geometry: must be a Polygon or MultiPolygon (got 'Point')" in text
    assert "features[3].geometry.coordinates: [32.9, 112.5] is out of range: GeoJSON writes [lon, lat]" in text
    assert "features[4].geometry.coordinates: a ring needs at least four [lon, lat] positions" in text


@pytest.mark.parametrize(("content", "expected"), [
    (b"{\"type\": \"Feature\"}", "must be a GeoJSON FeatureCollection"),
    (b"\xff\xfe not json", "is not GeoJSON (UTF-8 JSON)"),
    (b"[" * 10 + b"]" * 10, "must be a GeoJSON FeatureCollection"),
    (b"[" * 1_000_000, "is not GeoJSON: nested too deeply"),
    (b" " * (MAX_OUTLINE_BYTES + 1), f"is larger than {MAX_OUTLINE_BYTES:,} bytes"),
])
def test_an_outline_file_that_is_not_usable_is_refused_whole(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "districts.geojson"
    path.write_bytes(content)
    with pytest.raises(OutlineError) as info:
        load_outlines(MapSettings(districts=path))
    assert expected in info.value.problems[0]
    assert str(path) in str(info.value)


def test_a_missing_outline_file_is_named(tmp_path: Path) -> None:
    (msg,) = _problems(f"map: {{districts: {tmp_path / 'none.geojson'}}}\n", checks=(planning_problems,))
    assert "map.districts: 无法读取：No such file or directory（填写值：" in msg
    assert "/ cannot be read: No such file or directory (got " in msg


def test_the_service_refuses_to_start_with_an_outline_file_it_cannot_use(tmp_path: Path) -> None:
    path = tmp_path / "districts.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [_feature(None, WANCHENG)]}))
    config = parse_config(f"state_dir: {tmp_path / 'state'}\nmap: {{districts: {path}}}\n", env={})
    with pytest.raises(OutlineError, match=r"features\[0\]\.properties\.name"):
        Service(config)
    assert not (tmp_path / "state").exists()  # refused before anything was opened
