"""Names crafted to inject line protocol or InfluxQL cannot create, alter or drop other series in a real
influxd: `SHOW MEASUREMENTS` and `SHOW SERIES` before and after hold exactly the configured ones."""

from __future__ import annotations

import contextlib
import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from collector.drain import Drainer
from collector.influx.lineproto import FlowSchema
from collector.influx.reader import InfluxReader, QueryError, quote_ident, quote_literal
from collector.influx.settings import InfluxSettings
from collector.influx.sitemeta import site_lines
from collector.influx.writer import V1Writer
from collector.model import Reading, Role, Site
from collector.mqtt.decode import DecodeContext, decode
from collector.mqtt.profile import load_profiles
from collector.mqtt.topics import plan_routes
from collector.outbox import Outbox, OutboxSettings
from gshp.devstack import Influxd
from tests.helpers import T0, wait_until

pytestmark = pytest.mark.integration

INJECTIONS = [
    "a,site=evil",
    "x y=1",
    "d total_m3=999 0",
    "' OR 1=1 --",
    "'; DROP MEASUREMENT flow; --",
    '"; DROP DATABASE gshp; --',
    'quote"d',
    "back\\slash",
    "\\,\\=\\ x",
    "=",
    ",",
    "宛城区 \"' ,=\\ 区",
    "flow,site=evil,meter=E1,role=extraction total_m3=1 1",
]
# site names are string fields: quotes, backslashes, commas, = and line protocol inside them stay text (line
# breaks are refused by the config: see test_a_line_break_in_a_name_is_refused_by_the_config)
NAMES = ["x flow,site=evil total_m3=1 0", 'name" total_m3=5', "\\\"\\", "向阳荷花广场 '; DROP SERIES FROM flow --"]


def _series(influxd: Influxd, db: str) -> set[str]:
    res = influxd.query("SHOW SERIES", db)
    return {row[0] for s in res[0].get("series", []) for row in s["values"]}  # type: ignore[union-attr]


def _measurements(influxd: Influxd, db: str) -> set[str]:
    res = influxd.query("SHOW MEASUREMENTS", db)
    return {row[0] for s in res[0].get("series", []) for row in s["values"]}  # type: ignore[union-attr]


def _tag_values(influxd: Influxd, db: str, key: str) -> set[str]:
    res = influxd.query(f"SHOW TAG VALUES FROM flow WITH KEY = {quote_ident(key)}", db)
    return {row[1] for s in res[0].get("series", []) for row in s["values"]}  # type: ignore[union-attr]


def _sites(districts: list[str], names: list[str]) -> list[Site]:
    return [Site.model_validate({"id": f"s{i}", "name": names[i % len(names)], "district": d, "meters": [
        {"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}]}) for i, d in enumerate(districts)]


def _store(influxd: Influxd, db: str, path: Path, sites: list[Site]) -> None:
    box = Outbox(path, OutboxSettings(max_batch_age=timedelta(milliseconds=50)))  # type: ignore[call-arg]
    writer = V1Writer(InfluxSettings(url=influxd.url, api="v1", bucket=db))  # type: ignore[arg-type]
    writer.ensure_target()
    drainer = Drainer(box, writer).start()
    schema = FlowSchema(sites)
    lines = site_lines(sites, T0)
    for s in sites:
        for k in range(3):
            lines += schema.lines([Reading(s.id, "E1", Role.EXTRACTION, T0 + timedelta(seconds=k), 50.0, 100.0 + k),
                                   Reading(s.id, "R1", Role.REINJECTION, T0 + timedelta(seconds=k), 50.0, 90.0 + k)])
    box.put(lines)
    wait_until(lambda: box.depth == 0, timeout=30)
    drainer.stop()
    box.close()
    assert drainer.dropped == 0


def _expected_series(sites: list[Site]) -> set[str]:
    """Series keys as influxd prints them, built here independently of the code under test."""
    def esc(v: str) -> str:
        return v.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")
    out = set()
    for s in sites:
        out.add(f"site,district={esc(s.district)},site={s.id}")
        for m in s.meters:
            out.add(f"flow,district={esc(s.district)},meter={m.id},role={m.role.value},site={s.id}")
    return out


def test_injected_tag_and_field_text_creates_no_other_series(influxd: Influxd, influx_db: str, tmp_path: Path,
                                                              figures: dict[str, Any]) -> None:
    sites = _sites(INJECTIONS, NAMES)
    _store(influxd, influx_db, tmp_path / "outbox.sqlite", sites)
    assert _measurements(influxd, influx_db) == {"flow", "site"}
    series = _series(influxd, influx_db)
    assert len(series) == 3 * len(sites)
    assert _tag_values(influxd, influx_db, "district") == {s.district for s in sites}
    assert _tag_values(influxd, influx_db, "site") == {s.id for s in sites}
    assert _tag_values(influxd, influx_db, "meter") == {"E1", "R1"}
    res = influxd.query('SELECT "name" FROM "site" GROUP BY "site"', influx_db)
    stored_names = {s["tags"]["site"]: s["values"][0][1] for s in res[0]["series"]}  # type: ignore[index]
    assert stored_names == {s.id: s.name for s in sites}
    res = influxd.query("SELECT count(total_m3) FROM flow", influx_db)
    assert res[0]["series"][0]["values"][0][1] == 6 * len(sites)  # type: ignore[index]
    figures.update(hostile_tag_values=len(INJECTIONS), hostile_names=len(NAMES), series=len(series))


@pytest.mark.parametrize("name", ["x\nflow,site=evil total_m3=1 0", "向阳荷花广场\r\n'; DROP SERIES FROM flow --"])
def test_a_line_break_in_a_name_is_refused_by_the_config(name: str) -> None:
    """A name goes into e-mail headers and chat messages as well as the database: no line breaks."""
    with pytest.raises(ValidationError, match="must not contain control characters"):
        _sites(["宛城区"], [name])


def test_a_tag_ending_in_a_backslash_is_refused_by_the_config() -> None:
    """Line protocol cannot carry a final backslash in a tag (influxdb-client turns it into an escaped
    space, so `a\\` would be stored as `a `): the config refuses it with the reason."""
    with pytest.raises(ValueError, match="must not end with a backslash"):
        _sites(["trailing\\"], ["n"])


def test_random_tag_text_round_trips_exactly(influxd: Influxd, influx_db: str, tmp_path: Path,
                                             figures: dict[str, Any]) -> None:
    """300 districts drawn from the characters line protocol treats specially, with Unicode."""
    rng = random.Random(7)
    alphabet = list(",= \"'\\#;-*/()[]{}\u00e9\u5b9b\u533a\U0001f600\u200b\u00a0") + list("abcXYZ019")
    districts: set[str] = set()
    while len(districts) < 300:
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        try:
            districts.add(Site.model_validate({"id": "x", "name": "x", "district": text, "meters": [
                {"id": "E", "role": "extraction"}, {"id": "R", "role": "reinjection"}]}).district)
        except ValueError:
            continue  # blank after stripping: the config rejects it
    sites = _sites(sorted(districts), ["n"])
    _store(influxd, influx_db, tmp_path / "outbox.sqlite", sites)
    assert _measurements(influxd, influx_db) == {"flow", "site"}
    assert _tag_values(influxd, influx_db, "district") == districts
    assert _series(influxd, influx_db) == _expected_series(sites)
    figures.update(random_districts=len(districts), series=3 * len(sites))


def test_influxql_built_from_hostile_text_reads_nothing_and_drops_nothing(
        influxd: Influxd, influx_db: str, tmp_path: Path, figures: dict[str, Any]) -> None:
    sites = _sites(["d1"], ["n"])
    _store(influxd, influx_db, tmp_path / "outbox.sqlite", sites)
    before = (_measurements(influxd, influx_db), _series(influxd, influx_db))
    reader = InfluxReader(InfluxSettings(url=influxd.url, api="v1", bucket=influx_db))  # type: ignore[arg-type]
    hostile = [*INJECTIONS, "s0' OR site =~ /.*/ --", "s0\\' OR 1=1", "s0'\nDROP MEASUREMENT flow",
               "s0'\r\nDROP MEASUREMENT flow", "' ; DROP MEASUREMENT flow ; SELECT * FROM flow WHERE site = '"]
    for text in hostile:
        try:
            df = reader.flow(T0 - timedelta(days=1), T0 + timedelta(days=1), site=text)
        except QueryError:  # InfluxQL reads a carriage return as a line break: refused, never run
            assert "\r" in text, text
            continue
        assert df.empty, text
        with contextlib.suppress(QueryError):  # as an identifier: at most an error, never a second statement
            reader.query(f"SELECT count(total_m3) FROM flow WHERE {quote_ident(text)} = {quote_literal(text)}")
    assert len(reader.flow(T0 - timedelta(days=1), T0 + timedelta(days=1), site="s0")) == 6
    reader.close()
    assert (_measurements(influxd, influx_db), _series(influxd, influx_db)) == before
    figures.update(hostile_queries=2 * len(hostile), series_before=len(before[1]),
                   series_after=len(_series(influxd, influx_db)))


def test_payload_and_topic_text_never_become_tags() -> None:
    """Site, meter and role come from the config: a payload or a topic level naming another meter, or
    carrying line protocol, is rejected as an unknown meter."""
    site = Site.model_validate({"id": "s1", "name": "n", "district": "d", "meters": [
        {"id": "E1", "role": "extraction", "mqtt": {"topic": "dtu/s1/{key}/up", "profile": "thingsboard"}},
        {"id": "R1", "role": "reinjection", "mqtt": {"topic": "dtu/s1/up", "profile": "dtu-json-array"}}]})
    profiles = load_profiles()
    router = plan_routes([site], profiles)
    ctx = DecodeContext(tz=ZoneInfo("Asia/Shanghai"))
    now = T0 + timedelta(seconds=30)
    for text in INJECTIONS:
        hit = router.route(f"dtu/s1/{text}/up")
        if hit is not None:
            route, key = hit
            body = json.dumps({"ts": int(T0.timestamp() * 1000), "values": {"total_m3": 1.0}}).encode()
            d = decode(route.profile, body, now, ctx, route.meters, key)
            assert not d.readings and d.rejected[0].reason.value == "unknown_meter", text
        route2 = router.route("dtu/s1/up")
        assert route2 is not None
        body = json.dumps([{"id": text, "ts": int(T0.timestamp()), "total_m3": 1.0}]).encode()
        d = decode(route2[0].profile, body, now, ctx, route2[0].meters, None)
        assert not d.readings and d.rejected[0].reason.value == "unknown_meter", text
    good = router.route("dtu/s1/E1/up")
    assert good is not None and good[1] == "E1"
