"""Sharding: the stable site → shard function, gateway ownership, process plans, the fan-out message and
rule evaluation in data time."""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerting.model import Alert
from collector.fanout import decode_reading, encode_reading, plan_fanout_routes, reading_topic
from collector.model import Reading, Role
from collector.mqtt.decode import DecodeContext, decode
from gshp.clock import DataClock
from gshp.config import ConfigError, parse_config
from gshp.evaluation import RuleLoop
from gshp.live import LiveState
from gshp.roles import ProcessRole, RoleError, for_process
from gshp.shard import ShardSettings, plan_shards, shard_of
from rules.engine import Engine
from rules.replay import parse_readings
from tests.helpers import in_english, make_site

CASES = Path(__file__).parents[1] / "cases" / "rules"


def city(extra: str = "", sites: int = 6, gateway_sites: tuple[int, ...] = ()) -> str:
    text = "state_dir: /var/lib/gshp\nmqtt: {host: 127.0.0.1, client_id: gshp-city}\n"
    text += "gateways:\n  - {id: gw-a, host: 10.0.0.5, port: 502}\n" if gateway_sites else ""
    text += extra + "sites:\n"
    for i in range(sites):
        src = "modbus: {gateway: gw-a, unit: 1}" if i in gateway_sites else f"mqtt: {{topic: dtu/s{i}/E1}}"
        text += (f"  - id: s{i}\n    name: Site {i}\n    district: 宛城区\n    meters:\n"
                 f"      - {{id: E1, role: extraction, {src}}}\n"
                 f"      - {{id: R1, role: reinjection, mqtt: {{topic: dtu/s{i}/R1}}}}\n")
    return text


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "city.yaml", env={})
    return [in_english(p) for p in info.value.problems]


def test_shard_of_is_crc32_of_the_site_id_and_stable_across_processes() -> None:
    assert shard_of("hehua-plaza", 4) == zlib.crc32(b"hehua-plaza") % 4
    assert shard_of("向阳荷花广场", 7) == zlib.crc32("向阳荷花广场".encode()) % 7
    assert shard_of("anything", 1) == 0
    with pytest.raises(ValueError):
        shard_of("x", 0)


def test_shard_of_spreads_sites_evenly() -> None:
    counts = Counter(shard_of(f"site-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(900 < n < 1100 for n in counts.values())


def test_changing_the_count_moves_most_sites() -> None:
    moved = sum(shard_of(f"site-{i}", 4) != shard_of(f"site-{i}", 5) for i in range(2000))
    assert moved > 1200  # about (N-1)/N of them: the docs tell operators to plan a resize


@pytest.mark.parametrize("form", ["shard: 1/4", "shard: ' 1 / 4 '", "shard: {index: 1, count: 4}"])
def test_shard_is_written_as_k_slash_n_or_as_a_mapping(form: str) -> None:
    config = parse_config(city(form + "\n"), "city.yaml", env={})
    assert config.shard == ShardSettings(index=1, count=4)
    assert str(config.shard) == "1/4"


def test_bad_shards_are_reported_with_line_and_value() -> None:
    assert problems(city("shard: 4/4\n")) == [
        "city.yaml:3: shard: index 4 is not below count 4: shards are numbered 0 … 3 (got '4/4')"]
    (msg,) = problems(city("shard: half\n"))
    assert msg.startswith("city.yaml:3: shard: write the shard as `k/N`")
    (msg,) = problems(city("shard: {index: 0, count: 0}\n"))
    assert msg.startswith("city.yaml:3: shard.count:")


def _split_gateway_sites() -> tuple[int, int]:
    """Two site numbers that fall in different shards of 2."""
    a = 0
    b = next(i for i in range(1, 6) if shard_of(f"s{i}", 2) != shard_of("s0", 2))
    return a, b


def test_a_gateway_serving_sites_of_two_shards_is_refused_with_the_fix() -> None:
    a, b = _split_gateway_sites()
    (msg,) = problems(city("shard: 0/2\n", gateway_sites=(a, b)))
    assert msg.startswith("city.yaml:4: gateways[0].id: gateway 'gw-a' serves sites of different shards")
    assert f"s{a}" in msg and f"s{b}" in msg and "pin it with `shard: K`" in msg


def test_a_pinned_gateway_takes_its_sites_into_its_shard() -> None:
    a, b = _split_gateway_sites()
    text = city("shard: 0/2\n", gateway_sites=(a, b)).replace("port: 502}", "port: 502, shard: 1}")
    config = parse_config(text, "city.yaml", env={})
    plan = plan_shards(config.sites, config.gateways, 2)
    assert plan.sites[f"s{a}"] == plan.sites[f"s{b}"] == 1 and plan.gateways["gw-a"] == 1
    (msg,) = problems(text.replace("shard: 1}", "shard: 2}"))
    assert msg.startswith("city.yaml:4: gateways[0].shard: is not below the shard count 2")


def test_one_process_per_shard_and_role_owns_disjoint_sites_state_and_client_ids() -> None:
    config = parse_config(city(sites=20), "city.yaml", env={})
    owned: list[str] = []
    dirs, ids = set(), set()
    for k in range(3):
        for role in (ProcessRole.COLLECTOR, ProcessRole.RULES):
            plan = for_process(config, role, ShardSettings(index=k, count=3))
            assert plan.config.shard.index == k
            assert all(shard_of(s.id, 3) == k for s in plan.config.sites)
            if role is ProcessRole.RULES:
                owned += [s.id for s in plan.config.sites]
            dirs.add(plan.config.state_dir)
            assert plan.config.mqtt is not None
            ids |= {plan.config.mqtt.client_id, plan.fanout_client_id, plan.rules_client_id}
    assert sorted(owned) == sorted(s.id for s in config.sites)
    assert len(dirs) == 6 and Path("/var/lib/gshp/rules-2") in dirs
    assert {"gshp-city-0", "gshp-city-fanout-0", "gshp-city-rules-0"} <= ids and len(ids) == 9


def test_the_default_role_without_a_shard_is_todays_single_process() -> None:
    config = parse_config(city(), "city.yaml", env={})
    plan = for_process(config, ProcessRole.ALL)
    assert plan.config.sites == config.sites and plan.config.state_dir == config.state_dir
    assert plan.config.mqtt == config.mqtt


def test_split_roles_need_the_broker_section() -> None:
    config = parse_config(city(), "city.yaml", env={})
    no_broker = config.model_copy(update={"mqtt": None})
    with pytest.raises(RoleError, match="needs the `mqtt:` broker section"):
        for_process(no_broker, ProcessRole.RULES, ShardSettings(index=0, count=2))


def test_the_fanout_message_is_compact_json_of_the_reading_and_decodes_with_config_tags() -> None:
    r = Reading("s1", "E1", Role.EXTRACTION, datetime(2026, 7, 1, 0, 0, 0, 250000, tzinfo=UTC), 50.5, 1000.25,
                signal_pct=88.0, error_code=3)
    payload = encode_reading(r)
    assert json.loads(payload) == {"site": "s1", "meter": "E1", "role": "extraction",
                                   "ts": "2026-07-01T00:00:00.250000+00:00", "rate_m3h": 50.5,
                                   "total_m3": 1000.25, "signal_pct": 88.0, "error_code": 3}
    assert b" " not in payload and decode_reading(payload) == r
    topic = reading_topic("gshp/readings", 1, "s1", "E1")
    assert topic == "gshp/readings/1/s1/E1"
    router = plan_fanout_routes([make_site()], "gshp/readings", 1)
    assert router.subscriptions == ("gshp/readings/1/s1/+",)
    hit = router.route(topic)
    assert hit is not None
    route, key = hit
    ctx = DecodeContext(tz=UTC)
    lying = payload.replace(b'"role":"extraction"', b'"role":"reinjection"').replace(b'"site":"s1"', b'"site":"x"')
    got = decode(route.profile, lying, r.ts, ctx, route.meters, key)
    assert got.readings == [r]  # site, meter and role from the configuration, never from the payload
    assert router.route("gshp/readings/0/s1/E1") is None
    rate_only = Reading("s1", "R1", Role.REINJECTION, r.ts, 49.0, None)
    hit = router.route("gshp/readings/1/s1/R1")
    assert hit is not None
    assert decode(hit[0].profile, encode_reading(rate_only), r.ts, ctx, hit[0].meters,
                  hit[1]).readings == [rate_only]


@pytest.mark.parametrize("case", ["gross-discharge", "unplugged-reinjection"])
def test_data_time_evaluation_of_a_live_stream_matches_replay(case: str) -> None:
    config = parse_config((CASES / case / "config.yaml").read_text(encoding="utf-8"), "c.yaml", env={})
    with open(CASES / case / "readings.csv", encoding="utf-8") as f:
        rows = parse_readings(f)
    site = config.sites[0]
    roles = {m.id: m.role for m in site.meters}
    stream = [Reading(rows.site[i], rows.meter[i], roles[rows.meter[i]], datetime.fromtimestamp(rows.ts[i], UTC),
                      rows.rate[i], rows.total[i]) for i in range(len(rows))]
    events: list[Alert] = []
    loop = RuleLoop(Engine(config.sites, config.rules, config.tz), config.sites, DataClock(),
                    LiveState(config.sites), lambda lines: None, events.append)
    rng = random.Random(7)
    i = 0
    while i < len(stream):  # batches of any size, as MQTT delivers them
        n = rng.randint(1, 40)
        loop.on_readings(stream[i:i + n])
        i += n
    want = [json.loads(line) for line in (CASES / case / "expected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [json.loads(e.to_json()) for e in events] == want
