"""The documented example config loads and plans, so docs never drift from the code."""

from __future__ import annotations

from pathlib import Path

from collector.mqtt.profile import load_profiles
from collector.mqtt.topics import plan_routes
from gshp.config import load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "mqtt.yaml"


def test_the_mqtt_example_config_loads_and_plans() -> None:
    config = load_config(EXAMPLE, env={})
    router = plan_routes(config.sites, load_profiles())
    assert set(router.subscriptions) == {"dtu/860012345/E1", "dtu/860012346/up", "dtu/xinhua/+/up"}
    hit = router.route("dtu/860012346/up")
    assert hit is not None and sorted(hit[0].meters) == ["R1", "r2"]
