"""The board's map: its settings (`map:`) and the district outlines, a GeoJSON file read at start.

The map works offline: sites are points over the outlines of `map.districts`, drawn by the vendored Leaflet;
a deployment with a tile server or a 天地图 key adds `map.tiles`. The outline file is bounded
(`MAX_OUTLINE_BYTES`, `MAX_POSITIONS`) and validated whole before use: every problem is reported at once, and
what the API serves keeps only each feature's district name and geometry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from math import isfinite
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from collector.model import FreeText
from collector.problems import ZhEn

__all__ = ["MAX_OUTLINE_BYTES", "MAX_POSITIONS", "SUBDOMAINS_PATTERN", "TILE_URL_PATTERN", "MapSettings",
           "OutlineError", "TileLayer", "load_outlines", "outline_problems"]

MAX_OUTLINE_BYTES = 4 * 1024 * 1024
"""A city's district outlines, simplified for a board, take a few hundred KiB."""
MAX_POSITIONS = 200_000
"""Coordinate pairs all outlines may hold together."""
TILE_URL_PATTERN = r"^https?://[^\s\"'<>]+$"
SUBDOMAINS_PATTERN = r"^[A-Za-z0-9]*$"
MAX_FEATURES = 1000
MAX_SHOWN = 20
"""Problems listed for one file; the rest are counted."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TileLayer(_Frozen):
    """A tile server under the points: a URL template with {z} {x} {y} (and {s} for `subdomains`); `{key}` in
    it stands for `key`, kept out of every log line and message."""

    url: str = Field(pattern=TILE_URL_PATTERN)
    key: SecretStr | None = Field(default=None, min_length=1)
    subdomains: str = Field(default="", max_length=16, pattern=SUBDOMAINS_PATTERN)
    attribution: FreeText = Field(default="", max_length=300)
    max_zoom: int = Field(default=18, ge=1, le=22)

    @field_validator("url")
    @classmethod
    def _template(cls, v: str) -> str:
        missing = [p for p in ("{z}", "{x}", "{y}") if p not in v]
        if missing:
            raise ValueError(ZhEn("瓦片地址须含 {z} {x} {y}",
                                  "the tile URL template must hold {z}, {x} and {y} "
                                  f"(missing {' '.join(missing)}), "
                                  "e.g. http://tiles.example.gov.cn/{z}/{x}/{y}.png"))
        return v


class MapSettings(_Frozen):
    districts: Path | None = Field(default=None, description="a GeoJSON FeatureCollection of district outlines "
                                                             "(Polygon / MultiPolygon, WGS-84)")
    name_property: str = Field(default="name", min_length=1, max_length=64,
                               description="the feature property that holds the district's name as `sites:` "
                                           "writes it")
    tiles: TileLayer | None = None


class OutlineError(Exception):
    """The outline file `path` cannot be used; `problems` lists every reason."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"map.districts {path}: " + "; ".join(problems))


def load_outlines(settings: MapSettings) -> dict[str, Any] | None:
    """The outlines of `settings.districts` as a FeatureCollection whose features carry only `district` and
    their geometry (None without a file); `OutlineError` with every problem otherwise."""
    if settings.districts is None:
        return None
    path = settings.districts
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_OUTLINE_BYTES + 1)
    except OSError as exc:
        raise OutlineError(path, [ZhEn(f"无法读取：{exc.strerror}", f"cannot be read: {exc.strerror}")]) from None
    if len(raw) > MAX_OUTLINE_BYTES:
        raise OutlineError(path, [ZhEn(f"超过 {MAX_OUTLINE_BYTES:,} 字节：请简化轮廓（如 mapshaper -simplify 10%）",
                                       f"is larger than {MAX_OUTLINE_BYTES:,} bytes: simplify the outlines "
                                       "(e.g. mapshaper -simplify 10%)")])
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise OutlineError(path, [ZhEn(f"不是 GeoJSON（UTF-8 JSON）：{exc}", f"is not GeoJSON (UTF-8 JSON): {exc}")]) \
            from None
    except RecursionError:
        raise OutlineError(path, [ZhEn("不是 GeoJSON：嵌套过深", "is not GeoJSON: nested too deeply")]) from None
    problems = list(_problems(data, settings.name_property))
    if problems:
        more = len(problems) - MAX_SHOWN
        raise OutlineError(path, problems[:MAX_SHOWN] + (
            [ZhEn(f"……另有 {more} 个问题", f"… and {more} more problems")] if more > 0 else []))
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": {"district": f["properties"][settings.name_property]},
                          "geometry": {"type": f["geometry"]["type"], "coordinates": f["geometry"]["coordinates"]}}
                         for f in data["features"]]}


def outline_problems(settings: MapSettings) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """The outline file's problems as (data path, message) for a config check, at `map.districts`."""
    try:
        load_outlines(settings)
    except OutlineError as err:
        for p in err.problems:
            yield ("map", "districts"), p


def _problems(data: Any, name_property: str) -> Iterator[str]:
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or not isinstance(
            data.get("features"), list):
        yield ZhEn("须为 GeoJSON FeatureCollection：{\"type\": \"FeatureCollection\", \"features\": [...]}",
                   "must be a GeoJSON FeatureCollection: {\"type\": \"FeatureCollection\", \"features\": [...]}")
        return
    features = data["features"]
    if len(features) > MAX_FEATURES:
        yield ZhEn(f"有 {len(features):,} 个要素，超过 {MAX_FEATURES:,} 个：每个辖区一个要素",
                   f"has {len(features):,} features, more than {MAX_FEATURES:,}: one feature per district")
        return
    positions = 0
    for i, f in enumerate(features):
        where = f"features[{i}]"
        if not isinstance(f, dict) or f.get("type") != "Feature":
            yield _at(where, "须为 Feature", "must be a Feature")
            continue
        props = f.get("properties")
        name = props.get(name_property) if isinstance(props, dict) else None
        if not isinstance(name, str) or not name.strip():
            yield _at(f"{where}.properties.{name_property}", "须为辖区名称，与 `sites:` 中的写法一致",
                      "must be the district's name, as `sites:` writes it")
        geometry = f.get("geometry")
        kind = geometry.get("type") if isinstance(geometry, dict) else None
        if kind not in ("Polygon", "MultiPolygon"):
            yield _at(f"{where}.geometry", f"须为 Polygon 或 MultiPolygon（实为 {kind!r}）",
                      f"must be a Polygon or MultiPolygon (got {kind!r})")
            continue
        assert isinstance(geometry, dict)
        polygons = geometry.get("coordinates")
        if kind == "Polygon":
            polygons = [polygons]
        if not isinstance(polygons, list) or not polygons:
            yield _at(f"{where}.geometry.coordinates", "须为环的列表", "must be a list of rings")
            continue
        for polygon in polygons:
            for problem, count in _rings(polygon):
                positions += count
                if problem:
                    yield _at(f"{where}.geometry.coordinates", problem.zh, problem.en)
                    break
        if positions > MAX_POSITIONS:
            yield ZhEn(f"坐标点超过 {MAX_POSITIONS:,} 个：请简化轮廓（如 mapshaper -simplify 10%）",
                       f"holds more than {MAX_POSITIONS:,} positions: simplify the outlines "
                       "(e.g. mapshaper -simplify 10%)")
            return


def _at(where: str, zh: str, en: str) -> ZhEn:
    """A problem at a place in the outline file, named in each language."""
    return ZhEn(f"{where}：{zh}", f"{where}: {en}")


def _rings(polygon: Any) -> Iterator[tuple[ZhEn | None, int]]:
    """(problem or None, positions) per ring of one polygon."""
    if not isinstance(polygon, list) or not polygon:
        yield ZhEn("多边形须为环的列表", "a polygon must be a list of rings"), 0
        return
    for ring in polygon:
        if not isinstance(ring, list) or len(ring) < 4:
            yield ZhEn("一个环至少须有四个 [lon, lat] 坐标点", "a ring needs at least four [lon, lat] positions"), 0
            return
        for pos in ring:
            if not (isinstance(pos, list) and len(pos) >= 2 and all(
                    isinstance(c, int | float) and not isinstance(c, bool) and isfinite(c) for c in pos[:2])):
                shown = json.dumps(pos)[:40]
                yield ZhEn(f"{shown} 不是 [lon, lat] 坐标点", f"{shown} is not a [lon, lat] position"), len(ring)
                return
            if not (-180 <= pos[0] <= 180 and -90 <= pos[1] <= 90):
                shown = json.dumps(pos)[:40]
                yield ZhEn(f"{shown} 超出范围：GeoJSON 按 WGS-84 度数写 [lon, lat]（经度在前）",
                           f"{shown} is out of range: GeoJSON writes [lon, lat] in WGS-84 degrees "
                           "(longitude first)"), len(ring)
                return
        yield None, len(ring)
